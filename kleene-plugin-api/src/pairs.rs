//! Plan building blocks for drivers that give containers a network stack of their own
//! (FreeBSD vnet jails, Linux network namespaces) and join them to bridges by pairs. The
//! built-in `vnet` driver is made of these; a third-party driver with a private stack uses
//! them with host-end names of its own.

use crate::{Attachment, Op, Plan};
use std::net::IpAddr;

/// The lowest `ethN` not used by the container's other pairs.
pub fn free_peer_name(others: &[Attachment]) -> String {
    let used: Vec<&str> = others.iter().filter_map(|a| a.endpoint.interface.as_deref()).collect();
    (0..).map(|i| format!("eth{i}")).find(|n| !used.contains(&n.as_str())).expect("unbounded range")
}

/// Whether some attachment already provides a default route of `ip`'s family.
fn has_route(attachments: &[Attachment], v4: bool) -> bool {
    attachments.iter().any(|a| if v4 { a.network.gateway.is_some() } else { a.network.gateway6.is_some() })
}

/// One address family of an attachment.
struct Family {
    address: Option<IpAddr>,
    prefix: Option<u8>,
    gateway: Option<IpAddr>,
    v4: bool,
}

/// Both ends of a pair at the network's MTU, if it prescribes one (a tunnelled network's
/// frames must fit the tunnel: a container sending full-size frames would have them dropped).
/// Before the pair joins the bridge and comes up; undone with the pair. `peer_sandbox` is
/// where the peer is (`None`: still on the host, as a handed-off pair's is).
fn pair_mtu(plan: &mut Plan, a: &Attachment, host: &str, peer: &str, peer_sandbox: Option<String>) {
    let Some(mtu) = a.network.link_mtu() else { return };
    plan.push_with_undo(Op::SetLinkMtu { name: host.into(), mtu, sandbox: None }, vec![]);
    plan.push_with_undo(Op::SetLinkMtu { name: peer.into(), mtu, sandbox: peer_sandbox }, vec![]);
}

/// A pair's host end is a bridge port, which carries no addresses of its own: no IPv6
/// link-local either (undone with the pair).
fn bridge_port_without_link_local(plan: &mut Plan, host: &str) {
    plan.push_with_undo(Op::NoIpv6LinkLocal { name: host.into(), sandbox: None }, vec![]);
}

/// Join one network: a pair (`host` end on the bridge, `peer` inside the sandbox), the
/// endpoint's addresses, and default routes no `earlier` attachment provides. Order per family
/// is address then route, as Kleene's jail parameters have it; the peer goes up before the
/// first route (Linux refuses a route over a down link).
pub fn join(plan: &mut Plan, sandbox: &str, a: &Attachment, host: String, peer: String, earlier: &[Attachment]) {
    let in_sandbox = Some(sandbox.to_string());
    plan.push(Op::CreatePair { host: host.clone(), peer: peer.clone(), sandbox: sandbox.to_string() });
    pair_mtu(plan, a, &host, &peer, in_sandbox.clone());
    bridge_port_without_link_local(plan, &host);
    // The same test as the address step below: an IPv6 address and its network's prefix.
    if a.endpoint.ip_address6.is_none() || a.network.subnet6.is_none() {
        // Docker's way too: no IPv6 on a container's interface without an IPv6 address.
        plan.push_with_undo(Op::NoIpv6LinkLocal { name: peer.clone(), sandbox: in_sandbox.clone() }, vec![]);
    }
    plan.push(Op::AttachToBridge { bridge: a.network.interface.clone(), member: host.clone() });
    plan.push(Op::SetLinkUp { name: host, sandbox: None });
    if let Some(mac) = a.endpoint.mac {
        // Before the container's end comes up; undone with the pair, whose address it is.
        let set = Op::SetLinkMac { name: peer.clone(), mac, sandbox: in_sandbox.clone() };
        plan.push_with_undo(set, vec![]);
    }
    let families = [
        Family {
            address: a.endpoint.ip_address,
            prefix: a.network.subnet.map(|s| s.prefix),
            gateway: a.network.gateway,
            v4: true,
        },
        Family {
            address: a.endpoint.ip_address6,
            prefix: a.network.subnet6.map(|s| s.prefix),
            gateway: a.network.gateway6,
            v4: false,
        },
    ];
    let mut peer_up = false;
    for Family { address, prefix, gateway, v4 } in families {
        if let (Some(address), Some(prefix)) = (address, prefix) {
            plan.push(Op::AddAddress { link: peer.clone(), address, prefix, sandbox: in_sandbox.clone() });
        }
        if !peer_up {
            plan.push(Op::SetLinkUp { name: peer.clone(), sandbox: in_sandbox.clone() });
            peer_up = true;
        }
        if let Some(gateway) = gateway.filter(|_| !has_route(earlier, v4)) {
            plan.push(Op::AddDefaultRoute { gateway, sandbox: sandbox.to_string() });
        }
    }
}

