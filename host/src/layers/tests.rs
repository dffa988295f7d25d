//! Each layer against an in-Rust backend whose tasks the test completes by
//! hand, so every step of a layer's state machine is seen without a run.

use super::*;
use crate::{
    policy::{BreakerPolicy, FailureKind, TimeoutCountsAs, TimeoutPolicy},
    registry::{BackendRegistry, InstanceSettings, Origin},
};
use backplane_plugin_api::{
    Capabilities, CapabilityFlags, CompletionSinkBox, HealthStatus, NodeTask, Payload, PluginError, PluginError_NE,
    abi_stable::std_types::{RString, RVec, Tuple2},
    backend_factory,
    prelude::BackendPlugin,
};
use std::{
    collections::HashMap,
    sync::{Arc, LazyLock, Mutex},
};
use tokio::sync::mpsc;

/// What the backend of one test saw; tests run in parallel under `cargo
/// test`, so each has its own, keyed by the instance config's `key`.
#[derive(Default)]
struct Seen {
    submitted: Vec<u64>,
    sinks: HashMap<u64, CompletionSinkBox>,
    cancelled: Vec<u64>,
}

static SEEN: LazyLock<Mutex<HashMap<String, Arc<Mutex<Seen>>>>> = LazyLock::new(Default::default);

/// Keeps every task until the test completes it.
struct HeldBackend {
    seen: Arc<Mutex<Seen>>,
    capabilities: Capabilities,
}

#[derive(serde::Deserialize)]
struct HeldConfig {
    key: String,
    max_concurrency: u32,
    cpus: f64,
    licences: f64,
    /// Reports itself as spread over machines (its capacity is per task).
    #[serde(default)]
    distributed: bool,
}

impl BackendPlugin for HeldBackend {
    const NAME: &'static str = "held";
    const VERSION: &'static str = "0.1.0";
    const DESCRIPTION: &'static str = "Holds every task until the test completes it";
    type Config = HeldConfig;

    fn capabilities() -> Capabilities {
        Capabilities::default()
    }
    fn create(config: HeldConfig) -> Result<Self, PluginError_NE> {
        let seen = SEEN.lock().unwrap().entry(config.key).or_default().clone();
        let mut capabilities = Capabilities { max_concurrency: config.max_concurrency, ..Capabilities::default() };
        if config.distributed {
            capabilities.flags = CapabilityFlags::DISTRIBUTED;
        }
        capabilities.capacity.cpus = config.cpus;
        if config.licences > 0.0 {
            capabilities.capacity.custom.push(Tuple2(RString::from("licence"), config.licences));
        }
        Ok(Self { seen, capabilities })
    }
    fn live_capabilities(&self) -> Capabilities {
        self.capabilities.clone()
    }
    fn submit(&self, task: NodeTask, sink: CompletionSinkBox) {
        let mut seen = self.seen.lock().unwrap();
        seen.submitted.push(task.task_id);
        seen.sinks.insert(task.task_id, sink);
    }
    fn cancel(&self, task_id: u64) {
        self.seen.lock().unwrap().cancelled.push(task_id);
    }
}

/// A held instance for test `key`, and what its backend sees.
fn instance(key: &str, max_concurrency: u32, cpus: f64, licences: f64) -> (Arc<BackendInstance>, Arc<Mutex<Seen>>) {
    let config =
        serde_json::json!({ "key": key, "max_concurrency": max_concurrency, "cpus": cpus, "licences": licences });
    instance_with(key, config)
}

/// A held instance created from `config`.
fn instance_with(key: &str, config: serde_json::Value) -> (Arc<BackendInstance>, Arc<Mutex<Seen>>) {
    let mut registry = BackendRegistry::default();
    registry.register_factory(backend_factory::<HeldBackend>(), Origin::code("tests")).unwrap();
    let settings = InstanceSettings {
        name: key.into(),
        factory: "held".into(),
        config,
        max_in_flight: None,
        tags: Vec::new(),
        capacity: Default::default(),
        derived_from: None,
    };
    let instance = registry.create_detached(settings).unwrap();
    let seen = SEEN.lock().unwrap()[key].clone();
    (instance, seen)
}

