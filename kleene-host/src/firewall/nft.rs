//! Linux: one nft script that atomically replaces table `inet kleene` and touches nothing else.
//!
//! Design: a fixed handful of rules over named sets and maps, so the script grows linearly with
//! networks, containers and ports (no pairwise rules), and loads fast (hash sets and
//! single-field interval sets only; interval concatenations cost ~0.2 ms per element to load):
//! - sets `subnets4/6` (all kleene subnets), `internal4/6`, `containers4/6` (container
//!   addresses), `self4/6` (`addr . addr` of ipnet containers without icc: the host talking
//!   to an ipnet address of its own, which the kernel sends from that same address),
//!   `same4_<len>` / `noicc4_<len>` (`net . net` per network, one set per prefix length, matched
//!   as `ip saddr & mask . ip daddr & mask`), `noicc_bridges` (`bridge . bridge`);
//! - chain `isolate`, jumped to from the forward, input and output hooks (ipnet traffic between
//!   containers is local traffic and never reaches forward), decides by source and destination:
//!   established and DNATed (published) flows pass, then no-icc drops, same-network accepts,
//!   between-network drops and the internal egress drop;
//! - forward and input (except from `lo`) then drop unsolicited traffic into a kleene subnet,
//!   as Kleene's `block in from any to <subnet>`;
//! - nat: `postrouting` masquerades DNAT hairpins within a network, then sends traffic leaving
//!   the kleene subnets through verdict map `nat4/6` (subnet → `jump nat_<i>`, one chain per NAT
//!   interface: `oifname IF masquerade`); `prerouting` and `output` send traffic to a host
//!   address (not a container's) to chain `publish`, which DNATs through maps
//!   `publish4/6[_if]` (`[ifname .] proto . port : address . port`, ranges port by port).
//!
//! The script starts with `table inet kleene {}` + `delete table inet kleene`: creating the
//! table first makes the delete succeed when it did not exist, which replaces nft ≥ 1.1's
//! `destroy` on nft 1.0.6. The whole script is one transaction.
//!
//! `accept` here cannot override a drop in another table (Docker, firewalld).

use super::{all_subnets, container_addresses, nat_if, quote, redirects, subnet_of, Family, Redirect, Ruleset};
use kleene_plugin_api::{Cidr, Network, Stack};
use std::collections::{BTreeSet, HashSet};
use std::fmt::Write;
use std::net::{Ipv4Addr, Ipv6Addr};

/// The table kleene owns.
pub const TABLE: &str = "inet kleene";

/// Renders the whole replacement script.
pub fn render(r: &Ruleset) -> String {
    let mut out = format!("table {TABLE} {{}}\ndelete table {TABLE}\ntable {TABLE} {{\n");
    let nat_ifs = nat_interfaces(r);
    let redirects = redirects(r);
    for f in Family::BOTH {
        address_sets(&mut out, r, f);
        pair_sets(&mut out, r, f);
        nat_map(&mut out, r, f, &nat_ifs);
        publish_maps(&mut out, &redirects, f);
    }
    set(&mut out, "noicc_bridges", "ifname . ifname", false, noicc_bridges(r));
    isolate_chain(&mut out, r);
    out.push_str(FILTER_HOOKS);
    nat_chains(&mut out, r, &nat_ifs);
    out.push_str(DNAT_HOOKS);
    out.push_str("}\n");
    out
}

struct Names {
    ip: &'static str,
    addr: &'static str,
    sfx: char,
}

fn names(f: Family) -> Names {
    match f {
        Family::V4 => Names { ip: "ip", addr: "ipv4_addr", sfx: '4' },
        Family::V6 => Names { ip: "ip6", addr: "ipv6_addr", sfx: '6' },
    }
}

/// `network <name>` as an element comment.
fn comment(network: &str) -> String {
    format!("comment {}", quote(&format!("network {network}")))
}

fn elem(value: impl std::fmt::Display, network: &str) -> String {
    format!("{value} {}", comment(network))
}

/// The networks with a subnet of family `f`, with that subnet.
fn nets_of(r: &Ruleset, f: Family) -> impl Iterator<Item = (&Network, Cidr)> {
    r.networks.iter().filter_map(move |n| Some((&n.network, subnet_of(&n.network, f)?)))
}

fn address_sets(out: &mut String, r: &Ruleset, f: Family) {
    let Names { addr, sfx, .. } = names(f);
    let subnets = all_subnets(r).filter(|(_, c)| Family::of(c.addr) == f).map(|(n, c)| elem(c, &n.name));
    set(out, &format!("subnets{sfx}"), addr, true, subnets);
    let internal = nets_of(r, f).filter(|(n, _)| n.internal).map(|(n, c)| elem(c, &n.name));
    set(out, &format!("internal{sfx}"), addr, true, internal);
    let ctrs = || container_addresses(r).filter(move |(_, _, a)| Family::of(*a) == f);
    // Only addresses the host holds itself can be mistaken for a published host address:
    // a private stack's addresses live in the container's namespace, so starting or creating
    // such a container leaves the ruleset (and the kernel's) untouched.
    let held = ctrs().filter(|(_, e, _)| e.stack != Stack::Private).map(|(_, _, a)| a.to_string());
    set(out, &format!("containers{sfx}"), addr, false, held);
    // Only no-icc rules need it, and only a restricted stack's addresses are the host's own.
    let own = ctrs().filter(|(n, e, _)| !n.icc && e.stack == Stack::Restricted).map(|(_, _, a)| format!("{a} . {a}"));
    set(out, &format!("self{sfx}"), &format!("{addr} . {addr}"), false, own);
}

