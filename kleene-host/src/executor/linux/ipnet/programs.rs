//! The ipnet programs: what each cgroup hook does for a container's [`Restriction`],
//! written against the named context fields and helpers below. `testdata/<name>.txt`
//! holds the listing of each for one restriction (a test compares), so a change to a
//! program shows as a readable diff.

use std::net::{Ipv4Addr, Ipv6Addr};

use libc::{EADDRNOTAVAIL, ENETUNREACH, EPERM};

use super::asm::{Asm, Exit, Insn, Label, Target, FP, R0, R1, R2, R3, R4, R5, R6};
use super::sys::{self, Hook};
use super::Restriction;

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

    /// Program type, attach type and name of the program at this hook.
    pub fn hook(self) -> Hook {
        use sys::*;
        let (prog_type, attach_type, name) = match self {
            AttachPoint::Bind4 => (BPF_PROG_TYPE_CGROUP_SOCK_ADDR, BPF_CGROUP_INET4_BIND, "kl_ipnet_bind4"),
            AttachPoint::Bind6 => (BPF_PROG_TYPE_CGROUP_SOCK_ADDR, BPF_CGROUP_INET6_BIND, "kl_ipnet_bind6"),
            AttachPoint::Connect4 => (BPF_PROG_TYPE_CGROUP_SOCK_ADDR, BPF_CGROUP_INET4_CONNECT, "kl_ipnet_conn4"),
            AttachPoint::Connect6 => (BPF_PROG_TYPE_CGROUP_SOCK_ADDR, BPF_CGROUP_INET6_CONNECT, "kl_ipnet_conn6"),
            AttachPoint::Sendmsg4 => (BPF_PROG_TYPE_CGROUP_SOCK_ADDR, BPF_CGROUP_UDP4_SENDMSG, "kl_ipnet_send4"),
            AttachPoint::Sendmsg6 => (BPF_PROG_TYPE_CGROUP_SOCK_ADDR, BPF_CGROUP_UDP6_SENDMSG, "kl_ipnet_send6"),
            AttachPoint::SockCreate => (BPF_PROG_TYPE_CGROUP_SOCK, BPF_CGROUP_INET_SOCK_CREATE, "kl_ipnet_sock"),
            AttachPoint::Ingress => (BPF_PROG_TYPE_CGROUP_SKB, BPF_CGROUP_INET_INGRESS, "kl_ipnet_in"),
        };
        Hook { prog_type, attach_type, name }
    }
}

/// Builds the programs for `r`, one per attach point (always all of them, so
/// a later `apply` can replace each one in place).
pub fn programs(r: &Restriction) -> Vec<Program> {
    AttachPoint::ALL.iter().map(|&attach| Program { attach, insns: build(attach, r) }).collect()
}

fn build(attach: AttachPoint, r: &Restriction) -> Vec<Insn> {
    let mut a = Asm::default();
    // The context pointer must survive helper calls, so keep it in r6.
    a.mov64_reg(CTX, R1);
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

/// The context pointer, kept where helper calls leave it alone.
const CTX: u8 = R6;
/// The four words of an IPv6 address are held in r2..r5.
const V6_REGS: [u8; 4] = [R2, R3, R4, R5];

/// `struct bpf_sock_addr` (bind, connect and sendmsg hooks): the address the program
/// may read and rewrite.
mod sock_addr {
    pub const USER_IP4: i16 = 4;
    pub const USER_IP6: i16 = 8;
    pub const MSG_SRC_IP4: i16 = 40;
    pub const MSG_SRC_IP6: i16 = 44;
    /// The `struct bpf_sock *` of the socket (8 bytes).
    pub const SK: i16 = 64;
}
use sock_addr::{MSG_SRC_IP4, MSG_SRC_IP6, USER_IP4, USER_IP6};

/// `struct bpf_sock` (the socket-creation context, and `sock_addr::SK`).
mod sock {
    pub const TYPE: i16 = 8;
    pub const PROTOCOL: i16 = 12;
    pub const SRC_IP4: i16 = 24;
    pub const SRC_IP6: i16 = 28;
    /// Local port, host byte order; 0 until the socket is bound.
    pub const SRC_PORT: i16 = 44;
}

/// `struct __sk_buff` (cgroup skb programs).
mod skb {
    /// The EtherType, network byte order.
    pub const PROTOCOL: i16 = 16;
}

// Destination offsets in the IP header (a cgroup skb program's packet starts there).
const IP4_DST: i32 = 16;
const IP6_DST: i32 = 24;

/// The kernel helpers the programs call (`enum bpf_func_id`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Helper {
    SkbLoadBytes = 26,
    Bind = 64,
    SetRetval = 187,
}