/// The engine's side: timers, channel and events.
struct Engine {
    timers: Timers,
    events: LayerEvents,
    sender: mpsc::UnboundedSender<Message>,
    receiver: mpsc::UnboundedReceiver<Message>,
    started: Instant,
    /// The run is stopping (a failure or Ctrl-C): cancels are the host's.
    stopping: bool,
}

impl Engine {
    fn new() -> Self {
        let (sender, receiver) = mpsc::unbounded_channel();
        Self {
            timers: Timers::default(),
            events: LayerEvents::default(),
            sender,
            receiver,
            started: Instant::now(),
            stopping: false,
        }
    }

    fn cx(&mut self, now: Instant) -> LayerContext<'_> {
        LayerContext {
            now,
            run_started: self.started,
            instance: 0,
            timers: &mut self.timers,
            completions: &self.sender,
            events: &mut self.events,
            stopping: self.stopping,
            health_changed: false,
        }
    }

    fn call<S: InstanceService>(&mut self, service: &mut S, request: &Request<'_>, now: Instant) {
        assert_eq!(service.poll_ready(request), Readiness::Ready);
        let task = NodeTask { task_id: request.task_id, ..NodeTask::default() };
        let sink = completion_sink(request.node, request.task_id, &[], Vec::new(), self.sender.clone());
        service.call(request, task, sink, &mut self.cx(now));
    }

    /// Fires every timer due at `at`; returns whether health changed.
    fn fire_until<S: InstanceService>(&mut self, service: &mut S, at: Instant) -> bool {
        let mut changed = false;
        while let Some(timer) = self.timers.pop_due(at) {
            let Timer::Layer { timer, .. } = timer else { panic!("only layer timers here") };
            let mut cx = self.cx(at);
            service.fire(timer, &mut cx);
            changed |= cx.health_changed;
        }
        changed
    }

    /// The next completion on the channel, passed through the stack.
    fn deliver<S: InstanceService>(&mut self, service: &mut S, now: Instant) -> Option<Completion> {
        let Message::Completion(mut completion) = self.receiver.try_recv().ok()? else {
            panic!("no stream items here")
        };
        service.completed(&mut completion, &mut self.cx(now));
        Some(completion)
    }
}

fn complete(seen: &Mutex<Seen>, task_id: u64, result: Result<Vec<Payload>, PluginError_NE>) {
    let sink = seen.lock().unwrap().sinks.remove(&task_id).expect("the task was submitted");
    sink.complete(result.map(RVec::from).into());
}

fn request(node: u32, task_id: u64, resources: &Resources, deadline: Option<Duration>) -> Request<'_> {
    Request { node, task_id, resources, deadline, beside: false }
}

const SECOND: Duration = Duration::from_secs(1);

#[test]
fn timeout_cancels_at_the_deadline_then_abandons_after_the_grace_period() {
    let (instance, seen) = instance("timeout-ladder", 0, 0.0, 0.0);
    let policy = TimeoutPolicy { grace: SECOND, ..TimeoutPolicy::default() };
    let mut timeout = Timeout::new(PluginBackend::new(instance), policy, 0);
    let mut engine = Engine::new();
    let t0 = Instant::now();
    let none = Resources::default();
    engine.call(&mut timeout, &request(7, 70, &none, Some(2 * SECOND)), t0);
    assert_eq!(engine.timers.next_due(), Some(t0 + 2 * SECOND));

    engine.fire_until(&mut timeout, t0 + SECOND);
    assert!(seen.lock().unwrap().cancelled.is_empty(), "cancelled before its deadline");
    engine.fire_until(&mut timeout, t0 + 2 * SECOND);
    assert_eq!(seen.lock().unwrap().cancelled, vec![70]);
    assert_eq!(engine.timers.next_due(), Some(t0 + 3 * SECOND), "abandoned one grace period later");

    engine.fire_until(&mut timeout, t0 + 3 * SECOND);
    let abandoned = engine.deliver(&mut timeout, t0 + 3 * SECOND).expect("the layer reports the lost attempt");
    assert_eq!((abandoned.node, abandoned.task_id, abandoned.lost), (7, 70, true));
    let error = abandoned.result.err().unwrap();
    assert_eq!(FailureKind::of(&error), FailureKind::TimedOut);
    assert!(error.to_string().contains("abandoned"), "{error}");
    assert_eq!(engine.events.timeouts, 1);
}

