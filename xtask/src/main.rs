//! `cargo xtask stage --prefix DIR [--plugins a,b,...] [--release]`
//!
//! Builds the host and the chosen plugins, each with its own `cargo build -p <crate>` (so a
//! plugin is proven to build alone, as a packager would build it), and installs:
//!
//! ```text
//! DIR/bin/kleene
//! DIR/lib/cni/kleene-cni                           (the CNI plugin; finds the plugins below)
//! DIR/lib/kleene/plugins/libkleene_<name>.so       (mode 0755)
//! DIR/share/man/man1/kleene.1                      (kleene manpage)
//! DIR/share/bash-completion/completions/kleene     (kleene completions bash)
//! DIR/share/zsh/site-functions/_kleene             (kleene completions zsh)
//! DIR/share/fish/vendor_completions.d/kleene.fish  (kleene completions fish)
//! DIR/lib/systemd/system/kleened.service           (packaging/systemd, paths filled in)
//! DIR/etc/rc.d/kleened                             (packaging/freebsd, mode 0755)
//! ```
//!
//! The installed `kleene` finds its plugins in `<bin>/../lib/kleene/plugins` without any
//! environment, so staging a subset of plugins yields a host that knows only that subset.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

/// Every plugin of the workspace; each lives in `plugins/<name>` as `kleene-plugin-<name>`.
const PLUGINS: [&str; 8] = ["loopback", "bridge", "custom", "host", "ipnet", "vnet", "disabled", "overlay"];

const USAGE: &str = "usage: cargo xtask stage --prefix DIR [--plugins a,b,...] [--release]";

struct Stage {
    prefix: PathBuf,
    plugins: Vec<String>,
    release: bool,
}

fn main() -> ExitCode {
    match parse(std::env::args().skip(1).collect()).and_then(|s| stage(&s)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}

fn parse(args: Vec<String>) -> Result<Stage, String> {
    let mut args = args.into_iter();
    if args.next().as_deref() != Some("stage") {
        return Err(USAGE.into());
    }
    let (mut prefix, mut plugins, mut release) = (None, PLUGINS.map(String::from).to_vec(), false);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--prefix" => prefix = Some(PathBuf::from(args.next().ok_or(USAGE)?)),
            "--plugins" => {
                plugins = args.next().ok_or(USAGE)?.split(',').filter(|s| !s.is_empty()).map(String::from).collect()
            }
            "--release" => release = true,
            other => return Err(format!("unknown argument '{other}'\n{USAGE}")),
        }
    }
    if let Some(bad) = plugins.iter().find(|p| !PLUGINS.contains(&p.as_str())) {
        return Err(format!("unknown plugin '{bad}' (known: {})", PLUGINS.join(", ")));
    }
    let prefix = prefix.ok_or(USAGE)?;
    // Relative prefixes are taken from where the user ran cargo, not from the workspace.
    let prefix =
        if prefix.is_absolute() { prefix } else { std::env::current_dir().map_err(|e| e.to_string())?.join(prefix) };
    Ok(Stage { prefix, plugins, release })
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask lives in the workspace").to_path_buf()
}

fn cargo_build(package: &str, release: bool) -> Result<(), String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace_root()).args(["build", "-q", "-p", package]);
    if release {
        cmd.arg("--release");
    }
    let status = cmd.status().map_err(|e| format!("cannot run cargo: {e}"))?;
    status.success().then_some(()).ok_or_else(|| format!("cargo build -p {package} failed"))
}

fn target_dir(release: bool) -> PathBuf {
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| workspace_root().join("target"));
    target.join(if release { "release" } else { "debug" })
}

/// Copy `from` to `to` with `mode`, creating parent directories (0755, as the host demands).
fn install(from: &Path, to: &Path, mode: u32) -> Result<(), String> {
    let parent = to.parent().expect("install path has a parent");
    fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
    // Remove first: overwriting a library in place would corrupt a running host's mapping.
    let _ = fs::remove_file(to);
    fs::copy(from, to).map_err(|e| format!("{} -> {}: {e}", from.display(), to.display()))?;
    fs::set_permissions(to, fs::Permissions::from_mode(mode)).map_err(|e| format!("{}: {e}", to.display()))
}

