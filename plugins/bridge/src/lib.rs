//! Bridge networks: a bridge interface per network. An `auto` gateway is held by the bridge
//! itself with the subnet's prefix, so vnet containers route through the host; an explicit
//! gateway is only the containers' default route (as in Kleene).

use kleene_plugin_api::{
    local_mac, Call, Host, LinkKind, Network, NetworkTraits, Op, Plan, Plugin, PluginError, PluginInfo, Step,
};
use std::net::IpAddr;

#[derive(Default)]
pub struct Bridge;

/// The gateway addresses the bridge holds, with their prefix lengths.
fn held_gateways(network: &Network) -> Vec<(IpAddr, u8)> {
    let v4 = network.gateway.filter(|_| network.gateway_auto).zip(network.subnet.map(|s| s.prefix));
    let v6 = network.gateway6.filter(|_| network.gateway6_auto).zip(network.subnet6.map(|s| s.prefix));
    v4.into_iter().chain(v6).collect()
}

/// The bridge with its held gateways, up (Kleene never brings its bridges up; `own_link`
/// does). Right after creation the bridge gets a MAC of its own, derived from the network id:
/// otherwise Linux lends it the lowest port's, and when that container stops the gateway's
/// MAC changes under every other container's ARP entry. The id keeps it across reconcile.
fn create(network: &Network) -> Plan {
    let mut plan = Plan::own_link(&network.interface, LinkKind::Bridge, &held_gateways(network));
    let mac = Op::SetLinkMac { name: network.interface.clone(), mac: local_mac(&network.id), sandbox: None };
    plan.steps.insert(1, Step { op: mac, undo: vec![] });
    plan
}

impl Plugin for Bridge {
    fn info(&self) -> PluginInfo {
        let about = "a bridge interface per network, holding the auto gateways";
        PluginInfo::network_type("bridge", env!("CARGO_PKG_VERSION"), about)
            .with_network_traits(NetworkTraits { auto_gateway: true, ..NetworkTraits::default() })
    }

    fn plan(&self, call: &Call, _host: &Host<'_>) -> Result<Plan, PluginError> {
        match call {
            Call::NetworkCreate { network } => Ok(create(network)),
            // Undone by building the bridge again as create does: gateways, MAC, up.
            Call::NetworkRemove { network } => {
                Ok(Plan::delete_own_link(&network.interface, LinkKind::Bridge, &create(network)))
            }
            other => Err(other.unsupported("bridge")),
        }
    }
}

kleene_plugin_api::export_plugin!(Bridge);
