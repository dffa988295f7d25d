//! Deadlines: at the timeout the task is cancelled; `grace` later it is
//! abandoned (its late result ignored) and fails as timed out.

use super::seconds;
use crate::spanned_toml::{Reader, TableView};
use std::time::Duration;

/// Whose failure a timeout is (see [`Blame::of`](super::Blame::of)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TimeoutCountsAs {
    /// The node ran too long: retried only by `node_attempts`, never counted
    /// by the circuit breaker. An attempt abandoned after the grace period
    /// is still the backend's (it lost the task).
    #[default]
    Node,
    /// Every timeout is the backend's: retried by `infrastructure_attempts`
    /// and counted by the breaker.
    Infrastructure,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TimeoutPolicy {
    /// For nodes without their own `timeout_secs`.
    pub default: Option<Duration>,
    pub grace: Duration,
    pub counts_as: TimeoutCountsAs,
}

impl Default for TimeoutPolicy {
    fn default() -> Self {
        Self { default: None, grace: Duration::from_secs(5), counts_as: TimeoutCountsAs::Node }
    }
}

/// Reads `[policy.timeout]`.
pub(super) fn parse(r: &mut Reader<'_>, mut table: TableView<'_, '_>) -> TimeoutPolicy {
    let mut policy = TimeoutPolicy {
        default: seconds(r, &mut table, "default_secs", 31_536_000.0).filter(|d| !d.is_zero()),
        ..TimeoutPolicy::default()
    };
    if let Some(grace) = seconds(r, &mut table, "grace_secs", 3600.0) {
        policy.grace = grace;
    }
    if let Some(name) = table.string(r, "counts_as") {
        match name.get_ref().as_str() {
            "node" => policy.counts_as = TimeoutCountsAs::Node,
            "infrastructure" => policy.counts_as = TimeoutCountsAs::Infrastructure,
            other => r.error_help(
                name.span(),
                format!("unknown `counts_as` value `{other}`"),
                "use \"node\" (a timeout is the node's failure) or \"infrastructure\"",
            ),
        }
    }
    table.finish(r, &["default_secs", "grace_secs", "counts_as"]);
    policy
}
