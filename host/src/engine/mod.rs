//! Runs a [`Plan`]: a single tokio task owns all run state, submits ready
//! nodes to their backend instances, and reacts to completions.
//!
//! # Core concepts
//!
//! - Completions arrive on one unbounded channel from whatever thread the
//!   backend completes on; the loop drains them in batches, so a busy run
//!   costs no wake-ups and no task per node.
//! - A node is ready when every input slot is filled. Outputs move to their
//!   consumer (the last consumer of a port gets the original, earlier ones a
//!   clone), so payload bytes are never copied on a single-consumer edge.
//! - Each instance has an in-flight limit; ready nodes wait in a queue per
//!   instance.
//! - Failure policy: `fail-fast` (the first failure stops submission,
//!   cancels what is in flight and waits a bounded grace period) or
//!   `continue` (independent branches run on; dependants of a failed node are
//!   skipped).
//! - Interrupts (Ctrl-C, SIGTERM, through [`RunOptions::interrupt`]) stop the
//!   run the way a fail-fast failure does.
//! - Health-aware: an instance with queued nodes has its `health()` read at
//!   most every 100 ms; when it is down, its queued and future nodes move to
//!   the next capable healthy instance (pinned nodes fail instead).

mod by_reference;
pub mod policy;
mod report;
mod sink;

pub use policy::{BreakerPolicy, RetryPolicy, TimeoutPolicy};
pub use report::{BackendSummary, BreakerEvent, NodeFailure, Reroute, RunReport};
pub use sink::Completion;

use crate::plan::{Plan, Target};
use backplane_plugin_api::{
    HealthStatus, NodeTask, Payload, PluginError_NE,
    abi_stable::std_types::{RString, RVec},
    describe,
};
use indicatif::{ProgressBar, ProgressStyle};
use policy::{Breaker, MAX_ATTEMPTS, is_infrastructure};
use std::{
    cmp::Reverse,
    collections::{BinaryHeap, HashMap, VecDeque},
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, Instant},
};
use tokio::sync::{mpsc, watch};

/// What a node failure does to the rest of the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FailurePolicy {
    /// Stop at the first failure: cancel what runs, start nothing more.
    #[default]
    FailFast,
    /// Run every node that does not depend on a failed one.
    Continue,
}

impl FailurePolicy {
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "fail-fast" => Some(Self::FailFast),
            "continue" => Some(Self::Continue),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Show a progress bar once the run has taken a second.
    pub progress: bool,
    /// How long to wait for in-flight tasks after a failure or an interrupt.
    pub cancel_grace: Duration,
    pub failure_policy: FailurePolicy,
    /// Becomes `true` when the run must stop (Ctrl-C, SIGTERM).
    pub interrupt: Option<watch::Receiver<bool>>,
    /// For nodes without their own `retry`.
    pub retry: RetryPolicy,
    pub timeout: TimeoutPolicy,
    pub breaker: BreakerPolicy,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            progress: false,
            cancel_grace: Duration::from_secs(10),
            failure_policy: FailurePolicy::FailFast,
            interrupt: None,
            retry: RetryPolicy::default(),
            timeout: TimeoutPolicy::default(),
            breaker: BreakerPolicy::default(),
        }
    }
}

/// Why a run stopped early.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Stop {
    Failed,
    Interrupted,
}

