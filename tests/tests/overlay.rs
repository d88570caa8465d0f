//! Overlay networks across hosts. Each "host" is a network namespace of its own with its own
//! kleene state and run dirs, joined to the others by an underlay bridge in a namespace of
//! the test's own, where the test also runs etcd (data in a temp dir).

use kleene_tests::{install_plugins, Run, Sandbox, TempDir};
use serde_json::Value;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const ETCD: &str = "http://192.0.2.254:2379";
/// The lease TTL of hosts that run no server: long enough that none drops out between
/// two of its commands.
const TTL: u64 = 60;
/// The lease TTL of the test that lets a host die: short, so it takes seconds.
const SHORT_TTL: u64 = 3;

struct Host {
    sb: Sandbox,
    address: String,
    serve: Option<Child>,
    ttl: u64,
}

impl Host {
    fn env(&self) -> Vec<(&str, String)> {
        vec![
            ("KLEENE_CLUSTER", ETCD.to_string()),
            ("KLEENE_CLUSTER_ADDRESS", self.address.clone()),
            ("KLEENE_CLUSTER_TTL", self.ttl.to_string()),
        ]
    }

    fn kleene(&self, args: &[&str]) -> Run {
        let env = self.env();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        self.sb.kleene_env(args, &env)
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = self.sb.kleene_command(args);
        cmd.envs(self.env());
        cmd
    }

