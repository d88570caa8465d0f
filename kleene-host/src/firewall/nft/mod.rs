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
//! - sets `dns4/6` (`subnet . gateway . proto . port`, only while some network serves DNS):
//!   containers reach their own gateway's DNS port, accepted in `isolate` before any drop;
//! - forward and input (except from `lo`) then drop unsolicited traffic into a kleene subnet,
//!   as Kleene's `block in from any to <subnet>`;
//! - nat: `postrouting` masquerades DNAT hairpins within a network, then sends traffic leaving
//!   the kleene subnets through verdict map `nat4/6` (subnet → `jump nat_<i>`, one chain per NAT
//!   interface: `oifname IF masquerade`); `prerouting` and `output` send traffic to a host
//!   address (not a container's) to chain `publish`, which DNATs through maps
//!   `publish4/6[_if]` (`[ifname .] proto . port : address . port`, ranges port by port).
//!
//! The table is built as data ([`table::Table`]), which is rendered for a full load and diffed
//! against the table last loaded for an element-only update ([`delta`]).
//!
//! `accept` here cannot override a drop in another table (Docker, firewalld).

pub mod delta;
pub mod table;

use super::{
    all_subnets, container_addresses, dns_gateways, nat_if, quote, redirects, subnet_of, Family, Proto, Redirect,
    Ruleset, DNS_PORT,
};
use kleene_plugin_api::{Cidr, Network, Stack};
use std::collections::BTreeSet;
use std::net::{Ipv4Addr, Ipv6Addr};
use table::{Chain, Data, Datatype, Element, Hook, MapTo, Set, Table, Value};

/// The table kleene owns.
pub const TABLE: &str = "inet kleene";

/// The whole table for `r`.
pub fn table(r: &Ruleset) -> Table {
    let nat_ifs = nat_interfaces(r);
    let redirects = redirects(r);
    let mut sets = Vec::new();
    for f in Family::BOTH {
        address_sets(&mut sets, r, f);
        pair_sets(&mut sets, r, f);
        sets.push(nat_map(r, f, &nat_ifs));
        publish_maps(&mut sets, &redirects, f);
    }
    sets.push(Set::new("noicc_bridges", vec![Datatype::Ifname, Datatype::Ifname]).with(noicc_bridges(r)));
    if serves_dns(r) {
        Family::BOTH.into_iter().for_each(|f| sets.push(dns_set(r, f)));
    }
    let mut chains = vec![isolate_chain(r)];
    chains.extend(filter_hooks());
    chains.extend(nat_chains(r, &nat_ifs));
    chains.extend(dnat_hooks());
    Table { sets, chains }
}

/// Renders the whole replacement script.
pub fn render(r: &Ruleset) -> String {
    table(r).render()
}

struct Names {
    ip: &'static str,
    addr: Datatype,
    sfx: char,
}

fn names(f: Family) -> Names {
    match f {
        Family::V4 => Names { ip: "ip", addr: Datatype::Ipv4Addr, sfx: '4' },
        Family::V6 => Names { ip: "ip6", addr: Datatype::Ipv6Addr, sfx: '6' },
    }
}

/// An element commented `network <name>`.
fn of_network(key: Vec<Value>, network: &str) -> Element {
    Element::new(key).comment(format!("network {network}"))
}

/// The networks with a subnet of family `f`, with that subnet.
fn nets_of(r: &Ruleset, f: Family) -> impl Iterator<Item = (&Network, Cidr)> {
    r.networks.iter().filter_map(move |n| Some((&n.network, subnet_of(&n.network, f)?)))
}

fn address_sets(sets: &mut Vec<Set>, r: &Ruleset, f: Family) {
    let Names { addr, sfx, .. } = names(f);
    let subnet = |(n, c): (&Network, Cidr)| of_network(vec![Value::Net(c)], &n.name);
    let subnets = all_subnets(r).filter(|(_, c)| Family::of(c.addr) == f).map(subnet);
    sets.push(Set::new(format!("subnets{sfx}"), vec![addr]).interval().with(subnets));
    let internal = nets_of(r, f).filter(|(n, _)| n.internal).map(subnet);
    sets.push(Set::new(format!("internal{sfx}"), vec![addr]).interval().with(internal));
    let ctrs = || container_addresses(r).filter(move |(_, _, a)| Family::of(*a) == f);
    // Only addresses the host holds itself can be mistaken for a published host address:
    // a private stack's addresses live in the container's namespace, so starting or creating
    // such a container leaves the ruleset (and the kernel's) untouched.
    let held = ctrs().filter(|(_, e, _)| e.stack != Stack::Private).map(|(_, _, a)| Element::new(vec![Value::Addr(a)]));
    sets.push(Set::new(format!("containers{sfx}"), vec![addr]).with(held));
    // Only no-icc rules need it, and only a restricted stack's addresses are the host's own.
    let own = ctrs()
        .filter(|(n, e, _)| !n.icc && e.stack == Stack::Restricted)
        .map(|(_, _, a)| Element::new(vec![Value::Addr(a), Value::Addr(a)]));
    sets.push(Set::new(format!("self{sfx}"), vec![addr, addr]).with(own));
}

