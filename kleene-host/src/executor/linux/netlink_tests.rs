//! Encoding and parsing checked against bytes captured from the kernel exchange of the
//! earlier hand-written client (a throwaway netns, `send`/`recv` recorded): each request
//! below is the datagram it sent, with the sequence number it had; each dump is what came
//! back (`link_in_group_reply` was taken the same way with the typed client). Netlink is
//! host-endian; the captures were taken on x86_64.
#![cfg(target_endian = "little")]

use super::*;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Vec<u8> {
    let digits: Vec<u8> = text.bytes().filter(|b| b.is_ascii_hexdigit()).collect();
    digits.chunks(2).map(|pair| u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).unwrap()).collect()
}

fn encoded(req: Request, seq: u32) -> String {
    hex(&req.encode(seq))
}

/// The decoded messages of one captured datagram.
fn replies(capture: &str) -> Vec<RouteNetlinkMessage> {
    let datagram = unhex(capture);
    let all: Vec<_> = messages(&datagram).map(|m| m.expect("decodable")).collect();
    assert!(!all.is_empty(), "capture parses into messages");
    all.into_iter()
        .map(|m| match m.payload {
            NetlinkPayload::InnerMessage(entry) => entry,
            other => panic!("not an answer: {other:?}"),
        })
        .collect()
}

fn new_address(index: u32, addr: &str, prefix: u8) -> Request {
    let message = requests::address(index, addr.parse().unwrap(), prefix);
    Request::new(RouteNetlinkMessage::NewAddress(message), NLM_F_CREATE | NLM_F_EXCL)
}

#[test]
fn create_link_encodes_name_and_kind() {
    let req = requests::new_link("br0", "bridge").unwrap();
    // Captured with IFLA_LINKINFO as 0x8012 (NLA_F_NESTED set); the crate, like iproute2,
    // sends plain 0x0012, which the kernel parses alike (nla_parse_nested_deprecated).
    assert_eq!(
        encoded(req, 2),
        "38000000100005060200000000000000000000000000000000000000000000000800030062723000\
         100012000b0001006272696467650000"
    );
}

#[test]
fn a_link_is_born_in_kleenes_group() {
    // The same request with IFLA_GROUP (type 27, 8 bytes) 0x4b4c4e45 appended: the length grows
    // from 0x38 to 0x40.
    let req = requests::in_group(requests::new_link("br0", "bridge").unwrap(), 0x4b4c_4e45);
    assert_eq!(
        encoded(req, 2),
        "40000000100005060200000000000000000000000000000000000000000000000800030062723000\
         100012000b000100627269646765000008001b00454e4c4b"
    );
}

#[test]
fn create_veth_puts_the_peer_and_its_netns_fd_inside_the_link_info() {
    let req = requests::new_veth("ve0", "vp0", 4).unwrap();
    // As captured but for NLA_F_NESTED on IFLA_LINKINFO and IFLA_INFO_DATA (see above).
    assert_eq!(
        encoded(req, 3),
        "6000000010000506030000000000000000000000000000000000000000000000080003007665300038001200\
         090001007665746800000000280002002400010000000000000000000000000000000000080003007670300008001c0004000000"
    );
}

#[test]
fn link_changes_encode_one_attribute_each() {
    let master = requests::change_link("ve0", LinkAttribute::Controller(2)).unwrap();
    assert_eq!(
        encoded(master, 5),
        "3000000010000500050000000000000000000000000000000000000000000000080003007665300008000a0002000000"
    );
    let mac = requests::change_link("br0", LinkAttribute::Address(vec![0x02, 0x42, 0xac, 0x11, 0x00, 0x02])).unwrap();
    assert_eq!(
        encoded(mac, 7),
        "340000001000050007000000000000000000000000000000000000000000000008000300627230000a0001000242ac1100020000"
    );
    // IFLA_MTU (type 4, 8 bytes), 1450 = 0x05aa: the same request as the MAC's but for the
    // attribute, written out by hand from rtnetlink(7) rather than captured.
    let mtu = requests::change_link("br0", LinkAttribute::Mtu(1450)).unwrap();
    assert_eq!(
        encoded(mtu, 7),
        "3000000010000500070000000000000000000000000000000000000000000000080003006272300008000400aa050000"
    );
    let group = requests::change_link("d1", LinkAttribute::Group(0x6b6c_10ab)).unwrap();
    assert_eq!(
        encoded(group, 0x23),
        "3000000010000500230000000000000000000000000000000000000000000000070003006431000008001b00ab106c6b"
    );
}

