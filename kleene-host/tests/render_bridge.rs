//! Golden tests: Bridge networks, planned by the real plugin and rendered as FreeBSD (reference,
//! section 5) and Linux command lines.

mod common;

use common::*;
use kleene_bridge::Bridge;

#[test]
fn bridge_without_subnets() {
    let net = network(2, "bridge", "kleene1");
    let expected =
        ["ifconfig bridge create name kleene1", "on_failure 'ifconfig kleene1 destroy'", "ifconfig kleene1 up"];
    assert_eq!(freebsd(&Bridge, create(net)), guarded("kleene1", &expected));
}

#[test]
fn bridge_holds_auto_gateways() {
    let net = bridge(Gw::Auto("10.0.0.1"), Gw::Auto("fd00::1"));
    // The gateway addresses go with the bridge: only the bridge is removed on failure.
    let expected = [
        "ifconfig bridge create name kleene1",
        "on_failure 'ifconfig kleene1 destroy'",
        "ifconfig kleene1 inet 10.0.0.1/24 alias",
        "ifconfig kleene1 inet6 fd00::1/64 alias",
        "ifconfig kleene1 up",
    ];
    assert_eq!(freebsd(&Bridge, create(net.clone())), guarded("kleene1", &expected));
    assert_eq!(freebsd(&Bridge, remove(net)), lines(&["ifconfig kleene1 destroy"]));
}

#[test]
fn bridge_with_explicit_or_no_gateway_holds_no_address() {
    let expected = guarded(
        "kleene1",
        &["ifconfig bridge create name kleene1", "on_failure 'ifconfig kleene1 destroy'", "ifconfig kleene1 up"],
    );
    for (v4, v6) in [(Gw::Explicit("10.0.0.254"), Gw::Explicit("fd00::fe")), (Gw::None, Gw::None)] {
        assert_eq!(freebsd(&Bridge, create(bridge(v4, v6))), expected);
    }
}

#[test]
fn bridge_with_one_auto_family() {
    let net = bridge(Gw::Explicit("10.0.0.254"), Gw::Auto("fd00::1"));
    let expected = [
        "ifconfig bridge create name kleene1",
        "on_failure 'ifconfig kleene1 destroy'",
        "ifconfig kleene1 inet6 fd00::1/64 alias",
        "ifconfig kleene1 up",
    ];
    assert_eq!(freebsd(&Bridge, create(net)), guarded("kleene1", &expected));
}

#[test]
fn linux_bridge_create() {
    let net = bridge(Gw::Auto("10.0.0.1"), Gw::Auto("fd00::1"));
    let expected = [
        "ip link add kleene1 type bridge",
        // A MAC of its own (the network id's bytes), never a port's; FreeBSD's has one.
        "ip link set kleene1 address 02:00:00:00:00:02",
        "ip addr add 10.0.0.1/24 dev kleene1",
        "ip addr add fd00::1/64 dev kleene1",
        "ip link set kleene1 up",
    ];
    assert_eq!(linux(&Bridge, create(net)), lines(&expected));
}

/// A rolled-back `network rm` gives the bridge back as create made it (its MAC, gateways,
/// up), not a bare, down bridge.
#[test]
fn removing_a_bridge_is_undone_by_creating_it_again() {
    let net = bridge(Gw::Auto("10.0.0.1"), Gw::Auto("fd00::1"));
    let created: Vec<Op> = plan_of(&Bridge, &create(net.clone())).steps.into_iter().map(|s| s.op).collect();
    let removal = plan_of(&Bridge, &remove(net));
    assert_eq!(removal.steps.len(), 1);
    assert_eq!(removal.steps[0].undo, created);
    assert_eq!(created.len(), 5, "link, MAC, two gateways, up: {created:?}");
}
