//! Resource-aware admission: a task reserves what it asks for on its
//! instance while it runs, and waits in the host until that fits.
//!
//! Capacity is what the instance's live capabilities report plus what the
//! operator declares for it (`resources = { ... }` in `backplane.toml`). A
//! cpu or memory capacity of zero means "not stated" and does not limit; a
//! gpu or custom resource the instance lacks was already a plan-time error.
//! A node that asks for nothing reserves nothing, so plain nodes pay only
//! the in-flight limit. Queues are first in, first out: a task that does not
//! fit holds back the ones behind it on that instance, so a large task is
//! never starved by small ones. A task larger than the instance's whole
//! (current) capacity runs alone rather than never.

use super::{InstanceService, LayerContext, LayerTimer, Readiness, Request};
use crate::layers::Completion;
use backplane_plugin_api::{Capabilities, CompletionSinkBox, Health, NodeTask, Resources};
use std::collections::HashMap;

/// Leaves room for rounding in sums of fractional cpus.
const EPSILON: f64 = 1e-9;

/// What an instance can hold at once, by resource.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Capacity(Resources);

/// The capacity an instance's (operator-merged) capabilities state.
pub fn capacity_of(capabilities: &Capabilities) -> Capacity {
    Capacity(capabilities.capacity.clone())
}

pub struct Admission<S> {
    inner: S,
    max_in_flight: usize,
    in_flight: usize,
    capacity: Capacity,
    /// What running tasks hold, in total and per task (only tasks that
    /// reserved something are listed).
    reserved: Resources,
    holders: HashMap<u64, Resources>,
}

impl<S> Admission<S> {
    pub fn new(inner: S, max_in_flight: usize, capacity: Capacity) -> Self {
        Self {
            inner,
            max_in_flight: max_in_flight.max(1),
            in_flight: 0,
            capacity,
            reserved: Resources::default(),
            holders: HashMap::new(),
        }
    }

    pub fn inner(&self) -> &S {
        &self.inner
    }

    fn fits(&self, need: &Resources) -> bool {
        let (cap, held) = (&self.capacity.0, &self.reserved);
        let limited = |capacity: f64, held: f64, need: f64| capacity <= 0.0 || held + need <= capacity + EPSILON;
        limited(cap.cpus, held.cpus, need.cpus)
            && (cap.memory_bytes == 0 || held.memory_bytes.saturating_add(need.memory_bytes) <= cap.memory_bytes)
            && (need.gpus <= 0.0 || held.gpus + need.gpus <= cap.gpus + EPSILON)
            && need
                .custom
                .iter()
                .all(|c| c.1 <= 0.0 || held.custom_amount(&c.0) + c.1 <= cap.custom_amount(&c.0) + EPSILON)
    }
}

fn add(total: &mut Resources, amount: &Resources, sign: f64) {
    total.cpus = (total.cpus + sign * amount.cpus).max(0.0);
    total.gpus = (total.gpus + sign * amount.gpus).max(0.0);
    total.memory_bytes = if sign > 0.0 {
        total.memory_bytes.saturating_add(amount.memory_bytes)
    } else {
        total.memory_bytes.saturating_sub(amount.memory_bytes)
    };
    for c in amount.custom.iter() {
        match total.custom.iter_mut().find(|t| t.0 == c.0) {
            Some(t) => t.1 = (t.1 + sign * c.1).max(0.0),
            None if sign > 0.0 => total.custom.push(c.clone()),
            None => {}
        }
    }
}

impl<S: InstanceService> InstanceService for Admission<S> {
    fn poll_ready(&mut self, request: &Request<'_>) -> Readiness {
        if self.in_flight >= self.max_in_flight {
            return Readiness::Wait;
        }
        let alone = self.holders.is_empty();
        if !request.resources.is_empty() && !alone && !self.fits(request.resources) {
            return Readiness::Wait;
        }
        self.inner.poll_ready(request)
    }

    fn call(&mut self, request: &Request<'_>, task: NodeTask, sink: CompletionSinkBox, cx: &mut LayerContext<'_>) {
        self.in_flight += 1;
        if !request.resources.is_empty() {
            if !self.fits(request.resources) {
                tracing::warn!(
                    task = request.task_id,
                    "the task asks for more than its instance has now ({:?}); it runs alone",
                    self.capacity.0
                );
            }
            add(&mut self.reserved, request.resources, 1.0);
            self.holders.insert(request.task_id, request.resources.clone());
        }
        self.inner.call(request, task, sink, cx);
    }

    fn cancel(&mut self, task_id: u64) {
        self.inner.cancel(task_id);
    }

    fn completed(&mut self, completion: &mut Completion, cx: &mut LayerContext<'_>) {
        self.inner.completed(completion, cx);
        self.in_flight = self.in_flight.saturating_sub(1);
        if !self.holders.is_empty()
            && let Some(held) = self.holders.remove(&completion.task_id)
        {
            add(&mut self.reserved, &held, -1.0);
        }
    }

    fn fire(&mut self, timer: LayerTimer, cx: &mut LayerContext<'_>) {
        self.inner.fire(timer, cx);
    }

    fn health(&mut self) -> Health {
        self.inner.health()
    }
}
