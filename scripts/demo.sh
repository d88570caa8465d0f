#!/usr/bin/env bash
# The main job, end to end, on a fresh Debian machine (as root): installs what it needs,
# builds kleene and its plugins, then inside a network namespace of its own creates
# networks and containers of every driver and sends traffic between them.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${KLEENE_DEMO_NETNS:-}" ]; then
    bash scripts/install-deps.sh
    cargo build -q --release --workspace
    exec unshare -n env KLEENE_DEMO_NETNS=1 bash "$0" "$@"
fi
ip link set lo up
W=$(mktemp -d /tmp/kleene-demo.XXXXXX); chmod 0755 "$W"; mkdir -p "$W/plugins"
for p in loopback bridge custom host ipnet vnet disabled overlay; do install -m 0755 "target/release/libkleene_$p.so" "$W/plugins/"; done
export KLEENE_PLUGIN_PATH=$W/plugins
kleene() { echo "+ kleene $*" >&2; target/release/kleene --state-dir "$W/state" --run-dir "$W/run" "$@"; }
cleanup() {
    for c in web api db box; do target/release/kleene --state-dir "$W/state" --run-dir "$W/run" container rm -f "$c" >/dev/null 2>&1 || true; done
    target/release/kleene --state-dir "$W/state" --run-dir "$W/run" network prune -f >/dev/null 2>&1 || true
    rm -rf "$W"
}
trap cleanup EXIT

kleene plugin ls
kleene network create -t bridge --subnet 10.42.0.0/24 --subnet6 fd00:42::/64 frontend
kleene network create -t bridge --subnet 10.43.0.0/24 --no-icc backend
kleene network create -t loopback --subnet 10.44.0.0/24 local
kleene network ls

kleene container create -l vnet -n frontend web
kleene container create -l ipnet -n frontend api
kleene container create -l ipnet -n local db
kleene container create -l disabled box
for c in web api db box; do kleene container start "$c"; done
kleene container ls

echo "== web (vnet) sees only its own interfaces, routes through the bridge"
kleene container exec web -- ip -br addr
kleene container exec web -- ip route
echo "== web pings api over IPv4 and the bridge gateway over IPv6"
kleene container exec web -- ping -c1 -W1 10.42.0.3
kleene container exec web -- ping -c1 -W1 fd00:42::1
echo "== api (ipnet) serves TCP on its own address; web connects"
kleene container exec api -- python3 -c "import socket; s=socket.socket(); s.bind(('0.0.0.0', 8080)); s.listen(); c, a = s.accept(); c.sendall(b'hello from api to ' + a[0].encode())" &
sleep 0.5
kleene container exec web -- python3 -c "import socket; s=socket.create_connection(('10.42.0.3', 8080), timeout=3); print(s.recv(100).decode())"
wait
echo "== container DNS: on a bridge, containers find each other by name (aardvark-dns at the gateway)"
kleene container exec web -- cat /etc/resolv.conf
kleene container exec web -- getent hosts api
echo "== api may not use an address that is not its own"
kleene container exec api -- python3 -c "
import socket
try:
    socket.socket().bind(('10.42.0.1', 0))
except OSError as e:
    print('bind to the gateway address refused:', e.strerror)"
echo "== connect a running vnet container to a second network, live"
kleene network connect backend web
kleene container exec web -- ip -br addr
kleene network disconnect backend web
echo "== box (disabled) has no network at all"
kleene container exec box -- ip -br addr
echo "== the same start rendered for FreeBSD"
kleene container stop web
kleene --dry-run --os freebsd container start web
kleene network inspect frontend

echo "== the same host over Kleene's HTTP API: kleene serve, driven by Kleene's own client klee"
target/release/kleene --state-dir "$W/state" --run-dir "$W/run" serve --socket "$W/api.sock" --docker-socket "$W/docker.sock" 2>"$W/serve.log" &
server=$!
for _ in $(seq 50); do [ -S "$W/api.sock" ] && break; sleep 0.1; done
klee() { echo "+ klee $*" >&2; /opt/kleene-test/klee-venv/bin/klee --host "http://$W/api.sock" "$@"; }
klee network ls
klee network create --type bridge --subnet 10.45.0.0/24 viaapi
klee network connect viaapi web
kleene network inspect viaapi
klee network disconnect viaapi web
klee network rm viaapi
kill -TERM "$server"; wait "$server"

echo "== a container runtime's namespace on a kleene network through kleene-cni (what containerd runs)"
unshare -n sleep 60 & holder=$!
sleep 0.2
conf='{"cniVersion": "1.0.0", "name": "frontend", "type": "kleene-cni", "network": "frontend",
       "stateDir": "'"$W/state"'", "runDir": "'"$W/run"'", "pluginDir": "'"$W/plugins"'"}'
cni() { echo "+ CNI_COMMAND=$1 kleene-cni" >&2; CNI_COMMAND=$1 CNI_CONTAINERID=demo CNI_NETNS=/proc/$holder/ns/net CNI_IFNAME=eth0 CNI_PATH=target/release target/release/kleene-cni <<<"$conf"; }
cni ADD
nsenter --net=/proc/$holder/ns/net ping -c1 -W1 10.42.0.1
kleene container ls
cni DEL
kill "$holder"; wait "$holder" 2>/dev/null || true
for c in web api db box; do kleene container rm -f "$c"; done
kleene network rm frontend backend local
echo "demo finished: everything removed"