/// Leave one network: take the host end off the bridge and destroy the pair. `planned_host`
/// is the name `join` was given, used when the state has not recorded the actual one.
///
/// Destroying the pair takes the peer's addresses and routes with it, so its undo is the
/// whole of `join`: a rolled-back leave gives the container its attachment back as it was
/// (up, addressed, routed), not a bare pair. A default route of a family comes back only if
/// the container has none (an undo adds nothing that is there already).
pub fn leave(plan: &mut Plan, sandbox: &str, a: &Attachment, planned_host: String) {
    leave_after(plan, sandbox, a, planned_host, &[]);
}

/// [`leave`] for an attachment that was joined after `earlier` (a stop leaves every
/// attachment, in the order start joined them): its undo restores only the default routes
/// `join` gave it, so a rolled-back stop routes through the same networks as before.
pub fn leave_after(plan: &mut Plan, sandbox: &str, a: &Attachment, planned_host: String, earlier: &[Attachment]) {
    let host = a.endpoint.epair.clone().unwrap_or(planned_host);
    let peer = a.endpoint.interface.clone().unwrap_or_else(|| "eth0".into());
    let mut rejoin = Plan::new();
    join(&mut rejoin, sandbox, a, host.clone(), peer.clone(), earlier);
    plan.push(Op::DetachFromBridge { bridge: a.network.interface.clone(), member: host.clone() });
    let undo = rejoin.steps.into_iter().map(|s| s.op).collect();
    plan.push_with_undo(Op::DeletePair { host, peer, sandbox: sandbox.to_string() }, undo);
}

/// Join one network for a runtime that moves the peer into its own sandbox: the pair with
/// both ends on the host, the host end on the bridge and up. The runtime moves `peer`,
/// renames it and gives it the endpoint's addresses and routes, so none of that is planned.
pub fn hand_off(plan: &mut Plan, sandbox: &str, a: &Attachment, host: String, peer: String) {
    plan.push(Op::CreateHandoffPair { host: host.clone(), peer: peer.clone(), sandbox: sandbox.to_string() });
    pair_mtu(plan, a, &host, &peer, None);
    bridge_port_without_link_local(plan, &host);
    plan.push(Op::AttachToBridge { bridge: a.network.interface.clone(), member: host.clone() });
    plan.push(Op::SetLinkUp { name: host, sandbox: None });
}

