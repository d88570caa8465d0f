//! Networks end to end: each test runs kleene inside a network namespace of its own and
//! checks the kernel's view (`ip -j`), kleene's JSON, and that failures change nothing.

use kleene_tests::Sandbox;
use serde_json::Value;

fn link<'a>(links: &'a Value, name: &str) -> Option<&'a Value> {
    links.as_array()?.iter().find(|l| l["ifname"] == name)
}

/// Every link with its global addresses: what kleene may change (DAD flags and lifetimes of
/// link-local addresses change by themselves).
fn host_view(sb: &Sandbox) -> Vec<(String, Vec<String>)> {
    let links: Vec<String> = sb.links();
    links
        .into_iter()
        .map(|l| {
            let a = addrs(sb, &l);
            (l, a)
        })
        .collect()
}

/// `(address, prefix)` pairs of a link, global scope only.
fn addrs(sb: &Sandbox, ifname: &str) -> Vec<String> {
    let v = sb.ip_json(&format!("addr show dev {ifname}"));
    v[0]["addr_info"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|a| a["scope"] == "global")
        .map(|a| format!("{}/{}", a["local"].as_str().unwrap(), a["prefixlen"]))
        .collect()
}

#[test]
fn bridge_network_exists_in_the_kernel_and_goes_away() {
    let sb = Sandbox::new("net-bridge");
    let id = sb
        .kleene(&["network", "create", "-t", "bridge", "--subnet", "10.20.0.0/24", "--subnet6", "fd00:20::/64", "br"])
        .ok();
    assert_eq!(id.len(), 12, "12-hex id: {id}");
    assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
    let links = sb.ip_json("-d link show");
    let br = link(&links, "kleene0").expect("kleene0 exists");
    assert_eq!(br["linkinfo"]["info_kind"], "bridge");
    assert!(br["flags"].as_array().unwrap().iter().any(|f| f == "UP"), "bridge is up: {br}");
    assert_eq!(addrs(&sb, "kleene0"), vec!["10.20.0.1/24", "fd00:20::1/64"]);

    let inspect = sb.kleene(&["network", "inspect", "br"]).json();
    let net = &inspect["network"];
    assert_eq!(net["id"], id.as_str());
    assert_eq!(net["type"], "bridge");
    assert_eq!(net["interface"], "kleene0");
    assert_eq!(net["subnet"], "10.20.0.0/24");
    assert_eq!(net["gateway"], "10.20.0.1");
    assert_eq!(net["gateway6"], "fd00:20::1");
    assert_eq!(net["icc"], true);
    assert_eq!(net["internal"], false);
    assert_eq!(inspect["network_endpoints"], Value::Array(vec![]));
    // A /24 has 254 host addresses; the gateway holds one.
    assert_eq!(inspect["address_usage"]["subnet"]["used"], "1");
    assert_eq!(inspect["address_usage"]["subnet"]["free"], "253");

    assert_eq!(sb.kleene(&["network", "rm", "br"]).ok(), id);
    assert!(link(&sb.ip_json("link show"), "kleene0").is_none(), "bridge removed");
    assert_eq!(sb.kleene(&["network", "ls", "--json"]).json(), Value::Array(vec![]));
}

#[test]
fn loopback_network_records_the_link_kind_used() {
    let sb = Sandbox::new("net-loop");
    sb.kleene(&["network", "create", "--subnet", "10.30.0.0/24", "lo1"]).ok();
    let links = sb.ip_json("-d link show");
    let kind = link(&links, "kleene0").expect("kleene0")["linkinfo"]["info_kind"].as_str().unwrap().to_string();
    assert!(kind == "dummy" || kind == "ifb", "loopback kind: {kind}");
    let inspect = sb.kleene(&["network", "inspect", "lo1"]).json();
    assert_eq!(inspect["link_kind"], kind.as_str());
    assert_eq!(inspect["network"]["type"], "loopback");
    assert_eq!(inspect["network"]["gateway"], "", "loopback networks have no gateway");
    assert!(addrs(&sb, "kleene0").is_empty(), "no address until a container joins");
}

#[test]
fn default_interfaces_take_the_lowest_free_number() {
    let sb = Sandbox::new("net-names");
    sb.kleene(&["network", "create", "a"]).ok();
    sb.kleene(&["network", "create", "b"]).ok();
    sb.kleene(&["network", "rm", "a"]).ok();
    sb.kleene(&["network", "create", "c"]).ok();
    let ls = sb.kleene(&["network", "ls", "--json"]).json();
    let ifs: Vec<(&str, &str)> = ls
        .as_array()
        .unwrap()
        .iter()
        .map(|n| (n["name"].as_str().unwrap(), n["interface"].as_str().unwrap()))
        .collect();
    assert_eq!(ifs, vec![("b", "kleene1"), ("c", "kleene0")]);
}

