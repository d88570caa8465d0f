# CNI plugins timed the same way: N namespaces made before the clock starts, then N
# sequential ADDs and N DELs (clock read outside the invocations, as the peers' scripts do).
# Source it. `cni_plugin_bench N PLUGIN CONF TAG` prints "TAG_add US" and "TAG_del US" (mean per
# container; with N >= 40 also "TAG_add_first20"/"TAG_add_last20"); `cni_bridge_bench N` does
# so for Debian's CNI bridge plugin (containernetworking-plugins, host-local IPAM) as
# "cni_add"/"cni_del". Kept in-repo (the approach of
# ../shared/peers/cni_bench.sh) so CI runs the same peer.
cni_plugin_bench() {
    local n=$1 plugin=$2 conf=$3 tag=$4 s e i
    local prefix="kcni$$-$tag-"
    for i in $(seq 1 "$n"); do ip netns add "$prefix$i"; done
    cni() { CNI_COMMAND=$1 CNI_CONTAINERID="c$2" CNI_NETNS="/run/netns/$prefix$2" CNI_IFNAME=eth0 \
            CNI_PATH=/usr/lib/cni "$plugin" < "$conf" >/dev/null; }
    # The first and last 20 ADDs are timed apart too: the peer's own growth with the
    # bridge's size, beside kleene's (the clock is read between invocations only).
    local first20 last20
    s=$(now_us)
    for i in $(seq 1 "$n"); do
        [ "$i" -eq $((n - 19)) ] && last20=$(now_us)
        cni ADD "$i"
        [ "$i" -eq 20 ] && first20=$(now_us)
    done
    e=$(now_us)
    echo "${tag}_add $(( (e - s) / n ))"
    if [ "$n" -ge 40 ]; then
        echo "${tag}_add_first20 $(( (first20 - s) / 20 ))"
        echo "${tag}_add_last20 $(( (e - last20) / 20 ))"
    fi
    s=$(now_us); for i in $(seq 1 "$n"); do cni DEL "$i"; done; e=$(now_us)
    echo "${tag}_del $(( (e - s) / n ))"
    for i in $(seq 1 "$n"); do ip netns del "$prefix$i"; done
}

cni_bridge_bench() {
    local n=$1 dir plugin=/usr/lib/cni/bridge
    [ -x "$plugin" ] || { echo "cni_add n/a"; echo "cni_del n/a"; return; }
    dir=$(mktemp -d /tmp/kleene-cni.XXXXXX)
    cat > "$dir/conf.json" <<JSON
{"cniVersion":"1.0.0","name":"kbench","type":"bridge","bridge":"kcnibr0","isGateway":true,"ipMasq":false,
 "ipam":{"type":"host-local","subnet":"10.97.0.0/16","dataDir":"$dir/ipam"}}
JSON
    cni_plugin_bench "$n" "$plugin" "$dir/conf.json" cni
    ip link del kcnibr0 2>/dev/null || true
    rm -rf "$dir"
}
