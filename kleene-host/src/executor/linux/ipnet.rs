//! The "ipnet" driver: confine a cgroup's processes to a set of IP
//! addresses, like a FreeBSD jail's `ip4.addr`/`ip6.addr`.
//!
//! Small eBPF programs are assembled here at run time and attached to the
//! container's cgroup with cgroup-v2 socket hooks through the raw bpf(2)
//! syscall, so no clang, libbpf or BTF is needed.
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

use std::collections::BTreeMap;
use std::ffi::CString;
use std::fs::File;
use std::io;
use std::mem::size_of;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

use libc::{c_long, EADDRNOTAVAIL, ENETUNREACH, EPERM};

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

/// One eBPF instruction, laid out exactly like the kernel's `struct bpf_insn`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Insn {
    pub code: u8,
    /// dst register in the low nibble, src register in the high nibble.
    pub regs: u8,
    pub off: i16,
    pub imm: i32,
}

/// The cgroup hooks the driver uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AttachPoint {
    Bind4,
    Bind6,
    Connect4,
    Connect6,
    Sendmsg4,
    Sendmsg6,
    SockCreate,
    /// Packets delivered to the container's sockets.
    Ingress,
}

/// A program ready to be loaded at `attach`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Program {
    pub attach: AttachPoint,
    pub insns: Vec<Insn>,
}

impl AttachPoint {
    pub const ALL: [AttachPoint; 8] = [
        AttachPoint::Bind4,
        AttachPoint::Bind6,
        AttachPoint::Connect4,
        AttachPoint::Connect6,
        AttachPoint::Sendmsg4,
        AttachPoint::Sendmsg6,
        AttachPoint::SockCreate,
        AttachPoint::Ingress,
    ];

    /// `enum bpf_attach_type`.
    fn attach_type(self) -> u32 {
        match self {
            AttachPoint::Ingress => 0,
            AttachPoint::SockCreate => 2,
            AttachPoint::Bind4 => 8,
            AttachPoint::Bind6 => 9,
            AttachPoint::Connect4 => 10,
            AttachPoint::Connect6 => 11,
            AttachPoint::Sendmsg4 => 14,
            AttachPoint::Sendmsg6 => 15,
        }
    }

    /// `enum bpf_prog_type`: CGROUP_SKB for packets, CGROUP_SOCK for socket
    /// creation, else CGROUP_SOCK_ADDR.
    fn prog_type(self) -> u32 {
        match self {
            AttachPoint::Ingress => 8,
            AttachPoint::SockCreate => 9,
            _ => 18,
        }
    }

    /// Program name (max 15 bytes); it is how `apply` recognises its own
    /// programs among others attached to the same cgroup.
    pub fn name(self) -> &'static str {
        match self {
            AttachPoint::Bind4 => "kl_ipnet_bind4",
            AttachPoint::Bind6 => "kl_ipnet_bind6",
            AttachPoint::Connect4 => "kl_ipnet_conn4",
            AttachPoint::Connect6 => "kl_ipnet_conn6",
            AttachPoint::Sendmsg4 => "kl_ipnet_send4",
            AttachPoint::Sendmsg6 => "kl_ipnet_send6",
            AttachPoint::SockCreate => "kl_ipnet_sock",
            AttachPoint::Ingress => "kl_ipnet_in",
        }
    }
}

// ---------------------------------------------------------------------------
// Program construction
// ---------------------------------------------------------------------------

/// Builds the programs for `r`, one per attach point (always all of them, so
/// a later `apply` can replace each one in place).
pub fn programs(r: &Restriction) -> Vec<Program> {
    AttachPoint::ALL.iter().map(|&attach| Program { attach, insns: build(attach, r) }).collect()
}

fn build(attach: AttachPoint, r: &Restriction) -> Vec<Insn> {
    let mut a = Asm::default();
    // The context pointer must survive helper calls, so keep it in r6.
    a.mov64_reg(CTX, 1);
    match attach {
        AttachPoint::Bind4 => bind4(&mut a, r),
        AttachPoint::Bind6 => bind6(&mut a, r),
        AttachPoint::Connect4 => connect4(&mut a, r),
        AttachPoint::Connect6 => connect6(&mut a, r),
        AttachPoint::Sendmsg4 => sendmsg4(&mut a, r),
        AttachPoint::Sendmsg6 => sendmsg6(&mut a, r),
        AttachPoint::SockCreate => sock_create(&mut a),
        AttachPoint::Ingress => ingress(&mut a, r),
    }
    a.finish()
}

// Registers.
const R0: u8 = 0;
const R1: u8 = 1;
const R2: u8 = 2;
const R3: u8 = 3;
const R4: u8 = 4;
const FP: u8 = 10;
const CTX: u8 = 6;
/// The four words of an IPv6 address are held in r2..r5.
const V6_REGS: [u8; 4] = [2, 3, 4, 5];

// struct bpf_sock_addr offsets.
const USER_IP4: i16 = 4;
const USER_IP6: i16 = 8;
const MSG_SRC_IP4: i16 = 40;
const MSG_SRC_IP6: i16 = 44;
/// The `struct bpf_sock *` of the socket (8 bytes).
const ADDR_SK: i16 = 64;
// struct bpf_sock offsets.
const SOCK_TYPE: i16 = 8;
const SOCK_PROTOCOL: i16 = 12;
const SOCK_SRC_IP4: i16 = 24;
const SOCK_SRC_IP6: i16 = 28;
/// Local port, host byte order; 0 until the socket is bound.
const SOCK_SRC_PORT: i16 = 44;
// struct __sk_buff offset: the EtherType, network byte order.
const SKB_PROTOCOL: i16 = 16;
// Destination offsets in the IP header (a cgroup skb program's packet starts there).
const IP4_DST: i32 = 16;
const IP6_DST: i32 = 24;

