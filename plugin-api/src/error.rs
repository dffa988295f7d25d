//! The error type that crosses the plugin boundary.

use abi_stable::{
    StableAbi,
    std_types::{RResult, RString},
};
use std::fmt;

/// Why a plugin call failed.
///
/// Non-exhaustive across the ABI: a newer plugin may return a variant this host
/// does not know; it still prints (the plugin's `Display` is used) and is
/// treated as a node failure.
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, PartialEq)]
#[sabi(kind(WithNonExhaustive(size = [usize; 10], traits(Debug, Display, Clone, PartialEq, Error))))]
#[non_exhaustive]
pub enum PluginError {
    /// The node's own code failed: bad input, a command exiting non-zero...
    NodeFailed { message: RString },
    /// Plugin code panicked; the panic was caught at the boundary.
    Panicked { message: RString },
    /// Backend configuration or node settings were rejected.
    InvalidConfig { message: RString },
    /// The backend could not run the task for reasons outside the node
    /// (connection lost, no workers, sink dropped...). Usually worth a retry.
    Infrastructure { message: RString },
    /// The task was cancelled before it finished.
    Cancelled,
    /// The task ran past its deadline.
    TimedOut { message: RString },
    /// The backend cannot run this kind of task at all.
    Unsupported { message: RString },
}

/// What every fallible boundary call returns.
pub type PluginResult<T> = RResult<T, PluginError_NE>;

impl PluginError {
    pub fn node_failed(message: impl Into<String>) -> PluginError_NE {
        Self::NodeFailed { message: message.into().into() }.wrap()
    }
    pub fn panicked(message: impl Into<String>) -> PluginError_NE {
        Self::Panicked { message: message.into().into() }.wrap()
    }
    pub fn invalid_config(message: impl Into<String>) -> PluginError_NE {
        Self::InvalidConfig { message: message.into().into() }.wrap()
    }
    pub fn infrastructure(message: impl Into<String>) -> PluginError_NE {
        Self::Infrastructure { message: message.into().into() }.wrap()
    }
    pub fn cancelled() -> PluginError_NE {
        Self::Cancelled.wrap()
    }
    pub fn timed_out(message: impl Into<String>) -> PluginError_NE {
        Self::TimedOut { message: message.into().into() }.wrap()
    }
    pub fn unsupported(message: impl Into<String>) -> PluginError_NE {
        Self::Unsupported { message: message.into().into() }.wrap()
    }

    /// Wraps the enum for the boundary.
    pub fn wrap(self) -> PluginError_NE {
        PluginError_NE::new(self)
    }

    /// A short, stable name for the kind, for summaries and JSON output.
    pub fn kind_name(&self) -> &'static str {
        match self {
            Self::NodeFailed { .. } => "node-failed",
            Self::Panicked { .. } => "panicked",
            Self::InvalidConfig { .. } => "invalid-config",
            Self::Infrastructure { .. } => "infrastructure",
            Self::Cancelled => "cancelled",
            Self::TimedOut { .. } => "timed-out",
            Self::Unsupported { .. } => "unsupported",
        }
    }
}

impl fmt::Display for PluginError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NodeFailed { message } => write!(f, "{message}"),
            Self::Panicked { message } => write!(f, "panicked: {message}"),
            Self::InvalidConfig { message } => write!(f, "invalid configuration: {message}"),
            Self::Infrastructure { message } => write!(f, "infrastructure failure: {message}"),
            Self::Cancelled => write!(f, "cancelled"),
            Self::TimedOut { message } => write!(f, "timed out: {message}"),
            Self::Unsupported { message } => write!(f, "unsupported: {message}"),
        }
    }
}

impl std::error::Error for PluginError {}

/// The kind name of a boundary error, `"unknown"` for variants newer than this crate.
pub fn describe(error: &PluginError_NE) -> &'static str {
    match error.as_enum() {
        Ok(known) => known.kind_name(),
        Err(_) => "unknown",
    }
}
