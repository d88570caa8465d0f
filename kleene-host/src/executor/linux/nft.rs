//! Linux firewall: the rendered `inet kleene` table, loaded as one transaction (which replaces
//! only that table), and the forwarding sysctls the networks need.
//!
//! Loading goes through libnftables in-process when the library is there (what `nft` itself
//! links), which spares a process start per change, else through `nft -f -`. The model of the
//! table last loaded is kept in the run dir: an unchanged ruleset is not loaded again, and one
//! that changed only in set elements is updated element by element. The run dir lives in /run,
//! so after a reboot (when the kernel's table is gone too) everything is reloaded.

use crate::firewall::nft::delta::{self, Update};
use crate::firewall::nft::table::Table;
use crate::firewall::{self, Ruleset};
use anyhow::{bail, Context, Result};
use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// File in the run dir holding the model of the table last loaded into the kernel.
pub const APPLIED: &str = "firewall.json";

/// File in the run dir holding the generation of firewall inputs (`firewall::inputs`) the
/// loaded table was derived at, and the kleene version that rendered it (another version may
/// render the same state differently).
pub const GENERATION: &str = "firewall.generation";

fn generation_text(generation: i64) -> String {
    format!("{generation} {}", env!("CARGO_PKG_VERSION"))
}

/// The generation recorded with the loaded table, if one was recorded by this version.
pub fn recorded_generation(run_dir: &Path) -> Option<i64> {
    let text = read_applied(&run_dir.join(GENERATION))?;
    let text = std::str::from_utf8(&text).ok()?;
    let generation: i64 = text.split(' ').next()?.parse().ok()?;
    (text == generation_text(generation)).then_some(generation)
}

/// Records that the loaded table is that of `generation` (a failure only costs the next
/// change a derivation).
pub fn record_generation(run_dir: &Path, generation: i64) {
    use std::os::unix::fs::OpenOptionsExt;
    let path = run_dir.join(GENERATION);
    let partial = run_dir.join(format!("{GENERATION}.new"));
    let _ = std::fs::remove_file(&partial);
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&partial)
        .and_then(|mut f| f.write_all(generation_text(generation).as_bytes()))
        .and_then(|()| std::fs::rename(&partial, &path));
    if let Err(e) = written {
        tracing::debug!("cannot record the firewall's generation: {e}");
    }
}

/// Drops the record: the table may be about to change, or to be found changed.
pub fn forget_generation(run_dir: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(run_dir.join(GENERATION)) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// Larger than any table kleene writes (~1 MB at 1000 networks and ports); a bigger file is
/// not one of kleene's and is not read.
const APPLIED_MAX: u64 = 64 << 20;

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

/// The stored model of the table last loaded, if it is a plain file of root's (or ours) of a
/// sane size; None (with the reason logged) otherwise: the caller then replaces the table.
fn read_applied(path: &Path) -> Option<Vec<u8>> {
    open_applied(path).map_err(|why| tracing::debug!("not using {}: {why}", path.display())).ok()
}

fn open_applied(path: &Path) -> Result<Vec<u8>, String> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    // No following a link, no blocking on a FIFO planted under the name.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| e.to_string())?;
    let meta = file.metadata().map_err(|e| e.to_string())?;
    if !meta.is_file() || meta.len() > APPLIED_MAX {
        return Err("not a plain file of a table's size".into());
    }
    crate::trust::check_owner_and_mode(path, &meta)?;
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(APPLIED_MAX).read_to_end(&mut bytes).map_err(|e| e.to_string())?;
    Ok(bytes)
}

/// Records `table` as loaded, readable and writable by its owner only.
fn write_applied(path: &Path, table: &Table) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    file.write_all(&table.to_stored())
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
    // Timed from building the table on: the figure bench/firewall.sh reports as the rule update.
    let t = std::time::Instant::now();
    let table = firewall::nft::table(rules);
    let elements = match delta::update(read_applied(applied).as_deref(), &table) {
        Update::Unchanged => {
            tracing::debug!("firewall unchanged");
            return Ok(());
        }
        Update::Elements(script) => Some(script),
        Update::Replace(why) => {
            tracing::debug!("replacing the whole table: {why}");
            None
        }
    };
    // Forget the old table first: if loading fails or we die mid-way, the next change
    // reloads everything rather than trusting a record the kernel may not match.
    let _ = std::fs::remove_file(applied);
    let updated = elements.and_then(|script| match load(&script) {
        Ok(()) => Some(("updated the sets of", script.len())),
        Err(e) => {
            tracing::debug!("replacing the whole table: the element update failed: {e:#}");
            None
        }
    });
    let (how, bytes) = match updated {
        Some(done) => done,
        None => {
            let script = table.render();
            load(&script)?;
            ("replaced", script.len())
        }
    };
    tracing::info!(
        networks = rules.networks.len(),
        bytes,
        "firewall: {how} table {} in {:?}",
        firewall::nft::TABLE,
        t.elapsed()
    );
    if let Err(e) = write_applied(applied, &table) {
        tracing::debug!("cannot record the applied firewall: {e}");
    }
    Ok(())
}
