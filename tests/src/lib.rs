//! Helpers for end-to-end tests: locate the built `kleene` binary and plugins, and run
//! kleene inside a network namespace made for the test, so no test touches the machine's
//! own interfaces. The test command (README) builds the workspace before running tests.

#[cfg(target_os = "linux")]
pub mod checker;
pub mod server;

use serde_json::Value;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

/// `target/<profile>` of this workspace (where cargo puts the binary and the cdylibs).
pub fn target_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("KLEENE_TEST_TARGET") {
        return dir.into();
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf();
    let target = std::env::var("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|_| root.join("target"));
    target.join("debug")
}

pub fn kleene_bin() -> PathBuf {
    let bin = target_dir().join("kleene");
    assert!(bin.exists(), "{} is missing: build the workspace first (cargo build --workspace)", bin.display());
    bin
}

/// The plugins this workspace ships. `target/debug` also holds the deliberately broken
/// fixture plugins (`libkleene_fixture_*.so`), so tests never point the host at it directly.
pub const REAL_PLUGINS: [&str; 7] = ["loopback", "bridge", "custom", "host", "ipnet", "vnet", "disabled"];

/// The built plugin file of `name` (a real plugin, or `fixture_<what>` for a fixture).
pub fn plugin_file(name: &str) -> PathBuf {
    let file = target_dir().join(format!("libkleene_{name}.so"));
    assert!(file.exists(), "{} is missing: build the workspace first (cargo build --workspace)", file.display());
    file
}

/// Put the built plugins `names` into `dir` (created, mode 0755), as hard links where
/// possible (cheap; cargo replaces rather than rewrites its outputs) and copies otherwise.
/// Tests that change a plugin file's mode or owner must copy it themselves.
pub fn install_plugins(dir: &Path, names: &[&str]) {
    std::fs::create_dir_all(dir).expect("plugin dir");
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).expect("chmod plugin dir");
    for name in names {
        let (from, to) = (plugin_file(name), dir.join(format!("libkleene_{name}.so")));
        if std::fs::hard_link(&from, &to).is_err() {
            std::fs::copy(&from, &to).expect("copy plugin");
            std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o755)).expect("chmod plugin");
        }
    }
}

/// Run the built `kleene` directly (no namespace): for commands that only read plugins.
/// `KLEENE_PLUGIN_PATH` and `KLEENE_LOG` come only from `env`.
pub fn run_kleene(args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut cmd = Command::new(kleene_bin());
    cmd.args(args).env_remove("KLEENE_PLUGIN_PATH").env_remove("KLEENE_LOG").envs(env.iter().copied());
    Run::from(cmd.output().expect("run kleene"))
}

/// A private scratch directory, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("kleene-test-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The result of one command: exit code and text.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn from_output(out: Output) -> Run {
        Run::from(out)
    }

    fn from(out: Output) -> Run {
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Assert success and return stdout, trimmed.
    #[track_caller]
    pub fn ok(&self) -> String {
        assert_eq!(self.code, 0, "command failed: stdout={} stderr={}", self.stdout, self.stderr);
        self.stdout.trim().to_string()
    }

    /// Assert failure and return the error line.
    #[track_caller]
    pub fn err(&self) -> String {
        assert_ne!(self.code, 0, "command unexpectedly succeeded: {}", self.stdout);
        self.stderr.trim().to_string()
    }

    #[track_caller]
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.ok()).expect("json output")
    }
}

/// A network namespace of the test's own, with kleene state and run dirs; everything is
/// torn down on drop (containers stopped, networks removed, namespace deleted).
/// The interface group of host links kleene has retired and is about to delete ("KLND",
/// 0x4b4c4e44), as `ip` prints it.
pub const DYING_GROUP: &str = "1263291972";

pub struct Sandbox {
    pub name: String,
    pub dir: TempDir,
    pub plugin_path: String,
}

impl Sandbox {
    pub fn new(tag: &str) -> Sandbox {
        let dir = TempDir::new(tag);
        let name = format!(
            "kt{}-{}",
            std::process::id(),
            dir.path().file_name().unwrap().to_string_lossy().rsplit('-').next().unwrap()
        );
        let status = Command::new("ip").args(["netns", "add", &name]).status().expect("ip netns add");
        assert!(status.success(), "cannot create test namespace {name}");
        // A plugin dir of the real plugins only: target/debug also holds the test fixtures.
        let plugins = dir.path().join("plugins");
        install_plugins(&plugins, &REAL_PLUGINS);
        let sb = Sandbox { name, dir, plugin_path: plugins.display().to_string() };
        sb.sh("ip link set lo up").ok();
        sb
    }

