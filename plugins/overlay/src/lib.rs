//! Overlay networks: one network across the hosts of a cluster. On each host the network is
//! a bridge (holding the auto gateways, as a bridge network's does) with a VXLAN device as
//! one of its ports; containers join the bridge as they join a bridge network. The VXLAN
//! device never learns or floods: for every container on another host it gets a static
//! forwarding entry (its MAC is behind that host's underlay address) and a neighbour entry
//! (its address has that MAC), which the device's proxy answers ARP with. That is how
//! Docker's overlay driver programs its tunnels; it keeps broadcast off the underlay.

use kleene_plugin_api::{
    local_mac, Call, ClusterScope, Host, LinkKind, Network, NetworkTraits, Op, Peer, Plan, Plugin, PluginError,
    PluginInfo, Step,
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

/// This host's side of the network: the bridge with its gateways and a MAC of its own, then
/// the VXLAN device as a port, up. Every host's bridge holds the same gateway with the same
/// MAC (both derive from the network): the gateway is local everywhere, and no entry ever
/// points a container's gateway traffic across the tunnel.
fn create(network: &Network) -> Result<Plan, PluginError> {
    let scope = scope(network)?;
    let bridge = network.interface.clone();
    let vxlan = vxlan_name(&scope);
    let mut plan = Plan::own_link(&bridge, LinkKind::Bridge, &held_gateways(network));
    let mac = Op::SetLinkMac { name: bridge.clone(), mac: local_mac(&network.id), sandbox: None };
    plan.steps.insert(1, Step { op: mac, undo: vec![] });
    plan.check(kleene_plugin_api::Check::LinkAbsent { name: vxlan.clone() });
    plan.push(Op::CreateVxlan { name: vxlan.clone(), vni: scope.vni, local: scope.local, port: scope.port });
    plan.push(Op::AttachToBridge { bridge, member: vxlan.clone() });
    plan.push(Op::SetLinkUp { name: vxlan, sandbox: None });
    Ok(plan)
}

/// Remove this host's side: the VXLAN device (its entries go with it), then the bridge.
/// Each is undone by building it again as `create` does.
fn remove(network: &Network) -> Result<Plan, PluginError> {
    let scope = scope(network)?;
    let built = create(network)?;
    let (bridge_steps, vxlan_steps) = built.steps.split_at(built.steps.len() - 3);
    let mut plan = Plan::new();
    let vxlan = Op::DeleteVxlan { name: vxlan_name(&scope), vni: scope.vni, local: scope.local, port: scope.port };
    plan.push_with_undo(vxlan, vxlan_steps.iter().map(|s| s.op.clone()).collect());
    let bridge = Op::DeleteLink { name: network.interface.clone(), kind: LinkKind::Bridge };
    plan.push_with_undo(bridge, bridge_steps.iter().map(|s| s.op.clone()).collect());
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
        let traits = NetworkTraits { auto_gateway: true, cluster_scoped: true, ..NetworkTraits::default() };
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
        n.cluster = Some(ClusterScope { vni: 7, local: "192.0.2.1".parse().unwrap(), port: 4789 });
        n
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
