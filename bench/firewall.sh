#!/usr/bin/env bash
# Firewall rule-update time at 1, 100 and 1000 networks, each with one running ipnet container
# publishing one port (so 1, 100, 1000 published ports), in a fresh network namespace
# (`unshare -n`): the host's own ruleset is never touched.
#
# The first network is created by kleene (schema, migrations); the others are written straight
# into the state database (the rule update only reads state, and creating 1000 networks one
# by one would itself re-apply the firewall 1000 times). Then, at each size:
#   reconcile  `kleene system reconcile`: render from state + one `nft -f -` (median of 5)
#   nft only   the same script loaded by `nft -f -` alone (median of 5)
#   create     one real `kleene network create` (plan + firewall + commit) (median of 5)
#   update     of those creates, the rule update in-process (render, diff against the table
#              last applied, load), from the `-v` log line, and how it was loaded (median of 5)
# Usage: bench/firewall.sh [sizes...]   (root; builds the workspace in release mode)
set -euo pipefail
cd "$(dirname "$0")/.."
sizes=("$@")
[ $# -gt 0 ] || sizes=(1 100 1000)
if [ -z "${KLEENE_BENCH_INNER:-}" ]; then
  cargo build -q --release --workspace
  exec unshare -n env KLEENE_BENCH_INNER=1 "$0" "${sizes[@]}"
fi
ip link set lo up
target=${CARGO_TARGET_DIR:-$PWD/target}/release
work=$(mktemp -d /tmp/kleene-fw-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/plugins"
for p in loopback bridge custom host ipnet vnet disabled; do cp "$target/libkleene_$p.so" "$work/plugins/"; done
k() { KLEENE_PLUGIN_PATH="$work/plugins" "$target/kleene" --state-dir "$work/state" --run-dir "$work/run" "$@"; }
ms() { python3 -c 'import sys; print("%.1f" % (float(sys.argv[1]) / 1e6))' "$1"; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
timed() { local a b; a=$(date +%s%N); "$@" >/dev/null; b=$(date +%s%N); echo $((b - a)); }
# `firewall: <how> table inet kleene in 12.3ms` (Rust's Duration) → "12.3 <how>".
update_of() {
  python3 -c 'import re, sys
m = re.search(r"firewall: (.*?) table inet kleene in ([0-9.]+)(ns|µs|ms|s)(?=\s|$)", open(sys.argv[1]).read(), re.M)
if not m: print("- none"); sys.exit()
scale = {"ns": 1e-6, "µs": 1e-3, "ms": 1.0, "s": 1e3}[m.group(3)]
print("%.1f %s" % (float(m.group(2)) * scale, m.group(1).replace(" ", "_")))' "$1"
}

k network create --subnet 10.0.0.0/24 n0 >/dev/null
have=1
printf '%-9s %-14s %-12s %-12s %-12s %-13s %s\n' networks reconcile_ms nft_only_ms create_ms update_ms script_bytes how
for n in "${sizes[@]}"; do
  # Grow the state to n networks, each with a running ipnet container publishing one port.
  python3 - "$work/state/kleene.db" "$have" "$n" <<'PY'
import sqlite3, sys
db, have, want = sqlite3.connect(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
for i in range(have, want):
    hi, lo = divmod(i, 250)
    # Ids as kleene makes them (12 lowercase hex digits), kept apart by their first digit.
    nid, cid = "a%011x" % i, "c%011x" % i
    db.execute("INSERT INTO networks (id, name, type, interface, subnet, nat, icc, internal) "
               "VALUES (?, ?, 'loopback', ?, ?, 'lo', ?, ?)",
               (nid, "n%d" % i, "kleene%d" % i, "10.%d.%d.0/24" % (100 + hi, lo), i % 3 != 0, i % 7 == 0))
    db.execute("INSERT INTO containers (id, name, driver, running) VALUES (?, ?, 'ipnet', 1)", (cid, "c%d" % i))
    db.execute("INSERT INTO endpoints (id, seq, network_id, container_id, ip_address) VALUES (?, ?, ?, ?, ?)",
               ("e%011x" % i, i, nid, cid, "10.%d.%d.1" % (100 + hi, lo)))
    db.execute("INSERT INTO published (container_id, seq, spec) VALUES (?, 0, ?)", (cid, "%d:80" % (10000 + i)))
db.commit()
PY
  have=$n
  k system reconcile
  rec=$(for _ in 1 2 3 4 5; do timed k system reconcile; done | median)
  k --dry-run --os linux system reconcile | sed -n "/^nft -f - <<'EOF'$/,/^EOF$/p" | sed '1d;$d' >"$work/script.nft"
  nft_only=$(for _ in 1 2 3 4 5; do timed nft -f "$work/script.nft"; done | median)
  : >"$work/creates"
  for _ in 1 2 3 4 5; do
    create=$(timed k -v network create --subnet "10.250.$((have % 250)).0/24" "extra$have" 2>"$work/create.log")
    echo "$create $(update_of "$work/create.log")" >>"$work/creates"
    k network rm "extra$have" >/dev/null
  done
  create=$(cut -d' ' -f1 "$work/creates" | median)
  update=$(cut -d' ' -f2 "$work/creates" | median)
  how=$(cut -d' ' -f3 "$work/creates" | sort -u | paste -sd,)
  printf '%-9s %-14s %-12s %-12s %-12s %-13s %s\n' "$n" "$(ms "$rec")" "$(ms "$nft_only")" "$(ms "$create")" \
    "$update" "$(wc -c <"$work/script.nft")" "$how"
done
