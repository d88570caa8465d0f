# Shared by the bench scripts: a release build, a clean plugin dir, and a kleene wrapper
# whose state lives in a scratch dir. Source it; it sets $K (the command) and $W (scratch).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
PLUGINS=(loopback bridge custom host ipnet vnet disabled)

# KLEENE_BENCH_BIN=DIR: use the kleene binary and plugins in DIR (e.g. another commit's build,
# to compare two builds in one sitting) instead of building this tree's.
build_release() {
    if [ -n "${KLEENE_BENCH_BIN:-}" ]; then return; fi
    local packages=(-p kleene-host)
    for p in "${PLUGINS[@]}"; do packages+=(-p "kleene-plugin-$p"); done
    (cd "$ROOT" && cargo build -q --release "${packages[@]}")
}

# Re-run the calling script inside a network namespace of its own (never the host's).
enter_netns() {
    if [ -z "${KLEENE_BENCH_NETNS:-}" ]; then
        exec unshare -n env KLEENE_BENCH_NETNS=1 bash "$0" "$@"
    fi
    ip link set lo up
}

setup_kleene() {
    W=$(mktemp -d /tmp/kleene-bench.XXXXXX)
    chmod 0755 "$W"
    mkdir -p "$W/plugins"
    local bin=${KLEENE_BENCH_BIN:-$ROOT/target/release}
    for p in "${PLUGINS[@]}"; do install -m 0755 "$bin/libkleene_$p.so" "$W/plugins/"; done
    export KLEENE_PLUGIN_PATH=$W/plugins
    K="$bin/kleene --state-dir $W/state --run-dir $W/run"
    trap cleanup_kleene EXIT
}

cleanup_kleene() {
    for c in $($K container ls -a --json 2>/dev/null | python3 -c 'import json,sys; [print(c["id"]) for c in json.load(sys.stdin)]' 2>/dev/null); do
        $K container rm -f "$c" >/dev/null 2>&1 || true
    done
    $K network prune -f >/dev/null 2>&1 || true
    for f in "$W"/run/netns/*; do [ -e "$f" ] && umount -l "$f" 2>/dev/null; done
    rm -rf "$W"
}

now_us() { echo $(( $(date +%s%N) / 1000 )); }

median() { sort -n | awk '{v[NR]=$1} END {if (NR%2) print v[(NR+1)/2]; else printf "%d\n", (v[NR/2]+v[NR/2+1])/2}'; }
mean() { awk '{s+=$1} END {if (NR) printf "%.0f\n", s/NR}'; }

# Time one command, print microseconds.
time_us() { local s e; s=$(now_us); "$@" >/dev/null; e=$(now_us); echo $((e - s)); }

# The CLI path of a vnet container on network `bench`, timed in chunks of $CHUNK (clock read
# outside the commands, as the peers' scripts do): cli_attach PREFIX N prints µs per container
# for each chunk (first vs last shows the growth); cli_detach PREFIX N prints µs per container
# for stop + rm of them all.
cli_attach() {
    local prefix=$1 n=$2 start i s e
    for start in $(seq 1 "$CHUNK" "$n"); do
        s=$(now_us)
        for i in $(seq "$start" $((start + CHUNK - 1))); do
            $K container create -l vnet -n bench "$prefix$i" >/dev/null
            $K container start "$prefix$i"
        done
        e=$(now_us)
        echo $(( (e - s) / CHUNK ))
    done
}
cli_detach() {
    local prefix=$1 n=$2 i s e
    s=$(now_us)
    for i in $(seq 1 "$n"); do
        $K container stop "$prefix$i"
        $K container rm "$prefix$i" >/dev/null
    done
    e=$(now_us)
    echo $(( (e - s) / n ))
}
