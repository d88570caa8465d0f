//! Golden tests of both renderers, the publish grammar, and `nft` check/apply runs inside a
//! throwaway network namespace (`unshare -n`; skipped when not root or nft is missing).
//!
//! Golden files live in `testdata/`; regenerate with `KLEENE_BLESS=1 cargo test` and review
//! the diff. pfctl is not available on Linux: `kleene-host/tests/pf_grammar.rs` checks the pf
//! golden files (and a matrix of rendered anchors) with pfctl's own grammar.

use super::*;
use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

fn net(name: &str, kind: &str, iface: &str, v4: Option<&str>, v6: Option<&str>) -> Network {
    let subnet: Option<Cidr> = v4.map(|s| s.parse().unwrap());
    let subnet6: Option<Cidr> = v6.map(|s| s.parse().unwrap());
    let bridge = kind == "bridge";
    let first = |c: Option<Cidr>| c.filter(|_| bridge).map(|c| from_bits(c.addr, to_bits(c.network()) + 1));
    Network {
        subnet,
        subnet6,
        gateway: first(subnet),
        gateway_auto: bridge,
        gateway6: first(subnet6),
        gateway6_auto: bridge && subnet6.is_some(),
        nat: "eth0".into(),
        ..Network::new(&format!("{name}0000000000")[..12], name, kind, iface)
    }
}

use kleene_plugin_api::model::{from_bits, to_bits};

fn ep(name: &str, driver: &str, v4: Option<&str>, v6: Option<&str>, publish: &[&str]) -> FwEndpoint {
    FwEndpoint {
        container: format!("{name}-id"),
        name: name.into(),
        // What each built-in driver declares.
        stack: match driver {
            "vnet" => Stack::Private,
            "ipnet" => Stack::Restricted,
            "host" => Stack::Host,
            _ => Stack::Disabled,
        },
        running: true,
        v4: v4.map(|a| a.parse().unwrap()),
        v6: v6.map(|a| a.parse().unwrap()),
        published: publish.iter().map(|s| parse_publish(s).unwrap()).collect(),
    }
}

fn fw(network: Network, endpoints: Vec<FwEndpoint>, epairs: &[&str]) -> FwNetwork {
    let forwarded = network.kind != "loopback";
    FwNetwork { network, forwarded, endpoints, epairs: epairs.iter().map(|s| s.to_string()).collect(), dns: false }
}

fn ruleset(networks: Vec<FwNetwork>) -> Ruleset {
    Ruleset { networks, host_gw_if: "eth0".into() }
}

/// One bridge network `web` (10.10.0.0/24) with one vnet container, tweaked by `f`.
fn one_bridge(f: impl FnOnce(&mut Network)) -> Ruleset {
    let mut n = net("web", "bridge", "kleene0", Some("10.10.0.0/24"), None);
    f(&mut n);
    ruleset(vec![fw(n, vec![ep("app", "vnet", Some("10.10.0.2"), None, &[])], &["veth0"])])
}

fn scenarios() -> Vec<(&'static str, Ruleset)> {
    vec![
        ("bridge_nat_icc", one_bridge(|_| {})),
        ("no_icc", one_bridge(|n| n.icc = false)),
        ("internal", one_bridge(|n| n.internal = true)),
        ("no_nat", one_bridge(|n| n.nat.clear())),
        ("two_networks", two_networks()),
        ("v6", v6()),
        ("published", published()),
        ("dns", dns()),
    ]
}

fn two_networks() -> Ruleset {
    let a = net("front", "bridge", "kleene0", Some("10.10.0.0/24"), None);
    let mut b = net("back", "loopback", "kleene1", Some("10.20.0.0/24"), None);
    b.nat = "eth1".into();
    ruleset(vec![
        fw(a, vec![ep("web", "vnet", Some("10.10.0.2"), None, &[])], &["veth0"]),
        fw(b, vec![ep("db", "ipnet", Some("10.20.0.1"), None, &[])], &[]),
    ])
}

fn v6() -> Ruleset {
    let mut a = net("dual", "bridge", "kleene0", Some("10.10.0.0/24"), Some("fd00:10::/64"));
    a.icc = false;
    let mut b = net("only6", "loopback", "kleene1", None, Some("fd00:20::/64"));
    b.internal = true;
    ruleset(vec![
        fw(a, vec![ep("web", "vnet", Some("10.10.0.2"), Some("fd00:10::2"), &["8080:80"])], &["veth0"]),
        fw(b, vec![ep("db", "ipnet", None, Some("fd00:20::1"), &["5432"])], &[]),
    ])
}