    pub fn netns_path(&self) -> PathBuf {
        PathBuf::from("/run/netns").join(&self.name)
    }

    /// Run kleene inside the namespace (network only: its bind mounts stay visible).
    pub fn kleene(&self, args: &[&str]) -> Run {
        self.kleene_env(args, &[])
    }

    /// The kleene command line inside the namespace, to run or spawn (servers) as is.
    pub fn kleene_command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net={}", self.netns_path().display()))
            .arg("--")
            .arg(kleene_bin())
            .arg("--state-dir")
            .arg(self.dir.path().join("state"))
            .arg("--run-dir")
            .arg(self.dir.path().join("run"))
            .args(args)
            .env("KLEENE_PLUGIN_PATH", &self.plugin_path)
            .env_remove("KLEENE_LOG");
        cmd
    }

    pub fn kleene_env(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        let mut cmd = self.kleene_command(args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        Run::from(cmd.output().expect("run kleene"))
    }

    /// Run a shell command inside the namespace.
    pub fn sh(&self, script: &str) -> Run {
        let out = Command::new("nsenter")
            .arg(format!("--net={}", self.netns_path().display()))
            .args(["--", "sh", "-c", script])
            .output()
            .expect("run sh");
        Run::from(out)
    }

    /// `ip -j` output inside the namespace, parsed.
    pub fn ip_json(&self, args: &str) -> Value {
        serde_json::from_str(&self.sh(&format!("ip -j {args}")).ok()).unwrap_or(Value::Null)
    }

    /// Names of the links in the namespace, once those kleene retired are deleted: a command
    /// leaves a stopped container's host end down in its group of dying links, for a
    /// detached process to delete right after it exits (fails the test if that never
    /// happens).
    pub fn links(&self) -> Vec<String> {
        self.settle_links();
        self.ip_json("link show")
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|l| l["ifname"].as_str().map(String::from))
            .collect()
    }

    /// `ip -br link`, once the links kleene retired are deleted (see [`Sandbox::links`]).
    pub fn brief_links(&self) -> String {
        self.settle_links();
        self.sh("ip -br link").ok()
    }

    /// Wait until the detached process a command started has deleted the links it retired.
    pub fn settle_links(&self) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        // (`ip -j` prints `[{}]` for an empty group.)
        let retired = || {
            self.ip_json(&format!("link show group {DYING_GROUP}"))
                .as_array()
                .is_some_and(|a| a.iter().any(|l| l.get("ifname").is_some()))
        };
        while retired() {
            assert!(std::time::Instant::now() < deadline, "retired links were not deleted within 5 s");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }

    /// The state database file (to assert commands that fail leave it unchanged).
    pub fn state_snapshot(&self) -> String {
        let ls = self.kleene(&["network", "ls", "--json"]).stdout;
        let cs = self.kleene(&["container", "ls", "-a", "--json"]).stdout;
        format!("{ls}\n{cs}")
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        // Stop every container so cgroups, namespaces and BPF programs go away.
        let list = self.kleene(&["container", "ls", "-a", "--json"]);
        if let Ok(Value::Array(cs)) = serde_json::from_str::<Value>(&list.stdout) {
            for c in cs {
                if let Some(id) = c["id"].as_str() {
                    self.kleene(&["container", "rm", "-f", id]);
                }
            }
        }
        let _ = self.kleene(&["network", "prune", "-f"]);
        // A failed test may leave networks prune does not remove (Docker's, a cluster's), and
        // with them a DNS resolver running in the sandbox's directory: stop what runs there.
        kill_processes_under(self.dir.path());
        // Any namespace file still mounted under the run dir (a failed test) is unmounted.
        if let Ok(entries) = std::fs::read_dir(self.dir.path().join("run/netns")) {
            for e in entries.flatten() {
                let _ = Command::new("umount").arg("-l").arg(e.path()).status();
            }
        }
        let _ = Command::new("ip").args(["netns", "del", &self.name]).status();
    }
}

/// SIGKILL every process whose working directory is under `dir` (resolvers kleene started
/// run in their config directory).
fn kill_processes_under(dir: &Path) {
    let Ok(procs) = std::fs::read_dir("/proc") else { return };
    for p in procs.flatten() {
        let Some(pid) = p.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else { continue };
        if std::fs::read_link(p.path().join("cwd")).is_ok_and(|cwd| cwd.starts_with(dir)) {
            let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
        }
    }
}
