//! Policies that wrap one backend instance, in the spirit of tower's
//! `Layer`: each decorator is an [`InstanceService`] around another, so they
//! compose in any order and never cross the ABI.
//!
//! # Core concepts
//!
//! - The engine talks to each instance through one stack,
//!   [`Admission`]`<`[`CircuitBreaker`]`<`[`Timeout`]`<`[`PluginBackend`]`>>>`
//!   ([`stack`]). Requests travel inward (`poll_ready`, `call`, `cancel`);
//!   results travel outward (`completed`), and a layer may rewrite one (a
//!   cancel at the deadline becomes a timeout).
//! - Layers share the engine's one timer heap through [`LayerContext`]: no
//!   task or thread per node. A timer names the instance and the layer that
//!   set it, and comes back through the stack's `fire`.
//! - A layer that makes up a result (an abandoned attempt) sends it on the
//!   engine's completion channel, so it reaches every layer and the
//!   scheduler exactly like a real one; the real one, if it ever comes, is
//!   ignored as late.
//! - An open breaker reports itself through `health`, the same path the
//!   scheduler already uses to move work off an instance that is down.
//! - Retry is not a layer: it needs the retained inputs and may move a node
//!   to another instance, so it is a policy object the scheduler asks
//!   ([`RetryPolicy`](crate::policy::RetryPolicy)).

mod admission;
mod breaker;
mod credits;
mod plugin;
mod sink;
mod timeout;

pub use admission::{Admission, capacity_of};
pub use breaker::{Breaker, CircuitBreaker};
pub use credits::Credits;
pub use plugin::PluginBackend;
pub use sink::{Completion, Feed, Message, StreamItem, completion_sink};
pub use timeout::Timeout;

use crate::{
    policy::RunPolicy,
    registry::BackendInstance,
    report::{BreakerEvent, BreakerTransition},
};
use backplane_plugin_api::{Capabilities, CompletionSinkBox, Health, NodeTask, Resources};
use std::{
    cmp::Reverse,
    collections::BinaryHeap,
    sync::Arc,
    time::{Duration, Instant},
};
use tokio::sync::mpsc::UnboundedSender;

/// What the engine knows about a task before it submits it.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub node: u32,
    pub task_id: u64,
    /// What the task reserves on the instance while it runs.
    pub resources: &'a Resources,
    /// Cancel the task this long after it starts.
    pub deadline: Option<Duration>,
    /// A producer that feeds per-item consumers: it runs beside the
    /// instance's slots, since it waits for consumers that need them.
    pub beside: bool,
}

/// Whether a request may be submitted now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readiness {
    Ready,
    /// Not now: ask again after something on this instance completes.
    Wait,
}

/// The host's view of one backend instance, decorated by layers.
pub trait InstanceService {
    /// Whether `request` may be submitted now. A layer that says `Ready`
    /// must accept the `call` that follows.
    fn poll_ready(&mut self, request: &Request<'_>) -> Readiness;
    /// Submits the task; its result comes back on the engine's channel.
    fn call(&mut self, request: &Request<'_>, task: NodeTask, sink: CompletionSinkBox, cx: &mut LayerContext<'_>);
    fn cancel(&mut self, task_id: u64);
    /// A result for a task submitted through this stack, inner layers first.
    fn completed(&mut self, completion: &mut Completion, cx: &mut LayerContext<'_>);
    /// A timer set through `cx` by this stack came due.
    fn fire(&mut self, timer: LayerTimer, cx: &mut LayerContext<'_>);
    fn health(&mut self) -> Health;
    /// The instance's live capabilities, read again while tasks wait: a
    /// layer that sizes itself by them (capacity, concurrency) updates.
    fn refresh(&mut self, capabilities: &Capabilities);
}

/// Which layer set a timer, and what for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LayerTimer {
    /// The attempt's deadline: cancel it.
    Deadline { task_id: u64 },
    /// The grace period after the deadline ended: give up on the attempt.
    Abandon { task_id: u64 },
    /// The breaker's cool-down ended.
    BreakerCooldown,
}

/// A due time on the engine's timer heap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Timer {
    /// The scheduler queues a failed node again.
    Retry { node: u32 },
    /// For the layer stack of instance `instance`.
    Layer { instance: u32, timer: LayerTimer },
}

/// The one timer heap of a run.
#[derive(Default)]
pub struct Timers(BinaryHeap<Reverse<(Instant, Timer)>>);

impl Timers {
    pub fn push(&mut self, at: Instant, timer: Timer) {
        self.0.push(Reverse((at, timer)));
    }
    pub fn next_due(&self) -> Option<Instant> {
        self.0.peek().map(|Reverse((at, _))| *at)
    }
    /// The earliest timer due at `now`, removed.
    pub fn pop_due(&mut self, now: Instant) -> Option<Timer> {
        match self.0.peek() {
            Some(Reverse((at, _))) if *at <= now => self.0.pop().map(|Reverse((_, timer))| timer),
            _ => None,
        }
    }
}

/// What layers observed during the run, for the report.
#[derive(Debug, Default)]
pub struct LayerEvents {
    /// Attempts that hit their deadline and failed for it.
    pub timeouts: usize,
    pub breakers: Vec<BreakerEvent>,
}

/// What a layer may touch of the engine's state while handling a call.
pub struct LayerContext<'a> {
    pub now: Instant,
    pub run_started: Instant,
    pub instance: u32,
    pub timers: &'a mut Timers,
    pub completions: &'a UnboundedSender<Message>,
    pub events: &'a mut LayerEvents,
    /// The run is stopping (a failure under fail-fast, or an interrupt): the
    /// host cancels what runs, so failures now say nothing of the instance.
    pub stopping: bool,
    /// Set by a layer whose `health` answer changed; the engine reads it again.
    pub health_changed: bool,
}

impl LayerContext<'_> {
    pub fn set_timer(&mut self, at: Instant, timer: LayerTimer) {
        self.timers.push(at, Timer::Layer { instance: self.instance, timer });
    }

    pub fn breaker_event(&mut self, instance: &str, transition: BreakerTransition) {
        self.events.breakers.push(BreakerEvent {
            instance: instance.to_owned(),
            at_secs: self.now.duration_since(self.run_started).as_secs_f64(),
            event: transition,
        });
    }
}

/// The stack the engine runs every instance through.
pub type Stack = Admission<CircuitBreaker<Timeout<PluginBackend>>>;

/// Builds `instance`'s stack for one run with `policy`.
pub fn stack(instance: Arc<BackendInstance>, policy: &RunPolicy) -> Stack {
    let capabilities = instance.capabilities();
    let name = instance.name.clone();
    let max_in_flight = instance.max_in_flight;
    let declared = instance.capacity.clone();
    let plugin = PluginBackend::new(instance);
    let timeout = Timeout::new(plugin, policy.timeout, capabilities.max_concurrency as usize);
    let breaker = CircuitBreaker::new(timeout, name, policy.breaker, policy.timeout.counts_as);
    Admission::new(breaker, max_in_flight, &capabilities, declared)
}

#[cfg(test)]
mod tests;
