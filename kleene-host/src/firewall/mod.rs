//! The firewall: a pure model of what kleene's networks need from the packet filter, and two
//! renderers of it — [`nft`] (Linux, one `inet kleene` table replaced atomically) and [`pf`]
//! (FreeBSD, the body of the `kleene` anchor). Nothing here touches the system: callers feed
//! the rendered text to `nft -f -` or `pfctl -a kleene -f -`.
//!
//! The facts both renderers share (which networks NAT and where, which addresses are
//! containers, which published ports become which redirects) are derived here once, so the
//! renderers only differ in syntax.

pub mod inputs;
mod load;
pub mod nft;
pub mod pf;

pub use load::{forwarding_needed, load};

#[cfg(test)]
mod tests;

use kleene_plugin_api::{Cidr, Network, Stack};
use std::collections::HashSet;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Transport protocol of a published port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
}

/// An inclusive port range; a single port has `lo == hi`.
pub type PortRange = (u16, u16);

/// Formats a port range with `sep` between its ends (`-` for nft, `:` for pf).
pub fn fmt_ports((lo, hi): PortRange, sep: &str) -> String {
    if lo == hi {
        lo.to_string()
    } else {
        format!("{lo}{sep}{hi}")
    }
}

/// One published port (or range), as parsed from `--publish`.
///
/// Invariant (kept by [`parse_publish`]): `container` is either a single port or a range of
/// the same length as `host` (port `host.0 + i` maps to `container.0 + i`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Published {
    /// Only traffic arriving on this interface is redirected; `None` = any.
    pub interface: Option<String>,
    pub host: PortRange,
    pub container: PortRange,
    pub proto: Proto,
}

const PUBLISH_SYNTAX: &str = "[IF:]HOST[-END][:CONTAINER|:C-*|:C-CEND|:*][/tcp|/udp], e.g. 8080:80/tcp";

/// Parses a published-port spec.
///
/// Grammar (Kleene's `[IF:]HOST[:CONTAINER][/tcp|/udp]`, with ranges written with `-`):
///
/// ```text
/// spec      = [ IF ":" ] host [ ":" container ] [ "/" ( "tcp" | "udp" ) ]
/// host      = PORT | PORT "-" PORT                 ; 8080, 8000-8010
/// container = PORT | PORT "-" PORT | PORT "-*" | "*"
/// IF        = 1-15 characters, the first not a digit, none of ':', '/', whitespace
/// PORT      = 1..65535
/// ```
///
/// Kleene hands the spec straight to pf, whose ranges are `A:B` and whose `N:*` means "a
/// range starting at N". With `:` also separating HOST from CONTAINER, `8000:8010` would be
/// ambiguous (a range, or 8000 → 8010?), so kleene writes ranges with `-` (as Docker does)
/// and renders them as `A:B` for pf. Container side:
/// - omitted or `*`: the same port(s) as the host side;
/// - `N`: a single port; a host range then maps every port onto N (as pf does);
/// - `N-*`: a range starting at N, as long as the host range (pf's `N:*`);
/// - `C-D`: a range that must be as long as the host range.
///
/// The protocol defaults to tcp.
pub fn parse_publish(spec: &str) -> Result<Published, String> {
    let fail = |why: &str| format!("invalid published port {spec:?}: {why}; expected {PUBLISH_SYNTAX}");
    let (ports, proto) = match spec.rsplit_once('/') {
        Some((ports, "tcp")) => (ports, Proto::Tcp),
        Some((ports, "udp")) => (ports, Proto::Udp),
        Some((_, other)) => return Err(fail(&format!("unknown protocol {other:?} (use tcp or udp)"))),
        None => (spec, Proto::Tcp),
    };
    let mut fields: Vec<&str> = ports.split(':').collect();
    let interface = match fields.first() {
        Some(first) if fields.len() > 1 && !first.starts_with(|c: char| c.is_ascii_digit()) => {
            Some(check_interface(fields.remove(0)).map_err(|why| fail(&why))?)
        }
        _ => None,
    };
    let (host, container) = match fields.as_slice() {
        [host] => (parse_range(host).map_err(|why| fail(&why))?, None),
        [host, container] => (parse_range(host).map_err(|why| fail(&why))?, Some(*container)),
        _ => return Err(fail("too many ':' (write port ranges as A-B)")),
    };
    let container = container_range(host, container).map_err(|why| fail(&why))?;
    Ok(Published { interface, host, container, proto })
}

