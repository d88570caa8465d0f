//! Container DNS (docs/dns.md), end to end: names and aliases between containers of a
//! network, v4 and v6, through glibc (`getent`) and Python; isolation between networks;
//! live updates on disconnect, stop and start; reverse lookups; an ipnet container asking;
//! forwarding to the upstream resolver (a fake one inside the test's namespace) except on
//! internal networks; a killed resolver brought back by reconcile; a missing resolver.
//!
//! Every kleene command of a test runs in one mount namespace of the test's own (held by a
//! sleeping process) whose /etc/resolv.conf names the fake upstream, so the resolver kleene
//! starts (which inherits it) forwards there and never to this machine's resolvers. One
//! namespace for all of them: the containers' namespace pins are mounts, seen only there.

use kleene_tests::{kleene_bin, Run, Sandbox, TempDir};
use serde_json::Value;
use std::process::{Child, Command, Stdio};

/// Where the fake upstream listens (inside the test's namespace), and what it answers.
const UPSTREAM: &str = "192.0.2.53";
const UPSTREAM_NAME: &str = "upstream.example.test";
const UPSTREAM_ANSWER: &str = "198.51.100.7";

/// A test's namespace with a fake upstream resolver running in it.
struct Dns {
    sb: Sandbox,
    _resolv: TempDir,
    /// Holds the mount namespace.
    holder: Child,
    upstream: Child,
}

/// The first line a child prints (it says "ready" once it is).
fn ready(child: &mut Child) {
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.as_mut().expect("piped")), &mut line)
        .unwrap();
    assert_eq!(line.trim(), "ready");
}

impl Dns {
    fn new(tag: &str) -> Dns {
        let sb = Sandbox::new(tag);
        sb.sh(&format!("ip addr add {UPSTREAM}/32 dev lo")).ok();
        let resolv = TempDir::new(&format!("{tag}-resolv"));
        std::fs::write(resolv.path().join("resolv.conf"), format!("nameserver {UPSTREAM}\n")).unwrap();
        let mut upstream = Command::new("nsenter")
            .arg(format!("--net={}", sb.netns_path().display()))
            .args(["--", "python3", "-c", FAKE_UPSTREAM, UPSTREAM, UPSTREAM_NAME, UPSTREAM_ANSWER])
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the fake upstream");
        ready(&mut upstream);
        let mut holder = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "--", "sh", "-c"])
            .arg(r#"mount --bind "$0" /etc/resolv.conf && echo ready && exec sleep 3600"#)
            .arg(resolv.path().join("resolv.conf"))
            .stdout(Stdio::piped())
            .spawn()
            .expect("make the test's mount namespace");
        ready(&mut holder);
        Dns { sb, _resolv: resolv, holder, upstream }
    }

    /// kleene in the namespace, with the fake upstream in its /etc/resolv.conf.
    fn kleene_env(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--mount=/proc/{}/ns/mnt", self.holder.id()))
            .arg(format!("--net={}", self.sb.netns_path().display()))
            .arg("--")
            .arg(kleene_bin())
            .arg("--state-dir")
            .arg(self.sb.dir.path().join("state"))
            .arg("--run-dir")
            .arg(self.sb.dir.path().join("run"))
            .args(args)
            .env("KLEENE_PLUGIN_PATH", &self.sb.plugin_path)
            .env_remove("KLEENE_LOG")
            .env_remove("KLEENE_AARDVARK_DNS")
            .envs(env.iter().copied());
        Run::from_output(cmd.output().expect("run kleene"))
    }

    fn kleene(&self, args: &[&str]) -> Run {
        self.kleene_env(args, &[])
    }

    /// A command inside a container.
    fn exec(&self, container: &str, argv: &[&str]) -> Run {
        let mut args = vec!["container", "exec", container, "--"];
        args.extend(argv);
        self.kleene(&args)
    }

    /// The addresses glibc finds for `name` in `container` (`getent ahosts`), sorted; empty
    /// when the name is unknown.
    fn lookup(&self, container: &str, name: &str) -> Vec<String> {
        let run = self.exec(container, &["getent", "ahosts", name]);
        let mut found: Vec<String> =
            run.stdout.lines().filter_map(|l| l.split_whitespace().next()).map(String::from).collect();
        found.sort();
        found.dedup();
        found
    }

    /// Python's getaddrinfo for `name` in `container`: sorted addresses, or "unknown".
    fn getaddrinfo(&self, container: &str, name: &str) -> String {
        let code = "import socket, sys\ntry:\n    print(' '.join(sorted({a[4][0] for a in socket.getaddrinfo(sys.argv[1], 80)})))\nexcept socket.gaierror:\n    print('unknown')";
        self.exec(container, &["python3", "-c", code, name]).ok()
    }

    /// The pid of the running resolver of `scope` ("forwarding" or "internal").
    fn resolver_pid(&self, scope: &str) -> Option<String> {
        let file = self.sb.dir.path().join(format!("run/dns/{scope}.pid"));
        std::fs::read_to_string(file).ok().filter(|pid| is_live(pid))
    }
}