// Helpers.
const HELPER_SKB_LOAD_BYTES: i32 = 26;
const HELPER_BIND: i32 = 64;
const HELPER_SET_RETVAL: i32 = 187;

const SOCK_RAW: i32 = 3;
const SOCK_DGRAM: i32 = 2;
const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;

/// Addresses are compared as the u32 the kernel loads from memory (network
/// byte order bytes read in host order), so constants are built the same way.
fn word(bytes: [u8; 4]) -> i32 {
    i32::from_ne_bytes(bytes)
}

fn v4_word(a: Ipv4Addr) -> i32 {
    word(a.octets())
}

fn v6_words(a: Ipv6Addr) -> [i32; 4] {
    let o = a.octets();
    [0, 1, 2, 3].map(|i| word([o[4 * i], o[4 * i + 1], o[4 * i + 2], o[4 * i + 3]]))
}

/// Third word of a v4-mapped address (::ffff:a.b.c.d).
fn mapped_word() -> i32 {
    word([0, 0, 0xff, 0xff])
}

fn loopback6_words() -> [i32; 4] {
    v6_words(Ipv6Addr::LOCALHOST)
}

fn bind4(a: &mut Asm, r: &Restriction) {
    let Some(&primary) = r.v4.first() else {
        a.ja(Exit::Deny(EADDRNOTAVAIL));
        return;
    };
    a.ldx_w(R2, CTX, USER_IP4);
    jump_if_v4_listed(a, R2, &r.v4, Exit::Allow);
    a.jne32_imm(R2, 0, Exit::Deny(EADDRNOTAVAIL));
    // Wildcard bind: pin it to the primary address.
    a.mov64_imm(R2, v4_word(primary));
    a.stx_w(CTX, R2, USER_IP4);
    a.ja(Exit::Allow);
}

fn bind6(a: &mut Asm, r: &Restriction) {
    load_v6(a, USER_IP6);
    let native = a.new_label();
    jump_unless_v4_mapped(a, native);
    // v4-mapped addresses reach IPv4, so police them with the v4 list.
    jump_if_v4_listed(a, V6_REGS[3], &r.v4, Exit::Allow);
    a.ja(Exit::Deny(EADDRNOTAVAIL));

    a.bind(native);
    for &addr in &r.v6 {
        jump_if_v6_equal(a, v6_words(addr), Exit::Allow);
    }
    for reg in V6_REGS {
        a.jne32_imm(reg, 0, Exit::Deny(EADDRNOTAVAIL));
    }
    // Wildcard bind (::): pin it to the primary address.
    match r.v6.first() {
        Some(&primary) => {
            store_v6(a, USER_IP6, v6_words(primary));
            a.ja(Exit::Allow);
        }
        None => a.ja(Exit::Deny(EADDRNOTAVAIL)),
    }
}

fn connect4(a: &mut Asm, r: &Restriction) {
    let Some(&primary) = r.v4.first() else {
        a.ja(Exit::Deny(ENETUNREACH));
        return;
    };
    deny_if_autobound(a, &[SOCK_SRC_IP4]);
    a.ldx_w(R2, CTX, USER_IP4);
    map_loopback4(a, R2, primary, USER_IP4);
    by_destination4(a, R2, &r.local4, |a, addr| bpf_bind4(a, v4_word(addr)));
    bpf_bind4(a, v4_word(primary));
    a.ja(Exit::Allow);
}

/// For each (address, prefix) whose network holds the IPv4 destination in `dst`: emit `then`
/// for that address and allow. Falls through when none matches; clobbers r3.
fn by_destination4(a: &mut Asm, dst: u8, locals: &[(Ipv4Addr, u8)], mut then: impl FnMut(&mut Asm, Ipv4Addr)) {
    for &(addr, prefix) in locals {
        let other = a.new_label();
        let mask = prefix_mask(prefix, 32) as u32;
        a.mov32_reg(R3, dst);
        a.and32_imm(R3, word(mask.to_be_bytes()));
        a.jne32_imm(R3, word((u32::from(addr) & mask).to_be_bytes()), other);
        then(a, addr);
        a.ja(Exit::Allow);
        a.bind(other);
    }
}

/// The IPv6 twin of [`by_destination4`], for a destination held in r2..r5; clobbers r1.
fn by_destination6(a: &mut Asm, locals: &[(Ipv6Addr, u8)], mut then: impl FnMut(&mut Asm, Ipv6Addr)) {
    for &(addr, prefix) in locals {
        let other = a.new_label();
        jump_unless_in_v6_net(a, addr, prefix, other);
        then(a, addr);
        a.ja(Exit::Allow);
        a.bind(other);
    }
}

/// The network mask of `prefix` in an address of `width` bits, as an integer.
fn prefix_mask(prefix: u8, width: u32) -> u128 {
    let all = if width == 32 { u32::MAX as u128 } else { u128::MAX };
    match prefix as u32 {
        0 => 0,
        p if p >= width => all,
        p => all & !((1u128 << (width - p)) - 1),
    }
}

