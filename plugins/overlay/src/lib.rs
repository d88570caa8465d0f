//! Overlay networks: one network across the hosts of a cluster. On each host the network is
//! a bridge (holding the auto gateways, as a bridge network's does) with a VXLAN device as
//! one of its ports; containers join the bridge as they join a bridge network. The VXLAN
//! device never learns or floods: for every container on another host it gets a static
//! forwarding entry (its MAC is behind that host's underlay address) and a neighbour entry
//! (its address has that MAC), which the device's proxy answers ARP with. That is how
//! Docker's overlay driver programs its tunnels; it keeps broadcast off the underlay.

use kleene_plugin_api::{
    local_mac, Call, ClusterScope, Host, LinkKind, Network, NetworkTraits, Op, Peer, Plan, Plugin, PluginError,
    PluginInfo,
};
use std::net::IpAddr;

#[derive(Default)]
pub struct Overlay;

/// The VXLAN device of a network: named after its VNI, so every host names it alike.
pub fn vxlan_name(scope: &ClusterScope) -> String {
    format!("kvx{}", scope.vni)
}

fn scope(network: &Network) -> Result<ClusterScope, PluginError> {
    network.cluster.ok_or_else(|| {
        PluginError(format!("network '{}' has no cluster scope: overlay networks need --cluster", network.name))
    })
}

fn held_gateways(network: &Network) -> Vec<(IpAddr, u8)> {
    let v4 = network.gateway.filter(|_| network.gateway_auto).zip(network.subnet.map(|s| s.prefix));
    let v6 = network.gateway6.filter(|_| network.gateway6_auto).zip(network.subnet6.map(|s| s.prefix));
    v4.into_iter().chain(v6).collect()
}

/// What VXLAN adds to each frame besides the outer IP header: the inner frame's Ethernet
/// header 14, UDP 8, VXLAN 8. The host adds the outer IP header (20 or 40) and lowers the
/// network's MTU below the underlay's by the sum (50 over IPv4, as Docker's 1450).
const VXLAN_ENCAPSULATION: u16 = 14 + 8 + 8;

/// The links' MTU, where the network prescribes one: undone with the link.
fn set_mtu(plan: &mut Plan, network: &Network, name: &str) {
    if let Some(mtu) = network.link_mtu() {
        plan.push_with_undo(Op::SetLinkMtu { name: name.into(), mtu, sandbox: None }, vec![]);
    }
}

/// The bridge with its gateways, a MAC of its own and the network's MTU. Every host's
/// bridge holds the same gateway with the same MAC (both derive from the network): the
/// gateway is local everywhere, and no entry ever points a container's gateway traffic
/// across the tunnel.
fn bridge(network: &Network) -> Plan {
    let bridge = network.interface.clone();
    let mut plan = Plan::own_link(&bridge, LinkKind::Bridge, &held_gateways(network));
    let mut settings = Plan::new();
    settings
        .push_with_undo(Op::SetLinkMac { name: bridge.clone(), mac: local_mac(&network.id), sandbox: None }, vec![]);
    set_mtu(&mut settings, network, &bridge);
    // Right after the link is made, before addresses and up.
    plan.steps.splice(1..1, settings.steps);
    plan
}

/// The VXLAN device at the network's MTU, a port of the bridge, up.
fn vxlan(network: &Network, scope: &ClusterScope) -> Plan {
    let vxlan = vxlan_name(scope);
    let mut plan = Plan::new();
    plan.check(kleene_plugin_api::Check::LinkAbsent { name: vxlan.clone() });
    plan.push(Op::CreateVxlan { name: vxlan.clone(), vni: scope.vni, local: scope.local, port: scope.port });
    set_mtu(&mut plan, network, &vxlan);
    plan.push(Op::AttachToBridge { bridge: network.interface.clone(), member: vxlan.clone() });
    plan.push(Op::SetLinkUp { name: vxlan, sandbox: None });
    plan
}

/// This host's side of the network: the bridge, then the VXLAN device as a port of it.
fn create(network: &Network) -> Result<Plan, PluginError> {
    let scope = scope(network)?;
    let mut plan = bridge(network);
    plan.extend(vxlan(network, &scope));
    Ok(plan)
}

