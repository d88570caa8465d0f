//! tracing setup, and the services object through which plugin events reach it.

use abi_stable::std_types::RStr;
use kleene_plugin_api::{abi::HostServices, Level};
use tracing::level_filters::LevelFilter;
use tracing_subscriber::fmt::time::uptime;
use tracing_subscriber::EnvFilter;

pub fn init(verbose: u8, filter: Option<&str>) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = filter.map(EnvFilter::new).unwrap_or_else(|| EnvFilter::new(default));
    // Colour only on a terminal: logs captured to files or pipes stay plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    // -vvv: time since start on every event, to see where a command spends its time.
    let _ = if verbose >= 3 { builder.with_timer(uptime()).try_init() } else { builder.without_time().try_init() };
}

/// Forwards a plugin's log calls to the host's subscriber, tagged with the plugin's name.
pub struct PluginServices {
    pub plugin: String,
}

impl HostServices for PluginServices {
    fn log(&self, level: u8, message: RStr<'_>) {
        let (plugin, message) = (self.plugin.as_str(), message.as_str());
        match Level::from_u8(level) {
            Level::Error => tracing::error!(target: "kleene::plugin", plugin, "{message}"),
            Level::Warn => tracing::warn!(target: "kleene::plugin", plugin, "{message}"),
            Level::Info => tracing::info!(target: "kleene::plugin", plugin, "{message}"),
            Level::Debug => tracing::debug!(target: "kleene::plugin", plugin, "{message}"),
            Level::Trace => tracing::trace!(target: "kleene::plugin", plugin, "{message}"),
        }
    }

    fn max_level(&self) -> u8 {
        match LevelFilter::current().into_level() {
            None => 0,
            Some(tracing::Level::ERROR) => Level::Error as u8,
            Some(tracing::Level::WARN) => Level::Warn as u8,
            Some(tracing::Level::INFO) => Level::Info as u8,
            Some(tracing::Level::DEBUG) => Level::Debug as u8,
            Some(tracing::Level::TRACE) => Level::Trace as u8,
        }
    }
}