/// Container DNS on an internal network without icc (v4 and v6), beside one without DNS.
fn dns() -> Ruleset {
    let mut n = net("closed", "bridge", "kleene0", Some("10.10.0.0/24"), Some("fd00:10::/64"));
    (n.internal, n.icc) = (true, false);
    let mut closed = fw(n, vec![ep("web", "vnet", Some("10.10.0.2"), Some("fd00:10::2"), &[])], &["veth0"]);
    closed.dns = true;
    let quiet = fw(net("quiet", "bridge", "kleene1", Some("10.20.0.0/24"), None), vec![], &[]);
    ruleset(vec![closed, quiet])
}

fn published() -> Ruleset {
    let a = net("front", "bridge", "kleene0", Some("10.10.0.0/24"), None);
    let b = net("back", "loopback", "kleene1", Some("10.20.0.0/24"), None);
    let web = ep("web", "vnet", Some("10.10.0.2"), None, &["8080:80", "53/udp", "8000-8009:9000-*", "eth1:2222:22"]);
    let mut stopped = ep("stopped", "vnet", Some("10.10.0.3"), None, &["9999"]);
    stopped.running = false;
    let db = ep("db", "ipnet", Some("10.20.0.1"), None, &["5432", "7000-7002/udp"]);
    ruleset(vec![fw(a, vec![web, stopped], &["veth0"]), fw(b, vec![db], &[])])
}

fn golden(name: &str, ext: &str, actual: &str) {
    let path: PathBuf =
        [env!("CARGO_MANIFEST_DIR"), "src", "firewall", "testdata", &format!("{name}.{ext}")].iter().collect();
    if std::env::var_os("KLEENE_BLESS").is_some() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e} (KLEENE_BLESS=1?)", path.display()));
    assert_eq!(actual, expected, "{} differs from the rendering (KLEENE_BLESS=1 to update)", path.display());
}

#[test]
fn golden_nft() {
    for (name, r) in scenarios() {
        golden(name, "nft", &nft::render(&r));
    }
}

#[test]
fn golden_pf() {
    for (name, r) in scenarios() {
        golden(name, "pf", &pf::render(&r));
    }
}

#[test]
fn stopped_and_host_containers_publish_nothing() {
    let r = published();
    let text = nft::render(&r);
    assert!(!text.contains("9999"), "a stopped container's port was rendered");
    assert!(!pf::render(&r).contains("9999"));
    let mut host = ep("h", "host", None, None, &["80"]);
    host.v4 = Some("10.10.0.9".parse().unwrap());
    let r = one_bridge(|_| {});
    let mut r2 = r.clone();
    r2.networks[0].endpoints.push(host);
    assert_eq!(redirects(&r2).len(), 0);
}

#[test]
fn internal_networks_do_not_nat_or_publish() {
    let mut r = one_bridge(|n| n.internal = true);
    r.networks[0].endpoints[0].published.push(parse_publish("80").unwrap());
    assert!(redirects(&r).is_empty());
    assert!(!pf::render(&r).contains("nat on"));
    assert!(!nft::render(&r).contains("\"eth0\" comment"));
}

#[test]
fn publish_refused_for_host_and_disabled() {
    assert_eq!(
        check_can_publish("host", Stack::Host).unwrap_err(),
        "cannot publish ports of a container using the 'host' network driver"
    );
    assert!(check_can_publish("disabled", Stack::Disabled).is_err());
    assert!(check_can_publish("x", Stack::Private).is_ok() && check_can_publish("y", Stack::Restricted).is_ok());
}

