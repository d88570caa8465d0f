#!/usr/bin/env bash
# Removing many networks against creating them (issue 8, item 17), in a network namespace of
# its own: N networks created one command each, then `network prune -f` (one command), for
# loopback networks (the default type) and for bridges. Target: prune no slower than create.
#   Usage: bench/prune.sh [N]   (default 500)
# KLEENE_BENCH_BIN=DIR times another build (DIR holds `kleene` and the libkleene_*.so).
source "$(dirname "$0")/lib/common.sh"
if [ -z "${KLEENE_BENCH_NETNS:-}" ] && [ -z "${KLEENE_BENCH_BIN:-}" ]; then build_release; fi
enter_netns "$@"
N=${1:-500}
setup_kleene
if [ -n "${KLEENE_BENCH_BIN:-}" ]; then
    for p in "${PLUGINS[@]}"; do install -m 0755 "$KLEENE_BENCH_BIN/libkleene_$p.so" "$W/plugins/"; done
    K="$KLEENE_BENCH_BIN/kleene --state-dir $W/state --run-dir $W/run"
fi

# One type: create N (clock around the loop), then prune them all (one command).
create_then_prune() {
    local kind=$1 s e create prune
    s=$(now_us)
    for i in $(seq 1 "$N"); do
        $K network create -t "$kind" --subnet "10.$((i / 250)).$((i % 250)).0/24" "n$i" >/dev/null
    done
    e=$(now_us); create=$(( (e - s) / 1000 ))
    s=$(now_us); $K network prune -f >/dev/null; e=$(now_us); prune=$(( (e - s) / 1000 ))
    left=$(ip -o link | grep -c ' kleene' || true)
    printf '%-9s create %d: %6d ms   prune %d: %6d ms   ratio prune/create %.2f   kleene links left: %d\n' \
        "$kind" "$N" "$create" "$N" "$prune" "$(echo "$prune / $create" | bc -l)" "$left"
}

echo "== $N networks: created one command each, then removed by one network prune -f"
create_then_prune loopback
create_then_prune bridge