#[test]
fn set_up_and_down_touch_only_the_up_flag() {
    assert_eq!(
        encoded(requests::set_up("br0", true).unwrap(), 9),
        "28000000100005000900000000000000000000000000000001000000010000000800030062723000"
    );
    assert_eq!(
        encoded(requests::set_up("vp0", false).unwrap(), 10),
        "28000000100005000a00000000000000000000000000000000000000010000000800030076703000"
    );
}

#[test]
fn retiring_sets_down_and_the_group_in_one_request() {
    // ifi_flags 0 with change mask IFF_UP, IFLA_IFNAME "kv1", IFLA_GROUP 0x4b4c4e44.
    assert_eq!(
        encoded(requests::retire("kv1", 0x4b4c_4e44).unwrap(), 0x28),
        "3000000010000500280000000000000000000000000000000000000001000000080003006b76310008001b00444e4c4b"
    );
}

#[test]
fn deletes_by_name_and_by_group() {
    assert_eq!(
        encoded(requests::del_link("br0").unwrap(), 0x27),
        "28000000110005002700000000000000000000000000000000000000000000000800030062723000"
    );
    assert_eq!(
        encoded(requests::del_group(0x6b6c_10ab), 0x26),
        "280000001100050026000000000000000000000000000000000000000000000008001b00ab106c6b"
    );
}

#[test]
fn v4_addresses_carry_a_broadcast_below_31_bits() {
    let slash24 = new_address(2, "10.88.0.1", 24);
    assert_eq!(
        encoded(slash24, 0x0e),
        "30000000140005060e000000000000000218000002000000080002000a580001080001000a580001080004000a5800ff"
    );
    let slash31 = new_address(3, "10.77.0.0", 31);
    assert_eq!(
        encoded(slash31, 0x10),
        "28000000140005061000000000000000021f000003000000080002000a4d0000080001000a4d0000"
    );
    let delete =
        Request::new(RouteNetlinkMessage::DelAddress(requests::address(2, "10.88.0.1".parse().unwrap(), 24)), 0);
    assert_eq!(
        encoded(delete, 0x1d),
        "30000000150005001d000000000000000218000002000000080002000a580001080001000a580001080004000a5800ff"
    );
}

#[test]
fn v6_addresses_skip_duplicate_address_detection() {
    let req = new_address(2, "fd00:88::1", 64);
    assert_eq!(
        encoded(req, 0x12),
        "2c0000001400050612000000000000000a4002000200000014000100fd000088000000000000000000000001"
    );
}

#[test]
fn default_routes_in_the_main_table() {
    assert_eq!(
        encoded(requests::add_default_route("10.88.0.2".parse().unwrap()), 0x13),
        "2400000018000506130000000000000002000000fe03000100000000080005000a580002"
    );
    assert_eq!(
        encoded(requests::add_default_route("fd00:88::2".parse().unwrap()), 0x14),
        "300000001800050614000000000000000a000000fe0300010000000014000500fd000088000000000000000000000002"
    );
    assert_eq!(
        encoded(requests::del_default_route("10.88.0.2".parse().unwrap()), 0x1b),
        "24000000190005001b0000000000000002000000fe00ff0000000000080005000a580002"
    );
}

#[test]
fn lookups_and_dumps() {
    assert_eq!(
        encoded(requests::get_link("br0").unwrap(), 0x15),
        "28000000120005001500000000000000000000000000000000000000000000000800030062723000"
    );
    assert_eq!(
        encoded(requests::get_link_by_index(2), 0x1a),
        "20000000120005001a0000000000000000000000020000000000000000000000"
    );
    assert_eq!(
        encoded(requests::dump_links(), 0x17),
        "2000000012000503170000000000000000000000000000000000000000000000"
    );
    assert_eq!(encoded(requests::dump_addresses(), 0x18), "180000001600050318000000000000000000000000000000");
    assert_eq!(encoded(requests::dump_routes(), 0x19), "1c0000001a000503190000000000000002000000fe00000000000000");
}

#[test]
fn bad_names_are_refused_before_anything_is_encoded() {
    for name in ["", "a-name-of-16-chr", "a/b", "a b", ".."] {
        let err = requests::new_link(name, "bridge").err().expect(name);
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{name:?}");
    }
}

