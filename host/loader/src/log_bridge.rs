//! Plugin log records into the host's `tracing` output.

use abi_stable::std_types::RStr;
use backplane_plugin_api::log::{LogLevel, LogSink};

/// The host side of a plugin's log sink; one per plugin, named after it.
pub struct HostLogSink {
    plugin: String,
}

impl HostLogSink {
    pub fn new(plugin: &str) -> Self {
        Self { plugin: plugin.to_owned() }
    }
}

impl LogSink for HostLogSink {
    fn log(&self, level: LogLevel, target: RStr<'_>, message: RStr<'_>) {
        let (plugin, target, message) = (self.plugin.as_str(), target.as_str(), message.as_str());
        match level {
            LogLevel::ERROR => tracing::error!(plugin, target, "{message}"),
            LogLevel::WARN => tracing::warn!(plugin, target, "{message}"),
            LogLevel::INFO => tracing::info!(plugin, target, "{message}"),
            LogLevel::DEBUG => tracing::debug!(plugin, target, "{message}"),
            _ => tracing::trace!(plugin, target, "{message}"),
        }
    }
}
