//! `container exec`: run a command confined like the container's own processes, with stdio
//! inherited:
//! - in the container's cgroup (where ipnet's socket hooks are attached);
//! - in a cgroup namespace rooted there, inside a mount namespace of its own where every
//!   cgroup2 mount is replaced by one showing only that subtree, so even a uid-0 process
//!   without capabilities cannot write its PID into a cgroup above the container's;
//! - in the container's network namespace when its stack is private or disabled. That
//!   namespace is required: a missing pin is an error, never the caller's namespace;
//! - with the container's resolv.conf (container DNS) mounted on /etc/resolv.conf inside
//!   that private mount namespace, as `ip netns exec` does with /etc/netns/NAME/.

use super::{cgroup, netns, LinuxExecutor};
use anyhow::{Context, Result};
use std::ffi::CString;
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::Command;

/// Whether the command joins a network namespace of the container's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetworkScope {
    /// The host stack (host and ipnet drivers).
    Host,
    /// The container's own namespace (vnet, disabled).
    Own,
}

pub fn run(
    run_dir: &Path,
    sandbox: &str,
    scope: NetworkScope,
    resolv_conf: Option<&Path>,
    argv: &[String],
) -> Result<i32> {
    let mut exec = LinuxExecutor::new(run_dir);
    let cg = exec.cgroup_path(sandbox)?;
    // Open and prepare everything before fork: the child may only make async-signal-safe calls.
    let mut procs = File::options()
        .write(true)
        .open(cg.join("cgroup.procs"))
        .with_context(|| format!("container {sandbox} has no cgroup: run `kleene system reconcile`"))?;
    let ns = match scope {
        NetworkScope::Host => None,
        NetworkScope::Own => Some(open_pinned_netns(run_dir, sandbox)?),
    };
    let cgroup_mounts = cgroup::cgroup2_mounts()
        .context("cannot list cgroup2 mounts")?
        .iter()
        .map(|p| CString::new(p.as_os_str().as_bytes()))
        .collect::<Result<Vec<_>, _>>()?;
    // A bind mount needs something to cover: without /etc/resolv.conf (or with a dangling
    // link there) the command runs without the container's, rather than not at all.
    let resolv_conf = match resolv_conf {
        Some(_) if !Path::new("/etc/resolv.conf").exists() => {
            tracing::warn!("/etc/resolv.conf is missing here: container DNS is not mounted for this command");
            None
        }
        other => other,
    };
    let resolv_conf = resolv_conf.map(|p| CString::new(p.as_os_str().as_bytes())).transpose()?;
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..]);
    // SAFETY: the closure only writes to an open fd and makes raw syscalls (setns, unshare,
    // mount) on data prepared before fork.
    unsafe {
        cmd.pre_exec(move || {
            procs.write_all(b"0")?;
            if let Some(ns) = &ns {
                netns::enter(ns.as_fd())?;
            }
            confine_cgroup_view(&cgroup_mounts)?;
            match &resolv_conf {
                Some(file) => bind_resolv_conf(file),
                None => Ok(()),
            }
        });
    }
    let status = cmd.status().with_context(|| format!("cannot run {}", argv[0]))?;
    Ok(status.code().unwrap_or_else(|| 128 + status.signal().unwrap_or(0)))
}

/// The container's namespace pin, which must be a namespace (not a leftover plain file).
fn open_pinned_netns(run_dir: &Path, sandbox: &str) -> Result<std::os::fd::OwnedFd> {
    let path = LinuxExecutor::netns_path(run_dir, sandbox);
    let missing = || {
        format!(
            "container {sandbox} has no network namespace at {}: it was started with another --run-dir, \
             or the pin was lost (run `kleene system reconcile`)",
            path.display()
        )
    };
    netns::open_pinned(&path).with_context(missing)
}

/// In the child, after joining the cgroup: a cgroup namespace rooted at the container's
/// cgroup, and a private mount namespace where each cgroup2 mount point shows only that
/// root. Mount events must not propagate back to the host, hence the recursive slave.
fn confine_cgroup_view(mounts: &[CString]) -> io::Result<()> {
    cvt(unsafe { libc::unshare(libc::CLONE_NEWCGROUP | libc::CLONE_NEWNS) })?;
    let none = std::ptr::null();
    cvt(unsafe { libc::mount(none, c"/".as_ptr(), none, libc::MS_REC | libc::MS_SLAVE, none.cast()) })?;
    for at in mounts {
        // The kernel refuses cgroup2 straight on top of itself (same superblock at the same
        // place: EBUSY), so a small tmpfs goes between.
        let tmpfs = c"tmpfs".as_ptr();
        cvt(unsafe { libc::mount(tmpfs, at.as_ptr(), tmpfs, libc::MS_NOSUID | libc::MS_NODEV, none.cast()) })?;
        let cgroup2 = c"cgroup2".as_ptr();
        cvt(unsafe { libc::mount(cgroup2, at.as_ptr(), cgroup2, libc::MS_NOSUID | libc::MS_NODEV, none.cast()) })?;
    }
    Ok(())
}

/// In the child, inside its private mount namespace: the container's resolv.conf over
/// /etc/resolv.conf (following a symbolic link there to the file it names, as mount does).
fn bind_resolv_conf(file: &CString) -> io::Result<()> {
    let none = std::ptr::null();
    cvt(unsafe { libc::mount(file.as_ptr(), c"/etc/resolv.conf".as_ptr(), none, libc::MS_BIND, none.cast()) })
}

fn cvt(rc: libc::c_int) -> io::Result<()> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}
