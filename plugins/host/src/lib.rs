//! Host driver: the container uses the host's network stack and every address on it
//! (jail `ip4=inherit`). It cannot join networks; its sandbox only tracks processes.

use kleene_plugin_api::{Call, DefaultFor, Host, Plan, Plugin, PluginError, PluginInfo, Stack};

#[derive(Default)]
pub struct HostDriver;

impl Plugin for HostDriver {
    fn info(&self) -> PluginInfo {
        PluginInfo::driver("host", env!("CARGO_PKG_VERSION"), "the container shares the host's network stack", &[])
            .with_stack(Stack::Host)
            .default_for(DefaultFor::DriverWithoutNetwork)
    }

    fn plan(&self, call: &Call, _host: &Host<'_>) -> Result<Plan, PluginError> {
        Plan::sandbox_only(call, Stack::Host, "host")
    }
}

kleene_plugin_api::export_plugin!(HostDriver);