/// Whether process `pid` exists and has not exited (a zombie waits for its reaper).
fn is_live(pid: &str) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    stat.rsplit_once(')').is_some_and(|(_, rest)| !rest.trim_start().starts_with(['Z', 'X']))
}

impl Drop for Dns {
    fn drop(&mut self) {
        // What the sandbox's own cleanup would do, but where the namespace pins are.
        if let Ok(Value::Array(cs)) = serde_json::from_str(&self.kleene(&["container", "ls", "-a", "--json"]).stdout) {
            for c in cs.iter().filter_map(|c| c["id"].as_str()) {
                self.kleene(&["container", "rm", "-f", c]);
            }
        }
        self.kleene(&["network", "prune", "-f"]);
        let _ = self.holder.kill();
        let _ = self.holder.wait();
        let _ = self.upstream.kill();
        let _ = self.upstream.wait();
    }
}

/// Answers A queries for argv[2] with argv[3]; NXDOMAIN for anything else.
const FAKE_UPSTREAM: &str = r#"
import socket, struct, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], 53))
print("ready", flush=True)
while True:
    q, peer = s.recvfrom(512)
    i, labels = 12, []
    while q[i]:
        labels.append(q[i + 1:i + 1 + q[i]].decode()); i += 1 + q[i]
    qtype = struct.unpack(">H", q[i + 1:i + 3])[0]
    question = q[12:i + 5]
    known = ".".join(labels).lower() == sys.argv[2]
    rcode = 0 if known else 3
    answers = b""
    if known and qtype == 1:
        answers = b"\xc0\x0c" + struct.pack(">HHIH", 1, 1, 60, 4) + socket.inet_aton(sys.argv[3])
    head = q[:2] + struct.pack(">HHHHH", 0x8180 | rcode, 1, 1 if answers else 0, 0, 0)
    s.sendto(head + question + answers, peer)
"#;

/// A PTR query for `ip` sent at the container's resolver: the names in the answer's records
/// (read off the wire: aardvark-dns 1.4 leaves the records' owner name empty, which glibc
/// ignores, see docs/dns.md).
const PTR_QUERY: &str = r#"
import ipaddress, socket, struct, sys
server = open("/etc/resolv.conf").read().split("nameserver ")[1].split()[0]
name = ipaddress.ip_address(sys.argv[1]).reverse_pointer
q = struct.pack(">HHHHHH", 7, 0x100, 1, 0, 0, 0) + b"".join(bytes([len(l)]) + l.encode() for l in name.split(".")) + b"\0" + struct.pack(">HH", 12, 1)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(2)
s.sendto(q, (server, 53))
r = s.recv(4096)
count, i = struct.unpack(">H", r[6:8])[0], len(q)
names = []
for _ in range(count):
    while r[i] and r[i] & 0xC0 != 0xC0: i += 1 + r[i]
    i += 2 if r[i] else 1
    rtype, _, _, length = struct.unpack(">HHIH", r[i:i + 10]); i += 10
    if rtype == 12:
        j, labels = i, []
        while r[j]:
            if r[j] & 0xC0 == 0xC0:
                j = (r[j] & 0x3F) << 8 | r[j + 1]
                continue
            labels.append(r[j + 1:j + 1 + r[j]].decode()); j += 1 + r[j]
        names.append(".".join(labels))
    i += length
print(" ".join(sorted(names)))
"#;

fn endpoint_address(doc: &Value, network_id: &str, field: &str) -> String {
    let eps = doc["container_endpoints"].as_array().expect("endpoints");
    let ep = eps.iter().find(|e| e["network_id"] == network_id).expect("endpoint on the network");
    ep[field].as_str().unwrap().to_string()
}

