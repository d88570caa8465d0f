//! kleene-cni, the CNI plugin: (a) the protocol through the binary directly, with the spec's
//! commands and result shapes, each test in a namespace of its own standing for the host and
//! one namespace per container; (b) the real runtime: containerd and `ctr run --cni`.

use kleene_tests::{target_dir, Run, Sandbox, TempDir};
use serde_json::{json, Value};
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

fn cni_bin() -> PathBuf {
    let bin = target_dir().join("kleene-cni");
    assert!(bin.exists(), "{} is missing: build the workspace first (cargo build --workspace)", bin.display());
    bin
}

/// A network namespace standing for one container's, removed on drop (as a runtime would).
struct Netns(String);

impl Netns {
    fn new(sb: &Sandbox, tag: &str) -> Netns {
        let name = format!("{}-{tag}", sb.name);
        let ok = Command::new("ip").args(["netns", "add", &name]).status().expect("ip netns add").success();
        assert!(ok, "cannot create namespace {name}");
        Netns(name)
    }

    fn path(&self) -> String {
        format!("/run/netns/{}", self.0)
    }

    fn sh(&self, script: &str) -> Run {
        Run::from_output(Command::new("ip").args(["netns", "exec", &self.0, "sh", "-c", script]).output().unwrap())
    }

    /// The addresses (`ADDR/PREFIX`) of `ifname` in this namespace (empty when it is absent).
    fn addresses(&self, ifname: &str) -> Vec<String> {
        let out = self.sh(&format!("ip -j addr show dev {ifname} 2>/dev/null")).stdout;
        let links: Value = serde_json::from_str(&out).unwrap_or(Value::Null);
        links
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|l| l["addr_info"].as_array().cloned().unwrap_or_default())
            .filter(|a| a["scope"] == "global")
            .map(|a| format!("{}/{}", a["local"].as_str().unwrap(), a["prefixlen"]))
            .collect()
    }

    fn drop_now(self) {}
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// A kleene bridge network `knet` (10.60.0.0/24) in the sandbox, and the plugin's
/// configuration for it in spec version `version`.
fn setup(tag: &str, version: &str) -> (Sandbox, Value) {
    let sb = Sandbox::new(tag);
    sb.kleene(&["network", "create", "-t", "bridge", "--subnet", "10.60.0.0/24", "knet"]).ok();
    let conf = conf(&sb, version);
    (sb, conf)
}

fn conf(sb: &Sandbox, version: &str) -> Value {
    json!({
        "cniVersion": version, "name": "knet", "type": "kleene-cni", "network": "knet",
        "stateDir": sb.dir.path().join("state"), "runDir": sb.dir.path().join("run"),
        "pluginDir": sb.plugin_path,
    })
}

/// Run the plugin in the sandbox's namespace (the "host") with `CNI_COMMAND=command`, the
/// given `CNI_*` variables and `conf` on stdin. The error document, when it fails, is stdout.
fn cni(sb: &Sandbox, command: &str, vars: &[(&str, &str)], conf: &Value) -> Run {
    let mut cmd = Command::new("nsenter");
    cmd.arg(format!("--net={}", sb.netns_path().display())).arg("--").arg(cni_bin());
    for var in ["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_ARGS", "KLEENE_PLUGIN_PATH", "KLEENE_LOG"] {
        cmd.env_remove(var);
    }
    cmd.env("CNI_COMMAND", command).env("CNI_PATH", "/nonexistent").envs(vars.iter().copied());
    let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(conf.to_string().as_bytes()).unwrap();
    Run::from_output(child.wait_with_output().unwrap())
}

/// `ADD`, `CHECK` or `DEL` of container `id`'s `eth0` in `ns`.
fn call(sb: &Sandbox, command: &str, id: &str, ns: &Netns, conf: &Value) -> Run {
    cni(sb, command, &[("CNI_CONTAINERID", id), ("CNI_NETNS", &ns.path()), ("CNI_IFNAME", "eth0")], conf)
}

/// The error document of a failed invocation.
#[track_caller]
fn error(run: &Run) -> Value {
    assert_ne!(run.code, 0, "expected a failure: {}", run.stdout);
    serde_json::from_str(&run.stdout).unwrap_or_else(|_| panic!("no error JSON on stdout: {run:?}"))
}

fn containers(sb: &Sandbox) -> Vec<String> {
    let list = sb.kleene(&["container", "ls", "-a", "--json"]).json();
    list.as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap().to_string()).collect()
}

