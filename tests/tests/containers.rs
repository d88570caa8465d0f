//! Containers and their drivers end to end, inside a namespace per test. Traffic only flows
//! between addresses inside that namespace (and the containers' own namespaces).

use kleene_tests::{Run, Sandbox};
use serde_json::Value;
use std::process::{Child, Command, Stdio};

/// Run python code inside a container.
fn py(sb: &Sandbox, container: &str, code: &str) -> Run {
    sb.kleene(&["container", "exec", container, "--", "python3", "-c", code])
}

/// Start `kleene container exec` in the background (for servers).
fn spawn_exec(sb: &Sandbox, container: &str, code: &str) -> Child {
    sb.kleene_command(&["container", "exec", container, "--", "python3", "-c", code])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn server")
}

/// A one-shot TCP server on `addr:port` that prints its peer's address.
fn server_code(addr: &str, port: u16) -> String {
    let fam = if addr.contains(':') { "AF_INET6" } else { "AF_INET" };
    format!(
        "import socket; s=socket.socket(socket.{fam}); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); \
         s.bind(('{addr}', {port})); s.listen(); s.settimeout(8); c, a = s.accept(); c.sendall(b'hi'); print(a[0])"
    )
}

/// A TCP client that retries for a few seconds; prints the reply or the error name.
fn client_code(addr: &str, port: u16) -> String {
    format!(
        "import socket, time, errno\nfor i in range(40):\n  try:\n    s = socket.create_connection(('{addr}', {port}), timeout=1); print(s.recv(2).decode()); break\n  except OSError as e:\n    err = errno.errorcode.get(e.errno, str(e)); time.sleep(0.1)\nelse:\n  print(err)"
    )
}

