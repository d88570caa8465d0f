//! Minimal blocking rtnetlink client: links, addresses and default routes.
//!
//! Messages are built by hand on an `AF_NETLINK`/`NETLINK_ROUTE` socket. Every
//! interface is addressed by name through the socket itself (never through
//! `if_nametoindex`), so a socket opened inside another netns with
//! [`Netlink::open_in`] resolves names in that netns.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;

use super::netns;

// linux/netlink.h
const NLMSG_HDRLEN: usize = 16;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 0x01;
const NLM_F_ACK: u16 = 0x04;
const NLM_F_EXCL: u16 = 0x200;
const NLM_F_CREATE: u16 = 0x400;
const NLM_F_DUMP: u16 = 0x300;
const NLA_F_NESTED: u16 = 0x8000;
const NLA_TYPE_MASK: u16 = 0x3fff;

// linux/rtnetlink.h
const RTM_NEWLINK: u16 = 16;
const RTM_DELLINK: u16 = 17;
const RTM_GETLINK: u16 = 18;
const RTM_NEWADDR: u16 = 20;
const RTM_DELADDR: u16 = 21;
const RTM_GETADDR: u16 = 22;
const RTM_NEWROUTE: u16 = 24;
const RTM_DELROUTE: u16 = 25;
const RTM_GETROUTE: u16 = 26;
const RTA_OIF: u16 = 4;
const RTA_GATEWAY: u16 = 5;
const RTA_TABLE: u16 = 15;
const RT_TABLE_MAIN: u8 = 254;
const RTPROT_BOOT: u8 = 3;
const RT_SCOPE_UNIVERSE: u8 = 0;
const RT_SCOPE_NOWHERE: u8 = 255;
const RTN_UNICAST: u8 = 1;

// linux/if_link.h, linux/veth.h, linux/if_addr.h
const IFLA_ADDRESS: u16 = 1;
const IFLA_IFNAME: u16 = 3;
const IFLA_MASTER: u16 = 10;
const IFLA_IFALIAS: u16 = 20;
const IFLA_LINKINFO: u16 = 18;
const IFLA_NET_NS_FD: u16 = 28;
const IFLA_GROUP: u16 = 27;
const IFLA_INFO_KIND: u16 = 1;
const IFLA_INFO_DATA: u16 = 2;
const IFLA_INFO_SLAVE_DATA: u16 = 5;
const IFLA_BRPORT_NO: u16 = 18;
const VETH_INFO_PEER: u16 = 1;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const IFA_BROADCAST: u16 = 4;
const IFA_F_NODAD: u8 = 0x02;
const IFF_UP: u32 = 1;

const IFNAMSIZ: usize = 16;
// The kernel caps a single dump datagram at 32 KiB; twice that never truncates.
const RECV_BUF: usize = 64 * 1024;

/// A blocking rtnetlink socket bound to the netns it was created in.
pub struct Netlink {
    fd: OwnedFd,
    seq: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkInfo {
    pub index: u32,
    pub name: String,
    /// `IFLA_INFO_KIND`, e.g. "bridge", "veth"; `None` for physical/loopback.
    pub kind: Option<String>,
    pub up: bool,
    pub master: Option<u32>,
    /// `IFLA_IFALIAS`, the free-text description (`ip link set X alias TEXT`).
    pub alias: Option<String>,
    /// The interface group (`ip link set ... group N`; 0 by default).
    pub group: u32,
    /// Its port number on the bridge it is a port of (1-1023, the lowest free one).
    pub bridge_port: Option<u16>,
}

impl Netlink {
    /// Opens a socket in the calling thread's current netns.
    pub fn open() -> io::Result<Netlink> {
        let raw = unsafe { libc::socket(libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_CLOEXEC, libc::NETLINK_ROUTE) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&addr as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Netlink { fd, seq: 0 })
    }

