//! Bridges at scale and over time: a bridge's own MAC, the kernel's port limit, and removing
//! many networks at once. Each test in a network namespace of its own.

use kleene_tests::Sandbox;

fn bridge(sb: &Sandbox, name: &str, subnet: &str) -> String {
    sb.kleene(&["network", "create", "-t", "bridge", "--subnet", subnet, name]).ok()
}

fn vnet(sb: &Sandbox, network: &str, name: &str) {
    sb.kleene(&["container", "create", "-l", "vnet", "-n", network, name]).ok();
    sb.kleene(&["container", "start", name]).ok();
}

fn ping(sb: &Sandbox, container: &str, addr: &str) -> bool {
    sb.kleene(&["container", "exec", container, "--", "ping", "-c1", "-W1", addr]).code == 0
}

fn mac_of(sb: &Sandbox, link: &str) -> String {
    sb.ip_json(&format!("link show {link}"))[0]["address"].as_str().unwrap_or_default().to_string()
}

/// (port name, MAC) of every port of `bridge`.
fn ports(sb: &Sandbox, bridge: &str) -> Vec<(String, String)> {
    let list = sb.ip_json(&format!("link show master {bridge}"));
    list.as_array()
        .into_iter()
        .flatten()
        .map(|l| (l["ifname"].as_str().unwrap().to_string(), l["address"].as_str().unwrap().to_string()))
        .collect()
}

/// The container whose pair end is `port`.
fn owner_of(sb: &Sandbox, network: &str, port: &str) -> String {
    let doc = sb.kleene(&["network", "inspect", network]).json();
    let ep = doc["network_endpoints"].as_array().unwrap().iter().find(|e| e["epair"] == port).cloned();
    ep.and_then(|e| e["container_id"].as_str().map(String::from)).expect("port belongs to a container")
}

#[test]
fn the_bridge_mac_is_its_own_and_outlives_its_lowest_port() {
    let sb = Sandbox::new("bridge-mac");
    let id = bridge(&sb, "br", "10.71.0.0/24");
    vnet(&sb, "br", "c1");
    vnet(&sb, "br", "c2");
    // The network id's bytes, locally administered: not any port's.
    let expected = {
        let mut b: Vec<u8> = (0..6).map(|i| u8::from_str_radix(&id[2 * i..2 * i + 2], 16).unwrap()).collect();
        b[0] = (b[0] & 0xfc) | 0x02;
        b.iter().map(|x| format!("{x:02x}")).collect::<Vec<_>>().join(":")
    };
    let before = mac_of(&sb, "kleene0");
    assert_eq!(before, expected, "the bridge's MAC comes from its network id");

    // Stop the container whose port Linux would lend its MAC to a bridge without one (the
    // lowest); the other has the gateway in its ARP cache and must keep reaching it.
    let mut ports = ports(&sb, "kleene0");
    ports.sort_by(|a, b| a.1.cmp(&b.1));
    let leaving = owner_of(&sb, "br", &ports[0].0);
    let staying = if sb.kleene(&["container", "inspect", "c1"]).json()["container"]["id"] == leaving.as_str() {
        "c2"
    } else {
        "c1"
    };
    assert!(ping(&sb, staying, "10.71.0.1"), "{staying} reaches its gateway");
    sb.kleene(&["container", "stop", &leaving]).ok();
    assert_eq!(mac_of(&sb, "kleene0"), before, "stopping a container changed the bridge's MAC");
    assert!(ping(&sb, staying, "10.71.0.1"), "{staying} lost its gateway when the other container stopped");

    // Reconcile after the bridge vanished (as after a reboot) gives it the same MAC again.
    sb.sh("ip link del kleene0").ok();
    sb.kleene(&["system", "reconcile"]).ok();
    assert_eq!(mac_of(&sb, "kleene0"), before, "reconcile gave the bridge another MAC");
}

#[test]
fn the_dry_run_shows_the_bridge_mac() {
    let sb = Sandbox::new("bridge-mac-dry");
    let out = sb.kleene(&["--dry-run", "network", "create", "-t", "bridge", "--subnet", "10.72.0.0/24", "br"]).ok();
    let line = out.lines().find(|l| l.starts_with("ip link set kleene0 address ")).unwrap_or_else(|| panic!("{out}"));
    let mac = line.rsplit(' ').next().unwrap();
    let first = u8::from_str_radix(&mac[..2], 16).unwrap();
    assert_eq!(first & 0x03, 0x02, "a locally administered unicast MAC: {line}");
    // FreeBSD bridges have a MAC of their own: nothing to set there.
    let bsd = sb
        .kleene(&[
            "--dry-run",
            "--os",
            "freebsd",
            "network",
            "create",
            "-t",
            "bridge",
            "--subnet",
            "10.72.0.0/24",
            "br",
        ])
        .ok();
    assert!(!bsd.contains(" ether "), "{bsd}");
}

