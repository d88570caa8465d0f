//! The Rust-side trait a plugin author implements, and the host services it may use.

use crate::abi::HostRef;
use crate::call::{Call, PluginInfo};
use crate::ops::Plan;
use std::fmt;

/// Log levels, as in `tracing` (lower = more severe).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum Level {
    Error = 1,
    Warn = 2,
    Info = 3,
    Debug = 4,
    Trace = 5,
}

impl Level {
    pub fn from_u8(v: u8) -> Level {
        match v {
            0 | 1 => Level::Error,
            2 => Level::Warn,
            3 => Level::Info,
            4 => Level::Debug,
            _ => Level::Trace,
        }
    }
}

/// A plugin's refusal, shown to the operator as one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginError(pub String);

impl fmt::Display for PluginError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<S: Into<String>> From<S> for PluginError {
    fn from(s: S) -> Self {
        PluginError(s.into())
    }
}

/// The services the host offers during a call.
pub struct Host<'a> {
    pub(crate) inner: HostRef<'a>,
}

impl Host<'_> {
    /// Whether events at `level` would be shown; skip costly formatting otherwise.
    pub fn enabled(&self, level: Level) -> bool {
        level as u8 <= self.inner.max_level()
    }

    /// Emit a log event through the host's `tracing` subscriber.
    pub fn log(&self, level: Level, message: impl fmt::Display) {
        if self.enabled(level) {
            self.inner.log(level as u8, message.to_string().as_str().into());
        }
    }
}

/// Implement this and call [`crate::export_plugin!`] on it.
pub trait Plugin: Default + Send + Sync + 'static {
    /// Name, kind, version, description, joinable network types. `api_version` is filled in.
    fn info(&self) -> PluginInfo;
    /// Turn a request into a plan, or refuse it with a one-line reason.
    fn plan(&self, call: &Call, host: &Host<'_>) -> Result<Plan, PluginError>;
}

/// Host services that drop every event: for tests and tools that call plugins directly.
pub struct NullServices;

impl crate::abi::HostServices for NullServices {
    fn log(&self, _level: u8, _message: abi_stable::std_types::RStr<'_>) {}
    fn max_level(&self) -> u8 {
        0
    }
}

impl<'a> Host<'a> {
    pub fn new(inner: HostRef<'a>) -> Host<'a> {
        Host { inner }
    }
}

/// Run `f` with a [`Host`] whose services do nothing.
pub fn with_null_host<R>(f: impl FnOnce(&Host<'_>) -> R) -> R {
    static SERVICES: NullServices = NullServices;
    let inner = crate::abi::HostServices_TO::from_ptr(
        abi_stable::sabi_types::RRef::new(&SERVICES),
        abi_stable::sabi_trait::TD_Opaque,
    );
    f(&Host { inner })
}