#[test]
fn timeout_turns_the_answer_to_its_cancel_into_a_timeout_and_leaves_a_success_alone() {
    let (instance, seen) = instance("timeout-answer", 0, 0.0, 0.0);
    let mut timeout = Timeout::new(PluginBackend::new(instance), TimeoutPolicy::default(), 0);
    let mut engine = Engine::new();
    let t0 = Instant::now();
    let none = Resources::default();
    engine.call(&mut timeout, &request(1, 10, &none, Some(SECOND)), t0);
    engine.call(&mut timeout, &request(2, 20, &none, Some(SECOND)), t0);
    engine.fire_until(&mut timeout, t0 + SECOND);
    complete(&seen, 10, Err(PluginError::cancelled()));
    complete(&seen, 20, Ok(vec![Payload::text("out", "in time, just".to_owned())]));

    let first = engine.deliver(&mut timeout, t0 + SECOND).unwrap();
    assert_eq!(first.result.err().unwrap().to_string(), "timed out: exceeded 1s; cancelled");
    assert!(!first.lost);
    assert!(engine.deliver(&mut timeout, t0 + SECOND).unwrap().result.is_ok());
    assert_eq!(engine.events.timeouts, 1);
    // Both completed: nothing is abandoned later.
    engine.fire_until(&mut timeout, t0 + 10 * SECOND);
    assert!(engine.receiver.try_recv().is_err());
}

#[test]
fn timeout_holds_a_task_with_a_deadline_while_the_instance_is_busy() {
    let (instance, seen) = instance("timeout-busy", 1, 0.0, 0.0);
    let mut timeout = Timeout::new(PluginBackend::new(instance), TimeoutPolicy::default(), 1);
    let mut engine = Engine::new();
    let t0 = Instant::now();
    let none = Resources::default();
    engine.call(&mut timeout, &request(1, 10, &none, None), t0);
    let timed = request(2, 20, &none, Some(SECOND));
    assert_eq!(timeout.poll_ready(&timed), Readiness::Wait, "its clock would run while it waits in the backend");
    assert_eq!(timeout.poll_ready(&request(3, 30, &none, None)), Readiness::Ready, "no deadline, no wait");

    complete(&seen, 10, Ok(Vec::new()));
    engine.deliver(&mut timeout, t0 + 5 * SECOND).unwrap();
    assert_eq!(timeout.poll_ready(&timed), Readiness::Ready);
    engine.call(&mut timeout, &timed, t0 + 5 * SECOND);
    assert_eq!(engine.timers.next_due(), Some(t0 + 6 * SECOND), "the deadline counts from the submit");
}

#[test]
fn breaker_opens_on_infrastructure_failures_reports_down_and_half_opens_after_the_cooldown() {
    let (instance, seen) = instance("breaker", 0, 0.0, 0.0);
    let policy = BreakerPolicy { failures: 2, window: 60 * SECOND, cooldown: 5 * SECOND };
    let inner = Timeout::new(PluginBackend::new(instance), TimeoutPolicy::default(), 0);
    let mut breaker = CircuitBreaker::new(inner, "breaker".into(), policy, TimeoutCountsAs::Node);
    let mut engine = Engine::new();
    let t0 = Instant::now();
    let none = Resources::default();
    // A node's own failure and a timeout are not the instance's fault.
    for (task, error) in [(1, PluginError::node_failed("bad input")), (2, PluginError::timed_out("slow"))] {
        engine.call(&mut breaker, &request(task as u32, task, &none, None), t0);
        complete(&seen, task, Err(error));
        engine.deliver(&mut breaker, t0);
    }
    assert_eq!(breaker.health().status, HealthStatus::UP);
    for task in [3, 4] {
        engine.call(&mut breaker, &request(task as u32, task, &none, None), t0);
        complete(&seen, task, Err(PluginError::infrastructure("connection lost")));
        engine.deliver(&mut breaker, t0);
    }
    let health = breaker.health();
    assert_eq!(health.status, HealthStatus::DOWN);
    assert!(health.message.contains("circuit breaker open after 2 infrastructure failures"), "{}", health.message);
    assert_eq!(engine.events.breakers.len(), 1);
    assert_eq!(engine.events.breakers[0].event, BreakerTransition::Opened);

    assert!(!engine.fire_until(&mut breaker, t0 + 4 * SECOND));
    assert!(engine.fire_until(&mut breaker, t0 + 5 * SECOND), "half-opening changes health");
    assert_eq!(breaker.health().status, HealthStatus::UP);
    assert_eq!(engine.events.breakers[1].event, BreakerTransition::HalfOpen);
    // Half-open: one more infrastructure failure reopens it.
    engine.call(&mut breaker, &request(5, 5, &none, None), t0 + 6 * SECOND);
    complete(&seen, 5, Err(PluginError::infrastructure("again")));
    engine.deliver(&mut breaker, t0 + 6 * SECOND);
    assert_eq!(breaker.health().status, HealthStatus::DOWN);
}

