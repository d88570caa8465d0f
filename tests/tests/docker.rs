//! `kleene serve` as Docker's network driver and IPAM plugin: the real engine (Debian's
//! docker.io, dockerd 20.10) started privately in the test's network namespace and a mount
//! namespace of its own, and the protocol's error shapes through the plugin socket directly.
#![cfg(target_os = "linux")]

use kleene_tests::server::parse_answer;
use kleene_tests::{Run, Sandbox};
use serde_json::Value;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// One POST of Docker's plugin protocol on `socket`: (status, content type, body as JSON).
fn plugin_call(socket: &Path, method: &str, body: &str) -> (u16, String, Value) {
    let mut s = UnixStream::connect(socket).expect("connect to the plugin socket");
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let head = format!(
        "POST /{method} HTTP/1.1\r\nHost: plugin\r\nContent-Type: application/vnd.docker.plugins.v1.2+json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body.as_bytes()).unwrap();
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    let text = String::from_utf8_lossy(&answer).into_owned();
    let content_type = text
        .lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-type:").map(|v| v.trim().to_string()))
        .unwrap_or_default();
    let (status, body) = parse_answer(&text);
    (status, content_type, serde_json::from_str(&body).unwrap_or(Value::Null))
}

const HEX64: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

#[test]
fn plugin_protocol_answers_and_refuses_in_docker_shapes() {
    let sb = Sandbox::new("dockerproto");
    let socket = sb.dir.path().join("kleene-docker.sock");
    let _server = sb.serve_with(&["--docker-socket", &socket.display().to_string()]);

    let (status, ctype, body) = plugin_call(&socket, "Plugin.Activate", "");
    assert_eq!((status, ctype.as_str()), (200, "application/vnd.docker.plugins.v1.2+json"));
    assert_eq!(body["Implements"], serde_json::json!(["NetworkDriver", "IpamDriver"]));
    let (_, _, caps) = plugin_call(&socket, "NetworkDriver.GetCapabilities", "");
    assert_eq!(caps["Scope"], "local");

    // A body that does not decode: a 4xx with the protocol's error field.
    let (status, _, body) = plugin_call(&socket, "NetworkDriver.CreateNetwork", "{not json");
    assert_eq!(status, 400, "{body}");
    assert!(body["Err"].as_str().is_some_and(|e| e.contains("invalid request body")), "{body}");
    let (status, _, body) = plugin_call(&socket, "IpamDriver.RequestPool", "[1,2]");
    assert_eq!(status, 400, "{body}");
    assert!(body["Error"].as_str().is_some_and(|e| e.contains("invalid request body")), "{body}");

    // Refusals: the network driver's `Err`, IPAM's `Error`, each naming the thing.
    let (status, _, body) =
        plugin_call(&socket, "NetworkDriver.DeleteNetwork", &format!(r#"{{"NetworkID":"{HEX64}"}}"#));
    assert_eq!(status, 200);
    assert!(body["Err"].as_str().is_some_and(|e| e.contains("unknown network") && e.contains(HEX64)), "{body}");
    let join = format!(r#"{{"NetworkID":"{HEX64}","EndpointID":"{HEX64}","SandboxKey":"/x","Options":{{}}}}"#);
    let (_, _, body) = plugin_call(&socket, "NetworkDriver.Join", &join);
    assert!(body["Err"].as_str().is_some_and(|e| e.contains("unknown endpoint")), "{body}");
    let create = r#"{"NetworkID":"short","Options":{},"IPv4Data":[],"IPv6Data":[]}"#;
    let (_, _, body) = plugin_call(&socket, "NetworkDriver.CreateNetwork", create);
    assert!(body["Err"].as_str().is_some_and(|e| e.contains("64 hex digits")), "{body}");
    let (_, _, body) =
        plugin_call(&socket, "IpamDriver.RequestPool", r#"{"AddressSpace":"kleene","Pool":"","V6":false}"#);
    assert!(body["Error"].as_str().is_some_and(|e| e.contains("--subnet")), "{body}");
    assert!(body.get("Err").is_none(), "IPAM errors go in Error: {body}");
    let (_, _, body) = plugin_call(&socket, "IpamDriver.RequestAddress", r#"{"PoolID":"nonsense","Address":""}"#);
    assert!(body["Error"].as_str().is_some_and(|e| e.contains("unknown pool")), "{body}");
    let (_, _, body) =
        plugin_call(&socket, "IpamDriver.RequestPool", r#"{"Pool":"10.77.0.0/24","SubPool":"","V6":false}"#);
    assert_eq!(body["PoolID"], "10.77.0.0/24", "{body}");
    // An address before any network holds the pool: refused, nothing allocated anywhere.
    let (_, _, body) = plugin_call(&socket, "IpamDriver.RequestAddress", r#"{"PoolID":"10.77.0.0/24","Address":""}"#);
    assert!(body["Error"].as_str().is_some_and(|e| e.contains("no kleene network holds pool")), "{body}");

    // A method kleene does not implement: 404, which libnetwork reads as "not implemented".
    let (status, _, _) = plugin_call(&socket, "NetworkDriver.AllocateNetwork", "{}");
    assert_eq!(status, 404);
    assert_eq!(sb.state_snapshot(), Sandbox::new("dockerproto-empty").state_snapshot(), "refusals changed state");
}

/// dockerd (and the containerd it starts) in the sandbox's network namespace and a private
/// mount namespace: tmpfs over /run, its own data root, exec root, pid file and socket, no
/// default bridge; the kleene plugin socket is linked where Docker looks for plugins.
struct Dockerd {
    child: Child,
    socket: PathBuf,
    log: PathBuf,
}

impl Dockerd {
    fn start(sb: &Sandbox, plugin_socket: &Path) -> Dockerd {
        let dir = sb.dir.path();
        let (socket, log) = (dir.join("docker.sock"), dir.join("dockerd.log"));
        let child = Self::spawn(sb, plugin_socket, &socket, &log);
        let mut d = Dockerd { child, socket, log };
        d.wait_ready();
        d
    }

    fn spawn(sb: &Sandbox, plugin_socket: &Path, socket: &Path, log: &Path) -> Child {
        let dir = sb.dir.path();
        let script = format!(
            "mount -t tmpfs tmpfs /run && mkdir -p /run/docker/plugins && ln -s {plugin} /run/docker/plugins/kleene.sock && \
             exec dockerd --data-root {d}/docker-data --exec-root {d}/docker-exec --pidfile {d}/docker.pid \
             -H unix://{sock} --bridge=none --storage-driver vfs",
            plugin = plugin_socket.display(),
            d = dir.display(),
            sock = socket.display()
        );
        // Appended to: a restarted daemon's log follows the first one's.
        let log = std::fs::OpenOptions::new().create(true).append(true).open(log).expect("dockerd log");
        Command::new("nsenter")
            .arg(format!("--net={}", sb.netns_path().display()))
            .args(["--", "unshare", "--mount", "--propagation", "private", "sh", "-c", &script])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn dockerd (install docker.io: scripts/install-deps.sh)")
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.docker(&["version"]).code != 0 {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("dockerd exited ({status}): {}", self.log_text());
            }
            assert!(Instant::now() < deadline, "dockerd did not answer: {}", self.log_text());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stop the daemon with `signal` (SIGTERM, as its service manager would: it stops its
    /// containers; SIGKILL: it dies leaving them).
    fn stop_daemon(&mut self, signal: i32) {
        // SAFETY: kill(2) on our own child (sh execs dockerd, nsenter and unshare exec too).
        unsafe { libc::kill(self.child.id() as i32, signal) };
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.child.try_wait().ok().flatten().is_none() {
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stop the daemon with `signal` and start it again on the same data root, exec root and
    /// socket.
    fn restart(&mut self, sb: &Sandbox, plugin_socket: &Path, signal: i32) {
        self.stop_daemon(signal);
        self.child = Self::spawn(sb, plugin_socket, &self.socket, &self.log);
        self.wait_ready();
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn docker(&self, args: &[&str]) -> Run {
        let out = Command::new("docker")
            .arg("-H")
            .arg(format!("unix://{}", self.socket.display()))
            .args(args)
            .output()
            .expect("run docker");
        Run::from_output(out)
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        // A failed test may leave containers: dockerd would wait for each on the way down.
        let left = self.docker(&["ps", "-aq"]).stdout;
        let ids: Vec<&str> = left.split_whitespace().collect();
        if !ids.is_empty() {
            self.docker(&[&["rm", "-f"][..], &ids].concat());
        }
        self.stop_daemon(libc::SIGTERM);
    }
}

/// The page `httpd` serves in the busybox image.
const PAGE: &str = "served by a docker container on a kleene network";

/// A busybox root file system as a tar, for `docker import`.
fn busybox_tar(dir: &Path) -> PathBuf {
    let root = dir.join("rootfs");
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).expect("busybox-static is installed");
    for applet in ["sh", "ping", "ping6", "ip", "sleep", "cat", "httpd"] {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).unwrap();
    }
    std::fs::create_dir_all(root.join("www")).unwrap();
    std::fs::write(root.join("www/index.html"), PAGE).unwrap();
    let tar = dir.join("rootfs.tar");
    let ok = Command::new("tar").arg("-C").arg(&root).arg("-cf").arg(&tar).arg(".").status().unwrap();
    assert!(ok.success());
    tar
}

fn docker_ip(d: &Dockerd, container: &str) -> String {
    d.docker(&["inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", container]).ok()
}

#[test]
fn docker_containers_on_a_kleene_network_reach_each_other_and_leave_nothing_behind() {
    let sb = Sandbox::new("docker");
    let plugin = sb.dir.path().join("kleene-docker.sock");
    let server = sb.serve_with(&["--docker-socket", &plugin.display().to_string()]);
    let d = Dockerd::start(&sb, &plugin);
    d.docker(&["import", &busybox_tar(sb.dir.path()).display().to_string(), "kleene-busybox"]).ok();
    // Docker's defaults are on: it dropped forwarding by policy when it turned forwarding on.
    let forward = sb.sh("iptables -S FORWARD").ok();
    assert!(forward.contains("-P FORWARD DROP"), "{forward}");

    let links_before = sb.links();
    let net_id = d
        .docker(&[
            "network",
            "create",
            "-d",
            "kleene",
            "--ipam-driver",
            "kleene",
            "--subnet",
            "10.77.0.0/24",
            "--ipv6",
            "--subnet",
            "fd77::/64",
            "dnet",
        ])
        .ok();
    let kleene_net = format!("docker-{}", &net_id[..12]);
    let inspect = sb.kleene(&["network", "inspect", &kleene_net]).json();
    assert_eq!(inspect["network"]["subnet"], "10.77.0.0/24", "{inspect}");
    assert_eq!(inspect["network"]["gateway"], "10.77.0.1", "{inspect}");
    assert_eq!(inspect["network"]["subnet6"], "fd77::/64", "{inspect}");
    assert_eq!(inspect["network"]["gateway6"], "fd77::1", "{inspect}");

    d.docker(&["run", "-d", "--name", "c1", "--network", "dnet", "-p", "18080:80", "kleene-busybox", "sleep", "600"])
        .ok();
    // c2 asks for its address (`--ip`): Docker passes it to kleene's IPAM, which takes exactly it.
    d.docker(&[
        "run",
        "-d",
        "--name",
        "c2",
        "--network",
        "dnet",
        "--ip",
        "10.77.0.50",
        "kleene-busybox",
        "sleep",
        "600",
    ])
    .ok();
    let (ip1, ip2) = (docker_ip(&d, "c1"), docker_ip(&d, "c2"));
    assert_eq!(ip2, "10.77.0.50");
    // Each endpoint is a kleene container recording exactly Docker's address (no second
    // allocation: the gateway and the two containers are all that is used).
    let containers = sb.kleene(&["container", "ls", "--json"]).json();
    let names: Vec<&str> = containers.as_array().unwrap().iter().filter_map(|c| c["name"].as_str()).collect();
    assert_eq!(names.len(), 2, "{containers}");
    assert!(names.iter().all(|n| n.starts_with("docker-")), "{containers}");
    let inspect = sb.kleene(&["network", "inspect", &kleene_net]).json();
    let mut recorded: Vec<String> = inspect["network_endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["ip_address"].as_str().unwrap().to_string())
        .collect();
    recorded.sort();
    let mut given = vec![ip1.clone(), ip2.clone()];
    given.sort();
    assert_eq!(recorded, given, "{inspect}");
    assert_eq!(inspect["address_usage"]["subnet"]["used"], "3", "{inspect}");
    // A kleene container is refused what only Docker may do with its own.
    let err = sb.kleene(&["container", "stop", names[0]]).err();
    assert!(err.contains("belongs to docker"), "{err}");
    // Docker's published port is the container's kleene published port.
    let c1 = containers.as_array().unwrap().iter().find(|c| {
        let id = c["id"].as_str().unwrap();
        sb.kleene(&["container", "inspect", id]).json()["container_endpoints"][0]["ip_address"] == ip1.as_str()
    });
    let c1 = sb.kleene(&["container", "inspect", c1.unwrap()["id"].as_str().unwrap()]).json();
    assert_eq!(c1["published"], serde_json::json!(["18080:80/tcp"]), "{c1}");

    // A kleene vnet container on the same network.
    sb.kleene(&["container", "create", "-l", "vnet", "-n", &kleene_net, "v"]).ok();
    sb.kleene(&["container", "start", "v"]).ok();
    let v_ip = sb.kleene(&["network", "inspect", &kleene_net]).json()["network_endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|e| {
            let ip = e["ip_address"].as_str().unwrap();
            (ip != ip1 && ip != ip2).then(|| ip.to_string())
        })
        .expect("v's address");

    let ping = |c: &str, ip: &str| d.docker(&["exec", c, "ping", "-c1", "-W2", ip]);
    ping("c1", &ip2).ok();
    let ip6_2 =
        d.docker(&["inspect", "-f", "{{range .NetworkSettings.Networks}}{{.GlobalIPv6Address}}{{end}}", "c2"]).ok();
    assert!(ip6_2.starts_with("fd77::"), "{ip6_2}");
    d.docker(&["exec", "c1", "ping6", "-c1", "-W2", &ip6_2]).ok();
    ping("c2", &ip1).ok();
    ping("c1", &v_ip).ok();
    sb.kleene(&["container", "exec", "v", "--", "ping", "-c1", "-W2", &ip2]).ok();
    ping("c1", "10.77.0.1").ok();

    d.docker(&["rm", "-f", "c1", "c2"]).ok();
    d.docker(&["network", "rm", "dnet"]).ok();
    let names = sb.kleene(&["container", "ls", "-a", "--json"]).json();
    assert_eq!(names.as_array().unwrap().len(), 1, "only v is left: {names}");

    // An existing kleene network, adopted: Docker's container reaches v there, and the
    // network outlives the Docker network.
    sb.kleene(&["network", "create", "-t", "bridge", "--subnet", "10.78.0.0/24", "kn"]).ok();
    sb.kleene(&["network", "connect", "--ip", "10.78.0.9", "kn", "v"]).ok();
    let opt = "kleene.network=kn";
    d.docker(&[
        "network",
        "create",
        "-d",
        "kleene",
        "--ipam-driver",
        "kleene",
        "--subnet",
        "10.78.0.0/24",
        "-o",
        opt,
        "adopted",
    ])
    .ok();
    d.docker(&["run", "-d", "--name", "c3", "--network", "adopted", "kleene-busybox", "sleep", "600"]).ok();
    ping("c3", "10.78.0.9").ok();
    let err = sb.kleene(&["network", "rm", "kn"]).err();
    assert!(err.contains("docker network rm"), "{err}");
    d.docker(&["rm", "-f", "c3"]).ok();
    d.docker(&["network", "rm", "adopted"]).ok();
    let used = &sb.kleene(&["network", "inspect", "kn"]).json()["address_usage"]["subnet"]["used"];
    assert_eq!(used, "2", "the gateway and v's address only");
    sb.kleene(&["container", "rm", "-f", "v"]).ok();
    sb.kleene(&["network", "rm", "kn"]).ok();
    assert_eq!(sb.kleene(&["network", "ls", "--json"]).json(), serde_json::json!([]), "network left behind");
    assert_eq!(sb.links(), links_before, "interfaces left behind");
    let addrs = sb.sh("ip -br addr").ok();
    assert!(!addrs.contains("10.77.0."), "{addrs}");
    drop(d);
    drop(server);
}

/// `docker network create -d kleene --ipam-driver kleene --subnet SUBNET NAME`.
fn kleene_network(d: &Dockerd, name: &str, subnet: &str) {
    d.docker(&["network", "create", "-d", "kleene", "--ipam-driver", "kleene", "--subnet", subnet, name]).ok();
}

/// The host address the published port is reached on: the test namespace's own, on an
/// interface of its own (a veth pair: no dummy module on every kernel).
const HOST: &str = "192.0.2.10";
const URL: &str = "http://192.0.2.10:8080/";

/// `URL`, fetched from the test's namespace (the containers' host) by a client there.
fn fetch(sb: &Sandbox) -> Run {
    sb.sh(&format!("curl -sS -m 2 {URL}"))
}

/// [`fetch`] until the server in the container answers (httpd starts after `docker run`).
fn fetch_page(sb: &Sandbox) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = fetch(sb);
        if got.code == 0 || Instant::now() > deadline {
            return got.ok();
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// kleene's port redirects (the firewall's `publish4` map), as nft lists them.
fn publish_map(sb: &Sandbox) -> String {
    sb.sh("nft list map inet kleene publish4").ok()
}

/// The address container `c` has on Docker network `net`.
fn ip_on(d: &Dockerd, c: &str, net: &str) -> String {
    d.docker(&["inspect", "-f", &format!("{{{{(index .NetworkSettings.Networks \"{net}\").IPAddress}}}}"), c]).ok()
}

fn kleene_containers(sb: &Sandbox) -> Vec<Value> {
    sb.kleene(&["container", "ls", "-a", "--json"]).json().as_array().unwrap().clone()
}

fn used(sb: &Sandbox, d: &Dockerd, net: &str) -> String {
    let id = d.docker(&["network", "inspect", "-f", "{{.ID}}", net]).ok();
    let inspect = sb.kleene(&["network", "inspect", &format!("docker-{}", &id[..12])]).json();
    inspect["address_usage"]["subnet"]["used"].as_str().unwrap().to_string()
}

#[test]
fn docker_published_ports_carry_traffic_and_networks_connect_live() {
    let sb = Sandbox::new("dockerpub");
    let plugin = sb.dir.path().join("kleene-docker.sock");
    let server = sb.serve_with(&["--docker-socket", &plugin.display().to_string()]);
    let mut d = Dockerd::start(&sb, &plugin);
    d.docker(&["import", &busybox_tar(sb.dir.path()).display().to_string(), "kleene-busybox"]).ok();
    sb.sh(&format!("ip link add host0 type veth peer name host0p && ip addr add {HOST}/24 dev host0 && ip link set host0 up && ip link set host0p up")).ok();
    let links_before = sb.links();
    kleene_network(&d, "front", "10.79.0.0/24");
    kleene_network(&d, "back", "10.80.0.0/24");
    let httpd = ["kleene-busybox", "httpd", "-f", "-p", "80", "-h", "/www"];
    d.docker(&[&["run", "-d", "--name", "web", "--network", "front", "-p", "8080:80"][..], &httpd].concat()).ok();
    let web_front = ip_on(&d, "web", "front");

    // -p 8080:80: the page served in the container arrives at a client of the host's address.
    assert_eq!(fetch_page(&sb), PAGE);
    // kleene's redirect carries it: nothing listens on 8080 (Docker runs no proxy for a remote
    // driver's network) and Docker's NAT table has no rule for it; kleene's map has.
    assert_eq!(sb.sh("ss -Hltnu 'sport = :8080'").ok(), "", "a listener besides kleene's redirect");
    let docker_nat = sb.sh("iptables-save -t nat").ok();
    assert!(!docker_nat.contains("8080"), "{docker_nat}");
    assert!(publish_map(&sb).contains("tcp . 8080 comment"), "{}", publish_map(&sb));
    assert!(publish_map(&sb).contains(&format!(": {web_front} . 80")), "{}", publish_map(&sb));

    // What kleene cannot publish as Docker asks is refused (the container does not start)
    // and leaves nothing: a host address, a host port kleene would have to pick, a host port
    // another container has.
    for (publish, why) in [
        (
            "127.0.0.1:8081:80",
            "kleene publishes ports on every host address, not on 127.0.0.1 alone: drop the address (-p 8081:80/tcp)",
        ),
        ("80", "kleene does not pick host ports: give one for container port 80/tcp"),
        ("8080:80", "host port 8080/tcp is already published by container 'docker-"),
    ] {
        let err = d
            .docker(&[
                "run",
                "-d",
                "--name",
                "refused",
                "--network",
                "front",
                "-p",
                publish,
                "kleene-busybox",
                "sleep",
                "600",
            ])
            .err();
        assert!(err.contains(why), "-p {publish}: {err}");
        d.docker(&["rm", "-f", "refused"]).ok();
    }
    assert_eq!(kleene_containers(&sb).len(), 1, "only web's endpoint");
    assert_eq!(used(&sb, &d, "front"), "2", "the gateway and web's address only");
    assert_eq!(fetch(&sb).ok(), PAGE, "web keeps its port");

    // docker network connect: a running container joins a second kleene network live.
    // (sleep ignores SIGTERM: a short stop timeout keeps dockerd's shutdown below short.)
    d.docker(&[
        "run",
        "-d",
        "--name",
        "ca",
        "--stop-timeout",
        "1",
        "--network",
        "front",
        "kleene-busybox",
        "sleep",
        "600",
    ])
    .ok();
    d.docker(&["run", "-d", "--name", "cb", "--network", "back", "kleene-busybox", "sleep", "600"]).ok();
    let cb = ip_on(&d, "cb", "back");
    // Across networks, kleene's firewall keeps them apart (ca's route to cb is its gateway).
    assert_ne!(d.docker(&["exec", "ca", "ping", "-c1", "-W1", &cb]).code, 0, "isolated before connect");
    d.docker(&["network", "connect", "back", "ca"]).ok();
    let ca_back = ip_on(&d, "ca", "back");
    assert!(ca_back.starts_with("10.80.0."), "{ca_back}");
    let eth1 = d.docker(&["exec", "ca", "ip", "-4", "addr", "show", "eth1"]).ok();
    assert!(eth1.contains(&format!("inet {ca_back}/24")), "{eth1}");
    d.docker(&["exec", "ca", "ping", "-c1", "-W2", &cb]).ok();
    assert_eq!(kleene_containers(&sb).len(), 4, "web, ca, cb and ca's second endpoint");
    assert_eq!(used(&sb, &d, "back"), "3");
    let links_connected = sb.links();
    // ... and leaves it: the interface, the pair and the address go.
    d.docker(&["network", "disconnect", "back", "ca"]).ok();
    assert_ne!(d.docker(&["exec", "ca", "ip", "link", "show", "eth1"]).code, 0, "eth1 is still in ca");
    assert_ne!(d.docker(&["exec", "ca", "ping", "-c1", "-W1", &cb]).code, 0, "isolated again");
    assert_eq!(kleene_containers(&sb).len(), 3);
    assert_eq!(used(&sb, &d, "back"), "2", "ca's address on back is released");
    assert_eq!(sb.links().len(), links_connected.len() - 1, "ca's pair on back is gone: {:?}", sb.links());

    // Published ports follow the container's default route: connecting web to `back` (which
    // Docker sorts first) moves the route there, and Docker moves the ports (revoke, program).
    d.docker(&["network", "connect", "back", "web"]).ok();
    let web_back = ip_on(&d, "web", "back");
    assert!(publish_map(&sb).contains(&format!(": {web_back} . 80")), "{}", publish_map(&sb));
    assert_eq!(fetch(&sb).ok(), PAGE, "through back");
    d.docker(&["network", "disconnect", "back", "web"]).ok();
    assert!(publish_map(&sb).contains(&format!(": {web_front} . 80")), "{}", publish_map(&sb));
    assert_eq!(fetch(&sb).ok(), PAGE, "through front again");

    // docker rm -f: the port is closed and kleene publishes nothing any more.
    d.docker(&["rm", "-f", "web"]).ok();
    let closed = fetch(&sb);
    assert_ne!(closed.code, 0, "port 8080 still answers: {}", closed.stdout);
    assert!(!publish_map(&sb).contains("8080"), "{}", publish_map(&sb));
    for c in kleene_containers(&sb) {
        let inspect = sb.kleene(&["container", "inspect", c["id"].as_str().unwrap()]).json();
        assert_eq!(inspect["published"], serde_json::json!([]), "{inspect}");
    }

    // dockerd restarts (stopped as a service manager stops it, started on the same data
    // root): it stops every container on the way down, which leaves their endpoints; those
    // with a restart policy come back on the same kleene network, the others stay stopped.
    d.docker(&["rm", "-f", "cb"]).ok();
    for c in ["r1", "r2"] {
        d.docker(&[
            "run",
            "-d",
            "--name",
            c,
            "--restart",
            "always",
            "--stop-timeout",
            "1",
            "--network",
            "front",
            "kleene-busybox",
            "sleep",
            "600",
        ])
        .ok();
    }
    let names = |sb: &Sandbox| -> Vec<String> {
        kleene_containers(sb).iter().map(|c| c["name"].as_str().unwrap().to_string()).collect()
    };
    // kleene holds exactly what runs once Docker is back: two endpoints (new ones), two
    // addresses (and the gateways), two pairs; ca's endpoint is gone.
    let consistent_after_restart = |d: &mut Dockerd, signal: i32| {
        let before = names(&sb);
        d.restart(&sb, &plugin, signal);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let now = names(&sb);
            let up = d.docker(&["ps", "-q"]).ok().lines().count();
            if up == 2 && now.len() == 2 && now.iter().all(|n| !before.contains(n)) {
                break;
            }
            assert!(Instant::now() < deadline, "r1 and r2 did not come back: {}", d.docker(&["ps", "-a"]).stdout);
            std::thread::sleep(Duration::from_millis(200));
        }
        let mut running: Vec<String> =
            d.docker(&["ps", "--format", "{{.Names}}"]).ok().lines().map(String::from).collect();
        running.sort();
        assert_eq!(running, ["r1", "r2"]);
        assert_eq!((used(&sb, d, "front"), used(&sb, d, "back")), ("3".into(), "1".into()));
        assert_eq!(sb.links().len(), links_before.len() + 2 + 2, "two bridges, two pairs: {:?}", sb.links());
        d.docker(&["exec", "r1", "ping", "-c1", "-W2", &ip_on(d, "r2", "front")]).ok();
    };
    consistent_after_restart(&mut d, libc::SIGTERM);

    d.docker(&["rm", "-f", "ca", "r1", "r2"]).ok();
    d.docker(&["network", "rm", "front", "back"]).ok();
    assert_eq!(sb.kleene(&["network", "ls", "--json"]).json(), serde_json::json!([]), "network left behind");
    assert_eq!(sb.links(), links_before, "interfaces left behind");
    drop(d);
    drop(server);
}
