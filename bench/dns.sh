#!/usr/bin/env bash
# Container DNS benchmark (docs/dns.md), in a network namespace of its own: one bridge
# network with DNS, filled with running vnet containers to 10, 100 and 1000. At each size:
#   - update: `container start` of one more container (the resolver's files rewritten, the
#     resolver signalled and probed until it answers), median of $SAMPLES, in us; the part
#     of it spent on DNS (state read, files written, resolver signalled and asked) and, of
#     that, the wait for the resolver (both from kleene's debug log);
#   - answered within the command: right after each start returns, a container asks for the
#     new name (getent); every one must answer;
#   - lookups from inside a container: $QUERIES UDP queries for random container names,
#     sequential, p50/p99 round trip in us (target p99 <= 1000), plus glibc getaddrinfo.
# Targets: p99 <= 1 ms; the update cost grows at most linearly with the network's size.
# Usage: bench/dns.sh [SIZES]   (default "10 100 1000")
source "$(dirname "$0")/lib/common.sh"
SIZES=${1:-10 100 1000}
SAMPLES=${KLEENE_BENCH_SAMPLES:-15}
QUERIES=${KLEENE_BENCH_QUERIES:-2000}
if [ -z "${KLEENE_BENCH_NETNS:-}" ]; then
    build_release
fi
enter_netns "$@"
setup_kleene
$K network create -t bridge --subnet 10.98.0.0/16 bench >/dev/null
$K container create -l vnet -n bench client >/dev/null
$K container start client

# Query random names of c1..cN at the resolver, one at a time; print p50 and p99 in us, then
# glibc's getaddrinfo p50 and p99 (a quarter as many).
LOOKUPS='
import random, socket, struct, sys, time
n, count = int(sys.argv[1]), int(sys.argv[2])
server = open("/etc/resolv.conf").read().split("nameserver ")[1].split()[0]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.connect((server, 53)); s.settimeout(1)
def pct(v, p): v = sorted(v); return v[min(len(v) - 1, int(len(v) * p))]
rtt, bad = [], 0
for i in range(count):
    name = "c%d" % random.randint(1, n)
    q = struct.pack(">HHHHHH", i & 0xFFFF, 0x100, 1, 0, 0, 0) + bytes([len(name)]) + name.encode() + b"\0\0\1\0\1"
    t = time.perf_counter(); s.send(q); r = s.recv(512); rtt.append((time.perf_counter() - t) * 1e6)
    bad += struct.unpack(">H", r[6:8])[0] != 1
gai = []
for i in range(count // 4):
    t = time.perf_counter(); socket.getaddrinfo("c%d" % random.randint(1, n), 80, socket.AF_INET); gai.append((time.perf_counter() - t) * 1e6)
print("%d %d %d %d %d" % (pct(rtt, 0.5), pct(rtt, 0.99), pct(gai, 0.5), pct(gai, 0.99), bad))
'

# The duration after PHRASE in a log line (Rust's Debug of a Duration), in us.
us_after() {
    sed -n "s/.*$1 \([0-9.]*\)\([a-zµ]*\)s\$/\1 \2/p" | awk '{v=$1; if ($2=="m") v*=1000; if ($2=="") v*=1000000; if ($2=="n") v/=1000; printf "%d\n", v}'
}

have=0
printf '%-6s %10s %8s %11s %9s %7s %7s %8s %8s\n' size "update us" "dns us" "resolver us" answered "q p50" "q p99" "gai p50" "gai p99"
for size in $SIZES; do
    for i in $(seq $((have + 1)) "$size"); do
        $K container create -l vnet -n bench "c$i" >/dev/null
        $K container start "c$i" 2>/dev/null
    done
    have=$size
    updates=() dns=() waits=() answered=0
    for s in $(seq 1 "$SAMPLES"); do
        $K container create -l vnet -n bench "probe$s" >/dev/null
        t0=$(now_us)
        log=$($K --log kleene::executor::linux::resolver=debug,kleene::commands=debug container start "probe$s" 2>&1)
        t1=$(now_us)
        $K container exec client -- getent hosts "probe$s" >/dev/null && answered=$((answered + 1))
        updates+=($((t1 - t0)))
        waits+=("$(us_after 'confirmed in' <<<"$log")")
        dns+=("$(us_after 'in step with state in' <<<"$log")")
        $K container rm -f "probe$s" >/dev/null
    done
    update=$(printf '%s\n' "${updates[@]}" | median)
    wait=$(printf '%s\n' "${waits[@]}" | median)
    dnsus=$(printf '%s\n' "${dns[@]}" | median)
    read -r p50 p99 g50 g99 bad < <($K container exec client -- python3 -c "$LOOKUPS" "$size" "$QUERIES")
    [ "$bad" = 0 ] || echo "warning: $bad queries answered without exactly one address" >&2
    printf '%-6s %10s %8s %11s %9s %7s %7s %8s %8s\n' "$size" "$update" "$dnsus" "$wait" "$answered/$SAMPLES" "$p50" "$p99" "$g50" "$g99"
done
echo "(update: one 'container start' on a network of that many running containers, median; dns: its DNS part; resolver: of that, the wait for aardvark-dns to answer by the new files)"
