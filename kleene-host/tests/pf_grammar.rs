//! pfctl's own grammar (the vendored oracle in `tests/pfcheck`) on the pf text kleene writes:
//! every golden pf file, and the anchor rendered for every scenario of a matrix — network type
//! × NAT × icc × internal × address families × published ports × default route or none.
//! pfctl does not run on Linux; a FreeBSD machine running `pfctl -n -f` remains the final word
//! (the oracle checks grammar, not pfctl's semantic checks).

use kleene::firewall::{self, pf, FwEndpoint, FwNetwork, Ruleset};
use kleene_plugin_api::{Network, Stack};
use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the workspace").to_path_buf()
}

/// Writes `anchors` to files and runs the oracle on them: Ok, or its report.
fn pfcheck(name: &str, anchors: &[(String, String)]) -> Result<(), String> {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("pf-grammar-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let files: Vec<PathBuf> = anchors
        .iter()
        .map(|(label, text)| {
            let path = dir.join(format!("{label}.pf"));
            std::fs::write(&path, text).unwrap();
            path
        })
        .collect();
    pfcheck_files(&files)
}

fn pfcheck_files(files: &[PathBuf]) -> Result<(), String> {
    let out = std::process::Command::new(repo().join("tests/pfcheck/pfcheck"))
        .args(files)
        .env("PFCHECK_BUILD", Path::new(env!("CARGO_TARGET_TMPDIR")).join("pfcheck-build"))
        .output()
        .expect("tests/pfcheck/pfcheck runs (needs bash, python3, bison and cc: scripts/install-deps.sh)");
    let report = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_ne!(out.status.code(), Some(2), "the oracle could not be built: {report}");
    let verdicts = report.lines().filter(|l| l.ends_with("OK") || l.ends_with("REJECTED")).count();
    assert_eq!(verdicts, files.len(), "one verdict per file expected: {report}");
    if out.status.success() {
        Ok(())
    } else {
        Err(report)
    }
}

#[test]
fn the_oracle_rejects_the_old_nested_interface_list() {
    // kleene's published.pf before the fix: `rdr on { $gw, $ifs }` where $ifs is a list.
    let old = repo().join("tests/pfcheck/cases/neg_nested_rdr_published.pf");
    let report = pfcheck_files(&[old]).expect_err("pfctl's grammar rejects a list inside an interface list");
    assert_eq!(report.matches("syntax error").count(), 5, "{report}");
    // An empty gateway macro (no default route) is rejected too.
    let empty_gw = repo().join("tests/pfcheck/cases/neg_empty_gw.pf");
    assert!(pfcheck_files(&[empty_gw]).is_err());
}

#[test]
fn every_golden_pf_file_parses() {
    let dir = repo().join("kleene-host/src/firewall/testdata");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "pf"))
        .collect();
    files.sort();
    assert!(files.len() >= 8, "golden pf files missing in {}", dir.display());
    pfcheck_files(&files).unwrap();
}

/// The address families a scenario's network has.
#[derive(Clone, Copy, Debug)]
enum Families {
    V4,
    V6,
    Both,
}

/// The published ports of a scenario's container.
const PORTS: [(&str, &[&str]); 6] = [
    ("none", &[]),
    ("single", &["8080:80"]),
    ("range", &["8000-8009:9000-*", "7000-7002"]),
    ("udp", &["53/udp"]),
    ("iface", &["em1:2222:22"]),
    ("all", &["8080:80", "8000-8009:9000-*", "53/udp", "em1:2222:22/udp"]),
];

fn network(kind: &str, families: Families, nat: bool, icc: bool, internal: bool) -> Network {
    let interface = if kind == "custom" { "em1" } else { "kleene0" };
    let mut n = Network::new("3069bfded2bb", "net", kind, interface);
    let (v4, v6) = match families {
        Families::V4 => (true, false),
        Families::V6 => (false, true),
        Families::Both => (true, true),
    };
    let bridge = kind == "bridge";
    if v4 {
        n.subnet = Some("10.23.45.0/24".parse().unwrap());
        (n.gateway, n.gateway_auto) = (bridge.then(|| "10.23.45.1".parse().unwrap()), bridge);
    }
    if v6 {
        n.subnet6 = Some("fd00:45::/64".parse().unwrap());
        (n.gateway6, n.gateway6_auto) = (bridge.then(|| "fd00:45::1".parse().unwrap()), bridge);
    }
    n.nat = if nat { "em0".into() } else { String::new() };
    (n.icc, n.internal) = (icc, internal);
    n
}

fn scenario(n: Network, families: Families, ports: &[&str], gw: &str) -> Ruleset {
    // As the built-in drivers declare: vnet (private) on bridges, ipnet (restricted) elsewhere.
    let stack = if n.kind == "bridge" { Stack::Private } else { Stack::Restricted };
    let (v4, v6) = match families {
        Families::V4 => (Some("10.23.45.2"), None),
        Families::V6 => (None, Some("fd00:45::2")),
        Families::Both => (Some("10.23.45.2"), Some("fd00:45::2")),
    };
    let endpoint = FwEndpoint {
        container: "c0ffee000001".into(),
        name: "web".into(),
        stack,
        running: true,
        v4: v4.map(|a| a.parse().unwrap()),
        v6: v6.map(|a| a.parse().unwrap()),
        published: ports.iter().map(|p| firewall::parse_publish(p).unwrap()).collect(),
    };
    let epairs = if stack == Stack::Private { vec!["kve00000000002".to_string()] } else { vec![] };
    // A second, plain network, so that every list macro holds more than one name.
    let other = FwNetwork {
        network: network("loopback", Families::V4, true, true, false),
        forwarded: false,
        endpoints: vec![],
        epairs: vec![],
        dns: false,
    };
    let other = FwNetwork {
        network: Network { id: "0123456789ab".into(), interface: "kleene1".into(), ..other.network },
        ..other
    };
    Ruleset {
        networks: vec![
            FwNetwork {
                forwarded: n.kind != "loopback",
                dns: n.kind == "bridge",
                network: n,
                endpoints: vec![endpoint],
                epairs,
            },
            other,
        ],
        host_gw_if: gw.into(),
    }
}

#[test]
fn every_rendered_anchor_of_the_matrix_parses() {
    let mut anchors = Vec::new();
    for kind in ["loopback", "bridge", "custom"] {
        for families in [Families::V4, Families::V6, Families::Both] {
            for nat in [true, false] {
                for icc in [true, false] {
                    for internal in [false, true] {
                        for (ports_label, ports) in PORTS {
                            for gw in ["em0", ""] {
                                let n = network(kind, families, nat, icc, internal);
                                let label = format!(
                                    "{kind}-{families:?}-nat{nat}-icc{icc}-internal{internal}-{ports_label}-gw{}",
                                    !gw.is_empty()
                                );
                                anchors.push((label, pf::render(&scenario(n, families, ports, gw))));
                            }
                        }
                    }
                }
            }
        }
    }
    assert_eq!(anchors.len(), 3 * 3 * 2 * 2 * 2 * 6 * 2);
    // The matrix really exercises the rules the oracle is there for.
    let all = anchors.iter().map(|(_, t)| t.as_str()).collect::<String>();
    for rule in ["rdr on $kleenet_rdr_interfaces", "rdr on em1", "nat on", "block out log quick on em0", "inet6"] {
        assert!(all.contains(rule), "no scenario renders {rule:?}");
    }
    let started = std::time::Instant::now();
    pfcheck("matrix", &anchors).unwrap();
    eprintln!("{} anchors checked in {:?}", anchors.len(), started.elapsed());
}