/// The host ends of pairs in the sandbox (kleene's interface group).
fn host_ends(sb: &Sandbox) -> Vec<String> {
    let links = sb.ip_json("link show group 1263291973 type veth");
    links.as_array().into_iter().flatten().filter_map(|l| l["ifname"].as_str().map(String::from)).collect()
}

/// Whether the sandbox has no host ends left within a few seconds: `DEL` hands the kernel's
/// slow part of deleting a pair to a detached process.
fn host_ends_go(sb: &Sandbox) -> bool {
    for _ in 0..100 {
        if host_ends(sb).is_empty() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(30));
    }
    false
}

fn pins(sb: &Sandbox) -> usize {
    std::fs::read_dir(sb.dir.path().join("run/netns")).map(|d| d.count()).unwrap_or(0)
}

#[test]
fn version_lists_the_spec_versions() {
    let sb = Sandbox::new("cniver");
    let out = cni(&sb, "VERSION", &[], &json!({"cniVersion": "1.0.0"}));
    let doc: Value = serde_json::from_str(&out.ok()).unwrap();
    assert_eq!(doc["cniVersion"], "1.0.0");
    let versions: Vec<&str> =
        doc["supportedVersions"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    for v in ["0.4.0", "1.0.0", "1.1.0"] {
        assert!(versions.contains(&v), "{v} missing from {versions:?}");
    }
}

#[test]
fn add_check_del_in_1_0_0() {
    let (sb, conf) = setup("cniadd", "1.0.0");
    let ns = Netns::new(&sb, "c1");
    let result: Value = serde_json::from_str(&call(&sb, "ADD", "ctr-1", &ns, &conf).ok()).unwrap();
    assert_eq!(result["cniVersion"], "1.0.0");
    let ip = &result["ips"][0];
    assert_eq!(ip["address"], "10.60.0.2/24");
    assert_eq!(ip["gateway"], "10.60.0.1");
    assert!(ip.get("version").is_none(), "1.0.0 results have no version field: {result}");
    let iface = &result["interfaces"][ip["interface"].as_u64().unwrap() as usize];
    assert_eq!(iface["name"], "eth0");
    assert_eq!(iface["sandbox"], ns.path().as_str());
    // Its MAC address, which podman 4 requires: the one the interface has.
    let link: Value = serde_json::from_str(&ns.sh("ip -j link show dev eth0").ok()).unwrap();
    assert_eq!(iface["mac"], link[0]["address"], "{result}");
    assert_eq!(result["routes"][0], json!({"dst": "0.0.0.0/0", "gw": "10.60.0.1"}));
    // The network serves DNS (a bridge's default): the result names its resolver.
    assert_eq!(result["dns"], json!({"nameservers": ["10.60.0.1"]}), "{result}");
    // The real effect: the address in the runtime's namespace, the gateway reachable, the
    // container's name answered by that resolver, and an ordinary kleene container on record.
    assert_eq!(ns.addresses("eth0"), ["10.60.0.2/24"]);
    assert_eq!(ns.sh("ping -c1 -W2 10.60.0.1").code, 0, "the gateway is unreachable");
    let lookup = ns.sh("busybox nslookup ctr-1 10.60.0.1").ok();
    assert!(lookup.contains("10.60.0.2"), "ctr-1 does not resolve: {lookup}");
    assert_eq!(containers(&sb), ["ctr-1"]);
    assert_eq!(host_ends(&sb).len(), 1);

    call(&sb, "CHECK", "ctr-1", &ns, &conf).ok();
    ns.sh("ip addr flush dev eth0").ok();
    let e = error(&call(&sb, "CHECK", "ctr-1", &ns, &conf));
    assert_eq!(e["code"], 101);
    assert!(e["msg"].as_str().unwrap().contains("lacks its address 10.60.0.2/24"), "{e}");
    let other = Netns::new(&sb, "c2");
    let e = error(&call(&sb, "CHECK", "ctr-1", &other, &conf));
    assert!(e["msg"].as_str().unwrap().contains("another network namespace"), "{e}");
    let e = error(&call(&sb, "CHECK", "nobody", &ns, &conf));
    assert_eq!(e["code"], 3, "{e}");

    call(&sb, "DEL", "ctr-1", &ns, &conf).ok();
    assert!(containers(&sb).is_empty());
    assert!(host_ends_go(&sb), "host ends left: {:?}", host_ends(&sb));
    assert!(ns.sh("ip link show eth0").code != 0, "eth0 outlived DEL");
    assert_eq!(pins(&sb), 0);
    // DEL is idempotent; the address went back to IPAM.
    call(&sb, "DEL", "ctr-1", &ns, &conf).ok();
    let again: Value = serde_json::from_str(&call(&sb, "ADD", "ctr-2", &other, &conf).ok()).unwrap();
    assert_eq!(again["ips"][0]["address"], "10.60.0.2/24");
}

/// On a network with a DNS domain, the result tells the runtime to search it, and the
/// qualified name answers at the resolver it names.
/// `DEL` leaves the host end to a detached process; an `ADD` of the same container right
/// after (a runtime's retry) makes a pair of the same name, which must survive that process
/// (it deletes the interface it was given, by index) and carry traffic, round after round.
#[test]
fn an_add_right_after_del_keeps_its_pair() {
    let (sb, conf) = setup("cni-readd", "1.0.0");
    let ns = Netns::new(&sb, "c1");
    for round in 0..5 {
        call(&sb, "ADD", "ctr-1", &ns, &conf).ok();
        call(&sb, "DEL", "ctr-1", &ns, &conf).ok();
        call(&sb, "ADD", "ctr-1", &ns, &conf).ok();
        // Longer than the detached deletion takes (15-30 ms).
        std::thread::sleep(std::time::Duration::from_millis(300));
        assert_eq!(host_ends(&sb).len(), 1, "round {round}: the new pair's host end was deleted");
        assert_eq!(ns.sh("ping -c1 -W2 10.60.0.1").code, 0, "round {round}: the gateway is unreachable");
        call(&sb, "DEL", "ctr-1", &ns, &conf).ok();
    }
    assert!(host_ends_go(&sb), "host ends left: {:?}", host_ends(&sb));
}

#[test]
fn the_result_names_the_networks_resolver_and_domain() {
    let sb = Sandbox::new("cnidom");
    sb.kleene(&[
        "network",
        "create",
        "-t",
        "bridge",
        "--subnet",
        "10.62.0.0/24",
        "--dns-domain",
        "cni.example",
        "knet",
    ])
    .ok();
    let conf = conf(&sb, "1.0.0");
    let ns = Netns::new(&sb, "c1");
    let result: Value = serde_json::from_str(&call(&sb, "ADD", "ctr-1", &ns, &conf).ok()).unwrap();
    assert_eq!(result["dns"], json!({"nameservers": ["10.62.0.1"], "search": ["cni.example"]}), "{result}");
    let lookup = ns.sh("busybox nslookup ctr-1.cni.example 10.62.0.1").ok();
    assert!(lookup.contains("10.62.0.2"), "ctr-1.cni.example does not resolve: {lookup}");
    call(&sb, "DEL", "ctr-1", &ns, &conf).ok();
}

/// The name a runtime gives the container (`K8S_POD_NAME` in `CNI_ARGS`, podman's `--name`)
/// is its kleene name, and so its DNS name; a name already taken falls back to the id.
#[test]
fn the_runtimes_name_for_the_container_becomes_its_name_in_kleene_and_dns() {
    let (sb, conf) = setup("cniname", "1.0.0");
    let (ns1, ns2) = (Netns::new(&sb, "c1"), Netns::new(&sb, "c2"));
    let add = |id: &str, ns: &Netns| {
        let vars = [
            ("CNI_CONTAINERID", id),
            ("CNI_NETNS", &ns.path()),
            ("CNI_IFNAME", "eth0"),
            ("CNI_ARGS", "IgnoreUnknown=1;K8S_POD_NAME=web"),
        ];
        cni(&sb, "ADD", &vars, &conf).ok()
    };
    add("0123456789abcdef", &ns1);
    add("fedcba9876543210", &ns2);
    let mut names = containers(&sb);
    names.sort();
    assert_eq!(names, ["fedcba9876543210", "web"], "the second 'web' keeps its id as name");
    let lookup = ns2.sh("busybox nslookup web 10.60.0.1").ok();
    assert!(lookup.contains("10.60.0.2"), "web does not resolve: {lookup}");
    call(&sb, "DEL", "0123456789abcdef", &ns1, &conf).ok();
    call(&sb, "DEL", "fedcba9876543210", &ns2, &conf).ok();
    assert!(containers(&sb).is_empty());
}

#[test]
fn results_of_0_4_0_carry_the_address_family() {
    let (sb, conf) = setup("cni040", "0.4.0");
    let ns = Netns::new(&sb, "c1");
    let result: Value = serde_json::from_str(&call(&sb, "ADD", "c1", &ns, &conf).ok()).unwrap();
    assert_eq!(result["cniVersion"], "0.4.0");
    assert_eq!(result["ips"][0]["version"], "4");
    call(&sb, "CHECK", "c1", &ns, &conf).ok();
    call(&sb, "DEL", "c1", &ns, &conf).ok();
}

#[test]
fn del_after_the_namespace_vanished_releases_everything() {
    let (sb, conf) = setup("cnigone", "1.0.0");
    let ns = Netns::new(&sb, "c1");
    call(&sb, "ADD", "c1", &ns, &conf).ok();
    ns.drop_now();
    // Should kleene's pin go too (a reboot), reconcile does not give the container a
    // namespace of kleene's own: it is the runtime's to release.
    let pin = std::fs::read_dir(sb.dir.path().join("run/netns")).unwrap().next().unwrap().unwrap().path();
    Command::new("umount").arg(&pin).status().unwrap();
    std::fs::remove_file(&pin).unwrap();
    let reconciled = sb.kleene(&["system", "reconcile"]);
    reconciled.ok();
    assert!(reconciled.stderr.contains("lost its runtime's namespace"), "{reconciled:?}");
    assert_eq!(pins(&sb), 0, "reconcile made a namespace for an adopted container");
    let run = cni(&sb, "DEL", &[("CNI_CONTAINERID", "c1"), ("CNI_NETNS", ""), ("CNI_IFNAME", "eth0")], &conf);
    run.ok();
    assert!(containers(&sb).is_empty());
    assert!(host_ends_go(&sb), "host ends left: {:?}", host_ends(&sb));
    assert_eq!(pins(&sb), 0, "kleene still pins the namespace");
    let ns2 = Netns::new(&sb, "c2");
    let again: Value = serde_json::from_str(&call(&sb, "ADD", "c2", &ns2, &conf).ok()).unwrap();
    assert_eq!(again["ips"][0]["address"], "10.60.0.2/24", "the address was not released");
}

#[test]
fn gc_releases_attachments_the_runtime_no_longer_lists() {
    let (sb, mut conf) = setup("cnigc", "1.1.0");
    let (a, b) = (Netns::new(&sb, "a"), Netns::new(&sb, "b"));
    call(&sb, "ADD", "keep", &a, &conf).ok();
    call(&sb, "ADD", "stale", &b, &conf).ok();
    // A container kleene made itself is not the plugin's to collect.
    sb.kleene(&["container", "create", "-l", "vnet", "-n", "knet", "own"]).ok();
    conf["cni.dev/valid-attachments"] = json!([{"containerID": "keep", "ifname": "eth0"}]);
    cni(&sb, "GC", &[], &conf).ok();
    let mut names = containers(&sb);
    names.sort();
    assert_eq!(names, ["keep", "own"]);
    assert_eq!(a.addresses("eth0"), ["10.60.0.2/24"]);
    let one_left = (0..100).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(30));
        host_ends(&sb).len() == 1
    });
    assert!(one_left, "the stale attachment's pair is still there: {:?}", host_ends(&sb));
    assert!(b.sh("ip link show eth0").code != 0, "the stale attachment's interface is still there");
}

