//! Deleting host links off the caller's path.
//!
//! Deleting a network interface makes the kernel wait for an RCU grace period (15-30 ms on a
//! busy host), most of a `container stop`. So the host end of each pair a plan deletes is
//! deleted by someone nobody waits for:
//! - in a server (`kleene serve`), the request only *retires* it: one netlink request sets it
//!   down (no frame passes a down veth end, nor its peer, whose carrier goes with it) and
//!   moves it into [`DYING_GROUP`]. This module's one background thread ([`wake`]) deletes
//!   the group with one RTM_DELLINK after the answer: links retired while a deletion runs go
//!   together in the next one, so a burst of stops pays the grace period once per batch, not
//!   once per container;
//! - in a one-shot command (the CLI), the links are retired the same way and a detached
//!   child process ([`in_detached_process`]) that outlives the command deletes the group: the
//!   operator's `stop` returns without the wait (and without waiting for the previous
//!   command's deletion, which holds the kernel's routing lock), and a `start` right after
//!   may replace the retired end that still holds its name;
//! - in kleene-cni's `DEL`, nothing is retired: a detached child deletes the links by
//!   interface index (a pair made again under the same name meanwhile is not touched). Retiring would cost the caller the wait this avoids (every link request queues
//!   for the kernel's routing lock, which the previous `DEL`'s deletion holds), and buys
//!   nothing there: the runtime deletes the namespace next, which takes the pair with it.
//!
//! The thread touches nothing but the links in that group, and no state: a link enters the
//! group only when kleene is done with it (its state row no longer names it), and never
//! leaves it (a start that finds its name taken by a retired end replaces it, see
//! `create_pair`). So it needs no host lock: whatever a concurrent CLI or request does, the
//! group holds only links that are meant to go. A server killed before its thread ran leaves
//! them down in the group, harmless, until `kleene system reconcile` (run by `kleene serve`
//! at start) deletes the group.

use super::netlink::Netlink;
use std::io;
use std::sync::{Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The interface group of host links kleene has retired and is about to delete (hex
/// 0x4b4c4e44, "KLND", beside [`super::KLEENE_GROUP`]'s "KLNE"). Only kleene moves links
/// into it; deleting it deletes only them.
pub const DYING_GROUP: u32 = 0x4b4c_4e44;

#[derive(Default)]
struct Work {
    /// Links were retired since the thread last began a deletion.
    wanted: bool,
    /// A deletion is running.
    busy: bool,
    /// The thread is running.
    started: bool,
}

struct Reaper {
    work: Mutex<Work>,
    changed: Condvar,
}

fn reaper() -> &'static Reaper {
    static REAPER: OnceLock<Reaper> = OnceLock::new();
    REAPER.get_or_init(|| Reaper { work: Mutex::new(Work::default()), changed: Condvar::new() })
}

/// Have the background thread delete the retired links, starting it on first use. Call it
/// from a thread in the host's network namespace (the thread inherits it).
pub fn wake() {
    let r = reaper();
    let mut work = r.work.lock().unwrap_or_else(|p| p.into_inner());
    work.wanted = true;
    if !work.started {
        match std::thread::Builder::new().name("kleene-reaper".into()).spawn(run) {
            Ok(_) => work.started = true,
            // Retired links stay harmless; reconcile deletes them.
            Err(e) => tracing::warn!("cannot start the thread that deletes retired links: {e}"),
        }
    }
    r.changed.notify_all();
}

/// Wait (up to `limit`) until every link retired so far is deleted: a server that stops
/// leaves nothing behind.
pub fn drain(limit: Duration) {
    let r = reaper();
    let deadline = Instant::now() + limit;
    let mut work = r.work.lock().unwrap_or_else(|p| p.into_inner());
    while work.started && (work.wanted || work.busy) {
        let Some(left) = deadline.checked_duration_since(Instant::now()) else {
            tracing::warn!("retired links are still being deleted; `kleene system reconcile` finishes it");
            return;
        };
        work = r.changed.wait_timeout(work, left).unwrap_or_else(|p| p.into_inner()).0;
    }
}

fn run() {
    let r = reaper();
    let mut nl = None;
    loop {
        {
            let mut work = r.work.lock().unwrap_or_else(|p| p.into_inner());
            work.busy = false;
            r.changed.notify_all();
            while !work.wanted {
                work = r.changed.wait(work).unwrap_or_else(|p| p.into_inner());
            }
            work.wanted = false;
            work.busy = true;
        }
        let t = Instant::now();
        if nl.is_none() {
            nl = Netlink::open().map_err(|e| tracing::warn!("reaper: cannot open a netlink socket: {e}")).ok();
        }
        if let Some(socket) = nl.as_mut() {
            match delete_retired(socket) {
                Ok(true) => tracing::debug!("deleted the retired links in {:?}", t.elapsed()),
                Ok(false) => {}
                Err(e) => tracing::warn!("cannot delete the retired links (group {DYING_GROUP:#x}): {e}"),
            }
        }
    }
}

/// Delete every retired link of this namespace; false when there was none.
pub fn delete_retired(nl: &mut Netlink) -> io::Result<bool> {
    nl.delete_group(DYING_GROUP)
}

/// Run `work` (deleting links) in a detached child, so that the caller (a user or a
/// runtime waiting for this process to exit) waits only for kleene's own work. `Err` when
/// one cannot be started: only a process with a single thread may fork so, and the caller
/// then does the work itself.
pub fn in_detached_process(work: impl FnOnce() -> io::Result<()>) -> io::Result<()> {
    if threads()? != 1 {
        return Err(io::Error::other("more than one thread: forking is unsafe"));
    }
    // SAFETY: single-threaded (checked above), so the child may allocate and run as usual.
    match unsafe { libc::fork() } {
        -1 => Err(io::Error::last_os_error()),
        0 => {
            // A session of its own (no signal for the caller's terminal or process group
            // reaches it), and nobody waits for it: the caller exits right after, so it is
            // re-parented to init (or the caller's subreaper), which reaps it. One fork, not
            // two: the second cost the caller ~1 ms for nothing more.
            unsafe { libc::setsid() };
            detach_stdio_and_fds();
            let done = work();
            unsafe { libc::_exit(i32::from(done.is_err())) };
        }
        _ => Ok(()),
    }
}

/// Delete the links of interface indexes `links` (those already gone count as deleted);
/// every one is tried.
pub fn delete_links(nl: &mut Netlink, links: &[u32]) -> io::Result<()> {
    let mut result = Ok(());
    for &link in links {
        match nl.delete_link_index(link) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => result = Err(e),
            Ok(()) => {}
        }
    }
    result
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

fn threads() -> io::Result<usize> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|n| n.trim().parse().ok())
        .ok_or_else(|| io::Error::other("no thread count in /proc/self/status"))
}