    /// Opens a socket inside the netns at `netns`. The socket stays bound to
    /// that netns, so only a short-lived helper thread ever switches namespace.
    pub fn open_in(netns: &Path) -> io::Result<Netlink> {
        netns::run_in(netns, Netlink::open)
    }

    pub fn create_link(&mut self, name: &str, kind: &str) -> io::Result<()> {
        self.ack(requests::new_link(name, kind)?)
    }

    /// Creates a veth pair whose peer is born directly inside `peer_netns`,
    /// so it never shows up (or clashes by name) in the current netns.
    pub fn create_veth(&mut self, name: &str, peer: &str, peer_netns: BorrowedFd<'_>) -> io::Result<()> {
        self.ack(requests::new_veth(name, peer, peer_netns.as_raw_fd())?)
    }

    pub fn delete_link(&mut self, name: &str) -> io::Result<()> {
        self.ack(requests::del_link(name)?).map_err(|e| nodev_to_not_found(e, name))
    }

    /// Deletes every link of `names` that exists, in one kernel operation: the links are
    /// moved into an interface group no other link is in, and the group is deleted. The
    /// kernel then unregisters them together, paying its synchronisation (an RCU grace
    /// period, ~15 ms here) once instead of once per link. Links already gone are skipped.
    pub fn delete_links(&mut self, names: &[String]) -> io::Result<()> {
        if let [one] = names {
            return match self.delete_link(one) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                other => other,
            };
        }
        let group = self.unused_group()?;
        let mut any = false;
        for name in names {
            match self.set_group(name, group) {
                Ok(()) => any = true,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        if !any {
            return Ok(());
        }
        self.ack(requests::del_group(group))
    }

    fn set_group(&mut self, name: &str, group: u32) -> io::Result<()> {
        self.change_link(name, IFLA_GROUP, &group.to_ne_bytes())
    }

    /// An interface group no link of this namespace is in (so deleting it deletes only the
    /// links put there), away from the small numbers people use.
    fn unused_group(&mut self) -> io::Result<u32> {
        let used: std::collections::HashSet<u32> = self.links()?.into_iter().map(|l| l.group).collect();
        let base = 0x6b6c_0000 | (std::process::id() & 0xffff);
        Ok((base..).find(|g| !used.contains(g)).expect("fewer links than groups"))
    }

    pub fn set_up(&mut self, name: &str, up: bool) -> io::Result<()> {
        self.ack(requests::set_up(name, up)?).map_err(|e| nodev_to_not_found(e, name))
    }

    /// Sets the hardware address of `name`.
    pub fn set_mac(&mut self, name: &str, mac: &[u8; 6]) -> io::Result<()> {
        self.change_link(name, IFLA_ADDRESS, mac)
    }

    /// Enslaves `name` to `master`; `None` detaches it (IFLA_MASTER 0).
    pub fn set_master(&mut self, name: &str, master: Option<&str>) -> io::Result<()> {
        let name = checked_name(name)?;
        let master_index = match master {
            Some(m) => self.index(m)?,
            None => 0,
        };
        self.change_link(name, IFLA_MASTER, &master_index.to_ne_bytes())
    }

    /// Sets the link's description (the kernel ignores it when a link is created, hence a
    /// request of its own).
    pub fn set_alias(&mut self, name: &str, alias: &str) -> io::Result<()> {
        self.change_link(name, IFLA_IFALIAS, alias.as_bytes())
    }

    /// Sets one attribute of an existing link.
    fn change_link(&mut self, name: &str, attr: u16, value: &[u8]) -> io::Result<()> {
        self.ack(requests::change_link(name, attr, value)?).map_err(|e| nodev_to_not_found(e, name))
    }

    pub fn add_address(&mut self, name: &str, addr: IpAddr, prefix: u8) -> io::Result<()> {
        let req = self.address_request(RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, name, addr, prefix)?;
        self.ack(req)
    }

    pub fn del_address(&mut self, name: &str, addr: IpAddr, prefix: u8) -> io::Result<()> {
        let req = self.address_request(RTM_DELADDR, 0, name, addr, prefix)?;
        self.ack(req)
    }

    pub fn add_default_route(&mut self, gateway: IpAddr) -> io::Result<()> {
        self.ack(requests::add_default_route(gateway))
    }

    pub fn del_default_route(&mut self, gateway: IpAddr) -> io::Result<()> {
        self.ack(requests::del_default_route(gateway))
    }

    /// Looks a link up by name; `Ok(None)` when it does not exist.
    pub fn link(&mut self, name: &str) -> io::Result<Option<LinkInfo>> {
        self.get_link(requests::get_link(name)?)
    }

    pub fn links(&mut self) -> io::Result<Vec<LinkInfo>> {
        let bodies = self.exchange(requests::dump(RTM_GETLINK))?;
        Ok(bodies.iter().filter_map(|b| parse_link(b)).collect())
    }

    /// All addresses (IPv4 and IPv6) on `name`, with their prefix lengths.
    pub fn addresses(&mut self, name: &str) -> io::Result<Vec<(IpAddr, u8)>> {
        let index = self.index(name)?;
        Ok(self
            .all_addresses()?
            .into_iter()
            .filter(|&(idx, _, _)| idx == index)
            .map(|(_, addr, prefix)| (addr, prefix))
            .collect())
    }

    /// Every address of every interface: (interface index, address, prefix length).
    pub fn all_addresses(&mut self) -> io::Result<Vec<(u32, IpAddr, u8)>> {
        let bodies = self.exchange(requests::dump(RTM_GETADDR))?;
        Ok(bodies.iter().filter_map(|b| parse_address(b)).collect())
    }

    /// Name of the interface carrying the IPv4 default route of the main table.
    pub fn default_route_interface(&mut self) -> io::Result<Option<String>> {
        let bodies = self.exchange(requests::dump(RTM_GETROUTE))?;
        let Some(oif) = bodies.iter().find_map(|b| default_route_oif(b)) else {
            return Ok(None);
        };
        Ok(self.get_link(requests::get_link_by_index(oif))?.map(|l| l.name))
    }

    fn address_request(&mut self, ty: u16, flags: u16, name: &str, addr: IpAddr, prefix: u8) -> io::Result<Request> {
        let max_prefix = if addr.is_ipv4() { 32 } else { 128 };
        if prefix > max_prefix {
            return Err(invalid(format!("prefix /{prefix} too long for {addr}")));
        }
        let index = self.index(name)?;
        Ok(requests::address(ty, flags, index, addr, prefix))
    }

    /// Interface index resolved through this socket (hence its netns).
    fn index(&mut self, name: &str) -> io::Result<u32> {
        match self.link(name)? {
            Some(link) => Ok(link.index),
            None => Err(not_found(name)),
        }
    }

    fn get_link(&mut self, req: Request) -> io::Result<Option<LinkInfo>> {
        match self.exchange(req) {
            Ok(bodies) => Ok(bodies.iter().find_map(|b| parse_link(b))),
            Err(e) if e.raw_os_error() == Some(libc::ENODEV) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn ack(&mut self, req: Request) -> io::Result<()> {
        self.exchange(req).map(drop)
    }

    /// Sends one request and collects the bodies of all replies to it, up to
    /// the closing ack (NLMSG_ERROR) or end of dump (NLMSG_DONE).
    fn exchange(&mut self, req: Request) -> io::Result<Vec<Vec<u8>>> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        self.send(&req.finish(seq))?;
        let mut bodies = Vec::new();
        let mut buf = vec![0u8; RECV_BUF];
        loop {
            let n = self.recv(&mut buf)?;
            for (ty, msg_seq, body) in messages(&buf[..n]) {
                if msg_seq != seq {
                    continue; // stale reply to an earlier, abandoned request
                }
                match ty {
                    NLMSG_ERROR | NLMSG_DONE => return status(body).map(|()| bodies),
                    _ => bodies.push(body.to_vec()),
                }
            }
        }
    }

    fn send(&self, msg: &[u8]) -> io::Result<()> {
        loop {
            let rc = unsafe { libc::send(self.fd.as_raw_fd(), msg.as_ptr().cast(), msg.len(), 0) };
            if rc >= 0 {
                return Ok(());
            }
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::Interrupted {
                return Err(err);
            }
        }
    }

    fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let rc = unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if rc >= 0 {
                return Ok(rc as usize);
            }
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::Interrupted {
                return Err(err);
            }
        }
    }
}

/// The requests, as pure functions of their arguments (names already resolved to indexes
/// where the kernel needs one), so their encoding is testable without a socket.
mod requests {
    use super::*;