#[test]
fn custom_network_uses_an_existing_interface_and_never_destroys_it() {
    let sb = Sandbox::new("net-custom");
    let missing = sb.kleene(&["network", "create", "-t", "custom", "-i", "nosuch0", "--subnet", "10.40.0.0/24", "cu"]);
    assert!(missing.err().contains("interface nosuch0 does not exist"), "{}", missing.stderr);
    sb.sh("ip link add mine0 type bridge && ip addr add 10.40.0.1/24 dev mine0 && ip addr add 10.40.0.2/32 dev mine0")
        .ok();
    sb.kleene(&["network", "create", "-t", "custom", "-i", "mine0", "--subnet", "10.40.0.0/24", "cu"]).ok();
    // As in Kleene, addresses already on the interface count as used.
    sb.kleene(&["container", "create", "-n", "cu", "c"]).ok();
    let ep = &sb.kleene(&["network", "inspect", "cu"]).json()["network_endpoints"][0];
    assert_eq!(ep["ip_address"], "10.40.0.3");
    sb.kleene(&["container", "rm", "c"]).ok();
    sb.kleene(&["network", "rm", "cu"]).ok();
    assert!(link(&sb.ip_json("link show"), "mine0").is_some(), "custom interface survives rm");
}

#[test]
fn an_existing_interface_is_never_taken_over() {
    let sb = Sandbox::new("net-taken");
    sb.sh("ip link add kleene0 type bridge && ip addr add 192.0.2.1/24 dev kleene0").ok();
    let before = sb.state_snapshot();
    // Named with -i (without -i, the default name skips it: see hardening.rs).
    let run = sb.kleene(&["network", "create", "-t", "bridge", "-i", "kleene0", "--subnet", "10.50.0.0/24", "n"]);
    assert!(run.err().contains("interface kleene0 already exists"), "{}", run.stderr);
    // A dry run refuses it too: it evaluates the checks the real run makes.
    let dry = sb.kleene(&["--dry-run", "network", "create", "-t", "bridge", "--subnet", "10.50.0.0/24", "n"]);
    assert!(dry.err().contains("interface kleene0 already exists"), "{}", dry.stderr);
    assert!(dry.stdout.is_empty(), "{}", dry.stdout);
    assert_eq!(addrs(&sb, "kleene0"), vec!["192.0.2.1/24"], "foreign interface untouched");
    assert_eq!(sb.state_snapshot(), before);
}

/// Every refused create: its message, a non-zero exit, and no change to state or links.
#[test]
fn validation_table() {
    let sb = Sandbox::new("net-validate");
    sb.kleene(&["network", "create", "-t", "bridge", "--subnet", "10.60.0.0/16", "taken"]).ok();
    let long_name = "x".repeat(65);
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--subnet", "172.18.0.0-16", "n1"], r#"invalid subnet: could not parse cidr block: "172.18.0.0-16""#),
        (vec!["--subnet", "fd00::/64", "n1"], "invalid subnet: wrong IP protocol"),
        (vec!["--subnet6", "10.0.0.0/8", "n1"], "invalid subnet6: wrong IP protocol"),
        (vec!["--subnet6", "fd00::/129", "n1"], "invalid subnet6: could not parse cidr block"),
        (
            vec!["-t", "bridge", "--subnet", "10.1.0.0/24", "--gw", "10.2.0.1", "n1"],
            "invalid gateway: 10.2.0.1 is not a usable address of subnet 10.1.0.0/24",
        ),
        (
            vec!["-t", "bridge", "--subnet", "10.1.0.0/24", "--gw", "10.1.0.255", "n1"],
            "invalid gateway: 10.1.0.255 is not a usable address",
        ),
        (
            vec!["-t", "bridge", "--subnet", "10.1.0.0/24", "--gw", "fd00::1", "n1"],
            "invalid gateway: wrong IP protocol",
        ),
        (
            vec!["-t", "bridge", "--subnet", "10.1.0.0/24", "--gw", "banana", "n1"],
            "invalid gateway: could not parse inet address",
        ),
        (
            vec!["-t", "bridge", "--subnet6", "fd00:1::/64", "--gw6", "fd00:2::1", "n1"],
            "invalid gateway6: fd00:2::1 is not a usable address",
        ),
        (vec!["--subnet", "10.60.5.0/24", "n1"], "invalid subnet: 10.60.5.0/24 overlaps network 'taken'"),
        (vec!["--subnet", "10.61.0.0/24", "taken"], "network name is already taken"),
        (vec!["bad/name"], "invalid network name 'bad/name'"),
        (vec![long_name.as_str()], "invalid network name"),
        (vec!["-i", "waytoolonginterface0", "n1"], "invalid interface name 'waytoolonginterface0'"),
        (vec!["-i", "a b", "n1"], "invalid interface name 'a b'"),
        (vec!["-i", "kleene0", "n1"], "interface kleene0 is already used by network 'taken'"),
        (vec!["-t", "custom", "n1"], "custom networks need -i/--interface"),
        (vec!["-t", "custom", "-i", "ghost0", "n1"], "interface ghost0 does not exist"),
        (vec!["-t", "warp", "n1"], "unknown network type 'warp'"),
    ];
    let state_before = sb.state_snapshot();
    let links_before = host_view(&sb);
    for (args, message) in cases {
        let mut full = vec!["network", "create"];
        full.extend(args.iter().copied());
        let run = sb.kleene(&full);
        let err = run.err();
        assert!(err.contains(message), "`{}`: expected {message:?}, got {err:?}", args.join(" "));
        assert_eq!(err.lines().count(), 1, "one-line error: {err}");
        assert_eq!(run.code, 1);
        assert_eq!(sb.state_snapshot(), state_before, "state changed by `{}`", args.join(" "));
        assert_eq!(host_view(&sb), links_before, "host changed by `{}`", args.join(" "));
    }
}

