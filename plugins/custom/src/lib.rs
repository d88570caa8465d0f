//! Custom networks: an interface the operator owns. kleene checks that it exists and never
//! creates, changes or destroys it.

use kleene_plugin_api::{Call, Check, NetworkTraits, Plan, Plugin, PluginError, PluginInfo};

#[derive(Default)]
pub struct Custom;

impl Plugin for Custom {
    fn info(&self) -> PluginInfo {
        PluginInfo::network_type(
            "custom",
            env!("CARGO_PKG_VERSION"),
            "an existing interface the operator names; never created or destroyed",
        )
        .with_network_traits(NetworkTraits { existing_interface: true, ..NetworkTraits::default() })
    }

    fn plan(&self, call: &Call, _host: &kleene_plugin_api::Host<'_>) -> Result<Plan, PluginError> {
        let mut plan = Plan::new();
        match call {
            Call::NetworkCreate { network } => {
                plan.check(Check::LinkExists { name: network.interface.clone() });
            }
            Call::NetworkRemove { .. } => {}
            other => return Err(other.unsupported("custom")),
        }
        Ok(plan)
    }
}

kleene_plugin_api::export_plugin!(Custom);