/// Jump to `target` unless the IPv6 address in r2..r5 lies in `net`/`prefix`; clobbers r1.
fn jump_unless_in_v6_net(a: &mut Asm, net: Ipv6Addr, prefix: u8, target: Label) {
    let mask = prefix_mask(prefix, 128).to_be_bytes();
    let net = (u128::from(net) & prefix_mask(prefix, 128)).to_be_bytes();
    for (i, reg) in V6_REGS.into_iter().enumerate() {
        let m: [u8; 4] = mask[4 * i..4 * i + 4].try_into().expect("4 bytes");
        let n: [u8; 4] = net[4 * i..4 * i + 4].try_into().expect("4 bytes");
        a.mov32_reg(R1, reg);
        a.and32_imm(R1, word(m));
        a.jne32_imm(R1, word(n), target);
    }
}

fn connect6(a: &mut Asm, r: &Restriction) {
    deny_if_autobound(a, &[0, 4, 8, 12].map(|i| SOCK_SRC_IP6 + i));
    load_v6(a, USER_IP6);
    let native = a.new_label();
    jump_unless_v4_mapped(a, native);
    match r.v4.first() {
        Some(&primary) => {
            map_loopback4(a, V6_REGS[3], primary, USER_IP6 + 12);
            // A dual-stack socket reaches IPv4 from ::ffff:<primary v4>.
            bpf_bind6(a, [0, 0, mapped_word(), v4_word(primary)]);
            a.ja(Exit::Allow);
        }
        None => a.ja(Exit::Deny(ENETUNREACH)),
    }

    a.bind(native);
    let Some(&primary) = r.v6.first() else {
        a.ja(Exit::Deny(ENETUNREACH));
        return;
    };
    map_loopback6(a, primary);
    by_destination6(a, &r.local6, |a, addr| bpf_bind6(a, v6_words(addr)));
    bpf_bind6(a, v6_words(primary));
    a.ja(Exit::Allow);
}

fn sendmsg4(a: &mut Asm, r: &Restriction) {
    let Some(&primary) = r.v4.first() else {
        a.ja(Exit::Deny(ENETUNREACH));
        return;
    };
    a.ldx_w(R2, CTX, USER_IP4);
    map_loopback4(a, R2, primary, USER_IP4);
    a.ldx_w(R2, CTX, MSG_SRC_IP4);
    jump_if_v4_listed(a, R2, &r.v4, Exit::Allow);
    a.jne32_imm(R2, 0, Exit::Deny(EADDRNOTAVAIL));
    // No source chosen (unbound socket, no IP_PKTINFO): its address in the destination's
    // network, else the primary.
    a.ldx_w(R4, CTX, USER_IP4);
    by_destination4(a, R4, &r.local4, |a, addr| {
        a.mov64_imm(R2, v4_word(addr));
        a.stx_w(CTX, R2, MSG_SRC_IP4);
    });
    a.mov64_imm(R2, v4_word(primary));
    a.stx_w(CTX, R2, MSG_SRC_IP4);
    a.ja(Exit::Allow);
}

fn sendmsg6(a: &mut Asm, r: &Restriction) {
    load_v6(a, USER_IP6);
    let native = a.new_label();
    jump_unless_v4_mapped(a, native);
    // The kernel hands v4-mapped sends to the IPv4 path, where the UDP4_SENDMSG
    // program maps loopback and picks the source; only refuse a family without
    // addresses.
    if r.v4.is_empty() {
        a.ja(Exit::Deny(ENETUNREACH));
    } else {
        a.ja(Exit::Allow);
    }

    a.bind(native);
    let Some(&primary) = r.v6.first() else {
        a.ja(Exit::Deny(ENETUNREACH));
        return;
    };
    map_loopback6(a, primary);
    load_v6(a, MSG_SRC_IP6);
    for &addr in &r.v6 {
        jump_if_v6_equal(a, v6_words(addr), Exit::Allow);
    }
    for reg in V6_REGS {
        a.jne32_imm(reg, 0, Exit::Deny(EADDRNOTAVAIL));
    }
    load_v6(a, USER_IP6);
    by_destination6(a, &r.local6, |a, addr| store_v6(a, MSG_SRC_IP6, v6_words(addr)));
    store_v6(a, MSG_SRC_IP6, v6_words(primary));
    a.ja(Exit::Allow);
}

/// Raw sockets and ping sockets (datagram ICMP, which `ping_group_range` may open to
/// anyone) are refused: both send ICMP from any source to any destination, past the
/// address hooks.
fn sock_create(a: &mut Asm) {
    a.ldx_w(R2, CTX, SOCK_TYPE);
    a.jeq32_imm(R2, SOCK_RAW, Exit::Deny(EPERM));
    let not_dgram = a.new_label();
    a.jne32_imm(R2, SOCK_DGRAM, not_dgram);
    a.ldx_w(R3, CTX, SOCK_PROTOCOL);
    a.jeq32_imm(R3, libc::IPPROTO_ICMP, Exit::Deny(EPERM));
    a.jeq32_imm(R3, libc::IPPROTO_ICMPV6, Exit::Deny(EPERM));
    a.bind(not_dgram);
    a.ja(Exit::Allow);
}

