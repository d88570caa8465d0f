//! Disabled driver: no networking at all (jail `ip4=disable`; on Linux a namespace holding
//! nothing but a downed `lo`). It cannot join networks.

use kleene_plugin_api::{Call, Host, Plan, Plugin, PluginError, PluginInfo, Stack};

#[derive(Default)]
pub struct Disabled;

impl Plugin for Disabled {
    fn info(&self) -> PluginInfo {
        PluginInfo::driver("disabled", env!("CARGO_PKG_VERSION"), "no networking at all", &[])
            .with_stack(Stack::Disabled)
    }

    fn plan(&self, call: &Call, _host: &Host<'_>) -> Result<Plan, PluginError> {
        Plan::sandbox_only(call, Stack::Disabled, "disabled")
    }
}

kleene_plugin_api::export_plugin!(Disabled);