/// The distinct prefix lengths of family `f`'s subnets, in order.
fn prefixes(r: &Ruleset, f: Family) -> BTreeSet<u8> {
    nets_of(r, f).map(|(_, c)| c.prefix).collect()
}

/// "Same network" and "same network without icc" as hash sets of `net . net`, one per prefix
/// length, matched with both addresses masked (`ip saddr & M . ip daddr & M @same4_24`): plain
/// hash lookups, much cheaper to load than interval concatenations.
fn pair_sets(out: &mut String, r: &Ruleset, f: Family) {
    let Names { addr, sfx, .. } = names(f);
    for len in prefixes(r, f) {
        let of_len = || nets_of(r, f).filter(move |(_, c)| c.prefix == len);
        let pair = |(n, c): (&Network, Cidr)| elem(format!("{0} . {0}", c.addr), &n.name);
        set(out, &format!("same{sfx}_{len}"), &format!("{addr} . {addr}"), false, of_len().map(pair));
        set(
            out,
            &format!("noicc{sfx}_{len}"),
            &format!("{addr} . {addr}"),
            false,
            of_len().filter(|(n, _)| !n.icc).map(pair),
        );
    }
}

/// `ip saddr & M . ip daddr & M @<set>_<len>` for each prefix length, as the start of a rule.
fn same_network(r: &Ruleset, f: Family, set: &str) -> Vec<String> {
    let Names { ip, sfx, .. } = names(f);
    let mask = |len: u8| match f {
        Family::V4 => Ipv4Addr::from(u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0)).to_string(),
        Family::V6 => Ipv6Addr::from(u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0)).to_string(),
    };
    let m = |len| format!("{ip} saddr & {0} . {ip} daddr & {0} @{set}{sfx}_{len}", mask(len));
    prefixes(r, f).into_iter().map(m).collect()
}

/// Distinct NAT interfaces, each masqueraded by chain `nat_<index>`.
fn nat_interfaces(r: &Ruleset) -> Vec<&str> {
    let mut ifs: Vec<&str> = r.networks.iter().filter_map(|n| nat_if(&n.network)).collect();
    ifs.sort_unstable();
    ifs.dedup();
    ifs
}

fn nat_map(out: &mut String, r: &Ruleset, f: Family, nat_ifs: &[&str]) {
    let Names { addr, sfx, .. } = names(f);
    let chain = |n: &Network| nat_if(n).and_then(|i| nat_ifs.iter().position(|x| *x == i));
    let elems = nets_of(r, f).filter_map(|(n, c)| Some(format!("{c} {} : jump nat_{}", comment(&n.name), chain(n)?)));
    set(out, &format!("nat{sfx}"), &format!("{addr} : verdict"), true, elems);
}

/// Maps `[ifname .] proto . port : address . port`; ranges are expanded port by port (hash
/// maps, linear in ports). Interface-restricted ports go to `publish4_if`.
fn publish_maps(out: &mut String, redirects: &[Redirect], f: Family) {
    let Names { addr, sfx, .. } = names(f);
    let of_f = || redirects.iter().filter(|rd| Family::of(rd.target) == f);
    let ty = format!("inet_proto . inet_service : {addr} . inet_service");
    set(out, &format!("publish{sfx}"), &ty, false, of_f().filter(|rd| rd.port.interface.is_none()).flat_map(map_elems));
    let ty = format!("ifname . {ty}");
    set(
        out,
        &format!("publish{sfx}_if"),
        &ty,
        false,
        of_f().filter(|rd| rd.port.interface.is_some()).flat_map(map_elems),
    );
}

fn map_elems<'a>(rd: &'a Redirect) -> impl Iterator<Item = String> + 'a {
    let p = rd.port;
    let iif = p.interface.as_ref().map(|i| format!("{} . ", quote(i))).unwrap_or_default();
    let note = quote(&format!("container {} network {}", rd.endpoint.name, rd.network.name));
    let single = p.container.0 == p.container.1;
    (p.host.0..=p.host.1).map(move |h| {
        let c = if single { p.container.0 } else { p.container.0 + (h - p.host.0) };
        format!("{iif}{} . {h} comment {note} : {} . {c}", p.proto.as_str(), rd.target)
    })
}

fn noicc_bridges(r: &Ruleset) -> impl Iterator<Item = String> + '_ {
    r.networks
        .iter()
        .map(|n| &n.network)
        .filter(|n| !n.icc)
        .map(|n| elem(format!("{0} . {0}", quote(&n.interface)), &n.name))
}