/// A cgroup skb ingress program: pass an IP packet only if its destination is one of the
/// container's addresses; drop everything else.
///
/// It runs for every packet the kernel delivers to a socket of the cgroup (after the
/// socket lookup and NAT, from sk_filter), so a listener or UDP socket that took the
/// wildcard without a bind hook (listen() unbound, auto-bind by sendto()) still only hears
/// its own addresses. It drops rather than resets: a cgroup skb program cannot answer, so a
/// client of another address sees a timeout. nftables `socket cgroupv2` on input could do
/// the same, but it resolves the cgroup when the rule is loaded (a restarted container
/// would need a reload), costs a second socket lookup per packet, and would put a
/// driver's confinement into the host's firewall; this program lives and dies with the
/// cgroup like the socket hooks.
///
/// There is no egress twin checking the source: cgroup egress runs after POSTROUTING, so
/// it sees masqueraded and un-DNATed sources, which are host addresses by design.
fn ingress(a: &mut Asm, r: &Restriction) {
    let (v4, v6) = (a.new_label(), a.new_label());
    a.ldx_w(R2, CTX, SKB_PROTOCOL);
    a.jeq32_imm(R2, i32::from(ETH_P_IP.to_be()), v4);
    a.jeq32_imm(R2, i32::from(ETH_P_IPV6.to_be()), v6);
    a.ja(Exit::Drop);

    a.bind(v4);
    if r.v4.is_empty() {
        a.ja(Exit::Drop);
    } else {
        load_packet(a, IP4_DST, 4);
        a.ldx_w(R2, FP, -16);
        jump_if_v4_listed(a, R2, &r.v4, Exit::Allow);
        a.ja(Exit::Drop);
    }

    a.bind(v6);
    if r.v6.is_empty() {
        a.ja(Exit::Drop);
    } else {
        load_packet(a, IP6_DST, 16);
        for (i, reg) in (0i16..).zip(V6_REGS) {
            a.ldx_w(reg, FP, -16 + 4 * i);
        }
        for &addr in &r.v6 {
            jump_if_v6_equal(a, v6_words(addr), Exit::Allow);
        }
        a.ja(Exit::Drop);
    }
}

/// bpf_skb_load_bytes(skb, off, fp-16, len); a packet too short to hold it is dropped.
fn load_packet(a: &mut Asm, off: i32, len: i32) {
    a.mov64_reg(R1, CTX);
    a.mov64_imm(R2, off);
    a.mov64_reg(R3, FP);
    a.add64_imm(R3, -16);
    a.mov64_imm(R4, len);
    a.call(HELPER_SKB_LOAD_BYTES);
    a.jne32_imm(R0, 0, Exit::Drop);
}

/// Jump to `target` if the 32-bit register holds one of `list`.
fn jump_if_v4_listed(a: &mut Asm, reg: u8, list: &[Ipv4Addr], target: impl Into<Target>) {
    let target = target.into();
    for &addr in list {
        a.jeq32_imm(reg, v4_word(addr), target);
    }
}

/// Jump to `target` if r2..r5 hold `words`.
fn jump_if_v6_equal(a: &mut Asm, words: [i32; 4], target: impl Into<Target>) {
    let differs = a.new_label();
    for (reg, w) in V6_REGS.into_iter().zip(words) {
        a.jne32_imm(reg, w, differs);
    }
    a.ja(target);
    a.bind(differs);
}

/// Jump to `target` unless r2..r4 are the ::ffff: prefix.
fn jump_unless_v4_mapped(a: &mut Asm, target: Label) {
    a.jne32_imm(V6_REGS[0], 0, target);
    a.jne32_imm(V6_REGS[1], 0, target);
    a.jne32_imm(V6_REGS[2], mapped_word(), target);
}

/// If `reg` holds an address in 127.0.0.0/8, make it `primary`, in the register and in
/// the ctx field at `field` (the destination), as a jail without a loopback address does;
/// clobbers r3.
fn map_loopback4(a: &mut Asm, reg: u8, primary: Ipv4Addr, field: i16) {
    let other = a.new_label();
    a.mov32_reg(R3, reg);
    a.and32_imm(R3, word([0xff, 0, 0, 0]));
    a.jne32_imm(R3, word([127, 0, 0, 0]), other);
    a.mov64_imm(reg, v4_word(primary));
    a.stx_w(CTX, reg, field);
    a.bind(other);
}

/// If the destination in r2..r5 is ::1, make it `primary` (registers and user_ip6).
fn map_loopback6(a: &mut Asm, primary: Ipv6Addr) {
    let other = a.new_label();
    for (reg, w) in V6_REGS.into_iter().zip(loopback6_words()) {
        a.jne32_imm(reg, w, other);
    }
    for (i, (reg, w)) in (0i16..).zip(V6_REGS.into_iter().zip(v6_words(primary))) {
        a.mov64_imm(reg, w);
        a.stx_w(CTX, reg, USER_IP6 + 4 * i);
    }
    a.bind(other);
}

/// Refuse (EADDRNOTAVAIL) a connect on a socket that has a local port but no local
/// address (the words of the bpf_sock at `addr_fields` are all zero). Every explicit bind
/// goes through the bind hook and gets an address, so this is a socket auto-bound to the
/// wildcard by an unconnected send: connecting it would make the kernel take the route's
/// (a host's) source address, and bpf_bind cannot rebind a socket that has a port.
/// Clobbers r1, r2.
fn deny_if_autobound(a: &mut Asm, addr_fields: &[i16]) {
    let fine = a.new_label();
    a.ldx_dw(R1, CTX, ADDR_SK);
    a.ldx_w(R2, R1, SOCK_SRC_PORT);
    a.jeq32_imm(R2, 0, fine);
    for &off in addr_fields {
        a.ldx_w(R2, R1, off);
        a.jne32_imm(R2, 0, fine);
    }
    a.ja(Exit::Deny(EADDRNOTAVAIL));
    a.bind(fine);
}

