//! The run's events as metrics, through the `metrics` facade: whatever
//! recorder the process installed (the binary's Prometheus exporter) gets
//! them; without one they cost nothing.
//!
//! Every series is labelled by backend `instance` (and its `backend` type);
//! durations are histograms in seconds, split at the backend's "started"
//! word into `queued` and `running`.

use super::{AttemptStatus, RunEvent, RunObserver};
use crate::{plan::Plan, report::BreakerTransition};
use metrics::{Counter, Gauge, Histogram, counter, gauge, histogram};

/// Names of the series, for the exporter's bucket settings and the docs.
pub mod names {
    pub const TASKS: &str = "backplane_tasks_total";
    pub const DISPATCHED: &str = "backplane_tasks_dispatched_total";
    pub const IN_FLIGHT: &str = "backplane_tasks_in_flight";
    pub const QUEUED: &str = "backplane_task_queued_seconds";
    pub const RUNNING: &str = "backplane_task_running_seconds";
    pub const TOTAL: &str = "backplane_task_total_seconds";
    pub const RETRIES: &str = "backplane_retries_total";
    pub const REROUTES: &str = "backplane_reroutes_total";
    pub const BREAKER_STATE: &str = "backplane_breaker_state";
    pub const BREAKER_TRANSITIONS: &str = "backplane_breaker_transitions_total";
    pub const CACHE_HITS: &str = "backplane_cache_hits_total";
    pub const CACHE_MISSES: &str = "backplane_cache_misses_total";
    pub const NODES: &str = "backplane_run_nodes";
    pub const NODES_DONE: &str = "backplane_run_nodes_done";
}

/// Histogram buckets for every `_seconds` series: 100 µs to an hour.
pub const SECONDS_BUCKETS: [f64; 18] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0, 120.0, 600.0,
    3600.0,
];

/// One instance's handles, registered once per run.
struct InstanceSeries {
    name: String,
    factory: String,
    dispatched: Counter,
    in_flight: Gauge,
    queued: Histogram,
    running: Histogram,
    total: Histogram,
    retries: Counter,
    breaker: Gauge,
}

/// Turns events into metrics.
#[derive(Default)]
pub struct MetricsObserver {
    instances: Vec<InstanceSeries>,
    /// By node: (dispatched, started) of its attempt in flight, in seconds.
    open: Vec<(f64, Option<f64>)>,
    done: Option<Gauge>,
    finished_nodes: f64,
}

impl MetricsObserver {
    pub fn new() -> Self {
        Self::default()
    }

    fn start(&mut self, plan: &Plan, nodes: usize) {
        self.instances = plan
            .instances
            .iter()
            .map(|i| {
                let labels = [("instance", i.name.clone()), ("backend", i.factory.clone())];
                let series = InstanceSeries {
                    name: i.name.clone(),
                    factory: i.factory.clone(),
                    dispatched: counter!(names::DISPATCHED, &labels),
                    in_flight: gauge!(names::IN_FLIGHT, &labels),
                    queued: histogram!(names::QUEUED, &labels),
                    running: histogram!(names::RUNNING, &labels),
                    total: histogram!(names::TOTAL, &labels),
                    retries: counter!(names::RETRIES, &labels),
                    breaker: gauge!(names::BREAKER_STATE, &labels),
                };
                series.in_flight.set(0.0);
                series
            })
            .collect();
        self.open = vec![(0.0, None); nodes];
        gauge!(names::NODES).set(nodes as f64);
        let done = gauge!(names::NODES_DONE);
        done.set(0.0);
        self.done = Some(done);
        self.finished_nodes = 0.0;
    }

    fn node_done(&mut self) {
        self.finished_nodes += 1.0;
        if let Some(done) = &self.done {
            done.set(self.finished_nodes);
        }
    }
}

impl RunObserver for MetricsObserver {
    fn event(&mut self, plan: &Plan, event: &RunEvent) {
        match event {
            RunEvent::RunStarted { nodes, .. } => self.start(plan, *nodes),
            RunEvent::Dispatched { node, instance, at, .. } => {
                let Some(series) = self.instances.get(*instance as usize) else { return };
                series.dispatched.increment(1);
                series.in_flight.increment(1.0);
                if let Some(open) = self.open.get_mut(*node as usize) {
                    *open = (at.as_secs_f64(), None);
                }
            }
            RunEvent::Started { node, at, .. } => {
                if let Some(open) = self.open.get_mut(*node as usize) {
                    open.1 = Some(at.as_secs_f64());
                }
            }
            RunEvent::Finished { node, instance, at, status, .. } => {
                let Some(series) = self.instances.get(*instance as usize) else { return };
                let (dispatched, started) = self.open.get(*node as usize).copied().unwrap_or_default();
                let end = at.as_secs_f64();
                let started = started.unwrap_or(dispatched);
                series.in_flight.decrement(1.0);
                series.queued.record(started - dispatched);
                series.running.record(end - started);
                series.total.record(end - dispatched);
                let kind = match status {
                    AttemptStatus::Succeeded => "none",
                    AttemptStatus::Failed { kind, .. } => kind.name(),
                };
                let labels = [
                    ("instance", series.name.clone()),
                    ("backend", series.factory.clone()),
                    ("outcome", status.name().to_owned()),
                    ("kind", kind.to_owned()),
                ];
                counter!(names::TASKS, &labels).increment(1);
                if status.succeeded() {
                    self.node_done();
                }
            }
            RunEvent::Retried { instance, .. } => {
                if let Some(series) = self.instances.get(*instance as usize) {
                    series.retries.increment(1);
                }
            }
            RunEvent::Rerouted { from, to, .. } => {
                let name = |i: &u32| plan.instances.get(*i as usize).map_or_else(String::new, |i| i.name.clone());
                counter!(names::REROUTES, "from" => name(from), "to" => name(to)).increment(1);
            }
            RunEvent::Breaker { instance, transition, .. } => {
                let Some(series) = self.instances.get(*instance as usize) else { return };
                // 0 closed, 1 half-open, 2 open.
                let (state, to) = match transition {
                    BreakerTransition::Opened => (2.0, "opened"),
                    BreakerTransition::HalfOpen => (1.0, "half-open"),
                    BreakerTransition::Closed => (0.0, "closed"),
                };
                series.breaker.set(state);
                let labels = [("instance", series.name.clone()), ("to", to.to_owned())];
                counter!(names::BREAKER_TRANSITIONS, &labels).increment(1);
            }
            RunEvent::CacheHit { node, .. } => {
                counter!(names::CACHE_HITS, "type" => node_type(plan, *node)).increment(1);
                self.node_done();
            }
            RunEvent::CacheMiss { node, .. } => {
                counter!(names::CACHE_MISSES, "type" => node_type(plan, *node)).increment(1);
            }
            _ => {}
        }
    }
}

fn node_type(plan: &Plan, node: u32) -> String {
    plan.nodes.get(node as usize).map_or_else(String::new, |n| plan.types[n.type_index as usize].name.to_owned())
}
