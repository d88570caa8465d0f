//! Issue 8's hardening findings, each kept as a test that failed before its fix. Every test
//! runs in a network namespace of its own.

use kleene_tests::{Sandbox, DYING_GROUP};

fn create_started(sb: &Sandbox, args: &[&str]) -> String {
    let mut full = vec!["container", "create"];
    full.extend(args);
    let id = sb.kleene(&full).ok();
    sb.kleene(&["container", "start", &id]).ok();
    id
}

fn bridge(sb: &Sandbox, name: &str, subnet: &str) {
    sb.kleene(&["network", "create", "-t", "bridge", "--subnet", subnet, name]).ok();
}

/// exec of a vnet or disabled container whose namespace pin is gone (or is a plain file, as a
/// lost mount leaves it) fails; it never runs the command in the caller's namespace.
#[test]
fn exec_without_the_namespace_pin_fails_instead_of_running_on_the_host() {
    let sb = Sandbox::new("hd-pin");
    bridge(&sb, "br", "10.81.0.0/24");
    sb.sh("ip link add hostonly0 type bridge").ok();
    let v = create_started(&sb, &["-l", "vnet", "-n", "br", "v"]);
    let d = create_started(&sb, &["-l", "disabled", "d"]);
    for (name, id, unmount_only) in [("v", &v, false), ("d", &d, true)] {
        let pin = sb.dir.path().join("run/netns").join(id);
        assert!(sb.kleene(&["container", "exec", name, "--", "true"]).code == 0, "exec works with the pin");
        let status = std::process::Command::new("umount").arg("-l").arg(&pin).status().unwrap();
        assert!(status.success());
        if !unmount_only {
            std::fs::remove_file(&pin).unwrap();
        }
        let run = sb.kleene(&["container", "exec", name, "--", "ip", "-br", "link"]);
        assert!(!run.stdout.contains("hostonly0"), "ran in the caller's namespace: {}", run.stdout);
        let err = run.err();
        assert!(err.contains("no network namespace") && err.contains("reconcile"), "{err}");
    }
}

/// A uid-0 process with every capability dropped cannot leave its container's cgroup (and so
/// ipnet's hooks) by writing its PID into a cgroup.procs above the container's.
#[test]
fn exec_cannot_escape_the_container_cgroup() {
    let sb = Sandbox::new("hd-cgroup");
    bridge(&sb, "br", "10.82.0.0/24");
    create_started(&sb, &["-l", "ipnet", "-n", "br", "i"]);
    // After the escape attempt, binding the network's gateway address (not the container's)
    // shows whether the ipnet hooks still apply.
    let script = "for m in $(awk '$3==\"cgroup2\"{print $2}' /proc/self/mounts); do \
                    echo $$ > $m/cgroup.procs 2>/dev/null; done; \
                  exec python3 -c \"import socket\ntry:\n  socket.socket().bind(('10.82.0.1', 0)); print('escaped')\nexcept OSError as e:\n  print('confined', e.errno)\"";
    let out = sb
        .kleene(&[
            "container",
            "exec",
            "i",
            "--",
            "setpriv",
            "--bounding-set=-all",
            "--inh-caps=-all",
            "sh",
            "-c",
            script,
        ])
        .ok();
    assert_eq!(out, format!("confined {}", libc::EADDRNOTAVAIL), "the process left its cgroup");
}

fn links(sb: &Sandbox) -> String {
    sb.brief_links()
}

fn lose_pin(sb: &Sandbox, id: &str, remove_file: bool) {
    let pin = sb.dir.path().join("run/netns").join(id);
    assert!(std::process::Command::new("umount").arg("-l").arg(&pin).status().unwrap().success());
    if remove_file {
        std::fs::remove_file(&pin).unwrap();
    }
}

/// A vnet container whose namespace pin is lost while its cgroup survives can still be
/// stopped and removed, and reconcile rebuilds it (with the pin gone, or a plain file left).
#[test]
fn a_lost_namespace_pin_never_wedges_a_container() {
    let sb = Sandbox::new("hd-wedge");
    bridge(&sb, "br", "10.84.0.0/24");
    for remove_file in [true, false] {
        let id = create_started(&sb, &["-l", "vnet", "-n", "br", "v"]);
        lose_pin(&sb, &id, remove_file);
        sb.kleene(&["system", "reconcile"]).ok();
        let addrs = sb.kleene(&["container", "exec", "v", "--", "ip", "-br", "addr"]).ok();
        assert!(addrs.contains("10.84.0.2/24"), "reconcile rebuilt the namespace: {addrs}");
        lose_pin(&sb, &id, remove_file);
        sb.kleene(&["container", "stop", "v"]).ok();
        assert!(!links(&sb).contains("kv"), "no pair left after stop");
        sb.kleene(&["container", "start", "v"]).ok();
        lose_pin(&sb, &id, remove_file);
        sb.kleene(&["network", "disconnect", "br", "v"]).ok();
        let err = sb.kleene(&["network", "connect", "br", "v"]).err();
        assert!(err.contains("no network namespace") && err.contains("reconcile"), "{err}");
        sb.kleene(&["system", "reconcile"]).ok();
        sb.kleene(&["network", "connect", "br", "v"]).ok();
        lose_pin(&sb, &id, remove_file);
        sb.kleene(&["container", "rm", "-f", "v"]).ok();
        assert!(!links(&sb).contains("kv"), "no pair left after rm -f");
    }
    sb.kleene(&["network", "rm", "br"]).ok();
}