/// The one rule for interface names (a `"` or `\` would be dropped by [`quote`] and the
/// rule would match nothing): specs are parsed at create and again when read back.
fn check_interface(name: &str) -> Result<String, String> {
    crate::commands::network::validate_interface(name).map_err(|e| e.to_string())?;
    Ok(name.to_string())
}

fn parse_port(s: &str) -> Result<u16, String> {
    match s.parse::<u16>() {
        Ok(0) | Err(_) => Err(format!("bad port {s:?} (ports are 1-65535)")),
        Ok(p) => Ok(p),
    }
}

fn parse_range(s: &str) -> Result<PortRange, String> {
    let Some((lo, hi)) = s.split_once('-') else {
        let p = parse_port(s)?;
        return Ok((p, p));
    };
    let (lo, hi) = (parse_port(lo)?, parse_port(hi)?);
    if lo > hi {
        return Err(format!("range {s:?} runs backwards (write {hi}-{lo})"));
    }
    Ok((lo, hi))
}

fn container_range(host: PortRange, spec: Option<&str>) -> Result<PortRange, String> {
    let len = host.1 - host.0;
    match spec {
        None | Some("*") => Ok(host),
        Some(s) => match s.strip_suffix("-*") {
            Some(start) => {
                let start = parse_port(start)?;
                let end = start.checked_add(len).ok_or(format!("container range {s:?} runs past 65535"))?;
                Ok((start, end))
            }
            None => {
                let range = parse_range(s)?;
                if range.0 != range.1 && range.1 - range.0 != len {
                    return Err(format!("container range {s:?} is not as long as the host range (or use N-*)"));
                }
                Ok(range)
            }
        },
    }
}

/// Whether containers of a stack have an address of their own to redirect published ports to.
pub fn can_publish(stack: Stack) -> bool {
    matches!(stack, Stack::Restricted | Stack::Private)
}

/// Refuses drivers whose containers have no address of their own to redirect to.
pub fn check_can_publish(driver: &str, stack: Stack) -> Result<(), String> {
    if can_publish(stack) {
        Ok(())
    } else {
        Err(format!("cannot publish ports of a container using the '{driver}' network driver"))
    }
}

/// A container's membership in a network, as the firewall sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FwEndpoint {
    /// Container id.
    pub container: String,
    /// Container name (for comments).
    pub name: String,
    /// The stack its driver declares: whether the host holds its addresses.
    pub stack: Stack,
    pub running: bool,
    pub v4: Option<Ipv4Addr>,
    pub v6: Option<Ipv6Addr>,
    /// The container's published ports (the same list on each of its endpoints).
    pub published: Vec<Published>,
}

impl FwEndpoint {
    pub fn addresses(&self) -> impl Iterator<Item = IpAddr> + '_ {
        self.v4.map(IpAddr::V4).into_iter().chain(self.v6.map(IpAddr::V6))
    }
}

/// A network with its endpoints and the host-side ends of its vnet pairs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FwNetwork {
    pub network: Network,
    /// Whether its traffic is forwarded by the host (its network type's declaration).
    pub forwarded: bool,
    pub endpoints: Vec<FwEndpoint>,
    /// Host-side interfaces of the network's running vnet containers.
    pub epairs: Vec<String>,
    /// Whether the network serves container DNS on its gateways (docs/dns.md).
    pub dns: bool,
}

/// The DNS port containers of a DNS network reach at their gateway, whatever else the
/// network forbids (`--internal`, `--no-icc`).
pub const DNS_PORT: u16 = 53;

