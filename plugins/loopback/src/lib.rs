//! Loopback networks: one address-only interface per network (FreeBSD `lo`, Linux `dummy`).
//! Gateways mean nothing here: ipnet containers use their addresses directly.

use kleene_plugin_api::{Call, Check, LinkKind, Op, Plan, Plugin, PluginError, PluginInfo};

#[derive(Default)]
pub struct Loopback;

impl Plugin for Loopback {
    fn info(&self) -> PluginInfo {
        PluginInfo::network_type(
            "loopback",
            env!("CARGO_PKG_VERSION"),
            "an address-only interface per network (FreeBSD lo, Linux dummy)",
        )
    }

    fn plan(&self, call: &Call, _host: &kleene_plugin_api::Host<'_>) -> Result<Plan, PluginError> {
        let mut plan = Plan::new();
        match call {
            Call::NetworkCreate { network } => {
                let name = network.interface.clone();
                plan.check(Check::LinkAbsent { name: name.clone() });
                plan.push(Op::CreateLink { name: name.clone(), kind: LinkKind::Loopback });
                plan.push(Op::SetLinkUp { name, sandbox: None });
            }
            Call::NetworkRemove { network } => {
                plan.push(Op::DeleteLink { name: network.interface.clone(), kind: LinkKind::Loopback });
            }
            other => return Err(other.unsupported("loopback")),
        }
        Ok(plan)
    }
}

kleene_plugin_api::export_plugin!(Loopback);
