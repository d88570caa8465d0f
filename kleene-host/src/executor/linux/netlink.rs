//! Minimal blocking rtnetlink client: links, addresses and default routes.
//!
//! Messages are typed values of `netlink-packet-route` (the crates netavark uses), sent on
//! a blocking `netlink-sys` socket one request at a time. Every interface is addressed by
//! name through the socket itself (never through `if_nametoindex`), so a socket opened
//! inside another netns with [`Netlink::open_in`] resolves names in that netns.

use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::path::Path;

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NLM_F_REPLACE,
    NLM_F_REQUEST,
};
use netlink_packet_route::address::{AddressAttribute, AddressHeaderFlags, AddressMessage};
use netlink_packet_route::link::{
    InfoBridgePort, InfoData, InfoKind, InfoPortData, InfoVeth, InfoVxlan, LinkAttribute, LinkFlags,
    LinkInfo as LinkInfoAttr, LinkMessage,
};
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket};

use super::netns;

const IFNAMSIZ: usize = 16;
// The kernel caps a single dump datagram at 32 KiB; twice that never truncates.
const RECV_BUF: usize = 64 * 1024;

/// A blocking rtnetlink socket bound to the netns it was created in.
pub struct Netlink {
    socket: Socket,
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
    /// `IFLA_LINK`: for a veth, its peer's index (in the peer's namespace).
    pub link: Option<u32>,
    /// `IFLA_MTU` (0 if the kernel did not say).
    pub mtu: u32,
}

impl Netlink {
    /// Opens a socket in the calling thread's current netns.
    pub fn open() -> io::Result<Netlink> {
        let mut socket = Socket::new(NETLINK_ROUTE)?;
        socket.bind_auto()?;
        Ok(Netlink { socket, seq: 0 })
    }

    /// Opens a socket inside the netns at `netns`. The socket stays bound to
    /// that netns, so only a short-lived helper thread ever switches namespace.
    pub fn open_in(netns: &Path) -> io::Result<Netlink> {
        netns::run_in(netns, Netlink::open)
    }

    /// Creates a link of `kind` in interface group `group`. The kernel sets the group as it
    /// creates the link (`rtnl_create_link`), so no instant exists in which the link is there
    /// without it.
    pub fn create_link(&mut self, name: &str, kind: &str, group: u32) -> io::Result<()> {
        self.ack(requests::in_group(requests::new_link(name, kind)?, group))
    }

    /// Creates a veth pair whose peer is born directly inside `peer_netns`, so it never shows
    /// up (or clashes by name) in the current netns. The end that stays here is created in
    /// interface group `group` (the peer in the default group).
    pub fn create_veth(&mut self, name: &str, peer: &str, peer_netns: BorrowedFd<'_>, group: u32) -> io::Result<()> {
        self.ack(requests::in_group(requests::new_veth(name, peer, peer_netns.as_raw_fd())?, group))
    }

    /// Creates a VXLAN device (VNI `vni`, source `local`, UDP `port`) that never learns and
    /// answers ARP/ND from its neighbour table, in interface group `group`.
    pub fn create_vxlan(&mut self, name: &str, vni: u32, local: IpAddr, port: u16, group: u32) -> io::Result<()> {
        self.ack(requests::in_group(requests::new_vxlan(name, vni, local, port)?, group))
    }

    /// A static forwarding entry of VXLAN device `link`: `mac` is behind `remote`.
    pub fn forwarding(&mut self, link: &str, mac: &[u8; 6], remote: IpAddr, add: bool) -> io::Result<()> {
        let index = self.index(link)?;
        self.ack(requests::forwarding(index, mac, remote, add))
    }

    /// A permanent neighbour entry on `link`: `address` is at `mac`.
    pub fn neighbour(&mut self, link: &str, address: IpAddr, mac: &[u8; 6], add: bool) -> io::Result<()> {
        let index = self.index(link)?;
        self.ack(requests::neighbour(index, address, mac, add))
    }