#[test]
fn parse_publish_valid() {
    let p =
        |i: Option<&str>, host, container, proto| Published { interface: i.map(Into::into), host, container, proto };
    let cases = [
        ("80", p(None, (80, 80), (80, 80), Proto::Tcp)),
        ("8080:80", p(None, (8080, 8080), (80, 80), Proto::Tcp)),
        ("8080:80/udp", p(None, (8080, 8080), (80, 80), Proto::Udp)),
        ("53/udp", p(None, (53, 53), (53, 53), Proto::Udp)),
        ("em0:8080:80/tcp", p(Some("em0"), (8080, 8080), (80, 80), Proto::Tcp)),
        ("eth0:443", p(Some("eth0"), (443, 443), (443, 443), Proto::Tcp)),
        ("8000-8010", p(None, (8000, 8010), (8000, 8010), Proto::Tcp)),
        ("8000-8010:*", p(None, (8000, 8010), (8000, 8010), Proto::Tcp)),
        ("8000-8010:9000-*", p(None, (8000, 8010), (9000, 9010), Proto::Tcp)),
        ("8000-8010:9000-9010", p(None, (8000, 8010), (9000, 9010), Proto::Tcp)),
        ("8000-8010:80", p(None, (8000, 8010), (80, 80), Proto::Tcp)),
        ("65535", p(None, (65535, 65535), (65535, 65535), Proto::Tcp)),
    ];
    for (spec, want) in cases {
        assert_eq!(parse_publish(spec), Ok(want), "{spec}");
    }
}