    /// `kleene serve` on this host: the lease kept alive, changes applied from a watch.
    fn serve(&mut self) {
        let socket = self.sb.dir.path().join("kleened.sock");
        let child = self
            .command(&["serve", "--no-docker", "--socket", socket.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("kleene serve");
        self.serve = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !socket.exists() {
            assert!(Instant::now() < deadline, "kleene serve did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn stop_serving(&mut self) {
        if let Some(mut child) = self.serve.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn container(&self, name: &str, network: &str) -> (String, String) {
        self.kleene(&["container", "create", "-l", "vnet", "-n", network, name]).ok();
        self.kleene(&["container", "start", name]).ok();
        let doc = self.kleene(&["container", "inspect", name]).json();
        let ep = &doc["container_endpoints"][0];
        (ep["ip_address"].as_str().unwrap().to_string(), mac_of(self, name))
    }

    fn ping(&self, container: &str, address: &str) -> bool {
        self.kleene(&["container", "exec", container, "--", "ping", "-c1", "-W2", address]).code == 0
    }

    /// The tunnel device's own forwarding entries (MAC -> remote host; not what the bridge
    /// learns on its port, which ages out) and its neighbour entries (address -> MAC).
    fn entries(&self, vxlan: &str) -> (String, String) {
        let fdb = self.sb.sh(&format!("bridge fdb show dev {vxlan} | grep ' dst ' || true")).stdout;
        (fdb, self.sb.sh(&format!("ip neigh show dev {vxlan}")).stdout)
    }
}

fn mac_of(host: &Host, container: &str) -> String {
    // `ip` asks the container's own stack (its /sys is the host's).
    let out = host.kleene(&["container", "exec", container, "--", "ip", "-o", "link", "show", "eth0"]).ok();
    let mac = out.split("link/ether ").nth(1).and_then(|r| r.split_whitespace().next());
    mac.expect("eth0 has a MAC").to_string()
}

struct Cluster {
    underlay: Sandbox,
    hosts: Vec<Host>,
    etcd: Option<Child>,
    data: TempDir,
}

impl Cluster {
    fn new(n: usize) -> Cluster {
        Cluster::with_ttl(n, TTL)
    }

    fn with_ttl(n: usize, ttl: u64) -> Cluster {
        let underlay = Sandbox::new("ovl-under");
        underlay.sh("ip link add ul0 type bridge && ip addr add 192.0.2.254/24 dev ul0 && ip link set ul0 up").ok();
        let mut hosts = Vec::new();
        for i in 1..=n {
            let sb = Sandbox::new("ovl-host");
            install_plugins(Path::new(&sb.plugin_path), &["overlay"]);
            underlay
                .sh(&format!(
                    "ip link add ul{i} type veth peer name under netns {} && ip link set ul{i} master ul0 up",
                    sb.name
                ))
                .ok();
            sb.sh(&format!("ip addr add 192.0.2.{i}/24 dev under && ip link set under up")).ok();
            hosts.push(Host { sb, address: format!("192.0.2.{i}"), serve: None, ttl });
        }
        let mut cluster = Cluster { underlay, hosts, etcd: None, data: TempDir::new("ovl-etcd") };
        cluster.start_etcd();
        cluster
    }

    fn start_etcd(&mut self) {
        let data = self.data.path().join("data");
        let child = Command::new("nsenter")
            .arg(format!("--net={}", self.underlay.netns_path().display()))
            .args(["--", "etcd", "--data-dir"])
            .arg(&data)
            .args(["--listen-client-urls", ETCD, "--advertise-client-urls", ETCD])
            .args(["--listen-peer-urls", "http://127.0.0.1:2380"])
            .args(["--initial-advertise-peer-urls", "http://127.0.0.1:2380"])
            .args(["--initial-cluster", "default=http://127.0.0.1:2380"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("etcd (Debian etcd-server) must be installed");
        self.etcd = Some(child);
        let deadline = Instant::now() + Duration::from_secs(15);
        while self.underlay.sh("curl -sf http://192.0.2.254:2379/health").code != 0 {
            assert!(Instant::now() < deadline, "etcd did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn stop_etcd(&mut self) {
        if let Some(mut child) = self.etcd.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for host in &mut self.hosts {
            host.stop_serving();
        }
        if self.etcd.is_none() {
            self.start_etcd();
        }
        // Containers of overlay networks give their addresses back in etcd: remove them
        // while it runs (a host whose namespace a test deleted gets an empty one back).
        for host in &self.hosts {
            if !host.sb.netns_path().exists() {
                let _ = Command::new("ip").args(["netns", "add", &host.sb.name]).status();
            }
            let list = host.kleene(&["container", "ls", "-a", "--json"]);
            for c in
                serde_json::from_str::<Value>(&list.stdout).ok().and_then(|v| v.as_array().cloned()).unwrap_or_default()
            {
                host.kleene(&["container", "rm", "-f", c["id"].as_str().unwrap_or_default()]);
            }
        }
        self.stop_etcd();
    }
}

/// Wait until `f` holds, for at most `limit`; how long it took.
fn within(limit: Duration, mut f: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    loop {
        if f() {
            return Some(start.elapsed());
        }
        if start.elapsed() > limit {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn tcp(server: &Host, server_container: &str, address: &str, client: &Host, client_container: &str) -> String {
    let code = format!(
        "import socket; s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); \
         s.bind(('{address}', 7100)); s.listen(); s.settimeout(8); c, a = s.accept(); c.sendall(b'hi'); print(a[0])"
    );
    let child = server
        .command(&["container", "exec", server_container, "--", "python3", "-c", &code])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let client_code = format!(
        "import socket, time\nfor i in range(40):\n  try:\n    s = socket.create_connection(('{address}', 7100), timeout=1); print(s.recv(2).decode()); break\n  except OSError as e:\n    time.sleep(0.1)"
    );
    let reply = client.kleene(&["container", "exec", client_container, "--", "python3", "-c", &client_code]).ok();
    let out = child.wait_with_output().unwrap();
    assert_eq!(reply, "hi", "no TCP reply; server said {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn an_overlay_created_on_one_host_joins_containers_on_three() {
    let cluster = Cluster::new(3);
    let [a, b, c] = &cluster.hosts[..] else { unreachable!() };
    let id = a
        .kleene(&["network", "create", "-t", "overlay", "--subnet", "10.77.0.0/24", "--subnet6", "fd00:77::/64", "ov"])
        .ok();
    for host in [b, c] {
        let listed = host.kleene(&["network", "ls", "--json"]).json();
        let ov = listed.as_array().unwrap().iter().find(|n| n["name"] == "ov").expect("ov listed on every host");
        assert_eq!(ov["id"], id.as_str());
        assert_eq!(ov["type"], "overlay");
        assert!(host.sb.links().contains(&"kvx1".to_string()), "the tunnel device exists on {}", host.address);
    }
    // A dry run claims nothing in etcd: the first real container still gets the first address.
    a.kleene(&["--dry-run", "container", "create", "-l", "vnet", "-n", "ov", "dry"]).ok();
    let (ip_a, mac_a) = a.container("ca", "ov");
    assert_eq!(ip_a, "10.77.0.2");
    let (ip_b, _) = b.container("cb", "ov");
    let (ip_c, mac_c) = c.container("cc", "ov");
    let mut all = vec![&ip_a, &ip_b, &ip_c];
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 3, "distinct addresses: {ip_a} {ip_b} {ip_c}");
    // Without a server, every command (here `system reconcile`) brings a host in line.
    for host in [a, b, c] {
        host.kleene(&["system", "reconcile"]).ok();
    }
    let (fdb, neigh) = b.entries("kvx1");
    assert!(fdb.contains(&format!("{mac_a} dst 192.0.2.1")), "B forwards A's container to A: {fdb}");
    assert!(fdb.contains(&format!("{mac_c} dst 192.0.2.3")), "B forwards C's container to C: {fdb}");
    assert!(neigh.contains(&ip_a) && neigh.contains(&ip_c), "{neigh}");
    assert!(a.ping("ca", &ip_b) && b.ping("cb", &ip_c) && c.ping("cc", &ip_a), "ping across hosts");
    assert_eq!(tcp(c, "cc", &ip_c, a, "ca"), ip_a, "TCP from A's container reaches C's, unNATed");
    let v6 = |host: &Host, name: &str| {
        let doc = host.kleene(&["container", "inspect", name]).json();
        doc["container_endpoints"][0]["ip_address6"].as_str().unwrap().to_string()
    };
    let (ip6_a, ip6_c) = (v6(a, "ca"), v6(c, "cc"));
    assert_ne!(ip6_a, ip6_c);
    assert!(a.ping("ca", &ip6_c) && c.ping("cc", &ip6_a), "IPv6 across hosts ({ip6_a}, {ip6_c})");
    // B's side of the network is lost (as in a reboot); `system reconcile` builds it again,
    // entries for the other hosts' containers included.
    b.kleene(&["container", "stop", "cb"]).ok();
    b.sb.sh("ip link del kvx1 && ip link del kov1").ok();
    b.kleene(&["system", "reconcile"]).ok();
    b.kleene(&["container", "start", "cb"]).ok();
    assert!(b.ping("cb", &ip_a), "B's rebuilt tunnel has its entries again: {:?}", b.entries("kvx1"));
    // Removed only when no host has containers on it; then from every host.
    let refused = c.kleene(&["network", "rm", "ov"]).err();
    assert!(refused.contains("still has containers"), "{refused}");
    for (host, name) in [(a, "ca"), (b, "cb"), (c, "cc")] {
        host.kleene(&["container", "rm", "-f", name]).ok();
    }
    c.kleene(&["network", "rm", "ov"]).ok();
    for host in [a, b, c] {
        let listed = host.kleene(&["network", "ls", "--json"]).json();
        assert_eq!(listed.as_array().unwrap().len(), 0, "ov is gone from {}: {listed}", host.address);
        assert!(!host.sb.links().iter().any(|l| l == "kvx1" || l == "kov1"), "{:?}", host.sb.links());
    }
}

#[test]
fn fifty_parallel_attaches_on_two_hosts_get_distinct_addresses() {
    let cluster = Cluster::new(2);
    let hosts = &cluster.hosts;
    hosts[0].kleene(&["network", "create", "-t", "overlay", "--subnet", "10.78.0.0/24", "ov"]).ok();
    hosts[1].kleene(&["network", "ls"]).ok();
    let children: Vec<(usize, Child)> = (0..50)
        .map(|i| {
            let host = &hosts[i % 2];
            let name = format!("p{i}");
            let child = host
                .command(&["container", "create", "-l", "vnet", "-n", "ov", &name])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            (i, child)
        })
        .collect();
    for (i, child) in children {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "attach {i} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let mut addresses = Vec::new();
    for host in hosts {
        for i in 0..50 {
            let doc = host.kleene(&["container", "inspect", &format!("p{i}")]);
            if doc.code == 0 {
                addresses.push(doc.json()["container_endpoints"][0]["ip_address"].as_str().unwrap().to_string());
            }
        }
    }
    assert_eq!(addresses.len(), 50);
    let mut unique = addresses.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 50, "no address given twice: {addresses:?}");
}

#[test]
fn a_dead_hosts_containers_leave_the_others_and_its_addresses_are_free() {
    let mut cluster = Cluster::with_ttl(3, SHORT_TTL);
    for host in &mut cluster.hosts[..2] {
        host.serve();
    }
    let [a, b, c] = &cluster.hosts[..] else { unreachable!() };
    a.kleene(&["network", "create", "-t", "overlay", "--subnet", "10.79.0.0/24", "ov"]).ok();
    let (ip_a, _) = a.container("ca", "ov");
    let (ip_c, mac_c) = c.container("cc", "ov");
    // With `kleene serve` running, a change reaches the host within a second, no command run.
    let reached = within(Duration::from_secs(1), || b.entries("kvx1").0.contains(&mac_c));
    assert!(reached.is_some(), "B learned of C's container within a second: {:?}", b.entries("kvx1"));
    assert!(within(Duration::from_secs(1), || a.entries("kvx1").1.contains(&ip_c)).is_some());
    assert!(c.ping("cc", &ip_a), "C reaches A before it dies");
    // Host C dies: no kleene renews its lease, and its namespace is gone.
    Command::new("ip").args(["netns", "del", &c.sb.name]).status().unwrap();
    let gone = within(Duration::from_secs(SHORT_TTL + 4), || {
        [a, b].iter().all(|h| {
            let (fdb, neigh) = h.entries("kvx1");
            !fdb.contains(&mac_c) && !neigh.contains(&ip_c)
        })
    });
    assert!(
        gone.is_some(),
        "A and B dropped C's container after the lease TTL: {:?} {:?}",
        a.entries("kvx1"),
        b.entries("kvx1")
    );
    a.kleene(&["container", "create", "-l", "vnet", "-n", "ov", "--ip", &ip_c, "heir"]).ok();
}

#[test]
fn with_etcd_down_local_work_goes_on_and_overlay_changes_fail_cleanly() {
    let mut cluster = Cluster::new(2);
    {
        let [a, b] = &cluster.hosts[..] else { unreachable!() };
        a.kleene(&["network", "create", "-t", "overlay", "--subnet", "10.80.0.0/24", "ov"]).ok();
        a.container("ca", "ov");
        let (ip_b, _) = b.container("cb", "ov");
        a.kleene(&["system", "reconcile"]).ok();
        assert!(a.ping("ca", &ip_b));
    }
    cluster.stop_etcd();
    let [a, b] = &cluster.hosts[..] else { unreachable!() };
    let ip_b = b.kleene(&["container", "inspect", "cb"]).json()["container_endpoints"][0]["ip_address"]
        .as_str()
        .unwrap()
        .to_string();
    // Local networks and running overlay containers keep working.
    a.kleene(&["network", "create", "-t", "bridge", "--subnet", "10.81.0.0/24", "local"]).ok();
    a.kleene(&["container", "create", "-l", "vnet", "-n", "local", "lc"]).ok();
    a.kleene(&["container", "start", "lc"]).ok();
    assert!(a.ping("ca", &ip_b), "the data plane needs no etcd");
    // Overlay changes fail with a line naming etcd, and change nothing.
    let before = a.sb.state_snapshot();
    for args in [
        &["container", "create", "-l", "vnet", "-n", "ov", "x"][..],
        &["network", "create", "-t", "overlay", "--subnet", "10.82.0.0/24", "ov2"][..],
        &["network", "disconnect", "ov", "ca"][..],
    ] {
        let err = a.kleene(args).err();
        assert_eq!(err.lines().count(), 1, "{args:?}: one line: {err}");
        assert!(
            err.starts_with("kleene: ") && err.contains("etcd at http://192.0.2.254:2379 is unreachable"),
            "{args:?}: {err}"
        );
    }
    assert_eq!(a.sb.state_snapshot(), before, "nothing half done");
    assert!(a.sb.links().iter().any(|l| l.starts_with("kv")), "ca's pair is still there");
    // etcd back: overlay work resumes.
    cluster.start_etcd();
    let a = &cluster.hosts[0];
    a.kleene(&["container", "create", "-l", "vnet", "-n", "ov", "x"]).ok();
}

#[test]
fn the_firewall_treats_an_overlay_like_a_bridge() {
    let cluster = Cluster::new(2);
    let [a, b] = &cluster.hosts[..] else { unreachable!() };
    for host in [a, b] {
        // The underlay is each host's way out: NAT goes through it.
        host.sb.sh("ip route add default via 192.0.2.254").ok();
    }
    a.kleene(&["network", "create", "-t", "overlay", "--subnet", "10.83.0.0/24", "open"]).ok();
    a.kleene(&["network", "create", "-t", "overlay", "--subnet", "10.84.0.0/24", "--no-icc", "closed"]).ok();
    a.kleene(&["network", "create", "-t", "overlay", "--subnet", "10.85.0.0/24", "--internal", "inner"]).ok();
    let (_, _) = a.container("oa", "open");
    let (ip_ob, _) = b.container("ob", "open");
    a.container("ca", "closed");
    let (ip_cb, _) = b.container("cb", "closed");
    a.container("ia", "inner");
    let (ip_ib, _) = b.container("ib", "inner");
    a.kleene(&["container", "create", "-l", "vnet", "-n", "open", "-p", "8080:7100", "pa"]).ok();
    a.kleene(&["container", "start", "pa"]).ok();
    for host in [a, b] {
        host.kleene(&["system", "reconcile"]).ok();
    }
    // The underlay has no route to the overlay: a reply comes back only through NAT out of
    // the container's own host.
    assert!(a.ping("oa", "192.0.2.254"), "NAT out of the local host");
    assert!(a.ping("oa", &ip_ob), "icc across hosts");
    assert!(!a.ping("ca", &ip_cb), "--no-icc holds across hosts");
    assert!(!a.ping("oa", &ip_ib), "networks are isolated from each other");
    assert!(a.ping("ia", &ip_ib), "an internal overlay still spans its hosts");
    assert!(!a.ping("ia", "192.0.2.254"), "nothing leaves an internal overlay");
    // A published port answers on the container's host.
    let server = a
        .command(&[
            "container",
            "exec",
            "pa",
            "--",
            "python3",
            "-c",
            "import socket; s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); \
             s.bind(('0.0.0.0', 7100)); s.listen(); s.settimeout(8); c, a = s.accept(); c.sendall(b'hi')",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let reply = cluster
        .underlay
        .sh("python3 -c \"import socket, time\nfor i in range(40):\n  try:\n    s = socket.create_connection(('192.0.2.1', 8080), timeout=1); print(s.recv(2).decode()); break\n  except OSError:\n    time.sleep(0.1)\"")
        .ok();
    let _ = server.wait_with_output();
    assert_eq!(reply, "hi", "the published port answers on the container's host");
}

/// The MTU `ip` shows for `link` inside `container` (or on the host, with `None`).
fn mtu(host: &Host, container: Option<&str>, link: &str) -> u32 {
    let out = match container {
        Some(c) => host.kleene(&["container", "exec", c, "--", "ip", "-o", "link", "show", link]).ok(),
        None => host.sb.sh(&format!("ip -o link show {link}")).ok(),
    };
    let mtu = out.split(" mtu ").nth(1).and_then(|r| r.split_whitespace().next());
    mtu.and_then(|m| m.parse().ok()).unwrap_or_else(|| panic!("no MTU for {link}: {out}"))
}

#[test]
fn overlay_links_leave_room_for_the_tunnel_and_full_size_packets_cross() {
    let cluster = Cluster::new(2);
    // The underlay refuses fragments, as many real ones do (and as a tunnel sending with DF
    // amounts to): a frame too large for the tunnel cannot cross whole.
    cluster
        .underlay
        .sh("nft add table bridge under && nft add chain bridge under pass '{ type filter hook forward priority 0; }' \
             && nft add rule bridge under pass ip frag-off '&' 0x3fff != 0 counter drop")
        .ok();
    let [a, b] = &cluster.hosts[..] else { unreachable!() };
    let refused = a.kleene(&["network", "create", "-t", "overlay", "--subnet", "10.86.0.0/24", "--mtu", "1451", "big"]);
    let refused = refused.err();
    assert!(refused.contains("--mtu 1451") && refused.contains("576 to 1450"), "{refused}");
    let refused = a.kleene(&["network", "create", "-t", "bridge", "--subnet", "10.87.0.0/24", "--mtu", "1400", "br"]);
    assert!(refused.err().contains("--mtu is for cluster networks"));
    let refused = a.kleene(&["network", "create", "-t", "overlay", "--subnet", "10.89.0.0/24", "--dns", "named"]);
    assert!(refused.err().contains("--dns: overlay networks have no container DNS"));
    assert_eq!(a.kleene(&["network", "ls", "--json"]).json().as_array().unwrap().len(), 0, "nothing made");
    a.kleene(&["network", "create", "-t", "overlay", "--subnet", "10.88.0.0/24", "ov"]).ok();
    let (ip_a, _) = a.container("ca", "ov");
    let (ip_b, _) = b.container("cb", "ov");
    a.kleene(&["system", "reconcile"]).ok();
    // 1500 on the underlay less VXLAN's 50 bytes over IPv4, on every link of the network.
    for host in [a, b] {
        for link in ["kov1", "kvx1"] {
            assert_eq!(mtu(host, None, link), 1450, "{link} on {}", host.address);
        }
    }
    assert_eq!(b.kleene(&["network", "inspect", "ov"]).json()["network"]["mtu"], 1450);
    // An explicit MTU is the network's on every host; IPv6 needs 1280 at least.
    let v6 = ["network", "create", "-t", "overlay", "--subnet", "10.90.0.0/24", "--subnet6", "fd00:90::/64"];
    let refused = a.kleene(&[&v6[..], &["--mtu", "1279", "fixed"]].concat()).err();
    assert!(refused.contains("1280 to 1450"), "{refused}");
    a.kleene(&[&v6[..], &["--mtu", "1400", "fixed"]].concat()).ok();
    b.kleene(&["system", "reconcile"]).ok();
    for host in [a, b] {
        assert_eq!((mtu(host, None, "kov2"), mtu(host, None, "kvx2")), (1400, 1400), "on {}", host.address);
    }
    let host_end = a.sb.links().into_iter().find(|l| l.starts_with("kv") && l != "kvx1").expect("ca's pair");
    assert_eq!(mtu(a, None, &host_end), 1450, "the host end of ca's pair");
    assert_eq!(mtu(a, Some("ca"), "eth0"), 1450, "ca's interface");
    assert_eq!(mtu(b, Some("cb"), "eth0"), 1450, "cb's interface");
    // A datagram that fills a 1500-byte link, sent without DF: the container's own stack
    // fragments it to fit the network, so the pieces cross the tunnel whole and arrive. (A
    // TCP sender or a DF ping would learn the tunnel's MTU from the kernel's ICMP even at
    // 1500; a datagram like this one is simply lost.)
    let listener = format!(
        "import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(('{ip_b}', 7300)); \
         s.settimeout(5); print(len(s.recvfrom(2000)[0]))"
    );
    let listener = b
        .command(&["container", "exec", "cb", "--", "python3", "-c", &listener])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // IP_MTU_DISCOVER (10) = IP_PMTUDISC_DONT (0): no DF. Sent until the listener is up.
    let sender = format!(
        "import socket, time; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.setsockopt(socket.IPPROTO_IP, 10, 0)\n\
         for i in range(30):\n  s.sendto(b'u' * 1472, ('{ip_b}', 7300)); time.sleep(0.1)"
    );
    a.kleene(&["container", "exec", "ca", "--", "python3", "-c", &sender]).ok();
    let heard = listener.wait_with_output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&heard.stdout).trim(),
        "1472",
        "a 1500-byte datagram arrives: {}",
        String::from_utf8_lossy(&heard.stderr)
    );
    // The largest packet the path carries crosses whole (1450 - 20 IP - 8 ICMP); one byte
    // more is refused by the container's own stack, never sent to be lost.
    let ping =
        |size: &str| a.kleene(&["container", "exec", "ca", "--", "ping", "-M", "do", "-c1", "-W2", "-s", size, &ip_b]);
    let full = ping("1422");
    assert_eq!(full.code, 0, "a 1450-byte packet crosses: {} {}", full.stdout, full.stderr);
    let over = ping("1423");
    assert_ne!(over.code, 0);
    assert!(format!("{}{}", over.stdout, over.stderr).contains("mtu=1450"), "refused locally: {over:?}");
    // A transfer of some MB in full-size segments completes, in well under its timeout.
    let size = 4 * 1024 * 1024;
    let server = format!(
        "import socket; s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); \
         s.bind(('{ip_b}', 7200)); s.listen(); s.settimeout(10); c, _ = s.accept(); c.sendall(b'x' * {size}); c.close()"
    );
    let server = b
        .command(&["container", "exec", "cb", "--", "python3", "-c", &server])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let client = format!(
        "import socket, time\nfor i in range(40):\n  try:\n    s = socket.create_connection(('{ip_b}', 7200), timeout=1); break\n  except OSError:\n    time.sleep(0.1)\ns.settimeout(10)\nt = time.time(); n = 0\nwhile True:\n  d = s.recv(65536)\n  if not d: break\n  n += len(d)\nprint(n, round(time.time() - t, 3))"
    );
    let received = a.kleene(&["container", "exec", "ca", "--", "python3", "-c", &client]);
    let served = server.wait_with_output().unwrap();
    let out = received.ok();
    let (bytes, seconds) = out.split_once(' ').expect("bytes and seconds");
    assert_eq!(bytes, size.to_string(), "all of it arrived; server said {}", String::from_utf8_lossy(&served.stderr));
    eprintln!("{size} bytes from {ip_b} to {ip_a} across hosts in {seconds} s");
    let dropped = cluster.underlay.sh("nft list chain bridge under pass").ok();
    assert!(dropped.contains("packets 0 bytes 0"), "no outer packet was fragmented: {dropped}");
}
