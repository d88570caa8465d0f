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

/// The host end of the pair for endpoint `e0000000000NN`: the planned name, which the script
/// gives the pair FreeBSD created.
const HOST_END_1: &str = "kve00000000002";
const HOST_END_2: &str = "kve00000000003";

#[test]
fn vnet_start_with_two_networks() {
    let (first, second) = vnet_pair();
    let jail = jail_c(&[
        "vnet",
        r#"vnet.interface="${pair0%a}b""#,
        r#"exec.prestart="ifconfig kve00000000002 inet6 -auto_linklocal""#,
        r#"exec.prestart="ifconfig kleene1 addm kve00000000002""#,
        r#"exec.prestart="ifconfig kve00000000002 up""#,
        r#"exec.start="ifconfig ${pair0%a}b inet 10.0.0.2/24""#,
        r#"exec.start="route add -inet default 10.0.0.1""#,
        r#"exec.start="ifconfig ${pair0%a}b inet6 fd00::2/64""#,
        r#"vnet.interface="${pair1%a}b""#,
        r#"exec.prestart="ifconfig kve00000000003 inet6 -auto_linklocal""#,
        r#"exec.prestart="ifconfig kleene2 addm kve00000000003""#,
        r#"exec.prestart="ifconfig kve00000000003 up""#,
        r#"exec.start="ifconfig ${pair1%a}b inet 10.1.0.2/24""#,
        r#"exec.start="ifconfig ${pair1%a}b inet6 fd01::2/64""#,
        r#"exec.start="route add -inet6 default fd01::fe""#,
    ]);
    let mut expected = lines(&[
        "pair0=$(ifconfig epair create)",
        r#"ifconfig "$pair0" name kve00000000002 >/dev/null"#,
        "on_failure 'ifconfig kve00000000002 destroy'",
        "pair1=$(ifconfig epair create)",
        r#"ifconfig "$pair1" name kve00000000003 >/dev/null"#,
        "on_failure 'ifconfig kve00000000003 destroy'",
    ]);
    expected.extend([jail, "on_failure 'jail -r c0ffee000001'".into()]);
    assert_eq!(freebsd(&Vnet, start("vnet", vec![first, second])), expected);
}

/// A second vnet container starts while the first holds a pair (FreeBSD hands the new pair
/// the lowest free unit, `epair1` here): nothing in its script assumes a unit number, and its
/// host end gets its own planned name.
#[test]
fn a_second_vnet_container_names_no_epair_unit() {
    let net = bridge(Gw::Auto("10.0.0.1"), Gw::None);
    let mut second = attach(&net, Some("10.0.0.3"), None);
    second.endpoint.id = "e0000000000f".into();
    second.endpoint.container_id = "c0ffee000002".into();
    let container = Container { id: "c0ffee000002".into(), name: "db".into(), driver: "vnet".into(), running: false };
    let call = Call::ContainerStart { container, attachments: vec![second] };
    let expected = [
        "pair0=$(ifconfig epair create)",
        r#"ifconfig "$pair0" name kve0000000000f >/dev/null"#,
        "on_failure 'ifconfig kve0000000000f destroy'",
        r#"jail -c path=/ name=c0ffee000002 persist vnet vnet.interface="${pair0%a}b" exec.prestart="ifconfig kve0000000000f inet6 -auto_linklocal" exec.start="ifconfig ${pair0%a}b inet6 -auto_linklocal" exec.prestart="ifconfig kleene1 addm kve0000000000f" exec.prestart="ifconfig kve0000000000f up" exec.start="ifconfig ${pair0%a}b inet 10.0.0.3/24" exec.start="route add -inet default 10.0.0.1""#,
        "on_failure 'jail -r c0ffee000002'",
    ];
    assert_eq!(freebsd(&Vnet, call), lines(&expected));
}

