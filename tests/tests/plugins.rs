//! The plugin platform end to end: broken plugins of every kind are reported (one line naming
//! the file and the reason) while the host carries on with the others; permissions,
//! shadowing, subsets, plugin logging; a third-party driver built outside the workspace; and
//! a staged install that finds its plugins next to its binary.
//!
//! The fixture plugins (`tests/fixtures/*`, built as `libkleene_fixture_*.so`) sit in
//! `target/debug` next to the real ones, so every test builds its own plugin dir.

use kleene_tests::{install_plugins, plugin_file, run_kleene, target_dir, Run, Sandbox, TempDir, REAL_PLUGINS};
use serde_json::Value;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// `kleene plugin ls --json` over `path` (colon-separated dirs), which must exit 0.
fn ls(path: &str) -> Vec<Value> {
    let run = run_kleene(&["plugin", "ls", "--json"], &[("KLEENE_PLUGIN_PATH", path)]);
    run.json().as_array().cloned().expect("plugin ls --json prints an array")
}

/// The row of `file` (a full path) in `plugin ls --json`.
#[track_caller]
fn row<'a>(rows: &'a [Value], file: &Path) -> &'a Value {
    let file = file.display().to_string();
    rows.iter().find(|r| r["path"] == file.as_str()).unwrap_or_else(|| panic!("{file} not listed: {rows:#?}"))
}

/// `file` is listed as broken with a one-line reason naming it and containing `reason`.
#[track_caller]
fn assert_broken(rows: &[Value], file: &Path, reason: &str) {
    let r = row(rows, file);
    assert_eq!(r["status"], "broken", "{r:#}");
    let text = r["reason"].as_str().expect("reason");
    assert!(text.starts_with(&format!("{}: ", file.display())), "reason does not name the file: {text}");
    assert!(text.contains(reason), "expected {reason:?} in {text:?}");
    assert!(!text.contains('\n'), "reason spans lines: {text:?}");
}

/// Every real plugin in `dir` loads.
#[track_caller]
fn assert_real_ok(rows: &[Value], dir: &Path, names: &[&str]) {
    for name in names {
        let r = row(rows, &dir.join(format!("libkleene_{name}.so")));
        assert_eq!(r["status"], "ok", "{r:#}");
    }
}

/// Copy (never link: tests change modes and owners) a built plugin into `dir` as `file`.
fn copy_plugin(name: &str, dir: &Path, file: &str) -> PathBuf {
    let to = dir.join(file);
    fs::copy(plugin_file(name), &to).expect("copy plugin");
    fs::set_permissions(&to, fs::Permissions::from_mode(0o755)).expect("chmod");
    to
}

/// A sandbox whose plugin dir holds the real plugins `names` plus the fixtures `fixtures`.
fn sandbox_with(tag: &str, names: &[&str], fixtures: &[&str]) -> Sandbox {
    let mut sb = Sandbox::new(tag);
    let dir = sb.dir.path().join(format!("{tag}-plugins"));
    install_plugins(&dir, names);
    let fixtures: Vec<String> = fixtures.iter().map(|f| format!("fixture_{f}")).collect();
    install_plugins(&dir, &fixtures.iter().map(String::as_str).collect::<Vec<_>>());
    sb.plugin_path = dir.display().to_string();
    sb
}

#[test]
fn the_sandbox_plugin_dir_holds_exactly_the_real_plugins() {
    // target/debug also holds the fixtures: the harness must not hand those to other tests.
    let sb = Sandbox::new("clean");
    let rows = ls(&sb.plugin_path);
    let mut names: Vec<&str> = rows.iter().map(|r| r["name"].as_str().unwrap()).collect();
    let mut want = REAL_PLUGINS.to_vec();
    names.sort();
    want.sort();
    assert_eq!(names, want);
    assert_real_ok(&rows, Path::new(&sb.plugin_path), &REAL_PLUGINS);
    assert!(ls(&target_dir().display().to_string()).iter().any(|r| r["name"] == "fixture_badapi"));
}

