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
        let script = format!(
            "mount -t tmpfs tmpfs /run && mkdir -p /run/docker/plugins && ln -s {plugin} /run/docker/plugins/kleene.sock && \
             exec dockerd --data-root {d}/docker-data --exec-root {d}/docker-exec --pidfile {d}/docker.pid \
             -H unix://{sock} --bridge=none --storage-driver vfs",
            plugin = plugin_socket.display(),
            d = dir.display(),
            sock = socket.display()
        );
        let child = Command::new("nsenter")
            .arg(format!("--net={}", sb.netns_path().display()))
            .args(["--", "unshare", "--mount", "--propagation", "private", "sh", "-c", &script])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("dockerd log"))
            .spawn()
            .expect("spawn dockerd (install docker.io: scripts/install-deps.sh)");
        let mut d = Dockerd { child, socket, log };
        let deadline = Instant::now() + Duration::from_secs(30);
        while d.docker(&["version"]).code != 0 {
            if let Some(status) = d.child.try_wait().unwrap() {
                panic!("dockerd exited ({status}): {}", d.log_text());
            }
            assert!(Instant::now() < deadline, "dockerd did not answer: {}", d.log_text());
            std::thread::sleep(Duration::from_millis(100));
        }
        d
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
        // SAFETY: kill(2) on our own child (sh execs dockerd, nsenter and unshare exec too).
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
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
}

/// A busybox root file system as a tar, for `docker import`.
fn busybox_tar(dir: &Path) -> PathBuf {
    let root = dir.join("rootfs");
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).expect("busybox-static is installed");
    for applet in ["sh", "ping", "ping6", "ip", "sleep", "cat"] {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).unwrap();
    }
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