    /// A new link of `kind`. Attributes the link is born with go here, after the name.
    pub(super) fn new_link(name: &str, kind: &str) -> io::Result<Request> {
        let mut req = Request::new(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL);
        req.push(&ifinfomsg(0, 0));
        req.attr_str(IFLA_IFNAME, checked_name(name)?);
        req.nest(IFLA_LINKINFO | NLA_F_NESTED, |r| r.attr_str(IFLA_INFO_KIND, kind));
        Ok(req)
    }

    /// A veth pair whose peer is born in the netns open at `peer_netns_fd`. Attributes the
    /// local end is born with go after its name; the peer's, inside VETH_INFO_PEER.
    pub(super) fn new_veth(name: &str, peer: &str, peer_netns_fd: RawFd) -> io::Result<Request> {
        let (name, peer) = (checked_name(name)?, checked_name(peer)?);
        let ns_fd = peer_netns_fd as u32;
        let mut req = Request::new(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL);
        req.push(&ifinfomsg(0, 0));
        req.attr_str(IFLA_IFNAME, name);
        req.nest(IFLA_LINKINFO | NLA_F_NESTED, |r| {
            r.attr_str(IFLA_INFO_KIND, "veth");
            r.nest(IFLA_INFO_DATA | NLA_F_NESTED, |r| {
                // Not a pure nest: the peer carries its own ifinfomsg header.
                r.nest(VETH_INFO_PEER, |r| {
                    r.push(&ifinfomsg(0, 0));
                    r.attr_str(IFLA_IFNAME, peer);
                    r.attr(IFLA_NET_NS_FD, &ns_fd.to_ne_bytes());
                });
            });
        });
        Ok(req)
    }