#[test]
fn broken_plugins_are_reported_one_line_each_and_the_rest_still_work() {
    let tmp = TempDir::new("broken");
    let dir = tmp.path();
    install_plugins(dir, &REAL_PLUGINS);
    // (a) not a plugin at all; (b) a real plugin cut in half (dlopen alone would SIGBUS).
    let garbage = dir.join("libkleene_garbage.so");
    fs::write(&garbage, "this is not a shared library\n").unwrap();
    fs::set_permissions(&garbage, fs::Permissions::from_mode(0o755)).unwrap();
    let truncated = copy_plugin("bridge", dir, "libkleene_truncated.so");
    let len = fs::metadata(&truncated).unwrap().len();
    fs::OpenOptions::new().write(true).open(&truncated).unwrap().set_len(len / 2).unwrap();
    // (c)-(e) purpose-built fixtures.
    install_plugins(dir, &["fixture_nosymbol", "fixture_badapi", "fixture_ctorpanic"]);
    let fixture = |what: &str| dir.join(format!("libkleene_fixture_{what}.so"));

    let rows = ls(&dir.display().to_string());
    assert_broken(&rows, &garbage, "not a kleene plugin (not an ELF shared library)");
    assert_broken(&rows, &truncated, &format!("truncated or corrupt library ({} bytes)", len / 2));
    assert_broken(&rows, &fixture("nosymbol"), "not a kleene plugin (no abi_stable root module symbol)");
    assert_broken(
        &rows,
        &fixture("badapi"),
        "built for plugin API 2.0.0 but this kleene speaks API 1.3.0; rebuild the plugin against kleene-plugin-api 1.x",
    );
    assert_broken(&rows, &fixture("ctorpanic"), "plugin panicked while initialising");
    assert_real_ok(&rows, dir, &REAL_PLUGINS);
    assert_eq!(rows.len(), REAL_PLUGINS.len() + 5, "{rows:#?}");

    // The table shows the same, one line per file.
    let table = run_kleene(&["plugin", "ls"], &[("KLEENE_PLUGIN_PATH", &dir.display().to_string())]).ok();
    let line = table.lines().find(|l| l.starts_with("fixture_badapi ")).expect("badapi row");
    assert!(line.contains(&format!("broken: {}: built for plugin API 2.0.0", fixture("badapi").display())), "{line}");

    // Asking for a broken plugin by name fails with the same line; a good one still works.
    let run =
        run_kleene(&["plugin", "inspect", "fixture_nosymbol"], &[("KLEENE_PLUGIN_PATH", &dir.display().to_string())]);
    assert_eq!(run.code, 1);
    assert_eq!(
        run.err(),
        format!("kleene: {}: not a kleene plugin (no abi_stable root module symbol)", fixture("nosymbol").display())
    );
    let run =
        run_kleene(&["plugin", "inspect", "ipnet", "--json"], &[("KLEENE_PLUGIN_PATH", &dir.display().to_string())]);
    assert_eq!(run.json()["kind"], "driver");
}

#[test]
fn broken_plugins_do_not_stop_commands_that_use_others() {
    let sb = sandbox_with("brokenuse", &REAL_PLUGINS, &["nosymbol", "badapi", "ctorpanic"]);
    sb.kleene(&["network", "create", "-t", "loopback", "--subnet", "10.91.0.0/24", "lo91"]).ok();
    sb.kleene(&["container", "create", "-n", "lo91", "c91"]).ok();
    // Asking for a broken one by name is one line naming its file.
    let run = sb.kleene(&["container", "create", "-l", "fixture_badapi", "cbad"]);
    assert_eq!(run.code, 1);
    assert!(run.err().contains("built for plugin API 2.0.0"), "{}", run.stderr);
    assert_eq!(run.stderr.trim().lines().count(), 1, "{}", run.stderr);
}

#[test]
fn a_panicking_call_is_one_line_naming_the_plugin_and_changes_nothing() {
    let sb = sandbox_with("callpanic", &REAL_PLUGINS, &["callpanic"]);
    sb.kleene(&["container", "create", "-l", "fixture_callpanic", "x"]).ok();
    let before = sb.state_snapshot();
    let run = sb.kleene(&["container", "start", "x"]);
    // 1, not 134 (abort) or 101 (panic): the host caught it and reported it.
    assert_eq!(run.code, 1, "{run:?}");
    let err = run.err();
    assert_eq!(err.lines().count(), 1, "the plugin's panic hook leaked output: {err}");
    assert!(
        err.starts_with(
            "kleene: plugin 'fixture_callpanic' panicked during container_start: fixture refuses to plan container_start (at "
        ),
        "{err}"
    );
    assert!(err.contains("fixtures/callpanic/src/lib.rs:"), "{err}");
    assert_eq!(sb.state_snapshot(), before);
    // The host is still usable afterwards, for this plugin too.
    assert_eq!(sb.kleene(&["container", "rm", "x"]).code, 0);
}