#[test]
fn status_fails_when_the_network_is_unusable() {
    let (sb, conf) = setup("cnistat", "1.1.0");
    let ok = cni(&sb, "STATUS", &[], &conf);
    assert_eq!(ok.ok(), "");
    let mut missing = conf.clone();
    missing["network"] = json!("nonet");
    assert_eq!(error(&cni(&sb, "STATUS", &[], &missing))["code"], 50);
    let bridge =
        sb.kleene(&["network", "inspect", "knet"]).json()["network"]["interface"].as_str().unwrap().to_string();
    sb.sh(&format!("ip link del {bridge}")).ok();
    let e = error(&cni(&sb, "STATUS", &[], &conf));
    assert_eq!(e["code"], 50);
    assert!(e["msg"].as_str().unwrap().contains(&bridge), "{e}");
}

#[test]
fn errors_are_the_specs_documents() {
    let (sb, conf) = setup("cnierr", "1.0.0");
    let ns = Netns::new(&sb, "c1");
    let mut old = conf.clone();
    old["cniVersion"] = json!("0.2.0");
    assert_eq!(error(&call(&sb, "ADD", "c1", &ns, &old))["code"], 1);
    let no_id = cni(&sb, "ADD", &[("CNI_NETNS", &ns.path()), ("CNI_IFNAME", "eth0")], &conf);
    let e = error(&no_id);
    assert_eq!((e["code"].as_u64(), e["msg"].as_str()), (Some(4), Some("CNI_CONTAINERID is not set")));
    assert_eq!(e["cniVersion"], "1.0.0");
    let mut bad = Command::new(cni_bin());
    bad.env("CNI_COMMAND", "ADD").stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = bad.spawn().unwrap();
    child.stdin.take().unwrap().write_all(b"{not json").unwrap();
    assert_eq!(error(&Run::from_output(child.wait_with_output().unwrap()))["code"], 6);
    let mut missing = conf.clone();
    missing["network"] = json!("nonet");
    let e = error(&call(&sb, "ADD", "c1", &ns, &missing));
    assert_eq!(e["code"], 7);
    assert!(e["msg"].as_str().unwrap().contains("network not found"), "{e}");
    // Refusals change nothing.
    assert!(containers(&sb).is_empty());
    assert!(ns.sh("ip link show eth0").code != 0);
    // The host's own namespace is never adopted.
    let host = cni(
        &sb,
        "ADD",
        &[("CNI_CONTAINERID", "c1"), ("CNI_NETNS", &sb.netns_path().display().to_string()), ("CNI_IFNAME", "eth0")],
        &conf,
    );
    assert!(error(&host)["msg"].as_str().unwrap().contains("host's own network namespace"), "{host:?}");
    assert!(containers(&sb).is_empty());
    // A failed ADD (the interface name is taken inside) is rolled back: no record, no pin, no pair.
    ns.sh("ip link add eth0 type veth peer name other0").ok();
    let e = error(&call(&sb, "ADD", "c1", &ns, &conf));
    assert_eq!(e["code"], 100, "{e}");
    assert!(containers(&sb).is_empty());
    assert_eq!(pins(&sb), 0);
    assert!(host_ends(&sb).is_empty(), "{:?}", host_ends(&sb));
}

