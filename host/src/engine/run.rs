//! The state of one run and how each event changes it.

use super::{HOUSEKEEPING_INTERVAL, RunOptions, by_reference};
use crate::{
    layers::{
        self, Completion, InstanceService, LayerContext, LayerEvents, Message, Readiness, Request, Stack, Timer, Timers,
    },
    observe::{AttemptStatus, EventBuffer, RunEvent},
    plan::{Plan, Target},
    policy::{Blame, FailureKind, FailurePolicy, MAX_ATTEMPTS, RetryDecision, RetryPolicy},
    report::{NodeFailure, Reroute},
};
use backplane_plugin_api::{
    HealthStatus, NodeTask, Payload, PluginError_NE,
    abi_stable::std_types::{RString, RVec},
};
use std::{
    collections::{HashMap, VecDeque},
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, Instant, SystemTime},
};
use tokio::sync::mpsc;

/// Why a run stopped early.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Stop {
    Failed,
    Interrupted,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum State {
    Waiting,
    Running,
    Succeeded,
    Failed,
    Cancelled,
    /// Depends on a failed node (failure policy `continue`).
    Skipped,
}

/// Task ids are unique for the life of the process: instances are shared by
/// every run, and a late cancel or result must never hit another task.
pub(super) static NEXT_TASK_ID: AtomicU64 = AtomicU64::new(1);

/// Task ids reserved per node: one per possible attempt.
pub(super) const IDS_PER_NODE: u64 = MAX_ATTEMPTS as u64 + 1;

/// A context for a call into instance `$instance`'s layer stack.
macro_rules! layer_cx {
    ($run:expr, $instance:expr, $now:expr) => {
        LayerContext {
            now: $now,
            run_started: $run.started,
            instance: $instance as u32,
            timers: &mut $run.timers,
            completions: &$run.channel,
            events: &mut $run.layer_events,
            stopping: $run.stop.is_some(),
            health_changed: false,
        }
    };
}

pub(super) struct Run<'p> {
    pub(super) plan: &'p Plan,
    pub(super) options: &'p RunOptions,
    /// Per-node details beyond the state, when kept.
    pub(super) ledger: Option<super::NodeLedger>,
    /// Cacheable nodes that are ready, waiting to be looked up.
    pub(super) lookups: VecDeque<u32>,
    /// Task id of node 0's attempt 0; see [`Run::task_id`].
    first_task_id: u64,
    /// Current attempt of each node (0 before the first).
    pub(super) attempt: Vec<u8>,
    /// Inputs of running units, kept so a retry gets them again.
    pub(super) retained: HashMap<u32, Vec<Option<Payload>>>,
    timers: Timers,
    pending_retries: usize,
    pub(super) retries: usize,
    /// Item units created (see [`RunReport::item_tasks`](crate::report::RunReport::item_tasks)).
    pub(super) item_tasks: u64,
    /// Items whose result came from the cache.
    pub(super) item_cache_hits: u64,
    pub(super) layer_events: LayerEvents,
    pub(super) stacks: Vec<Stack>,
    pub(super) started: Instant,
    /// The plan's working directory as text, converted once rather than per task.
    working_dir: String,
    // Per unit (see `fanout`): the plan's nodes, then item units.
    /// Ordinary inputs still to arrive.
    pub(super) remaining: Vec<u32>,
    pub(super) slots: Vec<Vec<Option<Payload>>>,
    pub(super) state: Vec<State>,
    ready: Vec<VecDeque<u32>>,
    /// The instance each node runs on (the plan's, unless rerouted).
    pub(super) assigned: Vec<u32>,
    /// Instances that keep outputs by reference.
    pub(super) by_reference: Vec<bool>,
    /// `Some(reason)` for instances found down during the run.
    down: Vec<Option<String>>,
    next_health_check: Vec<Instant>,
    pub(super) reroutes: Vec<Reroute>,
    in_flight_total: usize,
    pub(super) per_backend_done: Vec<usize>,
    /// Attempts submitted, per instance (an abandoned one never completes).
    pub(super) per_backend_attempts: Vec<usize>,
    /// Output bytes each instance sent to the host (not references).
    pub(super) received_bytes: Vec<u64>,
    pub(super) first_submit: Vec<Option<Instant>>,
    pub(super) last_complete: Vec<Option<Instant>>,
    pub(super) outputs: Vec<Option<Payload>>,
    pub(super) failures: Vec<NodeFailure>,
    policy: FailurePolicy,
    pub(super) stop: Option<Stop>,
    pub(super) succeeded: usize,
    channel: mpsc::UnboundedSender<Message>,
    /// For the observers, when there are any.
    events: Option<EventBuffer>,
    /// The time the engine last read (events are stamped with it: one clock
    /// read per loop step and completion, not one per event).
    pub(super) clock: Instant,
    /// Breaker transitions already sent as events.
    breakers_sent: usize,
    /// When each unit's current attempt was dispatched (seconds into the run).
    pub(super) dispatched: Vec<f64>,
    /// Per instance: how long each finished attempt took, dispatch to result.
    pub(super) durations: Vec<Vec<f64>>,
    /// Per instance: attempts that succeeded.
    pub(super) attempts_succeeded: Vec<usize>,
    /// Units after the plan's nodes: items of per-item nodes.
    pub(super) items: Vec<super::fanout::ItemUnit>,
    /// Item units that are done, to be reused.
    pub(super) free_units: Vec<u32>,
    pub(super) fanouts: Vec<super::fanout::FanOut>,
    /// Per-item node -> its index in `fanouts`.
    pub(super) fanout_of: HashMap<u32, u32>,
    /// Producer -> the fan-outs its streams feed.
    pub(super) feeding: HashMap<u32, Vec<u32>>,
}

