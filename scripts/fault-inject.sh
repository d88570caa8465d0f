#!/usr/bin/env bash
# The long fault-injection run: N kill -9 injections (default 1000) into random mutating
# commands, each followed by an ordinary command and the state-vs-kernel checker, in a
# network namespace of its own. Inconsistencies are reported and the run carries on in a
# fresh namespace; the summary counts injections, kills and journal rollbacks per command.
#   bash scripts/fault-inject.sh [N] [SEED]      (as root; SEED replays a run's commands)
set -euo pipefail
cd "$(dirname "$0")/.."
n="${1:-1000}"
export KLEENE_FAULT_INJECTIONS="$n"
export KLEENE_FAULT_SECONDS="${KLEENE_FAULT_SECONDS:-$((n * 2 + 60))}"
export KLEENE_FAULT_KEEP_GOING=1
if [ -n "${2:-}" ]; then export KLEENE_FAULT_SEED="$2"; fi
cargo build -q --workspace
exec cargo test -q -p kleene-tests --test fault random_kills -- --nocapture
