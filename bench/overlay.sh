#!/usr/bin/env bash
# Overlay networks across hosts (issue: overlay networks with VXLAN and etcd). Hosts are
# network namespaces joined by an underlay bridge in a namespace of their own, where etcd
# runs (data in a scratch dir). Reports:
#   - a local attach (create + start of a vnet container on a bridge network) beside a
#     cross-host attach (create + start on host 2 until host 1 forwards to it, checked by a
#     ping; every host runs `kleene serve`, whose etcd watch installs the entries);
#   - etcd round trips per attach (create + start through the CLI beside `kleene serve`;
#     target <= 2);
#   - the time for one change (a container started on host 1) to reach every host's tunnel
#     device, with HOSTS hosts running `kleene serve`.
# Usage: bench/overlay.sh [N] [HOSTS]   (default 20 attaches, 10 hosts)
#        KLEENE_BENCH_PROFILE=debug uses the debug build (no release build; figures are slower).
source "$(dirname "$0")/lib/common.sh"
N=${1:-20}
HOSTS=${2:-10}
PROFILE=${KLEENE_BENCH_PROFILE:-release}
PLUGINS=(bridge vnet overlay)
if [ "$PROFILE" = release ]; then build_release; fi
BIN=$ROOT/target/$PROFILE
W=$(mktemp -d /tmp/kleene-bench-overlay.XXXXXX)
chmod 0755 "$W"
mkdir -p "$W/plugins"
for p in "${PLUGINS[@]}"; do install -m 0755 "$BIN/libkleene_$p.so" "$W/plugins/"; done
export KLEENE_PLUGIN_PATH=$W/plugins KLEENE_CLUSTER=http://192.0.2.254:2379 KLEENE_CLUSTER_TTL=60
TAG=kbo$$
SERVERS=()

# Run kleene as host $1 (in its namespace, with its own state and run dirs); nsenter execs
# it, so a background `kh` is the kleene process itself.
kh() {
    local h=$1; shift
    KLEENE_CLUSTER_ADDRESS=192.0.2.$h exec_in "$h" "$BIN/kleene" --state-dir "$W/h$h/state" --run-dir "$W/h$h/run" "$@"
}
exec_in() { local h=$1; shift; nsenter --net=/run/netns/$TAG-$h "$@"; }

cleanup() {
    for pid in "${SERVERS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for h in $(seq 1 "$HOSTS"); do
        for c in $(kh "$h" container ls -a --json 2>/dev/null | python3 -c 'import json,sys; [print(c["id"]) for c in json.load(sys.stdin)]' 2>/dev/null); do
            kh "$h" container rm -f "$c" >/dev/null 2>&1 || true
        done
        ip netns del "$TAG-$h" 2>/dev/null || true
    done
    [ -n "${ETCD_PID:-}" ] && kill "$ETCD_PID" 2>/dev/null
    ip netns del "$TAG-u" 2>/dev/null || true
    rm -rf "$W"
}
trap cleanup EXIT

ip netns add "$TAG-u"
ip -n "$TAG-u" link set lo up
ip -n "$TAG-u" link add ul0 type bridge
ip -n "$TAG-u" addr add 192.0.2.254/24 dev ul0
ip -n "$TAG-u" link set ul0 up
for h in $(seq 1 "$HOSTS"); do
    ip netns add "$TAG-$h"
    ip -n "$TAG-$h" link set lo up
    ip -n "$TAG-u" link add "ul$h" type veth peer name under netns "$TAG-$h"
    ip -n "$TAG-u" link set "ul$h" master ul0 up
    ip -n "$TAG-$h" addr add "192.0.2.$h/24" dev under
    ip -n "$TAG-$h" link set under up
done
nsenter --net=/run/netns/$TAG-u etcd --data-dir "$W/etcd" \
    --listen-client-urls http://192.0.2.254:2379 --advertise-client-urls http://192.0.2.254:2379 \
    --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
    --initial-cluster default=http://127.0.0.1:2380 >"$W/etcd.log" 2>&1 &
