//! Issue 8's hardening findings, each kept as a test that failed before its fix. Every test
//! runs in a network namespace of its own.

use kleene_tests::Sandbox;

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
    sb.sh("ip -br link").ok()
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
    let mut holder = std::process::Command::new("nsenter")
        .arg(format!("--net={}", pin.display()))
        .args(["sleep", "30"])
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(100));
    sb.kleene(&["container", "rm", "-f", "v"]).ok();
    let left = links(&sb);
    holder.kill().unwrap();
    holder.wait().unwrap();
    assert!(!left.contains("kv"), "host end outlived rm -f: {left}");
}