/// Undo [`hand_off`]: the host end off the bridge, the pair deleted (wherever the runtime
/// left the peer). A rolled-back removal hands a new pair off again, as `hand_off` did.
pub fn take_back(plan: &mut Plan, sandbox: &str, a: &Attachment, planned_host: String, planned_peer: String) {
    let host = a.endpoint.epair.clone().unwrap_or(planned_host);
    let peer = a.endpoint.interface.clone().unwrap_or(planned_peer);
    let mut again = Plan::new();
    hand_off(&mut again, sandbox, a, host.clone(), peer.clone());
    plan.push(Op::DetachFromBridge { bridge: a.network.interface.clone(), member: host.clone() });
    let undo = again.steps.into_iter().map(|s| s.op).collect();
    plan.push_with_undo(Op::DeletePair { host, peer, sandbox: sandbox.to_string() }, undo);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Endpoint, Network};

    fn attachment() -> Attachment {
        let mut network = Network::new("aaaaaaaaaaaa", "n", "bridge", "kleene0");
        network.subnet = Some("10.0.0.0/24".parse().unwrap());
        network.gateway = Some("10.0.0.1".parse().unwrap());
        let endpoint = Endpoint {
            id: "bbbbbbbbbbbb".into(),
            network_id: network.id.clone(),
            container_id: "cccccccccccc".into(),
            epair: None,
            interface: None,
            ip_address: Some("10.0.0.2".parse().unwrap()),
            ip_address6: None,
            mac: None,
        };
        Attachment { network, endpoint }
    }

    #[test]
    fn a_network_with_an_mtu_gets_it_on_both_ends_before_they_join() {
        let mut a = attachment();
        a.network.cluster =
            Some(crate::ClusterScope { vni: 7, local: "192.0.2.1".parse().unwrap(), port: 4789, mtu: Some(1450) });
        let mut plan = Plan::new();
        join(&mut plan, "cccccccccccc", &a, "kvb".into(), "eth0".into(), &[]);
        let ops: Vec<Op> = plan.steps.into_iter().map(|s| s.op).collect();
        assert_eq!(
            ops[1..3],
            [
                Op::SetLinkMtu { name: "kvb".into(), mtu: 1450, sandbox: None },
                Op::SetLinkMtu { name: "eth0".into(), mtu: 1450, sandbox: Some("cccccccccccc".into()) },
            ]
        );
        assert!(matches!(ops[5], Op::AttachToBridge { .. }), "{ops:?}");
        let mut plain = Plan::new();
        join(&mut plain, "cccccccccccc", &attachment(), "kvb".into(), "eth0".into(), &[]);
        assert!(!plain.steps.iter().any(|s| matches!(s.op, Op::SetLinkMtu { .. })), "no MTU without one");
    }

    /// The host end (a bridge port) never gets an IPv6 link-local address; the container's
    /// end gets none only when it has no IPv6 address; both before anything comes up.
    #[test]
    fn link_local_addresses_only_where_ipv6_is_used() {
        let no_ll = |plan: &Plan| -> Vec<(String, Option<String>)> {
            let up = plan.steps.iter().position(|s| matches!(s.op, Op::SetLinkUp { .. })).unwrap();
            let seen = plan.steps.iter().filter_map(|s| match &s.op {
                Op::NoIpv6LinkLocal { name, sandbox } => Some((name.clone(), sandbox.clone())),
                _ => None,
            });
            assert!(plan.steps[up..].iter().all(|s| !matches!(s.op, Op::NoIpv6LinkLocal { .. })), "after up");
            seen.collect()
        };
        let mut v4 = Plan::new();
        join(&mut v4, "cccccccccccc", &attachment(), "kvb".into(), "eth0".into(), &[]);
        assert_eq!(no_ll(&v4), [("kvb".into(), None), ("eth0".into(), Some("cccccccccccc".into()))]);
        let mut a = attachment();
        a.network.subnet6 = Some("fd00::/64".parse().unwrap());
        a.endpoint.ip_address6 = Some("fd00::2".parse().unwrap());
        let mut dual = Plan::new();
        join(&mut dual, "cccccccccccc", &a, "kvb".into(), "eth0".into(), &[]);
        assert_eq!(no_ll(&dual), [("kvb".to_string(), None)]);
    }

    #[test]
    fn a_handed_off_pair_stays_on_the_host_and_plans_nothing_inside_the_sandbox() {
        let mut plan = Plan::new();
        hand_off(&mut plan, "cccccccccccc", &attachment(), "kvb".into(), "kwb".into());
        let ops: Vec<Op> = plan.steps.into_iter().map(|s| s.op).collect();
        assert_eq!(
            ops,
            vec![
                Op::CreateHandoffPair { host: "kvb".into(), peer: "kwb".into(), sandbox: "cccccccccccc".into() },
                Op::NoIpv6LinkLocal { name: "kvb".into(), sandbox: None },
                Op::AttachToBridge { bridge: "kleene0".into(), member: "kvb".into() },
                Op::SetLinkUp { name: "kvb".into(), sandbox: None },
            ]
        );
    }

    #[test]
    fn taking_a_pair_back_is_undone_by_handing_it_off_again() {
        let mut a = attachment();
        a.endpoint.epair = Some("kvb".into());
        a.endpoint.interface = Some("kwb".into());
        let mut plan = Plan::new();
        take_back(&mut plan, "cccccccccccc", &a, "unused".into(), "unused".into());
        let delete = &plan.steps[1];
        assert_eq!(
            delete.op,
            Op::DeletePair { host: "kvb".into(), peer: "kwb".into(), sandbox: "cccccccccccc".into() }
        );
        let mut again = Plan::new();
        hand_off(&mut again, "cccccccccccc", &a, "kvb".into(), "kwb".into());
        assert_eq!(delete.undo, again.steps.into_iter().map(|s| s.op).collect::<Vec<_>>());
    }
}
