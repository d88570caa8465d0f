//! Golden tests: overlay networks, planned by the real plugin and rendered as FreeBSD
//! (vxlan(4) in a multicast group, learning) and Linux (VXLAN, nolearning, static entries)
//! command lines.

mod common;

use common::*;
use kleene_overlay::Overlay;
use kleene_plugin_api::{ClusterScope, Peer};

fn overlay() -> Network {
    let mut net = bridge(Gw::Auto("10.0.0.1"), Gw::None);
    net.kind = "overlay".into();
    net.interface = "kov7".into();
    net.cluster = Some(ClusterScope { vni: 7, local: "192.0.2.1".parse().unwrap(), port: 4789, mtu: Some(1450) });
    net
}

fn peer() -> Peer {
    Peer { address: "10.0.0.3".parse().unwrap(), mac: [0x02, 0, 0, 0, 0, 0x03], host: "192.0.2.2".parse().unwrap() }
}

fn peers(add: Vec<Peer>, remove: Vec<Peer>) -> Call {
    Call::NetworkPeers { network: overlay(), add, remove }
}

#[test]
fn freebsd_overlay_is_a_bridge_with_a_vxlan_member_in_a_multicast_group() {
    let expected = [
        "ifconfig bridge create name kov7",
        "on_failure 'ifconfig kov7 destroy'",
        // Room for the tunnel's 50 bytes under a 1500-byte underlay, on every link.
        "ifconfig kov7 mtu 1450",
        "ifconfig kov7 inet 10.0.0.1/24 alias",
        "ifconfig kov7 up",
        // FreeBSD's vxlan(4) takes one group (or one remote), not per-MAC entries: the
        // network's hosts meet in 239.0.0.<VNI> and it learns where each container is.
        "ifconfig vxlan create name kvx7 vxlanid 7 vxlanlocal 192.0.2.1 vxlangroup 239.0.0.7 vxlanport 4789 vxlanlearn",
        "on_failure 'ifconfig kvx7 destroy'",
        "ifconfig kvx7 mtu 1450",
        "ifconfig kov7 addm kvx7",
        "ifconfig kvx7 up",
    ];
    let mut want = vec![guard_absent("kov7"), guard_absent("kvx7")];
    want.extend(lines(&expected));
    let got = freebsd(&Overlay, create(overlay()));
    assert_sh_syntax(&got);
    assert_eq!(got, want);
    assert_eq!(freebsd(&Overlay, remove(overlay())), lines(&["ifconfig kvx7 destroy", "ifconfig kov7 destroy"]));
}

#[test]
fn freebsd_has_no_static_entries_and_says_so() {
    let got = freebsd(&Overlay, peers(vec![peer()], vec![]));
    assert_eq!(
        got,
        lines(&[
            "# kvx7: 02:00:00:00:00:03 is at 192.0.2.2 (vxlan(4) learns it)",
            "# kvx7: 10.0.0.3 has 02:00:00:00:00:03 (answered by the container itself)",
        ])
    );
}

#[test]
fn linux_overlay_is_a_bridge_with_a_nolearning_vxlan_port() {
    let expected = [
        "ip link add kov7 type bridge",
        "ip link set kov7 address 02:00:00:00:00:02",
        "ip link set kov7 mtu 1450",
        "ip addr add 10.0.0.1/24 dev kov7",
        "ip link set kov7 up",
        "ip link add kvx7 type vxlan id 7 local 192.0.2.1 dstport 4789 nolearning proxy",
        "ip link set kvx7 mtu 1450",
        "ip link set kvx7 master kov7",
        "ip link set kvx7 up",
    ];
    assert_eq!(linux(&Overlay, create(overlay())), lines(&expected));
}

#[test]
fn linux_remote_containers_get_forwarding_then_neighbour_entries_and_lose_them_in_reverse() {
    let added = [
        "bridge fdb replace 02:00:00:00:00:03 dev kvx7 dst 192.0.2.2 self permanent",
        "ip neigh replace 10.0.0.3 lladdr 02:00:00:00:00:03 dev kvx7 nud permanent",
    ];
    assert_eq!(linux(&Overlay, peers(vec![peer()], vec![])), lines(&added));
    let removed = ["ip neigh del 10.0.0.3 dev kvx7", "bridge fdb del 02:00:00:00:00:03 dev kvx7 dst 192.0.2.2 self"];
    assert_eq!(linux(&Overlay, peers(vec![], vec![peer()])), lines(&removed));
    // Each entry's undo is its removal.
    let plan = plan_of(&Overlay, &peers(vec![peer()], vec![]));
    assert!(plan.steps.iter().all(|s| s.undo.len() == 1 && s.undo[0].is_teardown()));
}
