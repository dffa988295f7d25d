//! A circuit breaker around an instance: after too many infrastructure
//! failures in a window it opens, and the instance reports itself down
//! through `health` (so the scheduler moves its work, as for any instance
//! that is down) until the cool-down ends; then it half-opens: one more
//! infrastructure failure reopens it, a success closes it.

use super::{InstanceService, LayerContext, LayerTimer, Readiness, Request};
use crate::{
    layers::Completion,
    policy::{Blame, BreakerPolicy, FailureKind, TimeoutCountsAs},
    report::BreakerTransition,
};
use backplane_plugin_api::{Capabilities, CompletionSinkBox, Health, NodeTask};
use std::{collections::VecDeque, time::Instant};

/// The breaker's state, apart from any instance.
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

    /// True when this closes a half-open breaker.
    pub fn record_success(&mut self) -> bool {
        std::mem::take(&mut self.half_open)
    }

    pub fn is_open(&self) -> bool {
        self.open_until.is_some()
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

pub struct CircuitBreaker<S> {
    inner: S,
    instance: String,
    policy: BreakerPolicy,
    timeout_counts_as: TimeoutCountsAs,
    state: Breaker,
}

impl<S> CircuitBreaker<S> {
    pub fn new(inner: S, instance: String, policy: BreakerPolicy, timeout_counts_as: TimeoutCountsAs) -> Self {
        Self { inner, instance, policy, timeout_counts_as, state: Breaker::default() }
    }

    pub fn inner(&self) -> &S {
        &self.inner
    }

    fn reason(&self) -> String {
        format!(
            "circuit breaker open after {} infrastructure failures within {:.0}s",
            self.policy.failures,
            self.policy.window.as_secs_f64()
        )
    }
}

impl<S: InstanceService> InstanceService for CircuitBreaker<S> {
    fn poll_ready(&mut self, request: &Request<'_>) -> Readiness {
        self.inner.poll_ready(request)
    }

    fn call(&mut self, request: &Request<'_>, task: NodeTask, sink: CompletionSinkBox, cx: &mut LayerContext<'_>) {
        self.inner.call(request, task, sink, cx);
    }

    fn cancel(&mut self, task_id: u64) {
        self.inner.cancel(task_id);
    }

    fn completed(&mut self, completion: &mut Completion, cx: &mut LayerContext<'_>) {
        self.inner.completed(completion, cx);
        if cx.stopping {
            // The host cancelled these itself: not the instance's failures.
            return;
        }
        let error = match &completion.result {
            Ok(_) => {
                if self.state.record_success() {
                    tracing::info!("backend `{}`: circuit breaker closed; a trial attempt succeeded", self.instance);
                    cx.breaker_event(&self.instance, BreakerTransition::Closed);
                }
                return;
            }
            Err(error) => error,
        };
        let blame = Blame::of(FailureKind::of(error), completion.lost, self.timeout_counts_as);
        if blame == Blame::Infrastructure && self.state.record_failure(cx.now, &self.policy) {
            tracing::warn!("backend `{}`: {}; new work goes to other capable instances", self.instance, self.reason());
            cx.breaker_event(&self.instance, BreakerTransition::Opened);
            cx.set_timer(cx.now + self.policy.cooldown, LayerTimer::BreakerCooldown);
            cx.health_changed = true;
        }
    }

    fn fire(&mut self, timer: LayerTimer, cx: &mut LayerContext<'_>) {
        match timer {
            LayerTimer::BreakerCooldown => {
                if self.state.cooled_down(cx.now) {
                    tracing::info!("backend `{}`: circuit breaker half-open; trying it again", self.instance);
                    cx.breaker_event(&self.instance, BreakerTransition::HalfOpen);
                    cx.health_changed = true;
                }
            }
            other => self.inner.fire(other, cx),
        }
    }

    fn health(&mut self) -> Health {
        if self.state.is_open() {
            return Health::down(self.reason());
        }
        self.inner.health()
    }

    fn refresh(&mut self, capabilities: &Capabilities) {
        self.inner.refresh(capabilities);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

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
