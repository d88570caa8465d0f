//! The binary interface: one abi_stable prefix module per plugin library.
//!
//! Fields may only be appended (after `call`); a host reading an older plugin sees appended
//! fields as `None`. Every entry point runs under `catch_unwind`: a panicking plugin returns
//! an error instead of aborting the host.

use crate::call::{Call, PluginInfo};
use crate::plugin::{Host, Plugin};
use abi_stable::{
    declare_root_module_statics,
    library::RootModule,
    prefix_type::PrefixTypeTrait,
    sabi_trait,
    sabi_types::{RRef, VersionStrings},
    std_types::{RErr, ROk, RResult, RStr, RString},
    StableAbi,
};
use std::panic::{catch_unwind, AssertUnwindSafe};

/// Services the host lends a plugin for the duration of one call.
#[sabi_trait]
pub trait HostServices {
    /// Re-emit an event through the host's `tracing` subscriber, tagged with the plugin.
    fn log(&self, level: u8, message: RStr<'_>);
    /// The most verbose level the host will show (see [`crate::Level`]).
    #[sabi(last_prefix_field)]
    fn max_level(&self) -> u8;
}

/// A borrowed host-services object, as passed into plugin calls.
pub type HostRef<'a> = HostServices_TO<'a, RRef<'a, ()>>;

/// The root module every plugin library exports.
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = PluginModRef)))]
#[sabi(missing_field(option))]
pub struct PluginMod {
    /// The plugin's [`PluginInfo`] as JSON.
    pub info: extern "C" fn() -> RResult<RString, RString>,
    /// Plan a [`Call`] (JSON in) into a [`crate::Plan`] (JSON out), or refuse with a message.
    #[sabi(last_prefix_field)]
    pub call: extern "C" fn(host: HostRef<'_>, request: RStr<'_>) -> RResult<RString, RString>,
}

/// The binary-compatibility line. Only the major matters to abi_stable's check; the API's
/// minor version travels in [`PluginInfo::api_version`] and is checked by the host, because
/// abi_stable would otherwise refuse plugins built against an older minor.
pub const ABI_VERSION_STRINGS: VersionStrings = VersionStrings::new("1.0.0");

impl RootModule for PluginModRef {
    declare_root_module_statics! {PluginModRef}
    const BASE_NAME: &'static str = "kleene_plugin";
    const NAME: &'static str = "kleene_plugin";
    const VERSION_STRINGS: VersionStrings = ABI_VERSION_STRINGS;
}

/// Build the root module for `P`. Used by [`crate::export_plugin!`].
pub fn module<P: Plugin>() -> PluginModRef {
    PluginMod { info: info_entry::<P>, call: call_entry::<P> }.leak_into_prefix()
}

extern "C" fn info_entry<P: Plugin>() -> RResult<RString, RString> {
    guarded(|| {
        let mut info: PluginInfo = P::default().info();
        info.api_version = crate::API_VERSION.to_string();
        serde_json::to_string(&info).map_err(|e| e.to_string())
    })
}

extern "C" fn call_entry<P: Plugin>(host: HostRef<'_>, request: RStr<'_>) -> RResult<RString, RString> {
    guarded(|| {
        let call: Call = serde_json::from_str(request.as_str())
            .map_err(|e| format!("plugin cannot read the request (API too old for this host?): {e}"))?;
        let plan = P::default().plan(&call, &Host { inner: host }).map_err(|e| e.0)?;
        serde_json::to_string(&plan).map_err(|e| e.to_string())
    })
}

/// Run `f`, turning a panic into an error message so it never unwinds into the host.
fn guarded(f: impl FnOnce() -> Result<String, String>) -> RResult<RString, RString> {
    quiet_panics();
    IN_CALL.with(|c| c.set(true));
    let result = catch_unwind(AssertUnwindSafe(f));
    IN_CALL.with(|c| c.set(false));
    match result {
        Ok(Ok(s)) => ROk(s.into()),
        Ok(Err(e)) => RErr(e.into()),
        Err(payload) => {
            let what = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            let at = PANIC_AT.with(|l| l.take()).map(|l| format!(" (at {l})")).unwrap_or_default();
            RErr(format!("plugin panicked: {what}{at}").into())
        }
    }
}

thread_local! {
    static IN_CALL: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    static PANIC_AT: std::cell::Cell<Option<String>> = const { std::cell::Cell::new(None) };
}

/// The default panic hook would print the panic (and maybe a backtrace) on the host's
/// stderr, around the one-line error the host prints. During a plugin call the hook only
/// records where the panic happened, for that error; elsewhere it defers to the previous
/// hook. The hook is this library's own: every cdylib carries its own copy of std.
fn quiet_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if IN_CALL.with(|c| c.get()) {
                PANIC_AT.with(|l| l.set(info.location().map(|l| format!("{}:{}", l.file(), l.line()))));
            } else {
                previous(info)
            }
        }));
    });
}

/// The symbol abi_stable 0.11 looks up in every library. Spelled out here (and checked by a
/// test) so plugin crates need no direct dependency on abi_stable's proc macros.
pub const ROOT_SYMBOL: &str = "_1as_0lib_1header_0root_bmodule_bloader";

/// Export `$ty` (which implements [`crate::Plugin`]) as this library's kleene plugin.
/// Equivalent to abi_stable's `#[export_root_module]`.
#[macro_export]
macro_rules! export_plugin {
    ($ty:ty) => {
        #[doc(hidden)]
        #[export_name = "_1as_0lib_1header_0root_bmodule_bloader"]
        pub static KLEENE_PLUGIN_ROOT: $crate::abi_stable::library::LibHeader = {
            extern "C" fn root() -> $crate::abi_stable::library::RootModuleResult {
                $crate::abi_stable::library::__call_root_module_loader($crate::abi::module::<$ty>)
            }
            // SAFETY: `root` returns the module type named here, as abi_stable requires.
            unsafe {
                $crate::abi_stable::library::LibHeader::from_constructor::<$crate::abi::PluginModRef>(
                    root,
                    $crate::abi_stable::library::CheckTypeLayout::Yes,
                )
            }
        };
    };
}

#[cfg(test)]
mod tests {
    #[test]
    fn root_symbol_matches_abi_stable() {
        assert_eq!(super::ROOT_SYMBOL, abi_stable::library::ROOT_MODULE_LOADER_NAME);
    }
}
