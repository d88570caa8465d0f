#!/usr/bin/env bash
# Plugin platform benchmark: builds release, then measures
#   (a) discovery + dlopen + abi_stable checks + info() of all seven plugins, in-process
#       (`kleene plugin ls` with KLEENE_TIMING set prints it to stderr);      target <= 3 ms
#   (b) `kleene plugin ls` end to end (process start to exit);                 target <= 10 ms
# plus the sizes of the binary and every plugin, unstripped and stripped.
# Uses hyperfine for (b) when installed (apt-get install -y hyperfine), else a date loop.
# Usage: bench/plugins.sh [runs]     (default 200)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-200}
PLUGINS=(loopback bridge custom host ipnet vnet disabled)

packages=(-p kleene-host)
for p in "${PLUGINS[@]}"; do packages+=(-p "kleene-plugin-$p"); done
cargo build -q --release "${packages[@]}"
rel=${CARGO_TARGET_DIR:-target}/release

# Only the seven real plugins, in a dir of their own (mode 0755, as the host requires).
dir=$(mktemp -d /tmp/kleene-bench.XXXXXX)
trap 'rm -rf "$dir"' EXIT
chmod 0755 "$dir"
for p in "${PLUGINS[@]}"; do install -m 0755 "$rel/libkleene_$p.so" "$dir/"; done
export KLEENE_PLUGIN_PATH=$dir
kleene=$rel/kleene
"$kleene" plugin ls | grep -c ' ok$' | grep -qx 7 || { echo "not all seven plugins load:"; "$kleene" plugin ls; exit 1; }

median() { sort -n | awk '{v[NR]=$1} END {if (NR%2) print v[(NR+1)/2]; else print (v[NR/2]+v[NR/2+1])/2}'; }

# (a) in-process load time, as printed by the host.
load_ms=$(for _ in $(seq "$RUNS"); do
    KLEENE_TIMING=1 "$kleene" plugin ls 2>&1 >/dev/null | sed -n 's/.* in \([0-9.]*\) ms$/\1/p'
done | median)

# (b) end to end.
if command -v hyperfine >/dev/null; then
    json=$dir/hyperfine.json
    hyperfine -N -w 20 -r "$RUNS" --export-json "$json" "$kleene plugin ls" >/dev/null
    e2e_ms=$(python3 -c "import json,sys; print('%.2f' % (json.load(open(sys.argv[1]))['results'][0]['median']*1e3))" "$json")
    how="hyperfine, $RUNS runs"
else
    e2e_ms=$(for _ in $(seq "$RUNS"); do
        s=$(date +%s%N); "$kleene" plugin ls >/dev/null; e=$(date +%s%N); echo "scale=3; ($e-$s)/1000000" | bc
    done | median)
    how="date loop, $RUNS runs"
fi
# Baseline: the same process without any plugin to load (clap, tracing, exit).
base_ms=$(for _ in $(seq "$RUNS"); do
    KLEENE_PLUGIN_PATH=/nonexistent KLEENE_TIMING=1 "$kleene" plugin ls 2>&1 >/dev/null | sed -n 's/.* in \([0-9.]*\) ms$/\1/p'
done | median)

verdict() { awk -v v="$1" -v t="$2" 'BEGIN {print (v <= t) ? "ok" : "OVER TARGET"}'; }
printf '(a) discover+load+check of 7 plugins, in-process (median of %s): %.3f ms  [target <= 3 ms: %s]\n' \
    "$RUNS" "$load_ms" "$(verdict "$load_ms" 3)"
printf '    (same with no plugin files on the path: %.3f ms)\n' "$base_ms"
printf '(b) kleene plugin ls end to end (%s, median): %s ms  [target <= 10 ms: %s]\n' "$how" "$e2e_ms" "$(verdict "$e2e_ms" 10)"

echo
echo "sizes (bytes)            unstripped   stripped"
size_row() {
    local f=$1 stripped=$dir/stripped
    strip -o "$stripped" "$f"
    printf '%-24s %10d %10d\n' "$(basename "$f")" "$(stat -c %s "$f")" "$(stat -c %s "$stripped")"
}
size_row "$kleene"
for p in "${PLUGINS[@]}"; do size_row "$rel/libkleene_$p.so"; done