/// TCP from `client` to `server` listening on `addr`: the peer address the server saw.
fn tcp(sb: &Sandbox, server: &str, addr: &str, client: &str, port: u16) -> String {
    let child = spawn_exec(sb, server, &server_code(addr, port));
    let reply = py(sb, client, &client_code(addr, port)).ok();
    let out = child.wait_with_output().unwrap();
    assert_eq!(reply, "hi", "client got no reply; server said {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn ping(sb: &Sandbox, container: &str, addr: &str) -> bool {
    sb.kleene(&["container", "exec", container, "--", "ping", "-c1", "-W1", addr]).code == 0
}

fn bridge(sb: &Sandbox, name: &str, n: u8) {
    sb.kleene(&[
        "network",
        "create",
        "-t",
        "bridge",
        "--subnet",
        &format!("10.{n}.0.0/24"),
        "--subnet6",
        &format!("fd00:{n}::/64"),
        name,
    ])
    .ok();
}

fn started(sb: &Sandbox, args: &[&str]) {
    let mut full = vec!["container", "create"];
    full.extend(args);
    sb.kleene(&full).ok();
    sb.kleene(&["container", "start", args.last().unwrap()]).ok();
}

#[test]
fn driver_by_network_type_matrix() {
    let sb = Sandbox::new("ct-matrix");
    sb.kleene(&["network", "create", "-t", "loopback", "--subnet", "10.1.0.0/24", "lo"]).ok();
    bridge(&sb, "br", 2);
    sb.sh("ip link add own0 type bridge").ok();
    sb.kleene(&["network", "create", "-t", "custom", "-i", "own0", "--subnet", "10.3.0.0/24", "cu"]).ok();
    for driver in ["host", "ipnet", "vnet", "disabled"] {
        sb.kleene(&["container", "create", "-l", driver, driver]).ok();
    }
    let refused_host = "containers with the 'host' network-driver cannot connect to networks.";
    let refused_disabled = "containers with the 'disabled' network-driver cannot connect to networks.";
    let table = [
        ("ipnet", "lo", None),
        ("ipnet", "br", None),
        ("ipnet", "cu", None),
        ("vnet", "lo", Some("containers using the 'vnet' network-driver can't connect to loopback networks")),
        ("vnet", "br", None),
        ("vnet", "cu", Some("containers using the 'vnet' network-driver can't connect to custom networks")),
        ("host", "lo", Some(refused_host)),
        ("host", "br", Some(refused_host)),
        ("host", "cu", Some(refused_host)),
        ("disabled", "lo", Some(refused_disabled)),
        ("disabled", "br", Some(refused_disabled)),
        ("disabled", "cu", Some(refused_disabled)),
    ];
    for (driver, net, refusal) in table {
        let run = sb.kleene(&["network", "connect", net, driver]);
        match refusal {
            None => assert_eq!(run.code, 0, "{driver} x {net}: {}", run.stderr),
            Some(msg) => assert_eq!(run.err(), format!("kleene: {msg}"), "{driver} x {net}"),
        }
    }
    // Kleene's check order: container, network, already connected, then the matrix.
    assert_eq!(sb.kleene(&["network", "connect", "nonet", "nobody"]).err(), "kleene: container not found");
    assert_eq!(sb.kleene(&["network", "connect", "nonet", "host"]).err(), "kleene: network not found");
    assert_eq!(
        sb.kleene(&["network", "connect", "br", "vnet"]).err(),
        "kleene: container already connected to the network"
    );
    assert_eq!(sb.kleene(&["network", "disconnect", "lo", "vnet"]).err(), "kleene: endpoint configuration not found");
    // The matrix also guards container create.
    let run = sb.kleene(&["container", "create", "-l", "vnet", "-n", "lo", "v2"]);
    assert!(run.err().contains("can't connect to loopback networks"));
}

#[test]
fn two_vnet_containers_talk_over_ipv4_and_ipv6() {
    let sb = Sandbox::new("ct-vnet");
    bridge(&sb, "br", 11);
    started(&sb, &["-l", "vnet", "-n", "br", "a"]);
    started(&sb, &["-l", "vnet", "-n", "br", "b"]);
    // Each container sees only lo and its own pair end, with only its own addresses.
    let links = sb.kleene(&["container", "exec", "a", "--", "ip", "-j", "addr"]).json();
    let names: Vec<&str> = links.as_array().unwrap().iter().map(|l| l["ifname"].as_str().unwrap()).collect();
    assert_eq!(names, vec!["lo", "eth0"]);
    let global: Vec<&str> = links[1]["addr_info"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["scope"] == "global")
        .map(|a| a["local"].as_str().unwrap())
        .collect();
    assert_eq!(global, vec!["10.11.0.2", "fd00:11::2"]);
    let routes = sb.kleene(&["container", "exec", "a", "--", "ip", "-j", "route", "show", "default"]).json();
    assert_eq!(routes[0]["gateway"], "10.11.0.1");
    let routes6 = sb.kleene(&["container", "exec", "a", "--", "ip", "-j", "-6", "route", "show", "default"]).json();
    assert_eq!(routes6[0]["gateway"], "fd00:11::1");

    assert!(ping(&sb, "a", "10.11.0.3") && ping(&sb, "b", "10.11.0.2"));
    assert!(ping(&sb, "a", "fd00:11::3") && ping(&sb, "b", "fd00:11::2"));
    assert_eq!(tcp(&sb, "b", "10.11.0.3", "a", 7001), "10.11.0.2");
    assert_eq!(tcp(&sb, "a", "10.11.0.2", "b", 7002), "10.11.0.3");
    assert_eq!(tcp(&sb, "a", "fd00:11::2", "b", 7003), "fd00:11::3");
    // The host reaches them through the bridge's gateway address.
    assert_eq!(sb.sh("ping -c1 -W1 10.11.0.2").code, 0);

    // IPv6 link-local addresses only where IPv6 is used: the container's end on this
    // dual-stack network has one; bridge ports (the host ends) never do; a container's end
    // on an IPv4-only network has none (nothing to flood over the bridge as it comes up).
    let link_local = |links: &serde_json::Value| -> Vec<String> {
        links[0]["addr_info"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|a| a["family"] == "inet6")
            .map(|a| format!("{} ({})", a["local"].as_str().unwrap_or(""), a["scope"].as_str().unwrap_or("")))
            .collect()
    };
    let eth0 = sb.kleene(&["container", "exec", "a", "--", "ip", "-j", "addr", "show", "dev", "eth0"]).json();
    assert!(link_local(&eth0).iter().any(|a| a.ends_with("(link)")), "{eth0}");
    sb.kleene(&["network", "create", "-t", "bridge", "--subnet", "10.12.0.0/24", "v4only"]).ok();
    started(&sb, &["-l", "vnet", "-n", "v4only", "c"]);
    let eth0 = sb.kleene(&["container", "exec", "c", "--", "ip", "-j", "addr", "show", "dev", "eth0"]).json();
    assert_eq!(link_local(&eth0), Vec::<String>::new(), "{eth0}");
    for name in ["a", "c"] {
        let host_end = sb.kleene(&["container", "inspect", name]).json()["container_endpoints"][0]["epair"]
            .as_str()
            .unwrap()
            .to_string();
        let on_host = sb.ip_json(&format!("addr show dev {host_end}"));
        assert_eq!(link_local(&on_host), Vec::<String>::new(), "{on_host}");
    }
    assert!(ping(&sb, "c", "10.12.0.1"), "the IPv4-only container reaches its gateway");
}

const IPNET_PROBE: &str = r#"
import socket, errno, sys
def attempt(f):
    try:
        return f()
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e))
def bind(addr, fam=socket.AF_INET):
    s = socket.socket(fam)
    s.bind((addr, 0))
    return s.getsockname()[0]
