//! Address pools: every network's used addresses must be exactly its gateways and its
//! endpoints' addresses (custom networks may also hold what their interface already had).

use super::state::{bits, from_bits, Cidr, Network, StateView};
use std::collections::BTreeSet;
use std::net::IpAddr;

/// Pools larger than this many used addresses are compared by count only.
const LIST_LIMIT: u128 = 1 << 16;

/// The addresses a subnet can hand out: no network address, no IPv4 broadcast (kleene's
/// documented rule; /31, /32, /127 and /128 use every address).
pub fn usable_range((addr, prefix): Cidr) -> (u128, u128) {
    let width: u32 = if addr.is_ipv4() { 32 } else { 128 };
    let host_bits = width - u32::from(prefix);
    let mask = if host_bits >= 128 { 0 } else { !((1u128 << host_bits) - 1) };
    let first = bits(addr) & mask;
    let last = if host_bits == 128 { u128::MAX } else { first + ((1u128 << host_bits) - 1) };
    match (addr.is_ipv4(), host_bits) {
        (_, 0) | (_, 1) => (first, last),
        (true, _) => (first + 1, last - 1),
        (false, _) => (first + 1, last),
    }
}

/// Compare every pool with the endpoints and gateways. `link_addresses` gives the
/// addresses a custom network's interface holds now (kleene reserves those at create).
pub fn check(view: &StateView, link_addresses: &dyn Fn(&Network) -> Vec<IpAddr>, out: &mut Vec<String>) {
    for r in &view.free {
        if view.network(&r.network_id).is_none() {
            out.push(format!("address pool rows left for network {} that no longer exists", r.network_id));
        }
    }
    for net in &view.networks {
        let on_link = if net.kind == "custom" { link_addresses(net) } else { Vec::new() };
        for (subnet, gateway) in net.families() {
            check_family(view, net, subnet, gateway, &on_link, out);
        }
    }
}

fn check_family(
    view: &StateView,
    net: &Network,
    subnet: Cidr,
    gateway: Option<IpAddr>,
    on_link: &[IpAddr],
    out: &mut Vec<String>,
) {
    let v4 = subnet.0.is_ipv4();
    let (first, last) = usable_range(subnet);
    let name = &net.name;
    let mut expected: BTreeSet<u128> = BTreeSet::new();
    if let Some(gw) = gateway.map(bits).filter(|g| (first..=last).contains(g)) {
        expected.insert(gw);
    }
    for ep in view.endpoints.iter().filter(|e| e.network_id == net.id) {
        for ip in ep.addresses().filter(|ip| ip.is_ipv4() == v4) {
            let n = bits(ip);
            if !(first..=last).contains(&n) {
                out.push(format!("network {name}: endpoint {} has {ip}, outside its usable range", ep.id));
            }
            if !expected.insert(n) {
                out.push(format!("network {name}: {ip} is held twice (gateway or another endpoint)"));
            }
        }
    }
    let mut ranges: Vec<(u128, u128)> =
        view.free.iter().filter(|r| r.network_id == net.id && r.v4 == v4).map(|r| (r.start, r.end)).collect();
    ranges.sort();
    let mut next = first;
    let mut used: Vec<(u128, u128)> = Vec::new();
    for &(s, e) in &ranges {
        if s > e || s < next || e > last {
            let show = |n| from_bits(subnet.0, n);
            out.push(format!("network {name}: free range {}-{} is malformed or overlaps", show(s), show(e)));
            continue;
        }
        if s > next {
            used.push((next, s - 1));
        }
        next = e + 1;
    }
    if next <= last {
        used.push((next, last));
    }
    let used_count: u128 = used.iter().map(|(s, e)| e - s + 1).sum();
    let reserved: BTreeSet<u128> = on_link.iter().filter(|ip| ip.is_ipv4() == v4).map(|ip| bits(*ip)).collect();
    if used_count > LIST_LIMIT {
        out.push(format!(
            "network {name}: {used_count} addresses of {}/{} used, {} expected",
            subnet.0,
            subnet.1,
            expected.len()
        ));
        return;
    }
    let used: BTreeSet<u128> = used.iter().flat_map(|&(s, e)| s..=e).collect();
    for n in expected.difference(&used) {
        let ip = from_bits(subnet.0, *n);
        out.push(format!(
            "network {name}: {ip} is in use (gateway or endpoint) but free in the pool: it could be handed out twice"
        ));
    }
    for n in used.difference(&expected).filter(|n| !reserved.contains(n)) {
        let ip = from_bits(subnet.0, *n);
        out.push(format!("network {name}: {ip} is taken in the pool but no endpoint or gateway holds it (leaked)"));
    }
}

#[cfg(test)]
mod tests {
    use super::super::state::{Endpoint, FreeRange};
    use super::*;

    fn view(free: &[(u128, u128)], endpoint_ip: Option<&str>) -> StateView {
        let net = Network {
            id: "n1".into(),
            name: "br".into(),
            kind: "bridge".into(),
            interface: "kleene0".into(),
            subnet: Some(("10.0.0.0".parse().unwrap(), 29)),
            subnet6: None,
            gateway: Some("10.0.0.1".parse().unwrap()),
            gateway_auto: true,
            gateway6: None,
            gateway6_auto: false,
            link_kind: None,
        };
        let base = bits("10.0.0.0".parse().unwrap());
        StateView {
            networks: vec![net],
            endpoints: endpoint_ip
                .map(|ip| Endpoint {
                    id: "e1".into(),
                    seq: 1,
                    network_id: "n1".into(),
                    container_id: "c1".into(),
                    epair: None,
                    interface: None,
                    ip: Some(ip.parse().unwrap()),
                    ip6: None,
                })
                .into_iter()
                .collect(),
            free: free
                .iter()
                .map(|&(s, e)| FreeRange { network_id: "n1".into(), v4: true, start: base + s, end: base + e })
                .collect(),
            ..StateView::default()
        }
    }

    fn findings(v: &StateView) -> Vec<String> {
        let mut out = Vec::new();
        check(v, &|_| Vec::new(), &mut out);
        out
    }

    #[test]
    fn gateway_and_endpoint_taken_is_consistent() {
        assert_eq!(findings(&view(&[(3, 6)], Some("10.0.0.2"))), Vec::<String>::new());
        assert_eq!(usable_range(("10.0.0.0".parse().unwrap(), 29)).1 & 0xff, 6);
    }

    #[test]
    fn a_leaked_address_and_a_double_handout_are_both_named() {
        let leaked = findings(&view(&[(4, 6)], Some("10.0.0.2")));
        assert_eq!(leaked.len(), 1);
        assert!(leaked[0].contains("10.0.0.3") && leaked[0].contains("leaked"), "{leaked:?}");
        let twice = findings(&view(&[(2, 6)], Some("10.0.0.2")));
        assert!(twice[0].contains("10.0.0.2") && twice[0].contains("twice"), "{twice:?}");
    }
}