/// The distinct prefix lengths of family `f`'s subnets, in order.
fn prefixes(r: &Ruleset, f: Family) -> BTreeSet<u8> {
    nets_of(r, f).map(|(_, c)| c.prefix).collect()
}

/// "Same network" and "same network without icc" as hash sets of `net . net`, one per prefix
/// length, matched with both addresses masked (`ip saddr & M . ip daddr & M @same4_24`): plain
/// hash lookups, much cheaper to load than interval concatenations.
fn pair_sets(sets: &mut Vec<Set>, r: &Ruleset, f: Family) {
    let Names { addr, sfx, .. } = names(f);
    for len in prefixes(r, f) {
        let of_len = || nets_of(r, f).filter(move |(_, c)| c.prefix == len);
        let pair = |(n, c): (&Network, Cidr)| of_network(vec![Value::Addr(c.addr), Value::Addr(c.addr)], &n.name);
        sets.push(Set::new(format!("same{sfx}_{len}"), vec![addr, addr]).with(of_len().map(pair)));
        let noicc = of_len().filter(|(n, _)| !n.icc).map(pair);
        sets.push(Set::new(format!("noicc{sfx}_{len}"), vec![addr, addr]).with(noicc));
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

fn nat_map(r: &Ruleset, f: Family, nat_ifs: &[&str]) -> Set {
    let Names { addr, sfx, .. } = names(f);
    let chain = |n: &Network| nat_if(n).and_then(|i| nat_ifs.iter().position(|x| *x == i));
    let elems = nets_of(r, f).filter_map(|(n, c)| {
        Some(of_network(vec![Value::Net(c)], &n.name).data(Data::Jump(format!("nat_{}", chain(n)?))))
    });
    Set::new(format!("nat{sfx}"), vec![addr]).map_to(MapTo::Verdict).interval().with(elems)
}

/// Maps `[ifname .] proto . port : address . port`; ranges are expanded port by port (hash
/// maps, linear in ports). Interface-restricted ports go to `publish4_if`.
fn publish_maps(sets: &mut Vec<Set>, redirects: &[Redirect], f: Family) {
    let Names { addr, sfx, .. } = names(f);
    let of_f = || redirects.iter().filter(|rd| Family::of(rd.target) == f);
    let to = || MapTo::Values(vec![addr, Datatype::InetService]);
    let key = vec![Datatype::InetProto, Datatype::InetService];
    let any_if = of_f().filter(|rd| rd.port.interface.is_none()).flat_map(map_elems);
    sets.push(Set::new(format!("publish{sfx}"), key.clone()).map_to(to()).with(any_if));
    let on_if = of_f().filter(|rd| rd.port.interface.is_some()).flat_map(map_elems);
    let key = [vec![Datatype::Ifname], key].concat();
    sets.push(Set::new(format!("publish{sfx}_if"), key).map_to(to()).with(on_if));
}

fn map_elems<'a>(rd: &'a Redirect) -> impl Iterator<Item = Element> + 'a {
    let p = rd.port;
    let iif = p.interface.iter().map(|i| Value::Ifname(i.clone()));
    let note = format!("container {} network {}", rd.endpoint.name, rd.network.name);
    let single = p.container.0 == p.container.1;
    (p.host.0..=p.host.1).map(move |h| {
        let c = if single { p.container.0 } else { p.container.0 + (h - p.host.0) };
        let key = iif.clone().chain([Value::Proto(p.proto), Value::Port(h)]).collect();
        Element::new(key).comment(note.clone()).data(Data::Values(vec![Value::Addr(rd.target), Value::Port(c)]))
    })
}

fn noicc_bridges(r: &Ruleset) -> impl Iterator<Item = Element> + '_ {
    r.networks.iter().map(|n| &n.network).filter(|n| !n.icc).map(|n| {
        let bridge = Value::Ifname(n.interface.clone());
        of_network(vec![bridge.clone(), bridge], &n.name)
    })
}

/// Whether any network serves DNS (the DNS sets and rules exist only then).
fn serves_dns(r: &Ruleset) -> bool {
    r.networks.iter().any(|n| dns_gateways(n).next().is_some())
}

/// `subnet . gateway . proto . 53` of every DNS network of family `f`, udp and tcp.
fn dns_set(r: &Ruleset, f: Family) -> Set {
    let Names { addr, sfx, .. } = names(f);
    let elems = r.networks.iter().flat_map(|n| {
        let gws = dns_gateways(n).filter(move |(s, _)| Family::of(s.addr) == f);
        gws.flat_map(move |(subnet, gw)| {
            [Proto::Udp, Proto::Tcp].map(|p| {
                let key = vec![Value::Net(subnet), Value::Addr(gw), Value::Proto(p), Value::Port(DNS_PORT)];
                of_network(key, &n.network.name)
            })
        })
    });
    let key = vec![addr, addr, Datatype::InetProto, Datatype::InetService];
    Set::new(format!("dns{sfx}"), key).interval().with(elems)
}