def connect(addr, port):
    s = socket.socket()
    s.settimeout(2)
    s.connect((addr, port))
    return "connected"
print(attempt(lambda: bind(sys.argv[1])))
print(attempt(lambda: bind(sys.argv[2])))
print(attempt(lambda: bind("0.0.0.0")))
print(attempt(lambda: connect("127.0.0.1", int(sys.argv[3]))))
print(attempt(lambda: socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP) and "raw"))
print(attempt(lambda: bind(sys.argv[4], socket.AF_INET6)))
print(attempt(lambda: bind("::1", socket.AF_INET6)))
"#;

#[test]
fn ipnet_is_restricted_to_its_own_addresses() {
    let sb = Sandbox::new("ct-ipnet");
    bridge(&sb, "br", 12);
    started(&sb, &["-n", "br", "i"]);
    // A listener on the host's loopback the container must not reach.
    let listener = std::thread::spawn({
        let ns = sb.netns_path();
        move || {
            Command::new("nsenter")
                .arg(format!("--net={}", ns.display()))
                .args([
                    "--",
                    "timeout",
                    "4",
                    "python3",
                    "-c",
                    "import socket; s=socket.socket(); s.bind(('127.0.0.1', 7010)); s.listen(); s.accept()",
                ])
                .status()
        }
    });
    std::thread::sleep(std::time::Duration::from_millis(300));
    let mut args = vec!["container", "exec", "i", "--", "python3", "-c", IPNET_PROBE];
    args.extend(["10.12.0.2", "10.12.0.1", "7010", "fd00:12::2"]);
    let out = sb.kleene(&args).ok();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines,
        vec!["10.12.0.2", "EADDRNOTAVAIL", "10.12.0.2", "ECONNREFUSED", "EPERM", "fd00:12::2", "EADDRNOTAVAIL"],
        "bind own / bind host address / wildcard / loopback / raw / own v6 / ::1"
    );
    let _ = listener.join();
    // Its addresses are /32 and /128 aliases on the network's interface.
    let addrs = sb.ip_json("addr show dev kleene0");
    let mut host_view: Vec<String> = addrs[0]["addr_info"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["scope"] == "global")
        .map(|a| format!("{}/{}", a["local"].as_str().unwrap(), a["prefixlen"]))
        .collect();
    host_view.sort();
    assert_eq!(host_view, vec!["10.12.0.1/24", "10.12.0.2/32", "fd00:12::1/64", "fd00:12::2/128"]);
}

#[test]
fn ipnet_and_vnet_on_one_bridge_talk_over_tcp() {
    let sb = Sandbox::new("ct-mixed");
    bridge(&sb, "br", 13);
    started(&sb, &["-l", "ipnet", "-n", "br", "i"]);
    started(&sb, &["-l", "vnet", "-n", "br", "v"]);
    // Outgoing connections from the ipnet container carry its address.
    assert_eq!(tcp(&sb, "v", "10.13.0.3", "i", 7020), "10.13.0.2");
    assert_eq!(tcp(&sb, "i", "10.13.0.2", "v", 7021), "10.13.0.3");
}