    pub fn delete_link(&mut self, name: &str) -> io::Result<()> {
        self.ack(requests::del_link(name)?).map_err(|e| nodev_to_not_found(e, name))
    }

    /// Deletes the link of interface index `index` (indexes are not reused while the
    /// namespace lives, so this is that link, whatever holds its name by now).
    pub fn delete_link_index(&mut self, index: u32) -> io::Result<()> {
        self.ack(requests::del_link_index(index)).map_err(|e| nodev_to_not_found(e, &format!("interface #{index}")))
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
            match self.change_link(name, LinkAttribute::Group(group)) {
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

    /// Takes `name` out of service without deleting it (which costs the kernel an RCU grace
    /// period, 15-30 ms): down, so no frame passes it (nor its veth peer, whose carrier goes
    /// with it), and moved into interface group `group`, all in one request.
    pub fn retire(&mut self, name: &str, group: u32) -> io::Result<()> {
        self.ack(requests::retire(name, group)?).map_err(|e| nodev_to_not_found(e, name))
    }

    /// Deletes every link in interface group `group` in one kernel operation; false when
    /// the group was empty.
    pub fn delete_group(&mut self, group: u32) -> io::Result<bool> {
        match self.ack(requests::del_group(group)) {
            Err(e) if e.raw_os_error() == Some(libc::ENODEV) => Ok(false),
            other => other.map(|()| true),
        }
    }

    /// An interface group no link of this namespace is in (so deleting it deletes only the
    /// links put there), away from the small numbers people use.
    fn unused_group(&mut self) -> io::Result<u32> {
        let used: std::collections::HashSet<u32> = self.links()?.into_iter().map(|l| l.group).collect();
        let base = 0x6b6c_0000 | (std::process::id() & 0xffff);
        Ok((base..).find(|g| !used.contains(g)).expect("fewer links than groups"))
    }

    /// No IPv6 address of its own on `name` when it comes up (no link-local, so no duplicate
    /// address detection, router or multicast-listener messages flooded over its bridge).
    pub fn no_ipv6_link_local(&mut self, name: &str) -> io::Result<()> {
        self.ack(requests::no_ipv6_link_local(name)?).map_err(|e| nodev_to_not_found(e, name))
    }

    pub fn set_up(&mut self, name: &str, up: bool) -> io::Result<()> {
        self.ack(requests::set_up(name, up)?).map_err(|e| nodev_to_not_found(e, name))
    }

    /// Sets the hardware address of `name`.
    pub fn set_mac(&mut self, name: &str, mac: &[u8; 6]) -> io::Result<()> {
        self.change_link(name, LinkAttribute::Address(mac.to_vec()))
    }

    /// Sets the MTU of `name`.
    pub fn set_mtu(&mut self, name: &str, mtu: u32) -> io::Result<()> {
        self.change_link(name, LinkAttribute::Mtu(mtu))
    }

    /// Enslaves `name` to `master`; `None` detaches it (IFLA_MASTER 0).
    pub fn set_master(&mut self, name: &str, master: Option<&str>) -> io::Result<()> {
        let name = checked_name(name)?;
        let master_index = match master {
            Some(m) => self.index(m)?,
            None => 0,
        };
        self.change_link(name, LinkAttribute::Controller(master_index))
    }

    /// Sets one attribute of an existing link.
    fn change_link(&mut self, name: &str, attr: LinkAttribute) -> io::Result<()> {
        self.ack(requests::change_link(name, attr)?).map_err(|e| nodev_to_not_found(e, name))
    }

    pub fn add_address(&mut self, name: &str, addr: IpAddr, prefix: u8) -> io::Result<()> {
        let message = self.address_message(name, addr, prefix)?;
        self.ack(Request::new(RouteNetlinkMessage::NewAddress(message), NLM_F_CREATE | NLM_F_EXCL))
    }

    pub fn del_address(&mut self, name: &str, addr: IpAddr, prefix: u8) -> io::Result<()> {
        let message = self.address_message(name, addr, prefix)?;
        self.ack(Request::new(RouteNetlinkMessage::DelAddress(message), 0))
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
        let replies = self.exchange(requests::dump_links())?;
        Ok(replies.iter().filter_map(parse_link).collect())
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
        let replies = self.exchange(requests::dump_addresses())?;
        Ok(replies.iter().filter_map(parse_address).collect())
    }

    /// Name of the interface carrying the IPv4 default route of the main table.
    pub fn default_route_interface(&mut self) -> io::Result<Option<String>> {
        let replies = self.exchange(requests::dump_routes())?;
        let Some(oif) = replies.iter().find_map(default_route_oif) else {
            return Ok(None);
        };
        Ok(self.get_link(requests::get_link_by_index(oif))?.map(|l| l.name))
    }

    /// The gateways of the default routes (both families, main table) with the index of the
    /// interface each leaves by.
    pub fn default_gateways(&mut self) -> io::Result<Vec<(u32, IpAddr)>> {
        let mut found = Vec::new();
        for family in [AddressFamily::Inet, AddressFamily::Inet6] {
            let replies = self.exchange(requests::dump_routes_of(family))?;
            found.extend(replies.iter().filter_map(default_gateway));
        }
        Ok(found)
    }

    fn address_message(&mut self, name: &str, addr: IpAddr, prefix: u8) -> io::Result<AddressMessage> {
        let max_prefix = if addr.is_ipv4() { 32 } else { 128 };
        if prefix > max_prefix {
            return Err(invalid(format!("prefix /{prefix} too long for {addr}")));
        }
        let index = self.index(name)?;
        Ok(requests::address(index, addr, prefix))
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
            Ok(replies) => Ok(replies.iter().find_map(parse_link)),
            Err(e) if e.raw_os_error() == Some(libc::ENODEV) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn ack(&mut self, req: Request) -> io::Result<()> {
        self.exchange(req).map(drop)
    }

    /// Sends one request and collects all replies to it, up to the closing ack
    /// (NLMSG_ERROR) or end of dump (NLMSG_DONE).
    fn exchange(&mut self, req: Request) -> io::Result<Vec<RouteNetlinkMessage>> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        self.send(&req.encode(seq))?;
        let mut replies = Vec::new();
        let mut buf = vec![0u8; RECV_BUF];
        loop {
            let n = self.recv(&mut buf)?;
            for message in messages(&buf[..n]) {
                let message = message?;
                if message.header.sequence_number != seq {
                    continue; // stale reply to an earlier, abandoned request
                }
                match reply(message.payload) {
                    Reply::Entry(entry) => replies.push(entry),
                    Reply::End(outcome) => return outcome.map(|()| replies),
                    Reply::Skip => {}
                }
            }
        }
    }

    fn send(&self, msg: &[u8]) -> io::Result<()> {
        loop {
            match self.socket.send(msg, 0) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => return other.map(drop),
            }
        }
    }

    fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.socket.recv(&mut &mut buf[..], 0) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => return other,
            }
        }
    }
}