#[test]
fn link_dump_parses_kind_master_alias_and_bridge_port() {
    let links: Vec<LinkInfo> =
        replies(include_str!("netlink_captures/links_dump.hex")).iter().filter_map(parse_link).collect();
    let link = |index: u32, name: &str, kind: Option<&str>, master, alias: Option<&str>, bridge_port| LinkInfo {
        index,
        name: name.into(),
        kind: kind.map(Into::into),
        up: true,
        master,
        alias: alias.map(Into::into),
        group: 0,
        bridge_port,
        link: None,
        // IFLA_MTU: the loopback's 64 KiB, Ethernet's 1500 for the rest.
        mtu: if name == "lo" { 65536 } else { 1500 },
    };
    // The two ends of the pair name each other (IFLA_LINK).
    let peer = |l: LinkInfo, peer: u32| LinkInfo { link: Some(peer), ..l };
    assert_eq!(
        links,
        [
            link(1, "lo", None, None, None, None),
            link(2, "br0", Some("bridge"), None, Some("kleene net one"), None),
            peer(link(3, "vp0", Some("veth"), None, None, None), 4),
            peer(link(4, "ve0", Some("veth"), Some(2), None, Some(1)), 3),
        ]
    );
}

#[test]
fn single_link_reply_parses_like_a_dump_entry() {
    let replies = replies(include_str!("netlink_captures/link_br0_reply.hex"));
    let [reply] = replies.as_slice() else { panic!("one reply, got {}", replies.len()) };
    let link = parse_link(reply).unwrap();
    assert_eq!((link.index, link.name.as_str(), link.kind.as_deref()), (2, "br0", Some("bridge")));
}

#[test]
fn link_reply_parses_the_interface_group() {
    // A bridge g0, down, moved to group 0x6b6c0001 (as `delete_links` does) and looked up.
    let replies = replies(include_str!("netlink_captures/link_in_group_reply.hex"));
    let [reply] = replies.as_slice() else { panic!("one reply, got {}", replies.len()) };
    let link = parse_link(reply).unwrap();
    assert_eq!((link.name.as_str(), link.group, link.up), ("g0", 0x6b6c_0001, false));
}

#[test]
fn address_dump_parses_both_families_with_prefixes() {
    let addresses: Vec<(u32, IpAddr, u8)> =
        replies(include_str!("netlink_captures/addresses_dump.hex")).iter().filter_map(parse_address).collect();
    let expected: Vec<(u32, IpAddr, u8)> = [
        (1, "127.0.0.1", 8),
        (2, "10.88.0.1", 24),
        (3, "10.77.0.0", 31),
        (1, "::1", 128),
        (2, "fd00:88::1", 64),
        (2, "fe80::42:acff:fe11:2", 64),
        (3, "fe80::6092:a2ff:fe92:5b7", 64),
        (4, "fe80::9066:d7ff:fe56:a199", 64),
    ]
    .into_iter()
    .map(|(index, addr, prefix)| (index, addr.parse().unwrap(), prefix))
    .collect();
    assert_eq!(addresses, expected);
}

#[test]
fn route_dump_yields_the_default_route_interface_only() {
    let routes = replies(include_str!("netlink_captures/routes_dump.hex"));
    // The dump also holds the subnet routes of 10.88.0.0/24 and 10.77.0.0/31 and the local table.
    assert!(routes.len() > 1, "{} routes", routes.len());
    let oifs: Vec<u32> = routes.iter().filter_map(default_route_oif).collect();
    assert_eq!(oifs, [2]);
}

/// The verdict of a captured NLMSG_ERROR datagram, as `exchange` reads it.
fn verdict(capture: &str) -> io::Result<()> {
    let datagram = unhex(capture);
    let mut all = messages(&datagram);
    let message = all.next().expect("one message").expect("decodable");
    assert!(all.next().is_none());
    match reply(message.payload) {
        Reply::End(outcome) => outcome,
        _ => panic!("not an ack or error"),
    }
}

#[test]
fn kernel_errors_keep_their_kind() {
    // Creating br0 twice: EEXIST, echoing the request.
    let exists = verdict(
        "4c000000020000001e000000ab100000efffffff38000000100005061e000000000000000000000000000000000000000000000008000300\
         62723000100012800b0001006272696467650000",
    );
    assert_eq!(exists.unwrap_err().kind(), io::ErrorKind::AlreadyExists);
    // Deleting a missing link: ENODEV, which the methods name as NotFound.
    let missing = verdict(
        "40000000020000001f000000ab100000edffffff2c000000110005001f000000000000000000000000000000000000000000000000\
         0c0003006e6f746865726500",
    )
    .unwrap_err();
    assert_eq!(missing.raw_os_error(), Some(libc::ENODEV));
    assert_eq!(nodev_to_not_found(missing, "nothere").kind(), io::ErrorKind::NotFound);
    // An ack.
    assert!(verdict("240000000200000109000000ab1000000000000028000000100005000900000000000000").is_ok());
}