fn load_v6(a: &mut Asm, off: i16) {
    for (i, reg) in (0i16..).zip(V6_REGS) {
        a.ldx_w(reg, CTX, off + 4 * i);
    }
}

/// Write an IPv6 address into a ctx field (the verifier forbids BPF_ST
/// immediates into ctx, so go through r2).
fn store_v6(a: &mut Asm, off: i16, words: [i32; 4]) {
    for (i, w) in (0i16..).zip(words) {
        a.mov64_imm(R2, w);
        a.stx_w(CTX, R2, off + 4 * i);
    }
}

/// bpf_bind(ctx, &sockaddr_in{AF_INET, port 0, addr}, 16). Port 0 keeps
/// the kernel's normal port choice (bpf_bind defers it). The result is
/// ignored: it fails with EINVAL when the program already bound the socket
/// itself, which went through the bind hook and is therefore fine.
fn bpf_bind4(a: &mut Asm, addr: i32) {
    a.st_dw(FP, -16, 0);
    a.st_dw(FP, -8, 0);
    a.st_h(FP, -16, libc::AF_INET);
    a.st_w(FP, -12, addr);
    call_bind(a, -16, 16);
}

/// bpf_bind with a 28-byte sockaddr_in6 built at fp-32.
fn bpf_bind6(a: &mut Asm, words: [i32; 4]) {
    for off in [-32, -24, -16, -8] {
        a.st_dw(FP, off, 0);
    }
    a.st_h(FP, -32, libc::AF_INET6);
    for (i, w) in (0i16..).zip(words) {
        a.st_w(FP, -24 + 4 * i, w);
    }
    call_bind(a, -32, 28);
}

fn call_bind(a: &mut Asm, stack_off: i32, len: i32) {
    a.mov64_reg(R1, CTX);
    a.mov64_reg(R2, FP);
    a.add64_imm(R2, stack_off);
    a.mov64_imm(R3, len);
    a.call(HELPER_BIND);
}

// ---------------------------------------------------------------------------
// A tiny assembler with forward labels and shared exit blocks
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Exit {
    Allow,
    /// Return 0 after bpf_set_retval(-errno) so userspace sees `errno`
    /// instead of the default EPERM.
    Deny(i32),
    /// Return 0 (a cgroup skb program drops the packet).
    Drop,
}

#[derive(Clone, Copy, Debug)]
struct Label(usize);

#[derive(Clone, Copy, Debug)]
enum Target {
    Label(Label),
    Exit(Exit),
}

impl From<Label> for Target {
    fn from(l: Label) -> Self {
        Target::Label(l)
    }
}

impl From<Exit> for Target {
    fn from(e: Exit) -> Self {
        Target::Exit(e)
    }
}

#[derive(Default)]
struct Asm {
    insns: Vec<Insn>,
    labels: Vec<Option<usize>>,
    fixups: Vec<(usize, Label)>,
    /// Exit blocks are emitted once, at the end, and only when used: the
    /// verifier rejects unreachable instructions.
    exits: BTreeMap<Exit, Label>,
}

// Opcode parts.
const LDX_W_MEM: u8 = 0x61;
const LDX_DW_MEM: u8 = 0x79;
const STX_W_MEM: u8 = 0x63;
const ST_W_MEM: u8 = 0x62;
const ST_H_MEM: u8 = 0x6a;
const ST_DW_MEM: u8 = 0x7a;
const ALU64_ADD_K: u8 = 0x07;
const ALU64_MOV_K: u8 = 0xb7;
const ALU64_MOV_X: u8 = 0xbf;
const ALU_AND_K: u8 = 0x54;
const ALU_MOV_X: u8 = 0xbc;
const JMP_JA: u8 = 0x05;
const JMP_CALL: u8 = 0x85;
const JMP_EXIT: u8 = 0x95;
const JMP32_JEQ_K: u8 = 0x16;
const JMP32_JNE_K: u8 = 0x56;

impl Asm {
    fn emit(&mut self, code: u8, dst: u8, src: u8, off: i16, imm: i32) {
        self.insns.push(Insn { code, regs: (src << 4) | dst, off, imm });
    }

    fn new_label(&mut self) -> Label {
        self.labels.push(None);
        Label(self.labels.len() - 1)
    }

    fn bind(&mut self, l: Label) {
        self.labels[l.0] = Some(self.insns.len());
    }

    fn label_for(&mut self, t: Target) -> Label {
        match t {
            Target::Label(l) => l,
            Target::Exit(e) => match self.exits.get(&e) {
                Some(&l) => l,
                None => {
                    let l = self.new_label();
                    self.exits.insert(e, l);
                    l
                }
            },
        }
    }

    fn jump(&mut self, code: u8, dst: u8, imm: i32, t: impl Into<Target>) {
        let l = self.label_for(t.into());
        self.fixups.push((self.insns.len(), l));
        self.emit(code, dst, 0, 0, imm);
    }