/// One request: a message and the flags beyond REQUEST|ACK (CREATE, EXCL, DUMP).
struct Request {
    message: RouteNetlinkMessage,
    flags: u16,
}

impl Request {
    fn new(message: RouteNetlinkMessage, flags: u16) -> Request {
        Request { message, flags }
    }

    fn encode(self, seq: u32) -> Vec<u8> {
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | NLM_F_ACK | self.flags;
        header.sequence_number = seq;
        let mut message = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(self.message));
        message.finalize();
        let mut buf = vec![0u8; message.buffer_len()];
        message.serialize(&mut buf);
        buf
    }
}

/// The requests, as pure functions of their arguments (names already resolved to indexes
/// where the kernel needs one), so their encoding is testable without a socket.
mod requests {
    use super::*;

    /// A link message naming its link (index 0: the kernel resolves IFLA_IFNAME).
    fn named(name: &str) -> io::Result<LinkMessage> {
        let mut link = LinkMessage::default();
        link.attributes.push(LinkAttribute::IfName(checked_name(name)?.to_string()));
        Ok(link)
    }

    /// A new link of `kind`. Attributes the link is born with are pushed here, after the name.
    pub(super) fn new_link(name: &str, kind: &str) -> io::Result<Request> {
        let mut link = named(name)?;
        link.attributes.push(LinkAttribute::LinkInfo(vec![LinkInfoAttr::Kind(InfoKind::from(kind))]));
        Ok(Request::new(RouteNetlinkMessage::NewLink(link), NLM_F_CREATE | NLM_F_EXCL))
    }

