#!/usr/bin/env bash
# Attach/detach benchmark (issue: containers and drivers), side by side with the peers in
# one run, each inside a network namespace of its own:
#   kleene: `container create -l vnet -n NET` + `container start` per container, then
#           `container stop` + `container rm`;
#   peers:  Debian's CNI bridge plugin (host-local IPAM) ADD/DEL, netavark setup/teardown,
#           and an `ip -batch` floor (scripts in ../shared/peers).
# Targets: attach <= 1/3 of CNI's ADD; stop+rm <= 1/5 of CNI's DEL; the Nth attach no
# slower than 1.2x the first.   Usage: bench/containers.sh [N]   (default 200)
source "$(dirname "$0")/lib/common.sh"
N=${1:-200}
PEERS=${KLEENE_PEERS:-$ROOT/../shared/peers}
if [ -z "${KLEENE_BENCH_NETNS:-}" ]; then
    build_release
    peer_out=$(mktemp)
    for p in cni_bench ipbatch_bench nv_bench; do
        if [ -f "$PEERS/$p.sh" ]; then unshare -n -- bash "$PEERS/$p.sh" "$N" 2>&1 | grep -E 'us/op' >> "$peer_out" || true; fi
    done
    KLEENE_PEER_RESULTS=$peer_out exec unshare -n env KLEENE_BENCH_NETNS=1 KLEENE_PEER_RESULTS="$peer_out" bash "$0" "$@"
fi
ip link set lo up
setup_kleene
# --no-dns: the peers serve no names (container DNS has its own figures: bench/dns.sh).
$K network create -t bridge --subnet 10.96.0.0/16 --no-dns bench >/dev/null

# Timed in chunks of 20 containers (bench/lib/common.sh): first vs last chunk shows the growth.
CHUNK=20
cli_attach c "$N" > "$W/attach.txt"
$K container exec c1 -- ping -c1 -W1 "10.96.0.$((N % 250 + 1))" >/dev/null && reach=yes || reach=no
cli_detach c "$N" > "$W/detach.txt"

attach=$(mean < "$W/attach.txt")
detach=$(mean < "$W/detach.txt")
first=$(head -1 "$W/attach.txt")
last=$(tail -1 "$W/attach.txt")
peer() { sed -n "s/^$1: \([0-9]*\) us\/op.*/\1/p" "$KLEENE_PEER_RESULTS" | head -1; }
cni_add=$(peer 'cni bridge ADD'); cni_del=$(peer 'cni bridge DEL')
nv_add=$(peer 'netavark setup (internal, no fw nat)'); nv_del=$(peer 'netavark teardown')
floor=$(peer 'ip-batch attach')
ratio() { if [ -n "$2" ] && [ "$2" != 0 ]; then printf '%.2f' "$(echo "$1 / $2" | bc -l)"; else echo n/a; fi; }

echo "== $N vnet containers on one bridge (us per container; container 1 reaches container $N: $reach)"
printf '%-34s %10s %10s\n' "" attach detach
printf '%-34s %10s %10s\n' "kleene (create+start / stop+rm)" "$attach" "$detach"
printf '%-34s %10s %10s\n' "CNI bridge 1.1.1 (ADD / DEL)" "${cni_add:-n/a}" "${cni_del:-n/a}"
printf '%-34s %10s %10s\n' "netavark (setup / teardown)" "${nv_add:-n/a}" "${nv_del:-n/a}"
printf '%-34s %10s %10s\n' "ip -batch floor" "${floor:-n/a}" ""
echo "kleene/CNI attach: $(ratio "$attach" "$cni_add") (target <= 0.33)"
echo "kleene/CNI detach: $(ratio "$detach" "$cni_del") (target <= 0.20)"
echo "kleene/netavark attach: $(ratio "$attach" "$nv_add"), detach: $(ratio "$detach" "$nv_del")"
echo "attach, last 20 vs first 20 containers: $last vs $first us, ratio $(ratio "$last" "$first") (target <= 1.2)"
rm -f "$KLEENE_PEER_RESULTS"