    fn ja(&mut self, t: impl Into<Target>) {
        self.jump(JMP_JA, 0, 0, t);
    }
    fn jeq32_imm(&mut self, dst: u8, imm: i32, t: impl Into<Target>) {
        self.jump(JMP32_JEQ_K, dst, imm, t);
    }
    fn jne32_imm(&mut self, dst: u8, imm: i32, t: impl Into<Target>) {
        self.jump(JMP32_JNE_K, dst, imm, t);
    }
    fn ldx_w(&mut self, dst: u8, src: u8, off: i16) {
        self.emit(LDX_W_MEM, dst, src, off, 0);
    }
    fn ldx_dw(&mut self, dst: u8, src: u8, off: i16) {
        self.emit(LDX_DW_MEM, dst, src, off, 0);
    }
    fn stx_w(&mut self, dst: u8, src: u8, off: i16) {
        self.emit(STX_W_MEM, dst, src, off, 0);
    }
    fn st_w(&mut self, dst: u8, off: i16, imm: i32) {
        self.emit(ST_W_MEM, dst, 0, off, imm);
    }
    fn st_h(&mut self, dst: u8, off: i16, imm: i32) {
        self.emit(ST_H_MEM, dst, 0, off, imm);
    }
    fn st_dw(&mut self, dst: u8, off: i16, imm: i32) {
        self.emit(ST_DW_MEM, dst, 0, off, imm);
    }
    fn mov64_imm(&mut self, dst: u8, imm: i32) {
        self.emit(ALU64_MOV_K, dst, 0, 0, imm);
    }
    fn mov64_reg(&mut self, dst: u8, src: u8) {
        self.emit(ALU64_MOV_X, dst, src, 0, 0);
    }
    fn mov32_reg(&mut self, dst: u8, src: u8) {
        self.emit(ALU_MOV_X, dst, src, 0, 0);
    }
    fn add64_imm(&mut self, dst: u8, imm: i32) {
        self.emit(ALU64_ADD_K, dst, 0, 0, imm);
    }
    fn and32_imm(&mut self, dst: u8, imm: i32) {
        self.emit(ALU_AND_K, dst, 0, 0, imm);
    }
    fn call(&mut self, helper: i32) {
        self.emit(JMP_CALL, 0, 0, 0, helper);
    }
    fn ret(&mut self, value: i32) {
        self.mov64_imm(R0, value);
        self.emit(JMP_EXIT, 0, 0, 0, 0);
    }

    /// Emit the used exit blocks and resolve all jumps.
    fn finish(mut self) -> Vec<Insn> {
        let exits = std::mem::take(&mut self.exits);
        for (exit, label) in exits {
            self.bind(label);
            match exit {
                Exit::Allow => self.ret(1),
                Exit::Deny(errno) => {
                    self.mov64_imm(R1, -errno);
                    self.call(HELPER_SET_RETVAL);
                    self.ret(0);
                }
                Exit::Drop => self.ret(0),
            }
        }
        for (at, label) in std::mem::take(&mut self.fixups) {
            let target = self.labels[label.0].expect("jump to unbound label");
            let off = target as isize - at as isize - 1;
            self.insns[at].off = i16::try_from(off).expect("jump out of range");
        }
        self.insns
    }
}

// ---------------------------------------------------------------------------
// Loading and attaching through bpf(2)
// ---------------------------------------------------------------------------

const BPF_PROG_LOAD: c_long = 5;
const BPF_PROG_ATTACH: c_long = 8;
const BPF_PROG_GET_FD_BY_ID: c_long = 13;
const BPF_OBJ_GET_INFO_BY_FD: c_long = 15;
const BPF_PROG_QUERY: c_long = 16;

const BPF_F_ALLOW_MULTI: u32 = 1 << 1;
const BPF_F_REPLACE: u32 = 1 << 2;

/// BPF_CGROUP_MAX_PROGS: the most programs one hook of a cgroup can hold.
const MAX_PROGS: usize = 64;

/// Load the programs for `r` and attach them to `cgroup`. Programs left by
/// an earlier `apply` are swapped atomically (BPF_F_REPLACE) instead of
/// stacked, so a running container's restriction changes in place. The
/// cgroup keeps the programs alive; no file descriptor outlives this call.
pub fn apply(cgroup: &Path, r: &Restriction) -> io::Result<()> {
    let dir = File::open(cgroup)?;
    // Load everything first so a verifier rejection changes nothing.
    let loaded = programs(r).iter().map(|p| Ok((p.attach, load(p)?))).collect::<io::Result<Vec<_>>>()?;
    for (attach, prog) in &loaded {
        let old = find_attached(&dir, *attach)?;
        attach_prog(&dir, *attach, prog, old.as_ref())?;
    }
    Ok(())
}

/// Number of programs attached directly to `cgroup` at the driver's hooks
/// (the driver's own and any others).
pub fn attached_count(cgroup: &Path) -> io::Result<usize> {
    let dir = File::open(cgroup)?;
    AttachPoint::ALL.iter().map(|&a| Ok(query(&dir, a)?.len())).sum()
}

fn bpf<T>(cmd: c_long, attr: &mut T) -> io::Result<i64> {
    // SAFETY: `attr` is a live, initialised #[repr(C)] bpf_attr variant and
    // its exact size is passed, so the kernel reads/writes only within it.
    let ret = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr as *mut T, size_of::<T>()) };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

fn bpf_fd<T>(cmd: c_long, attr: &mut T) -> io::Result<OwnedFd> {
    let fd = bpf(cmd, attr)?;
    let fd = i32::try_from(fd).map_err(|_| io::Error::other("bad fd from bpf(2)"))?;
    // SAFETY: the kernel just returned this fd and nobody else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn raw_fd(f: &impl AsRawFd) -> u32 {
    // fds are non-negative.
    f.as_raw_fd() as u32
}

#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

