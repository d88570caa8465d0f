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
# <= 1.2x the first 20.   Usage: bench/api.sh [N]   (default 200)
source "$(dirname "$0")/lib/common.sh"
source "$(dirname "$0")/lib/cni.sh"
N=${1:-200}
CHUNK=20
if [ -z "${KLEENE_BENCH_NETNS:-}" ]; then build_release; fi
enter_netns "$@"
setup_kleene
trap 'stop_server; cleanup_kleene' EXIT

cni=$(cni_bridge_bench "$N")
cni_add=$(sed -n 's/^cni_add //p' <<< "$cni"); cni_del=$(sed -n 's/^cni_del //p' <<< "$cni")
cni_first=$(sed -n 's/^cni_add_first20 //p' <<< "$cni"); cni_last=$(sed -n 's/^cni_add_last20 //p' <<< "$cni")

# --no-dns: the peers serve no names (container DNS has its own figures: bench/dns.sh).
$K network create -t bridge --subnet 10.96.0.0/16 --no-dns bench >/dev/null

# The CLI path: two processes per attach, two per detach.
cli_attach cli "$N" > "$W/cli-attach.txt"
cli_detach=$(cli_detach cli "$N")

# The API path: one server, one client, one connection.
SERVER_PID=
stop_server() { if [ -n "$SERVER_PID" ]; then kill -TERM "$SERVER_PID" 2>/dev/null; wait "$SERVER_PID" 2>/dev/null || true; SERVER_PID=; fi; }
$K serve --socket "$W/kleened.sock" --no-docker 2>"$W/serve.log" &
SERVER_PID=$!
for _ in $(seq 1 100); do [ -S "$W/kleened.sock" ] && break; sleep 0.05; done
python3 "$ROOT/bench/lib/api_client.py" "$W/kleened.sock" bench "$N" "$CHUNK" > "$W/api.txt"
stop_server

sed -n 's/^attach //p' "$W/api.txt" > "$W/api-attach.txt"
api_attach=$(mean < "$W/api-attach.txt"); api_detach=$(sed -n 's/^detach //p' "$W/api.txt")
cli_attach=$(mean < "$W/cli-attach.txt")
ratio() { if [ -n "$2" ] && [ "$2" != n/a ] && [ "$2" != 0 ]; then printf '%.2f' "$(echo "$1 / $2" | bc -l)"; else echo n/a; fi; }

echo "== $N vnet containers on one bridge (us per container)"
printf '%-44s %10s %10s\n' "" attach detach
printf '%-44s %10s %10s\n' "kleene API (create+connect+start / stop+rm)" "$api_attach" "$api_detach"
printf '%-44s %10s %10s\n' "kleene CLI (create+start / stop+rm)" "$cli_attach" "$cli_detach"
printf '%-44s %10s %10s\n' "CNI bridge (ADD / DEL)" "$cni_add" "$cni_del"
echo "API/CNI attach: $(ratio "$api_attach" "$cni_add") (target <= 0.33)"
echo "API/CNI detach: $(ratio "$api_detach" "$cni_del") (target <= 0.20)"
echo "API attach, last 20 vs first 20: $(tail -1 "$W/api-attach.txt") vs $(head -1 "$W/api-attach.txt") us, ratio $(ratio "$(tail -1 "$W/api-attach.txt")" "$(head -1 "$W/api-attach.txt")") (target <= 1.2)"
[ -n "$cni_first" ] && echo "CNI ADD (the peer), last 20 vs first 20: $cni_last vs $cni_first us, ratio $(ratio "$cni_last" "$cni_first")"
echo "CLI/CNI attach: $(ratio "$cli_attach" "$cni_add"), detach: $(ratio "$cli_detach" "$cni_del")"
echo "API mean per request (us): $(sed -n 's/^request //p' "$W/api.txt" | tr '\n' ' ')"
echo "API attach per route (us), first chunk: $(sed -n 's/^chunk 1 //p' "$W/api.txt"); last: $(grep '^chunk ' "$W/api.txt" | tail -1 | cut -d' ' -f3-)"
echo "CLI attach, last 20 vs first 20: $(tail -1 "$W/cli-attach.txt") vs $(head -1 "$W/cli-attach.txt") us"
