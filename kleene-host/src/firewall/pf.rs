//! FreeBSD: the body of pf anchor `kleene`, loaded with `pfctl -a kleene -f -`.
//!
//! Kleene rewrites /etc/pf.conf; kleene keeps the operator's ruleset and only replaces its
//! anchor. Rules inside an anchor are only evaluated where the main ruleset calls the anchor,
//! so the operator adds, once, to /etc/pf.conf (translation anchors before filter rules; the
//! `anchor` line after the operator's own filter rules, since kleene's `block` rules are not
//! `quick` and pf's last matching rule wins):
//!
//! ```text
//! nat-anchor "kleene"
//! rdr-anchor "kleene"
//! anchor "kleene"
//! ```
//!
//! The rules are Kleene's (same macro names), with its bugs fixed: internal networks also
//! block IPv6 egress, IPv6 subnets get the same NAT/block/pass rules as IPv4, published-port
//! pass rules use the published protocol, NAT skips traffic to other kleene subnets, and
//! containers of a no-icc bridge can still reach their auto gateway (the host). Kleene writes
//! `block out quick log`; pf.conf(5)'s grammar order is `block out log quick`, used here.
//!
//! pfctl's grammar only allows plain names inside an interface list, so the interfaces a
//! published port is redirected on are one flat macro (`kleenet_rdr_interfaces`), not a list
//! of macros that are lists themselves. Without a default route (`host_gw_if` empty) nothing
//! refers to the host's interface: the rules that need it are left out, with a comment.
//!
//! pfctl does not run on Linux: the tests check this output with pfctl's own grammar
//! (`tests/pfcheck`), on the golden files and on a matrix of rendered anchors.

use super::{
    dns_gateways, fmt_ports, join, nat_if, redirects, subnet_of, subnets, Family, FwNetwork, Redirect, Ruleset,
    DNS_PORT,
};
use kleene_plugin_api::Network;
use std::fmt::Write;

/// Renders the anchor body: macros, table, translation rules, then filter rules (pf's order).
pub fn render(r: &Ruleset) -> String {
    let mut out = String::from("# kleene anchor: load with `pfctl -a kleene -f -`\n");
    macros(&mut out, r);
    let (redirects, unreachable): (Vec<_>, Vec<_>) =
        redirects(r).into_iter().partition(|rd| has_gw(r) || rd.port.interface.is_some());
    for n in &r.networks {
        nat_rules(&mut out, &n.network);
    }
    for rd in &unreachable {
        let _ = writeln!(out, "{}", unreachable_comment(rd));
    }
    for rd in &redirects {
        let _ = writeln!(out, "{}", rdr_rule(rd));
    }
    for n in &r.networks {
        filter_rules(&mut out, n, has_gw(r));
    }
    for rd in &redirects {
        let _ = writeln!(out, "{}", pass_rule(rd));
    }
    out
}

fn m(n: &Network, what: &str) -> String {
    format!("$kleenet_{}_{what}", n.id)
}

/// Whether the host has a default-route interface (pf's `kleenet_host_gw_if`).
fn has_gw(r: &Ruleset) -> bool {
    !r.host_gw_if.is_empty()
}

fn macros(out: &mut String, r: &Ruleset) {
    let ifs = || std::iter::once("lo0").chain(r.networks.iter().map(|n| n.network.interface.as_str()));
    if has_gw(r) {
        let _ = writeln!(out, "kleenet_host_gw_if=\"{}\"", r.host_gw_if);
    } else {
        let _ = writeln!(out, "# no default route: the rules that need the host's interface are left out");
    }
    let _ = writeln!(out, "kleenet_network_interfaces=\"{{ {} }}\"", join(ifs(), ", "));
    if has_gw(r) {
        let rdr_ifs = std::iter::once(r.host_gw_if.as_str()).chain(ifs());
        let _ = writeln!(out, "kleenet_rdr_interfaces=\"{{ {} }}\"", join(rdr_ifs, ", "));
    }
    for f in &r.networks {
        network_macros(out, f);
    }
    let all = r.networks.iter().flat_map(|f| subnets(&f.network));
    let _ = writeln!(out, "table <kleenet_subnets> const {{ {} }}", join(all, ", "));
}

fn network_macros(out: &mut String, f: &FwNetwork) {
    let n = &f.network;
    let mut def = |what: &str, value: &str| {
        let _ = writeln!(out, "kleenet_{}_{what}=\"{value}\"", n.id);
    };
    def("interface", &n.interface);
    if let Some(s) = n.subnet {
        def("subnet", &subnet_str(s));
    }
    if let Some(s) = n.subnet6 {
        def("subnet6", &subnet_str(s));
    }
    if let Some(nat) = nat_if(n) {
        def("nat_if", nat);
    }
    let all = [n.interface.as_str(), "lo0"].into_iter().chain(f.epairs.iter().map(String::as_str));
    def("all_interfaces", &format!("{{ {} }}", join(all, ", ")));
}