/// Remove this host's side: the VXLAN device (its entries go with it), then the bridge.
/// Each is undone by building it again as `create` does.
fn remove(network: &Network) -> Result<Plan, PluginError> {
    let scope = scope(network)?;
    let ops = |plan: Plan| plan.steps.into_iter().map(|s| s.op).collect();
    let mut plan = Plan::new();
    let delete = Op::DeleteVxlan { name: vxlan_name(&scope), vni: scope.vni, local: scope.local, port: scope.port };
    plan.push_with_undo(delete, ops(vxlan(network, &scope)));
    let bridge_op = Op::DeleteLink { name: network.interface.clone(), kind: LinkKind::Bridge };
    plan.push_with_undo(bridge_op, ops(bridge(network)));
    Ok(plan)
}

/// Entries for containers on other hosts: forwarding before neighbour when they come (ARP
/// is answered only once frames can be delivered), neighbour before forwarding when they go.
fn peers(network: &Network, add: &[Peer], remove: &[Peer]) -> Result<Plan, PluginError> {
    let link = vxlan_name(&scope(network)?);
    let mut plan = Plan::new();
    for p in remove {
        plan.push(Op::RemoveNeighbour { link: link.clone(), address: p.address, mac: p.mac });
        plan.push(Op::RemoveForwarding { link: link.clone(), mac: p.mac, remote: p.host });
    }
    for p in add {
        plan.push(Op::AddForwarding { link: link.clone(), mac: p.mac, remote: p.host });
        plan.push(Op::AddNeighbour { link: link.clone(), address: p.address, mac: p.mac });
    }
    Ok(plan)
}

impl Plugin for Overlay {
    fn info(&self) -> PluginInfo {
        let about = "one network across the hosts of a cluster: a bridge per host, joined by VXLAN";
        let traits = NetworkTraits {
            auto_gateway: true,
            cluster_scoped: true,
            encapsulation: VXLAN_ENCAPSULATION,
            ..NetworkTraits::default()
        };
        PluginInfo::network_type("overlay", env!("CARGO_PKG_VERSION"), about).with_network_traits(traits)
    }

    fn plan(&self, call: &Call, _host: &Host<'_>) -> Result<Plan, PluginError> {
        match call {
            Call::NetworkCreate { network } => create(network),
            Call::NetworkRemove { network } => remove(network),
            Call::NetworkPeers { network, add, remove } => peers(network, add, remove),
            other => Err(other.unsupported("overlay")),
        }
    }
}

kleene_plugin_api::export_plugin!(Overlay);

#[cfg(test)]
mod tests {
    use super::*;

    fn network() -> Network {
        let mut n = Network::new("0123456789ab", "ov", "overlay", "kov7");
        n.cluster = Some(ClusterScope { vni: 7, local: "192.0.2.1".parse().unwrap(), port: 4789, mtu: Some(1450) });
        n
    }

    #[test]
    fn the_bridge_and_the_tunnel_get_the_networks_mtu_before_they_come_up() {
        let ops: Vec<Op> = create(&network()).unwrap().steps.into_iter().map(|s| s.op).collect();
        for link in ["kov7", "kvx7"] {
            let mtu = ops.iter().position(|o| *o == Op::SetLinkMtu { name: link.into(), mtu: 1450, sandbox: None });
            let up = ops.iter().position(|o| *o == Op::SetLinkUp { name: link.into(), sandbox: None });
            assert!(matches!((mtu, up), (Some(m), Some(u)) if m < u), "{link}: {ops:?}");
        }
        let mut unset = network();
        unset.cluster.as_mut().unwrap().mtu = None;
        let ops = create(&unset).unwrap().steps;
        assert!(!ops.iter().any(|s| matches!(s.op, Op::SetLinkMtu { .. })), "no MTU prescribed, none set");
    }

    #[test]
    fn removal_is_undone_by_the_creation() {
        let n = network();
        let created: Vec<Op> = create(&n).unwrap().steps.into_iter().map(|s| s.op).collect();
        let removal = remove(&n).unwrap();
        let undone: Vec<Op> = removal.steps.iter().rev().flat_map(|s| s.undo.clone()).collect();
        assert_eq!(undone, created);
    }

    #[test]
    fn a_network_without_cluster_scope_is_refused() {
        let mut n = network();
        n.cluster = None;
        assert!(create(&n).unwrap_err().0.contains("--cluster"));
    }
}
