#!/usr/bin/env bash
# kleene-cni beside Debian's CNI bridge plugin, in one run, in a network namespace of its
# own: the same topology (one bridge with a gateway, a /16, a veth pair per container, no
# masquerade), N namespaces made before each clock starts, N ADDs then N DELs each
# (bench/lib/cni.sh). Targets: kleene-cni ADD <= 1.0x and DEL <= 0.5x the bridge plugin's.
# Usage: bench/cni.sh [N]   (default 100)
source "$(dirname "$0")/lib/common.sh"
source "$(dirname "$0")/lib/cni.sh"
N=${1:-100}
if [ -z "${KLEENE_BENCH_NETNS:-}" ]; then
    build_release
    (cd "$ROOT" && cargo build -q --release -p kleene-cni)
fi
enter_netns "$@"
setup_kleene

# --no-dns: the bridge plugin serves no names (container DNS has its own figures: bench/dns.sh).
$K network create -t bridge --subnet 10.96.0.0/16 --no-dns bench >/dev/null
cat > "$W/conf.json" <<JSON
{"cniVersion":"1.0.0","name":"bench","type":"kleene-cni","network":"bench",
 "stateDir":"$W/state","runDir":"$W/run","pluginDir":"$W/plugins"}
JSON
ref=$(cni_bridge_bench "$N")
ours=$(cni_plugin_bench "$N" "$ROOT/target/release/kleene-cni" "$W/conf.json" kleene)
left=$($K container ls -a --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')
field() { sed -n "s/^$1 //p" <<< "$2"; }
cni_add=$(field cni_add "$ref"); cni_del=$(field cni_del "$ref")
k_add=$(field kleene_add "$ours"); k_del=$(field kleene_del "$ours")
ratio() { if [ -n "$2" ] && [ "$2" != n/a ] && [ "$2" != 0 ]; then printf '%.2f' "$(echo "$1 / $2" | bc -l)"; else echo n/a; fi; }

echo "== $N containers on one bridge (us per container)"
printf '%-34s %10s %10s\n' "" ADD DEL
printf '%-34s %10s %10s\n' "kleene-cni" "$k_add" "$k_del"
printf '%-34s %10s %10s\n' "CNI bridge 1.1.1 (host-local)" "$cni_add" "$cni_del"
echo "kleene-cni/bridge ADD: $(ratio "$k_add" "$cni_add") (target <= 1.0)"
echo "kleene-cni/bridge DEL: $(ratio "$k_del" "$cni_del") (target <= 0.5)"
echo "containers left on record after the DELs: $left"