    /// A veth pair whose peer is born in the netns open at `peer_netns_fd`. Attributes the
    /// local end is born with are pushed onto `link`; the peer's, onto `peer_end`.
    pub(super) fn new_veth(name: &str, peer: &str, peer_netns_fd: RawFd) -> io::Result<Request> {
        let mut link = named(name)?;
        let mut peer_end = named(peer)?;
        peer_end.attributes.push(LinkAttribute::NetNsFd(peer_netns_fd));
        link.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfoAttr::Kind(InfoKind::Veth),
            LinkInfoAttr::Data(InfoData::Veth(InfoVeth::Peer(peer_end))),
        ]));
        Ok(Request::new(RouteNetlinkMessage::NewLink(link), NLM_F_CREATE | NLM_F_EXCL))
    }

    /// A VXLAN device: `nolearning` (entries come from the cluster, never from traffic) and
    /// `proxy` (ARP and neighbour solicitations are answered from its neighbour entries, so
    /// no broadcast crosses the underlay). Without a default remote it floods nothing.
    pub(super) fn new_vxlan(name: &str, vni: u32, local: IpAddr, port: u16) -> io::Result<Request> {
        let mut link = named(name)?;
        let local = match local {
            IpAddr::V4(v4) => InfoVxlan::Local(v4),
            IpAddr::V6(v6) => InfoVxlan::Local6(v6),
        };
        let data =
            vec![InfoVxlan::Id(vni), local, InfoVxlan::Port(port), InfoVxlan::Learning(false), InfoVxlan::Proxy(true)];
        link.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfoAttr::Kind(InfoKind::Vxlan),
            LinkInfoAttr::Data(InfoData::Vxlan(data)),
        ]));
        Ok(Request::new(RouteNetlinkMessage::NewLink(link), NLM_F_CREATE | NLM_F_EXCL))
    }

    fn neighbour_address(ip: IpAddr) -> (AddressFamily, NeighbourAddress) {
        match ip {
            IpAddr::V4(v4) => (AddressFamily::Inet, NeighbourAddress::Inet(v4)),
            IpAddr::V6(v6) => (AddressFamily::Inet6, NeighbourAddress::Inet6(v6)),
        }
    }

    fn neighbour_request(message: NeighbourMessage, add: bool) -> Request {
        if add {
            // Replace: an entry left by an earlier run, or moved to another host, is made right.
            Request::new(RouteNetlinkMessage::NewNeighbour(message), NLM_F_CREATE | NLM_F_REPLACE)
        } else {
            Request::new(RouteNetlinkMessage::DelNeighbour(message), 0)
        }
    }

    /// `bridge fdb replace MAC dev LINK dst REMOTE self permanent`.
    pub(super) fn forwarding(index: u32, mac: &[u8; 6], remote: IpAddr, add: bool) -> Request {
        let mut message = NeighbourMessage::default();
        message.header.family = AddressFamily::Bridge;
        message.header.ifindex = index;
        message.header.state = NeighbourState::Permanent;
        message.header.flags = NeighbourFlags::Own;
        message.attributes.push(NeighbourAttribute::LinkLayerAddress(mac.to_vec()));
        message.attributes.push(NeighbourAttribute::Destination(neighbour_address(remote).1));
        neighbour_request(message, add)
    }

    /// `ip neigh replace ADDRESS lladdr MAC dev LINK nud permanent`.
    pub(super) fn neighbour(index: u32, address: IpAddr, mac: &[u8; 6], add: bool) -> Request {
        let mut message = NeighbourMessage::default();
        let (family, destination) = neighbour_address(address);
        message.header.family = family;
        message.header.ifindex = index;
        message.header.state = NeighbourState::Permanent;
        message.attributes.push(NeighbourAttribute::Destination(destination));
        message.attributes.push(NeighbourAttribute::LinkLayerAddress(mac.to_vec()));
        neighbour_request(message, add)
    }

    /// `request` (a new link) with the link born in interface group `group`.
    pub(super) fn in_group(mut request: Request, group: u32) -> Request {
        if let RouteNetlinkMessage::NewLink(link) = &mut request.message {
            link.attributes.push(LinkAttribute::Group(group));
        }
        request
    }

    pub(super) fn del_link(name: &str) -> io::Result<Request> {
        Ok(Request::new(RouteNetlinkMessage::DelLink(named(name)?), 0))
    }

    pub(super) fn del_link_index(index: u32) -> Request {
        let mut link = LinkMessage::default();
        link.header.index = index;
        Request::new(RouteNetlinkMessage::DelLink(link), 0)
    }

    /// Deletes every link in interface group `group`.
    pub(super) fn del_group(group: u32) -> Request {
        let mut link = LinkMessage::default();
        link.attributes.push(LinkAttribute::Group(group));
        Request::new(RouteNetlinkMessage::DelLink(link), 0)
    }

    pub(super) fn set_up(name: &str, up: bool) -> io::Result<Request> {
        let mut link = named(name)?;
        link.header.flags = if up { LinkFlags::Up } else { LinkFlags::empty() };
        link.header.change_mask = LinkFlags::Up;
        Ok(Request::new(RouteNetlinkMessage::NewLink(link), 0))
    }

    pub(super) fn no_ipv6_link_local(name: &str) -> io::Result<Request> {
        use netlink_packet_route::link::{AfSpecInet6, AfSpecUnspec, In6AddrGenMode};
        let mut link = named(name)?;
        link.attributes.push(LinkAttribute::AfSpecUnspec(vec![AfSpecUnspec::Inet6(vec![AfSpecInet6::AddrGenMode(
            In6AddrGenMode::None,
        )])]));
        Ok(Request::new(RouteNetlinkMessage::NewLink(link), 0))
    }

    /// `name` down and into interface group `group`, in one RTM_NEWLINK.
    pub(super) fn retire(name: &str, group: u32) -> io::Result<Request> {
        let Request { message, flags } = set_up(name, false)?;
        let RouteNetlinkMessage::NewLink(mut link) = message else { unreachable!("set_up is a NewLink") };
        link.attributes.push(LinkAttribute::Group(group));
        Ok(Request::new(RouteNetlinkMessage::NewLink(link), flags))
    }

    /// Sets attribute `attr` of the existing link `name`.
    pub(super) fn change_link(name: &str, attr: LinkAttribute) -> io::Result<Request> {
        let mut link = named(name)?;
        link.attributes.push(attr);
        Ok(Request::new(RouteNetlinkMessage::NewLink(link), 0))
    }

    pub(super) fn get_link(name: &str) -> io::Result<Request> {
        Ok(Request::new(RouteNetlinkMessage::GetLink(named(name)?), 0))
    }

    pub(super) fn get_link_by_index(index: u32) -> Request {
        let mut link = LinkMessage::default();
        link.header.index = index;
        Request::new(RouteNetlinkMessage::GetLink(link), 0)
    }

    pub(super) fn dump_links() -> Request {
        Request::new(RouteNetlinkMessage::GetLink(LinkMessage::default()), NLM_F_DUMP)
    }

    /// Addresses of both families.
    pub(super) fn dump_addresses() -> Request {
        Request::new(RouteNetlinkMessage::GetAddress(AddressMessage::default()), NLM_F_DUMP)
    }

    /// IPv4 routes of every table (the kernel ignores the table of a dump request).
    pub(super) fn dump_routes() -> Request {
        dump_routes_of(AddressFamily::Inet)
    }

    pub(super) fn dump_routes_of(family: AddressFamily) -> Request {
        let mut route = RouteMessage::default();
        route.header.address_family = family;
        route.header.table = RouteHeader::RT_TABLE_MAIN;
        Request::new(RouteNetlinkMessage::GetRoute(route), NLM_F_DUMP)
    }

    /// The body of RTM_NEWADDR or RTM_DELADDR for `addr/prefix` on the link `index`.
    pub(super) fn address(index: u32, addr: IpAddr, prefix: u8) -> AddressMessage {
        let mut message = AddressMessage::default();
        message.header.index = index;
        message.header.prefix_len = prefix;
        match addr {
            IpAddr::V4(v4) => {
                message.header.family = AddressFamily::Inet;
                message.attributes.push(AddressAttribute::Local(addr));
                message.attributes.push(AddressAttribute::Address(addr));
                // /31 and /32 have no broadcast address (RFC 3021).
                if prefix < 31 {
                    let host_mask = u32::MAX >> prefix;
                    message.attributes.push(AddressAttribute::Broadcast(Ipv4Addr::from(u32::from(v4) | host_mask)));
                }
            }
            IpAddr::V6(_) => {
                message.header.family = AddressFamily::Inet6;
                // NODAD: the address is usable at once instead of "tentative".
                message.header.flags = AddressHeaderFlags::Nodad;
                message.attributes.push(AddressAttribute::Address(addr));
            }
        }
        message
    }

    /// A default route (dst_len 0) of the main table via `gateway`.
    fn default_route(gateway: IpAddr) -> RouteMessage {
        let mut route = RouteMessage::default();
        route.header.table = RouteHeader::RT_TABLE_MAIN;
        let (family, address) = match gateway {
            IpAddr::V4(v4) => (AddressFamily::Inet, RouteAddress::Inet(v4)),
            IpAddr::V6(v6) => (AddressFamily::Inet6, RouteAddress::Inet6(v6)),
        };
        route.header.address_family = family;
        route.attributes.push(RouteAttribute::Gateway(address));
        route
    }

    pub(super) fn add_default_route(gateway: IpAddr) -> Request {
        let mut route = default_route(gateway);
        route.header.protocol = RouteProtocol::Boot;
        route.header.scope = RouteScope::Universe;
        route.header.kind = RouteType::Unicast;
        Request::new(RouteNetlinkMessage::NewRoute(route), NLM_F_CREATE | NLM_F_EXCL)
    }

    pub(super) fn del_default_route(gateway: IpAddr) -> Request {
        // Like `ip route del`: zero protocol/type and scope NOWHERE act as wildcards.
        let mut route = default_route(gateway);
        route.header.protocol = RouteProtocol::Unspec;
        route.header.scope = RouteScope::NoWhere;
        route.header.kind = RouteType::Unspec;
        Request::new(RouteNetlinkMessage::DelRoute(route), 0)
    }
}