#[test]
fn containers_find_each_other_by_name_and_alias_within_their_network_only() {
    let t = Dns::new("dns-names");
    let net = t
        .kleene(&[
            "network",
            "create",
            "-t",
            "bridge",
            "--subnet",
            "10.61.0.0/24",
            "--subnet6",
            "fd00:61::/64",
            "front",
        ])
        .ok();
    let other = t.kleene(&["network", "create", "-t", "bridge", "--subnet", "10.62.0.0/24", "back"]).ok();
    assert_eq!(t.kleene(&["network", "inspect", "front"]).json()["network"]["dns"], true);
    t.kleene(&["container", "create", "-l", "vnet", "-n", "front", "--alias", "www", "--alias", "site", "web"]).ok();
    t.kleene(&["container", "create", "-l", "vnet", "-n", "front", "client"]).ok();
    t.kleene(&["container", "create", "-l", "vnet", "-n", "back", "stranger"]).ok();
    for c in ["web", "client", "stranger"] {
        t.kleene(&["container", "start", c]).ok();
    }
    let web = t.kleene(&["container", "inspect", "web"]).json();
    let (v4, v6) = (endpoint_address(&web, &net, "ip_address"), endpoint_address(&web, &net, "ip_address6"));
    assert_eq!(web["container_endpoints"][0]["aliases"], serde_json::json!(["www", "site"]));

    // The container's resolv.conf names its network's resolver; inspect shows its path.
    let client = t.kleene(&["container", "inspect", "client"]).json();
    let path = client["resolv_conf"].as_str().expect("a resolv.conf path").to_string();
    let conf = std::fs::read_to_string(&path).unwrap();
    assert!(conf.contains("nameserver 10.61.0.1\n") && conf.contains("nameserver fd00:61::1\n"), "{conf}");
    assert_eq!(t.exec("client", &["cat", "/etc/resolv.conf"]).ok(), conf.trim());

    let both = {
        let mut b = vec![v4.clone(), v6.clone()];
        b.sort();
        b
    };
    for name in ["web", "www", "site", "WEB"] {
        assert_eq!(t.lookup("client", name), both, "glibc, {name}");
    }
    assert_eq!(t.exec("client", &["getent", "ahostsv4", "www"]).ok().split_whitespace().next(), Some(v4.as_str()));
    assert_eq!(t.exec("client", &["getent", "ahostsv6", "site"]).ok().split_whitespace().next(), Some(v6.as_str()));
    assert_eq!(t.getaddrinfo("client", "www"), both.join(" "), "Python");
    // From another network the name does not exist.
    assert_eq!(t.lookup("stranger", "web"), Vec::<String>::new());
    assert_eq!(t.getaddrinfo("stranger", "www"), "unknown");
    assert!(t.kleene(&["network", "inspect", &other]).ok().contains("\"dns\": true"));

    // Reverse lookups answer with the container's names.
    assert_eq!(t.exec("client", &["python3", "-c", PTR_QUERY, &v4]).ok(), "site web www");

    // Live: gone when disconnected, back (with a new alias) when connected, gone when
    // stopped, back when started; each as soon as the command returns.
    t.kleene(&["network", "disconnect", "front", "web"]).ok();
    assert_eq!(t.lookup("client", "web"), Vec::<String>::new());
    t.kleene(&["network", "connect", "--alias", "api", "front", "web"]).ok();
    assert_eq!(t.lookup("client", "api").len(), 2);
    assert_eq!(t.lookup("client", "www"), Vec::<String>::new(), "the old alias went with the old endpoint");
    t.kleene(&["container", "stop", "web"]).ok();
    assert_eq!(t.lookup("client", "web"), Vec::<String>::new());
    t.kleene(&["container", "start", "web"]).ok();
    assert_eq!(t.lookup("client", "web").len(), 2);
    t.kleene(&["container", "rm", "-f", "web"]).ok();
    assert_eq!(t.lookup("client", "api"), Vec::<String>::new());
}