/// Write the output of `kleene <args>` to `to`.
fn generate(kleene: &Path, args: &[&str], to: &Path) -> Result<(), String> {
    let out = Command::new(kleene).args(args).output().map_err(|e| format!("cannot run {}: {e}", kleene.display()))?;
    if !out.status.success() {
        return Err(format!("kleene {} failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()));
    }
    let parent = to.parent().expect("generated path has a parent");
    fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
    fs::write(to, out.stdout).map_err(|e| format!("{}: {e}", to.display()))
}

/// Install a service file from the source tree with `@BINDIR@` set to the staged binary's dir.
fn service_file(source: &str, prefix: &Path, to: &str, mode: u32) -> Result<(), String> {
    let from = workspace_root().join(source);
    let text = fs::read_to_string(&from).map_err(|e| format!("{}: {e}", from.display()))?;
    let bindir = prefix.join("bin");
    let to = prefix.join(to);
    fs::create_dir_all(to.parent().expect("a file in a dir")).map_err(|e| format!("{}: {e}", to.display()))?;
    fs::write(&to, text.replace("@BINDIR@", &bindir.display().to_string()))
        .map_err(|e| format!("{}: {e}", to.display()))?;
    fs::set_permissions(&to, fs::Permissions::from_mode(mode)).map_err(|e| format!("{}: {e}", to.display()))
}

fn stage(s: &Stage) -> Result<(), String> {
    cargo_build("kleene-host", s.release)?;
    cargo_build("kleene-cni", s.release)?;
    for plugin in &s.plugins {
        cargo_build(&format!("kleene-plugin-{plugin}"), s.release)?;
    }
    let (built, prefix) = (target_dir(s.release), &s.prefix);
    let kleene = prefix.join("bin/kleene");
    install(&built.join("kleene"), &kleene, 0o755)?;
    // The CNI bin dir of Debian's layout (`/usr/lib/cni` for prefix /usr); kleene-cni looks
    // for kleene's plugins in `<its dir>/../kleene/plugins`.
    install(&built.join("kleene-cni"), &prefix.join("lib/cni/kleene-cni"), 0o755)?;
    let plugin_dir = prefix.join("lib/kleene/plugins");
    // A re-stage with fewer plugins must not leave the old ones behind.
    let _ = fs::remove_dir_all(&plugin_dir);
    for plugin in &s.plugins {
        let file = format!("libkleene_{plugin}.so");
        install(&built.join(&file), &plugin_dir.join(&file), 0o755)?;
    }
    // The host refuses a plugin dir writable by group or others, whatever the umask was.
    fs::create_dir_all(&plugin_dir).map_err(|e| format!("{}: {e}", plugin_dir.display()))?;
    fs::set_permissions(&plugin_dir, fs::Permissions::from_mode(0o755))
        .map_err(|e| format!("{}: {e}", plugin_dir.display()))?;
    let share = prefix.join("share");
    generate(&kleene, &["manpage"], &share.join("man/man1/kleene.1"))?;
    generate(&kleene, &["completions", "bash"], &share.join("bash-completion/completions/kleene"))?;
    generate(&kleene, &["completions", "zsh"], &share.join("zsh/site-functions/_kleene"))?;
    generate(&kleene, &["completions", "fish"], &share.join("fish/vendor_completions.d/kleene.fish"))?;
    service_file("packaging/systemd/kleened.service", prefix, "lib/systemd/system/kleened.service", 0o644)?;
    service_file("packaging/freebsd/kleened", prefix, "etc/rc.d/kleened", 0o755)?;
    println!("staged kleene with plugins [{}] in {}", s.plugins.join(", "), prefix.display());
    Ok(())
}