impl<'p> Run<'p> {
    pub(super) fn new(
        plan: &'p Plan,
        options: &'p RunOptions,
        channel: mpsc::UnboundedSender<Message>,
        started: Instant,
    ) -> Self {
        let backends = plan.instances.len();
        let keep_ledger = options.record_nodes || options.cache.is_some();
        let mut run = Run {
            plan,
            options,
            ledger: keep_ledger.then(|| super::NodeLedger::new(plan.nodes.len())),
            lookups: VecDeque::new(),
            first_task_id: NEXT_TASK_ID.fetch_add((plan.nodes.len() as u64 + 1) * IDS_PER_NODE, Ordering::Relaxed),
            attempt: vec![0; plan.nodes.len()],
            retained: HashMap::new(),
            timers: Timers::default(),
            pending_retries: 0,
            retries: 0,
            item_tasks: 0,
            item_cache_hits: 0,
            layer_events: LayerEvents::default(),
            stacks: plan.instances.iter().map(|i| layers::stack(i.clone(), &options.policy)).collect(),
            started,
            working_dir: plan.working_dir.to_string_lossy().into_owned(),
            remaining: plan.nodes.iter().map(|n| n.inputs.iter().filter(|i| !i.is_each()).count() as u32).collect(),
            slots: (0..plan.nodes.len()).map(|_| Vec::new()).collect(),
            state: vec![State::Waiting; plan.nodes.len()],
            ready: vec![VecDeque::new(); backends],
            assigned: plan.nodes.iter().map(|n| n.backend).collect(),
            by_reference: by_reference::capable_instances(&plan.instances),
            down: vec![None; backends],
            next_health_check: vec![started; backends],
            reroutes: Vec::new(),
            in_flight_total: 0,
            per_backend_done: vec![0; backends],
            per_backend_attempts: vec![0; backends],
            received_bytes: vec![0; backends],
            first_submit: vec![None; backends],
            last_complete: vec![None; backends],
            outputs: vec![None; plan.outputs.len()],
            failures: Vec::new(),
            policy: options.policy.failure,
            stop: None,
            succeeded: 0,
            channel,
            events: options.events.clone().map(EventBuffer::new),
            clock: started,
            breakers_sent: 0,
            dispatched: vec![0.0; plan.nodes.len()],
            durations: vec![Vec::new(); backends],
            attempts_succeeded: vec![0; backends],
            items: Vec::new(),
            free_units: Vec::new(),
            fanouts: Vec::new(),
            fanout_of: HashMap::new(),
            feeding: HashMap::new(),
        };
        run.plan_fanouts();
        run.emit(|_| RunEvent::RunStarted { at: SystemTime::now(), nodes: plan.nodes.len() });
        if run.ledger.is_some() {
            let statuses = (0..plan.nodes.len()).map(|node| run.initial_cache_status(node)).collect();
            if let Some(ledger) = &mut run.ledger {
                ledger.cache = statuses;
            }
        }
        for (i, node) in plan.nodes.iter().enumerate() {
            if node.inputs.is_empty() || run.remaining[i] == 0 && run.fanout_of.contains_key(&(i as u32)) {
                run.make_ready(i as u32);
            }
        }
        run
    }

