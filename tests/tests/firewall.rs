//! The firewall end to end: NAT, isolation, icc, internal networks, published ports,
//! `system reconcile` after `nft flush ruleset`, and other tables surviving kleene's changes.
//!
//! The "outside world" is one more network namespace per test, joined to the test's sandbox by
//! a veth pair: the sandbox side is `kout` (198.51.100.1/24, 2001:db8:1::1/64) and holds the
//! sandbox's default routes, the outside side `kwan` (198.51.100.2, 2001:db8:1::2) has no
//! route to any container subnet, so only NATed traffic can be answered. All addresses are
//! documentation ranges inside namespaces the tests make.

use kleene_tests::{Run, Sandbox};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

const OUT_HOST: &str = "198.51.100.1";
const OUT_PEER: &str = "198.51.100.2";
const OUT_HOST6: &str = "2001:db8:1::1";
const OUT_PEER6: &str = "2001:db8:1::2";

/// The outside namespace, deleted on drop (the veth pair goes with it).
struct Outside {
    name: String,
}

impl Outside {
    fn new(sb: &Sandbox) -> Outside {
        let name = format!("{}o", sb.name);
        let ok = Command::new("ip").args(["netns", "add", &name]).status().expect("ip netns add").success();
        assert!(ok, "cannot create namespace {name}");
        let out = Outside { name };
        sb.sh(&format!(
            "ip link add kout type veth peer name kwan && ip link set kwan netns {n} && \
             ip addr add {OUT_HOST}/24 dev kout && ip -6 addr add {OUT_HOST6}/64 dev kout nodad && \
             ip link set kout up && ip route add default via {OUT_PEER} && \
             ip -6 route add default via {OUT_PEER6}",
            n = out.name
        ))
        .ok();
        out.sh(&format!(
            "ip link set lo up && ip addr add {OUT_PEER}/24 dev kwan && \
             ip -6 addr add {OUT_PEER6}/64 dev kwan nodad && ip link set kwan up"
        ))
        .ok();
        out
    }

    fn sh(&self, script: &str) -> Run {
        run(Command::new("ip").args(["netns", "exec", &self.name, "sh", "-c", script]))
    }

    fn cmd(&self) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]);
        c
    }
}

impl Drop for Outside {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.name]).status();
    }
}