/// Chain `isolate`, jumped to from forward, input and output.
fn isolate_chain(r: &Ruleset) -> Chain {
    let mut rules: Vec<String> = ISOLATE_HEAD.iter().map(|s| s.to_string()).collect();
    if serves_dns(r) {
        for f in Family::BOTH {
            let Names { ip, sfx, .. } = names(f);
            rules.push(format!(
                "{ip} saddr . {ip} daddr . meta l4proto . th dport @dns{sfx} accept comment \"DNS at the network's gateway\""
            ));
        }
    }
    for f in Family::BOTH {
        let Names { ip, sfx, .. } = names(f);
        rules.push(format!(
            "{ip} saddr . {ip} daddr @self{sfx} accept comment \"the host to an ipnet address of its own\""
        ));
        for m in same_network(r, f, "noicc") {
            rules.push(format!("{ip} saddr @containers{sfx} {ip} daddr @containers{sfx} {m} drop comment \"no icc\""));
        }
        for m in same_network(r, f, "same") {
            rules.push(format!("{m} accept comment \"within a network\""));
        }
        rules.push(format!("{ip} saddr @subnets{sfx} {ip} daddr @subnets{sfx} drop comment \"between networks\""));
    }
    rules.extend(ISOLATE_TAIL.iter().map(|s| s.to_string()));
    Chain::new("isolate", None, rules)
}

const ISOLATE_HEAD: [&str; 3] = [
    "ct state established,related accept",
    "ct status dnat accept comment \"published ports\"",
    "iifname . oifname @noicc_bridges drop comment \"no icc: bridged between containers\"",
];

const ISOLATE_TAIL: [&str; 2] = [
    "ip saddr @internal4 drop comment \"out of an internal network\"",
    "ip6 saddr @internal6 ip6 daddr != { fe80::/10, ff00::/8 } drop comment \"out of an internal network\"",
];

fn filter_hooks() -> [Chain; 3] {
    let hook = |name| Some(Hook::new("filter", name, "filter"));
    [
        Chain::new(
            "forward",
            hook("forward"),
            [
                "jump isolate",
                "ip daddr @subnets4 drop comment \"unsolicited, into a network\"",
                "ip6 daddr @subnets6 drop comment \"unsolicited, into a network\"",
            ],
        ),
        Chain::new(
            "input",
            hook("input"),
            [
                "jump isolate",
                "iifname != \"lo\" ip daddr @subnets4 drop comment \"unsolicited, into a network\"",
                "iifname != \"lo\" ip6 daddr @subnets6 drop comment \"unsolicited, into a network\"",
            ],
        ),
        Chain::new("output", hook("output"), ["jump isolate"]),
    ]
}

/// `nat_<i>` per NAT interface, then `postrouting`: hairpin masquerade for DNAT within a
/// network, then NAT out of networks through `nat4/6` → `nat_<i>`.
fn nat_chains(r: &Ruleset, nat_ifs: &[&str]) -> Vec<Chain> {
    let masquerade =
        |(i, nat): (usize, &&str)| Chain::new(format!("nat_{i}"), None, [format!("oifname {} masquerade", quote(nat))]);
    let mut chains: Vec<Chain> = nat_ifs.iter().enumerate().map(masquerade).collect();
    let mut rules = Vec::new();
    for f in Family::BOTH {
        for m in same_network(r, f, "same") {
            rules.push(format!(
                "oifname != \"lo\" ct status dnat {m} masquerade comment \"hairpin to a published port\""
            ));
        }
    }
    for f in Family::BOTH {
        let Names { ip, sfx, .. } = names(f);
        rules.push(format!("{ip} daddr @subnets{sfx} return"));
        rules.push(format!("{ip} saddr vmap @nat{sfx} comment \"NAT out of a network\""));
    }
    chains.push(Chain::new("postrouting", Some(Hook::new("nat", "postrouting", "srcnat")), rules));
    chains
}

fn dnat_hooks() -> [Chain; 3] {
    let to_host =
        ["ip daddr @containers4 return", "ip6 daddr @containers6 return", "fib daddr type local jump publish"];
    let loopback =
        ["ip daddr 127.0.0.0/8 return comment \"loopback cannot be DNATed out of the host\"", "ip6 daddr ::1 return"];
    [
        Chain::new("prerouting", Some(Hook::new("nat", "prerouting", "dstnat")), to_host),
        Chain::new("output_nat", Some(Hook::new("nat", "output", "-100")), loopback.into_iter().chain(to_host)),
        Chain::new(
            "publish",
            None,
            [
                "meta l4proto { tcp, udp } dnat ip to iifname . meta l4proto . th dport map @publish4_if",
                "meta l4proto { tcp, udp } dnat ip to meta l4proto . th dport map @publish4",
                "meta l4proto { tcp, udp } dnat ip6 to iifname . meta l4proto . th dport map @publish6_if",
                "meta l4proto { tcp, udp } dnat ip6 to meta l4proto . th dport map @publish6",
            ],
        ),
    ]
}