    pub(super) fn del_link(name: &str) -> io::Result<Request> {
        let mut req = Request::new(RTM_DELLINK, 0);
        req.push(&ifinfomsg(0, 0));
        req.attr_str(IFLA_IFNAME, checked_name(name)?);
        Ok(req)
    }

    /// Deletes every link in interface group `group`.
    pub(super) fn del_group(group: u32) -> Request {
        let mut req = Request::new(RTM_DELLINK, 0);
        req.push(&ifinfomsg(0, 0));
        req.attr(IFLA_GROUP, &group.to_ne_bytes());
        req
    }

    pub(super) fn set_up(name: &str, up: bool) -> io::Result<Request> {
        let flags = if up { IFF_UP } else { 0 };
        let mut req = Request::new(RTM_NEWLINK, 0);
        req.push(&ifinfomsg(flags, IFF_UP));
        req.attr_str(IFLA_IFNAME, checked_name(name)?);
        Ok(req)
    }

    /// Sets attribute `attr` of the existing link `name` to `value`.
    pub(super) fn change_link(name: &str, attr: u16, value: &[u8]) -> io::Result<Request> {
        let mut req = Request::new(RTM_NEWLINK, 0);
        req.push(&ifinfomsg(0, 0));
        req.attr_str(IFLA_IFNAME, checked_name(name)?);
        req.attr(attr, value);
        Ok(req)
    }

    pub(super) fn get_link(name: &str) -> io::Result<Request> {
        let mut req = Request::new(RTM_GETLINK, 0);
        req.push(&ifinfomsg(0, 0));
        req.attr_str(IFLA_IFNAME, checked_name(name)?);
        Ok(req)
    }