/// The run's result: the report and the workflow outputs (by output index).
pub struct RunOutcome {
    pub report: RunReport,
    pub outputs: Vec<Option<Payload>>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
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
static NEXT_TASK_ID: AtomicU64 = AtomicU64::new(1);

/// Task ids reserved per node: one per possible attempt.
const IDS_PER_NODE: u64 = MAX_ATTEMPTS as u64 + 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum TimerKind {
    /// Queue a failed node again.
    Retry(u32),
    /// The attempt reached its deadline: cancel it.
    Cancel(u32, u8),
    /// The grace period after the deadline ended: give up on the attempt.
    Abandon(u32, u8),
}

struct Run<'p> {
    plan: &'p Plan,
    options: &'p RunOptions,
    /// Task id of node 0's attempt 0; see [`Run::task_id`].
    first_task_id: u64,
    /// Current attempt of each node (0 before the first).
    attempt: Vec<u8>,
    /// The attempt's deadline passed and it was cancelled.
    timed_out: Vec<bool>,
    /// Inputs of running nodes, kept so a retry gets them again.
    retained: HashMap<u32, Vec<Option<Payload>>>,
    timers: BinaryHeap<Reverse<(Instant, TimerKind)>>,
    pending_retries: usize,
    retries: usize,
    timeouts: usize,
    breakers: Vec<Breaker>,
    breaker_events: Vec<BreakerEvent>,
    started: Instant,
    /// The plan's working directory as text, converted once rather than per task.
    working_dir: String,
    remaining: Vec<u32>,
    slots: Vec<Vec<Option<Payload>>>,
    state: Vec<State>,
    ready: Vec<VecDeque<u32>>,
    /// The instance each node runs on (the plan's, unless rerouted).
    assigned: Vec<u32>,
    /// Instances that keep outputs by reference.
    by_reference: Vec<bool>,
    /// `Some(reason)` for instances found down during the run.
    down: Vec<Option<String>>,
    next_health_check: Vec<Instant>,
    reroutes: Vec<Reroute>,
    in_flight: Vec<usize>,
    in_flight_total: usize,
    per_backend_done: Vec<usize>,
    /// Attempts submitted, per instance (an abandoned one never completes).
    per_backend_attempts: Vec<usize>,
    /// Output bytes each instance sent to the host (not references).
    received_bytes: Vec<u64>,
    first_submit: Vec<Option<Instant>>,
    last_complete: Vec<Option<Instant>>,
    outputs: Vec<Option<Payload>>,
    failures: Vec<NodeFailure>,
    policy: FailurePolicy,
    stop: Option<Stop>,
    succeeded: usize,
    channel: mpsc::UnboundedSender<Completion>,
}

