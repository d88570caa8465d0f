# Debian's CNI bridge plugin (containernetworking-plugins, host-local IPAM) as the peer: N
# namespaces made before the clock starts, then N sequential ADDs and N DELs on one bridge.
# Source it; `cni_bridge_bench N` prints "cni_add US" and "cni_del US" (mean per container).
# Kept in-repo (the approach of ../shared/peers/cni_bench.sh) so CI runs the same peer.
cni_bridge_bench() {
    local n=$1 dir plugin=/usr/lib/cni/bridge s e i
    [ -x "$plugin" ] || { echo "cni_add n/a"; echo "cni_del n/a"; return; }
    dir=$(mktemp -d /tmp/kleene-cni.XXXXXX)
    cat > "$dir/conf.json" <<JSON
{"cniVersion":"1.0.0","name":"kbench","type":"bridge","bridge":"kcnibr0","isGateway":true,"ipMasq":false,
 "ipam":{"type":"host-local","subnet":"10.97.0.0/16","dataDir":"$dir/ipam"}}
JSON
    local prefix="kcni$$-"
    for i in $(seq 1 "$n"); do ip netns add "$prefix$i"; done
    cni() { CNI_COMMAND=$1 CNI_CONTAINERID="c$2" CNI_NETNS="/run/netns/$prefix$2" CNI_IFNAME=eth0 \
            CNI_PATH=/usr/lib/cni "$plugin" < "$dir/conf.json" >/dev/null; }
    s=$(now_us); for i in $(seq 1 "$n"); do cni ADD "$i"; done; e=$(now_us)
    echo "cni_add $(( (e - s) / n ))"
    s=$(now_us); for i in $(seq 1 "$n"); do cni DEL "$i"; done; e=$(now_us)
    echo "cni_del $(( (e - s) / n ))"
    for i in $(seq 1 "$n"); do ip netns del "$prefix$i"; done
    ip link del kcnibr0 2>/dev/null || true
    rm -rf "$dir"
}
