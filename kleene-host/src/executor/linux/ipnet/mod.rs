//! The "ipnet" driver: confine a cgroup's processes to a set of IP
//! addresses, like a FreeBSD jail's `ip4.addr`/`ip6.addr`.
//!
//! Small eBPF programs are assembled at run time and attached to the
//! container's cgroup with cgroup-v2 hooks through the raw bpf(2) syscall, so
//! no clang, libbpf or BTF is needed (docs/architecture.md says why). Three
//! parts: [`programs`] (what each hook does), [`asm`] (instruction encoding and
//! listings) and [`sys`] (bpf(2)); this module ties them to a cgroup.
//!
//! * bind: only the container's addresses; the wildcard becomes the primary
//!   address (the first of each family), anything else fails with
//!   EADDRNOTAVAIL.
//! * connect / unconnected UDP send: the source becomes the container's
//!   address (in the destination's network, else the primary); 127.0.0.0/8
//!   and ::1 mean the container's own primary address, as in a jail without
//!   a loopback address, so the host's loopback services are never reached.
//! * connect on a socket that an unconnected send auto-bound to the wildcard
//!   fails with EADDRNOTAVAIL: the kernel would give it a host source
//!   address, and no hook can rebind a socket that has a port.
//! * a family without addresses is unreachable (ENETUNREACH).
//! * raw and ping sockets are refused with EPERM (jail's `allow.raw_sockets=0`).
//! * packets: a socket of the container receives only packets addressed to
//!   one of its addresses. This covers what no socket hook sees: implicit
//!   binds (listen() on an unbound socket, UDP auto-bind by sendto()) take
//!   the wildcard without a bind hook.

use std::fs::File;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::fd::OwnedFd;
use std::path::Path;

mod asm;
mod programs;
mod sys;

pub use asm::{listing, Insn};
pub use programs::{programs, AttachPoint, Program};

/// The addresses a container may use; the first of each family is its
/// primary (default source) address.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Restriction {
    pub v4: Vec<Ipv4Addr>,
    pub v6: Vec<Ipv6Addr>,
    /// (address, prefix) of each network the container is on: a connection to such a
    /// network leaves from the container's address there, as a jail's would, rather than
    /// from the primary (which another network's firewall would treat as a stranger).
    pub local4: Vec<(Ipv4Addr, u8)>,
    pub local6: Vec<(Ipv6Addr, u8)>,
}

/// Load the programs for `r` and attach them to `cgroup`. Programs left by
/// an earlier `apply` are swapped atomically (BPF_F_REPLACE) instead of
/// stacked, so a running container's restriction changes in place. The
/// cgroup keeps the programs alive; no file descriptor outlives this call.
pub fn apply(cgroup: &Path, r: &Restriction) -> io::Result<()> {
    let dir = File::open(cgroup)?;
    // Load everything first so a verifier rejection changes nothing.
    let loaded = programs(r).iter().map(|p| Ok((p.attach.hook(), load(p)?))).collect::<io::Result<Vec<_>>>()?;
    for (hook, prog) in &loaded {
        let old = sys::find_attached(&dir, *hook)?;
        sys::attach(&dir, hook.attach_type, prog, old.as_ref())?;
    }
    Ok(())
}

/// Number of programs attached directly to `cgroup` at the driver's hooks
/// (the driver's own and any others).
pub fn attached_count(cgroup: &Path) -> io::Result<usize> {
    let dir = File::open(cgroup)?;
    AttachPoint::ALL.iter().map(|&a| Ok(sys::query(&dir, a.hook().attach_type)?.len())).sum()
}

/// Load `p` through the kernel's verifier.
fn load(p: &Program) -> io::Result<OwnedFd> {
    sys::load(p.attach.hook(), &p.insns)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The kernel's verifier accepts every program for restrictions that reach every
    /// branch (needs root or CAP_BPF, as the end-to-end tests do).
    #[test]
    fn every_program_passes_the_verifier() {
        for r in programs::tests::shapes() {
            for p in programs(&r) {
                if let Err(e) = load(&p) {
                    panic!("{:?} for {r:?}: {e}", p.attach);
                }
            }
        }
    }
}