/// Runs the plan to completion or first failure.
pub async fn execute(plan: &Plan, options: &RunOptions) -> RunOutcome {
    let started = Instant::now();
    let (channel, mut completions) = mpsc::unbounded_channel();
    let backends = plan.instances.len();
    let mut run = Run {
        plan,
        options,
        first_task_id: NEXT_TASK_ID.fetch_add((plan.nodes.len() as u64 + 1) * IDS_PER_NODE, Ordering::Relaxed),
        attempt: vec![0; plan.nodes.len()],
        timed_out: vec![false; plan.nodes.len()],
        retained: HashMap::new(),
        timers: BinaryHeap::new(),
        pending_retries: 0,
        retries: 0,
        timeouts: 0,
        breakers: (0..backends).map(|_| Breaker::default()).collect(),
        breaker_events: Vec::new(),
        started,
        working_dir: plan.working_dir.to_string_lossy().into_owned(),
        remaining: plan.nodes.iter().map(|n| n.inputs.len() as u32).collect(),
        slots: (0..plan.nodes.len()).map(|_| Vec::new()).collect(),
        state: vec![State::Waiting; plan.nodes.len()],
        ready: vec![VecDeque::new(); backends],
        assigned: plan.nodes.iter().map(|n| n.backend).collect(),
        by_reference: by_reference::capable_instances(&plan.instances),
        down: vec![None; backends],
        next_health_check: vec![started; backends],
        reroutes: Vec::new(),
        in_flight: vec![0; backends],
        in_flight_total: 0,
        per_backend_done: vec![0; backends],
        per_backend_attempts: vec![0; backends],
        received_bytes: vec![0; backends],
        first_submit: vec![None; backends],
        last_complete: vec![None; backends],
        outputs: vec![None; plan.outputs.len()],
        failures: Vec::new(),
        policy: options.failure_policy,
        stop: None,
        succeeded: 0,
        channel,
    };
    for (i, node) in plan.nodes.iter().enumerate() {
        if node.inputs.is_empty() {
            run.make_ready(i as u32);
        }
    }

    let mut progress: Option<ProgressBar> = None;
    let mut housekeeping = Instant::now() + HOUSEKEEPING_INTERVAL;
    let mut drain_deadline: Option<Instant> = None;
    let mut abandoned = 0;
    let mut interrupt = options.interrupt.clone();
    loop {
        run.fire_timers(Instant::now());
        if run.stop.is_none() {
            run.dispatch_all();
        }
        if run.in_flight_total == 0 && (run.pending_retries == 0 || run.stop.is_some()) {
            break;
        }
        let now = Instant::now();
        if now >= housekeeping {
            housekeeping = now + HOUSEKEEPING_INTERVAL;
            // Nodes finished per second of the whole run: indicatif's own
            // estimate reads the bar's late start as a burst.
            let rate = format!("{:.0} nodes/s", run.succeeded as f64 / started.elapsed().as_secs_f64().max(1e-3));
            if let Some(bar) = &progress {
                bar.set_message(rate);
                bar.set_position(run.succeeded as u64);
            } else if options.progress && started.elapsed() >= Duration::from_secs(1) {
                progress = Some(new_progress_bar(plan.nodes.len(), started.elapsed(), run.succeeded, rate));
            }
            if run.stop.is_none() && interrupt.as_ref().is_some_and(|i| *i.borrow()) {
                run.stop = Some(Stop::Interrupted);
            }
            run.cool_down_breakers(now);
            if drain_deadline.is_some_and(|d| now >= d) {
                abandoned = run.in_flight_total;
                tracing::warn!(
                    "{abandoned} task(s) did not stop within the cancellation grace period; abandoning them"
                );
                break;
            }
        }
        // Poll briefly before parking: a fast backend usually answers within
        // microseconds, and waking a parked thread costs tens of them here.
        let completion = match spin_for_completion(&mut completions) {
            Some(completion) => Some(completion),
            None => tokio::select! {
                completion = completions.recv() => completion,
                () = tokio::time::sleep_until(run.next_wake(housekeeping).into()) => None,
                () = interrupted(&mut interrupt), if run.stop.is_none() => {
                    run.stop = Some(Stop::Interrupted);
                    None
                }
            },
        };
        if let Some(completion) = completion {
            run.complete(completion);
            while let Ok(completion) = completions.try_recv() {
                run.complete(completion);
            }
        }
        if run.stop.is_some() && drain_deadline.is_none() {
            drain_deadline = Some(Instant::now() + options.cancel_grace);
            // Take what already finished first, so cancels go only to tasks still running.
            while let Ok(completion) = completions.try_recv() {
                run.complete(completion);
            }
            run.cancel_in_flight();
        }
    }
    if let Some(bar) = progress {
        bar.finish_and_clear();
    }
    run.into_outcome(started.elapsed(), abandoned)
}

/// Resolves once the interrupt flag is set (never without one).
async fn interrupted(interrupt: &mut Option<watch::Receiver<bool>>) {
    match interrupt {
        Some(flag) => {
            while !*flag.borrow_and_update() {
                if flag.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
        }
        None => std::future::pending().await,
    }
}

/// How often the loop updates the progress bar and checks the drain deadline.
const HOUSEKEEPING_INTERVAL: Duration = Duration::from_millis(100);

/// How long the engine polls for a completion before parking.
const SPIN_BEFORE_PARK: Duration = Duration::from_micros(50);

fn spin_for_completion(completions: &mut mpsc::UnboundedReceiver<Completion>) -> Option<Completion> {
    let start = Instant::now();
    loop {
        match completions.try_recv() {
            Ok(completion) => return Some(completion),
            Err(mpsc::error::TryRecvError::Empty) if start.elapsed() < SPIN_BEFORE_PARK => std::hint::spin_loop(),
            Err(_) => return None,
        }
    }
}

/// A bar for a run `elapsed` old (it appears only after a second), so its
/// clock shows the run's time, starting at what the run has done.
fn new_progress_bar(total: usize, elapsed: Duration, done: usize, rate: String) -> ProgressBar {
    let bar = ProgressBar::new(total as u64).with_elapsed(elapsed).with_position(done as u64).with_message(rate);
    if let Ok(style) =
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} nodes ({msg})")
    {
        bar.set_style(style);
    }
    bar
}