/// rm -f deletes the host end of a vnet pair even while something else holds the namespace.
#[test]
fn rm_removes_the_pair_while_the_namespace_is_held() {
    let sb = Sandbox::new("hd-held");
    bridge(&sb, "br", "10.85.0.0/24");
    let id = create_started(&sb, &["-l", "vnet", "-n", "br", "v"]);
    let pin = sb.dir.path().join("run/netns").join(&id);
    let mut holder = hold_namespace(&pin);
    sb.kleene(&["container", "rm", "-f", "v"]).ok();
    let left = links(&sb);
    holder.kill().unwrap();
    holder.wait().unwrap();
    assert!(!left.contains("kv"), "host end outlived rm -f: {left}");
}

/// `ip -j link show dev NAME`, or None when there is no such link.
fn link_json(sb: &Sandbox, name: &str) -> Option<serde_json::Value> {
    let run = sb.sh(&format!("ip -j link show dev {name}"));
    (run.code == 0).then(|| serde_json::from_str::<serde_json::Value>(&run.stdout).ok()?.get(0).cloned()).flatten()
}

/// The host end of container `name`'s first pair.
fn host_end_of(sb: &Sandbox, name: &str) -> String {
    let inspect = sb.kleene(&["container", "inspect", name]).json();
    inspect["container_endpoints"][0]["epair"].as_str().expect("a started vnet container has a host end").to_string()
}

/// Right after a stop: the host end is gone, or down and retired (the kernel passes no frame
/// through it) for a deletion after the answer.
fn assert_retired_or_gone(sb: &Sandbox, host_end: &str) {
    if let Some(link) = link_json(sb, host_end) {
        let flags: Vec<&str> = link["flags"].as_array().unwrap().iter().filter_map(|f| f.as_str()).collect();
        assert!(!flags.contains(&"UP"), "{host_end} is still up after stop: {link}");
        assert_eq!(link["group"], DYING_GROUP, "{host_end} was not retired: {link}");
    }
}

/// A (re)started container's host end: on the bridge and up.
fn assert_whole_on_the_bridge(sb: &Sandbox, host_end: &str) {
    let link = link_json(sb, host_end).expect("the restarted container's host end");
    assert_eq!((link["master"].as_str(), link["operstate"].as_str()), (Some("kleene0"), Some("UP")), "{link}");
}

/// Through `kleene serve`, stop answers once the host end of a vnet pair can carry nothing
/// (down, and out of kleene's interface group), and the server deletes it right after, even
/// while something else holds the container's namespace.
#[test]
fn served_stop_retires_the_pair_at_once_and_deletes_it_right_after() {
    let sb = Sandbox::new("hd-reap");
    bridge(&sb, "br", "10.87.0.0/24");
    let id = create_started(&sb, &["-l", "vnet", "-n", "br", "v"]);
    let host_end = host_end_of(&sb, "v");
    let pin = sb.dir.path().join("run/netns").join(&id);
    let mut holder = hold_namespace(&pin);
    let server = sb.serve();
    let (status, body) = server.request("POST", "/containers/v/stop", "");
    assert_eq!(status, 200, "{body}");
    assert_retired_or_gone(&sb, &host_end);
    // (`links` waits up to 5 s for retired links to be deleted, and fails if they are not.)
    assert!(!links(&sb).contains(&host_end), "{host_end} outlived stop");
    // The same container starts again at once, with a whole pair on the bridge.
    let (status, body) = server.request("POST", "/containers/v/start", "");
    assert_eq!(status, 200, "{body}");
    assert_whole_on_the_bridge(&sb, &host_end);
    holder.kill().unwrap();
    holder.wait().unwrap();
}

/// The CLI's stop returns without waiting for the kernel to delete the host end: the end is
/// down and retired when it returns, a detached process deletes it right after, and a start
/// at once (the name still held by the retired end) gets a whole pair.
#[test]
fn cli_stop_retires_the_pair_and_a_detached_process_deletes_it() {
    let sb = Sandbox::new("hd-clireap");
    bridge(&sb, "br", "10.88.0.0/24");
    create_started(&sb, &["-l", "vnet", "-n", "br", "v"]);
    let host_end = host_end_of(&sb, "v");
    sb.kleene(&["container", "stop", "v"]).ok();
    assert_retired_or_gone(&sb, &host_end);
    sb.kleene(&["container", "start", "v"]).ok();
    assert_whole_on_the_bridge(&sb, &host_end);
    assert!(
        sb.kleene(&["container", "exec", "v", "--", "ping", "-c1", "-W2", "10.88.0.1"]).code == 0,
        "no path after the restart"
    );
    sb.kleene(&["container", "stop", "v"]).ok();
    assert!(!links(&sb).contains(&host_end), "{host_end} outlived stop");
}

