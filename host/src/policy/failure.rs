//! What a failure is, whose fault it is, and what it does to the run.

use backplane_plugin_api::{PluginError, PluginError_NE};
use serde::Serialize;
use std::fmt;

/// What a node failure does to the rest of the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FailurePolicy {
    /// Stop at the first failure: cancel what runs, start nothing more.
    #[default]
    FailFast,
    /// Run every node that does not depend on a failed one.
    Continue,
}

impl FailurePolicy {
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "fail-fast" => Some(Self::FailFast),
            "continue" => Some(Self::Continue),
            _ => None,
        }
    }
}

/// Why an attempt failed, as reports and logs name it (kebab-case).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum FailureKind {
    NodeFailed,
    Panicked,
    InvalidConfig,
    Infrastructure,
    Cancelled,
    TimedOut,
    Unsupported,
    /// An error variant newer than this host (from a newer plugin).
    Unknown,
}

impl FailureKind {
    /// The kind of an error that crossed the plugin boundary.
    pub fn of(error: &PluginError_NE) -> Self {
        match error.as_enum() {
            Ok(PluginError::NodeFailed { .. }) => Self::NodeFailed,
            Ok(PluginError::Panicked { .. }) => Self::Panicked,
            Ok(PluginError::InvalidConfig { .. }) => Self::InvalidConfig,
            Ok(PluginError::Infrastructure { .. }) => Self::Infrastructure,
            Ok(PluginError::Cancelled) => Self::Cancelled,
            Ok(PluginError::TimedOut { .. }) => Self::TimedOut,
            Ok(PluginError::Unsupported { .. }) => Self::Unsupported,
            Ok(_) | Err(_) => Self::Unknown,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::NodeFailed => "node-failed",
            Self::Panicked => "panicked",
            Self::InvalidConfig => "invalid-config",
            Self::Infrastructure => "infrastructure",
            Self::Cancelled => "cancelled",
            Self::TimedOut => "timed-out",
            Self::Unsupported => "unsupported",
            Self::Unknown => "unknown",
        }
    }
}

impl fmt::Display for FailureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Whose fault a failed attempt is: it picks the retry budget, and only
/// infrastructure failures count toward an instance's circuit breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Blame {
    /// The node's own code or input: retried only if the node asks.
    Node,
    /// Where it ran: the backend failed, lost or dropped the task.
    Infrastructure,
}

impl Blame {
    /// The rule: infrastructure errors, cancels the host did not ask for,
    /// and attempts the backend lost (no answer even after a cancel) are the
    /// infrastructure's; a timeout is the node's unless `[policy.timeout]
    /// counts_as = "infrastructure"`; everything else is the node's.
    pub fn of(kind: FailureKind, lost: bool, timeout_counts_as: super::TimeoutCountsAs) -> Self {
        match kind {
            _ if lost => Self::Infrastructure,
            FailureKind::Infrastructure | FailureKind::Cancelled => Self::Infrastructure,
            FailureKind::TimedOut if timeout_counts_as == super::TimeoutCountsAs::Infrastructure => {
                Self::Infrastructure
            }
            _ => Self::Node,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::TimeoutCountsAs;

    #[test]
    fn kinds_keep_their_report_names() {
        assert_eq!(FailureKind::of(&PluginError::timed_out("x")).name(), "timed-out");
        assert_eq!(serde_json::to_value(FailureKind::NodeFailed).unwrap(), "node-failed");
        assert_eq!(serde_json::to_value(FailureKind::InvalidConfig).unwrap(), "invalid-config");
    }

    #[test]
    fn a_timeout_is_the_nodes_fault_unless_configured_or_lost() {
        let node = TimeoutCountsAs::Node;
        assert_eq!(Blame::of(FailureKind::TimedOut, false, node), Blame::Node);
        assert_eq!(Blame::of(FailureKind::TimedOut, true, node), Blame::Infrastructure);
        assert_eq!(Blame::of(FailureKind::TimedOut, false, TimeoutCountsAs::Infrastructure), Blame::Infrastructure);
        assert_eq!(Blame::of(FailureKind::Infrastructure, false, node), Blame::Infrastructure);
        assert_eq!(Blame::of(FailureKind::Cancelled, false, node), Blame::Infrastructure);
        assert_eq!(Blame::of(FailureKind::Panicked, false, node), Blame::Node);
        assert_eq!(Blame::of(FailureKind::Unknown, false, node), Blame::Node);
    }
}
