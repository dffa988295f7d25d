//! `[policy]` in the config and `retry = { ... }` on workflow nodes.
//!
//! ```toml
//! [policy]
//! failure = "fail-fast"          # or "continue"
//! cancel_grace_secs = 10         # after a failure or Ctrl-C, wait this long for running tasks
//!
//! [policy.retry]                 # also per node: retry = { node_attempts = 3 }
//! node_attempts = 1              # the node itself failed: no retry by default
//! infrastructure_attempts = 3    # the backend failed to run it: retried by default
//! backoff_secs = 0.2             # doubles per attempt, ±25% jitter
//! max_backoff_secs = 30
//!
//! [policy.timeout]
//! default_secs = 3600            # for nodes without timeout_secs (default: none)
//! grace_secs = 5                 # after cancelling at the deadline, wait this long, then abandon
//!
//! [policy.breaker]
//! failures = 5                   # infrastructure failures of one instance...
//! window_secs = 60               # ...within this window open its breaker
//! cooldown_secs = 30             # then it half-opens
//! ```

use crate::{
    engine::{
        BreakerPolicy, FailurePolicy, TimeoutPolicy,
        policy::{MAX_ATTEMPTS, RetryOverride},
    },
    spanned_toml::{Reader, TableView},
};
use std::time::Duration;

/// `[policy]` settings.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RunPolicy {
    pub failure: FailurePolicy,
    /// How long to wait for in-flight tasks after a failure or an interrupt.
    pub cancel_grace: Option<Duration>,
    pub retry: RetryOverride,
    pub timeout: TimeoutPolicy,
    pub breaker: BreakerPolicy,
}

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

fn attempts(r: &mut Reader<'_>, view: &mut TableView<'_, '_>, key: &'static str) -> Option<u8> {
    let value = view.unsigned(r, key)?;
    match *value.get_ref() {
        n @ 1..=15 => Some(n as u8),
        _ => {
            r.error_help(value.span(), format!("invalid `{key}`"), format!("use 1 (no retry) to {MAX_ATTEMPTS}"));
            None
        }
    }
}

/// Reads a `retry` table (config or node).
pub fn parse_retry(r: &mut Reader<'_>, mut view: TableView<'_, '_>) -> RetryOverride {
    let retry = RetryOverride {
        node_attempts: attempts(r, &mut view, "node_attempts"),
        infrastructure_attempts: attempts(r, &mut view, "infrastructure_attempts"),
        backoff: seconds(r, &mut view, "backoff_secs", 3600.0),
        max_backoff: seconds(r, &mut view, "max_backoff_secs", 86_400.0),
    };
    view.finish(r, &["node_attempts", "infrastructure_attempts", "backoff_secs", "max_backoff_secs"]);
    retry
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
    policy.cancel_grace = seconds(r, &mut view, "cancel_grace_secs", 3600.0);
    if let Some(table) = view.table(r, "retry", "[policy.retry]") {
        policy.retry = parse_retry(r, table);
    }
    if let Some(mut table) = view.table(r, "timeout", "[policy.timeout]") {
        policy.timeout.default = seconds(r, &mut table, "default_secs", 31_536_000.0).filter(|d| !d.is_zero());
        if let Some(grace) = seconds(r, &mut table, "grace_secs", 3600.0) {
            policy.timeout.grace = grace;
        }
        table.finish(r, &["default_secs", "grace_secs"]);
    }
    if let Some(mut table) = view.table(r, "breaker", "[policy.breaker]") {
        if let Some(n) = table.unsigned(r, "failures") {
            match *n.get_ref() {
                n @ 1..=1_000_000 => policy.breaker.failures = n as usize,
                _ => r.error_help(n.span(), "invalid `failures`", "use a count of at least 1"),
            }
        }
        if let Some(window) = seconds(r, &mut table, "window_secs", 86_400.0) {
            policy.breaker.window = window;
        }
        if let Some(cooldown) = seconds(r, &mut table, "cooldown_secs", 86_400.0) {
            policy.breaker.cooldown = cooldown;
        }
        table.finish(r, &["failures", "window_secs", "cooldown_secs"]);
    }
    view.finish(r, &["failure", "cancel_grace_secs", "retry", "timeout", "breaker"]);
    policy
}