impl Run<'_> {
    /// Queues a node on its instance, or on another one when that is down.
    fn make_ready(&mut self, node: u32) {
        if self.state[node as usize] == State::Skipped {
            return;
        }
        let backend = self.assigned[node as usize] as usize;
        if self.down[backend].is_none() {
            self.ready[backend].push_back(node);
        } else {
            self.reroute(node);
        }
    }

    fn reroute(&mut self, node: u32) {
        let i = node as usize;
        let from = self.assigned[i] as usize;
        let planned = &self.plan.nodes[i];
        let reason = self.down[from].clone().unwrap_or_default();
        if planned.pinned {
            let message = format!(
                "its backend `{}` is down ({reason}) and the node is pinned to it, so it is not moved elsewhere",
                self.plan.instances[from].name
            );
            return self.fail(i, "infrastructure", message);
        }
        let resources = planned.resources().cloned().unwrap_or_default();
        match crate::plan::alternative(&self.plan.instances, &self.down, &self.plan.requirements(i), &resources) {
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
            }
            Err(reasons) => {
                let message = format!("no healthy backend can take it: {}", reasons.join("; "));
                self.fail(i, "infrastructure", message);
            }
        }
    }

    /// A breaker whose cool-down ended lets its instance take work again
    /// (half-open: the next infrastructure failure reopens it).
    fn cool_down_breakers(&mut self, now: Instant) {
        for backend in 0..self.breakers.len() {
            if self.breakers[backend].cooled_down(now) {
                let name = self.plan.instances[backend].name.clone();
                tracing::info!("backend `{name}`: circuit breaker half-open; trying it again");
                self.breaker_events.push(BreakerEvent {
                    instance: name,
                    at_secs: now.duration_since(self.started).as_secs_f64(),
                    event: "half-open".into(),
                });
                self.down[backend] = None;
            }
        }
    }

    /// Reads the health of instances with queued nodes (at most every 100 ms
    /// each) and moves the queue of any that is down.
    fn check_health(&mut self, now: Instant) {
        for backend in 0..self.ready.len() {
            if self.ready[backend].is_empty() || self.down[backend].is_some() || now < self.next_health_check[backend] {
                continue;
            }
            self.next_health_check[backend] = now + HOUSEKEEPING_INTERVAL;
            let health = self.plan.instances[backend].backend.health();
            if health.status == HealthStatus::DOWN {
                let name = &self.plan.instances[backend].name;
                tracing::warn!("backend `{name}` is down ({}); moving its queued nodes", health.message);
                self.down[backend] = Some(format!("down: {}", health.message));
                for node in std::mem::take(&mut self.ready[backend]) {
                    self.reroute(node);
                }
            }
        }
    }

    fn dispatch_all(&mut self) {
        self.check_health(Instant::now());
        if self.stop.is_some() {
            return;
        }
        for backend in 0..self.ready.len() {
            let limit = self.plan.instances[backend].max_in_flight;
            while self.in_flight[backend] < limit {
                let Some(node) = self.ready[backend].pop_front() else { break };
                self.submit(node);
            }
        }
    }

    /// Task id of `node`'s attempt `attempt` (1-based).
    fn task_id(&self, node: usize, attempt: u8) -> u64 {
        self.first_task_id + node as u64 * IDS_PER_NODE + u64::from(attempt)
    }

    fn retry_policy(&self, node: usize) -> RetryPolicy {
        self.plan.nodes[node].retry().map_or(self.options.retry, |r| r.apply(self.options.retry))
    }

    /// When the loop must wake at the latest: housekeeping or the next timer.
    fn next_wake(&self, housekeeping: Instant) -> Instant {
        self.timers.peek().map_or(housekeeping, |Reverse((at, _))| (*at).min(housekeeping))
    }

    fn fire_timers(&mut self, now: Instant) {
        while let Some(&Reverse((at, kind))) = self.timers.peek() {
            if at > now {
                break;
            }
            self.timers.pop();
            match kind {
                TimerKind::Retry(node) => {
                    self.pending_retries -= 1;
                    if self.stop.is_some() {
                        self.state[node as usize] = State::Cancelled;
                    } else {
                        self.make_ready(node);
                    }
                }
                TimerKind::Cancel(node, attempt) => {
                    let i = node as usize;
                    if self.state[i] == State::Running && self.attempt[i] == attempt {
                        self.timed_out[i] = true;
                        let backend = self.assigned[i] as usize;
                        self.plan.instances[backend].backend.cancel(self.task_id(i, attempt));
                        self.timers
                            .push(Reverse((now + self.options.timeout.grace, TimerKind::Abandon(node, attempt))));
                    }
                }
                TimerKind::Abandon(node, attempt) => {
                    let i = node as usize;
                    if self.state[i] == State::Running && self.attempt[i] == attempt {
                        let backend = self.assigned[i] as usize;
                        self.in_flight[backend] -= 1;
                        self.in_flight_total -= 1;
                        let grace = self.options.timeout.grace.as_secs_f64();
                        let message = format!(
                            "timed out: no result {grace}s after its deadline, even after a cancel; abandoned (a late result is ignored)"
                        );
                        self.attempt_failed(i, backend, "timed-out", message);
                    }
                }
            }
        }
    }

    /// One attempt failed: count it against the instance's breaker, then
    /// retry (after a backoff) or fail the node, per its retry policy.
    fn attempt_failed(&mut self, node: usize, backend: usize, kind: &str, message: String) {
        let now = Instant::now();
        if is_infrastructure(kind) && self.breakers[backend].record_failure(now, &self.options.breaker) {
            let name = self.plan.instances[backend].name.clone();
            let reason = format!(
                "circuit breaker open after {} infrastructure failures within {:.0}s",
                self.options.breaker.failures,
                self.options.breaker.window.as_secs_f64()
            );
            tracing::warn!("backend `{name}`: {reason}; new work goes to other capable instances");
            self.breaker_events.push(BreakerEvent {
                instance: name,
                at_secs: now.duration_since(self.started).as_secs_f64(),
                event: "opened".into(),
            });
            self.down[backend] = Some(reason);
            for queued in std::mem::take(&mut self.ready[backend]) {
                self.reroute(queued);
            }
        }
        let policy = self.retry_policy(node);
        let attempt = self.attempt[node];
        if self.stop.is_none() && policy.allows_another(kind, attempt) {
            let delay = policy.delay(attempt, self.task_id(node, attempt).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 11);
            tracing::warn!(
                node = %self.plan.nodes[node].id,
                "attempt {attempt} failed ({kind}): {message}; retrying in {:.2}s",
                delay.as_secs_f64()
            );
            self.state[node] = State::Waiting;
            if let Some(inputs) = self.retained.remove(&(node as u32)) {
                self.slots[node] = inputs;
            }
            self.retries += 1;
            self.pending_retries += 1;
            self.timers.push(Reverse((now + delay, TimerKind::Retry(node as u32))));
        } else {
            self.retained.remove(&(node as u32));
            let message = if attempt > 1 { format!("{message} (after {attempt} attempts)") } else { message };
            self.fail(node, kind, message);
        }
    }

    fn submit(&mut self, node: u32) {
        let planned = &self.plan.nodes[node as usize];
        let node_type = &self.plan.types[planned.type_index as usize];
        let backend = self.assigned[node as usize] as usize;
        let slots = std::mem::take(&mut self.slots[node as usize]);
        // Keep a copy for a retry, unless this attempt is the last possible one.
        let policy = self.retry_policy(node as usize);
        let attempt = self.attempt[node as usize] + 1;
        if !slots.is_empty() && attempt < policy.node_attempts.max(policy.infrastructure_attempts).min(MAX_ATTEMPTS) {
            self.retained.insert(node, slots.clone());
        }
        let inputs: RVec<Payload> = slots.into_iter().flatten().collect();
        self.attempt[node as usize] = attempt;
        self.timed_out[node as usize] = false;
        let timeout = (planned.timeout_ms > 0)
            .then(|| Duration::from_millis(planned.timeout_ms))
            .or(self.options.timeout.default);
        if let Some(timeout) = timeout {
            self.timers.push(Reverse((Instant::now() + timeout, TimerKind::Cancel(node, attempt))));
        }
        let task = NodeTask {
            task_id: self.task_id(node as usize, attempt),
            attempt: u32::from(attempt),
            node_id: planned.id.as_str().into(),
            node_type: node_type.name.into(),
            node_version: node_type.version.into(),
            settings: planned.settings.as_str().into(),
            inputs,
            resources: planned.resources().cloned().unwrap_or_default(),
            timeout_ms: timeout.map_or(0, |t| t.as_millis() as u64),
            working_dir: self.working_dir.as_str().into(),
            compute: node_type.compute,
            extensions: planned
                .placement()
                .cloned()
                .into_iter()
                .chain(self.by_reference_request(node as usize, backend))
                .collect(),
        };
        self.state[node as usize] = State::Running;
        self.in_flight[backend] += 1;
        self.in_flight_total += 1;
        self.first_submit[backend].get_or_insert_with(Instant::now);
        self.per_backend_attempts[backend] += 1;
        let sink = sink::completion_sink(node, self.task_id(node as usize, attempt), self.channel.clone());
        self.plan.instances[backend].backend.submit(task, sink);
    }

    fn complete(&mut self, completion: Completion) {
        let node = completion.node as usize;
        if self.state[node] != State::Running || completion.task_id != self.task_id(node, self.attempt[node]) {
            // An abandoned attempt answering late, or a duplicate: delivered once, never twice.
            tracing::warn!(node = %self.plan.nodes[node].id, task = completion.task_id, "ignoring a late or duplicate result");
            return;
        }
        let backend = self.assigned[node] as usize;
        self.in_flight[backend] -= 1;
        self.in_flight_total -= 1;
        self.per_backend_done[backend] += 1;
        self.last_complete[backend] = Some(Instant::now());
        if let Ok(outputs) = &completion.result {
            self.received_bytes[backend] += outputs.iter().map(|p| p.data.len() as u64).sum::<u64>();
        }
        let result = match completion.result {
            // Cancelled because of its deadline: a timeout, whatever the backend called it.
            Err(_) if self.timed_out[node] => {
                self.timeouts += 1;
                let secs = self.plan.nodes[node].timeout_ms as f64 / 1000.0;
                let limit = if secs > 0.0 { format!("{secs}s") } else { "the default timeout".into() };
                Err(backplane_plugin_api::PluginError::timed_out(format!("exceeded {limit}; cancelled")))
            }
            other => other,
        };
        match result {
            // While the run is being cancelled, a node that still finishes feeds
            // no other node, but its workflow outputs are kept.
            Ok(outputs) => match self.deliver(node, outputs, self.stop.is_none()) {
                Ok(()) => {
                    self.state[node] = State::Succeeded;
                    self.succeeded += 1;
                    self.retained.remove(&(node as u32));
                    self.breakers[backend].record_success();
                }
                Err(message) => self.fail(node, "node-failed", message),
            },
            Err(error) if self.stop.is_some() && describe(&error) == "cancelled" => {
                self.state[node] = State::Cancelled;
            }
            // Failing while the run stops is still a failure to list (not retried).
            Err(error) if self.stop.is_some() => self.fail(node, describe(&error), error_text(&error)),
            Err(error) => self.attempt_failed(node, backend, describe(&error), error_text(&error)),
        }
    }

    fn fail(&mut self, node: usize, kind: &str, message: String) {
        self.state[node] = State::Failed;
        let planned = &self.plan.nodes[node];
        let failure = NodeFailure {
            node: planned.id.clone(),
            node_type: self.plan.types[planned.type_index as usize].name.to_owned(),
            backend: self.plan.instances[self.assigned[node] as usize].name.clone(),
            kind: kind.to_owned(),
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
                if let Target::Node { node: target, .. } = consumer.target
                    && self.state[target as usize] == State::Waiting
                {
                    self.state[target as usize] = State::Skipped;
                    stack.push(target as usize);
                }
            }
        }
    }

    fn cancel_in_flight(&mut self) {
        for (i, state) in self.state.iter().enumerate() {
            if *state == State::Running {
                let backend = self.assigned[i] as usize;
                self.plan.instances[backend].backend.cancel(self.task_id(i, self.attempt[i]));
            }
        }
    }

    /// Moves a node's outputs into its consumers' input slots (or, with
    /// `to_nodes` false, only into workflow outputs). Checks every needed port
    /// first, so a node's outputs are delivered all or not at all.
    fn deliver(&mut self, node: usize, outputs: RVec<Payload>, to_nodes: bool) -> Result<(), String> {
        let mut outputs = outputs.into_vec();
        let consumers = &self.plan.nodes[node].consumers;
        let wanted = |c: &&crate::plan::Consumer| to_nodes || matches!(c.target, Target::Output(_));
        if let Some(missing) = consumers.iter().filter(wanted).find(|c| !outputs.iter().any(|p| p.port == c.port)) {
            return Err(format!("the node produced no `{}` output, which its consumers need", missing.port));
        }
        for (c, consumer) in consumers.iter().enumerate() {
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

    fn into_outcome(self, elapsed: Duration, abandoned: usize) -> RunOutcome {
        let count = |s: State| self.state.iter().filter(|&&x| x == s).count();
        let mut planned = vec![0usize; self.plan.instances.len()];
        for node in &self.plan.nodes {
            planned[node.backend as usize] += 1;
        }
        // A node counts once, on the instance its last attempt ran on.
        let mut finished = vec![0usize; self.plan.instances.len()];
        for (node, state) in self.state.iter().enumerate() {
            if matches!(state, State::Succeeded | State::Failed | State::Cancelled) && self.attempt[node] > 0 {
                finished[self.assigned[node] as usize] += 1;
            }
        }
        let backends = self
            .plan
            .instances
            .iter()
            .enumerate()
            .filter(|&(i, _)| planned[i] > 0 || self.per_backend_done[i] > 0)
            .map(|(i, instance)| BackendSummary {
                instance: instance.name.clone(),
                factory: instance.factory.clone(),
                nodes: finished[i],
                attempts: self.per_backend_attempts[i],
                received_bytes: self.received_bytes[i],
                active: match (self.first_submit[i], self.last_complete[i]) {
                    (Some(a), Some(b)) => b.saturating_duration_since(a),
                    _ => Duration::ZERO,
                },
            })
            .collect();
        let report = RunReport {
            workflow: self.plan.name.clone(),
            nodes: self.plan.nodes.len(),
            succeeded: self.succeeded,
            failed: count(State::Failed),
            cancelled: count(State::Cancelled),
            not_started: count(State::Waiting),
            abandoned,
            elapsed,
            backends,
            rerouted: self.reroutes,
            skipped: count(State::Skipped),
            retries: self.retries,
            timeouts: self.timeouts,
            breakers: self.breaker_events,
            interrupted: self.stop == Some(Stop::Interrupted),
            failure: self.failures.first().cloned(),
            failures: self.failures,
        };
        RunOutcome { report, outputs: self.outputs }
    }
}

/// The boundary error's own text (its `Display`, which for variants newer
/// than this host comes from the plugin).
fn error_text(error: &PluginError_NE) -> String {
    error.to_string()
}