#[test]
fn an_operation_unknown_to_the_host_is_refused_naming_plugin_and_op() {
    let sb = sandbox_with("teleport", &REAL_PLUGINS, &["teleport"]);
    sb.kleene(&["container", "create", "-l", "fixture_teleport", "x"]).ok();
    let before = sb.state_snapshot();
    let links = sb.links();
    let run = sb.kleene(&["container", "start", "x"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert_eq!(
        run.err(),
        "kleene: plugin 'fixture_teleport' asked for operation 'teleport', which this kleene does not know; upgrade kleene or use an older plugin"
    );
    // Refused before anything ran: not even the known first step (create_sandbox).
    assert_eq!(sb.state_snapshot(), before);
    assert_eq!(sb.links(), links);
    let netns = sb.dir.path().join("run/netns");
    assert!(fs::read_dir(&netns).map(|d| d.count() == 0).unwrap_or(true), "a sandbox was created in {netns:?}");
}

#[test]
fn insecure_plugin_files_and_dirs_are_refused() {
    let tmp = TempDir::new("perms");
    let (good, loose, open) = (tmp.path().join("good"), tmp.path().join("loose"), tmp.path().join("open"));
    install_plugins(&good, &["loopback", "ipnet"]);
    fs::create_dir_all(&loose).unwrap();
    fs::create_dir_all(&open).unwrap();
    let group_writable = copy_plugin("bridge", &loose, "libkleene_bridge.so");
    fs::set_permissions(&group_writable, fs::Permissions::from_mode(0o775)).unwrap();
    let other_writable = copy_plugin("custom", &loose, "libkleene_custom.so");
    fs::set_permissions(&other_writable, fs::Permissions::from_mode(0o757)).unwrap();
    let foreign = copy_plugin("vnet", &loose, "libkleene_vnet.so");
    std::os::unix::fs::chown(&foreign, Some(65534), Some(65534)).unwrap();
    let in_open_dir = copy_plugin("host", &open, "libkleene_host.so");
    fs::set_permissions(&open, fs::Permissions::from_mode(0o777)).unwrap();

    let path = format!("{}:{}:{}", good.display(), loose.display(), open.display());
    let rows = ls(&path);
    let writable =
        |p: &Path| format!("refusing to load: {} is writable by group or others (chmod go-w it)", p.display());
    assert_broken(&rows, &group_writable, &writable(&group_writable));
    assert_broken(&rows, &other_writable, &writable(&other_writable));
    assert_broken(
        &rows,
        &foreign,
        &format!("refusing to load: {} is owned by uid 65534, not root or you", foreign.display()),
    );
    assert_broken(&rows, &in_open_dir, &writable(&open));
    assert_real_ok(&rows, &good, &["loopback", "ipnet"]);

    // Fixed permissions: the same files load.
    fs::set_permissions(&open, fs::Permissions::from_mode(0o755)).unwrap();
    fs::set_permissions(&group_writable, fs::Permissions::from_mode(0o755)).unwrap();
    let rows = ls(&path);
    assert_eq!(row(&rows, &in_open_dir)["status"], "ok");
    assert_eq!(row(&rows, &group_writable)["status"], "ok");
}

#[test]
fn a_link_is_judged_by_the_directory_of_the_file_it_leads_to() {
    let tmp = TempDir::new("links");
    let (good, open, safe) = (tmp.path().join("good"), tmp.path().join("open"), tmp.path().join("safe"));
    install_plugins(&good, &[]);
    for dir in [&open, &safe] {
        fs::create_dir_all(dir).unwrap();
    }
    // The library itself is fine (root's, 0755); the directory it sits in is anyone's.
    let planted = copy_plugin("bridge", &open, "libkleene_bridge.so");
    fs::set_permissions(&open, fs::Permissions::from_mode(0o777)).unwrap();
    std::os::unix::fs::symlink(&planted, good.join("libkleene_bridge.so")).unwrap();
    // A link to a library in a safe directory still loads.
    let kept = copy_plugin("ipnet", &safe, "libkleene_ipnet.so");
    std::os::unix::fs::symlink(&kept, good.join("libkleene_ipnet.so")).unwrap();

    let rows = ls(&good.display().to_string());
    assert_broken(
        &rows,
        &good.join("libkleene_bridge.so"),
        &format!("refusing to load: {} is writable by group or others (chmod go-w it)", open.display()),
    );
    assert_eq!(row(&rows, &good.join("libkleene_ipnet.so"))["status"], "ok");
    // Asking for it by name is refused the same way, before anything of it runs.
    let run = run_kleene(&["plugin", "inspect", "bridge"], &[("KLEENE_PLUGIN_PATH", &good.display().to_string())]);
    assert!(run.err().contains(&format!("{} is writable by group or others", open.display())), "{}", run.stderr);
}

#[test]
fn a_fifo_named_like_a_plugin_is_reported_not_waited_on() {
    let tmp = TempDir::new("fifo");
    let dir = tmp.path().join("plugins");
    install_plugins(&dir, &["loopback"]);
    let fifo = dir.join("libkleene_x.so");
    let c_path = std::ffi::CString::new(fifo.display().to_string()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o644) }, 0, "mkfifo");

    let mut child = Command::new(kleene_tests::kleene_bin())
        .args(["plugin", "ls", "--json"])
        .env("KLEENE_PLUGIN_PATH", &dir)
        .env_remove("KLEENE_LOG")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("run kleene");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("plugin ls hangs on a FIFO in the plugin dir");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "plugin ls failed");
    let rows: Vec<Value> = serde_json::from_slice::<Value>(&out.stdout).unwrap().as_array().cloned().unwrap();
    assert_broken(&rows, &fifo, "not a regular file");
    assert_eq!(row(&rows, &dir.join("libkleene_loopback.so"))["status"], "ok");
}

