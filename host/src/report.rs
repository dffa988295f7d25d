//! What a run did, for the summary, `--json` and the exit code.

use crate::policy::FailureKind;
use serde::Serialize;
use std::time::Duration;

#[derive(Debug, Clone, Serialize)]
pub struct BackendSummary {
    pub instance: String,
    pub factory: String,
    /// Nodes whose last attempt ran here.
    pub nodes: usize,
    /// Attempts submitted here (retries count again, abandoned ones too).
    pub attempts: usize,
    /// Attempts that succeeded here.
    pub succeeded_attempts: usize,
    /// Of the attempts that finished here (with any result), the share that
    /// succeeded; `None` when none finished.
    pub success_rate: Option<f64>,
    /// Mean and 95th percentile (nearest rank) of the time from dispatch to
    /// result of the attempts that finished here.
    pub mean_secs: Option<f64>,
    pub p95_secs: Option<f64>,
    /// Output bytes that came back to the host; outputs a backend kept as
    /// references do not count.
    pub received_bytes: u64,
    /// From the first submit to the last completion on this instance.
    #[serde(serialize_with = "as_secs")]
    pub active: Duration,
}

/// A circuit breaker opening, half-opening or closing during the run.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct BreakerEvent {
    pub instance: String,
    /// Seconds into the run.
    pub at_secs: f64,
    pub event: BreakerTransition,
}

/// What a circuit breaker did (`opened`, `half-open`, `closed` in JSON).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum BreakerTransition {
    Opened,
    HalfOpen,
    /// A trial attempt succeeded while half-open.
    Closed,
}

/// Nodes moved off an instance that went down during the run.
#[derive(Debug, Clone, Serialize)]
pub struct Reroute {
    pub from: String,
    pub to: String,
    pub reason: String,
    pub nodes: usize,
    #[serde(skip)]
    pub(crate) from_index: usize,
    #[serde(skip)]
    pub(crate) to_index: usize,
}

/// Where a node ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NodeStatus {
    Succeeded,
    Failed,
    /// Stopped after another node failed, or by an interrupt.
    Cancelled,
    /// Not run because a node it depends on failed (policy `continue`).
    Skipped,
    NotStarted,
    /// Still running when the cancellation grace period ended.
    Abandoned,
}

impl NodeStatus {
    pub fn name(self) -> &'static str {
        match self {
            NodeStatus::Succeeded => "succeeded",
            NodeStatus::Failed => "failed",
            NodeStatus::Cancelled => "cancelled",
            NodeStatus::Skipped => "skipped",
            NodeStatus::NotStarted => "not-started",
            NodeStatus::Abandoned => "abandoned",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct NodeFailure {
    pub node: String,
    #[serde(rename = "type")]
    pub node_type: String,
    pub backend: String,
    pub kind: FailureKind,
    pub message: String,
}

impl std::fmt::Display for NodeFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "node `{}` ({}) failed on backend `{}`: {}", self.node, self.node_type, self.backend, self.message)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub workflow: String,
    pub nodes: usize,
    pub succeeded: usize,
    /// Succeeded from the cache, without running.
    pub cached: usize,
    /// Ran on a backend (at least one attempt).
    pub executed: usize,
    /// Items of per-item (`each`) nodes, one task each (retries not counted).
    pub item_tasks: u64,
    /// Of those, items whose result came from the cache (no task ran).
    pub item_cache_hits: u64,
    pub failed: usize,
    /// Cancelled after another node failed.
    pub cancelled: usize,
    pub not_started: usize,
    /// Still running when the cancellation grace period ended.
    pub abandoned: usize,
    #[serde(serialize_with = "as_secs")]
    pub elapsed: Duration,
    pub backends: Vec<BackendSummary>,
    pub rerouted: Vec<Reroute>,
    /// Not run because a node they depend on failed (policy `continue`).
    pub skipped: usize,
    /// Attempts that were retried.
    pub retries: usize,
    /// Attempts that hit their deadline.
    pub timeouts: usize,
    pub breakers: Vec<BreakerEvent>,
    /// Stopped by Ctrl-C or SIGTERM.
    pub interrupted: bool,
    /// The first failure.
    pub failure: Option<NodeFailure>,
    /// Every failure, in order.
    pub failures: Vec<NodeFailure>,
}

impl RunReport {
    pub fn success(&self) -> bool {
        self.failures.is_empty() && !self.interrupted && self.succeeded == self.nodes
    }
}

fn as_secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

/// Mean and nearest-rank 95th percentile (the smallest value at or above
/// 95% of them) of `values`, which it reorders: a selection, not a sort, so
/// linear in their number.
pub fn mean_and_p95(values: &mut [f64]) -> (Option<f64>, Option<f64>) {
    if values.is_empty() {
        return (None, None);
    }
    let mean = values.iter().sum::<f64>() / values.len() as f64;
    let rank = (values.len() * 95).div_ceil(100).max(1) - 1;
    let (_, p95, _) = values.select_nth_unstable_by(rank, f64::total_cmp);
    (Some(mean), Some(*p95))
}

#[cfg(test)]
mod tests {
    use super::mean_and_p95;

    #[test]
    fn p95_is_the_nearest_rank_and_the_mean_is_exact() {
        let mut values: Vec<f64> = (1..=100).rev().map(f64::from).collect();
        assert_eq!(mean_and_p95(&mut values), (Some(50.5), Some(95.0)));
        assert_eq!(mean_and_p95(&mut [2.0]), (Some(2.0), Some(2.0)));
        assert_eq!(mean_and_p95(&mut [1.0, 2.0, 3.0, 10.0]).1, Some(10.0));
        assert_eq!(mean_and_p95(&mut []), (None, None));
    }
}