#[test]
fn parse_publish_invalid() {
    let syntax = "expected [IF:]HOST[-END][:CONTAINER|:C-*|:C-CEND|:*][/tcp|/udp], e.g. 8080:80/tcp";
    let cases = [
        ("", r#"bad port "" (ports are 1-65535)"#),
        ("0", r#"bad port "0" (ports are 1-65535)"#),
        ("70000", r#"bad port "70000" (ports are 1-65535)"#),
        ("http", r#"bad port "http" (ports are 1-65535)"#),
        ("80/sctp", r#"unknown protocol "sctp" (use tcp or udp)"#),
        ("8000:8010:9000", "too many ':' (write port ranges as A-B)"),
        ("eth0:80:81:82", "too many ':' (write port ranges as A-B)"),
        ("8010-8000", r#"range "8010-8000" runs backwards (write 8000-8010)"#),
        ("8000-8010:9000-9005", r#"container range "9000-9005" is not as long as the host range (or use N-*)"#),
        ("65000-65010:65530-*", r#"container range "65530-*" runs past 65535"#),
        (
            "averyveryverylongifname:80",
            "invalid interface name 'averyveryverylongifname': use 1-15 letters, digits, '_', '.' or '-', starting with a letter or digit",
        ),
        (
            "et\"h0:80",
            "invalid interface name 'et\"h0': use 1-15 letters, digits, '_', '.' or '-', starting with a letter or digit",
        ),
        ("eth0:", r#"bad port "" (ports are 1-65535)"#),
    ];
    for (spec, why) in cases {
        let want = format!("invalid published port {spec:?}: {why}; {syntax}");
        assert_eq!(parse_publish(spec), Err(want), "{spec}");
    }
}

/// Runs `sh -c script` with FILE set, in a new network namespace; None when that is impossible.
fn in_netns(script: &str, file: &std::path::Path) -> Option<std::process::Output> {
    let nft = std::path::Path::new("/usr/sbin/nft");
    let root =
        std::fs::read_to_string("/proc/self/status").is_ok_and(|s| s.lines().any(|l| l.starts_with("Uid:\t0\t")));
    if !nft.exists() || !root {
        eprintln!("skipped: needs root and /usr/sbin/nft");
        return None;
    }
    let out = Command::new("unshare").args(["-n", "sh", "-c", script]).env("FILE", file).output().ok()?;
    Some(out)
}

fn temp_file(name: &str, text: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!("kleene-fw-{}-{name}.nft", std::process::id()));
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn nft_check_mode_accepts_every_scenario() {
    for (name, r) in scenarios() {
        let file = temp_file(name, &nft::render(&r));
        let Some(out) = in_netns("/usr/sbin/nft -c -f \"$FILE\"", &file) else { return };
        let _ = std::fs::remove_file(&file);
        assert!(out.status.success(), "{name}: {}", String::from_utf8_lossy(&out.stderr));
    }
}

/// `n` networks (every third without icc, every seventh internal) and `ports` published ports
/// spread over the containers of the non-internal networks.
fn big(n: usize, ports: usize) -> Ruleset {
    let mut r = ruleset((0..n).map(big_network).collect());
    let open: Vec<usize> = (0..n).filter(|i| !r.networks[*i].network.internal).collect();
    for k in 0..ports {
        let spec = format!("{}:80", 10000 + k);
        r.networks[open[k % open.len()]].endpoints[0].published.push(parse_publish(&spec).unwrap());
    }
    r
}

fn big_network(i: usize) -> FwNetwork {
    let (hi, lo) = (i / 250, i % 250);
    let v4 = format!("10.{hi}.{lo}.0/24");
    let v6 = format!("fd00:{i:x}::/64");
    let mut nw = net(&format!("n{i}"), "bridge", &format!("kleene{i}"), Some(&v4), Some(&v6));
    nw.icc = i % 3 != 0;
    nw.internal = i % 7 == 0;
    let e = ep(&format!("c{i}"), "vnet", Some(&format!("10.{hi}.{lo}.2")), Some(&format!("fd00:{i:x}::2")), &[]);
    // Every tenth serves DNS (an interval concatenation: its elements load slowest).
    FwNetwork { dns: i % 10 == 0, ..fw(nw, vec![e], &[]) }
}

#[test]
fn nft_applies_1000_networks_and_ports() {
    let r = big(1000, 1000);
    let t = Instant::now();
    let text = nft::render(&r);
    let render = t.elapsed();
    let file = temp_file("big", &text);
    let script = "/usr/sbin/nft -f \"$FILE\" || exit 1; a=$(date +%s%N); /usr/sbin/nft -f \"$FILE\" || exit 1; \
                  b=$(date +%s%N); echo $(( (b - a) / 1000 ))";
    let t = Instant::now();
    let Some(out) = in_netns(script, &file) else { return };
    let total = t.elapsed();
    let _ = std::fs::remove_file(&file);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let replace_us: u64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap_or(0);
    let ports = redirects(&r).iter().filter(|rd| Family::of(rd.target) == Family::V4).count();
    eprintln!(
        "1000 networks, {ports} published ports ({} bytes): render {render:?}; create + replace in a fresh netns {total:?}; \
         replace alone {} ms",
        text.len(),
        replace_us as f64 / 1000.0
    );
}

#[test]
#[ignore]
fn dump_big() {
    std::fs::write("/tmp/big.nft", nft::render(&big(1000, 1000))).unwrap();
}

/// The element-only update leaves the kernel with exactly the table a full load of the new
/// ruleset gives: checked by listing both in a throwaway namespace.
#[test]
fn nft_delta_reaches_the_same_table_as_a_full_load() {
    let before = published();
    let mut after = published();
    // Same shape, other elements: a third network of the same prefix length, a container
    // moved, a port added, one removed.
    after.networks.push(fw(net("extra", "bridge", "kleene2", Some("10.30.0.0/24"), None), vec![], &[]));
    after.networks[1].endpoints[0] = ep("db", "ipnet", Some("10.20.0.7"), None, &["5433"]);
    let (old, new) = (nft::table(&before), nft::table(&after));
    let delta = nft::delta::diff(&old, &new).expect("only elements changed").render();
    assert!(!delta.is_empty() && !delta.contains("chain"), "{delta}");
    let (old, new) = (old.render(), new.render());
    let files: Vec<PathBuf> =
        [("old", &old), ("delta", &delta), ("new", &new)].iter().map(|(n, t)| temp_file(n, t)).collect();
    let script = format!(
        "set -e; nft -f {0}; nft -f {1}; nft list table inet kleene > {0}.via-delta; nft -f {2}; nft list table inet kleene > {0}.full; cmp {0}.via-delta {0}.full",
        files[0].display(),
        files[1].display(),
        files[2].display()
    );
    let Some(out) = in_netns(&format!("PATH=/usr/sbin:$PATH; {script}"), &files[0]) else { return };
    for f in &files {
        let _ = std::fs::remove_file(f);
    }
    let _ = std::fs::remove_file(files[0].with_extension("nft.via-delta"));
    let _ = std::fs::remove_file(files[0].with_extension("nft.full"));
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
}

/// No default route (a host without one, or where it cannot be looked up): nothing may refer
/// to the host's interface, which pf would read as `on  inet` and `to ()`.
fn no_default_route() -> Ruleset {
    let mut r = published();
    let mut isolated = net("iso", "bridge", "kleene2", Some("10.30.0.0/24"), None);
    (isolated.internal, isolated.nat) = (true, String::new());
    r.networks.push(fw(isolated, vec![], &[]));
    r.host_gw_if.clear();
    r
}

#[test]
fn golden_pf_without_default_route() {
    let text = pf::render(&no_default_route());
    assert!(!text.contains("kleenet_host_gw_if"), "{text}");
    golden("no_default_route", "pf", &text);
}