#[test]
fn disabled_has_no_network_at_all() {
    let sb = Sandbox::new("ct-disabled");
    bridge(&sb, "br", 14);
    started(&sb, &["-l", "disabled", "d"]);
    let links = sb.kleene(&["container", "exec", "d", "--", "ip", "-j", "addr"]).json();
    assert_eq!(links.as_array().unwrap().len(), 1, "only lo: {links}");
    assert_eq!(links[0]["ifname"], "lo");
    assert_eq!(links[0]["operstate"], "DOWN");
    assert!(links[0]["addr_info"].as_array().unwrap().is_empty());
    assert_eq!(sb.kleene(&["container", "exec", "d", "--", "ip", "-j", "route"]).json(), Value::Array(vec![]));
    let out = py(&sb, "d", "import socket, errno\nfor a in ['10.14.0.1', '127.0.0.1']:\n  try:\n    socket.create_connection((a, 80), timeout=1)\n  except OSError as e:\n    print(errno.errorcode.get(e.errno))").ok();
    assert_eq!(out, "ENETUNREACH\nENETUNREACH");
}

#[test]
fn host_driver_sees_the_host_addresses() {
    let sb = Sandbox::new("ct-host");
    bridge(&sb, "br", 15);
    started(&sb, &["h"]);
    let inspect = sb.kleene(&["container", "inspect", "h"]).json();
    assert_eq!(inspect["container"]["network_driver"], "host");
    assert_eq!(inspect["container"]["running"], true);
    let out = sb.kleene(&["container", "exec", "h", "--", "ip", "-br", "addr", "show", "kleene0"]).ok();
    assert!(out.contains("10.15.0.1/24"), "{out}");
    assert_eq!(py(&sb, "h", "import socket; s=socket.socket(); s.bind(('10.15.0.1', 0)); print('ok')").ok(), "ok");
}

