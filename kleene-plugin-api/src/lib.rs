//! The contract between the kleene host and its plugins.
//!
//! A plugin is a `cdylib` that exports one abi_stable root module ([`abi::PluginModRef`]).
//! The host hands each call a request ([`Call`]) plus the current state and gets back a
//! [`Plan`]: ordered, typed host operations ([`Op`]) each paired with its undo. Plugins are
//! policy and never touch the system themselves; the host validates, journals and executes
//! plans.
//!
//! Requests and plans cross the boundary as JSON inside abi_stable strings. That keeps the
//! binary surface tiny and frozen, while the vocabulary (enums below) grows in minor versions:
//! an old host that meets an operation it does not know reports it by name.
//!
//! Compatibility rule: a host speaking API `M.n` loads every plugin built for API `M.x`, any
//! `x`. A plugin built for a newer minor may use operations the host lacks; the host then
//! refuses that one plan with an error naming the plugin and the operation. A different
//! major is refused at load time.

#![allow(non_local_definitions)] // abi_stable's sabi_trait expands to impls rustc now flags

pub mod abi;
pub mod call;
pub mod model;
pub mod ops;
pub mod pairs;
mod plugin;

pub use call::{Attachment, Call, DefaultFor, DriverTraits, NetworkTraits, PluginInfo, PluginKind};
pub use model::{local_mac, mac_string, Cidr, ClusterScope, Container, Endpoint, Network, Peer};
pub use ops::{Check, LinkKind, Op, Plan, Stack, Step};
pub use plugin::{with_null_host, Host, Level, NullServices, Plugin, PluginError};

#[doc(hidden)]
pub use abi_stable;
#[doc(hidden)]
pub use serde_json;

/// The API version this crate implements (independent of the host's version).
pub const API_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Major part of [`API_VERSION`]; plugins of another major are refused.
pub fn api_major(version: &str) -> Option<u32> {
    version.split('.').next()?.parse().ok()
}