/// Writes a named set or map; a repeated key (the same address twice) keeps its first entry.
fn set(out: &mut String, name: &str, ty: &str, interval: bool, elements: impl Iterator<Item = String>) {
    let mut seen = HashSet::new();
    let key = |e: &str| e.split(" comment ").next().unwrap_or(e).split(" : ").next().unwrap_or(e).to_owned();
    let elements: Vec<String> = elements.filter(|e| seen.insert(key(e))).collect();
    let kind = if ty.contains(" : ") { "map" } else { "set" };
    let flags = if interval { " flags interval;" } else { "" };
    let _ = write!(out, "\t{kind} {name} {{ type {ty};{flags}");
    if !elements.is_empty() {
        let _ = write!(out, "\n\t\telements = {{\n\t\t\t{}\n\t\t}}\n\t", elements.join(",\n\t\t\t"));
    } else {
        out.push(' ');
    }
    out.push_str("}\n");
}

/// Chain `isolate`, jumped to from forward, input and output.
fn isolate_chain(out: &mut String, r: &Ruleset) {
    out.push_str(ISOLATE_HEAD);
    for f in Family::BOTH {
        let Names { ip, sfx, .. } = names(f);
        let _ = writeln!(
            out,
            "\t\t{ip} saddr . {ip} daddr @self{sfx} accept comment \"the host to an ipnet address of its own\""
        );
        for m in same_network(r, f, "noicc") {
            let _ = writeln!(
                out,
                "\t\t{ip} saddr @containers{sfx} {ip} daddr @containers{sfx} {m} drop comment \"no icc\""
            );
        }
        for m in same_network(r, f, "same") {
            let _ = writeln!(out, "\t\t{m} accept comment \"within a network\"");
        }
        let _ =
            writeln!(out, "\t\t{ip} saddr @subnets{sfx} {ip} daddr @subnets{sfx} drop comment \"between networks\"");
    }
    out.push_str(ISOLATE_TAIL);
}

const ISOLATE_HEAD: &str = r#"	chain isolate {
		ct state established,related accept
		ct status dnat accept comment "published ports"
		iifname . oifname @noicc_bridges drop comment "no icc: bridged between containers"
"#;

const ISOLATE_TAIL: &str = r#"		ip saddr @internal4 drop comment "out of an internal network"
		ip6 saddr @internal6 ip6 daddr != { fe80::/10, ff00::/8 } drop comment "out of an internal network"
	}
"#;

const FILTER_HOOKS: &str = r#"	chain forward {
		type filter hook forward priority filter; policy accept;
		jump isolate
		ip daddr @subnets4 drop comment "unsolicited, into a network"
		ip6 daddr @subnets6 drop comment "unsolicited, into a network"
	}
	chain input {
		type filter hook input priority filter; policy accept;
		jump isolate
		iifname != "lo" ip daddr @subnets4 drop comment "unsolicited, into a network"
		iifname != "lo" ip6 daddr @subnets6 drop comment "unsolicited, into a network"
	}
	chain output {
		type filter hook output priority filter; policy accept;
		jump isolate
	}
"#;

/// `postrouting`: hairpin masquerade for DNAT within a network, then NAT out of networks
/// through `nat4/6` → `nat_<i>` (one chain per NAT interface).
fn nat_chains(out: &mut String, r: &Ruleset, nat_ifs: &[&str]) {
    for (i, nat) in nat_ifs.iter().enumerate() {
        let _ = writeln!(out, "\tchain nat_{i} {{\n\t\toifname {} masquerade\n\t}}", quote(nat));
    }
    out.push_str("\tchain postrouting {\n\t\ttype nat hook postrouting priority srcnat; policy accept;\n");
    for f in Family::BOTH {
        for m in same_network(r, f, "same") {
            let _ = writeln!(
                out,
                "\t\toifname != \"lo\" ct status dnat {m} masquerade comment \"hairpin to a published port\""
            );
        }
    }
    for f in Family::BOTH {
        let Names { ip, sfx, .. } = names(f);
        let _ = writeln!(out, "\t\t{ip} daddr @subnets{sfx} return");
        let _ = writeln!(out, "\t\t{ip} saddr vmap @nat{sfx} comment \"NAT out of a network\"");
    }
    out.push_str("\t}\n");
}

const DNAT_HOOKS: &str = r#"	chain prerouting {
		type nat hook prerouting priority dstnat; policy accept;
		ip daddr @containers4 return
		ip6 daddr @containers6 return
		fib daddr type local jump publish
	}
	chain output_nat {
		type nat hook output priority -100; policy accept;
		ip daddr 127.0.0.0/8 return comment "loopback cannot be DNATed out of the host"
		ip6 daddr ::1 return
		ip daddr @containers4 return
		ip6 daddr @containers6 return
		fib daddr type local jump publish
	}
	chain publish {
		meta l4proto { tcp, udp } dnat ip to iifname . meta l4proto . th dport map @publish4_if
		meta l4proto { tcp, udp } dnat ip to meta l4proto . th dport map @publish4
		meta l4proto { tcp, udp } dnat ip6 to iifname . meta l4proto . th dport map @publish6_if
		meta l4proto { tcp, udp } dnat ip6 to meta l4proto . th dport map @publish6
	}
"#;