    pub(super) fn stopping(&self) -> bool {
        self.stop.is_some()
    }

    pub(super) fn interrupt(&mut self) {
        self.stop.get_or_insert(Stop::Interrupted);
    }

    /// Nothing runs and nothing more will start.
    pub(super) fn finished(&self) -> bool {
        self.in_flight_total == 0 && (self.pending_retries == 0 || self.stop.is_some())
    }

    pub(super) fn in_flight(&self) -> usize {
        self.in_flight_total
    }

    /// Hands an event to the observers, if there are any (`make` gets the
    /// time since the run started, as of the engine's last clock read).
    #[inline]
    pub(super) fn emit(&mut self, make: impl FnOnce(Duration) -> RunEvent) {
        if let Some(events) = &mut self.events {
            events.push(make(self.clock.saturating_duration_since(self.started)));
        }
    }

    /// Sends the buffered events on (the loop calls it before it waits).
    pub(super) fn flush_events(&mut self) {
        self.emit_breaker_events();
        if let Some(events) = &mut self.events {
            events.flush();
        }
    }

    /// Breaker transitions the layers noted since the last call, as events.
    fn emit_breaker_events(&mut self) {
        if self.events.is_none() {
            return;
        }
        while self.breakers_sent < self.layer_events.breakers.len() {
            let event = &self.layer_events.breakers[self.breakers_sent];
            self.breakers_sent += 1;
            let Some(instance) = self.plan.instances.iter().position(|i| i.name == event.instance) else { continue };
            let (transition, at) = (event.event, Duration::from_secs_f64(event.at_secs));
            self.emit(|_| RunEvent::Breaker { instance: instance as u32, transition, at });
        }
    }

    /// The run is over: the last event, sent with the rest.
    pub(super) fn finish_events(&mut self) {
        self.clock = Instant::now();
        self.emit(|at| RunEvent::RunFinished { at });
        self.flush_events();
    }

    /// When the loop must wake at the latest: housekeeping or the next timer.
    pub(super) fn next_wake(&self, housekeeping: Instant) -> Instant {
        self.timers.next_due().map_or(housekeeping, |at| at.min(housekeeping))
    }

    /// Task id of `unit`'s attempt `attempt` (1-based).
    pub(super) fn task_id(&self, unit: usize, attempt: u8) -> u64 {
        let first = match self.item_of(unit) {
            None => self.first_task_id + unit as u64 * IDS_PER_NODE,
            Some(item) => item.first_task_id,
        };
        first + u64::from(attempt)
    }

    fn retry_policy(&self, unit: usize) -> RetryPolicy {
        let base = self.options.policy.retry;
        self.plan.nodes[self.node_of(unit)].retry().map_or(base, |r| r.apply(base))
    }

