//! `kleene serve` driven by Kleene's own client (`klee`, from PyPI) and by raw HTTP over the
//! unix socket; each test in a namespace of its own. What klee did is checked through the CLI
//! and the kernel; klee exits 0 on 404 and 409 answers, so its printed words are asserted.

use kleene_tests::server::Server;
use kleene_tests::Sandbox;
use serde_json::Value;
use std::collections::HashSet;
use std::io::Write;
use std::os::unix::net::UnixStream;
use std::time::Duration;

/// Addresses (v4 and v6, no link-local) on `dev` in the sandbox's namespace.
fn addrs(sb: &Sandbox, dev: &str) -> Vec<String> {
    sb.ip_json(&format!("addr show dev {dev}"))
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|l| l["addr_info"].as_array().cloned().unwrap_or_default())
        .filter(|a| a["scope"] != "link")
        .filter_map(|a| a["local"].as_str().map(String::from))
        .collect()
}

/// Addresses inside a running container's namespace.
fn container_addrs(sb: &Sandbox, container: &str) -> String {
    sb.kleene(&["container", "exec", container, "--", "ip", "-o", "addr"]).ok()
}

fn cli_inspect(sb: &Sandbox, kind: &str, ident: &str) -> Value {
    sb.kleene(&[kind, "inspect", ident]).json()
}