/// A container whose first random id was all digits (jail(8) would read `123456789012` as a
/// jail number): the id source is drawn again, and the jail is named by the second draw.
#[test]
fn a_container_whose_id_would_have_been_all_digits() {
    let mut draws = [[0x12, 0x34, 0x56, 0x78, 0x90, 0x12], [0xc0, 0xff, 0xee, 0x00, 0x00, 0x03]].into_iter();
    let id = kleene::state::new_id_from(&mut |b| *b = draws.next().unwrap());
    let container = Container { id, name: "web".into(), driver: "vnet".into(), running: false };
    let script = freebsd(&Vnet, Call::ContainerStart { container, attachments: vec![] });
    let expected = ["jail -c path=/ name=c0ffee000003 persist vnet", "on_failure 'jail -r c0ffee000003'"];
    assert_eq!(script, lines(&expected));
}

#[test]
fn vnet_stop() {
    let (first, second) = vnet_pair();
    let attachments = vec![running(first, HOST_END_1, "eth0"), running(second, HOST_END_2, "eth1")];
    let expected = [
        "ifconfig kleene1 deletem kve00000000002",
        "ifconfig kve00000000002 destroy",
        "ifconfig kleene2 deletem kve00000000003",
        "ifconfig kve00000000003 destroy",
        "jail -r c0ffee000001",
    ];
    assert_eq!(freebsd(&Vnet, stop("vnet", attachments)), lines(&expected));
}

/// Connecting a running vnet container, whose first pair is already there: the new pair is
/// whatever unit FreeBSD hands out, renamed, and its jail end moved into the running jail.
#[test]
fn vnet_running_connect_moves_the_pair_into_the_jail() {
    let (first, second) = vnet_pair();
    let expected = [
        "pair0=$(ifconfig epair create)",
        r#"ifconfig "$pair0" name kve00000000003 >/dev/null"#,
        "on_failure 'ifconfig kve00000000003 destroy'",
        r#"ifconfig "${pair0%a}b" vnet c0ffee000001"#,
        "ifconfig kve00000000003 inet6 -auto_linklocal",
        "ifconfig kleene2 addm kve00000000003",
        "ifconfig kve00000000003 up",
        r#"jexec c0ffee000001 ifconfig "${pair0%a}b" inet 10.1.0.2/24"#,
        r#"jexec c0ffee000001 ifconfig "${pair0%a}b" up"#,
        r#"jexec c0ffee000001 ifconfig "${pair0%a}b" inet6 fd01::2/64"#,
        "jexec c0ffee000001 route add -inet6 default fd01::fe",
    ];
    let others = vec![running(first, HOST_END_1, "eth0")];
    assert_eq!(freebsd(&Vnet, connect("vnet", second, others)), lines(&expected));
}

#[test]
fn vnet_running_disconnect() {
    let (first, second) = vnet_pair();
    let expected = ["ifconfig kleene2 deletem kve00000000003", "ifconfig kve00000000003 destroy"];
    let (first, second) = (running(first, HOST_END_1, "eth0"), running(second, HOST_END_2, "eth1"));
    assert_eq!(freebsd(&Vnet, disconnect("vnet", second, vec![first])), lines(&expected));
}

