//! Loopback networks: one address-only interface per network (FreeBSD `lo`, Linux `dummy`).
//! Gateways mean nothing here: ipnet containers use their addresses directly.

use kleene_plugin_api::{Call, DefaultFor, Host, LinkKind, NetworkTraits, Op, Plan, Plugin, PluginError, PluginInfo};

#[derive(Default)]
pub struct Loopback;

impl Plugin for Loopback {
    fn info(&self) -> PluginInfo {
        let about = "an address-only interface per network (FreeBSD lo, Linux dummy)";
        PluginInfo::network_type("loopback", env!("CARGO_PKG_VERSION"), about)
            // Its containers (ipnet) send from the host's own stack: nothing is forwarded.
            .with_network_traits(NetworkTraits { forwarded: false, ..NetworkTraits::default() })
            .default_for(DefaultFor::NetworkType)
    }

    fn plan(&self, call: &Call, _host: &Host<'_>) -> Result<Plan, PluginError> {
        match call {
            Call::NetworkCreate { network } => Ok(Plan::own_link(&network.interface, LinkKind::Loopback, &[])),
            Call::NetworkRemove { network } => {
                let mut plan = Plan::new();
                plan.push(Op::DeleteLink { name: network.interface.clone(), kind: LinkKind::Loopback });
                Ok(plan)
            }
            other => Err(other.unsupported("loopback")),
        }
    }
}

kleene_plugin_api::export_plugin!(Loopback);
