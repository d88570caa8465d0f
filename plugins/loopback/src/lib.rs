//! Loopback networks: one address-only interface per network (FreeBSD `lo`, Linux `dummy`).
//! Gateways mean nothing here: ipnet containers use their addresses directly.

use kleene_plugin_api::{
    Call, DefaultFor, Host, LinkKind, Network, NetworkTraits, Plan, Plugin, PluginError, PluginInfo,
};

#[derive(Default)]
pub struct Loopback;

fn create(network: &Network) -> Plan {
    Plan::own_link(&network.interface, LinkKind::Loopback, &[])
}

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
            Call::NetworkCreate { network } => Ok(create(network)),
            // Undone by building the interface again as create does (up).
            Call::NetworkRemove { network } => {
                Ok(Plan::delete_own_link(&network.interface, LinkKind::Loopback, &create(network)))
            }
            other => Err(other.unsupported("loopback")),
        }
    }
}

kleene_plugin_api::export_plugin!(Loopback);