/// Links a killed server had retired but not yet deleted (down, in the dying group) are
/// deleted by `system reconcile`, which `kleene serve` runs at start; no other link is.
#[test]
fn reconcile_deletes_links_a_killed_server_had_retired() {
    let sb = Sandbox::new("hd-retired");
    sb.sh(&format!(
        "ip link add kvretired0 group {DYING_GROUP} type veth peer name kvpeer0 && ip link set kvretired0 down \
         && ip link add kvretired1 group {DYING_GROUP} type ifb && ip link add keep0 type ifb"
    ))
    .ok();
    sb.kleene(&["system", "reconcile"]).ok();
    let left = links(&sb);
    assert!(!left.contains("kvretired") && !left.contains("kvpeer0"), "retired links survived reconcile: {left}");
    assert!(left.contains("keep0"), "reconcile deleted a link that was not retired: {left}");
}

/// Subnets that clash with what the host uses itself are refused, each with one clear line,
/// and nothing is created.
#[test]
fn subnets_that_clash_with_the_host_are_refused() {
    let sb = Sandbox::new("hd-subnet");
    sb.sh("ip link add held0 type bridge && ip addr add 10.86.0.5/24 dev held0").ok();
    let cases: [(&str, &str, &str); 9] = [
        ("--subnet", "127.0.0.0/8", "loopback"),
        ("--subnet", "224.0.0.0/24", "multicast"),
        ("--subnet", "10.0.0.1/24", "host bits set; use 10.0.0.0/24"),
        ("--subnet", "10.86.0.0/24", "host interface held0"),
        ("--subnet", "10.86.0.0/16", "host interface held0"),
        ("--subnet6", "fe80::/64", "link-local"),
        ("--subnet6", "::ffff:0:0/96", "IPv4-mapped"),
        ("--subnet6", "ff02::/64", "multicast"),
        ("--subnet6", "::1/128", "loopback"),
    ];
    for (flag, subnet, why) in cases {
        let before = sb.state_snapshot();
        let err = sb.kleene(&["network", "create", "-t", "bridge", flag, subnet, "n"]).err();
        assert!(err.contains(why) && err.lines().count() == 1, "{subnet}: {err}");
        assert_eq!(sb.state_snapshot(), before, "{subnet} changed state");
        assert!(!sb.brief_links().contains("kleene"), "{subnet} created an interface");
    }
}

/// Interface names nftables or pf would rewrite or read as wildcards are refused up front.
#[test]
fn interface_names_the_firewall_cannot_match_are_refused() {
    let sb = Sandbox::new("hd-ifname");
    for (flag, name) in [("-i", "a\"b"), ("-i", "a\\b"), ("--nat-if", "*"), ("--nat-if", "et h0")] {
        let err = sb.kleene(&["network", "create", "-t", "bridge", "--subnet", "10.87.0.0/24", flag, name, "n"]).err();
        assert!(err.contains("invalid interface name"), "{name}: {err}");
    }
    assert_eq!(sb.kleene(&["network", "ls", "--json"]).json(), serde_json::json!([]));
}

/// The default interface name skips names the kernel already has.
#[test]
fn default_interface_name_skips_existing_links() {
    let sb = Sandbox::new("hd-kleene0");
    sb.sh("ip link add kleene0 type bridge").ok();
    sb.kleene(&["network", "create", "-t", "bridge", "--subnet", "10.88.0.0/24", "n"]).ok();
    let net = sb.kleene(&["network", "inspect", "n"]).json();
    assert_eq!(net["network"]["interface"], "kleene1", "{net}");
}

/// `kleene network ls | head -1` ends quietly: no panic, no exit 101. (`head -c0` leaves
/// before kleene writes, so the write always meets a closed pipe.)
#[test]
fn a_closed_pipe_ends_ls_quietly() {
    let sb = Sandbox::new("hd-pipe");
    for n in 0..3 {
        sb.kleene(&["network", "create", "--subnet", &format!("10.89.{n}.0/24"), &format!("n{n}")]).ok();
    }
    let cmd = format!(
        "{} --state-dir {} network ls | head -c0; echo ${{PIPESTATUS[0]}}",
        kleene_tests::kleene_bin().display(),
        sb.dir.path().join("state").display()
    );
    let out = std::process::Command::new("bash")
        .args(["-c", &cmd])
        .env("KLEENE_PLUGIN_PATH", &sb.plugin_path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    let code: i32 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    assert!(code == 0 || code == 141, "exit {code}: {stderr}");
}

/// A process (the caller kills it) that keeps the namespace pinned at `pin` alive, as a
/// container runtime's or a user's `nsenter` would.
fn hold_namespace(pin: &std::path::Path) -> std::process::Child {
    let holder = std::process::Command::new("nsenter")
        .arg(format!("--net={}", pin.display()))
        .args(["sleep", "30"])
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(100));
    holder
}
