//! Resource-aware admission: a task reserves what it asks for on its
//! instance while it runs, and waits in the host until that fits.
//!
//! Capacity is what the operator declares the instance offers in total
//! (`capacity = { ... }` in `backplane.toml`) over what its live capabilities
//! report. A backend's report is "what one task may use at most", which is
//! also the total only on one machine: for a distributed instance (Ray, a
//! worker pool) only the declared capacity limits, and the backend's own
//! scheduler places the rest. A resource no one states does not limit (a
//! node asking for one the instance lacks was already a plan-time error).
//! Capacity is read again while tasks wait (it is live: workers join, Ray
//! nodes die).
//! A node that asks for nothing reserves nothing, so plain nodes pay only
//! the in-flight limit. Queues are first in, first out: a task that does not
//! fit holds back the ones behind it on that instance, so a large task is
//! never starved by small ones. A task larger than the instance's whole
//! (current) capacity runs alone rather than never.

use super::{InstanceService, LayerContext, LayerTimer, Readiness, Request};
use crate::layers::Completion;
use backplane_plugin_api::{Capabilities, CapabilityFlags, CompletionSinkBox, Health, NodeTask, Resources};
use std::collections::{HashMap, HashSet};

/// Leaves room for rounding in sums of fractional cpus.
const EPSILON: f64 = 1e-9;

/// What an instance can hold at once, by resource.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Capacity(Resources);

/// The capacity admission enforces for an instance with these (operator-
/// merged) capabilities and this declared capacity.
pub fn capacity_of(capabilities: &Capabilities, declared: &Resources) -> Capacity {
    if capabilities.flags.contains(CapabilityFlags::DISTRIBUTED) {
        Capacity(declared.clone())
    } else {
        Capacity(capabilities.capacity.clone())
    }
}

pub struct Admission<S> {
    inner: S,
    max_in_flight: usize,
    in_flight: usize,
    capacity: Capacity,
    /// What the operator declared, to recompute `capacity` from live capabilities.
    declared: Resources,
    /// What running tasks hold, in total and per task (only tasks that
    /// reserved something are listed).
    reserved: Resources,
    holders: HashMap<u64, Resources>,
    /// Producers running beside the slots ([`Request::beside`]): not counted.
    beside: HashSet<u64>,
}

impl<S> Admission<S> {
    pub fn new(inner: S, max_in_flight: usize, capabilities: &Capabilities, declared: Resources) -> Self {
        Self {
            inner,
            max_in_flight: max_in_flight.max(1),
            in_flight: 0,
            capacity: capacity_of(capabilities, &declared),
            declared,
            reserved: Resources::default(),
            holders: HashMap::new(),
            beside: HashSet::new(),
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
            && limited(cap.gpus, held.gpus, need.gpus)
            && need.custom.iter().all(|c| {
                !cap.custom.iter().any(|t| t.0 == c.0)
                    || limited(cap.custom_amount(&c.0), held.custom_amount(&c.0), c.1)
            })
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
        if request.beside {
            return self.inner.poll_ready(request);
        }
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
        if request.beside {
            self.beside.insert(request.task_id);
            return self.inner.call(request, task, sink, cx);
        }
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
        if !self.beside.is_empty() && self.beside.remove(&completion.task_id) {
            return;
        }
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

    fn refresh(&mut self, capabilities: &Capabilities) {
        self.capacity = capacity_of(capabilities, &self.declared);
        self.inner.refresh(capabilities);
    }
}
