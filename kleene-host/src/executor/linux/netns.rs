//! Persistent network namespaces kept alive by bind-mounting their nsfs file
//! onto a plain file, like `ip netns add`. Namespace switches happen only on
//! short-lived helper threads, since setns/unshare(CLONE_NEWNET) are per-thread.

use std::ffi::CString;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::thread;

/// Creates a new netns pinned at `path`. Fails with `AlreadyExists` if the
/// file exists, so a live namespace is never shadowed.
pub fn create(path: &Path) -> io::Result<()> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)?;
    }
    // A plain file where a pin should be is what a crash between unmounting and removing a
    // pin leaves (or a lost mount): it holds no namespace, so it goes.
    if open(path).is_ok_and(|fd| !is_namespace(fd.as_fd())) {
        tracing::info!("removing stale namespace pin {}", path.display());
        fs::remove_file(path)?;
    }
    OpenOptions::new().write(true).create_new(true).mode(0o444).open(path)?;
    let result = on_thread(|| pin_new_netns(path));
    if result.is_err() {
        let _ = fs::remove_file(path);
    }
    result
}

/// Unpins and removes the netns file; `Ok` if it is already gone. The netns
/// itself dies once no process, socket or open fd refers to it any more.
pub fn delete(path: &Path) -> io::Result<()> {
    let c_path = c_path(path)?;
    if unsafe { libc::umount2(c_path.as_ptr(), libc::MNT_DETACH) } != 0 {
        let err = io::Error::last_os_error();
        // EINVAL: not a mount point (e.g. half-created); ENOENT: gone already.
        if !matches!(err.raw_os_error(), Some(libc::EINVAL | libc::ENOENT)) {
            return Err(err);
        }
    }
    match fs::remove_file(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

pub fn open(path: &Path) -> io::Result<OwnedFd> {
    Ok(File::open(path)?.into())
}

/// The namespace pinned at `path`; a missing pin or a plain file left where a pin was is
/// `NotFound`.
pub fn open_pinned(path: &Path) -> io::Result<OwnedFd> {
    let fd = open(path)?;
    if !is_namespace(fd.as_fd()) {
        return Err(io::Error::new(io::ErrorKind::NotFound, format!("{} is not a namespace pin", path.display())));
    }
    Ok(fd)
}

/// Whether `fd` is a namespace (nsfs), not the plain file a half-made or lost pin leaves.
pub fn is_namespace(fd: BorrowedFd<'_>) -> bool {
    const NSFS_MAGIC: libc::c_long = 0x6e73_6673;
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: a valid fd and a properly sized out-parameter.
    unsafe { libc::fstatfs(fd.as_raw_fd(), &mut st) == 0 && st.f_type as libc::c_long == NSFS_MAGIC }
}

/// Moves the calling thread into the netns (e.g. in a `pre_exec` hook).
pub fn enter(fd: BorrowedFd<'_>) -> io::Result<()> {
    cvt(unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) })
}

/// Runs `f` inside the netns at `path` on a scoped helper thread, leaving the
/// caller's namespace untouched.
pub fn run_in<T: Send>(path: &Path, f: impl FnOnce() -> io::Result<T> + Send) -> io::Result<T> {
    let ns = open(path)?;
    on_thread(|| {
        enter(ns.as_fd())?;
        f()
    })
}

fn pin_new_netns(target: &Path) -> io::Result<()> {
    cvt(unsafe { libc::unshare(libc::CLONE_NEWNET) })?;
    // thread-self, not self: only this thread switched namespace.
    let source = c"/proc/thread-self/ns/net";
    let target = c_path(target)?;
    cvt(unsafe { libc::mount(source.as_ptr(), target.as_ptr(), std::ptr::null(), libc::MS_BIND, std::ptr::null()) })
}

/// Runs `f` on a fresh scoped thread, propagating its panic if any.
fn on_thread<T: Send>(f: impl FnOnce() -> io::Result<T> + Send) -> io::Result<T> {
    thread::scope(|s| s.spawn(f).join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
}

fn c_path(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains NUL"))
}

fn cvt(rc: libc::c_int) -> io::Result<()> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}