#[test]
fn the_first_plugin_of_a_name_wins_and_later_ones_are_shadowed() {
    let tmp = TempDir::new("shadow");
    let (first, second) = (tmp.path().join("first"), tmp.path().join("second"));
    install_plugins(&first, &["loopback"]);
    install_plugins(&second, &["loopback", "bridge"]);
    let path = format!("{}:{}", first.display(), second.display());
    let rows = ls(&path);
    let (winner, loser) = (first.join("libkleene_loopback.so"), second.join("libkleene_loopback.so"));
    assert_eq!(row(&rows, &winner)["status"], "ok");
    assert_eq!(row(&rows, &loser)["status"], "shadowed");
    assert_eq!(row(&rows, &loser)["reason"], format!("shadowed by {}", winner.display()));
    assert_eq!(row(&rows, &second.join("libkleene_bridge.so"))["status"], "ok");
    let inspect = run_kleene(&["plugin", "inspect", "loopback", "--json"], &[("KLEENE_PLUGIN_PATH", &path)]).json();
    assert_eq!(inspect["path"], winner.display().to_string());
    // Reversing the path reverses the outcome.
    let rows = ls(&format!("{}:{}", second.display(), first.display()));
    assert_eq!(row(&rows, &winner)["status"], "shadowed");
    assert_eq!(row(&rows, &loser)["status"], "ok");
}

#[test]
fn a_subset_of_plugins_serves_what_it_can_and_names_what_is_missing() {
    let sb = sandbox_with("subset", &["bridge", "ipnet"], &[]);
    let names: Vec<String> =
        ls(&sb.plugin_path).iter().map(|r| r["name"].as_str().unwrap_or_default().to_string()).collect();
    assert_eq!(names, ["bridge", "ipnet"]);
    sb.kleene(&["network", "create", "-t", "bridge", "--subnet", "10.92.0.0/24", "br92"]).ok();
    sb.kleene(&["container", "create", "-n", "br92", "c92"]).ok();
    let run = sb.kleene(&["network", "create", "-t", "loopback", "--subnet", "10.93.0.0/24", "x"]);
    assert_eq!(run.code, 1);
    assert_eq!(
        run.err(),
        "kleene: unknown network type 'loopback': no plugin file libkleene_loopback.so on the plugin path; install the kleene-plugin-loopback package or set KLEENE_PLUGIN_PATH"
    );
    let run = sb.kleene(&["container", "create", "-l", "vnet", "-n", "br92", "v92"]);
    assert_eq!(run.code, 1);
    assert!(run.err().contains("unknown network driver 'vnet'"), "{}", run.stderr);
    assert!(run.err().contains("install the kleene-plugin-vnet package"), "{}", run.stderr);
}

