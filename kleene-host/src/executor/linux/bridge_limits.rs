//! What a Linux bridge can hold, and the host-wide kernel limits a large one outgrows.
//!
//! A bridge has at most 1023 ports (`BR_MAX_PORTS`); the kernel refuses the next with
//! `EXFULL`. Long before that, two host-wide defaults break a full bridge (measured with 1023
//! vnet containers on one bridge; at 253 all was well):
//! - a broadcast (an ARP request) is copied to every port, and each copy waits in the
//!   receiving CPU's backlog, which holds `net.core.netdev_max_backlog` (1000) packets: the
//!   copies beyond it are dropped, and so is the gateway's ARP reply queued behind them, so
//!   no container resolved its gateway;
//! - the neighbour (ARP/NDP) tables are one per kernel, shared by every namespace: each
//!   container holds an entry for its gateway and the host one per container, past the
//!   default `gc_thresh3` of 1024 ("neighbor table overflow" in the kernel log), and the
//!   ARP replies that needed a new entry were not sent.
//!
//! Both exist only in the host's initial network namespace. The executor raises them there
//! once a bridge grows past [`LARGE_BRIDGE`] ports (never lowers them); elsewhere it says
//! which to raise.

use std::path::Path;

/// The most ports a Linux bridge takes (`BR_MAX_PORTS` in net/bridge/br_private.h).
pub const MAX_PORTS: u32 = 1023;

/// From this port number on, the defaults below are too small for the bridge's traffic.
pub const LARGE_BRIDGE: u16 = 200;

/// (sysctl, the least value a full bridge needs): the backlog above twice the ports of one
/// bridge; the neighbour tables above two entries per container and family, with room for
/// several large bridges.
const NEEDED: [(&str, u64); 5] = [
    ("net/core/netdev_max_backlog", 2048),
    ("net/ipv4/neigh/default/gc_thresh2", 4096),
    ("net/ipv4/neigh/default/gc_thresh3", 8192),
    ("net/ipv6/neigh/default/gc_thresh2", 4096),
    ("net/ipv6/neigh/default/gc_thresh3", 8192),
];

/// The one-line refusal of a port beyond [`MAX_PORTS`].
pub fn full_bridge(bridge: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "bridge {bridge} is full: a Linux bridge holds at most {MAX_PORTS} ports (kernel limit BR_MAX_PORTS); put the container on another network"
    )
}

/// Make sure the host-wide limits fit a bridge that just got port number `port`.
pub fn fit_large_bridge(bridge: &str, port: u16) {
    if port < LARGE_BRIDGE {
        return;
    }
    let mut unreachable = Vec::new();
    for (name, needed) in NEEDED {
        let path = Path::new("/proc/sys").join(name);
        let current = std::fs::read_to_string(&path).ok().and_then(|v| v.trim().parse::<u64>().ok());
        match current {
            Some(value) if value >= needed => {}
            Some(value) => match std::fs::write(&path, needed.to_string()) {
                Ok(()) => tracing::info!("bridge {bridge} has {port}+ ports: raised {name} from {value} to {needed}"),
                Err(_) => unreachable.push(format!("{}={needed}", name.replace('/', "."))),
            },
            None => unreachable.push(format!("{}={needed}", name.replace('/', "."))),
        }
    }
    if !unreachable.is_empty() {
        tracing::warn!(
            "bridge {bridge} has {port}+ ports: some containers will miss broadcasts and ARP unless the host's initial network namespace has {} (not settable from here)",
            unreachable.join(" ")
        );
    }
}