#[test]
fn an_ipnet_container_on_a_dns_bridge_resolves_a_vnet_container() {
    let t = Dns::new("dns-ipnet");
    t.kleene(&["network", "create", "-t", "bridge", "--subnet", "10.63.0.0/24", "mixed"]).ok();
    t.kleene(&["container", "create", "-l", "vnet", "-n", "mixed", "--alias", "db", "v"]).ok();
    t.kleene(&["container", "create", "-l", "ipnet", "-n", "mixed", "i"]).ok();
    t.kleene(&["container", "start", "v"]).ok();
    t.kleene(&["container", "start", "i"]).ok();
    assert_eq!(t.lookup("i", "db"), ["10.63.0.2"]);
    // And the other way round: the ipnet container's name answers too.
    assert_eq!(t.lookup("v", "i"), ["10.63.0.3"]);
}

#[test]
fn unknown_names_are_forwarded_upstream_except_on_internal_networks() {
    let t = Dns::new("dns-forward");
    t.kleene(&["network", "create", "-t", "bridge", "--subnet", "10.64.0.0/24", "open"]).ok();
    t.kleene(&["network", "create", "-t", "bridge", "--internal", "--no-icc", "--subnet", "10.65.0.0/24", "closed"])
        .ok();
    for (name, net) in [("out", "open"), ("in1", "closed"), ("in2", "closed")] {
        t.kleene(&["container", "create", "-l", "vnet", "-n", net, name]).ok();
        t.kleene(&["container", "start", name]).ok();
    }
    assert_eq!(t.lookup("out", UPSTREAM_NAME), [UPSTREAM_ANSWER]);
    // An internal network answers only its own names, also without icc (the firewall lets
    // its containers reach the gateway's port 53, and nothing else of each other).
    assert_eq!(t.lookup("in1", UPSTREAM_NAME), Vec::<String>::new());
    assert_eq!(t.lookup("in1", "in2"), ["10.65.0.3"]);
    let ping = t.exec("in1", &["ping", "-c1", "-W1", "10.65.0.3"]);
    assert_ne!(ping.code, 0, "no icc still holds between the containers");
    // Two resolvers: one forwarding, one not; one of each.
    assert!(t.resolver_pid("forwarding").is_some() && t.resolver_pid("internal").is_some());
    // The last internal network gone, its resolver goes; so does the other with the last.
    t.kleene(&["network", "rm", "closed"]).ok();
    assert_eq!(t.resolver_pid("internal"), None);
    let pid = t.resolver_pid("forwarding").expect("still serving 'open'");
    t.kleene(&["network", "rm", "open"]).ok();
    assert_eq!(t.resolver_pid("forwarding"), None);
    assert!(!is_live(&pid), "the resolver process is gone");
}

#[test]
fn a_killed_resolver_comes_back_with_reconcile_and_runs_unprivileged() {
    let t = Dns::new("dns-reconcile");
    t.kleene(&["network", "create", "-t", "bridge", "--subnet", "10.66.0.0/24", "n"]).ok();
    for c in ["a", "b"] {
        t.kleene(&["container", "create", "-l", "vnet", "-n", "n", c]).ok();
        t.kleene(&["container", "start", c]).ok();
    }
    let pid = t.resolver_pid("forwarding").expect("a resolver runs");
    // Least privilege: nobody, and CAP_NET_BIND_SERVICE (bit 10) alone.
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status.lines().find(|l| l.starts_with(name)).unwrap().split_whitespace().nth(1).unwrap().to_string()
    };
    assert_eq!(field("Uid:"), "65534");
    assert_eq!(field("CapEff:"), "0000000000000400");
    assert_eq!(field("CapPrm:"), "0000000000000400");
    // Exactly one resolver serves this run dir.
    assert_eq!(serving(&t), 1);

    Command::new("kill").args(["-9", &pid]).status().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    while t.lookup("a", "b").len() == 1 && std::time::Instant::now() < deadline {}
    assert_eq!(t.lookup("a", "b"), Vec::<String>::new(), "the resolver is dead");
    t.kleene(&["system", "reconcile"]).ok();
    assert_eq!(t.lookup("a", "b"), ["10.66.0.3"]);
    let again = t.resolver_pid("forwarding").expect("running again");
    assert_ne!(again, pid);
    assert_eq!(serving(&t), 1);

    // kleene's record of it lost: the next start of one stops the one it lost track of.
    std::fs::remove_file(t.sb.dir.path().join("run/dns/forwarding.pid")).unwrap();
    t.kleene(&["system", "reconcile"]).ok();
    assert!(!is_live(&again), "the untracked resolver was stopped");
    assert_eq!(serving(&t), 1);
    assert_eq!(t.lookup("a", "b"), ["10.66.0.3"]);
}