/// POST /containers/create (klee's own create needs images): the new id.
fn create_container(server: &Server, name: &str, driver: &str) -> String {
    let body = format!(r#"{{"name":"{name}","network_driver":"{driver}","image":"base","cmd":["/bin/sh"]}}"#);
    server.json("POST", "/containers/create", &body, 201)["id"].as_str().unwrap().to_string()
}

fn endpoint_ip(sb: &Sandbox, container: &str) -> Vec<String> {
    cli_inspect(sb, "container", container)["container_endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["ip_address"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[test]
fn klee_creates_lists_inspects_and_removes_networks() {
    let sb = Sandbox::new("api-net");
    let server = sb.serve();

    let id = server
        .klee(&["network", "create", "-t", "bridge", "--subnet", "10.20.0.0/24", "--subnet6", "fd00:20::/64", "br"])
        .ok();
    assert!(id.len() == 12 && id.chars().all(|c| c.is_ascii_hexdigit()), "klee printed {id:?}");
    let net = &cli_inspect(&sb, "network", "br")["network"];
    assert_eq!(net["id"], id.as_str());
    let bridge = net["interface"].as_str().unwrap().to_string();
    let on_bridge = addrs(&sb, &bridge);
    assert!(on_bridge.contains(&"10.20.0.1".into()) && on_bridge.contains(&"fd00:20::1".into()), "{on_bridge:?}");

    // --gw: not put on the bridge (only `<auto>` is), the vnet containers' default route;
    // --gw6 "" means none.
    server
        .klee(&[
            "network",
            "create",
            "-t",
            "bridge",
            "--subnet",
            "10.21.0.0/24",
            "--subnet6",
            "fd00:21::/64",
            "--gw",
            "10.21.0.9",
            "--gw6",
            "",
            "gw",
        ])
        .ok();
    let net = &cli_inspect(&sb, "network", "gw")["network"];
    assert_eq!((net["gateway"].as_str(), net["gateway6"].as_str()), (Some("10.21.0.9"), Some("")));
    create_container(&server, "routed", "vnet");
    server.klee(&["network", "connect", "gw", "routed"]).ok();
    server.json("POST", "/containers/routed/start", "", 200);
    let routes = sb.kleene(&["container", "exec", "routed", "--", "sh", "-c", "ip route; ip -6 route"]).ok();
    assert!(routes.contains("default via 10.21.0.9") && !routes.contains("default via fd00"), "{routes}");
    server.klee(&["container", "rm", "-f", "routed"]).ok();

    server.klee(&["network", "create", "-t", "loopback", "--subnet", "10.22.0.0/24", "lo"]).ok();
    let lo_if = cli_inspect(&sb, "network", "lo")["network"]["interface"].as_str().unwrap().to_string();
    assert!(sb.links().contains(&lo_if), "no {lo_if} in the namespace");
    sb.sh("ip link add own0 type bridge").ok();
    server.klee(&["network", "create", "-t", "custom", "-i", "own0", "--subnet", "10.23.0.0/24", "cu"]).ok();
    assert_eq!(cli_inspect(&sb, "network", "cu")["network"]["interface"], "own0");
    // --internal reaches the firewall.
    server.klee(&["network", "create", "-t", "bridge", "--subnet", "10.24.0.0/24", "--internal", "int"]).ok();
    let rules = sb.sh("nft list ruleset").ok();
    assert!(rules.contains("10.24.0.0/24 comment \"network int\""), "{rules}");

    // Refusals: klee prints kleened's message, nothing changes.
    let before = sb.state_snapshot();
    let links = sb.links();
    assert_eq!(
        server.klee(&["network", "create", "-t", "bridge", "--subnet", "10.29.0.0/24", "br"]).ok(),
        "network name is already taken"
    );
    assert_eq!(
        server.klee(&["network", "create", "-t", "custom", "-i", "nosuch0", "--subnet", "10.28.0.0/24", "cu2"]).ok(),
        "interface nosuch0 does not exist; create it first or pick another with -i"
    );
    assert_eq!(server.klee(&["network", "inspect", "nope"]).ok(), "network not found");
    assert_eq!(server.klee(&["network", "rm", "nope"]).ok(), "network not found.");
    assert_eq!(sb.state_snapshot(), before);
    assert_eq!(sb.links(), links);

    let ls = server.klee(&["network", "ls"]).ok();
    for (name, kind, subnet) in [
        ("br", "bridge", "10.20.0.0/24"),
        ("gw", "bridge", "10.21.0.0/24"),
        ("lo", "loopback", "10.22.0.0/24"),
        ("cu", "custom", "10.23.0.0/24"),
    ] {
        assert!(
            ls.lines().any(|l| l.contains(name) && l.contains(kind) && l.contains(subnet)),
            "{name} missing in\n{ls}"
        );
    }
    let inspect: Value = serde_json::from_str(&server.klee(&["network", "inspect", "br"]).ok()).unwrap();
    assert_eq!(inspect["network"]["subnet6"], "fd00:20::/64");

    assert_eq!(server.klee(&["network", "rm", "br"]).ok(), id);
    assert!(!sb.links().contains(&bridge), "{bridge} survived klee network rm");
    let pruned = server.klee(&["network", "prune", "-f"]).ok();
    for name in ["gw", "lo", "cu", "int"] {
        let id = sb.kleene(&["network", "ls", "--json"]).json();
        assert!(id.as_array().unwrap().iter().all(|n| n["name"] != name), "{name} survived prune:\n{pruned}");
    }
    assert!(!sb.links().contains(&lo_if));
    assert!(sb.links().contains(&"own0".to_string()), "prune removed the custom network's own interface");
    assert!(!sb.sh("nft list ruleset").ok().contains("10.24.0.0/24"), "the internal network's rules survived");
}

#[test]
fn klee_connects_and_disconnects_containers() {
    let sb = Sandbox::new("api-conn");
    let server = sb.serve();
    server
        .klee(&["network", "create", "-t", "bridge", "--subnet", "10.30.0.0/24", "--subnet6", "fd00:30::/64", "br"])
        .ok();
    let c1 = create_container(&server, "c1", "vnet");
    create_container(&server, "c2", "vnet");

    // Without --ip: the first free address; the container starts with it.
    assert_eq!(server.klee(&["network", "connect", "br", "c1"]).ok(), "");
    assert_eq!(endpoint_ip(&sb, "c1"), ["10.30.0.2"]);
    server.json("POST", "/containers/c1/start", "", 200);
    server.json("POST", "/containers/c2/start", "", 200);
    assert!(container_addrs(&sb, "c1").contains("10.30.0.2/24"));
    // With --ip, live on a running vnet container; traffic flows between the two.
    assert_eq!(server.klee(&["network", "connect", "--ip", "10.30.0.50", "br", "c2"]).ok(), "");
    assert!(container_addrs(&sb, "c2").contains("10.30.0.50/24"));
    assert_eq!(endpoint_ip(&sb, "c2"), ["10.30.0.50"]);
    sb.kleene(&["container", "exec", "c1", "--", "ping", "-c1", "-W2", "10.30.0.50"]).ok();

    // ls and inspect as klee shows them.
    let ls = server.klee(&["container", "ls", "-a"]).ok();
    assert!(ls.contains("c1") && ls.contains("c2") && ls.contains("running"), "{ls}");
    assert!(!ls.contains("object at"), "klee printed an unset field:\n{ls}");
    let inspect: Value = serde_json::from_str(&server.klee(&["container", "inspect", "c1"]).ok()).unwrap();
    assert_eq!(inspect["container"]["id"], c1.as_str());
    assert_eq!(inspect["container_endpoints"][0]["ip_address"], "10.30.0.2");

    // Refusals: the words klee prints, no change.
    let before = sb.state_snapshot();
    assert_eq!(server.klee(&["network", "connect", "br", "c1"]).ok(), "container already connected to the network");
    assert_eq!(server.klee(&["network", "connect", "br", "nope"]).ok(), "container not found");
    assert_eq!(server.klee(&["network", "connect", "nonet", "c1"]).ok(), "network not found");
    assert_eq!(server.klee(&["network", "disconnect", "nonet", "c1"]).code, 0);
    assert!(!server.klee(&["network", "disconnect", "br", "nope"]).ok().is_empty());
    assert_eq!(server.klee(&["container", "inspect", "nope"]).ok(), "container not found");
    assert_eq!(sb.state_snapshot(), before);

    // Disconnect: the address leaves the running container; a second time is refused.
    assert_eq!(server.klee(&["network", "disconnect", "br", "c2"]).ok(), "");
    assert!(!container_addrs(&sb, "c2").contains("10.30.0.50"));
    assert!(endpoint_ip(&sb, "c2").is_empty());
    assert!(!server.klee(&["network", "disconnect", "br", "c2"]).ok().is_empty());

    // rm: a running container needs -f; after it the namespace's pair is gone.
    server.klee(&["container", "rm", "-f", "c1"]).ok();
    assert!(sb.kleene(&["container", "inspect", "c1"]).code != 0);
    // klee exits 1 on this one 404 (its rm counts failures), still with kleened's words.
    let again = server.klee(&["container", "rm", "c1"]);
    assert_eq!((again.code, again.stdout.trim()), (1, "container not found"));
}

#[test]
fn klee_driver_matrix_refusals() {
    let sb = Sandbox::new("api-matrix");
    let server = sb.serve();
    server.klee(&["network", "create", "-t", "loopback", "--subnet", "10.1.0.0/24", "lo"]).ok();
    server.klee(&["network", "create", "-t", "bridge", "--subnet", "10.2.0.0/24", "br"]).ok();
    sb.sh("ip link add own0 type bridge").ok();
    server.klee(&["network", "create", "-t", "custom", "-i", "own0", "--subnet", "10.3.0.0/24", "cu"]).ok();
    for driver in ["host", "ipnet", "vnet", "disabled"] {
        create_container(&server, driver, driver);
    }
    let host = "containers with the 'host' network-driver cannot connect to networks.";
    let disabled = "containers with the 'disabled' network-driver cannot connect to networks.";
    let table = [
        ("ipnet", "lo", ""),
        ("ipnet", "br", ""),
        ("ipnet", "cu", ""),
        ("vnet", "lo", "containers using the 'vnet' network-driver can't connect to loopback networks"),
        ("vnet", "br", ""),
        ("vnet", "cu", "containers using the 'vnet' network-driver can't connect to custom networks"),
        ("host", "lo", host),
        ("host", "br", host),
        ("host", "cu", host),
        ("disabled", "lo", disabled),
        ("disabled", "br", disabled),
        ("disabled", "cu", disabled),
    ];
    for (driver, net, said) in table {
        assert_eq!(server.klee(&["network", "connect", net, driver]).ok(), said, "{driver} x {net}");
        let connected = cli_inspect(&sb, "container", driver)["container_endpoints"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["network_id"] == cli_inspect(&sb, "network", net)["network"]["id"]);
        assert_eq!(connected, said.is_empty(), "{driver} x {net}: state disagrees with klee");
    }
}

/// A network and a container on it, for the bad-input tests: state and kernel to compare.
fn baseline(sb: &Sandbox, server: &Server) -> (String, Vec<String>, String) {
    server.json("POST", "/networks/create", r#"{"name":"br","type":"bridge","subnet":"10.40.0.0/24"}"#, 201);
    create_container(server, "c1", "vnet");
    server.json("POST", "/networks/connect", r#"{"container":"c1","network":"br"}"#, 204);
    (sb.state_snapshot(), sb.links(), sb.sh("nft list ruleset").ok())
}

#[test]
fn bad_requests_get_clear_answers_and_change_nothing() {
    let sb = Sandbox::new("api-bad");
    let server = sb.serve();
    let (state, links, rules) = baseline(&sb, &server);

    let cases: [(&str, &str, &str, u16, &str); 14] = [
        ("POST", "/networks/create", r#"{"name":"x","type":"bridge""#, 409, "invalid request body"),
        ("POST", "/networks/create", r#"{"name":7,"type":"bridge"}"#, 409, "invalid type"),
        ("POST", "/networks/create", r#"{"type":"bridge","subnet":"10.41.0.0/24"}"#, 409, "missing field `name`"),
        (
            "POST",
            "/networks/create",
            r#"{"name":"x","type":"bridge","subnet":"10.41.0.0/24","colour":"red"}"#,
            409,
            "unknown field `colour`",
        ),
        ("POST", "/networks/connect", r#"{"container":"c1"}"#, 409, "missing field `network`"),
        ("POST", "/networks/connect", r#"{"container":"c1","network":"br","ip_address":12}"#, 409, "invalid type"),
        ("POST", "/containers/create", r#"{"network_driver":"vnet"}"#, 409, "missing field `name`"),
        ("POST", "/containers/create", "[1,2", 409, "invalid request body"),
        // Query strings and path parameters that do not parse: the route's own codes, in
        // JSON (the list route lists no refusal but 500; axum alone answers a text 400).
        ("GET", "/containers/list?all=banana", "", 500, "all=true or all=false"),
        ("DELETE", "/containers/c1?force=maybe", "", 409, "force=true or force=false"),
        ("GET", "/containers/%FF/inspect", "", 404, "invalid path"),
        ("POST", "/networks/%FF/disconnect/c1", "", 404, "invalid path"),
        ("GET", "/networks/nosuch/route", "", 404, "not found"),
        ("PUT", "/no/such/thing", "{}", 404, "not found"),
    ];
    for (method, path, body, status, words) in cases {
        let (code, text) = server.request(method, path, body);
        assert_eq!(code, status, "{method} {path} {body}: {text}");
        assert!(text.contains(words), "{method} {path} {body}: {text}");
        if words != "not found" {
            let message: Value = serde_json::from_str(&text).expect("refusals are JSON");
            assert!(message["message"].is_string(), "{text}");
        }
    }

    // 10 MB body: refused without buffering it all.
    let big =
        format!(r#"{{"name":"big","type":"bridge","subnet":"10.42.0.0/24","interface":"{}"}}"#, "a".repeat(10 << 20));
    let (code, text) = server.request("POST", "/networks/create", &big);
    assert_eq!(code, 413, "{text}");

    // A client that sends half a request and stalls, and one that hangs up mid-body: neither
    // holds up the next client, neither creates anything.
    let mut stalled = UnixStream::connect(&server.socket).unwrap();
    stalled
        .write_all(b"POST /networks/create HTTP/1.1\r\nHost: k\r\nContent-Length: 80\r\n\r\n{\"name\":\"half\",")
        .unwrap();
    {
        let mut gone = UnixStream::connect(&server.socket).unwrap();
        gone.write_all(b"POST /networks/create HTTP/1.1\r\nHost: k\r\nContent-Length: 90\r\n\r\n{\"name\":\"gone\",\"type\":\"bridge\"").unwrap();
    }
    let mut headless = UnixStream::connect(&server.socket).unwrap();
    headless.write_all(b"GET /networks/li").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(server.json("GET", "/networks/list", "", 200).as_array().unwrap().len(), 1);
    drop((stalled, headless));

    assert_eq!(sb.state_snapshot(), state, "a bad request changed state");
    assert_eq!(sb.links(), links, "a bad request changed interfaces");
    assert_eq!(sb.sh("nft list ruleset").ok(), rules, "a bad request changed the firewall");
    // And the server still does real work.
    server.json("POST", "/networks/create", r#"{"name":"after","type":"bridge","subnet":"10.43.0.0/24"}"#, 201);
    assert!(sb.kleene(&["network", "inspect", "after"]).code == 0);
}

#[test]
fn fifty_concurrent_clients_get_distinct_addresses_and_lose_nothing() {
    let sb = Sandbox::new("api-load");
    let server = sb.serve();
    server.json(
        "POST",
        "/networks/create",
        r#"{"name":"br","type":"bridge","subnet":"10.50.0.0/24","subnet6":"fd00:50::/64"}"#,
        201,
    );
    const CLIENTS: usize = 50;
    // Each client: create, connect, start; the odd ones then stop and remove theirs.
    let failures: Vec<String> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..CLIENTS)
            .map(|i| {
                let server = &server;
                scope.spawn(move || {
                    let name = format!("c{i}");
                    let mut steps = vec![
                        (
                            "POST",
                            "/containers/create".to_string(),
                            format!(r#"{{"name":"{name}","network_driver":"vnet"}}"#),
                            201,
                        ),
                        (
                            "POST",
                            "/networks/connect".into(),
                            format!(r#"{{"container":"{name}","network":"br"}}"#),
                            204,
                        ),
                        ("POST", format!("/containers/{name}/start"), String::new(), 200),
                        // A deserved refusal, raced against the others: name taken.
                        (
                            "POST",
                            "/containers/create".into(),
                            format!(r#"{{"name":"{name}","network_driver":"vnet"}}"#),
                            409,
                        ),
                    ];
                    if i % 2 == 1 {
                        steps.push(("POST", format!("/containers/{name}/stop"), String::new(), 200));
                        steps.push(("DELETE", format!("/containers/{name}"), String::new(), 200));
                    }
                    steps
                        .into_iter()
                        .filter_map(|(m, p, b, want)| {
                            let (code, text) = server.request(m, &p, &b);
                            (code != want).then(|| format!("{m} {p}: {code} {text}"))
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    assert!(failures.is_empty(), "{failures:#?}");

    let list = sb.kleene(&["container", "ls", "-a", "--json"]).json();
    let names: HashSet<String> =
        list.as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap().to_string()).collect();
    let want: HashSet<String> = (0..CLIENTS).filter(|i| i % 2 == 0).map(|i| format!("c{i}")).collect();
    assert_eq!(names, want, "lost or leftover containers");
    let (mut v4, mut v6) = (HashSet::new(), HashSet::new());
    for name in &want {
        let eps = &cli_inspect(&sb, "container", name)["container_endpoints"];
        assert_eq!(eps.as_array().unwrap().len(), 1, "{name}: {eps}");
        let (a4, a6) =
            (eps[0]["ip_address"].as_str().unwrap().to_string(), eps[0]["ip_address6"].as_str().unwrap().to_string());
        // The kernel agrees: the container's namespace holds exactly what state says.
        let inside = container_addrs(&sb, name);
        assert!(inside.contains(&format!("{a4}/24")) && inside.contains(&format!("{a6}/64")), "{name}: {inside}");
        assert!(v4.insert(a4.clone()), "duplicate {a4}");
        assert!(v6.insert(a6.clone()), "duplicate {a6}");
    }
    // One host-side veth per running container on the bridge, no more, no fewer.
    let bridge = cli_inspect(&sb, "network", "br")["network"]["interface"].as_str().unwrap().to_string();
    let ports = sb.ip_json(&format!("link show master {bridge}")).as_array().map(Vec::len).unwrap_or(0);
    assert_eq!(ports, want.len(), "bridge ports vs running containers");
}

#[test]
fn server_and_cli_share_one_state() {
    let sb = Sandbox::new("api-cli");
    let server = sb.serve();
    // Made by the CLI, seen and used by the server; and the other way round.
    sb.kleene(&["network", "create", "-t", "bridge", "--subnet", "10.60.0.0/24", "clinet"]).ok();
    server.klee(&["network", "create", "-t", "bridge", "--subnet", "10.61.0.0/24", "apinet"]).ok();
    assert!(server.klee(&["network", "ls"]).ok().contains("clinet"));
    assert!(sb.kleene(&["network", "inspect", "apinet"]).code == 0);
    // Interleaved, concurrently: the CLI fills clinet while the API fills apinet, both
    // taking addresses from a network the other side made.
    std::thread::scope(|scope| {
        scope.spawn(|| {
            for i in 0..8 {
                sb.kleene(&["container", "create", "-l", "vnet", "-n", "apinet", &format!("cli{i}")]).ok();
                sb.kleene(&["container", "start", &format!("cli{i}")]).ok();
            }
        });
        scope.spawn(|| {
            for i in 0..8 {
                create_container(&server, &format!("api{i}"), "vnet");
                server.json(
                    "POST",
                    "/networks/connect",
                    &format!(r#"{{"container":"api{i}","network":"apinet"}}"#),
                    204,
                );
                server.json("POST", &format!("/containers/api{i}/start"), "", 200);
            }
        });
    });
    let mut seen = HashSet::new();
    for name in (0..8).flat_map(|i| [format!("cli{i}"), format!("api{i}")]) {
        let ip = endpoint_ip(&sb, &name);
        assert_eq!(ip.len(), 1, "{name}");
        assert!(seen.insert(ip[0].clone()), "duplicate address {}", ip[0]);
        assert!(container_addrs(&sb, &name).contains(&format!("{}/24", ip[0])), "{name}");
    }
    // The server removes what the CLI made, the CLI what the server made.
    server.klee(&["container", "rm", "-f", "cli0"]).ok();
    sb.kleene(&["container", "rm", "-f", "api0"]).ok();
    let ls = server.klee(&["container", "ls", "-a"]).ok();
    assert!(!ls.contains("cli0") && !ls.contains("api0") && ls.contains("cli1") && ls.contains("api1"), "{ls}");
}

/// A server makes network namespaces ahead of need (executor/linux/netns_pool.rs): every
/// container it starts still gets one of its own, never the host's nor another's, and a
/// stopped one's goes (its pair with it).
#[test]
fn served_starts_each_get_a_namespace_of_their_own() {
    let sb = Sandbox::new("api-ns");
    let server = sb.serve();
    sb.kleene(&["network", "create", "-t", "bridge", "--subnet", "10.31.0.0/24", "br"]).ok();
    let names: Vec<String> = (0..5).map(|i| format!("n{i}")).collect();
    for name in &names {
        create_container(&server, name, "vnet");
        server.json("POST", "/networks/connect", &format!(r#"{{"container":"{name}","network":"br"}}"#), 204);
        server.json("POST", &format!("/containers/{name}/start"), "", 200);
        // Time for the server's thread to have namespaces ready for the next start.
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let inode = |path: &std::path::Path| std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(path).unwrap());
    let pins = sb.dir.path().join("run/netns");
    let mut seen: Vec<u64> = std::fs::read_dir(&pins).unwrap().map(|e| inode(&e.unwrap().path())).collect();
    let host = inode(&sb.netns_path());
    assert!(!seen.contains(&host), "a container got the host's namespace");
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), names.len(), "two containers share a namespace");
    for name in &names {
        let links = sb.kleene(&["container", "exec", name, "--", "ip", "-br", "link"]).ok();
        assert_eq!(links.lines().count(), 2, "{name} should see lo and eth0 only:\n{links}");
    }
    sb.kleene(&["container", "exec", "n0", "--", "ping", "-c1", "-W2", "10.31.0.6"]).ok();
    server.json("POST", "/containers/n4/stop", "", 200);
    assert_eq!(std::fs::read_dir(&pins).unwrap().count(), names.len() - 1);
    assert_eq!(sb.brief_links().matches("kv").count(), names.len() - 1, "n4's pair outlived its stop");
}