    pub(super) fn get_link_by_index(index: u32) -> Request {
        let mut req = Request::new(RTM_GETLINK, 0);
        req.push(&ifinfomsg_index(index));
        req
    }

    /// A dump of every link (RTM_GETLINK), address of any family (RTM_GETADDR) or IPv4
    /// route (RTM_GETROUTE).
    pub(super) fn dump(ty: u16) -> Request {
        let mut req = Request::new(ty, NLM_F_DUMP);
        match ty {
            RTM_GETADDR => req.push(&ifaddrmsg(libc::AF_UNSPEC as u8, 0, 0, 0)),
            RTM_GETROUTE => req.push(&rtmsg(libc::AF_INET as u8, 0, 0, 0)),
            _ => req.push(&ifinfomsg(0, 0)),
        }
        req
    }

    /// RTM_NEWADDR or RTM_DELADDR of `addr/prefix` on the link with index `index`.
    pub(super) fn address(ty: u16, flags: u16, index: u32, addr: IpAddr, prefix: u8) -> Request {
        let mut req = Request::new(ty, flags);
        let bytes = ip_bytes(addr);
        match addr {
            IpAddr::V4(v4) => {
                req.push(&ifaddrmsg(libc::AF_INET as u8, prefix, 0, index));
                req.attr(IFA_LOCAL, &bytes);
                req.attr(IFA_ADDRESS, &bytes);
                // /31 and /32 have no broadcast address (RFC 3021).
                if prefix < 31 {
                    let host_mask = u32::MAX >> prefix;
                    let bcast = Ipv4Addr::from(u32::from(v4) | host_mask);
                    req.attr(IFA_BROADCAST, &bcast.octets());
                }
            }
            IpAddr::V6(_) => {
                // NODAD: the address is usable at once instead of "tentative".
                req.push(&ifaddrmsg(libc::AF_INET6 as u8, prefix, IFA_F_NODAD, index));
                req.attr(IFA_ADDRESS, &bytes);
            }
        }
        req
    }

    pub(super) fn add_default_route(gateway: IpAddr) -> Request {
        let mut req = Request::new(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL);
        req.push(&rtmsg(family(gateway), RTPROT_BOOT, RT_SCOPE_UNIVERSE, RTN_UNICAST));
        req.attr(RTA_GATEWAY, &ip_bytes(gateway));
        req
    }

    pub(super) fn del_default_route(gateway: IpAddr) -> Request {
        // Like `ip route del`: zero protocol/type and scope NOWHERE act as wildcards.
        let mut req = Request::new(RTM_DELROUTE, 0);
        req.push(&rtmsg(family(gateway), 0, RT_SCOPE_NOWHERE, 0));
        req.attr(RTA_GATEWAY, &ip_bytes(gateway));
        req
    }
}

/// A netlink message under construction; attributes are 4-byte aligned.
struct Request {
    buf: Vec<u8>,
}

impl Request {
    fn new(ty: u16, flags: u16) -> Request {
        let mut buf = vec![0u8; NLMSG_HDRLEN];
        buf[4..6].copy_from_slice(&ty.to_ne_bytes());
        let flags = flags | NLM_F_REQUEST | NLM_F_ACK;
        buf[6..8].copy_from_slice(&flags.to_ne_bytes());
        Request { buf }
    }

    fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
        self.buf.resize(align(self.buf.len()), 0);
    }

    fn attr(&mut self, ty: u16, data: &[u8]) {
        let len = (4 + data.len()) as u16;
        self.buf.extend_from_slice(&len.to_ne_bytes());
        self.buf.extend_from_slice(&ty.to_ne_bytes());
        self.push(data);
    }

    fn attr_str(&mut self, ty: u16, s: &str) {
        let mut data = Vec::with_capacity(s.len() + 1);
        data.extend_from_slice(s.as_bytes());
        data.push(0);
        self.attr(ty, &data);
    }

