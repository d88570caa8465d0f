//! Golden tests: The vnet driver, planned by the real plugin and rendered as FreeBSD (reference,
//! section 5) and Linux command lines.

mod common;

use common::*;
use kleene_vnet::Vnet;

/// Two bridge networks: the first has only an IPv4 gateway, so the IPv6 default route
/// comes from the second.
fn vnet_pair() -> (Attachment, Attachment) {
    let first = attach(&bridge(Gw::Auto("10.0.0.1"), Gw::None), Some("10.0.0.2"), Some("fd00::2"));
    let second = attach(&bridge2(), Some("10.1.0.2"), Some("fd01::2"));
    (first, second)
}

#[test]
fn vnet_start_with_two_networks() {
    let (first, second) = vnet_pair();
    let jail = jail_c(&[
        "vnet",
        "vnet.interface=epair0b",
        r#"exec.prestart="ifconfig kleene1 addm epair0a""#,
        r#"exec.prestart="ifconfig epair0a up""#,
        r#"exec.start="ifconfig epair0b inet 10.0.0.2/24""#,
        r#"exec.start="route add -inet default 10.0.0.1""#,
        r#"exec.start="ifconfig epair0b inet6 fd00::2/64""#,
        "vnet.interface=epair1b",
        r#"exec.prestart="ifconfig kleene2 addm epair1a""#,
        r#"exec.prestart="ifconfig epair1a up""#,
        r#"exec.start="ifconfig epair1b inet 10.1.0.2/24""#,
        r#"exec.start="ifconfig epair1b inet6 fd01::2/64""#,
        r#"exec.start="route add -inet6 default fd01::fe""#,
    ]);
    let expected = vec!["ifconfig epair create".to_string(), "ifconfig epair create".to_string(), jail];
    assert_eq!(freebsd(&Vnet, start("vnet", vec![first, second])), expected);
}

#[test]
fn vnet_start_reports_the_pair_names_freebsd_chose() {
    let (first, _) = vnet_pair();
    let (_, facts) = render_with::<FreeBsdRenderer>(&Vnet, &start("vnet", vec![first]));
    let name = |planned: &str, actual: &str| Fact::LinkName { planned: planned.into(), actual: actual.into() };
    assert_eq!(facts, vec![name("kve00000000002", "epair0a"), name("eth0", "epair0b")]);
}

#[test]
fn vnet_stop() {
    let (first, second) = vnet_pair();
    let attachments = vec![running(first, "epair0a", "epair0b"), running(second, "epair1a", "epair1b")];
    let expected = [
        "ifconfig kleene1 deletem epair0a",
        "ifconfig epair0a destroy",
        "ifconfig kleene2 deletem epair1a",
        "ifconfig epair1a destroy",
        "jail -r c0ffee000001",
    ];
    assert_eq!(freebsd(&Vnet, stop("vnet", attachments)), lines(&expected));
}

#[test]
fn vnet_running_connect_moves_the_pair_into_the_jail() {
    let (first, second) = vnet_pair();
    let expected = [
        "ifconfig epair create",
        "ifconfig epair0b vnet c0ffee000001",
        "ifconfig kleene2 addm epair0a",
        "ifconfig epair0a up",
        "jexec c0ffee000001 ifconfig epair0b inet 10.1.0.2/24",
        "jexec c0ffee000001 ifconfig epair0b up",
        "jexec c0ffee000001 ifconfig epair0b inet6 fd01::2/64",
        "jexec c0ffee000001 route add -inet6 default fd01::fe",
    ];
    let others = vec![running(first, "epair3a", "eth0")];
    assert_eq!(freebsd(&Vnet, connect("vnet", second, others)), lines(&expected));
}

#[test]
fn vnet_running_disconnect() {
    let (first, second) = vnet_pair();
    let expected = ["ifconfig kleene2 deletem epair4a", "ifconfig epair4a destroy"];
    let (first, second) = (running(first, "epair3a", "eth0"), running(second, "epair4a", "eth1"));
    assert_eq!(freebsd(&Vnet, disconnect("vnet", second, vec![first])), lines(&expected));
}

#[test]
fn linux_vnet_start_and_stop() {
    let (first, _) = vnet_pair();
    let expected = [
        "mkdir <cgroup2>/kleene/c0ffee000001",
        "ip netns add c0ffee000001",
        "ip link add kve00000000002 type veth peer name eth0 netns c0ffee000001",
        "ip link set kve00000000002 master kleene1",
        "ip link set kve00000000002 up",
        "ip -n c0ffee000001 addr add 10.0.0.2/24 dev eth0",
        "ip -n c0ffee000001 link set eth0 up",
        "ip -n c0ffee000001 -4 route add default via 10.0.0.1",
        "ip -n c0ffee000001 addr add fd00::2/64 dev eth0",
    ];
    assert_eq!(linux(&Vnet, start("vnet", vec![first.clone()])), lines(&expected));
    let expected = [
        "ip link set kve00000000002 nomaster",
        "ip link del kve00000000002",
        "ip netns del c0ffee000001",
        "rmdir <cgroup2>/kleene/c0ffee000001",
    ];
    assert_eq!(linux(&Vnet, stop("vnet", vec![first])), lines(&expected));
}