ETCD_PID=$!
until nsenter --net=/run/netns/$TAG-u curl -sf http://192.0.2.254:2379/health >/dev/null; do sleep 0.1; done

kh 1 network create -t overlay --subnet 10.97.0.0/16 ov >/dev/null
kh 1 network create -t bridge --subnet 10.98.0.0/16 local >/dev/null
for h in $(seq 2 "$HOSTS"); do kh "$h" network ls >/dev/null; done
kh 1 container create -l vnet -n ov probe >/dev/null
kh 1 container start probe
for h in $(seq 1 "$HOSTS"); do
    (KLEENE_CLUSTER_ADDRESS=192.0.2.$h exec nsenter --net=/run/netns/$TAG-$h "$BIN/kleene" \
        --state-dir "$W/h$h/state" --run-dir "$W/h$h/run" serve --no-docker --socket "$W/h$h.sock" >/dev/null 2>&1) &
    SERVERS+=($!)
done
for h in $(seq 1 "$HOSTS"); do until [ -S "$W/h$h.sock" ]; do sleep 0.05; done; done

ip_of() { kh "$1" container inspect "$2" | python3 -c 'import json,sys; print(json.load(sys.stdin)["container_endpoints"][0]["ip_address"])'; }
mac_of() { kh "$1" container exec "$2" -- ip -o link show eth0 | sed -n 's/.*link\/ether \([0-9a-f:]*\).*/\1/p'; }

# Local attach: create + start on a bridge network of host 1.
for i in $(seq 1 "$N"); do
    s=$(now_us); kh 1 container create -l vnet -n local "l$i" >/dev/null; kh 1 container start "l$i"; e=$(now_us)
    echo $((e - s))
done > "$W/local.txt"

# Cross-host attach: create + start on host 2, until host 1 forwards to it (host 2 has its
# entry for the probe already); then the probe must reach it.
for i in $(seq 1 "$N"); do
    s=$(now_us)
    kh 2 container create -l vnet -n ov "x$i" >/dev/null
    kh 2 container start "x$i"
    mac=$(mac_of 2 "x$i")
    until exec_in 1 bridge fdb show dev kvx1 | grep -q "$mac dst 192.0.2.2"; do sleep 0.002; done
    e=$(now_us)
    kh 1 container exec probe -- ping -c1 -W2 "$(ip_of 2 "x$i")" >/dev/null || { echo "x$i unreachable" >&2; exit 1; }
    echo $((e - s))
done > "$W/cross.txt"

# etcd round trips of one attach through the CLI: create (the address claim) + start.
rt() { KLEENE_CLUSTER_STATS=1 kh 2 "$@" 2>&1 >/dev/null | sed -n 's/^etcd round trips: //p'; }
for i in $(seq 1 5); do
    echo $(( $(rt container create -l vnet -n ov "r$i") + $(rt container start "r$i") ))
done > "$W/rt.txt"

# One change reaching every host: a container started on host 1 until each host's tunnel
# device forwards its MAC to host 1.
for i in $(seq 1 5); do
    s=$(now_us)
    kh 1 container create -l vnet -n ov "s$i" >/dev/null
    kh 1 container start "s$i"
    mac=$(mac_of 1 "s$i")
    for h in $(seq 2 "$HOSTS"); do
        until exec_in "$h" bridge fdb show dev kvx1 | grep -q "$mac dst 192.0.2.1"; do sleep 0.002; done
    done
    e=$(now_us)
    echo $((e - s))
done > "$W/spread.txt"

echo "overlay benchmark ($PROFILE build, $N attaches, $HOSTS hosts as namespaces, etcd $(etcd --version | sed -n 's/^etcd Version: //p'))"
printf 'local attach (bridge, create+start):            %6d us\n' "$(median < "$W/local.txt")"
printf 'cross-host attach (overlay, until pinged):      %6d us\n' "$(median < "$W/cross.txt")"
printf 'etcd round trips per attach (create+start):     %6s\n' "$(median < "$W/rt.txt")"
printf 'one change reaching %2d hosts (create+start on 1): %6d us\n' "$HOSTS" "$(median < "$W/spread.txt")"