#[test]
fn admission_reserves_resources_while_tasks_run_and_keeps_the_in_flight_limit() {
    let (instance, seen) = instance("admission", 0, 4.0, 1.0);
    let capabilities = instance.capabilities();
    let mut admission = Admission::new(PluginBackend::new(instance), 3, &capabilities, Resources::default());
    let mut engine = Engine::new();
    let t0 = Instant::now();
    let four_cpus = Resources { cpus: 4.0, ..Resources::default() };
    let two_cpus = Resources { cpus: 2.0, ..Resources::default() };
    let licence = Resources { custom: vec![Tuple2(RString::from("licence"), 1.0)].into(), ..Resources::default() };
    let none = Resources::default();

    engine.call(&mut admission, &request(1, 10, &four_cpus, None), t0);
    assert_eq!(admission.poll_ready(&request(2, 20, &two_cpus, None)), Readiness::Wait, "the 4 cpus are taken");
    assert_eq!(admission.poll_ready(&request(3, 30, &none, None)), Readiness::Ready, "asking for nothing never waits");
    engine.call(&mut admission, &request(4, 40, &licence, None), t0);
    assert_eq!(admission.poll_ready(&request(5, 50, &licence, None)), Readiness::Wait, "one licence, in use");
    engine.call(&mut admission, &request(3, 30, &none, None), t0);
    assert_eq!(admission.poll_ready(&request(6, 60, &none, None)), Readiness::Wait, "three in flight is the limit");

    complete(&seen, 10, Ok(Vec::new()));
    engine.deliver(&mut admission, t0);
    assert_eq!(admission.poll_ready(&request(2, 20, &two_cpus, None)), Readiness::Ready, "released at completion");
    complete(&seen, 40, Err(PluginError::node_failed("a failure releases too")));
    engine.deliver(&mut admission, t0);
    assert_eq!(admission.poll_ready(&request(5, 50, &licence, None)), Readiness::Ready);
}

#[test]
fn admission_runs_a_task_larger_than_the_whole_instance_alone_rather_than_never() {
    let (instance, seen) = instance("admission-oversized", 0, 2.0, 0.0);
    let capabilities = instance.capabilities();
    let mut admission = Admission::new(PluginBackend::new(instance), 100, &capabilities, Resources::default());
    let mut engine = Engine::new();
    let t0 = Instant::now();
    let huge = Resources { cpus: 8.0, ..Resources::default() };
    let one = Resources { cpus: 1.0, ..Resources::default() };
    engine.call(&mut admission, &request(1, 10, &huge, None), t0);
    assert_eq!(admission.poll_ready(&request(2, 20, &one, None)), Readiness::Wait);
    complete(&seen, 10, Ok(Vec::new()));
    engine.deliver(&mut admission, t0);
    assert_eq!(admission.poll_ready(&request(2, 20, &one, None)), Readiness::Ready);
}

