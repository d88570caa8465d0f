//! Bridge networks: a bridge interface per network. An `auto` gateway is held by the bridge
//! itself with the subnet's prefix, so vnet containers route through the host.

use kleene_plugin_api::{Call, Check, LinkKind, Network, Op, Plan, Plugin, PluginError, PluginInfo};

#[derive(Default)]
pub struct Bridge;

/// The gateway addresses the bridge holds, with their prefix lengths.
fn held_gateways(network: &Network) -> Vec<(std::net::IpAddr, u8)> {
    let v4 = network.gateway.filter(|_| network.gateway_auto).zip(network.subnet.map(|s| s.prefix));
    let v6 = network.gateway6.filter(|_| network.gateway6_auto).zip(network.subnet6.map(|s| s.prefix));
    v4.into_iter().chain(v6).collect()
}

impl Plugin for Bridge {
    fn info(&self) -> PluginInfo {
        PluginInfo::network_type(
            "bridge",
            env!("CARGO_PKG_VERSION"),
            "a bridge interface per network, holding the auto gateways",
        )
    }

    fn plan(&self, call: &Call, _host: &kleene_plugin_api::Host<'_>) -> Result<Plan, PluginError> {
        let mut plan = Plan::new();
        match call {
            Call::NetworkCreate { network } => {
                let name = network.interface.clone();
                plan.check(Check::LinkAbsent { name: name.clone() });
                plan.push(Op::CreateLink { name: name.clone(), kind: LinkKind::Bridge });
                for (address, prefix) in held_gateways(network) {
                    plan.push(Op::AddAddress { link: name.clone(), address, prefix, sandbox: None });
                }
                // Kleene never brings its bridges up; traffic cannot flow until it is.
                plan.push(Op::SetLinkUp { name, sandbox: None });
            }
            Call::NetworkRemove { network } => {
                plan.push(Op::DeleteLink { name: network.interface.clone(), kind: LinkKind::Bridge });
            }
            other => return Err(other.unsupported("bridge")),
        }
        Ok(plan)
    }
}

kleene_plugin_api::export_plugin!(Bridge);