/// How many aardvark-dns processes serve the test's forwarding directory.
fn serving(t: &Dns) -> usize {
    let ours = Command::new("pgrep").args(["-x", "aardvark-dns"]).output().unwrap();
    let dir = t.sb.dir.path().join("run/dns/forwarding");
    String::from_utf8_lossy(&ours.stdout)
        .lines()
        .filter(|p| is_live(p) && std::fs::read_link(format!("/proc/{p}/cwd")).is_ok_and(|cwd| cwd == dir))
        .count()
}

#[test]
fn a_missing_resolver_leaves_dns_off_with_one_warning() {
    let t = Dns::new("dns-missing");
    let missing = [("KLEENE_AARDVARK_DNS", "/nonexistent/aardvark-dns")];
    let run = t.kleene_env(&["network", "create", "-t", "bridge", "--subnet", "10.67.0.0/24", "n"], &missing);
    run.ok();
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{}", run.stderr);
    assert!(lines[0].contains("install the package aardvark-dns"), "{}", lines[0]);
    assert_eq!(t.kleene(&["network", "inspect", "n"]).json()["network"]["dns"], false);

    let before = t.sb.state_snapshot();
    let run = t.kleene_env(&["network", "create", "--dns", "-t", "bridge", "--subnet", "10.68.0.0/24", "m"], &missing);
    let err = run.err();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("install the package aardvark-dns"), "{err}");
    assert_eq!(t.sb.state_snapshot(), before, "nothing created");
    // --dns where there is no gateway on the host to serve on, and --no-dns.
    let err = t
        .kleene(&["network", "create", "--dns", "-t", "bridge", "--gw", "none", "--subnet", "10.69.0.0/24", "g"])
        .err();
    assert!(err.contains("no gateway on the host to serve DNS on"), "{err}");
    t.kleene(&["network", "create", "--no-dns", "-t", "bridge", "--subnet", "10.70.0.0/24", "quiet"]).ok();
    assert_eq!(t.kleene(&["network", "inspect", "quiet"]).json()["network"]["dns"], false);
    assert_eq!(t.resolver_pid("forwarding"), None, "no DNS network, no resolver");
}

#[test]
fn bad_aliases_are_refused_in_one_line() {
    let t = Dns::new("dns-alias");
    t.kleene(&["network", "create", "-t", "bridge", "--subnet", "10.71.0.0/24", "n"]).ok();
    t.kleene(&["container", "create", "-l", "vnet", "c"]).ok();
    let before = t.sb.state_snapshot();
    for bad in ["Web", "we_b", "-web", "a b", "a,b"] {
        let err = t.kleene(&["network", "connect", &format!("--alias={bad}"), "n", "c"]).err();
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains("invalid alias"), "{err}");
        let err = t.kleene(&["container", "create", "-l", "vnet", "-n", "n", &format!("--alias={bad}"), "d"]).err();
        assert!(err.contains("invalid alias"), "{err}");
    }
    assert_eq!(t.sb.state_snapshot(), before);
}

