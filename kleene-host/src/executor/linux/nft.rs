//! Linux firewall: the rendered `inet kleene` table, loaded as one transaction (which replaces
//! only that table), and the forwarding sysctls the networks need.
//!
//! Loading goes through libnftables in-process when the library is there (what `nft` itself
//! links), which spares a process start per change, else through `nft -f -`. The last script
//! loaded is kept in the run dir: an unchanged ruleset is not loaded again. The run dir lives
//! in /run, so after a reboot (when the kernel's table is gone too) everything is reloaded.

use crate::firewall::{self, Ruleset};
use anyhow::{bail, Context, Result};
use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// File in the run dir holding the last script loaded into the kernel.
pub const APPLIED: &str = "firewall.nft";

/// `nft` from PATH, or where distributions install it when PATH lacks the sbin directories.
fn nft_binary() -> PathBuf {
    let in_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join("nft"))
        .find(|p| p.is_file());
    in_path
        .or_else(|| ["/usr/sbin/nft", "/sbin/nft"].into_iter().map(PathBuf::from).find(|p| p.is_file()))
        .unwrap_or_else(|| "nft".into())
}

/// Loads `script` with `nft -f -`.
fn load_with_binary(script: &str) -> Result<()> {
    let nft = nft_binary();
    let mut child = Command::new(&nft)
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot run {}: is nftables installed?", nft.display()))?;
    // A write error (nft exited early) shows up as nft's own message below.
    let _ = child.stdin.take().expect("piped").write_all(script.as_bytes());
    let out = child.wait_with_output().context("nft did not finish")?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        bail!("nft -f - failed ({}): {}", out.status, err.trim());
    }
    Ok(())
}

type CtxNew = unsafe extern "C" fn(u32) -> *mut c_void;
type CtxFree = unsafe extern "C" fn(*mut c_void);
type CtxFlag = unsafe extern "C" fn(*mut c_void) -> c_int;
type CtxError = unsafe extern "C" fn(*mut c_void) -> *const c_char;
type RunBuffer = unsafe extern "C" fn(*mut c_void, *const c_char) -> c_int;

/// The few libnftables entry points kleene uses (stable since nftables 0.9).
struct LibNftables {
    ctx_new: CtxNew,
    ctx_free: CtxFree,
    buffer_output: CtxFlag,
    buffer_error: CtxFlag,
    error_buffer: CtxError,
    run_from_buffer: RunBuffer,
}

impl LibNftables {
    /// dlopen libnftables.so.1; None when it is not installed.
    fn open() -> Option<LibNftables> {
        // SAFETY: dlopen/dlsym with NUL-terminated names; the handle is never closed, so the
        // function pointers stay valid for the life of the process.
        unsafe {
            let handle = libc::dlopen(c"libnftables.so.1".as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL);
            if handle.is_null() {
                return None;
            }
            let sym = |name: &CStr| {
                let p = libc::dlsym(handle, name.as_ptr());
                (!p.is_null()).then_some(p)
            };
            Some(LibNftables {
                ctx_new: std::mem::transmute::<*mut c_void, CtxNew>(sym(c"nft_ctx_new")?),
                ctx_free: std::mem::transmute::<*mut c_void, CtxFree>(sym(c"nft_ctx_free")?),
                buffer_output: std::mem::transmute::<*mut c_void, CtxFlag>(sym(c"nft_ctx_buffer_output")?),
                buffer_error: std::mem::transmute::<*mut c_void, CtxFlag>(sym(c"nft_ctx_buffer_error")?),
                error_buffer: std::mem::transmute::<*mut c_void, CtxError>(sym(c"nft_ctx_get_error_buffer")?),
                run_from_buffer: std::mem::transmute::<*mut c_void, RunBuffer>(sym(c"nft_run_cmd_from_buffer")?),
            })
        }
    }

    fn load(&self, script: &str) -> Result<()> {
        let script = CString::new(script).context("firewall script contains a NUL byte")?;
        // SAFETY: the context is created, used on this thread only, and freed here; the error
        // buffer belongs to the context and is copied before the context is freed.
        unsafe {
            let ctx = (self.ctx_new)(0);
            if ctx.is_null() {
                bail!("libnftables could not create a context");
            }
            (self.buffer_output)(ctx);
            (self.buffer_error)(ctx);
            let rc = (self.run_from_buffer)(ctx, script.as_ptr());
            let err = CStr::from_ptr((self.error_buffer)(ctx)).to_string_lossy().trim().to_string();
            (self.ctx_free)(ctx);
            if rc != 0 {
                bail!("nftables refused the kleene table: {err}");
            }
        }
        Ok(())
    }
}

/// Loads `script` in one transaction, in-process when possible.
pub fn load(script: &str) -> Result<()> {
    match LibNftables::open() {
        Some(lib) => lib.load(script),
        None => load_with_binary(script),
    }
}

/// Enables one forwarding sysctl (of this network namespace) if it is off, and says so.
fn enable(path: &Path, name: &str) -> Result<()> {
    let now = std::fs::read_to_string(path).with_context(|| format!("cannot read {name}"))?;
    if now.trim() != "0" {
        return Ok(());
    }
    std::fs::write(path, "1").with_context(|| format!("cannot enable {name}"))?;
    tracing::info!("enabled {name} (a network forwards traffic)");
    Ok(())
}

/// Applies `rules`: forwarding first (never turned off again: other tools may rely on it),
/// then the table, unless it is what `applied` says the kernel already has.
pub fn apply(rules: &Ruleset, applied: &Path) -> Result<()> {
    let (v4, v6) = firewall::forwarding_needed(rules);
    if v4 {
        enable(Path::new("/proc/sys/net/ipv4/ip_forward"), "net.ipv4.ip_forward")?;
    }
    if v6 {
        enable(Path::new("/proc/sys/net/ipv6/conf/all/forwarding"), "net.ipv6.conf.all.forwarding")?;
    }
    // Timed from rendering on: the figure bench/firewall.sh reports as the rule update.
    let t = std::time::Instant::now();
    let script = firewall::nft::render(rules);
    let last = std::fs::read_to_string(applied).ok();
    let update = last.as_deref().and_then(|last| firewall::nft_delta::delta(last, &script));
    if update.as_deref() == Some("") {
        tracing::debug!("firewall unchanged");
        return Ok(());
    }
    // Forget the old script first: if loading fails or we die mid-way, the next change
    // reloads everything rather than trusting a record the kernel may not match.
    let _ = std::fs::remove_file(applied);
    let how = match (update, last.is_some()) {
        (Some(delta), _) => load(&delta).map(|()| "updated the sets of"),
        (None, true) => Err(anyhow::anyhow!("rules or set definitions changed")),
        (None, false) => Err(anyhow::anyhow!("no record of the table in the kernel")),
    }
    .or_else(|e| {
        tracing::debug!("replacing the whole table: {e:#}");
        load(&script).map(|()| "replaced")
    })?;
    tracing::info!(
        networks = rules.networks.len(),
        bytes = script.len(),
        "firewall: {how} table {} in {:?}",
        firewall::nft::TABLE,
        t.elapsed()
    );
    if let Some(dir) = applied.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    if let Err(e) = std::fs::write(applied, &script) {
        tracing::debug!("cannot record the applied firewall: {e}");
    }
    Ok(())
}