    /// Writes an attribute whose payload is whatever `fill` appends.
    fn nest(&mut self, ty: u16, fill: impl FnOnce(&mut Request)) {
        let start = self.buf.len();
        self.attr(ty, &[]);
        fill(self);
        let len = (self.buf.len() - start) as u16;
        self.buf[start..start + 2].copy_from_slice(&len.to_ne_bytes());
    }

    fn finish(mut self, seq: u32) -> Vec<u8> {
        let len = self.buf.len() as u32;
        self.buf[0..4].copy_from_slice(&len.to_ne_bytes());
        self.buf[8..12].copy_from_slice(&seq.to_ne_bytes());
        self.buf
    }
}

fn align(len: usize) -> usize {
    (len + 3) & !3
}

fn ifinfomsg(flags: u32, change: u32) -> [u8; 16] {
    let mut m = [0u8; 16]; // family AF_UNSPEC, index 0: resolved by IFLA_IFNAME
    m[8..12].copy_from_slice(&flags.to_ne_bytes());
    m[12..16].copy_from_slice(&change.to_ne_bytes());
    m
}

fn ifinfomsg_index(index: u32) -> [u8; 16] {
    let mut m = [0u8; 16];
    m[4..8].copy_from_slice(&index.to_ne_bytes());
    m
}

fn ifaddrmsg(family: u8, prefix: u8, flags: u8, index: u32) -> [u8; 8] {
    let mut m = [family, prefix, flags, RT_SCOPE_UNIVERSE, 0, 0, 0, 0];
    m[4..8].copy_from_slice(&index.to_ne_bytes());
    m
}

/// rtmsg for a default route (dst_len 0) in the main table.
fn rtmsg(family: u8, protocol: u8, scope: u8, ty: u8) -> [u8; 12] {
    [family, 0, 0, 0, RT_TABLE_MAIN, protocol, scope, ty, 0, 0, 0, 0]
}

fn family(addr: IpAddr) -> u8 {
    match addr {
        IpAddr::V4(_) => libc::AF_INET as u8,
        IpAddr::V6(_) => libc::AF_INET6 as u8,
    }
}

fn ip_bytes(addr: IpAddr) -> Vec<u8> {
    match addr {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

fn parse_ip(data: &[u8]) -> Option<IpAddr> {
    match data.len() {
        4 => Some(IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(data).ok()?))),
        16 => Some(IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(data).ok()?))),
        _ => None,
    }
}

fn read_u32(data: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(data.get(at..at + 4)?.try_into().ok()?))
}

fn c_string(data: &[u8]) -> String {
    let end = data.iter().position(|&b| b == 0).unwrap_or(data.len());
    String::from_utf8_lossy(&data[..end]).into_owned()
}

/// Splits a datagram into (type, seq, body) messages.
fn messages(mut buf: &[u8]) -> impl Iterator<Item = (u16, u32, &[u8])> {
    std::iter::from_fn(move || {
        let len = read_u32(buf, 0)? as usize;
        if len < NLMSG_HDRLEN || len > buf.len() {
            return None;
        }
        let ty = u16::from_ne_bytes([buf[4], buf[5]]);
        let seq = read_u32(buf, 8)?;
        let body = &buf[NLMSG_HDRLEN..len];
        buf = &buf[align(len).min(buf.len())..];
        Some((ty, seq, body))
    })
}

/// Splits an attribute area into (type, payload), nesting flags stripped.
fn attrs(mut buf: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        let len = u16::from_ne_bytes([*buf.first()?, *buf.get(1)?]) as usize;
        if len < 4 || len > buf.len() {
            return None;
        }
        let ty = u16::from_ne_bytes([buf[2], buf[3]]) & NLA_TYPE_MASK;
        let payload = &buf[4..len];
        buf = &buf[align(len).min(buf.len())..];
        Some((ty, payload))
    })
}

