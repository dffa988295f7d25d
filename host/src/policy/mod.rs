//! Every run policy value: what it means, its default and how `[policy]`
//! (and a node's or route's `retry`) spells it. The lowest layer of the
//! library: config, workflow, layers and engine all import from here, and
//! it imports nothing of theirs.
//!
//! ```toml
//! [policy]
//! failure = "fail-fast"          # or "continue"
//! cancel_grace_secs = 10         # after a failure or Ctrl-C, wait this long for running tasks
//!
//! [policy.retry]                 # also per node or route rule: retry = { node_attempts = 3 }
//! node_attempts = 1              # the node itself failed: no retry by default
//! infrastructure_attempts = 3    # the backend failed to run it: retried by default
//! backoff_secs = 0.2             # doubles per attempt, ±25% jitter
//! max_backoff_secs = 30
//!
//! [policy.timeout]
//! default_secs = 3600            # for nodes without timeout_secs (default: none)
//! grace_secs = 5                 # after cancelling at the deadline, wait this long, then abandon
//! counts_as = "node"             # a timeout is the node's failure; "infrastructure" retries it as one
//!
//! [policy.breaker]
//! failures = 5                   # infrastructure failures of one instance...
//! window_secs = 60               # ...within this window open its breaker
//! cooldown_secs = 30             # then it half-opens
//! ```

mod breaker;
mod failure;
mod retry;
mod timeout;

pub use breaker::BreakerPolicy;
pub use failure::{Blame, FailureKind, FailurePolicy};
pub use retry::{MAX_ATTEMPTS, RetryDecision, RetryOverride, RetryPolicy, parse_retry};
pub use timeout::{TimeoutCountsAs, TimeoutPolicy};

use crate::spanned_toml::{Reader, TableView};
use std::time::Duration;

/// `[policy]`, every value resolved (a missing key is its default).
#[derive(Debug, Clone, PartialEq)]
pub struct RunPolicy {
    pub failure: FailurePolicy,
    /// How long to wait for in-flight tasks after a failure or an interrupt.
    pub cancel_grace: Duration,
    /// For nodes without their own `retry`.
    pub retry: RetryPolicy,
    pub timeout: TimeoutPolicy,
    pub breaker: BreakerPolicy,
}

/// Default of `cancel_grace_secs`.
pub const DEFAULT_CANCEL_GRACE: Duration = Duration::from_secs(10);

impl Default for RunPolicy {
    fn default() -> Self {
        Self {
            failure: FailurePolicy::default(),
            cancel_grace: DEFAULT_CANCEL_GRACE,
            retry: RetryPolicy::default(),
            timeout: TimeoutPolicy::default(),
            breaker: BreakerPolicy::default(),
        }
    }
}

/// A number of seconds from 0 to `max`, or an error at the value.
fn seconds(r: &mut Reader<'_>, view: &mut TableView<'_, '_>, key: &'static str, max: f64) -> Option<Duration> {
    let value = view.number(r, key)?;
    match *value.get_ref() {
        v if v.is_finite() && (0.0..=max).contains(&v) => Some(Duration::from_secs_f64(v)),
        _ => {
            r.error_help(value.span(), format!("invalid `{key}`"), format!("use a number of seconds from 0 to {max}"));
            None
        }
    }
}

/// Reads `[policy]`.
pub fn parse_policy(r: &mut Reader<'_>, mut view: TableView<'_, '_>) -> RunPolicy {
    let mut policy = RunPolicy::default();
    if let Some(name) = view.string(r, "failure") {
        match FailurePolicy::from_name(name.get_ref()) {
            Some(p) => policy.failure = p,
            None => r.error_help(
                name.span(),
                format!("unknown failure policy `{}`", name.get_ref()),
                "use \"fail-fast\" or \"continue\"",
            ),
        }
    }
    if let Some(grace) = seconds(r, &mut view, "cancel_grace_secs", 3600.0) {
        policy.cancel_grace = grace;
    }
    if let Some(table) = view.table(r, "retry", "[policy.retry]") {
        policy.retry = parse_retry(r, table).apply(policy.retry);
    }
    if let Some(table) = view.table(r, "timeout", "[policy.timeout]") {
        policy.timeout = timeout::parse(r, table);
    }
    if let Some(table) = view.table(r, "breaker", "[policy.breaker]") {
        policy.breaker = breaker::parse(r, table);
    }
    view.finish(r, &["failure", "cancel_grace_secs", "retry", "timeout", "breaker"]);
    policy
}