/// Where containers of `f` ask for names: (their subnet, the gateway serving it), per
/// family, for a DNS network whose gateway the host holds.
pub fn dns_gateways(f: &FwNetwork) -> impl Iterator<Item = (Cidr, IpAddr)> + '_ {
    let n = &f.network;
    [(n.subnet, n.gateway, n.gateway_auto), (n.subnet6, n.gateway6, n.gateway6_auto)]
        .into_iter()
        .filter(move |_| f.dns)
        .filter_map(|(subnet, gw, held)| Some((subnet?, gw.filter(|_| held)?)))
        .map(|(s, gw)| (Cidr { addr: s.network(), prefix: s.prefix }, gw))
}

/// Everything the firewall is generated from.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Ruleset {
    pub networks: Vec<FwNetwork>,
    /// The host's default-route interface (pf's `kleenet_host_gw_if`).
    pub host_gw_if: String,
}

/// Address family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub const BOTH: [Family; 2] = [Family::V4, Family::V6];

    pub fn of(ip: IpAddr) -> Family {
        if ip.is_ipv4() {
            Family::V4
        } else {
            Family::V6
        }
    }
}

/// The network's subnets (v4 first), with host bits cleared.
pub fn subnets(n: &Network) -> impl Iterator<Item = Cidr> {
    n.subnet.into_iter().chain(n.subnet6).map(|c| Cidr { addr: c.network(), prefix: c.prefix })
}

/// The network's subnet of `family`, if any.
pub fn subnet_of(n: &Network, family: Family) -> Option<Cidr> {
    subnets(n).find(|c| Family::of(c.addr) == family)
}

/// The interface this network's outbound traffic is masqueraded on, if it NATs at all.
pub fn nat_if(n: &Network) -> Option<&str> {
    (!n.nat.is_empty() && !n.internal).then_some(n.nat.as_str())
}

/// Every subnet of every network, in network order.
pub fn all_subnets(r: &Ruleset) -> impl Iterator<Item = (&Network, Cidr)> {
    r.networks.iter().flat_map(|f| subnets(&f.network).map(move |c| (&f.network, c)))
}

/// Every container address, with its network (stopped containers included: their addresses
/// stay allocated to them).
pub fn container_addresses(r: &Ruleset) -> impl Iterator<Item = (&Network, &FwEndpoint, IpAddr)> {
    r.networks.iter().flat_map(|f| f.endpoints.iter().flat_map(move |e| e.addresses().map(move |a| (&f.network, e, a))))
}

/// One published port of one container, for one address family: redirect traffic for `host`
/// to `target:container`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redirect<'a> {
    pub network: &'a Network,
    pub endpoint: &'a FwEndpoint,
    pub port: &'a Published,
    pub target: IpAddr,
}

/// The redirects of all running containers that may publish. A container on several networks
/// publishes through its first non-internal endpoint that has an address of the family
/// (internal networks take no traffic from outside).
pub fn redirects(r: &Ruleset) -> Vec<Redirect<'_>> {
    let mut done: HashSet<(&str, Family)> = HashSet::new();
    let mut out = Vec::new();
    for f in r.networks.iter().filter(|f| !f.network.internal) {
        for e in f.endpoints.iter().filter(|e| e.running && can_publish(e.stack)) {
            for target in e.addresses() {
                if done.insert((e.container.as_str(), Family::of(target))) {
                    out.extend(e.published.iter().map(|port| Redirect {
                        network: &f.network,
                        endpoint: e,
                        port,
                        target,
                    }));
                }
            }
        }
    }
    out
}

/// `"a"` → `"a"` quoted for nft and pf (names are checked not to contain quotes upstream; any
/// stray quote is dropped rather than break the ruleset).
pub fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace(['"', '\\', '\n'], ""))
}

/// A comma-separated list.
pub fn join<T: fmt::Display>(items: impl IntoIterator<Item = T>, sep: &str) -> String {
    items.into_iter().map(|i| i.to_string()).collect::<Vec<_>>().join(sep)
}