#[test]
fn layers_compose_in_the_engines_order_and_a_lost_attempt_counts_for_the_breaker() {
    let (instance, seen) = instance("stack", 0, 0.0, 0.0);
    let policy = RunPolicy {
        timeout: TimeoutPolicy { grace: SECOND, ..TimeoutPolicy::default() },
        breaker: BreakerPolicy { failures: 1, ..BreakerPolicy::default() },
        ..RunPolicy::default()
    };
    let mut stack = stack(instance, &policy);
    let mut engine = Engine::new();
    let t0 = Instant::now();
    let none = Resources::default();
    engine.call(&mut stack, &request(1, 10, &none, Some(SECOND)), t0);
    engine.fire_until(&mut stack, t0 + SECOND);
    engine.fire_until(&mut stack, t0 + 2 * SECOND);
    let lost = engine.deliver(&mut stack, t0 + 2 * SECOND).unwrap();
    assert!(lost.lost);
    assert_eq!(stack.health().status, HealthStatus::DOWN, "the backend lost a task: its breaker opened");
    // The late answer is the engine's to ignore; the backend still holds its sink.
    assert_eq!(seen.lock().unwrap().sinks.len(), 1);
}

#[test]
fn breaker_ignores_the_failures_of_tasks_the_host_cancels_while_stopping() {
    let (instance, seen) = instance("breaker-stop", 0, 0.0, 0.0);
    let policy = BreakerPolicy { failures: 1, ..BreakerPolicy::default() };
    let mut breaker = CircuitBreaker::new(PluginBackend::new(instance), "b".into(), policy, TimeoutCountsAs::Node);
    let mut engine = Engine::new();
    let t0 = Instant::now();
    let none = Resources::default();
    engine.call(&mut breaker, &request(1, 10, &none, None), t0);
    engine.stopping = true;
    complete(&seen, 10, Err(PluginError::cancelled()));
    engine.deliver(&mut breaker, t0);
    assert_eq!(breaker.health().status, HealthStatus::UP, "a stop's cancels are not the instance's failures");
    assert!(engine.events.breakers.is_empty());
    // The same cancel outside a stop is the backend's own doing.
    engine.stopping = false;
    engine.call(&mut breaker, &request(2, 20, &none, None), t0);
    complete(&seen, 20, Err(PluginError::cancelled()));
    engine.deliver(&mut breaker, t0);
    assert_eq!(breaker.health().status, HealthStatus::DOWN);
}

#[test]
fn admission_on_a_distributed_instance_limits_only_what_the_operator_declares() {
    // Its report (4 cpus) is what one task may use, not the cluster's total.
    let config =
        serde_json::json!({ "key": "spread", "max_concurrency": 0, "cpus": 4.0, "licences": 0.0, "distributed": true });
    let (instance, _seen) = instance_with("spread", config);
    let capabilities = instance.capabilities();
    let four = Resources { cpus: 4.0, ..Resources::default() };
    let mut free = Admission::new(PluginBackend::new(instance.clone()), 100, &capabilities, Resources::default());
    let mut engine = Engine::new();
    let t0 = Instant::now();
    engine.call(&mut free, &request(1, 10, &four, None), t0);
    assert_eq!(free.poll_ready(&request(2, 20, &four, None)), Readiness::Ready, "the backend places these itself");

    let declared = Resources { cpus: 6.0, ..Resources::default() };
    let mut limited = Admission::new(PluginBackend::new(instance), 100, &capabilities, declared);
    engine.call(&mut limited, &request(3, 30, &four, None), t0);
    assert_eq!(limited.poll_ready(&request(4, 40, &four, None)), Readiness::Wait, "6 declared cpus: one at a time");
}

#[test]
fn layers_size_themselves_by_the_live_capabilities_they_are_refreshed_with() {
    let (instance, _seen) = instance("refresh", 1, 1.0, 0.0);
    let capabilities = instance.capabilities();
    let timeout = Timeout::new(PluginBackend::new(instance), TimeoutPolicy::default(), 1);
    let mut admission = Admission::new(timeout, 100, &capabilities, Resources::default());
    let mut engine = Engine::new();
    let t0 = Instant::now();
    let one = Resources { cpus: 1.0, ..Resources::default() };
    engine.call(&mut admission, &request(1, 10, &one, None), t0);
    let timed = request(2, 20, &one, Some(SECOND));
    assert_eq!(admission.poll_ready(&timed), Readiness::Wait);
    // A second worker joined: two slots, two cpus.
    let grown =
        Capabilities { max_concurrency: 2, capacity: Resources { cpus: 2.0, ..Resources::default() }, ..capabilities };
    admission.refresh(&grown);
    assert_eq!(admission.poll_ready(&timed), Readiness::Ready);
}