impl Helper {
    const ALL: [Helper; 3] = [Helper::SkbLoadBytes, Helper::Bind, Helper::SetRetval];

    pub(super) fn from_id(id: i32) -> Option<Helper> {
        Helper::ALL.into_iter().find(|&h| h as i32 == id)
    }

    pub(super) fn name(self) -> &'static str {
        match self {
            Helper::SkbLoadBytes => "bpf_skb_load_bytes",
            Helper::Bind => "bpf_bind",
            Helper::SetRetval => "bpf_set_retval",
        }
    }
}

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
    deny_if_autobound(a, &[sock::SRC_IP4]);
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
    deny_if_autobound(a, &[0, 4, 8, 12].map(|i| sock::SRC_IP6 + i));
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
    a.ldx_w(R2, CTX, sock::TYPE);
    a.jeq32_imm(R2, SOCK_RAW, Exit::Deny(EPERM));
    let not_dgram = a.new_label();
    a.jne32_imm(R2, SOCK_DGRAM, not_dgram);
    a.ldx_w(R3, CTX, sock::PROTOCOL);
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
    a.ldx_w(R2, CTX, skb::PROTOCOL);
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
    a.call(Helper::SkbLoadBytes);
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
    a.ldx_dw(R1, CTX, sock_addr::SK);
    a.ldx_w(R2, R1, sock::SRC_PORT);
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
    a.call(Helper::Bind);
}

#[cfg(test)]
pub(super) mod tests {
    use super::super::asm::{listing, JMP_EXIT};
    use super::*;
    use std::path::PathBuf;

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
        assert!(has_imm(&connect4, Helper::Bind as i32));
        assert!(!has_imm(&connect4, i32::from_ne_bytes([10, 55, 0, 4])));
    }

    #[test]
    fn errnos_are_set_before_denying() {
        let r = restriction();
        let bind4 = program(&r, AttachPoint::Bind4);
        assert!(has_imm(&bind4, -EADDRNOTAVAIL));
        assert!(has_imm(&bind4, Helper::SetRetval as i32));
        let connect4 = program(&r, AttachPoint::Connect4);
        assert!(has_imm(&connect4, -EADDRNOTAVAIL), "auto-bound sockets are refused");
        let sock = program(&r, AttachPoint::SockCreate);
        assert!(has_imm(&sock, -EPERM));
        assert!(has_imm(&sock, libc::IPPROTO_ICMP) && has_imm(&sock, libc::IPPROTO_ICMPV6), "ping sockets");
    }

    /// Restrictions that reach every branch of every program: none, one family only,
    /// both with several addresses and networks.
    pub(in super::super) fn shapes() -> Vec<Restriction> {
        let v4_only = Restriction { v4: vec![Ipv4Addr::new(10, 1, 0, 2)], ..Restriction::default() };
        let v6_only = Restriction { v6: vec!["fd01::2".parse().unwrap()], ..Restriction::default() };
        vec![Restriction::default(), v4_only, v6_only, golden_restriction()]
    }

    /// The restriction the golden listings are of: two networks, two families, a second
    /// address in the first.
    pub(in super::super) fn golden_restriction() -> Restriction {
        let mut full = restriction();
        full.v6.push("fd66::9".parse().unwrap());
        full.local4 = vec![(Ipv4Addr::new(10, 55, 0, 2), 24), (Ipv4Addr::new(10, 66, 0, 9), 16)];
        full.local6 = vec![("fd55::2".parse().unwrap(), 64), ("fd66::9".parse().unwrap(), 48)];
        full
    }

    /// Each program's listing equals `testdata/<name>.txt`. Regenerate with
    /// `KLEENE_BLESS=1 cargo test -p kleene-host ipnet` and review the diff.
    #[test]
    fn listings_match_the_golden_files() {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src/executor/linux/ipnet/testdata");
        let r = golden_restriction();
        for p in programs(&r) {
            let path = dir.join(format!("{}.txt", p.attach.hook().name));
            let actual = format!(
                "; {} ({:?}) for v4 {:?}, v6 {:?}, networks {:?} {:?}\n{}",
                p.attach.hook().name,
                p.attach,
                r.v4,
                r.v6,
                r.local4,
                r.local6,
                listing(&p.insns)
            );
            if std::env::var_os("KLEENE_BLESS").is_some() {
                std::fs::create_dir_all(&dir).unwrap();
                std::fs::write(&path, &actual).unwrap();
            }
            let expected =
                std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e} (KLEENE_BLESS=1?)", path.display()));
            assert_eq!(actual, expected, "{} differs from the program (KLEENE_BLESS=1 to update)", path.display());
        }
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
