//! What plugins built against plugin API 1.0 could not say about themselves.
//!
//! API 1.1 plugins declare their traits in `PluginInfo` (the stack a driver gives, how a
//! network type treats its interface and gateways, which defaults they fill). A 1.0 plugin
//! declares none of it; for the seven plugins kleene shipped with API 1.0 this table says
//! what they would have declared, so an upgraded host keeps working with old plugin files.
//! It is the only place in the host that knows a plugin by name. Any other 1.0 plugin gets
//! the defaults below.

use kleene_plugin_api::{DefaultFor, DriverTraits, NetworkTraits, PluginInfo, PluginKind, Stack};

/// A 1.0 driver of unknown stack: its addresses are treated as the host's (the firewall's
/// behaviour for every driver but vnet before API 1.1).
pub const UNKNOWN_DRIVER_STACK: Stack = Stack::Restricted;

/// Fill in what `info` leaves out, from the table of 1.0 built-ins or the defaults.
pub fn complete(mut info: PluginInfo) -> PluginInfo {
    match info.kind {
        PluginKind::Driver if info.driver_traits.is_none() => {
            let (stack, defaults) = match info.name.as_str() {
                "host" => (Stack::Host, vec![DefaultFor::DriverWithoutNetwork]),
                "ipnet" => (Stack::Restricted, vec![DefaultFor::DriverWithNetwork]),
                "vnet" => (Stack::Private, vec![]),
                "disabled" => (Stack::Disabled, vec![]),
                _ => (UNKNOWN_DRIVER_STACK, vec![]),
            };
            info.driver_traits = Some(DriverTraits { stack });
            info.defaults.extend(defaults);
        }
        PluginKind::NetworkType if info.network_traits.is_none() => {
            let base = NetworkTraits::default();
            let (traits, defaults) = match info.name.as_str() {
                "loopback" => (NetworkTraits { forwarded: false, ..base }, vec![DefaultFor::NetworkType]),
                "bridge" => (NetworkTraits { auto_gateway: true, ..base }, vec![]),
                "custom" => (NetworkTraits { existing_interface: true, ..base }, vec![]),
                _ => (base, vec![]),
            };
            info.network_traits = Some(traits);
            info.defaults.extend(defaults);
        }
        _ => {}
    }
    info
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_1_0_vnet_is_a_private_stack_and_declared_traits_win() {
        let old = PluginInfo::driver("vnet", "0.1.0", "", &["bridge"]);
        assert_eq!(complete(old).driver_traits, Some(DriverTraits { stack: Stack::Private }));
        let declared = PluginInfo::driver("vnet", "0.1.0", "", &["bridge"]).with_stack(Stack::Host);
        assert_eq!(complete(declared).driver_traits, Some(DriverTraits { stack: Stack::Host }));
        let unknown = PluginInfo::network_type("mine", "0.1.0", "");
        assert_eq!(complete(unknown).network_traits, Some(NetworkTraits::default()));
    }
}
