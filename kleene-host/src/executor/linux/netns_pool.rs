//! Network namespaces made ahead of need, for a long-lived process (`kleene serve`).
//!
//! Making a namespace is the largest part of a vnet start (1-2 ms: the kernel sets up a
//! whole network stack). A server that has started one container starts a thread that keeps
//! [`DEPTH`] namespaces ready, each with a netlink socket opened inside it, so a start only
//! pins one (a bind mount) instead of making it. A namespace here belongs to no container
//! until it is pinned; held only by the pool's fd and socket, it is freed with them (a server
//! that stops or dies leaves nothing). The thread makes each one by moving itself into a new
//! namespace and straight back into the host's, so it never holds one it handed out.

use super::netlink::Netlink;
use super::netns;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::sync::{Condvar, Mutex, OnceLock};

/// How many namespaces wait ready: enough for a burst of starts to find one while the thread
/// makes the next, few enough to cost nothing worth counting (each is an empty stack).
pub const DEPTH: usize = 4;

/// A namespace nobody uses yet, and a netlink socket bound to it.
pub struct Ready {
    pub ns: OwnedFd,
    pub netlink: Netlink,
}

#[derive(Default)]
struct Stock {
    ready: Vec<Ready>,
    /// The thread runs (or could not be started, or failed: then nothing is made ahead).
    started: bool,
}

#[derive(Default)]
struct Pool {
    stock: Mutex<Stock>,
    taken: Condvar,
}

fn pool() -> &'static Pool {
    static POOL: OnceLock<Pool> = OnceLock::new();
    POOL.get_or_init(Pool::default)
}

/// A ready namespace, if one is; the first call starts the thread that makes them (from a
/// thread in the host's network namespace, which the thread inherits).
pub fn take() -> Option<Ready> {
    let p = pool();
    let mut stock = p.stock.lock().unwrap_or_else(|e| e.into_inner());
    if !stock.started {
        stock.started = true;
        if let Err(e) = std::thread::Builder::new().name("kleene-netns".into()).spawn(fill) {
            tracing::warn!("no namespaces made ahead: {e}");
        }
    }
    let ready = stock.ready.pop();
    p.taken.notify_all();
    ready
}

fn fill() {
    let host = match netns::open(Path::new("/proc/thread-self/ns/net")) {
        Ok(host) => host,
        Err(e) => return tracing::warn!("no namespaces made ahead: {e}"),
    };
    let p = pool();
    loop {
        {
            let mut stock = p.stock.lock().unwrap_or_else(|e| e.into_inner());
            while stock.ready.len() >= DEPTH {
                stock = p.taken.wait(stock).unwrap_or_else(|e| e.into_inner());
            }
        }
        match make(&host) {
            Ok(ready) => p.stock.lock().unwrap_or_else(|e| e.into_inner()).ready.push(ready),
            // Starts make their own, as without a server.
            Err(e) => return tracing::warn!("no more namespaces made ahead: {e}"),
        }
    }
}

/// One new namespace and its socket; this thread is back in the host's namespace after,
/// or ends (an error here means it may not be).
fn make(host: &OwnedFd) -> io::Result<Ready> {
    let made = netns::unshare_unpinned().and_then(|ns| Ok(Ready { ns, netlink: Netlink::open()? }));
    netns::enter(host.as_fd())?;
    made
}
