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
    create_and_run(path, || Ok(()))
}

/// [`create`], then `f` inside the new namespace on the same helper thread (a netlink socket
/// opened there stays bound to it): one thread start and no `setns` fewer than `create`
/// followed by [`run_in`], which a loaded host pays for in scheduling delays.
pub fn create_and_run<T: Send>(path: &Path, f: impl FnOnce() -> io::Result<T> + Send) -> io::Result<T> {
    let mut made = None;
    pin_with(path, || {
        on_thread(|| {
            pin_new_netns(path)?;
            made = Some(f());
            Ok(())
        })
    })?;
    made.expect("set once the namespace is pinned")
}

/// Pins the network namespace at `source`, which someone else made (a container runtime's
/// `/proc/PID/ns/net` or `/run/netns/NAME`), at `path`, as `create` pins a new one. Refuses
/// a source that is not a network namespace, and this process's own namespace (the host's:
/// pairs made "inside" it would land among the host's interfaces).
pub fn adopt(source: &Path, path: &Path) -> io::Result<()> {
    let ns = open(source)?;
    let refuse = |why: &str| io::Error::new(io::ErrorKind::InvalidInput, format!("{} {why}", source.display()));
    if !is_net_namespace(ns.as_fd()) {
        return Err(refuse("is not a network namespace"));
    }
    if same_file(ns.as_fd(), open(Path::new("/proc/thread-self/ns/net"))?.as_fd())? {
        return Err(refuse("is this host's own network namespace"));
    }
    pin_fd(ns.as_fd(), path)
}

/// Pins the namespace open at `ns` at `path` (the namespace that fd names, not whatever a
/// path names by now).
pub fn pin_fd(ns: BorrowedFd<'_>, path: &Path) -> io::Result<()> {
    pin_with(path, || bind_fd(ns, path))
}

fn bind_fd(ns: BorrowedFd<'_>, target: &Path) -> io::Result<()> {
    bind(Path::new(&format!("/proc/self/fd/{}", ns.as_raw_fd())), target)
}

/// Moves the calling thread into a new network namespace, pinned by nothing but the fd
/// returned (and the thread, until it leaves). `/proc/thread-self`, not `self`: only this
/// thread switched namespace.
pub fn unshare_unpinned() -> io::Result<OwnedFd> {
    cvt(unsafe { libc::unshare(libc::CLONE_NEWNET) })?;
    open(Path::new("/proc/thread-self/ns/net"))
}

/// Whether the namespace pinned at `path` is the one at `other`.
pub fn same(path: &Path, other: &Path) -> io::Result<bool> {
    same_file(open_pinned(path)?.as_fd(), open(other)?.as_fd())
}

/// Makes the pin file at `path` and mounts a namespace on it with `mount`; a failed mount
/// leaves no file.
fn pin_with(path: &Path, mount: impl FnOnce() -> io::Result<()>) -> io::Result<()> {
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
    let result = mount();
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

/// Whether `fd` is a network namespace (not another kind of namespace).
fn is_net_namespace(fd: BorrowedFd<'_>) -> bool {
    const NS_GET_NSTYPE: libc::c_ulong = 0xb703;
    // SAFETY: the ioctl takes no argument and only reads the fd.
    is_namespace(fd) && unsafe { libc::ioctl(fd.as_raw_fd(), NS_GET_NSTYPE as _) } == libc::CLONE_NEWNET
}

/// Whether two fds are the same file (for namespaces: the same namespace).
fn same_file(a: BorrowedFd<'_>, b: BorrowedFd<'_>) -> io::Result<bool> {
    let stat = |fd: BorrowedFd<'_>| -> io::Result<(u64, u64)> {
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: a valid fd and a properly sized out-parameter.
        cvt(unsafe { libc::fstat(fd.as_raw_fd(), &mut st) })?;
        Ok((st.st_dev, st.st_ino))
    };
    Ok(stat(a)? == stat(b)?)
}

fn pin_new_netns(target: &Path) -> io::Result<()> {
    bind_fd(unshare_unpinned()?.as_fd(), target)
}

fn bind(source: &Path, target: &Path) -> io::Result<()> {
    let (source, target) = (c_path(source)?, c_path(target)?);
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