fn subnet_str(c: kleene_plugin_api::Cidr) -> String {
    format!("{}/{}", c.network(), c.prefix)
}

/// The pf family keyword and the subnet macro of `family`, if the network has that subnet.
fn fam(n: &Network, family: Family) -> Option<(&'static str, String)> {
    subnet_of(n, family)?;
    Some(match family {
        Family::V4 => ("inet", m(n, "subnet")),
        Family::V6 => ("inet6", m(n, "subnet6")),
    })
}

fn nat_rules(out: &mut String, n: &Network) {
    if nat_if(n).is_none() {
        return;
    }
    let nat = m(n, "nat_if");
    for (af, subnet) in Family::BOTH.into_iter().filter_map(|f| fam(n, f)) {
        let _ = writeln!(out, "nat on {nat} {af} from {subnet} to ! <kleenet_subnets> -> ({nat})");
    }
}

fn af_of(rd: &Redirect) -> &'static str {
    match Family::of(rd.target) {
        Family::V4 => "inet",
        Family::V6 => "inet6",
    }
}

/// Unrestricted ports are redirected on the host's interface and on kleene's own interfaces
/// (containers of other networks, and the host itself through lo0, reach them at the address
/// of the host's interface). A port restricted to IF only answers on IF.
fn rdr_rule(rd: &Redirect) -> String {
    let p = rd.port;
    let (on, to) = match &p.interface {
        Some(i) => (i.clone(), format!("({i})")),
        None => ("$kleenet_rdr_interfaces".into(), "($kleenet_host_gw_if)".into()),
    };
    let target_ports = match p.container {
        (c, c_end) if c == c_end => c.to_string(),
        (c, _) => format!("{c}:*"),
    };
    format!(
        "rdr on {on} {} proto {} from any to {to} port {} -> {} port {target_ports}",
        af_of(rd),
        p.proto.as_str(),
        fmt_ports(p.host, ":"),
        rd.target
    )
}

/// An unrestricted port has no address to be reached at while the host has no default route.
fn unreachable_comment(rd: &Redirect) -> String {
    let p = rd.port;
    format!(
        "# no default route: {} port {}/{} of {} is not redirected (publish it on a named interface: IF:PORT)",
        af_of(rd),
        fmt_ports(p.host, "-"),
        p.proto.as_str(),
        rd.endpoint.name,
    )
}

fn pass_rule(rd: &Redirect) -> String {
    let p = rd.port;
    let (af, proto, ports) = (af_of(rd), p.proto.as_str(), fmt_ports(p.container, ":"));
    format!("pass quick {af} proto {proto} from any to {} port {ports} keep state", rd.target)
}

fn filter_rules(out: &mut String, f: &FwNetwork, has_gw: bool) {
    let n = &f.network;
    for family in Family::BOTH {
        let Some((af, subnet)) = fam(n, family) else { continue };
        let _ = writeln!(out, "block in log {af} from any to {subnet}");
        // Container DNS at the gateway, whatever icc and internal say.
        for (_, gw) in dns_gateways(f).filter(|(s, _)| Family::of(s.addr) == family) {
            let _ = writeln!(
                out,
                "pass in quick on {} {af} proto {{ udp, tcp }} from {subnet} to {gw} port {DNS_PORT}",
                m(n, "interface")
            );
        }
        if n.icc {
            let _ = writeln!(out, "pass quick on {} {af} from {subnet} to {subnet}", m(n, "all_interfaces"));
        }
        if let Some(gw) = host_gateway(n, family).filter(|_| !n.icc) {
            let _ = writeln!(out, "pass in quick on {} {af} from {subnet} to {gw}", m(n, "interface"));
        }
        if n.internal {
            let _ = writeln!(out, "block out log quick on $kleenet_network_interfaces {af} from {subnet}");
            // Without NAT and without a default route there is no way out to block.
            let out_if = if !n.nat.is_empty() { Some(n.nat.as_str()) } else { has_gw.then_some("$kleenet_host_gw_if") };
            if let Some(out_if) = out_if {
                let _ = writeln!(out, "block out log quick on {out_if} {af} from {subnet}");
            }
        }
    }
}

/// The gateway of `family` held by the host (an `<auto>` bridge gateway), if any.
fn host_gateway(n: &Network, family: Family) -> Option<std::net::IpAddr> {
    match family {
        Family::V4 => n.gateway.filter(|_| n.gateway_auto),
        Family::V6 => n.gateway6.filter(|_| n.gateway6_auto),
    }
}