fn run(cmd: &mut Command) -> Run {
    let out = cmd.output().expect("run");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Serves `ADDR,PORT,PROTO` arguments: each answers with the address of its peer.
const SERVER: &str = r#"
import socket, sys, threading
socks = []
for spec in sys.argv[1:]:
    addr, port, proto = spec.rsplit(",", 2)
    fam = socket.AF_INET6 if ":" in addr else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((addr, int(port)))
    if proto == "tcp":
        s.listen(64)
    socks.append((s, proto))
def serve(s, proto):
    while True:
        try:
            if proto == "tcp":
                c, a = s.accept()
                c.sendall(a[0].encode())
                c.close()
            else:
                d, a = s.recvfrom(100)
                s.sendto(a[0].encode(), a)
        except OSError:
            pass
for s, proto in socks:
    threading.Thread(target=serve, args=(s, proto), daemon=True).start()
print("ready", flush=True)
threading.Event().wait()
"#;

/// One exchange with ADDR PORT PROTO, TRIES times at most (1 s timeout each): prints the
/// server's answer (the peer address it saw) or what went wrong.
const CLIENT: &str = r#"
import socket, sys, errno, time
addr, port, proto, tries = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
fam = socket.AF_INET6 if ":" in addr else socket.AF_INET
r = "nothing"
for i in range(tries):
    try:
        if proto == "tcp":
            s = socket.create_connection((addr, port), timeout=1)
            r = s.recv(100).decode() or "closed"
        else:
            s = socket.socket(fam, socket.SOCK_DGRAM)
            s.settimeout(1)
            s.sendto(b"x", (addr, port))
            r = s.recv(100).decode()
        break
    except OSError as e:
        r = errno.errorcode.get(e.errno, "timeout") if e.errno else "timeout"
        time.sleep(0.1)
print(r)
"#;

/// A background server, killed on drop.
struct Server(Child);

impl Server {
    fn start(mut cmd: Command, specs: &[&str]) -> Server {
        cmd.args(["python3", "-c", SERVER]).args(specs).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn server");
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().unwrap()).read_line(&mut line).unwrap();
        if line.trim() != "ready" {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!("server {specs:?} did not start: {}", String::from_utf8_lossy(&out.stderr));
        }
        Server(child)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `kleene container exec CONTAINER --`, as a command to add arguments to.
fn in_container(sb: &Sandbox, container: &str) -> Command {
    sb.kleene_command(&["container", "exec", container, "--"])
}

/// A command run in the sandbox's namespace, as the host.
fn on_host(sb: &Sandbox) -> Command {
    let mut cmd = Command::new("nsenter");
    cmd.arg(format!("--net={}", sb.netns_path().display())).arg("--");
    cmd
}

/// Where a probe comes from.
enum From<'a> {
    Container(&'a str),
    Host,
    Outside(&'a Outside),
}

/// One exchange from `from` to `addr:port/proto`: the peer address the server saw, or an
/// error name. `expect_ok` retries a few times (a server or a rule settling); a probe
/// expected to fail tries once.
fn probe(sb: &Sandbox, from: &From, addr: &str, port: u16, proto: &str, expect_ok: bool) -> String {
    let mut cmd = match from {
        From::Container(c) => in_container(sb, c),
        From::Host => on_host(sb),
        From::Outside(o) => o.cmd(),
    };
    let tries = if expect_ok { "4" } else { "1" };
    cmd.args(["python3", "-c", CLIENT, addr, &port.to_string(), proto, tries]);
    run(&mut cmd).stdout.trim().to_string()
}

fn reaches(sb: &Sandbox, from: &From, addr: &str, port: u16) -> String {
    probe(sb, from, addr, port, "tcp", true)
}

#[track_caller]
fn blocked(sb: &Sandbox, from: &From, addr: &str, port: u16) {
    let got = probe(sb, from, addr, port, "tcp", false);
    assert!(
        ["timeout", "ECONNREFUSED", "EHOSTUNREACH", "ENETUNREACH", "EPERM", "EACCES"].contains(&got.as_str()),
        "{addr}:{port} answered ({got}) but should be blocked"
    );
}

fn network(sb: &Sandbox, args: &[&str]) {
    let mut full = vec!["network", "create"];
    full.extend(args);
    sb.kleene(&full).ok();
}

/// `container create ARGS...; container start NAME` (the name is the last argument).
fn started(sb: &Sandbox, args: &[&str]) {
    let mut full = vec!["container", "create"];
    full.extend(args);
    sb.kleene(&full).ok();
    sb.kleene(&["container", "start", args.last().unwrap()]).ok();
}

fn serve_in(sb: &Sandbox, container: &str, specs: &[&str]) -> Server {
    Server::start(in_container(sb, container), specs)
}

fn nft_list(sb: &Sandbox, what: &str) -> String {
    sb.sh(&format!("nft list {what}")).stdout
}

#[test]
fn nat_lets_containers_out_and_no_nat_does_not() {
    let sb = Sandbox::new("fw-nat");
    let out = Outside::new(&sb);
    let _srv = Server::start(out.cmd(), &[&format!("{OUT_PEER},7000,tcp"), &format!("{OUT_PEER6},7000,tcp")]);
    network(&sb, &["-t", "bridge", "--subnet", "10.31.0.0/24", "--subnet6", "fd00:31::/64", "br"]);
    network(&sb, &["--subnet", "10.32.0.0/24", "--subnet6", "fd00:32::/64", "lo"]);
    network(&sb, &["-t", "bridge", "--no-nat", "--subnet", "10.33.0.0/24", "--subnet6", "fd00:33::/64", "brn"]);
    network(&sb, &["--no-nat", "--subnet", "10.34.0.0/24", "lon"]);
    // The default NAT interface is the default-route interface, resolved at create.
    let ls = sb.kleene(&["network", "inspect", "br"]).json();
    assert_eq!(ls["network"]["nat"], "kout", "{ls}");
    started(&sb, &["-l", "vnet", "-n", "br", "v"]);
    started(&sb, &["-l", "ipnet", "-n", "lo", "i"]);
    started(&sb, &["-l", "vnet", "-n", "brn", "vn"]);
    started(&sb, &["-l", "ipnet", "-n", "lon", "in"]);
    for c in ["v", "i"] {
        assert_eq!(reaches(&sb, &From::Container(c), OUT_PEER, 7000), OUT_HOST, "{c} v4");
        assert_eq!(reaches(&sb, &From::Container(c), OUT_PEER6, 7000), OUT_HOST6, "{c} v6");
    }
    // Without NAT the outside sees the container's own address and has no route back.
    for c in ["vn", "in"] {
        blocked(&sb, &From::Container(c), OUT_PEER, 7000);
    }
    blocked(&sb, &From::Container("vn"), OUT_PEER6, 7000);
    // The host's own traffic is not touched.
    assert_eq!(reaches(&sb, &From::Host, OUT_PEER, 7000), OUT_HOST);
    let sysctl = sb.sh("sysctl -n net.ipv4.ip_forward net.ipv6.conf.all.forwarding").ok();
    assert_eq!(sysctl, "1\n1");
}

#[test]
fn forwarding_sysctls_are_enabled_and_reported_with_v() {
    let sb = Sandbox::new("fw-sysctl");
    sb.sh("sysctl -qw net.ipv4.ip_forward=0 net.ipv6.conf.all.forwarding=0").ok();
    // A loopback network forwards nothing: no sysctl changes.
    let run = sb.kleene(&["-v", "network", "create", "--subnet", "10.37.0.0/24", "lo"]);
    run.ok();
    assert!(!run.stderr.contains("ip_forward"), "{}", run.stderr);
    let run = sb.kleene(&["-v", "network", "create", "-t", "bridge", "--subnet", "10.38.0.0/24", "br"]);
    run.ok();
    assert!(run.stderr.contains("enabled net.ipv4.ip_forward"), "{}", run.stderr);
    assert!(!run.stderr.contains("ipv6.conf.all.forwarding"), "no IPv6 subnet: {}", run.stderr);
    assert_eq!(sb.sh("sysctl -n net.ipv4.ip_forward net.ipv6.conf.all.forwarding").ok(), "1\n0");
}

#[test]
fn internal_networks_let_nothing_out() {
    let sb = Sandbox::new("fw-internal");
    let out = Outside::new(&sb);
    let _srv = Server::start(out.cmd(), &[&format!("{OUT_PEER},7000,tcp"), &format!("{OUT_PEER6},7000,tcp")]);
    network(&sb, &["-t", "bridge", "--internal", "--subnet", "10.35.0.0/24", "--subnet6", "fd00:35::/64", "bri"]);
    network(&sb, &["--internal", "--subnet", "10.36.0.0/24", "--subnet6", "fd00:36::/64", "loi"]);
    let no_nat = ["-t", "bridge", "--internal", "--no-nat", "--subnet", "10.39.0.0/24", "--subnet6", "fd00:39::/64"];
    network(&sb, &[&no_nat[..], &["brin"]].concat());
    started(&sb, &["-l", "vnet", "-n", "bri", "v"]);
    started(&sb, &["-l", "ipnet", "-n", "loi", "i"]);
    started(&sb, &["-l", "vnet", "-n", "brin", "vn"]);
    for c in ["v", "i", "vn"] {
        blocked(&sb, &From::Container(c), OUT_PEER, 7000);
        blocked(&sb, &From::Container(c), OUT_PEER6, 7000);
    }
}

#[test]
fn networks_are_isolated_and_icc_decides_within_one() {
    let sb = Sandbox::new("fw-iso");
    network(&sb, &["-t", "bridge", "--subnet", "10.41.0.0/24", "--subnet6", "fd00:41::/64", "a"]);
    network(&sb, &["-t", "bridge", "--subnet", "10.42.0.0/24", "b"]);
    network(&sb, &["--subnet", "10.43.0.0/24", "--subnet6", "fd00:43::/64", "c"]);
    network(&sb, &["--subnet", "10.44.0.0/24", "d"]);
    network(&sb, &["-t", "bridge", "--no-icc", "--subnet", "10.45.0.0/24", "e"]);
    network(&sb, &["--no-icc", "--subnet", "10.46.0.0/24", "f"]);
    for (c, args) in [
        ("va1", ["-l", "vnet", "-n", "a"]),
        ("va2", ["-l", "vnet", "-n", "a"]),
        ("vb", ["-l", "vnet", "-n", "b"]),
        ("ic1", ["-l", "ipnet", "-n", "c"]),
        ("ic2", ["-l", "ipnet", "-n", "c"]),
        ("id", ["-l", "ipnet", "-n", "d"]),
        ("ve1", ["-l", "vnet", "-n", "e"]),
        ("ve2", ["-l", "vnet", "-n", "e"]),
        ("if1", ["-l", "ipnet", "-n", "f"]),
        ("if2", ["-l", "ipnet", "-n", "f"]),
    ] {
        started(&sb, &[&args[..], &[c]].concat());
    }
    let _s = [
        serve_in(&sb, "va2", &["10.41.0.3,7100,tcp", "fd00:41::3,7100,tcp"]),
        serve_in(&sb, "vb", &["10.42.0.2,7100,tcp"]),
        serve_in(&sb, "ic1", &["10.43.0.1,7100,tcp"]),
        serve_in(&sb, "ic2", &["10.43.0.2,7100,tcp", "fd00:43::2,7100,tcp"]),
        serve_in(&sb, "id", &["10.44.0.1,7100,tcp"]),
        serve_in(&sb, "ve2", &["10.45.0.3,7100,tcp"]),
        serve_in(&sb, "if2", &["10.46.0.2,7100,tcp"]),
    ];
    // Every server answers the host (so a blocked probe below means the firewall).
    for addr in
        ["10.41.0.3", "fd00:41::3", "10.42.0.2", "10.43.0.1", "10.43.0.2", "10.44.0.1", "10.45.0.3", "10.46.0.2"]
    {
        let got = reaches(&sb, &From::Host, addr, 7100);
        assert!(got.parse::<std::net::IpAddr>().is_ok(), "the host cannot reach {addr}: {got}");
    }
    // Within a network with icc: vnet and ipnet, v4 and v6.
    assert_eq!(reaches(&sb, &From::Container("va1"), "10.41.0.3", 7100), "10.41.0.2");
    assert_eq!(reaches(&sb, &From::Container("va1"), "fd00:41::3", 7100), "fd00:41::2");
    assert_eq!(reaches(&sb, &From::Container("ic1"), "10.43.0.2", 7100), "10.43.0.1");
    assert_eq!(reaches(&sb, &From::Container("ic1"), "fd00:43::2", 7100), "fd00:43::1");
    // Across networks: vnet-vnet, ipnet-ipnet, ipnet-vnet both ways, v4 and v6.
    blocked(&sb, &From::Container("va1"), "10.42.0.2", 7100);
    blocked(&sb, &From::Container("vb"), "10.41.0.3", 7100);
    blocked(&sb, &From::Container("ic1"), "10.44.0.1", 7100);
    blocked(&sb, &From::Container("id"), "10.43.0.2", 7100);
    blocked(&sb, &From::Container("ic1"), "10.41.0.3", 7100);
    blocked(&sb, &From::Container("ic1"), "fd00:41::3", 7100);
    blocked(&sb, &From::Container("va1"), "10.43.0.2", 7100);
    blocked(&sb, &From::Container("va1"), "fd00:43::2", 7100);
    // --no-icc: neither vnet nor ipnet containers of one network reach each other.
    blocked(&sb, &From::Container("ve1"), "10.45.0.3", 7100);
    blocked(&sb, &From::Container("if1"), "10.46.0.2", 7100);
    // Disconnecting forgets the container's address: its network's peers no longer know it.
    sb.kleene(&["network", "disconnect", "a", "va1"]).ok();
    assert!(!nft_list(&sb, "set inet kleene containers4").contains("10.41.0.2"));
}

#[test]
fn published_ports_are_reachable_from_outside_other_networks_and_the_host() {
    let sb = Sandbox::new("fw-pub");
    let out = Outside::new(&sb);
    network(&sb, &["-t", "bridge", "--subnet", "10.51.0.0/24", "--subnet6", "fd00:51::/64", "p"]);
    network(&sb, &["--subnet", "10.52.0.0/24", "q"]);
    network(&sb, &["-t", "bridge", "--subnet", "10.53.0.0/24", "o"]);
    started(&sb, &["-l", "vnet", "-n", "p", "-p", "8080:80", "-p", "9000-9002:9100-*", "-p", "5353:53/udp", "web"]);
    started(&sb, &["-l", "ipnet", "-n", "q", "--publish", "5432", "db"]);
    started(&sb, &["-l", "vnet", "-n", "o", "cl"]);
    started(&sb, &["-l", "vnet", "-n", "p", "nb"]);
    let _web = serve_in(
        &sb,
        "web",
        &["10.51.0.2,80,tcp", "fd00:51::2,80,tcp", "10.51.0.2,9101,tcp", "10.51.0.2,9102,tcp", "10.51.0.2,53,udp"],
    );
    let _db = serve_in(&sb, "db", &["10.52.0.1,5432,tcp"]);
    let outside = From::Outside(&out);
    assert_eq!(reaches(&sb, &outside, OUT_HOST, 8080), OUT_PEER);
    assert_eq!(reaches(&sb, &outside, OUT_HOST6, 8080), OUT_PEER6);
    assert_eq!(reaches(&sb, &outside, OUT_HOST, 9001), OUT_PEER, "range: 9001 -> 9101");
    assert_eq!(reaches(&sb, &outside, OUT_HOST, 9002), OUT_PEER, "range: 9002 -> 9102");
    assert_eq!(probe(&sb, &outside, OUT_HOST, 5353, "udp", true), OUT_PEER);
    assert_eq!(reaches(&sb, &outside, OUT_HOST, 5432), OUT_PEER, "ipnet");
    // A container of another network, through the host's address.
    assert_eq!(reaches(&sb, &From::Container("cl"), OUT_HOST, 8080), "10.53.0.2");
    assert_eq!(reaches(&sb, &From::Container("cl"), OUT_HOST, 5432), "10.53.0.2");
    // ... but not directly.
    blocked(&sb, &From::Container("cl"), "10.51.0.2", 80);
    // A container of the same network, through the host's address: masqueraded to the gateway.
    assert_eq!(reaches(&sb, &From::Container("nb"), OUT_HOST, 8080), "10.51.0.1");
    // The host itself.
    assert_eq!(reaches(&sb, &From::Host, OUT_HOST, 8080), OUT_HOST);
    assert_eq!(reaches(&sb, &From::Host, OUT_HOST, 5432), OUT_HOST);
    // Only while the container runs.
    sb.kleene(&["container", "stop", "web"]).ok();
    blocked(&sb, &outside, OUT_HOST, 8080);
    assert!(!nft_list(&sb, "map inet kleene publish4").contains("8080"));
}

#[test]
fn publish_is_validated_at_create() {
    let sb = Sandbox::new("fw-pub-parse");
    network(&sb, &["-t", "bridge", "--subnet", "10.54.0.0/24", "p"]);
    let syntax = "expected [IF:]HOST[-END][:CONTAINER|:C-*|:C-CEND|:*][/tcp|/udp], e.g. 8080:80/tcp";
    for (spec, why) in [
        ("http", r#"bad port "http" (ports are 1-65535)"#),
        ("0", r#"bad port "0" (ports are 1-65535)"#),
        ("80/sctp", r#"unknown protocol "sctp" (use tcp or udp)"#),
        ("8000:8010:9000", "too many ':' (write port ranges as A-B)"),
        ("8010-8000", r#"range "8010-8000" runs backwards (write 8000-8010)"#),
        ("8000-8010:9000-9005", r#"container range "9000-9005" is not as long as the host range (or use N-*)"#),
    ] {
        let run = sb.kleene(&["container", "create", "-l", "vnet", "-n", "p", "-p", "80", "-p", spec, "c"]);
        assert_eq!(run.err(), format!("kleene: invalid published port {spec:?}: {why}; {syntax}"));
    }
    for driver in ["host", "disabled"] {
        let run = sb.kleene(&["container", "create", "-l", driver, "-p", "80", "c"]);
        assert_eq!(
            run.err(),
            format!("kleene: cannot publish ports of a container using the '{driver}' network driver")
        );
    }
    assert_eq!(sb.kleene(&["container", "ls", "-a", "--json"]).json(), serde_json::json!([]));
    // Host ports are taken once.
    let twice = sb.kleene(&["container", "create", "-l", "vnet", "-n", "p", "-p", "80", "-p", "70-90:80", "c"]);
    assert_eq!(twice.err(), "kleene: host port 70-90/tcp is published twice (overlaps 80/tcp)");
    sb.kleene(&["container", "create", "-l", "vnet", "-n", "p", "-p", "8080:80", "a"]).ok();
    let taken = sb.kleene(&["container", "create", "-l", "vnet", "-n", "p", "-p", "8000-8090", "b"]);
    assert_eq!(taken.err(), "kleene: host port 8000-8090/tcp is already published by container 'a' (8080:80)");
    sb.kleene(&["container", "create", "-l", "vnet", "-n", "p", "-p", "8080/udp", "b"]).ok();
    let doc = sb.kleene(&["container", "inspect", "a"]).json();
    assert_eq!(doc["published"], serde_json::json!(["8080:80"]));
}

#[test]
fn reconcile_restores_the_rules_after_a_flush() {
    let sb = Sandbox::new("fw-flush");
    let out = Outside::new(&sb);
    let _srv = Server::start(out.cmd(), &[&format!("{OUT_PEER},7000,tcp")]);
    network(&sb, &["-t", "bridge", "--subnet", "10.61.0.0/24", "a"]);
    network(&sb, &["-t", "bridge", "--subnet", "10.62.0.0/24", "b"]);
    started(&sb, &["-l", "vnet", "-n", "a", "-p", "8080:80", "va"]);
    started(&sb, &["-l", "vnet", "-n", "b", "vb"]);
    let _s = serve_in(&sb, "vb", &["10.62.0.2,7100,tcp"]);
    let _w = serve_in(&sb, "va", &["10.61.0.2,80,tcp"]);
    blocked(&sb, &From::Container("va"), "10.62.0.2", 7100);
    assert_eq!(reaches(&sb, &From::Container("va"), OUT_PEER, 7000), OUT_HOST);
    sb.sh("nft flush ruleset").ok();
    // No isolation, no NAT, no published port.
    assert_eq!(reaches(&sb, &From::Container("va"), "10.62.0.2", 7100), "10.61.0.2");
    blocked(&sb, &From::Container("va"), OUT_PEER, 7000);
    blocked(&sb, &From::Outside(&out), OUT_HOST, 8080);
    sb.kleene(&["system", "reconcile"]).ok();
    blocked(&sb, &From::Container("va"), "10.62.0.2", 7100);
    assert_eq!(reaches(&sb, &From::Container("va"), OUT_PEER, 7000), OUT_HOST);
    assert_eq!(reaches(&sb, &From::Outside(&out), OUT_HOST, 8080), OUT_PEER);
}

#[test]
fn other_tables_survive_and_removed_networks_leave_no_rules() {
    let sb = Sandbox::new("fw-other");
    sb.sh("nft add table inet operator && \
         nft add chain inet operator input '{ type filter hook input priority 0; policy accept; }' && \
         nft add rule inet operator input tcp dport 4321 counter accept comment '\"mine\"'")
        .ok();
    let operator = || {
        let t = nft_list(&sb, "table inet operator");
        assert!(t.contains("tcp dport 4321") && t.contains("mine"), "operator table changed: {t}");
    };
    operator();
    network(&sb, &["-t", "bridge", "--subnet", "10.71.0.0/24", "keep"]);
    operator();
    network(&sb, &["-t", "bridge", "--no-icc", "--subnet", "10.72.0.0/24", "--subnet6", "fd00:72::/64", "gone"]);
    operator();
    sb.kleene(&["container", "create", "-l", "vnet", "-n", "gone", "-p", "6543", "c"]).ok();
    operator();
    sb.kleene(&["container", "start", "c"]).ok();
    operator();
    let kleene = nft_list(&sb, "table inet kleene");
    assert!(kleene.contains("10.72.0.0/24") && kleene.contains("6543") && kleene.contains("network gone"));
    sb.kleene(&["network", "connect", "keep", "c"]).ok();
    operator();
    sb.kleene(&["network", "disconnect", "keep", "c"]).ok();
    operator();
    sb.kleene(&["container", "stop", "c"]).ok();
    operator();
    sb.kleene(&["container", "rm", "c"]).ok();
    operator();
    sb.kleene(&["network", "rm", "gone"]).ok();
    operator();
    let kleene = nft_list(&sb, "table inet kleene");
    for gone in ["10.72.", "fd00:72", "gone", "6543"] {
        assert!(!kleene.contains(gone), "{gone} left behind: {kleene}");
    }
    assert!(kleene.contains("10.71.0.0/24"));
    sb.kleene(&["system", "reconcile"]).ok();
    operator();
}

#[test]
fn a_failed_firewall_update_rolls_the_change_back() {
    let sb = Sandbox::new("fw-fail");
    network(&sb, &["-t", "bridge", "--subnet", "10.81.0.0/24", "first"]);
    let before = nft_list(&sb, "table inet kleene");
    let run = sb.kleene_env(
        &["network", "create", "-t", "bridge", "--subnet", "10.82.0.0/24", "second"],
        &[("KLEENE_FAULT_INJECT", "fail-at:firewall")],
    );
    assert!(run.err().contains("injected fault at the firewall"), "{}", run.stderr);
    assert!(!sb.links().contains(&"kleene1".to_string()), "bridge rolled back");
    let names: Vec<String> = sb
        .kleene(&["network", "ls", "--json"])
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["first"]);
    assert_eq!(nft_list(&sb, "table inet kleene"), before);
}

#[test]
fn dry_run_prints_the_ruleset_for_both_platforms() {
    let sb = Sandbox::new("fw-dry");
    // A default route: pf redirects published ports arriving at its interface.
    sb.sh("ip link add up0 type veth peer name up1 && ip link set up1 up && ip link set up0 up && ip addr add 192.0.2.2/24 dev up0 && ip route add default via 192.0.2.1").ok();
    network(&sb, &["-t", "bridge", "--subnet", "10.91.0.0/24", "br"]);
    sb.kleene(&["container", "create", "-l", "vnet", "-n", "br", "-p", "8080:80", "web"]).ok();
    let before = nft_list(&sb, "table inet kleene");
    let linux = sb.kleene(&["--dry-run", "--os", "linux", "container", "start", "web"]).ok();
    assert!(linux.contains("nft -f - <<'EOF'\ntable inet kleene {}\ndelete table inet kleene\n"), "{linux}");
    assert!(linux.contains("tcp . 8080 comment \"container web network br\" : 10.91.0.2 . 80"), "{linux}");
    let bsd = sb.kleene(&["--dry-run", "--os", "freebsd", "container", "start", "web"]).ok();
    assert!(bsd.contains("pfctl -a kleene -f - <<'EOF'\n# kleene anchor"), "{bsd}");
    assert!(bsd.contains("rdr on $kleenet_rdr_interfaces inet proto tcp from any to ($kleenet_host_gw_if) port 8080 -> 10.91.0.2 port 80"), "{bsd}");
    assert!(bsd.contains("kleenet_host_gw_if=\"up0\""), "{bsd}");
    assert!(bsd.ends_with("EOF"), "{bsd}");
    // The pf macros and the jail's bridge port name the same host end (the recorded one).
    let ep = &sb.kleene(&["container", "inspect", "web"]).json()["container_endpoints"][0];
    let host_end = format!("kv{}", &ep["id"].as_str().unwrap()[..12]);
    assert!(bsd.contains(&format!("exec.prestart=\"ifconfig kleene0 addm {host_end}\"")), "{bsd}");
    assert!(bsd.contains(&format!("_all_interfaces=\"{{ kleene0, lo0, {host_end} }}\"")), "{bsd}");
    // The whole output is one script sh accepts, anchor and all.
    let syntax = std::process::Command::new("sh").args(["-n", "-c", &bsd]).output().unwrap();
    assert!(syntax.status.success(), "sh -n: {}", String::from_utf8_lossy(&syntax.stderr));
    // Nothing changed.
    assert_eq!(nft_list(&sb, "table inet kleene"), before);
    assert!(!before.contains("8080"));
    let reconcile = sb.kleene(&["--dry-run", "--os", "freebsd", "system", "reconcile"]).ok();
    assert!(reconcile.contains("\npfctl -a kleene -f - <<'EOF'\n"), "{reconcile}");
}

/// The record of the table last loaded (run dir) is input like any file: one whose element
/// could not be kleene's (an interface name written to end the delete and flush the ruleset),
/// or one that lists an element the kernel never had, leads to a full replacement, and the
/// kernel ends up with exactly the rules of the state, the operator's table untouched.
#[test]
fn a_crafted_or_lying_firewall_record_leads_to_a_full_replacement() {
    let sb = Sandbox::new("fw-record");
    sb.sh("nft add table inet operator && nft add chain inet operator mine").ok();
    network(&sb, &["-t", "bridge", "--subnet", "10.63.0.0/24", "a"]);
    let record = sb.dir.path().join("run/firewall.json");
    let stored = std::fs::read_to_string(&record).unwrap();
    let element = "{\"Net\":\"10.63.0.0/24\"}";
    assert!(stored.contains(element), "{stored}");
    let subnets = || sb.sh("nft list set inet kleene subnets4").ok();

    let crafted = stored.replacen(element, "{\"Ifname\":\"x\\\" }; flush ruleset; #\"}", 1);
    std::fs::write(&record, crafted).unwrap();
    let run = sb.kleene(&["-vv", "network", "create", "-t", "bridge", "--subnet", "10.64.0.0/24", "b"]);
    run.ok();
    assert!(run.stderr.contains("stored set subnets4 holds an element of the wrong type"), "{}", run.stderr);
    assert!(run.stderr.contains("firewall: replaced table inet kleene"), "{}", run.stderr);
    assert!(sb.sh("nft list tables").ok().contains("table inet operator"));
    let now = subnets();
    assert!(now.contains("10.63.0.0/24") && now.contains("10.64.0.0/24"), "{now}");

    // Well-formed, but it claims the kernel holds a subnet it does not: deleting it fails, and
    // the update falls back to the replacement in the same run.
    let stored = std::fs::read_to_string(&record).unwrap();
    let lying = stored.replacen(element, "{\"Net\":\"10.99.0.0/24\"}", 1);
    assert_ne!(lying, stored);
    std::fs::write(&record, lying).unwrap();
    let run = sb.kleene(&["-vv", "network", "rm", "b"]);
    run.ok();
    assert!(run.stderr.contains("the element update failed"), "{}", run.stderr);
    assert!(run.stderr.contains("firewall: replaced table inet kleene"), "{}", run.stderr);
    let now = subnets();
    assert!(now.contains("10.63.0.0/24") && !now.contains("10.64.0.0/24") && !now.contains("10.99"), "{now}");
    assert!(sb.sh("nft list tables").ok().contains("table inet operator"));
}

/// A change to no row the rules read (a vnet container without published ports) leaves the
/// table and its recorded generation as they were; a change to one (a publishing vnet
/// container starting or stopping) still loads the rules.
#[test]
fn only_changes_to_what_the_rules_read_load_them() {
    let sb = Sandbox::new("fw-inputs");
    network(&sb, &["-t", "bridge", "--subnet", "10.64.0.0/24", "a"]);
    let recorded = || std::fs::read_to_string(sb.dir.path().join("run/firewall.generation")).expect("recorded");
    let before = (nft_list(&sb, "table inet kleene"), recorded());
    started(&sb, &["-l", "vnet", "-n", "a", "quiet"]);
    sb.kleene(&["container", "stop", "quiet"]).ok();
    assert_eq!((nft_list(&sb, "table inet kleene"), recorded()), before, "a vnet container changed the rules");
    started(&sb, &["-l", "vnet", "-n", "a", "-p", "8085:80", "web"]);
    let map = nft_list(&sb, "map inet kleene publish4");
    assert!(
        map.contains("tcp . 8085 comment \"container web network a\" : 10.64.0.3 . 80"),
        "the start of a publishing container left no redirect: {map}"
    );
    sb.kleene(&["container", "stop", "web"]).ok();
    let map = nft_list(&sb, "map inet kleene publish4");
    assert!(!map.contains("8085"), "the stop of a publishing container left its redirect: {map}");
    assert_ne!(recorded(), before.1);
}
