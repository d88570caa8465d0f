#!/usr/bin/env bash
# The whole test suite: builds every crate (the tests load the built plugins), then runs
# unit, golden and end-to-end tests. End-to-end tests need root: each makes its own
# network namespace and never touches this machine's interfaces.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cargo build --workspace --all-targets
cargo test --workspace --no-fail-fast -- --test-threads=4