    /// What `unit`'s next attempt asks of its instance.
    fn request(&self, unit: u32) -> Request<'p> {
        let plan: &'p Plan = self.plan;
        let planned = &plan.nodes[self.node_of(unit as usize)];
        let resources = match planned.resources() {
            Some(own) if !own.is_empty() => own,
            _ => &plan.types[planned.type_index as usize].requirements.resources,
        };
        let deadline = (planned.timeout_ms > 0).then(|| Duration::from_millis(planned.timeout_ms)).or(self
            .options
            .policy
            .timeout
            .default);
        let task_id = self.task_id(unit as usize, self.attempt[unit as usize] + 1);
        let beside = (unit as usize) < plan.nodes.len() && !self.feeding.is_empty() && self.feeding.contains_key(&unit);
        Request { node: unit, task_id, resources, deadline, beside }
    }

    /// Queues a unit on its instance, or on another one when that is down
    /// (a per-item node is armed instead: its items run, not the node).
    pub(super) fn make_ready(&mut self, node: u32) {
        if self.state[node as usize] == State::Skipped {
            return;
        }
        if (node as usize) < self.plan.nodes.len() && !self.fanout_of.is_empty() && self.fanout_of.contains_key(&node) {
            return self.arm(node);
        }
        if (node as usize) >= self.plan.nodes.len() && self.item_ready(node) {
            return; // a cache hit
        }
        if self.awaits_lookup(node as usize) {
            self.lookups.push_back(node);
            return;
        }
        let backend = self.assigned[node as usize] as usize;
        if self.down[backend].is_none() {
            self.ready[backend].push_back(node);
            if (node as usize) < self.plan.nodes.len() {
                self.emit(|at| RunEvent::Queued { node, instance: backend as u32, at });
            }
        } else {
            self.reroute(node);
        }
    }

    fn reroute(&mut self, node: u32) {
        let i = node as usize;
        let from = self.assigned[i] as usize;
        let planned = &self.plan.nodes[self.node_of(i)];
        let reason = self.down[from].clone().unwrap_or_default();
        if planned.pinned {
            let message = format!(
                "its backend `{}` is down ({reason}) and the node is pinned to it, so it is not moved elsewhere",
                self.plan.instances[from].name
            );
            return self.fail(i, FailureKind::Infrastructure, message);
        }
        let resources = planned.resources().cloned().unwrap_or_default();
        let requirements = self.plan.requirements(self.node_of(i));
        match crate::plan::alternative(&self.plan.instances, &self.down, &requirements, &resources) {
            Ok(to) => {
                self.assigned[i] = to as u32;
                match self.reroutes.iter_mut().find(|r| r.from_index == from && r.to_index == to) {
                    Some(r) => r.nodes += 1,
                    None => self.reroutes.push(Reroute {
                        from: self.plan.instances[from].name.clone(),
                        to: self.plan.instances[to].name.clone(),
                        reason,
                        nodes: 1,
                        from_index: from,
                        to_index: to,
                    }),
                }
                self.ready[to].push_back(node);
                if i < self.plan.nodes.len() {
                    self.emit(|at| RunEvent::Rerouted { node, from: from as u32, to: to as u32, at });
                    self.emit(|at| RunEvent::Queued { node, instance: to as u32, at });
                }
            }
            Err(reasons) => {
                let message = format!("no healthy backend can take it: {}", reasons.join("; "));
                self.fail(i, FailureKind::Infrastructure, message);
            }
        }
    }

    /// Acts on an instance's health: one that is down has its queue moved
    /// (and takes no new nodes); one that is up again takes work again.
    fn read_health(&mut self, backend: usize) {
        let health = self.stacks[backend].health();
        let name = &self.plan.instances[backend].name;
        if health.status == HealthStatus::DOWN {
            if self.down[backend].is_none() {
                tracing::warn!("backend `{name}` is down ({}); moving its queued nodes", health.message);
                self.down[backend] = Some(format!("down: {}", health.message));
                for node in std::mem::take(&mut self.ready[backend]) {
                    self.reroute(node);
                }
            }
        } else if self.down[backend].take().is_some() {
            tracing::info!("backend `{name}` takes work again");
        }
    }

    /// Reads the health and capabilities of instances with queued nodes (at
    /// most every 100 ms each).
    fn check_health(&mut self, now: Instant) {
        for backend in 0..self.ready.len() {
            if self.ready[backend].is_empty() || self.down[backend].is_some() || now < self.next_health_check[backend] {
                continue;
            }
            self.next_health_check[backend] = now + HOUSEKEEPING_INTERVAL;
            self.read_health(backend);
            // Nodes wait here: what the instance offers may have changed.
            if self.down[backend].is_none() {
                self.stacks[backend].refresh(&self.plan.instances[backend].capabilities());
            }
        }
    }

    pub(super) fn dispatch_all(&mut self) {
        let now = Instant::now();
        self.clock = now;
        // Lookups first: misses join their instance's queue before its health is read.
        if self.stop.is_none() {
            self.look_up_ready();
        }
        self.check_health(now);
        if self.stop.is_some() {
            return;
        }
        for backend in 0..self.ready.len() {
            while let Some(&node) = self.ready[backend].front() {
                let request = self.request(node);
                if self.stacks[backend].poll_ready(&request) == Readiness::Wait {
                    break;
                }
                self.ready[backend].pop_front();
                self.submit(node, backend, &request, now);
            }
        }
    }

    pub(super) fn fire_timers(&mut self, now: Instant) {
        self.clock = now;
        while let Some(timer) = self.timers.pop_due(now) {
            match timer {
                Timer::Retry { node } => {
                    self.pending_retries -= 1;
                    if self.stop.is_some() {
                        self.state[node as usize] = State::Cancelled;
                    } else {
                        self.make_ready(node);
                    }
                }
                Timer::Layer { instance, timer } => {
                    let i = instance as usize;
                    let mut cx = layer_cx!(self, i, now);
                    self.stacks[i].fire(timer, &mut cx);
                    if cx.health_changed {
                        self.read_health(i);
                    }
                    self.emit_breaker_events();
                }
            }
        }
    }

    /// One attempt failed: retry (after a backoff) or fail the node, per
    /// its retry policy.
    fn attempt_failed(&mut self, node: usize, kind: FailureKind, lost: bool, message: String) {
        if !self.feeding.is_empty() {
            self.close_feeds(node);
        }
        let blame = Blame::of(kind, lost, self.options.policy.timeout.counts_as);
        let attempt = self.attempt[node];
        let entropy = self.task_id(node, attempt).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 11;
        match self.retry_policy(node).decide(blame, attempt, entropy) {
            RetryDecision::RetryAfter(delay) if self.stop.is_none() => {
                tracing::warn!(
                    node = %self.task_node_id(node),
                    "attempt {attempt} failed ({kind}): {message}; retrying in {:.2}s",
                    delay.as_secs_f64()
                );
                self.state[node] = State::Waiting;
                if let Some(inputs) = self.retained.remove(&(node as u32)) {
                    self.slots[node] = inputs;
                }
                self.retries += 1;
                self.pending_retries += 1;
                self.timers.push(Instant::now() + delay, Timer::Retry { node: node as u32 });
                let instance = self.assigned[node];
                if node < self.plan.nodes.len() {
                    self.emit(|at| RunEvent::Retried { node: node as u32, instance, attempt, delay, at });
                }
            }
            _ => {
                self.retained.remove(&(node as u32));
                let message = if attempt > 1 { format!("{message} (after {attempt} attempts)") } else { message };
                self.fail(node, kind, message);
            }
        }
    }

    fn submit(&mut self, node: u32, backend: usize, request: &Request<'_>, now: Instant) {
        let is_node = (node as usize) < self.plan.nodes.len();
        let planned = &self.plan.nodes[self.node_of(node as usize)];
        let node_type = &self.plan.types[planned.type_index as usize];
        let slots = std::mem::take(&mut self.slots[node as usize]);
        // Keep a copy for a retry, unless this attempt is the last possible one.
        let attempt = self.attempt[node as usize] + 1;
        if !slots.is_empty() && attempt < self.retry_policy(node as usize).most_attempts() {
            self.retained.insert(node, slots.clone());
        }
        let inputs: RVec<Payload> = slots.into_iter().flatten().collect();
        self.attempt[node as usize] = attempt;
        let at = now.saturating_duration_since(self.started);
        self.dispatched[node as usize] = at.as_secs_f64();
        if !is_node {
            self.item_dispatched(node as usize, now);
        } else if let Some(events) = &mut self.events {
            let bytes_in = inputs.iter().map(|p| p.data.len() as u64).sum();
            events.push(RunEvent::Dispatched { node, instance: backend as u32, attempt, at, bytes_in });
        }
        let (feeds, feeds_items) = if is_node { self.open_feeds(node) } else { (Vec::new(), None) };
        let task = NodeTask {
            task_id: request.task_id,
            attempt: u32::from(attempt),
            node_id: self.task_node_id(node as usize),
            node_type: node_type.name.into(),
            node_version: node_type.version.into(),
            settings: planned.settings.as_str().into(),
            inputs,
            resources: planned.resources().cloned().unwrap_or_default(),
            timeout_ms: request.deadline.map_or(0, |t| t.as_millis() as u64),
            working_dir: self.working_dir.as_str().into(),
            compute: node_type.compute,
            extensions: planned
                .placement()
                .cloned()
                .into_iter()
                .chain(if is_node { self.by_reference_request(node as usize, backend) } else { None })
                .chain(feeds_items)
                .collect(),
        };
        self.state[node as usize] = State::Running;
        if is_node && let Some(ledger) = &mut self.ledger {
            ledger.submitted[node as usize] = now.saturating_duration_since(self.started).as_secs_f64();
        }
        self.in_flight_total += 1;
        self.first_submit[backend].get_or_insert(now);
        self.per_backend_attempts[backend] += 1;
        let sink = layers::completion_sink(node, request.task_id, node_type.outputs, feeds, self.channel.clone());
        let mut cx = layer_cx!(self, backend, now);
        self.stacks[backend].call(request, task, sink, &mut cx);
        self.emit_breaker_events();
    }

    /// Handles what a task's sink sent: an item of its stream, or its completion.
    pub(super) fn receive(&mut self, message: Message) {
        match message {
            Message::Completion(completion) => self.complete(completion),
            Message::Item(item) => self.stream_item(item),
        }
    }

    fn complete(&mut self, mut completion: Completion) {
        let node = completion.node as usize;
        if self.state[node] != State::Running || completion.task_id != self.task_id(node, self.attempt[node]) {
            // An abandoned attempt answering late, or a duplicate: delivered once, never twice.
            tracing::warn!(node = %self.task_node_id(node), task = completion.task_id, "ignoring a late or duplicate result");
            return;
        }
        let is_node = node < self.plan.nodes.len();
        let backend = self.assigned[node] as usize;
        let now = Instant::now();
        self.clock = now;
        self.in_flight_total -= 1;
        self.per_backend_done[backend] += 1;
        self.last_complete[backend] = Some(now);
        let bytes_out = match &completion.result {
            Ok(outputs) => outputs.iter().map(|p| p.data.len() as u64).sum::<u64>(),
            Err(_) => 0,
        };
        self.received_bytes[backend] += bytes_out;
        let at = now.saturating_duration_since(self.started);
        if is_node && let Some(ledger) = &mut self.ledger {
            ledger.finished[node] = at.as_secs_f64();
        }
        let mut cx = layer_cx!(self, backend, now);
        self.stacks[backend].completed(&mut completion, &mut cx);
        if cx.health_changed {
            self.read_health(backend);
        }
        self.durations[backend].push(at.as_secs_f64() - self.dispatched[node]);
        if completion.result.is_ok() {
            self.attempts_succeeded[backend] += 1;
        }
        if self.events.is_some() {
            if is_node {
                self.emit_completion(&mut completion, backend, at, bytes_out);
            } else if !completion.logs.is_empty() {
                // An item's log lines are its node's.
                let (node, lines) = (self.node_of(node) as u32, std::mem::take(&mut completion.logs));
                self.emit(|_| RunEvent::Logs { node, attempt: 1, lines });
            }
        }
        match completion.result {
            Ok(outputs) if !is_node => {
                self.retained.remove(&(node as u32));
                self.store_item(node, &outputs);
                self.item_succeeded(node, outputs);
            }
            // While the run is being cancelled, a node that still finishes feeds
            // no other node, but its workflow outputs are kept.
            Ok(outputs) => {
                self.record_outputs(node, &outputs);
                self.store_result(node, &outputs);
                match self.deliver(node, outputs, self.stop.is_none()) {
                    Ok(()) => {
                        self.state[node] = State::Succeeded;
                        self.succeeded += 1;
                        self.retained.remove(&(node as u32));
                    }
                    Err(message) => self.fail(node, FailureKind::NodeFailed, message),
                }
            }
            Err(error) => {
                let kind = FailureKind::of(&error);
                match self.stop {
                    Some(_) if kind == FailureKind::Cancelled || !is_node => {
                        self.retained.remove(&(node as u32));
                        self.state[node] = State::Cancelled;
                    }
                    // Failing while the run stops is still a failure to list (not retried).
                    Some(_) => self.fail(node, kind, error_text(&error)),
                    None => self.attempt_failed(node, kind, completion.lost, error_text(&error)),
                }
            }
        }
    }

    /// The events of one completed attempt: started, its logs, finished.
    fn emit_completion(&mut self, completion: &mut Completion, backend: usize, at: Duration, bytes_out: u64) {
        self.emit_breaker_events();
        let (node, attempt) = (completion.node, self.attempt[completion.node as usize]);
        if let Some(started) = completion.started {
            // Within the attempt: a skewed clock elsewhere cannot move it out.
            let dispatched = Duration::from_secs_f64(self.dispatched[node as usize]);
            let started = started.saturating_duration_since(self.started).max(dispatched).min(at);
            self.emit(|_| RunEvent::Started { node, attempt, at: started });
        }
        let lines = std::mem::take(&mut completion.logs);
        if !lines.is_empty() {
            self.emit(|_| RunEvent::Logs { node, attempt, lines });
        }
        let (status, error) = match &completion.result {
            Ok(_) => (AttemptStatus::Succeeded, None),
            Err(error) => (
                AttemptStatus::Failed { kind: FailureKind::of(error), lost: completion.lost },
                Some(error_text(error).into_boxed_str()),
            ),
        };
        self.emit(|_| RunEvent::Finished { node, instance: backend as u32, attempt, at, status, bytes_out, error });
    }

    pub(super) fn fail(&mut self, node: usize, kind: FailureKind, message: String) {
        if node >= self.plan.nodes.len() {
            return self.item_failed(node, kind, message);
        }
        self.state[node] = State::Failed;
        let planned = &self.plan.nodes[node];
        let failure = NodeFailure {
            node: planned.id.clone(),
            node_type: self.plan.types[planned.type_index as usize].name.to_owned(),
            backend: self.plan.instances[self.assigned[node] as usize].name.clone(),
            kind,
            message,
        };
        tracing::error!("{failure}");
        self.failures.push(failure);
        match self.policy {
            FailurePolicy::FailFast => {
                self.stop.get_or_insert(Stop::Failed);
            }
            FailurePolicy::Continue => self.skip_dependants(node),
        }
    }

    /// Marks every node downstream of `node` as skipped.
    fn skip_dependants(&mut self, node: usize) {
        let mut stack = vec![node];
        while let Some(n) = stack.pop() {
            for consumer in &self.plan.nodes[n].consumers {
                let (Target::Node { node: target, .. } | Target::Items { node: target, .. }) = consumer.target else {
                    continue;
                };
                let target = target as usize;
                // A per-item node runs while its items do.
                let per_item = self.fanout_of.contains_key(&(target as u32));
                if self.state[target] == State::Waiting || per_item && self.state[target] == State::Running {
                    self.state[target] = State::Skipped;
                    self.drain_node(target);
                    stack.push(target);
                }
            }
        }
    }

    pub(super) fn cancel_in_flight(&mut self) {
        self.close_windows();
        for node in 0..self.state.len() {
            if !self.fanout_of.is_empty() && self.fanout_of.contains_key(&(node as u32)) {
                // A per-item node has no task of its own; its items are cancelled here.
                if self.state[node] == State::Running {
                    self.state[node] = State::Cancelled;
                }
                continue;
            }
            if self.state[node] == State::Running {
                let task_id = self.task_id(node, self.attempt[node]);
                self.stacks[self.assigned[node] as usize].cancel(task_id);
            }
        }
    }

    /// A port `node`'s consumers (with `to_nodes` false, only workflow
    /// outputs) need that `outputs` lacks.
    pub(super) fn missing_output(&self, node: usize, outputs: &[Payload], to_nodes: bool) -> Option<&'static str> {
        let wanted = |c: &&crate::plan::Consumer| takes_outputs(c.target, to_nodes);
        let consumers = &self.plan.nodes[node].consumers;
        consumers.iter().filter(wanted).find(|c| !outputs.iter().any(|p| p.port == c.port)).map(|c| c.port)
    }

    /// Moves a node's outputs into its consumers' input slots (or, with
    /// `to_nodes` false, only into workflow outputs). Checks every needed port
    /// first, so a node's outputs are delivered all or not at all.
    pub(super) fn deliver(&mut self, node: usize, outputs: RVec<Payload>, to_nodes: bool) -> Result<(), String> {
        if let Some(missing) = self.missing_output(node, &outputs, to_nodes) {
            return Err(format!("the node produced no `{missing}` output, which its consumers need"));
        }
        let mut outputs = outputs.into_vec();
        let consumers = &self.plan.nodes[node].consumers;
        let wanted = |c: &&crate::plan::Consumer| takes_outputs(c.target, to_nodes);
        for (c, consumer) in consumers.iter().enumerate() {
            if let Target::Items { node: target, .. } = consumer.target {
                if to_nodes {
                    self.stream_closed(target);
                }
                continue;
            }
            if !wanted(&consumer) {
                continue;
            }
            let Some(at) = outputs.iter().position(|p| p.port == consumer.port) else { continue };
            let later_consumer = consumers[c + 1..].iter().filter(wanted).any(|other| other.port == consumer.port);
            let mut payload = if later_consumer { outputs[at].clone() } else { std::mem::take(&mut outputs[at]) };
            match consumer.target {
                Target::Output(_) if !payload.object_ref.is_empty() => {
                    return Err(format!("output `{}` came back as a reference, not bytes", payload.port));
                }
                Target::Output(index) => self.outputs[index as usize] = Some(payload),
                Target::Items { .. } => {} // told above
                Target::Node { node: target, slot } => {
                    let target = target as usize;
                    let instances = &self.plan.instances;
                    let (from, to) = (self.assigned[node] as usize, self.assigned[target] as usize);
                    by_reference::check_delivery(&payload, &instances[from].name, &instances[to].name)?;
                    let slots = &mut self.slots[target];
                    if slots.is_empty() {
                        slots.resize_with(self.plan.nodes[target].inputs.len(), || None);
                    }
                    payload.port = RString::from(self.plan.nodes[target].inputs[slot as usize].port);
                    slots[slot as usize] = Some(payload);
                    self.remaining[target] -= 1;
                    if self.remaining[target] == 0 {
                        self.make_ready(target as u32);
                    }
                }
            }
        }
        Ok(())
    }
}

/// Whether a consumer takes a node's finished outputs (with `to_nodes`
/// false, only workflow outputs do). An `each` consumer had its items as
/// they came.
fn takes_outputs(target: Target, to_nodes: bool) -> bool {
    match target {
        Target::Output(_) => true,
        Target::Node { .. } => to_nodes,
        Target::Items { .. } => false,
    }
}

/// The boundary error's own text (its `Display`, which for variants newer
/// than this host comes from the plugin).
fn error_text(error: &PluginError_NE) -> String {
    error.to_string()
}