#[test]
fn a_networks_dns_domain_is_searched_and_its_names_answer_qualified() {
    let t = Dns::new("dns-domain");
    let net = t
        .kleene(&[
            "network",
            "create",
            "-t",
            "bridge",
            "--subnet",
            "10.76.0.0/24",
            "--subnet6",
            "fd00:76::/64",
            "--dns-domain",
            "Example.Internal",
            "app",
        ])
        .ok();
    t.kleene(&["network", "create", "-t", "bridge", "--subnet", "10.77.0.0/24", "--dns-domain", "other.lan", "back"])
        .ok();
    let inspect = t.kleene(&["network", "inspect", "app"]).json();
    assert_eq!(inspect["network"]["dns_domain"], "example.internal", "kept lowercase");
    t.kleene(&["container", "create", "-l", "vnet", "-n", "app", "--alias", "www", "web"]).ok();
    t.kleene(&["container", "create", "-l", "vnet", "-n", "app", "client"]).ok();
    t.kleene(&["container", "create", "-l", "vnet", "-n", "back", "stranger"]).ok();
    for c in ["web", "client", "stranger"] {
        t.kleene(&["container", "start", c]).ok();
    }
    // Joining a second network later does not change which domain a container searches.
    t.kleene(&["network", "connect", "back", "client"]).ok();
    let web = t.kleene(&["container", "inspect", "web"]).json();
    let (v4, v6) = (endpoint_address(&web, &net, "ip_address"), endpoint_address(&web, &net, "ip_address6"));
    let mut both = vec![v4.clone(), v6];
    both.sort();

    // The resolv.conf names the first DNS network's resolver and searches its domain.
    let conf = t.exec("client", &["cat", "/etc/resolv.conf"]).ok();
    assert_eq!(
        conf,
        "# kleene: container client, DNS of network app\nnameserver 10.76.0.1\nnameserver fd00:76::1\nsearch example.internal"
    );
    // Plain and qualified, name and alias, through glibc and Python.
    for name in ["web", "web.example.internal", "www", "www.example.internal", "WEB.Example.Internal"] {
        assert_eq!(t.lookup("client", name), both, "glibc, {name}");
    }
    let hosts = t.exec("client", &["getent", "hosts", "web.example.internal"]).ok();
    assert!(hosts.starts_with(&format!("{} ", both[0])) || hosts.starts_with(&format!("{} ", both[1])), "{hosts}");
    assert_eq!(t.getaddrinfo("client", "web.example.internal"), both.join(" "), "Python");
    // The qualified name is the network's own: another network's domain does not serve it,
    // and the other network's container finds neither form.
    assert_eq!(t.lookup("client", "web.other.lan"), Vec::<String>::new());
    assert_eq!(t.lookup("stranger", "web"), Vec::<String>::new());
    assert_eq!(t.lookup("stranger", "web.example.internal"), Vec::<String>::new());
    assert_eq!(t.exec("stranger", &["cat", "/etc/resolv.conf"]).ok().lines().last(), Some("search other.lan"));
    // Names elsewhere still go upstream.
    assert_eq!(t.lookup("client", UPSTREAM_NAME), [UPSTREAM_ANSWER]);
    // Reverse lookups answer with both forms.
    assert_eq!(
        t.exec("client", &["python3", "-c", PTR_QUERY, &v4]).ok(),
        "web web.example.internal www www.example.internal"
    );
}

#[test]
fn bad_dns_domains_are_refused_in_one_line() {
    let t = Dns::new("dns-baddomain");
    t.kleene(&["network", "create", "-t", "bridge", "--subnet", "10.78.0.0/24", "n"]).ok();
    let before = t.sb.state_snapshot();
    let create = |domain: &str, extra: &[&str]| {
        let flag = format!("--dns-domain={domain}");
        let mut args = vec!["network", "create", "-t", "bridge", &flag];
        args.extend(extra);
        args.push("m");
        t.kleene(&args)
    };
    let subnet: &[&str] = &["--subnet", "10.79.0.0/24"];
    for bad in ["ex ample", "ex_ample", "a..b", "example.internal.", "-x.lan", "a,b", ""] {
        let err = create(bad, subnet).err();
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains("--dns-domain") && err.contains("is not a DNS name"), "{err}");
    }
    // Where the network serves no DNS, as --dns is refused there.
    let err = create("lan", &["--gw", "none", "--subnet", "10.79.0.0/24"]).err();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("--dns-domain: network 'm' has no gateway on the host to serve DNS on"), "{err}");
    let err = create("lan", &["--no-dns", "--subnet", "10.79.0.0/24"]).err();
    assert!(err.lines().next().unwrap().contains("'--dns-domain <DOMAIN>' cannot be used with '--no-dns'"), "{err}");
    let missing = [("KLEENE_AARDVARK_DNS", "/nonexistent/aardvark-dns")];
    let run = t.kleene_env(
        &["network", "create", "-t", "bridge", "--subnet", "10.79.0.0/24", "--dns-domain", "lan", "m"],
        &missing,
    );
    assert!(run.err().contains("install the package aardvark-dns"));
    assert_eq!(t.sb.state_snapshot(), before, "nothing created");
}