#[test]
fn ids_resolve_by_unique_prefix_and_ambiguity_lists_candidates() {
    let sb = Sandbox::new("net-prefix");
    // 17 networks: by pigeonhole two ids share their first hex digit.
    let ids: Vec<String> = (0..17).map(|i| sb.kleene(&["network", "create", &format!("n{i}")]).ok()).collect();
    let (a, b) = ids
        .iter()
        .enumerate()
        .find_map(|(i, a)| ids[i + 1..].iter().find(|b| b[..1] == a[..1]).map(|b| (a, b)))
        .expect("a shared first digit");
    let err = sb.kleene(&["network", "inspect", &a[..1]]).err();
    assert!(err.contains("ambiguous") && err.contains(a.as_str()) && err.contains(b.as_str()), "{err}");
    // The shortest prefix of `a` that no other id shares.
    let unique = (1..=a.len()).find(|&n| ids.iter().filter(|id| id.starts_with(&a[..n])).count() == 1).unwrap();
    let inspect = sb.kleene(&["network", "inspect", &a[..unique]]).json();
    assert_eq!(inspect["network"]["id"], a.as_str());
    assert_eq!(sb.kleene(&["network", "inspect", "zzz"]).err(), "kleene: network not found");
}

#[test]
fn prune_removes_networks_without_endpoints() {
    let sb = Sandbox::new("net-prune");
    let keep = sb.kleene(&["network", "create", "--subnet", "10.70.0.0/24", "keep"]).ok();
    let gone = sb.kleene(&["network", "create", "gone"]).ok();
    sb.kleene(&["container", "create", "-n", "keep", "c"]).ok();
    assert_eq!(sb.kleene(&["network", "prune", "-f"]).ok(), gone);
    let ls = sb.kleene(&["network", "ls", "--json"]).json();
    assert_eq!(ls.as_array().unwrap().len(), 1);
    assert_eq!(ls[0]["id"], keep.as_str());
}

#[test]
fn dry_run_prints_the_plan_and_changes_nothing() {
    let sb = Sandbox::new("net-dry");
    let args = [
        "--dry-run",
        "network",
        "create",
        "-t",
        "bridge",
        "--subnet",
        "10.80.0.0/24",
        "--subnet6",
        "fd00:80::/64",
        "d",
    ];
    // The plan's lines, then the firewall the change would produce (tests/tests/firewall.rs).
    let out = sb.kleene(&args).ok();
    let plan = "ip link add kleene0 type bridge\nip addr add 10.80.0.1/24 dev kleene0\nip addr add fd00:80::1/64 dev kleene0\nip link set kleene0 up\n";
    assert!(out.starts_with(plan), "{out}");
    assert!(out[plan.len()..].contains("nft -f - <<'EOF'\ntable inet kleene {}\n"), "{out}");
    let mut bsd = vec!["--os", "freebsd"];
    bsd.extend(args);
    // A script: stops at the first failure, refuses a kleene0 already on the target host,
    // removes the bridge again should a later command fail, turns forwarding on, loads the
    // anchor.
    let out = sb.kleene(&bsd).ok();
    assert!(out.starts_with("#!/bin/sh\n") && out.contains("\nset -eu\n"), "{out}");
    let plan = "\nif ifconfig kleene0 >/dev/null 2>&1; then echo 'kleene: interface kleene0 already exists; kleene will not take it over: pick another name with -i, or use a custom network' >&2; exit 1; fi\n\
                ifconfig bridge create name kleene0\non_failure 'ifconfig kleene0 destroy'\n\
                ifconfig kleene0 inet 10.80.0.1/24 alias\nifconfig kleene0 inet6 fd00:80::1/64 alias\nifconfig kleene0 up\n\
                sysctl net.inet.ip.forwarding=1\nsysctl net.inet6.ip6.forwarding=1\npfctl -a kleene -f - <<'EOF'\n";
    assert!(out.contains(plan), "{out}");
    let syntax = std::process::Command::new("sh").args(["-n", "-c", &out]).output().unwrap();
    assert!(syntax.status.success(), "sh -n: {}", String::from_utf8_lossy(&syntax.stderr));
    assert!(link(&sb.ip_json("link show"), "kleene0").is_none());
    assert_eq!(sb.kleene(&["network", "ls", "--json"]).json(), Value::Array(vec![]));
}