/// Splits a datagram into its messages; one the crate cannot decode is an error (naming
/// the decoder's complaint) rather than a silently missing link or address.
fn messages(mut buf: &[u8]) -> impl Iterator<Item = io::Result<NetlinkMessage<RouteNetlinkMessage>>> + '_ {
    std::iter::from_fn(move || {
        let len = u32::from_ne_bytes(buf.get(..4)?.try_into().ok()?) as usize;
        if len < 16 || len > buf.len() {
            return None;
        }
        let message = NetlinkMessage::deserialize(&buf[..len])
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("undecodable rtnetlink reply: {e}")));
        buf = &buf[((len + 3) & !3).min(buf.len())..];
        Some(message)
    })
}

/// What one reply to a request is.
enum Reply {
    /// An answer (the link asked for, or one entry of a dump).
    Entry(RouteNetlinkMessage),
    /// The closing ack or end of dump, with the kernel's verdict as an `io::Error` of the
    /// errno's kind (EEXIST: AlreadyExists, ENODEV stays raw for the callers to name).
    End(io::Result<()>),
    Skip,
}

fn reply(payload: NetlinkPayload<RouteNetlinkMessage>) -> Reply {
    let verdict = |code: i32| if code < 0 { Err(io::Error::from_raw_os_error(-code)) } else { Ok(()) };
    match payload {
        NetlinkPayload::InnerMessage(entry) => Reply::Entry(entry),
        NetlinkPayload::Error(e) => Reply::End(e.code.map_or(Ok(()), |code| verdict(code.get()))),
        NetlinkPayload::Done(done) => Reply::End(verdict(done.code)),
        _ => Reply::Skip,
    }
}

