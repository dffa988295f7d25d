//! How many attempts a node gets and how long to wait between them. A pure
//! policy object: the scheduler asks it, and owns the retained inputs and
//! the rerouting a retry needs.

use super::{Blame, seconds};
use crate::spanned_toml::{Reader, TableView};
use std::time::Duration;

/// Attempts, separately for the node's own failures and for infrastructure
/// failures, and the backoff between them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// Attempts when the node itself fails (1 = no retry).
    pub node_attempts: u8,
    /// Attempts when the backend fails to run it.
    pub infrastructure_attempts: u8,
    /// Wait before the second attempt; doubles each time, with ±25% jitter.
    pub backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            node_attempts: 1,
            infrastructure_attempts: 3,
            backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(30),
        }
    }
}

/// The most attempts any policy may ask for (task ids reserve this many per node).
pub const MAX_ATTEMPTS: u8 = 15;

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RetryDecision {
    RetryAfter(Duration),
    GiveUp,
}

impl RetryPolicy {
    /// After the `attempt`-th try failed with `blame`: try again, and when.
    /// `entropy` spreads retries of a burst of failures apart.
    pub fn decide(&self, blame: Blame, attempt: u8, entropy: u64) -> RetryDecision {
        let limit = match blame {
            Blame::Infrastructure => self.infrastructure_attempts,
            Blame::Node => self.node_attempts,
        };
        if attempt < limit.min(MAX_ATTEMPTS) {
            RetryDecision::RetryAfter(self.delay(attempt, entropy))
        } else {
            RetryDecision::GiveUp
        }
    }

    /// The most attempts this policy can give a node, whatever fails.
    pub fn most_attempts(&self) -> u8 {
        self.node_attempts.max(self.infrastructure_attempts).min(MAX_ATTEMPTS)
    }

    /// The wait before attempt `attempt + 1`.
    pub fn delay(&self, attempt: u8, entropy: u64) -> Duration {
        let exponential = self.backoff.saturating_mul(1u32 << (attempt.saturating_sub(1)).min(16));
        let base = exponential.min(self.max_backoff);
        // ±25% jitter so a burst of failures does not retry in lockstep.
        let jitter = (entropy % 501) as f64 / 1000.0 - 0.25;
        base.mul_f64(1.0 + jitter)
    }
}

/// A node's, a route rule's or the config's `retry = { ... }`: only what it sets.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct RetryOverride {
    pub node_attempts: Option<u8>,
    pub infrastructure_attempts: Option<u8>,
    pub backoff: Option<Duration>,
    pub max_backoff: Option<Duration>,
}

impl RetryOverride {
    pub fn apply(&self, base: RetryPolicy) -> RetryPolicy {
        RetryPolicy {
            node_attempts: self.node_attempts.unwrap_or(base.node_attempts),
            infrastructure_attempts: self.infrastructure_attempts.unwrap_or(base.infrastructure_attempts),
            backoff: self.backoff.unwrap_or(base.backoff),
            max_backoff: self.max_backoff.unwrap_or(base.max_backoff),
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

/// Reads a `retry` table (config, route rule or node).
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

#[cfg(test)]
mod tests {
    use super::*;

    fn retries(p: &RetryPolicy, blame: Blame, attempt: u8) -> bool {
        matches!(p.decide(blame, attempt, 0), RetryDecision::RetryAfter(_))
    }

    #[test]
    fn node_failures_are_not_retried_by_default_infrastructure_failures_are() {
        let p = RetryPolicy::default();
        assert!(!retries(&p, Blame::Node, 1));
        assert!(retries(&p, Blame::Infrastructure, 1));
        assert!(retries(&p, Blame::Infrastructure, 2));
        assert!(!retries(&p, Blame::Infrastructure, 3));
        assert_eq!(p.most_attempts(), 3);
    }

    #[test]
    fn backoff_doubles_with_bounded_jitter_and_a_cap() {
        let p = RetryPolicy {
            backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(350),
            ..RetryPolicy::default()
        };
        for entropy in [0, 250, 500, 12345] {
            let first = p.delay(1, entropy);
            let second = p.delay(2, entropy);
            let capped = p.delay(5, entropy);
            assert!(first >= Duration::from_millis(75) && first <= Duration::from_millis(125), "{first:?}");
            assert!(second >= Duration::from_millis(150) && second <= Duration::from_millis(250), "{second:?}");
            assert!(capped <= Duration::from_millis(438), "{capped:?}");
        }
    }
}
