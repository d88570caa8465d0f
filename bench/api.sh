#!/usr/bin/env bash
# The API's attach/detach beside Debian's CNI bridge plugin and the CLI, in one run, in a
# network namespace of its own (issue 11):
#   api:  one client holding one connection to `kleene serve` (bench/lib/api_client.py):
#         POST /containers/create + /networks/connect + /containers/{id}/start per container,
#         then /containers/{id}/stop + DELETE /containers/{id};
#   cli:  `kleene container create -l vnet -n NET` + `container start`, then `stop` + `rm`;
#   peer: CNI bridge ADD / DEL (bench/lib/cni.sh).
# N vnet containers on one bridge, attaches timed in chunks of 20 (first vs last chunk shows
# growth). Targets: API attach <= 0.33x CNI ADD, API detach <= 0.2x CNI DEL, last 20 attaches
# <= 1.2x the first 20.
#
# The API and the peer run ROUNDS times, alternating (peer, then API, each round on an empty
# bridge), and every round's figures are printed; the verdicts use the median of the rounds'
# ratios, each ratio taken within one round. One round on a shared VM can be off by 30-50%
# either way (the host steals time in bursts), which a median of three absorbs and a single
# run does not. Each round's server serves one untimed container first (bench/lib/api_client.py:
# a fresh server's one-time costs would flatter the growth). The CLI path runs once.   Usage: bench/api.sh [N] [ROUNDS]   (200, 3)
source "$(dirname "$0")/lib/common.sh"
source "$(dirname "$0")/lib/cni.sh"
N=${1:-200}
ROUNDS=${2:-3}
CHUNK=20
if [ -z "${KLEENE_BENCH_NETNS:-}" ]; then build_release; fi
enter_netns "$@"
setup_kleene
SERVER_PID=
stop_server() { if [ -n "$SERVER_PID" ]; then kill -TERM "$SERVER_PID" 2>/dev/null; wait "$SERVER_PID" 2>/dev/null || true; SERVER_PID=; fi; }
trap 'stop_server; cleanup_kleene' EXIT

# --no-dns: the peers serve no names (container DNS has its own figures: bench/dns.sh).
$K network create -t bridge --subnet 10.96.0.0/16 --no-dns bench >/dev/null

# The CLI path: two processes per attach, two per detach.
cli_attach cli "$N" > "$W/cli-attach.txt"
cli_detach=$(cli_detach cli "$N")
cli_attach=$(mean < "$W/cli-attach.txt")

ratio() { if [ -n "$2" ] && [ "$2" != n/a ] && [ "$2" != 0 ]; then printf '%.2f' "$(echo "$1 / $2" | bc -l)"; else echo n/a; fi; }
field() { sed -n "s/^$1 //p" "$2"; }

# One round: the peer, then the API (one server, one client, one connection); a line of
# figures per round in $W/rounds.txt.
for r in $(seq 1 "$ROUNDS"); do
    cni_bridge_bench "$N" > "$W/cni.$r.txt"
    $K serve --socket "$W/kleened.sock" --no-docker 2>"$W/serve.$r.log" &
    SERVER_PID=$!
    for _ in $(seq 1 100); do [ -S "$W/kleened.sock" ] && break; sleep 0.05; done
    python3 "$ROOT/bench/lib/api_client.py" "$W/kleened.sock" bench "$N" "$CHUNK" > "$W/api.$r.txt"
    stop_server
    sed -n 's/^attach //p' "$W/api.$r.txt" > "$W/api-attach.$r.txt"
    attach=$(mean < "$W/api-attach.$r.txt"); detach=$(field detach "$W/api.$r.txt")
    first=$(head -1 "$W/api-attach.$r.txt"); last=$(tail -1 "$W/api-attach.$r.txt")
    add=$(field cni_add "$W/cni.$r.txt"); del=$(field cni_del "$W/cni.$r.txt")
    echo "$r $attach $detach $first $last $add $del $(field cni_add_first20 "$W/cni.$r.txt") $(field cni_add_last20 "$W/cni.$r.txt")" \
        "$(ratio "$attach" "$add") $(ratio "$detach" "$del") $(ratio "$last" "$first")" >> "$W/rounds.txt"
done

median_of() { awk -v c="$1" '{print $c}' "$W/rounds.txt" | median_real; }
median_real() { sort -g | awk '{v[NR]=$1} END {if (NR%2) print v[(NR+1)/2]; else printf "%.2f\n", (v[NR/2]+v[NR/2+1])/2}'; }

echo "== $N vnet containers on one bridge (us per container), $ROUNDS rounds"
printf '%-6s %18s %18s %18s %18s %9s %9s %9s\n' round "API attach/detach" "API first/last20" "CNI ADD/DEL" "CNI first/last20" attach detach growth
while read -r r attach detach first last add del cfirst clast ra rd rg; do
    printf '%-6s %18s %18s %18s %18s %9s %9s %9s\n' "$r" "$attach / $detach" "$first / $last" "$add / $del" "$cfirst / $clast" "$ra" "$rd" "$rg"
done < "$W/rounds.txt"
echo "API/CNI attach (median of rounds): $(median_of 10) (target <= 0.33)"
echo "API/CNI detach (median of rounds): $(median_of 11) (target <= 0.20)"
echo "API attach, last 20 vs first 20 (median of rounds): $(median_of 12) (target <= 1.2)"
echo "CNI ADD (the peer), last 20 vs first 20 (median of rounds): $(awk '{print $9 / $8}' "$W/rounds.txt" | median_real)"
printf '%-44s %10s %10s\n' "CLI (create+start / stop+rm), one run" "$cli_attach" "$cli_detach"
echo "CLI/CNI (round 1's peer) attach: $(ratio "$cli_attach" "$(field cni_add "$W/cni.1.txt")"), detach: $(ratio "$cli_detach" "$(field cni_del "$W/cni.1.txt")")"
echo "CLI attach, last 20 vs first 20: $(tail -1 "$W/cli-attach.txt") vs $(head -1 "$W/cli-attach.txt") us"
for r in $(seq 1 "$ROUNDS"); do
    echo "round $r API mean per request (us): $(sed -n 's/^request //p' "$W/api.$r.txt" | tr '\n' ' ')"
    echo "round $r API attach per route (us), first chunk: $(field 'chunk 1' "$W/api.$r.txt"); last: $(grep '^chunk ' "$W/api.$r.txt" | tail -1 | cut -d' ' -f3-)"
done