fn load(p: &Program) -> io::Result<OwnedFd> {
    match load_with_log(p, &mut []) {
        Ok(fd) => Ok(fd),
        // Load again with the verifier log to explain the failure.
        Err(_) => {
            let mut log = vec![0u8; 1 << 16];
            let err = load_with_log(p, &mut log).expect_err("verifier is deterministic");
            let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
            let log = String::from_utf8_lossy(&log[..end]);
            Err(io::Error::new(err.kind(), format!("loading {}: {err}\n{log}", p.attach.name())))
        }
    }
}

fn load_with_log(p: &Program, log: &mut [u8]) -> io::Result<OwnedFd> {
    let license = CString::new("GPL").expect("no NUL");
    let mut name = [0u8; 16];
    let n = p.attach.name().as_bytes();
    name[..n.len()].copy_from_slice(n);
    let mut attr = ProgLoadAttr {
        prog_type: p.attach.prog_type(),
        insn_cnt: p.insns.len() as u32,
        insns: p.insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        log_level: u32::from(!log.is_empty()),
        log_size: log.len() as u32,
        // All three log fields must be zero when no log is wanted.
        log_buf: if log.is_empty() { 0 } else { log.as_mut_ptr() as u64 },
        prog_name: name,
        expected_attach_type: p.attach.attach_type(),
        ..Default::default()
    };
    bpf_fd(BPF_PROG_LOAD, &mut attr)
}

#[repr(C)]
#[derive(Default)]
struct AttachAttr {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
    replace_bpf_fd: u32,
}

fn attach_prog(dir: &File, attach: AttachPoint, prog: &OwnedFd, replace: Option<&OwnedFd>) -> io::Result<()> {
    // ALLOW_MULTI keeps programs of other owners (and of parent cgroups)
    // running alongside ours.
    let mut attr = AttachAttr {
        target_fd: raw_fd(dir),
        attach_bpf_fd: raw_fd(prog),
        attach_type: attach.attach_type(),
        attach_flags: BPF_F_ALLOW_MULTI,
        replace_bpf_fd: 0,
    };
    if let Some(old) = replace {
        attr.attach_flags |= BPF_F_REPLACE;
        attr.replace_bpf_fd = raw_fd(old);
    }
    bpf(BPF_PROG_ATTACH, &mut attr).map(drop)
}

#[repr(C)]
#[derive(Default)]
struct QueryAttr {
    target_fd: u32,
    attach_type: u32,
    query_flags: u32,
    attach_flags: u32,
    prog_ids: u64,
    prog_cnt: u32,
    _pad: u32,
}

/// Ids of the programs attached directly to the cgroup at `attach`.
fn query(dir: &File, attach: AttachPoint) -> io::Result<Vec<u32>> {
    let mut ids = [0u32; MAX_PROGS];
    let mut attr = QueryAttr {
        target_fd: raw_fd(dir),
        attach_type: attach.attach_type(),
        prog_ids: ids.as_mut_ptr() as u64,
        prog_cnt: MAX_PROGS as u32,
        ..Default::default()
    };
    bpf(BPF_PROG_QUERY, &mut attr)?;
    Ok(ids[..attr.prog_cnt as usize].to_vec())
}

/// The driver's program currently attached at `attach`, recognised by name.
fn find_attached(dir: &File, attach: AttachPoint) -> io::Result<Option<OwnedFd>> {
    for id in query(dir, attach)? {
        let fd = match prog_fd_by_id(id) {
            Ok(fd) => fd,
            // Detached between query and open.
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => continue,
            Err(e) => return Err(e),
        };
        if prog_name(&fd)? == attach.name() {
            return Ok(Some(fd));
        }
    }
    Ok(None)
}

#[repr(C)]
#[derive(Default)]
struct GetFdByIdAttr {
    prog_id: u32,
    next_id: u32,
    open_flags: u32,
}

fn prog_fd_by_id(id: u32) -> io::Result<OwnedFd> {
    let mut attr = GetFdByIdAttr { prog_id: id, ..Default::default() };
    bpf_fd(BPF_PROG_GET_FD_BY_ID, &mut attr)
}

#[repr(C)]
#[derive(Default)]
struct InfoAttr {
    bpf_fd: u32,
    info_len: u32,
    info: u64,
}

/// Prefix of `struct bpf_prog_info` up to and including `name`; the kernel
/// fills only as much as we ask for.
#[repr(C)]
#[derive(Default)]
struct ProgInfo {
    prog_type: u32,
    id: u32,
    tag: [u8; 8],
    jited_prog_len: u32,
    xlated_prog_len: u32,
    jited_prog_insns: u64,
    xlated_prog_insns: u64,
    load_time: u64,
    created_by_uid: u32,
    nr_map_ids: u32,
    map_ids: u64,
    name: [u8; 16],
}

