//! FreeBSD: the body of pf anchor `kleene`, loaded with `pfctl -a kleene -f -`.
//!
//! Kleene rewrites /etc/pf.conf; kleene keeps the operator's ruleset and only replaces its
//! anchor. Rules inside an anchor are only evaluated where the main ruleset calls the anchor,
//! so the operator adds, once, to /etc/pf.conf (translation anchors before filter rules):
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
//! pfctl is not available on the Linux machines these tests run on: the output is checked by
//! golden files only, not by `pfctl -nf`.

use super::{fmt_ports, join, nat_if, redirects, subnet_of, subnets, Family, FwNetwork, Redirect, Ruleset};
use kleene_plugin_api::Network;
use std::fmt::Write;

/// Renders the anchor body: macros, table, translation rules, then filter rules (pf's order).
pub fn render(r: &Ruleset) -> String {
    let mut out = String::from("# kleene anchor: load with `pfctl -a kleene -f -`\n");
    macros(&mut out, r);
    let redirects = redirects(r);
    for n in &r.networks {
        nat_rules(&mut out, &n.network);
    }
    for rd in &redirects {
        let _ = writeln!(out, "{}", rdr_rule(rd));
    }
    for n in &r.networks {
        filter_rules(&mut out, n);
    }
    for rd in &redirects {
        let _ = writeln!(out, "{}", pass_rule(rd));
    }
    out
}

fn m(n: &Network, what: &str) -> String {
    format!("$kleenet_{}_{what}", n.id)
}

fn macros(out: &mut String, r: &Ruleset) {
    let ifs = std::iter::once("lo0").chain(r.networks.iter().map(|n| n.network.interface.as_str()));
    let _ = writeln!(out, "kleenet_host_gw_if=\"{}\"", r.host_gw_if);
    let _ = writeln!(out, "kleenet_network_interfaces=\"{{ {} }}\"", join(ifs, ", "));
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
        None => ("{ $kleenet_host_gw_if, $kleenet_network_interfaces }".into(), "($kleenet_host_gw_if)".into()),
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

fn pass_rule(rd: &Redirect) -> String {
    let p = rd.port;
    let (af, proto, ports) = (af_of(rd), p.proto.as_str(), fmt_ports(p.container, ":"));
    format!("pass quick {af} proto {proto} from any to {} port {ports} keep state", rd.target)
}

fn filter_rules(out: &mut String, f: &FwNetwork) {
    let n = &f.network;
    for family in Family::BOTH {
        let Some((af, subnet)) = fam(n, family) else { continue };
        let _ = writeln!(out, "block in log {af} from any to {subnet}");
        if n.icc {
            let _ = writeln!(out, "pass quick on {} {af} from {subnet} to {subnet}", m(n, "all_interfaces"));
        }
        if let Some(gw) = host_gateway(n, family).filter(|_| !n.icc) {
            let _ = writeln!(out, "pass in quick on {} {af} from {subnet} to {gw}", m(n, "interface"));
        }
        if n.internal {
            let out_if = if n.nat.is_empty() { "$kleenet_host_gw_if" } else { n.nat.as_str() };
            let _ = writeln!(out, "block out log quick on $kleenet_network_interfaces {af} from {subnet}");
            let _ = writeln!(out, "block out log quick on {out_if} {af} from {subnet}");
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