/// Runs a rendered script with `sh`, ifconfig/jail/jexec/route replaced by functions that log
/// their arguments (and `ifconfig epair create` answering `epair5a`, a unit the renderer
/// cannot have guessed); `failing` names the command that fails. Returns the log.
fn run_with_stubs(call: Call, failing: &str) -> (Option<i32>, String) {
    let renderer = render_with::<FreeBsdRenderer>(&Vnet, &call);
    let stubs = format!(
        r#"stub() {{ echo "$*" >&2; [ "$1" != "{failing}" ]; }}
ifconfig() {{ stub ifconfig "$@" && if [ "$*" = "epair create" ]; then echo epair5a; fi; }}
jail() {{ stub jail "$@"; }}
jexec() {{ stub jexec "$@"; }}"#
    );
    let script = renderer.script();
    let (prologue, body) = script.split_at(kleene::executor::freebsd::PROLOGUE.len());
    let text = [prologue.join("\n"), stubs, body.join("\n")].join("\n");
    let out = std::process::Command::new("sh").arg("-c").arg(&text).output().unwrap();
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn the_script_uses_the_pair_freebsd_created_and_undoes_it_on_failure() {
    let (first, second) = vnet_pair();
    let call = || connect("vnet", second.clone(), vec![running(first.clone(), HOST_END_1, "eth0")]);
    let (code, log) = run_with_stubs(call(), "none");
    assert_eq!(code, Some(0), "{log}");
    let expected = "ifconfig epair create\nifconfig epair5a name kve00000000003\nifconfig epair5b vnet c0ffee000001\n\
                    ifconfig kve00000000003 inet6 -auto_linklocal\n\
                    ifconfig kleene2 addm kve00000000003\nifconfig kve00000000003 up\n\
                    jexec c0ffee000001 ifconfig epair5b inet 10.1.0.2/24\n";
    assert!(log.starts_with(expected), "{log}");
    // jexec fails: the script stops there and destroys the pair it created.
    let (code, log) = run_with_stubs(call(), "jexec");
    assert_eq!(code, Some(1), "{log}");
    let tail =
        "jexec c0ffee000001 ifconfig epair5b inet 10.1.0.2/24\nkleene: undoing\nifconfig kve00000000003 destroy\n";
    assert!(log.ends_with(tail), "{log}");
}

#[test]
fn linux_vnet_start_and_stop() {
    let (first, _) = vnet_pair();
    let expected = [
        "mkdir <cgroup2>/kleene/c0ffee000001",
        "ip netns add c0ffee000001",
        "ip link add kve00000000002 type veth peer name eth0 netns c0ffee000001",
        "ip link set kve00000000002 addrgenmode none",
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

/// A rolled-back stop gives each attachment back as start built it: the undo of each pair's
/// deletion is start's steps for that attachment (the default route of a family only where
/// start gave one), and the sandbox's destruction is undone by its creation.
#[test]
fn a_stop_is_undone_by_what_start_did() {
    let (first, second) = vnet_pair();
    let attachments = vec![running(first, HOST_END_1, "eth0"), running(second, HOST_END_2, "eth1")];
    let start = plan_of(&Vnet, &start("vnet", attachments.clone()));
    let stop = plan_of(&Vnet, &stop("vnet", attachments));
    let (sandbox, joins) = start.steps.split_first().unwrap();
    let joins: Vec<Op> = joins.iter().map(|s| s.op.clone()).collect();
    let rejoins: Vec<Op> =
        stop.steps.iter().filter(|s| matches!(s.op, Op::DeletePair { .. })).flat_map(|s| s.undo.clone()).collect();
    assert_eq!(rejoins, joins);
    assert_eq!(stop.steps.last().unwrap().undo, vec![sandbox.op.clone()]);
}

/// Docker's Join (`runtime_join`): a pair with both ends on the host, the host end on the
/// bridge; nothing inside the sandbox (Docker moves the peer and configures it). Its leave
/// deletes the host end, wherever the peer is by then.
#[test]
fn runtime_join_hands_a_host_pair_to_the_runtime() {
    let net = bridge(Gw::Auto("10.0.0.1"), Gw::None);
    let a = attach(&net, Some("10.0.0.2"), None);
    let join = Call::RuntimeJoin { container: container("vnet", true), attachment: a.clone() };
    assert_eq!(
        linux(&Vnet, join.clone()),
        lines(&[
            "ip link add kve00000000002 type veth peer name kwe00000000002",
            "ip link set kve00000000002 addrgenmode none",
            "ip link set kve00000000002 master kleene1",
            "ip link set kve00000000002 up",
        ])
    );
    assert_eq!(
        freebsd(&Vnet, join),
        lines(&[
            "pair0=$(ifconfig epair create)",
            r#"ifconfig "${pair0%a}b" name kwe00000000002 >/dev/null"#,
            r#"ifconfig "$pair0" name kve00000000002 >/dev/null"#,
            "on_failure 'ifconfig kve00000000002 destroy'",
            "ifconfig kve00000000002 inet6 -auto_linklocal",
            "ifconfig kleene1 addm kve00000000002",
            "ifconfig kve00000000002 up",
        ])
    );
    let leave =
        Call::RuntimeLeave { container: container("vnet", true), attachment: running(a, HOST_END_1, "kwe00000000002") };
    assert_eq!(linux(&Vnet, leave), lines(&["ip link set kve00000000002 nomaster", "ip link del kve00000000002"]));
}

/// On a cluster-scoped network an endpoint has a fixed MAC, which the container's end of the
/// pair gets before it comes up (the other hosts forward to it by that address).
#[test]
fn vnet_gives_a_fixed_mac_to_the_containers_end() {
    let mut a = attach(&bridge(Gw::Auto("10.0.0.1"), Gw::None), Some("10.0.0.2"), None);
    a.endpoint.mac = Some([0x02, 0, 0, 0, 0, 0x02]);
    let jail = jail_c(&[
        "vnet",
        r#"vnet.interface="${pair0%a}b""#,
        r#"exec.prestart="ifconfig kve00000000002 inet6 -auto_linklocal""#,
        r#"exec.start="ifconfig ${pair0%a}b inet6 -auto_linklocal""#,
        r#"exec.prestart="ifconfig kleene1 addm kve00000000002""#,
        r#"exec.prestart="ifconfig kve00000000002 up""#,
        r#"exec.start="ifconfig ${pair0%a}b ether 02:00:00:00:00:02""#,
        r#"exec.start="ifconfig ${pair0%a}b inet 10.0.0.2/24""#,
        r#"exec.start="route add -inet default 10.0.0.1""#,
    ]);
    let mut expected = lines(&[
        "pair0=$(ifconfig epair create)",
        r#"ifconfig "$pair0" name kve00000000002 >/dev/null"#,
        "on_failure 'ifconfig kve00000000002 destroy'",
    ]);
    expected.extend([jail, "on_failure 'jail -r c0ffee000001'".into()]);
    assert_eq!(freebsd(&Vnet, start("vnet", vec![a.clone()])), expected);
    let linux = linux(&Vnet, start("vnet", vec![a]));
    let mac = linux.iter().position(|l| l == "ip -n c0ffee000001 link set eth0 address 02:00:00:00:00:02");
    let up = linux.iter().position(|l| l == "ip -n c0ffee000001 link set eth0 up");
    assert!(mac.is_some() && mac < up, "the MAC is set before eth0 comes up: {linux:?}");
}

/// A network whose links carry a tunnel's headers (an overlay's, under a 1500-byte underlay).
fn tunnelled() -> Network {
    let mut net = bridge(Gw::Auto("10.0.0.1"), Gw::None);
    net.cluster = Some(kleene_plugin_api::ClusterScope {
        vni: 7,
        local: "192.0.2.1".parse().unwrap(),
        port: 4789,
        mtu: Some(1450),
    });
    net
}

#[test]
fn a_tunnelled_network_gets_its_mtu_on_both_ends_of_the_epair() {
    let got = freebsd(&Vnet, start("vnet", vec![attach(&tunnelled(), Some("10.0.0.2"), None)]));
    assert_sh_syntax(&got);
    // The host end before it joins the bridge (if_bridge refuses a member of another MTU),
    // the jail's end before its address.
    let expected = [
        "pair0=$(ifconfig epair create)",
        r#"ifconfig "$pair0" name kve00000000002 >/dev/null"#,
        "on_failure 'ifconfig kve00000000002 destroy'",
        r#"jail -c path=/ name=c0ffee000001 persist vnet vnet.interface="${pair0%a}b" exec.prestart="ifconfig kve00000000002 mtu 1450" exec.start="ifconfig ${pair0%a}b mtu 1450" exec.prestart="ifconfig kve00000000002 inet6 -auto_linklocal" exec.start="ifconfig ${pair0%a}b inet6 -auto_linklocal" exec.prestart="ifconfig kleene1 addm kve00000000002" exec.prestart="ifconfig kve00000000002 up" exec.start="ifconfig ${pair0%a}b inet 10.0.0.2/24" exec.start="route add -inet default 10.0.0.1""#,
        "on_failure 'jail -r c0ffee000001'",
    ];
    assert_eq!(got, lines(&expected));
}
