#!/usr/bin/env bash
# Network benchmarks (issue: networks). Runs inside a network namespace of its own.
#   1. `network create -t bridge` end to end, per network            target <= 5 ms
#   2. `network ls --json` with 1000 networks                        target <= 30 ms
#   3. IPAM: cost of allocating the Nth address of a /16, N up to 60 000 (flat)
# A floor is printed beside (1): the same kernel work done by `ip -batch`.
# Usage: bench/networks.sh [creates]   (default 50)
source "$(dirname "$0")/lib/common.sh"
if [ -z "${KLEENE_BENCH_NETNS:-}" ]; then build_release; (cd "$ROOT" && cargo build -q --release --example ipam_flat -p kleene-host); fi
enter_netns "$@"
N=${1:-50}
setup_kleene

echo "== network create -t bridge (v4+v6 subnets, auto gateways), $N networks"
# The clock is read around the whole loop (as the peers' scripts do), not around each command.
s=$(now_us)
for i in $(seq 1 "$N"); do
    $K network create -t bridge --subnet "10.$((i / 250)).$((i % 250)).0/24" --subnet6 "fd00:$i::/64" "b$i" >/dev/null
done
e=$(now_us)
create_med=$(( (e - s) / N ))
for i in $(seq 1 "$N"); do
    printf 'link add fb%d type bridge\naddr add 10.200.%d.1/24 dev fb%d\naddr add fd01:%x::1/64 dev fb%d\nlink set fb%d up\n' "$i" "$i" "$i" "$i" "$i" "$i"
done > "$W/floor.batch"
s=$(now_us); ip -batch "$W/floor.batch"; e=$(now_us)
floor=$(( (e - s) / N ))
printf 'kleene network create: %d us/op   ip -batch floor: %d us/op   ratio %.1fx\n' "$create_med" "$floor" "$(echo "$create_med / $floor" | bc -l)"
for i in $(seq 1 "$N"); do $K network rm "b$i" >/dev/null; ip link del "fb$i"; done

echo "== network ls --json with 1000 networks"
for i in $(seq 1 1000); do $K network create --subnet "10.$((100 + i / 250)).$((i % 250)).0/24" "l$i" >/dev/null; done
hyperfine -N -w 5 -r 50 --style none --export-json "$W/ls.json" "$K network ls --json" >/dev/null
ls_ms=$(python3 -c "import json,sys; print('%.1f' % (json.load(open(sys.argv[1]))['results'][0]['median']*1e3))" "$W/ls.json")
hyperfine -N -w 5 -r 50 --style none --export-json "$W/true.json" "/bin/true" >/dev/null
true_ms=$(python3 -c "import json,sys; print('%.1f' % (json.load(open(sys.argv[1]))['results'][0]['median']*1e3))" "$W/true.json")
echo "kleene network ls --json (1000 networks): median $ls_ms ms (hyperfine; /bin/true: $true_ms ms)"

echo "== IPAM: allocation cost through a /16, each allocation its own committed transaction"
"$ROOT/target/release/examples/ipam_flat" "$W/ipam"