#[test]
fn a_failed_step_rolls_back_the_earlier_ones() {
    let sb = Sandbox::new("net-rollback");
    // Step 0 creates the bridge, step 1 adds the gateway; fail at step 2.
    let run = sb.kleene_env(
        &["network", "create", "-t", "bridge", "--subnet", "10.90.0.0/24", "r"],
        &[("KLEENE_FAULT_INJECT", "fail-at:2")],
    );
    assert!(run.err().contains("injected fault at step 2"), "{}", run.stderr);
    assert!(link(&sb.ip_json("link show"), "kleene0").is_none(), "bridge rolled back");
    assert_eq!(sb.kleene(&["network", "ls", "--json"]).json(), Value::Array(vec![]));
}

#[test]
fn a_crash_midway_is_rolled_back_by_the_next_run() {
    let sb = Sandbox::new("net-crash");
    let run = sb.kleene_env(
        &["network", "create", "-t", "bridge", "--subnet", "10.91.0.0/24", "r"],
        &[("KLEENE_FAULT_INJECT", "abort-at:2")],
    );
    assert_ne!(run.code, 0);
    assert!(link(&sb.ip_json("link show"), "kleene0").is_some(), "the crash left the bridge behind");
    // Any mutating command first finishes the interrupted rollback.
    sb.kleene(&["system", "reconcile"]).ok();
    assert!(link(&sb.ip_json("link show"), "kleene0").is_none(), "rolled back after the crash");
    assert_eq!(sb.kleene(&["network", "ls", "--json"]).json(), Value::Array(vec![]));
    // And the name is free again.
    sb.kleene(&["network", "create", "-t", "bridge", "--subnet", "10.91.0.0/24", "r"]).ok();
}

#[test]
fn concurrent_creates_never_collide() {
    let sb = std::sync::Arc::new(Sandbox::new("net-race"));
    let handles: Vec<_> = (0..8)
        .map(|i| {
            let sb = sb.clone();
            std::thread::spawn(move || {
                sb.kleene(&[
                    "network",
                    "create",
                    "-t",
                    "bridge",
                    "--subnet",
                    &format!("10.{}.0.0/24", 100 + i),
                    &format!("p{i}"),
                ])
                .ok()
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let ls = sb.kleene(&["network", "ls", "--json"]).json();
    let mut ifs: Vec<&str> = ls.as_array().unwrap().iter().map(|n| n["interface"].as_str().unwrap()).collect();
    ifs.sort();
    ifs.dedup();
    assert_eq!(ifs.len(), 8, "eight distinct interfaces: {ifs:?}");
    let bridges = sb.ip_json("-d link show type bridge");
    assert_eq!(bridges.as_array().unwrap().len(), 8);

    // Many containers joining one network at once: no address handed out twice.
    let handles: Vec<_> = (0..12)
        .map(|i| {
            let sb = sb.clone();
            std::thread::spawn(move || sb.kleene(&["container", "create", "-n", "p0", &format!("c{i}")]).ok())
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let inspect = sb.kleene(&["network", "inspect", "p0"]).json();
    let mut ips: Vec<&str> =
        inspect["network_endpoints"].as_array().unwrap().iter().map(|e| e["ip_address"].as_str().unwrap()).collect();
    ips.sort();
    ips.dedup();
    assert_eq!(ips.len(), 12, "twelve distinct addresses: {ips:?}");
    assert!(!ips.contains(&"10.100.0.1"), "the gateway is never handed out");
}

#[test]
fn many_kleenes_opening_a_fresh_state_at_once_never_see_a_locked_database() {
    // Setting up WAL on a new database needs an exclusive lock SQLite does not wait for.
    for round in 0..5 {
        let sb = std::sync::Arc::new(Sandbox::new(&format!("net-fresh{round}")));
        let runs: Vec<_> = (0..12)
            .map(|_| {
                let sb = sb.clone();
                std::thread::spawn(move || sb.kleene(&["network", "ls", "--json"]))
            })
            .collect();
        for r in runs {
            let run = r.join().unwrap();
            assert_eq!(run.code, 0, "round {round}: {}", run.stderr);
        }
    }
}
