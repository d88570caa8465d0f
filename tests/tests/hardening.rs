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