fn parse_link(reply: &RouteNetlinkMessage) -> Option<LinkInfo> {
    let RouteNetlinkMessage::NewLink(message) = reply else { return None };
    let mut link = LinkInfo {
        index: message.header.index,
        name: String::new(),
        kind: None,
        up: message.header.flags.contains(LinkFlags::Up),
        master: None,
        alias: None,
        group: 0,
        bridge_port: None,
        link: None,
        mtu: 0,
    };
    for attr in &message.attributes {
        match attr {
            LinkAttribute::IfName(name) => link.name = name.clone(),
            LinkAttribute::Controller(master) => link.master = Some(*master).filter(|&m| m != 0),
            LinkAttribute::IfAlias(alias) => link.alias = Some(alias.clone()).filter(|a| !a.is_empty()),
            LinkAttribute::Group(group) => link.group = *group,
            LinkAttribute::Link(peer) => link.link = Some(*peer),
            LinkAttribute::Mtu(mtu) => link.mtu = *mtu,
            LinkAttribute::LinkInfo(infos) => {
                for info in infos {
                    match info {
                        LinkInfoAttr::Kind(kind) => link.kind = Some(kind.to_string()),
                        LinkInfoAttr::PortData(InfoPortData::BridgePort(port)) => {
                            link.bridge_port = port.iter().find_map(|p| match p {
                                InfoBridgePort::PortNumber(n) => Some(*n),
                                _ => None,
                            })
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    Some(link)
}

/// (ifindex, address, prefix) from an RTM_NEWADDR reply.
fn parse_address(reply: &RouteNetlinkMessage) -> Option<(u32, IpAddr, u8)> {
    let RouteNetlinkMessage::NewAddress(message) = reply else { return None };
    let (mut local, mut address) = (None, None);
    for attr in &message.attributes {
        match attr {
            AddressAttribute::Local(ip) => local = Some(*ip),
            AddressAttribute::Address(ip) => address = Some(*ip),
            _ => {}
        }
    }
    // On point-to-point IPv4 links IFA_ADDRESS is the peer; IFA_LOCAL is ours.
    Some((message.header.index, local.or(address)?, message.header.prefix_len))
}

/// RTA_OIF of a main-table unicast default route, if `reply` is one.
fn default_route_oif(reply: &RouteNetlinkMessage) -> Option<u32> {
    let RouteNetlinkMessage::NewRoute(route) = reply else { return None };
    let mut table = u32::from(route.header.table);
    let mut oif = None;
    for attr in &route.attributes {
        match attr {
            RouteAttribute::Table(t) => table = *t,
            RouteAttribute::Oif(index) => oif = Some(*index),
            _ => {}
        }
    }
    let is_default = route.header.destination_prefix_length == 0
        && route.header.kind == RouteType::Unicast
        && table == u32::from(RouteHeader::RT_TABLE_MAIN);
    oif.filter(|_| is_default)
}

/// A default route's (outgoing interface, gateway), if `reply` is one with both.
fn default_gateway(reply: &RouteNetlinkMessage) -> Option<(u32, IpAddr)> {
    let RouteNetlinkMessage::NewRoute(route) = reply else { return None };
    let oif = default_route_oif(reply)?;
    route.attributes.iter().find_map(|attr| match attr {
        RouteAttribute::Gateway(RouteAddress::Inet(v4)) => Some((oif, IpAddr::V4(*v4))),
        RouteAttribute::Gateway(RouteAddress::Inet6(v6)) => Some((oif, IpAddr::V6(*v6))),
        _ => None,
    })
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