fn names(sb: &Sandbox) -> Vec<String> {
    let list = sb.kleene(&["network", "ls", "--json"]).json();
    list.as_array().unwrap().iter().map(|n| n["name"].as_str().unwrap().to_string()).collect()
}

#[test]
fn network_rm_of_many_is_all_or_nothing_and_prune_takes_every_link() {
    let sb = Sandbox::new("rm-many");
    for i in 0..6 {
        sb.kleene(&["network", "create", "--subnet", &format!("10.73.{i}.0/24"), &format!("lo{i}")]).ok();
    }
    bridge(&sb, "br", "10.74.0.0/24");
    bridge(&sb, "busy", "10.75.0.0/24");
    vnet(&sb, "busy", "c1");
    let links_before = sb.links();

    // One unknown name: nothing is removed (it used to remove the names before it).
    let err = sb.kleene(&["network", "rm", "lo0", "br", "nosuch"]).err();
    assert!(err.contains("not found"), "{err}");
    assert_eq!(names(&sb).len(), 8);
    assert_eq!(sb.links(), links_before);

    // Several at once, one named twice (by name and by id).
    let id = sb.kleene(&["network", "inspect", "lo1"]).json()["network"]["id"].as_str().unwrap().to_string();
    let out = sb.kleene(&["network", "rm", "lo0", "lo1", &id, "br"]).ok();
    assert_eq!(out.lines().count(), 3, "{out}");
    assert_eq!(names(&sb), ["lo2", "lo3", "lo4", "lo5", "busy"]);
    let links = sb.links();
    for gone in ["kleene0", "kleene1", "kleene6"] {
        assert!(!links.contains(&gone.to_string()), "{gone} outlived its network: {links:?}");
    }

    // Prune leaves the network a running container uses, and every link of the others goes.
    sb.kleene(&["network", "prune", "-f"]).ok();
    assert_eq!(names(&sb), ["busy"]);
    let links = sb.links();
    for gone in ["kleene2", "kleene3", "kleene4", "kleene5"] {
        assert!(!links.contains(&gone.to_string()), "{gone} outlived its network: {links:?}");
    }
    assert!(ping(&sb, "c1", "10.75.0.1"), "the busy network still works");
}

#[test]
fn a_full_bridge_refuses_the_next_port_in_one_line_and_keeps_working() {
    let sb = Sandbox::new("bridge-full");
    bridge(&sb, "full", "10.76.0.0/24");
    // 1022 ports made directly (ifb: cheap, and they swallow the bridge's floods), so the
    // next container takes port 1023, the kernel's last.
    let batch: String = (0..1022).map(|i| format!("link add f{i} type ifb\nlink set f{i} master kleene0\n")).collect();
    let file = sb.dir.path().join("ports.batch");
    std::fs::write(&file, batch).unwrap();
    sb.sh(&format!("ip -batch {}", file.display())).ok();
    sb.kleene(&["container", "create", "-l", "vnet", "-n", "full", "last"]).ok();
    let start = sb.kleene(&["container", "start", "last"]);
    start.ok();
    // The host-wide limits a bridge this size needs exist only in the initial namespace:
    // from the test's own, kleene names them instead of raising them.
    assert!(start.stderr.contains("net.core.netdev_max_backlog=2048"), "{}", start.stderr);
    assert!(ping(&sb, "last", "10.76.0.1"), "the bridge's last port reaches the gateway");

    sb.kleene(&["container", "create", "-l", "vnet", "-n", "full", "one-too-many"]).ok();
    let links_before = sb.links();
    let refused = sb.kleene(&["container", "start", "one-too-many"]);
    let err = refused.err();
    assert_eq!(
        err,
        "kleene: bridge kleene0 is full: a Linux bridge holds at most 1023 ports (kernel limit BR_MAX_PORTS); put the container on another network"
    );
    // Nothing of the refused start is left: not running, no pair end, no namespace pin.
    let c = sb.kleene(&["container", "inspect", "one-too-many"]).json();
    assert_eq!(c["container"]["running"], false, "{c}");
    assert_eq!(sb.links(), links_before);
    let pins = std::fs::read_dir(sb.dir.path().join("run/netns")).map(|d| d.count()).unwrap_or(0);
    assert_eq!(pins, 1, "only the running container has a namespace");
    assert!(ping(&sb, "last", "10.76.0.1"), "the refusal broke nothing");
}