#[test]
fn plugin_log_events_reach_the_host_subscriber_tagged_with_the_plugin() {
    let sb = Sandbox::new("logs");
    sb.kleene(&["network", "create", "-t", "bridge", "--subnet", "10.94.0.0/24", "br94"]).ok();
    sb.kleene(&["container", "create", "-n", "br94", "quiet"]).ok();
    sb.kleene(&["container", "create", "-n", "br94", "loud"]).ok();
    // ipnet logs the restriction at debug: hidden under -v, shown under -vv.
    let quiet = sb.kleene(&["-v", "container", "start", "quiet"]);
    quiet.ok();
    assert!(!quiet.stderr.contains("restricted to"), "{}", quiet.stderr);
    let loud = sb.kleene(&["-vv", "container", "start", "loud"]);
    loud.ok();
    let line =
        loud.stderr.lines().find(|l| l.contains("container loud restricted to [10.94.0.")).unwrap_or_else(|| {
            panic!("no plugin event in: {}", loud.stderr);
        });
    assert!(line.contains("DEBUG") && line.contains("kleene::plugin") && line.contains("plugin=\"ipnet\""), "{line}");
}

/// Build `examples/third-party-driver` as its author would, outside the workspace.
fn build_third_party() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf();
    let target = target_dir().parent().unwrap().join("third-party");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args(["build", "--manifest-path"])
        .arg(root.join("examples/third-party-driver/Cargo.toml"))
        .arg("--target-dir")
        .arg(&target)
        .env_remove("CARGO_TARGET_DIR")
        .output()
        .expect("run cargo");
    assert!(out.status.success(), "third-party build failed: {}", String::from_utf8_lossy(&out.stderr));
    target.join("debug/libkleene_sample.so")
}

#[test]
fn a_third_party_driver_loads_and_the_host_enforces_its_matrix() {
    let built = build_third_party();
    let mut sb = Sandbox::new("thirdparty");
    let dir = PathBuf::from(&sb.plugin_path);
    fs::copy(&built, dir.join("libkleene_sample.so")).unwrap();
    fs::set_permissions(dir.join("libkleene_sample.so"), fs::Permissions::from_mode(0o755)).unwrap();
    sb.plugin_path = dir.display().to_string();

    let rows = ls(&sb.plugin_path);
    let sample = row(&rows, &dir.join("libkleene_sample.so"));
    assert_eq!(sample["status"], "ok", "{sample:#}");
    assert_eq!(sample["kind"], "driver");
    assert_eq!(sample["network_types"], serde_json::json!(["bridge"]));
    assert_real_ok(&rows, &dir, &REAL_PLUGINS);

    sb.kleene(&["network", "create", "-t", "bridge", "--subnet", "10.95.0.0/24", "br95"]).ok();
    sb.kleene(&["network", "create", "-t", "loopback", "--subnet", "10.96.0.0/24", "lo96"]).ok();
    sb.kleene(&["container", "create", "-l", "sample", "-n", "br95", "ok95"]).ok();
    let refused = sb.kleene(&["container", "create", "-l", "sample", "-n", "lo96", "no96"]);
    assert_eq!(refused.code, 1);
    assert_eq!(
        refused.err(),
        "kleene: containers using the 'sample' network-driver can't connect to loopback networks"
    );
    // It really plans: starting runs its plan, and its info-level event shows under -v.
    let start = sb.kleene(&["-v", "container", "start", "ok95"]);
    start.ok();
    assert!(
        start
            .stderr
            .lines()
            .any(|l| l.contains("plugin=\"sample\"") && l.contains("container ok95 joins 1 network(s)")),
        "{}",
        start.stderr
    );
    // Its declared private stack is what exec enters: the container's own namespace.
    let inside = sb.kleene(&["container", "exec", "ok95", "--", "ip", "-br", "addr"]).ok();
    assert!(inside.contains("eth0") && inside.contains("10.95.0.2/24"), "{inside}");
    assert!(sb.brief_links().contains("ks"), "no host end of its pair");
}