#[test]
fn capabilities_ips_and_port_mappings() {
    let (sb, mut conf) = setup("cnicap", "1.0.0");
    let ns = Netns::new(&sb, "c1");
    conf["runtimeConfig"] = json!({
        "ips": ["10.60.0.77/24"],
        "portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}],
    });
    let result: Value = serde_json::from_str(&call(&sb, "ADD", "c1", &ns, &conf).ok()).unwrap();
    assert_eq!(result["ips"][0]["address"], "10.60.0.77/24");
    assert_eq!(ns.addresses("eth0"), ["10.60.0.77/24"]);
    let inspect = sb.kleene(&["container", "inspect", "c1"]).json();
    assert_eq!(inspect["published"], json!(["8080:80/tcp"]));
    let rules = sb.sh("nft list table inet kleene").ok();
    assert!(rules.contains("10.60.0.77"), "the firewall does not redirect to the container:\n{rules}");
    call(&sb, "DEL", "c1", &ns, &conf).ok();
    assert!(!sb.sh("nft list table inet kleene").ok().contains("10.60.0.77"), "the redirect outlived DEL");
}

#[test]
fn another_interface_name_and_concurrent_adds() {
    let (sb, conf) = setup("cnipar", "1.0.0");
    let namespaces: Vec<Netns> = (0..6).map(|i| Netns::new(&sb, &format!("p{i}"))).collect();
    let runs: Vec<Run> = std::thread::scope(|s| {
        let handles: Vec<_> = namespaces
            .iter()
            .enumerate()
            .map(|(i, ns)| {
                let (sb, conf) = (&sb, &conf);
                s.spawn(move || {
                    let id = format!("p{i}");
                    cni(sb, "ADD", &[("CNI_CONTAINERID", &id), ("CNI_NETNS", &ns.path()), ("CNI_IFNAME", "net1")], conf)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut addresses: Vec<String> = runs
        .iter()
        .map(|r| serde_json::from_str::<Value>(&r.ok()).unwrap()["ips"][0]["address"].as_str().unwrap().to_string())
        .collect();
    addresses.sort();
    addresses.dedup();
    assert_eq!(addresses.len(), 6, "addresses handed out twice: {addresses:?}");
    for ns in &namespaces {
        assert_eq!(ns.addresses("net1").len(), 1, "no address on net1 in {}", ns.0);
    }
    assert_eq!(containers(&sb).len(), 6);
    assert!(containers(&sb).contains(&"p0-net1".to_string()));
    // They are ordinary containers: `container rm -f` releases one as DEL would. A stopped
    // one is not started by kleene (its namespace is the runtime's).
    sb.kleene(&["container", "rm", "-f", "p0-net1"]).ok();
    assert!(namespaces[0].sh("ip link show net1").code != 0, "net1 outlived container rm -f");
    assert_eq!(containers(&sb).len(), 5);
    sb.kleene(&["container", "stop", "p1-net1"]).ok();
    let refused = sb.kleene(&["container", "start", "p1-net1"]).err();
    assert!(refused.contains("another runtime's network namespace"), "{refused}");
    assert_eq!(pins(&sb), 4, "a refused start made a namespace");
}

/// The busybox root file system of the runtime tests: /bin/busybox (package busybox-static)
/// and nothing else.
fn busybox_rootfs(dir: &std::path::Path) -> PathBuf {
    let root = dir.join("rootfs");
    for sub in ["bin", "proc", "sys", "dev", "etc", "tmp"] {
        std::fs::create_dir_all(root.join(sub)).unwrap();
    }
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).expect("copy /bin/busybox (package busybox-static)");
    root
}

/// Whether `tools` (and /bin/busybox) are installed; the reason when not.
fn missing(tools: &[&str], packages: &str) -> Option<String> {
    for tool in tools {
        let found = Command::new("sh").args(["-c", &format!("command -v {tool}")]).output().unwrap();
        if !found.status.success() {
            return Some(format!("{tool} is not installed (Debian packages {packages})"));
        }
    }
    if !std::path::Path::new("/bin/busybox").exists() {
        return Some("/bin/busybox is missing (Debian package busybox-static)".into());
    }
    None
}

/// A runtime test's directory `D`: the busybox root file system and kleene's plugins.
struct RuntimeDir {
    dir: TempDir,
    rootfs: PathBuf,
    plugins: PathBuf,
}

impl RuntimeDir {
    fn new(tag: &str) -> RuntimeDir {
        let dir = TempDir::new(tag);
        let rootfs = busybox_rootfs(dir.path());
        let plugins = dir.path().join("plugins");
        kleene_tests::install_plugins(&plugins, &kleene_tests::REAL_PLUGINS);
        RuntimeDir { dir, rootfs, plugins }
    }

    /// The shell every runtime test starts with, inside its own network and mount namespace:
    /// tmpfs over /run and `private_dirs` (what the runtime would write on the host), kleene-cni
    /// in `cni_dir`, the conflist of kleene network `knet` (10.61.0.0/24) in `conf_dir`, the
    /// network and a kleene vnet container `v1` on it. Defines `$D`, `$K` (kleene), `ip_of
    /// NAME`, `names` (kleene's containers, sorted) and `kleene_cleanup` (the trap's last step).
    fn prelude(&self, private_dirs: &str, cni_dir: &str, conf_dir: &str) -> String {
        format!(
            r#"set -eu
D={dir}
K="{kleene} --state-dir $D/state --run-dir $D/run"
export KLEENE_PLUGIN_PATH={plugins}
ip link set lo up
mount -t tmpfs tmpfs /run
for d in {private_dirs}; do mkdir -p $d; mount -t tmpfs tmpfs $d; done
mkdir -p {cni_dir} {conf_dir}
cp {cni} {cni_dir}/kleene-cni
cat > {conf_dir}/10-kleene.conflist <<JSON
{{"cniVersion": "1.0.0", "name": "knet", "plugins": [{{"type": "kleene-cni", "network": "knet",
  "stateDir": "$D/state", "runDir": "$D/run", "pluginDir": "{plugins}"}}]}}
JSON
# kleene's own container (its cgroup is the host's) and the network (its resolver) go too.
kleene_cleanup() {{ $K container rm -f v1 probe >/dev/null 2>&1 || true; $K network rm knet >/dev/null 2>&1 || true; }}
trap kleene_cleanup EXIT
$K network create -t bridge --subnet 10.61.0.0/24 knet >/dev/null
$K container create -l vnet -n knet v1 >/dev/null
$K container start v1 >/dev/null
ip_of() {{ $K container inspect "$1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["container_endpoints"][0]["ip_address"])'; }}
names() {{ $K container ls -a --json | python3 -c 'import json,sys; print(sorted(c["name"] for c in json.load(sys.stdin)))'; }}
"#,
            dir = self.dir.path().display(),
            kleene = kleene_tests::kleene_bin().display(),
            plugins = self.plugins.display(),
            cni = cni_bin().display(),
        )
    }

    /// Run `script` (after [`prelude`](Self::prelude)) in a network and mount namespace of its own.
    fn run(&self, script: &str) -> Run {
        let out = Command::new("timeout")
            .args(["90", "unshare", "--net", "--mount", "--propagation", "private", "bash", "-c", script])
            .output()
            .unwrap();
        Run::from_output(out)
    }
}

/// The script's last lines once the runtime's containers exited: what kleene still holds.
const WHAT_IS_LEFT: &str = r#"echo "after: $(names)"
# DEL hands the kernel's part of deleting a pair to a detached process: give it a moment.
for i in $(seq 100); do [ "$(ip -o link show group 1263291973 | wc -l)" -le 2 ] && break; sleep 0.03; done
echo "pairs: $(ip -o link show group 1263291973 | wc -l)"
echo "pins: $(ls $D/run/netns | wc -l)"
echo "addresses: $($K container create -n knet probe >/dev/null && ip_of probe)"
"#;

/// After [`WHAT_IS_LEFT`]: only v1 is left, with its pair and pin; the runtime containers'
/// addresses are free again.
#[track_caller]
fn assert_only_v1_is_left(stdout: &str) {
    assert!(stdout.contains("after: ['v1']"), "the runtime's containers' records outlived them: {stdout}");
    assert!(stdout.contains("pairs: 2"), "pairs left (v1's and the bridge expected): {stdout}");
    assert!(stdout.contains("pins: 1"), "namespace pins left: {stdout}");
    assert!(stdout.contains("addresses: 10.61.0.3"), "the runtime's addresses were not released: {stdout}");
}

/// Two `ctr run --cni` containers on one kleene network with a kleene vnet container: all
/// three reach each other by address, and once the ctr containers exit nothing of theirs is
/// left. containerd runs inside a network and mount namespace of the test's own, with its own
/// socket, root and state, and private CNI dirs.
#[test]
fn containerd_containers_join_a_kleene_network() {
    if let Some(why) = missing(&["containerd", "ctr", "runc"], "containerd, runc") {
        eprintln!("skipping the containerd test: {why}");
        return;
    }
    let rt = RuntimeDir::new("cnictr");
    let script = rt.prelude("/etc/cni/net.d /opt/cni/bin /var/lib/cni", "/opt/cni/bin", "/etc/cni/net.d")
        + &format!(
            r#"cat > $D/containerd.toml <<TOML
version = 2
root = "$D/containerd/root"
state = "$D/containerd/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$D/containerd.sock"
TOML
containerd --config $D/containerd.toml >$D/containerd.log 2>&1 &
CONTAINERD=$!
trap 'kill $CONTAINERD 2>/dev/null; wait $CONTAINERD 2>/dev/null || true; kleene_cleanup' EXIT
for i in $(seq 100); do [ -S $D/containerd.sock ] && break; sleep 0.05; done
CTR="ctr -a $D/containerd.sock run --rm --cni --rootfs {rootfs}"
$CTR c1 /bin/busybox sh -c 'sleep 30' &
C1RUN=$!
for i in $(seq 100); do ip_of default-c1 >/dev/null 2>&1 && break; sleep 0.05; done
C1=$(ip_of default-c1); V1=$(ip_of v1)
echo "c1=$C1 v1=$V1"
$CTR c2 /bin/busybox sh -c "ping -c1 -W2 $C1 && ping -c1 -W2 $V1 && echo C2_REACHED_BOTH"
# By name too: the network's resolver (its gateway) answers for ctr's containers and kleene's.
names=$($CTR c3 /bin/busybox sh -c "nslookup default-c1 10.61.0.1 && nslookup v1 10.61.0.1" || true)
echo "$names" | grep -qw "$C1" && echo "$names" | grep -qw "$V1" && echo C3_RESOLVED
$K container exec v1 -- getent hosts default-c1 | grep -q "^$C1 " && echo V1_RESOLVED_C1
$K container exec v1 -- ping -c1 -W2 $C1 >/dev/null && echo V1_REACHED_C1
echo "during: $(names)"
ctr -a $D/containerd.sock task kill -s KILL c1
wait $C1RUN || true
"#,
            rootfs = rt.rootfs.display(),
        )
        + WHAT_IS_LEFT;
    let run = rt.run(&script);
    let log = std::fs::read_to_string(rt.dir.path().join("containerd.log")).unwrap_or_default();
    let stdout = &run.stdout;
    assert!(stdout.contains("C2_REACHED_BOTH"), "c2 did not reach c1 and v1: {run:?}\ncontainerd: {log}");
    assert!(stdout.contains("V1_REACHED_C1"), "v1 did not reach c1: {run:?}");
    assert!(stdout.contains("C3_RESOLVED"), "a ctr container did not resolve kleene's by name: {run:?}");
    assert!(stdout.contains("V1_RESOLVED_C1"), "v1 did not resolve c1 by name: {run:?}");
    assert!(stdout.contains("during: ['default-c1', 'v1']"), "{stdout}");
    assert_only_v1_is_left(stdout);
    assert_eq!(run.code, 0, "{run:?}");
}

/// The same with podman 4 and its CNI backend: two `podman run --network knet` containers and
/// a kleene vnet container reach each other by address, the podman ones resolve kleene's names
/// at the network's resolver, and once they exit nothing of theirs is left. podman keeps all
/// its state in the test's directory (a private containers.conf, root, run root, cgroup
/// parent) inside a network and mount namespace of the test's own.
#[test]
fn podman_containers_join_a_kleene_network() {
    if let Some(why) = missing(&["podman"], "podman") {
        eprintln!("skipping the podman test: {why}");
        return;
    }
    let rt = RuntimeDir::new("cnipod");
    // podman's cgroups (the containers' and conmon's) under a parent of the test's own, in
    // every hierarchy (cgroup v2's one, or v1's one per controller).
    let cgroup = rt.dir.path().file_name().unwrap().to_string_lossy().to_string();
    let script = rt.prelude("/var/lib/cni /var/lib/containers", "$D/cni-bin", "$D/net.d")
        + &format!(
            r#"# podman's default rlimits are above this machine's hard ones: runc may only lower them.
cat > $D/containers.conf <<TOML
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]
[network]
network_backend = "cni"
cni_plugin_dirs = ["$D/cni-bin"]
network_config_dir = "$D/net.d"
[engine]
cgroup_manager = "cgroupfs"
events_logger = "none"
tmp_dir = "$D/podman/tmp"
TOML
export CONTAINERS_CONF=$D/containers.conf
P="podman --root $D/podman/root --runroot $D/podman/runroot --storage-driver vfs"
cgroups() {{ ls -d /sys/fs/cgroup/{cgroup} /sys/fs/cgroup/*/{cgroup} 2>/dev/null || true; }}
remove_cgroups() {{ for cg in $(cgroups); do find $cg -depth -type d -exec rmdir {{}} \; ; done; }}
trap '$P rm -af -t0 >/dev/null 2>&1 || true; remove_cgroups; kleene_cleanup' EXIT
# --rootfs takes the first argument as the root file system: options go before it.
RUN="$P run --rm --network knet --cgroup-parent /{cgroup}"
ROOTFS="--rootfs {rootfs}"
$RUN --name p1 $ROOTFS /bin/busybox sh -c 'sleep 30' &
P1RUN=$!
for i in $(seq 200); do kill -0 $P1RUN; ip_of p1 >/dev/null 2>&1 && break; sleep 0.05; done
P1=$(ip_of p1); V1=$(ip_of v1)
echo "p1=$P1 v1=$V1"
$RUN $ROOTFS /bin/busybox sh -c "ping -c1 -W2 $P1 && ping -c1 -W2 $V1 && echo P2_REACHED_BOTH"
names=$($RUN $ROOTFS /bin/busybox sh -c "nslookup v1 10.61.0.1" || true)
echo "$names" | grep -qw "$V1" && echo P3_RESOLVED_V1
$K container exec v1 -- ping -c1 -W2 $P1 >/dev/null && echo V1_REACHED_P1
# podman's --name is the container's name in kleene, and so in DNS.
$K container exec v1 -- getent hosts p1 | grep -q "^$P1 " && echo V1_RESOLVED_P1
echo "during: $(names)"
$P kill p1 >/dev/null
wait $P1RUN || true
echo "podman left: $($P ps -aq | wc -l)"
# The containers' cgroups go with them; conmon's is podman's to keep (the trap removes it).
echo "cgroups left: $(for cg in $(cgroups); do find $cg -mindepth 1 -type d ! -name conmon; done)."
"#,
            rootfs = rt.rootfs.display(),
        )
        + WHAT_IS_LEFT;
    let run = rt.run(&script);
    let stdout = &run.stdout;
    assert!(stdout.contains("P2_REACHED_BOTH"), "p2 did not reach p1 and v1: {run:?}");
    assert!(stdout.contains("V1_REACHED_P1"), "v1 did not reach p1: {run:?}");
    assert!(stdout.contains("P3_RESOLVED_V1"), "a podman container did not resolve kleene's by name: {run:?}");
    assert!(stdout.contains("V1_RESOLVED_P1"), "v1 did not resolve the podman container p1 by name: {run:?}");
    assert!(stdout.contains("during: ['p1', 'v1']"), "p1 is not kleene's container p1: {stdout}");
    assert!(stdout.contains("podman left: 0"), "{stdout}");
    assert!(stdout.contains("cgroups left: ."), "{stdout}");
    assert_only_v1_is_left(stdout);
    assert_eq!(run.code, 0, "{run:?}");
    let hierarchies = std::fs::read_dir("/sys/fs/cgroup").unwrap().map(|h| h.unwrap().path());
    let left: Vec<PathBuf> = hierarchies
        .chain([PathBuf::from("/sys/fs/cgroup")])
        .map(|h| h.join(&cgroup))
        .filter(|cg| cg.exists())
        .collect();
    assert!(left.is_empty(), "podman's cgroups are left: {left:?}");
}