#[test]
fn a_dry_run_for_freebsd_renders_the_jails_resolv_conf() {
    let t = Dns::new("dns-freebsd");
    t.kleene(&[
        "network",
        "create",
        "-t",
        "bridge",
        "--subnet",
        "10.72.0.0/24",
        "--subnet6",
        "fd00:72::/64",
        "--dns-domain",
        "jails.example",
        "n",
    ])
    .ok();
    let id = t.kleene(&["container", "create", "-l", "vnet", "-n", "n", "jailed"]).ok();
    let script = t.kleene(&["--dry-run", "--os", "freebsd", "container", "start", "jailed"]).ok();
    let path = t.sb.dir.path().join(format!("run/dns/resolv/{id}.conf"));
    let expected = format!(
        "cat > {} <<'EOF'\n# kleene: container jailed, DNS of network n\nnameserver 10.72.0.1\nnameserver fd00:72::1\nsearch jails.example\nEOF",
        path.display()
    );
    assert!(script.contains(&expected), "{script}");
    assert!(!path.exists(), "a dry run writes nothing");
    // Starting it for real writes the same file.
    t.kleene(&["container", "start", "jailed"]).ok();
    let written = std::fs::read_to_string(&path).unwrap();
    assert!(expected.contains(&written), "{written}");
    // A stopped container has none (nothing to mount it into).
    t.kleene(&["container", "stop", "jailed"]).ok();
    assert!(!path.exists());
}

#[test]
fn the_api_takes_dns_and_aliases_and_serves_the_names() {
    let sb = Sandbox::new("dns-api");
    let server = sb.serve();
    let quiet = r#"{"name":"quiet","type":"bridge","subnet":"10.74.0.0/24","dns":false}"#;
    server.json("POST", "/networks/create", quiet, 201);
    server.json("POST", "/networks/create", r#"{"name":"app","type":"bridge","subnet":"10.75.0.0/24"}"#, 201);
    assert_eq!(server.json("GET", "/networks/quiet/inspect", "", 200)["network"]["dns"], false);
    assert_eq!(server.json("GET", "/networks/app/inspect", "", 200)["network"]["dns"], true);
    for name in ["web", "client"] {
        let body = format!(r#"{{"name":"{name}","network_driver":"vnet","image":"base","cmd":["/bin/sh"]}}"#);
        server.json("POST", "/containers/create", &body, 201);
    }
    let (code, answer) =
        server.request("POST", "/networks/connect", r#"{"container":"web","network":"app","aliases":["Bad_One"]}"#);
    assert_eq!(code, 409, "{answer}");
    assert!(answer.contains("invalid alias"), "{answer}");
    server.json("POST", "/networks/connect", r#"{"container":"web","network":"app","aliases":["db"]}"#, 204);
    server.json("POST", "/networks/connect", r#"{"container":"client","network":"app"}"#, 204);
    for name in ["web", "client"] {
        server.json("POST", &format!("/containers/{name}/start"), "", 200);
    }
    let web = server.json("GET", "/containers/web/inspect", "", 200);
    assert_eq!(web["container_endpoints"][0]["aliases"], serde_json::json!(["db"]));
    let found = sb.kleene(&["container", "exec", "client", "--", "getent", "hosts", "db"]).ok();
    assert!(found.starts_with("10.75.0.2 "), "{found}");

    // A DNS domain, given and shown by the API; klee shows it too (it keeps fields it does
    // not know) and still reads the network.
    let lan = r#"{"name":"lan","type":"bridge","subnet":"10.73.0.0/24","dns_domain":"corp.lan"}"#;
    server.json("POST", "/networks/create", lan, 201);
    assert_eq!(server.json("GET", "/networks/lan/inspect", "", 200)["network"]["dns_domain"], "corp.lan");
    let klee: Value = serde_json::from_str(&server.klee(&["network", "inspect", "lan"]).ok()).unwrap();
    assert_eq!(
        (&klee["network"]["subnet"], &klee["network"]["dns_domain"]),
        (&"10.73.0.0/24".into(), &"corp.lan".into())
    );
    assert!(server.klee(&["network", "ls"]).ok().lines().any(|l| l.contains("lan") && l.contains("10.73.0.0/24")));
    let (code, answer) = server.request(
        "POST",
        "/networks/create",
        r#"{"name":"bad","type":"bridge","subnet":"10.73.1.0/24","dns_domain":"no_such"}"#,
    );
    assert_eq!(code, 409, "{answer}");
    assert!(answer.contains("--dns-domain: 'no_such' is not a DNS name"), "{answer}");
    let (code, answer) = server.request(
        "POST",
        "/networks/create",
        r#"{"name":"bad","type":"bridge","subnet":"10.73.1.0/24","dns":false,"dns_domain":"corp.lan"}"#,
    );
    assert_eq!(code, 409, "{answer}");
    assert!(answer.contains("--dns-domain: network 'bad' is created without DNS (--no-dns)"), "{answer}");
}