/// Replace what differs between two otherwise identical containers of different drivers:
/// 12-hex ids and the host ends of their pairs (`kv…` for vnet, `ks…` for sample).
fn normalized_ruleset(sb: &Sandbox) -> String {
    let table = sb.sh("nft list table inet kleene").ok();
    table
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .map(|w| {
            let hex = |s: &str| s.len() == 12 && s.bytes().all(|b| b.is_ascii_hexdigit());
            if hex(w) || (w.len() == 14 && (w.starts_with("kv") || w.starts_with("ks")) && hex(&w[2..])) {
                "X"
            } else {
                w
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// A third-party driver that declares a private stack gets exactly vnet's firewall (icc,
/// no-icc, internal, published ports), and the host reaches it on a --no-icc network.
#[test]
fn a_declared_private_stack_gets_vnets_firewall() {
    let built = build_third_party();
    let sb = Sandbox::new("thirdparty-fw");
    let dir = PathBuf::from(&sb.plugin_path);
    fs::copy(&built, dir.join("libkleene_sample.so")).unwrap();
    fs::set_permissions(dir.join("libkleene_sample.so"), fs::Permissions::from_mode(0o755)).unwrap();
    for (i, flags) in [vec![], vec!["--no-icc"], vec!["--internal"]].into_iter().enumerate() {
        let subnet = format!("10.97.{i}.0/24");
        let mut create = vec!["network", "create", "-t", "bridge", "--subnet", &subnet];
        create.extend(&flags);
        create.push("n");
        sb.kleene(&create).ok();
        let ip = format!("10.97.{i}.10");
        let mut rules = Vec::new();
        for driver in ["vnet", "sample"] {
            sb.kleene(&["container", "create", "-l", driver, "-n", "n", "--ip", &ip, "-p", "8080:80", "c"]).ok();
            sb.kleene(&["container", "start", "c"]).ok();
            rules.push(normalized_ruleset(&sb));
            if flags == ["--no-icc"] {
                let ping = sb.sh(&format!("ping -c1 -W2 {ip}"));
                assert_eq!(ping.code, 0, "{driver}: the host cannot reach its container: {}", ping.stdout);
            }
            sb.kleene(&["container", "rm", "-f", "c"]).ok();
        }
        assert_eq!(rules[0], rules[1], "{flags:?}: the firewall treats sample unlike vnet");
        sb.kleene(&["network", "rm", "n"]).ok();
    }
}

#[test]
fn a_staged_subset_finds_its_plugins_next_to_the_binary() {
    let prefix = TempDir::new("stage");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(&root)
        .args(["xtask", "stage", "--plugins", "loopback,ipnet", "--prefix"])
        .arg(prefix.path())
        .output()
        .expect("run cargo xtask");
    assert!(out.status.success(), "stage failed: {}", String::from_utf8_lossy(&out.stderr));
    // The CNI plugin goes to the CNI bin dir, whose ../kleene/plugins is the plugin dir.
    let cni = prefix.path().join("lib/cni/kleene-cni");
    assert!(std::fs::metadata(&cni).is_ok_and(|m| m.permissions().mode() & 0o111 != 0), "{} missing", cni.display());

    // No KLEENE_PLUGIN_PATH: only <bin>/../lib/kleene/plugins (and the empty system dir).
    let kleene = prefix.path().join("bin/kleene");
    let out = Command::new(&kleene)
        .args(["plugin", "ls", "--json"])
        .env_remove("KLEENE_PLUGIN_PATH")
        .output()
        .expect("run staged kleene");
    let run = Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into(),
        stderr: String::from_utf8_lossy(&out.stderr).into(),
    };
    let rows = run.json();
    let rows = rows.as_array().unwrap();
    let names: Vec<&str> = rows.iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["ipnet", "loopback"]);
    let plugin_dir = prefix.path().join("bin/../lib/kleene/plugins");
    for r in rows {
        assert_eq!(r["status"], "ok", "{r:#}");
        assert_eq!(
            r["path"],
            plugin_dir.join(format!("libkleene_{}.so", r["name"].as_str().unwrap())).display().to_string()
        );
    }
    let man = fs::read_to_string(prefix.path().join("share/man/man1/kleene.1")).unwrap();
    assert!(man.contains(".TH kleene"), "not a man page: {}", &man[..man.len().min(200)]);
    let bash = fs::read_to_string(prefix.path().join("share/bash-completion/completions/kleene")).unwrap();
    assert!(bash.contains("complete") && bash.contains("kleene"), "not a bash completion");
    for f in ["share/zsh/site-functions/_kleene", "share/fish/vendor_completions.d/kleene.fish"] {
        assert!(fs::metadata(prefix.path().join(f)).unwrap().len() > 0, "{f} is empty");
    }
    // The service files start the staged binary's server.
    let unit = fs::read_to_string(prefix.path().join("lib/systemd/system/kleened.service")).unwrap();
    assert!(unit.contains(&format!("ExecStart={} serve", kleene.display())), "{unit}");
    let rc = prefix.path().join("etc/rc.d/kleened");
    let rc_text = fs::read_to_string(&rc).unwrap();
    assert!(rc_text.contains(&format!("procname=\"{}\"", kleene.display())), "{rc_text}");
    assert!(Command::new("sh").arg("-n").arg(&rc).status().unwrap().success(), "rc.d script is not valid sh");
}