fn prog_name(fd: &OwnedFd) -> io::Result<String> {
    let mut info = ProgInfo::default();
    let mut attr = InfoAttr {
        bpf_fd: raw_fd(fd),
        info_len: size_of::<ProgInfo>() as u32,
        info: &mut info as *mut ProgInfo as u64,
    };
    bpf(BPF_OBJ_GET_INFO_BY_FD, &mut attr)?;
    let end = info.name.iter().position(|&b| b == 0).unwrap_or(16);
    Ok(String::from_utf8_lossy(&info.name[..end]).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn restriction() -> Restriction {
        Restriction {
            v4: vec![Ipv4Addr::new(10, 55, 0, 2), Ipv4Addr::new(10, 55, 0, 4)],
            v6: vec!["fd55::2".parse().unwrap()],
            ..Restriction::default()
        }
    }

    #[test]
    fn connect_picks_the_source_in_the_destination_network() {
        let mut r = restriction();
        r.local4 = vec![(Ipv4Addr::new(10, 55, 0, 2), 24), (Ipv4Addr::new(10, 66, 0, 9), 16)];
        let insns = program(&r, AttachPoint::Connect4);
        let imm = |v: i32| insns.iter().any(|i| i.imm == v);
        assert!(imm(word([255, 255, 0, 0])) && imm(word([10, 66, 0, 0])), "mask and network of the /16");
        assert!(imm(v4_word(Ipv4Addr::new(10, 66, 0, 9))), "its address there is bound");
    }

    fn program(r: &Restriction, attach: AttachPoint) -> Vec<Insn> {
        programs(r).into_iter().find(|p| p.attach == attach).unwrap().insns
    }

    fn has_imm(insns: &[Insn], imm: i32) -> bool {
        insns.iter().any(|i| i.imm == imm)
    }

    #[test]
    fn one_program_per_attach_point() {
        let ps = programs(&restriction());
        let attaches: Vec<_> = ps.iter().map(|p| p.attach).collect();
        assert_eq!(attaches, AttachPoint::ALL);
        for p in &ps {
            assert!(p.insns.len() < 120, "{:?} is {} insns", p.attach, p.insns.len());
            assert_eq!(p.insns.last().unwrap().code, JMP_EXIT);
        }
    }

    #[test]
    fn addresses_appear_as_immediates() {
        let r = restriction();
        let bind4 = program(&r, AttachPoint::Bind4);
        for a in &r.v4 {
            assert!(has_imm(&bind4, i32::from_ne_bytes(a.octets())));
        }
        // 2 x JEQ, load, JNE 0, mov+stx, ja, 2 exit blocks, plus ctx move.
        assert_eq!(bind4.len(), 1 + 1 + 2 + 1 + 2 + 1 + 2 + 4);

        let bind6 = program(&r, AttachPoint::Bind6);
        let o = r.v6[0].octets();
        for w in o.chunks(4) {
            let w = i32::from_ne_bytes(w.try_into().unwrap());
            assert!(has_imm(&bind6, w));
        }

        let connect4 = program(&r, AttachPoint::Connect4);
        assert!(has_imm(&connect4, i32::from_ne_bytes([10, 55, 0, 2])));
        assert!(has_imm(&connect4, HELPER_BIND));
        assert!(!has_imm(&connect4, i32::from_ne_bytes([10, 55, 0, 4])));
    }

    #[test]
    fn errnos_are_set_before_denying() {
        let r = restriction();
        let bind4 = program(&r, AttachPoint::Bind4);
        assert!(has_imm(&bind4, -EADDRNOTAVAIL));
        assert!(has_imm(&bind4, HELPER_SET_RETVAL));
        let connect4 = program(&r, AttachPoint::Connect4);
        assert!(has_imm(&connect4, -EADDRNOTAVAIL), "auto-bound sockets are refused");
        let sock = program(&r, AttachPoint::SockCreate);
        assert!(has_imm(&sock, -EPERM));
        assert!(has_imm(&sock, libc::IPPROTO_ICMP) && has_imm(&sock, libc::IPPROTO_ICMPV6), "ping sockets");
    }

    /// Restrictions that reach every branch of every program: none, one family only,
    /// both with several addresses and networks.
    fn shapes() -> Vec<Restriction> {
        let mut full = restriction();
        full.v6.push("fd66::9".parse().unwrap());
        full.local4 = vec![(Ipv4Addr::new(10, 55, 0, 2), 24), (Ipv4Addr::new(10, 66, 0, 9), 16)];
        full.local6 = vec![("fd55::2".parse().unwrap(), 64), ("fd66::9".parse().unwrap(), 48)];
        let v4_only = Restriction { v4: vec![Ipv4Addr::new(10, 1, 0, 2)], ..Restriction::default() };
        let v6_only = Restriction { v6: vec!["fd01::2".parse().unwrap()], ..Restriction::default() };
        vec![Restriction::default(), v4_only, v6_only, full]
    }

    /// The kernel's verifier accepts every program (needs root or CAP_BPF, as the
    /// end-to-end tests do).
    #[test]
    fn every_program_passes_the_verifier() {
        for r in shapes() {
            for p in programs(&r) {
                if let Err(e) = load(&p) {
                    panic!("{:?} for {r:?}: {e}", p.attach);
                }
            }
        }
    }

    #[test]
    fn empty_family_is_unreachable() {
        let r = Restriction::default();
        let connect4 = program(&r, AttachPoint::Connect4);
        // mov ctx, ja, deny block (mov, call, mov, exit).
        assert_eq!(connect4.len(), 6);
        assert!(has_imm(&connect4, -ENETUNREACH));
    }

    #[test]
    fn jumps_stay_in_bounds() {
        for p in shapes().iter().flat_map(programs) {
            let n = p.insns.len() as isize;
            for (i, insn) in p.insns.iter().enumerate() {
                let class = insn.code & 0x07;
                let op = insn.code & 0xf0;
                let is_jump = (class == 0x05 || class == 0x06) && op != 0x80 && op != 0x90;
                if is_jump {
                    let t = i as isize + 1 + insn.off as isize;
                    assert!((0..n).contains(&t), "{:?} insn {i}", p.attach);
                }
            }
        }
    }
}
