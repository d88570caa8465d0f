//! Deleting host interfaces in a detached process. The kernel unregisters a veth in 15-30 ms
//! (RCU grace periods, under its routing lock); a one-shot front end whose caller waits on
//! it (a CNI runtime waiting for `DEL`) hands the deletion to a grandchild that outlives it,
//! so the caller waits only for kleene's own work. Only a process with a single thread may
//! fork this way; any other deletes in place.

use super::netlink::Netlink;
use std::io;

/// Delete `links` (host interfaces) in a detached grandchild; `Err` when it cannot be
/// started (the caller then deletes them itself).
pub fn delete_detached(links: &[String]) -> io::Result<()> {
    if threads()? != 1 {
        return Err(io::Error::other("more than one thread: forking is unsafe"));
    }
    // SAFETY: single-threaded (checked above), so the child may allocate and run as usual.
    match unsafe { libc::fork() } {
        -1 => Err(io::Error::last_os_error()),
        0 => {
            // The intermediate child: a session of its own, then the grandchild, then gone,
            // so the grandchild is nobody's to wait for.
            unsafe { libc::setsid() };
            if unsafe { libc::fork() } == 0 {
                detach_stdio_and_fds();
                let code = match delete(links) {
                    Ok(()) => 0,
                    Err(_) => 1,
                };
                unsafe { libc::_exit(code) };
            }
            unsafe { libc::_exit(0) };
        }
        child => {
            let mut status = 0;
            // SAFETY: waiting for our own child.
            unsafe { libc::waitpid(child, &mut status, 0) };
            Ok(())
        }
    }
}

/// Let go of everything inherited: the caller's pipes (the runtime reads stdout to its end),
/// the host lock and the database.
fn detach_stdio_and_fds() {
    const SYS_CLOSE_RANGE: libc::c_long = 436;
    // SAFETY: plain fd operations on our own table.
    unsafe {
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
        for fd in 0..3 {
            libc::dup2(null, fd);
        }
        if libc::syscall(SYS_CLOSE_RANGE, 3u32, u32::MAX, 0u32) != 0 {
            for fd in 3..1024 {
                libc::close(fd);
            }
        }
    }
}

fn delete(links: &[String]) -> io::Result<()> {
    let mut nl = Netlink::open()?;
    let mut result = Ok(());
    for link in links {
        match nl.delete_link(link) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => result = Err(e),
            Ok(()) => {}
        }
    }
    result
}

fn threads() -> io::Result<usize> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|n| n.trim().parse().ok())
        .ok_or_else(|| io::Error::other("no thread count in /proc/self/status"))
}
