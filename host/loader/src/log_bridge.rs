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
            LogLevel::ERROR => {
                remember_error(message);
                tracing::error!(plugin, target, "{message}")
            }
            LogLevel::WARN => tracing::warn!(plugin, target, "{message}"),
            LogLevel::INFO => tracing::info!(plugin, target, "{message}"),
            LogLevel::DEBUG => tracing::debug!(plugin, target, "{message}"),
            _ => tracing::trace!(plugin, target, "{message}"),
        }
    }
}

/// Longest error message kept for [`take_last_error`].
const MAX_KEPT: usize = 2048;

std::thread_local! {
    static LAST_ERROR: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
}

fn remember_error(message: &str) {
    let kept: String = message.chars().take(MAX_KEPT).collect();
    let _ = LAST_ERROR.try_with(|last| *last.borrow_mut() = Some(kept));
}

/// The last error a plugin logged on this thread, taken. A caller that just
/// called into a plugin learns what went wrong in there: a panic in a
/// backend's `submit` drops the task's sink and is only logged (its message
/// is in `backend submit failed: panicked: …`). Costs nothing on the success
/// path; only error records are kept.
pub fn take_last_error() -> Option<String> {
    LAST_ERROR.try_with(|last| last.borrow_mut().take()).ok().flatten()
}