#[test]
fn connect_and_disconnect_running_containers() {
    let sb = Sandbox::new("ct-live");
    bridge(&sb, "one", 16);
    bridge(&sb, "two", 17);
    started(&sb, &["-l", "vnet", "-n", "one", "v"]);
    started(&sb, &["-l", "ipnet", "-n", "one", "i"]);
    started(&sb, &["-l", "vnet", "-n", "two", "peer"]);
    assert!(!ping(&sb, "v", "10.17.0.2"), "no route to the other network yet");
    let pairs = || sb.brief_links().matches("kv").count();
    assert_eq!(pairs(), 2);
    // Kleene refuses this for running vnet containers; kleene does it live.
    sb.kleene(&["network", "connect", "two", "v"]).ok();
    assert!(ping(&sb, "v", "10.17.0.2"), "vnet joined 'two' while running");
    let names = sb.kleene(&["container", "exec", "v", "--", "ip", "-br", "link"]).ok();
    assert!(names.contains("eth1"), "{names}");
    sb.kleene(&["network", "disconnect", "two", "v"]).ok();
    assert!(!ping(&sb, "v", "10.17.0.2"), "left 'two'");
    assert_eq!(pairs(), 2, "the pair of the left network is gone");

    sb.kleene(&["network", "connect", "--ip", "10.17.0.50", "two", "i"]).ok();
    let bind = "import socket, errno\ntry:\n  socket.socket().bind(('10.17.0.50', 0)); print('bound')\nexcept OSError as e:\n  print(errno.errorcode[e.errno])";
    assert_eq!(py(&sb, "i", bind).ok(), "bound", "restriction updated in place");
    assert_eq!(tcp(&sb, "peer", "10.17.0.2", "i", 7030), "10.17.0.50", "leaves from its address in that network");
    // Unconnected UDP too: the datagram's source is its address in the destination's network.
    let server = sb
        .kleene_command(&["container", "exec", "peer", "--", "python3", "-c",
            "import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(('10.17.0.2', 7031)); s.settimeout(8); d, a = s.recvfrom(10); print(a[0])"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let send = "import socket, time\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\nfor _ in range(20):\n  s.sendto(b'x', ('10.17.0.2', 7031)); time.sleep(0.05)";
    py(&sb, "i", send).ok();
    let seen = String::from_utf8_lossy(&server.wait_with_output().unwrap().stdout).trim().to_string();
    assert_eq!(seen, "10.17.0.50", "UDP source in the destination's network");
    sb.kleene(&["network", "disconnect", "two", "i"]).ok();
    assert_eq!(py(&sb, "i", bind).ok(), "EADDRNOTAVAIL", "address withdrawn");
    let aliases = sb.sh("ip -br addr show dev kleene1").ok();
    assert!(!aliases.contains("10.17.0.50"), "alias removed: {aliases}");
}

/// Everything a running container holds on the host, as (netns files, cgroups, links).
/// The kernel frees the pairs of a destroyed namespace asynchronously (within milliseconds),
/// so after a teardown (`settled`) links are read once no `kv` pair is left, or after 2 s.
fn settled_traces(sb: &Sandbox, id: &str) -> (bool, bool, String) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    while sb.brief_links().contains("kv") && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    host_traces(sb, id)
}

fn host_traces(sb: &Sandbox, id: &str) -> (bool, bool, String) {
    let netns = sb.dir.path().join("run/netns").join(id).exists();
    let cgroup = cgroup2().join("kleene").join(id).exists();
    (netns, cgroup, sb.sh("ip -br addr").ok())
}

#[test]
fn stop_and_rm_leave_nothing_behind() {
    let sb = Sandbox::new("ct-clean");
    bridge(&sb, "br", 18);
    started(&sb, &["-l", "vnet", "-n", "br", "v"]);
    started(&sb, &["-l", "ipnet", "-n", "br", "i"]);
    let v = sb.kleene(&["container", "inspect", "v"]).json()["container"]["id"].as_str().unwrap().to_string();
    let i = sb.kleene(&["container", "inspect", "i"]).json()["container"]["id"].as_str().unwrap().to_string();
    let (ns, cg, links) = host_traces(&sb, &v);
    assert!(ns && cg && links.contains("kv"), "running vnet container has a namespace, cgroup and pair");
    // A process left running inside is ended by stop.
    let pid_file = sb.dir.path().join("sleeper.pid");
    let script = format!("sleep 300 >/dev/null 2>&1 & echo $! > {}", pid_file.display());
    sb.kleene(&["container", "exec", "i", "--", "sh", "-c", &script]).ok();
    let pid = std::fs::read_to_string(&pid_file).unwrap().trim().to_string();
    let alive = || std::path::Path::new("/proc").join(&pid).join("exe").exists();
    assert!(alive(), "the sleeper runs after exec returned");
    sb.kleene(&["container", "stop", "v"]).ok();
    sb.kleene(&["container", "stop", "i"]).ok();
    assert!(!alive(), "stop ended the container's processes");
    for id in [&v, &i] {
        let (ns, cg, links) = settled_traces(&sb, id);
        assert!(!ns && !cg, "no namespace or cgroup left for {id}");
        assert!(!links.contains("kv") && !links.contains("10.18.0.3/32"), "no pair or alias left: {links}");
    }
    // Stopped containers keep their addresses; rm releases them.
    let before = sb.kleene(&["network", "inspect", "br"]).json()["address_usage"]["subnet"]["used"].clone();
    assert_eq!(before, "3");
    sb.kleene(&["container", "rm", "v", "i"]).ok();
    let after = sb.kleene(&["network", "inspect", "br"]).json()["address_usage"]["subnet"]["used"].clone();
    assert_eq!(after, "1", "only the gateway remains");
}

#[test]
fn exec_returns_the_command_exit_code_and_rm_needs_force() {
    let sb = Sandbox::new("ct-exec");
    started(&sb, &["h"]);
    assert_eq!(sb.kleene(&["container", "exec", "h", "--", "sh", "-c", "exit 7"]).code, 7);
    let err = sb.kleene(&["container", "rm", "h"]).err();
    assert!(err.contains("is running"), "{err}");
    sb.kleene(&["container", "rm", "-f", "h"]).ok();
    assert_eq!(sb.kleene(&["container", "ls", "-a", "--json"]).json(), Value::Array(vec![]));
}

#[test]
fn network_rm_disconnects_running_containers() {
    let sb = Sandbox::new("ct-netrm");
    bridge(&sb, "br", 19);
    started(&sb, &["-l", "vnet", "-n", "br", "v"]);
    sb.kleene(&["network", "rm", "br"]).ok();
    let names = sb.kleene(&["container", "exec", "v", "--", "ip", "-br", "link"]).ok();
    assert!(!names.contains("eth0"), "pair gone from the container: {names}");
    let inspect = sb.kleene(&["container", "inspect", "v"]).json();
    assert_eq!(inspect["container_endpoints"], Value::Array(vec![]));
    assert!(!sb.brief_links().contains("kleene0"));
}

#[test]
fn a_failed_start_leaves_nothing_behind_and_a_crash_is_rolled_back() {
    let sb = Sandbox::new("ct-rollback");
    bridge(&sb, "br", 20);
    sb.kleene(&["container", "create", "-l", "vnet", "-n", "br", "v"]).ok();
    let id = sb.kleene(&["container", "inspect", "v"]).json()["container"]["id"].as_str().unwrap().to_string();
    // Steps: sandbox, pair, attach, up, address, ... — fail after the pair is on the bridge.
    let run = sb.kleene_env(&["container", "start", "v"], &[("KLEENE_FAULT_INJECT", "fail-at:3")]);
    assert!(run.err().contains("injected fault at step 3"), "{}", run.stderr);
    let (ns, cg, links) = settled_traces(&sb, &id);
    assert!(!ns && !cg && !links.contains("kv"), "rolled back: ns={ns} cgroup={cg} links={links}");
    assert_eq!(sb.kleene(&["container", "inspect", "v"]).json()["container"]["running"], false);

    let run = sb.kleene_env(&["container", "start", "v"], &[("KLEENE_FAULT_INJECT", "abort-at:4")]);
    assert_ne!(run.code, 0);
    let (ns, cg, _) = host_traces(&sb, &id);
    assert!(ns && cg, "the crash left the sandbox behind");
    sb.kleene(&["system", "reconcile"]).ok();
    let (ns, cg, links) = settled_traces(&sb, &id);
    assert!(!ns && !cg && !links.contains("kv"), "recovered: ns={ns} cgroup={cg} links={links}");
    // And it starts cleanly afterwards.
    sb.kleene(&["container", "start", "v"]).ok();
    assert!(ping(&sb, "v", "10.20.0.1"));
}

/// The cgroup2 mount, from mountinfo.
fn cgroup2() -> std::path::PathBuf {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    info.lines().find(|l| l.contains(" - cgroup2 ")).map(|l| l.split(' ').nth(4).unwrap().into()).unwrap()
}

#[test]
fn reconcile_rebuilds_what_a_reboot_took_away() {
    let sb = Sandbox::new("ct-reboot");
    bridge(&sb, "br", 21);
    started(&sb, &["-l", "vnet", "-n", "br", "v"]);
    started(&sb, &["-l", "ipnet", "-n", "br", "i"]);
    assert!(ping(&sb, "v", "10.21.0.3"));
    // A reboot, as the host sees it: interfaces, namespaces, cgroups and rules gone.
    let ids: Vec<String> = ["v", "i"]
        .iter()
        .map(|c| sb.kleene(&["container", "inspect", c]).json()["container"]["id"].as_str().unwrap().to_string())
        .collect();
    for id in &ids {
        let cg = cgroup2().join("kleene").join(id);
        let _ = std::fs::write(cg.join("cgroup.kill"), "1");
        std::thread::sleep(std::time::Duration::from_millis(50));
        std::fs::remove_dir(&cg).unwrap();
        let ns = sb.dir.path().join("run/netns").join(id);
        if ns.exists() {
            assert!(Command::new("umount").arg(&ns).status().unwrap().success());
            std::fs::remove_file(&ns).unwrap();
        }
    }
    sb.sh("ip link del kleene0 && nft flush ruleset").ok();
    let _ = std::fs::remove_file(sb.dir.path().join("run/firewall.json"));
    let _ = std::fs::remove_dir(cgroup2().join("kleene"));
    settled_traces(&sb, &ids[0]);

    sb.kleene(&["system", "reconcile"]).ok();
    let addrs = sb.sh("ip -br addr show dev kleene0").ok();
    assert!(
        addrs.contains("10.21.0.1/24") && addrs.contains("10.21.0.3/32"),
        "bridge, gateway and alias back: {addrs}"
    );
    assert!(ping(&sb, "v", "10.21.0.3"), "vnet reaches ipnet again");
    assert_eq!(tcp(&sb, "v", "10.21.0.2", "i", 7040), "10.21.0.3", "ipnet restriction back");
    // Nothing left to do: a second reconcile changes nothing and succeeds.
    sb.kleene(&["system", "reconcile"]).ok();
}
