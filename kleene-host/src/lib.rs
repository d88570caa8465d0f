//! kleene: container networking in the style of Kleene, as a plugin host.
//! Plugins plan; this crate validates, journals and executes their plans.

pub mod cli;
pub mod cluster;
pub mod commands;
pub mod dns;
pub mod engine;
pub mod error;
pub mod executor;
pub mod firewall;
pub mod legacy;
pub mod loader;
pub mod logging;
pub mod server;
pub mod state;
pub mod trust;
