//! Golden tests: The ipnet driver, planned by the real plugin and rendered as FreeBSD (reference,
//! section 5) and Linux command lines.

mod common;

use common::*;
use kleene_ipnet::Ipnet;

fn ipnet_pair() -> (Attachment, Attachment) {
    let lo = attach(&loopback(), Some("10.2.0.1"), Some("fd02::1"));
    let br = attach(&bridge(Gw::Auto("10.0.0.1"), Gw::Auto("fd00::1")), Some("10.0.0.2"), Some("fd00::2"));
    (lo, br)
}

#[test]
fn ipnet_start_with_two_networks() {
    let (lo, br) = ipnet_pair();
    // The aliases' removal is registered first: jail(8) adds them as it starts the jail.
    let mut expected = lines(&[
        "on_failure 'ifconfig kleene0 inet 10.2.0.1 -alias'",
        "on_failure 'ifconfig kleene0 inet6 fd02::1 -alias'",
        "on_failure 'ifconfig kleene1 inet 10.0.0.2 -alias'",
        "on_failure 'ifconfig kleene1 inet6 fd00::2 -alias'",
    ]);
    expected.extend(jail_c_registered(&[
        r#"exec.prestart="ifconfig kleene0 inet 10.2.0.1/32 alias""#,
        r#"exec.prestart="ifconfig kleene0 inet6 fd02::1/128 alias""#,
        r#"exec.prestart="ifconfig kleene1 inet 10.0.0.2/32 alias""#,
        r#"exec.prestart="ifconfig kleene1 inet6 fd00::2/128 alias""#,
        "ip4.addr=10.2.0.1,10.0.0.2",
        "ip6.addr=fd02::1,fd00::2",
    ]));
    assert_eq!(freebsd(&Ipnet, start("ipnet", vec![lo, br])), expected);
}

#[test]
fn ipnet_start_without_ipv6_disables_it() {
    let lo = attach(&loopback(), Some("10.2.0.1"), None);
    let mut expected = lines(&["on_failure 'ifconfig kleene0 inet 10.2.0.1 -alias'"]);
    expected.extend(jail_c_registered(&[
        r#"exec.prestart="ifconfig kleene0 inet 10.2.0.1/32 alias""#,
        "ip4.addr=10.2.0.1",
        "ip6=disable",
    ]));
    assert_eq!(freebsd(&Ipnet, start("ipnet", vec![lo])), expected);
}

#[test]
fn ipnet_start_without_networks() {
    assert_eq!(freebsd(&Ipnet, start("ipnet", vec![])), jail_c_registered(&["ip4=disable", "ip6=disable"]));
}

#[test]
fn ipnet_stop() {
    let (lo, br) = ipnet_pair();
    let expected = [
        "ifconfig kleene0 inet 10.2.0.1 -alias",
        "ifconfig kleene0 inet6 fd02::1 -alias",
        "ifconfig kleene1 inet 10.0.0.2 -alias",
        "ifconfig kleene1 inet6 fd00::2 -alias",
        "jail -r c0ffee000001",
    ];
    assert_eq!(freebsd(&Ipnet, stop("ipnet", vec![lo, br])), lines(&expected));
}

#[test]
fn ipnet_running_connect_puts_ipv6_into_ip6_addr() {
    let (lo, br) = ipnet_pair();
    let expected = [
        "ifconfig kleene1 inet 10.0.0.2/32 alias",
        "on_failure 'ifconfig kleene1 inet 10.0.0.2 -alias'",
        "ifconfig kleene1 inet6 fd00::2/128 alias",
        "on_failure 'ifconfig kleene1 inet6 fd00::2 -alias'",
        "jail -m name=c0ffee000001 ip4.addr=10.2.0.1,10.0.0.2 ip6.addr=fd02::1,fd00::2",
    ];
    assert_eq!(freebsd(&Ipnet, connect("ipnet", br, vec![lo])), lines(&expected));
}

#[test]
fn ipnet_running_disconnect_removes_both_families() {
    let (lo, br) = ipnet_pair();
    let expected = [
        "jail -m name=c0ffee000001 ip4.addr=10.2.0.1 ip6.addr=fd02::1",
        "ifconfig kleene1 inet 10.0.0.2 -alias",
        "ifconfig kleene1 inet6 fd00::2 -alias",
    ];
    assert_eq!(freebsd(&Ipnet, disconnect("ipnet", br, vec![lo])), lines(&expected));
}

#[test]
fn ipnet_disconnect_of_the_last_network_empties_the_lists() {
    let (lo, _) = ipnet_pair();
    let expected = [
        "jail -m name=c0ffee000001 ip4.addr= ip6.addr=",
        "ifconfig kleene0 inet 10.2.0.1 -alias",
        "ifconfig kleene0 inet6 fd02::1 -alias",
    ];
    assert_eq!(freebsd(&Ipnet, disconnect("ipnet", lo, vec![])), lines(&expected));
}

#[test]
fn linux_ipnet_start() {
    let (lo, br) = ipnet_pair();
    let expected = [
        "mkdir <cgroup2>/kleene/c0ffee000001",
        "ip addr add 10.2.0.1/32 dev kleene0",
        "ip addr add fd02::1/128 dev kleene0",
        "ip addr add 10.0.0.2/32 dev kleene1",
        "ip addr add fd00::2/128 dev kleene1",
        "# restrict c0ffee000001 to 10.2.0.1, fd02::1, 10.0.0.2, fd00::2 (cgroup BPF)",
    ];
    assert_eq!(linux(&Ipnet, start("ipnet", vec![lo, br])), lines(&expected));
}