/// Error code of an NLMSG_ERROR (0 = ack) or NLMSG_DONE body.
fn status(body: &[u8]) -> io::Result<()> {
    match body.get(0..4) {
        Some(b) => match i32::from_ne_bytes(b.try_into().unwrap()) {
            code if code < 0 => Err(io::Error::from_raw_os_error(-code)),
            _ => Ok(()),
        },
        None => Ok(()),
    }
}

fn parse_link(body: &[u8]) -> Option<LinkInfo> {
    let index = read_u32(body, 4)?;
    let flags = read_u32(body, 8)?;
    let mut link = LinkInfo {
        index,
        name: String::new(),
        kind: None,
        up: flags & IFF_UP != 0,
        master: None,
        alias: None,
        group: 0,
        bridge_port: None,
    };
    for (ty, data) in attrs(body.get(16..)?) {
        match ty {
            IFLA_IFNAME => link.name = c_string(data),
            IFLA_MASTER => link.master = read_u32(data, 0).filter(|&m| m != 0),
            IFLA_IFALIAS => link.alias = Some(c_string(data)).filter(|a| !a.is_empty()),
            IFLA_GROUP => link.group = read_u32(data, 0).unwrap_or(0),
            IFLA_LINKINFO => {
                link.kind = attrs(data).find(|&(t, _)| t == IFLA_INFO_KIND).map(|(_, kind)| c_string(kind));
                let port = attrs(data).find(|&(t, _)| t == IFLA_INFO_SLAVE_DATA).map(|(_, port)| port);
                let number = port.and_then(|p| attrs(p).find(|&(t, _)| t == IFLA_BRPORT_NO));
                link.bridge_port = number.and_then(|(_, n)| Some(u16::from_ne_bytes(n.get(..2)?.try_into().ok()?)));
            }
            _ => {}
        }
    }
    Some(link)
}

/// (ifindex, address, prefix) from an RTM_NEWADDR body.
fn parse_address(body: &[u8]) -> Option<(u32, IpAddr, u8)> {
    let prefix = *body.get(1)?;
    let index = read_u32(body, 4)?;
    let (mut local, mut address) = (None, None);
    for (ty, data) in attrs(body.get(8..)?) {
        match ty {
            IFA_LOCAL => local = parse_ip(data),
            IFA_ADDRESS => address = parse_ip(data),
            _ => {}
        }
    }
    // On point-to-point IPv4 links IFA_ADDRESS is the peer; IFA_LOCAL is ours.
    Some((index, local.or(address)?, prefix))
}

/// RTA_OIF of a main-table unicast default route, if `body` is one.
fn default_route_oif(body: &[u8]) -> Option<u32> {
    let (dst_len, mut table, ty) = (*body.get(1)?, *body.get(4)? as u32, *body.get(7)?);
    let mut oif = None;
    for (attr, data) in attrs(body.get(12..)?) {
        match attr {
            RTA_TABLE => table = read_u32(data, 0)?,
            RTA_OIF => oif = read_u32(data, 0),
            _ => {}
        }
    }
    let is_default = dst_len == 0 && ty == RTN_UNICAST && table == RT_TABLE_MAIN as u32;
    oif.filter(|_| is_default)
}

fn checked_name(name: &str) -> io::Result<&str> {
    // Mirrors the kernel's dev_valid_name() so errors name the culprit.
    let bad_char = |c: char| c == '/' || c == ':' || c == '\0' || c.is_whitespace();
    if name.is_empty() || name.len() >= IFNAMSIZ || name == "." || name == ".." || name.contains(bad_char) {
        return Err(invalid(format!("invalid interface name {name:?}")));
    }
    Ok(name)
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

fn not_found(name: &str) -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, format!("interface {name} not found"))
}

fn nodev_to_not_found(err: io::Error, name: &str) -> io::Error {
    if err.raw_os_error() == Some(libc::ENODEV) {
        not_found(name)
    } else {
        err
    }
}

#[cfg(test)]
#[path = "netlink_tests.rs"]
mod tests;
