//! Retry, timeout and circuit-breaker policies, and the breaker's state.

use std::{
    collections::VecDeque,
    time::{Duration, Instant},
};

/// Error kinds caused by where a task ran rather than by the node itself;
/// retried by default, and counted by the circuit breaker.
pub fn is_infrastructure(kind: &str) -> bool {
    matches!(kind, "infrastructure" | "timed-out" | "cancelled")
}

/// How many attempts a node gets, separately for its own failures and for
/// infrastructure failures, and how long to wait between them.
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

impl RetryPolicy {
    /// Whether a node that failed its `attempt`-th try with `kind` gets another.
    pub fn allows_another(&self, kind: &str, attempt: u8) -> bool {
        let limit = if is_infrastructure(kind) { self.infrastructure_attempts } else { self.node_attempts };
        attempt < limit.min(MAX_ATTEMPTS)
    }

    /// The wait before attempt `attempt + 1`; `entropy` spreads retries out.
    pub fn delay(&self, attempt: u8, entropy: u64) -> Duration {
        let exponential = self.backoff.saturating_mul(1u32 << (attempt.saturating_sub(1)).min(16));
        let base = exponential.min(self.max_backoff);
        // ±25% jitter so a burst of failures does not retry in lockstep.
        let jitter = (entropy % 501) as f64 / 1000.0 - 0.25;
        base.mul_f64(1.0 + jitter)
    }
}

/// Deadlines: at the timeout the task is cancelled; `grace` later it is
/// abandoned (its late result ignored) and fails as timed out.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TimeoutPolicy {
    /// For nodes without their own `timeout_secs`.
    pub default: Option<Duration>,
    pub grace: Duration,
}

impl Default for TimeoutPolicy {
    fn default() -> Self {
        Self { default: None, grace: Duration::from_secs(5) }
    }
}

/// Opens after `failures` infrastructure failures within `window`; new work
/// then goes elsewhere until `cooldown` has passed (half-open: one more
/// failure reopens it, a success closes it).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BreakerPolicy {
    pub failures: usize,
    pub window: Duration,
    pub cooldown: Duration,
}

impl Default for BreakerPolicy {
    fn default() -> Self {
        Self { failures: 5, window: Duration::from_secs(60), cooldown: Duration::from_secs(30) }
    }
}

#[derive(Debug, Default)]
pub struct Breaker {
    recent: VecDeque<Instant>,
    open_until: Option<Instant>,
    half_open: bool,
}

impl Breaker {
    /// Records an infrastructure failure; true when this opens the breaker.
    pub fn record_failure(&mut self, now: Instant, policy: &BreakerPolicy) -> bool {
        if self.open_until.is_some() {
            return false;
        }
        self.recent.push_back(now);
        while self.recent.front().is_some_and(|t| now.duration_since(*t) > policy.window) {
            self.recent.pop_front();
        }
        if self.half_open || self.recent.len() >= policy.failures.max(1) {
            self.open_until = Some(now + policy.cooldown);
            self.half_open = false;
            self.recent.clear();
            return true;
        }
        false
    }

    pub fn record_success(&mut self) {
        self.half_open = false;
    }

    /// True when the cool-down just ended (the breaker is now half-open).
    pub fn cooled_down(&mut self, now: Instant) -> bool {
        if self.open_until.is_some_and(|until| now >= until) {
            self.open_until = None;
            self.half_open = true;
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_failures_are_not_retried_by_default_infrastructure_failures_are() {
        let p = RetryPolicy::default();
        assert!(!p.allows_another("node-failed", 1));
        assert!(!p.allows_another("panicked", 1));
        assert!(p.allows_another("infrastructure", 1));
        assert!(p.allows_another("timed-out", 2));
        assert!(!p.allows_another("infrastructure", 3));
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

    #[test]
    fn breaker_opens_after_failures_in_the_window_and_half_opens_after_cooldown() {
        let policy = BreakerPolicy { failures: 3, window: Duration::from_secs(10), cooldown: Duration::from_secs(5) };
        let mut b = Breaker::default();
        let t0 = Instant::now();
        assert!(!b.record_failure(t0, &policy));
        // An old failure falls out of the window.
        assert!(!b.record_failure(t0 + Duration::from_secs(11), &policy));
        assert!(!b.record_failure(t0 + Duration::from_secs(12), &policy));
        assert!(b.record_failure(t0 + Duration::from_secs(13), &policy));
        assert!(!b.cooled_down(t0 + Duration::from_secs(14)));
        assert!(b.cooled_down(t0 + Duration::from_secs(18)));
        // Half-open: one failure reopens it.
        assert!(b.record_failure(t0 + Duration::from_secs(19), &policy));
    }
}

/// A node's or the config's `retry = { ... }`: only what it sets.
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
