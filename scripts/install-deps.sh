#!/usr/bin/env bash
# Installs what kleene's build, tests, demo and benchmarks need on Debian (run as root).
set -euo pipefail
pkgs=(iproute2 nftables iputils-ping python3 bison gcc util-linux procps containernetworking-plugins netavark hyperfine bc)
missing=()
for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
rustup target list --installed | grep -qx x86_64-unknown-freebsd || rustup target add x86_64-unknown-freebsd
