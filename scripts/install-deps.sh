#!/usr/bin/env bash
# Installs what kleene's build, tests, demo and benchmarks need on Debian (run as root).
set -euo pipefail
pkgs=(iproute2 nftables iputils-ping python3 bison gcc util-linux procps containernetworking-plugins netavark hyperfine bc)
pkgs+=(aardvark-dns)                   # container DNS (docs/dns.md)
pkgs+=(containerd runc podman busybox-static)  # runtimes: ctr run --cni, podman run (docs/runtimes.md)
pkgs+=(docker.io iptables)              # the Docker plugin test: a private dockerd, a busybox image
pkgs+=(etcd-server)                     # overlay networks: the cluster store their tests start
missing=()
for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
rustup target list --installed | grep -qx x86_64-unknown-freebsd || rustup target add x86_64-unknown-freebsd
# Kleene's own client (klee), for the API tests and the API benchmark: a pre-release on PyPI,
# in a virtual environment of its own. Tests find it here, or through KLEENE_KLEE.
KLEE_VENV=/opt/kleene-test/klee-venv
if ! "$KLEE_VENV/bin/klee" --version >/dev/null 2>&1; then
  dpkg -s python3-venv >/dev/null 2>&1 || { apt-get update -qq; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null; }
  python3 -m venv "$KLEE_VENV"
  "$KLEE_VENV/bin/pip" install -q --pre kleene-cli==0.1.0rc4
fi
