//! `backplane bench --observers`: what watching a run costs the engine. The
//! wide DAG runs bare and with everything `run` can attach (the run
//! record's collector, a TSV and a Chrome trace, Prometheus metrics into a
//! real recorder), alternately in one process, best of `repeat` each.

use super::{BenchReport, runtime, synthetic_plan};
use crate::cli::observers::{ObserveArgs, RunObservers};
use backplane_host::{
    Host,
    engine::{self, RunOptions},
    observe::{self, metrics::MetricsObserver},
};
use serde::Serialize;
use std::{fmt::Write, time::Instant};

#[derive(Debug, Clone, Serialize)]
pub struct ObserverBenchResults {
    pub nodes: usize,
    pub bare_nodes_per_sec: f64,
    /// The engine's own time with every observer attached.
    pub observed_nodes_per_sec: f64,
    /// Observed engine time over bare engine time (1.10 = 10% slower).
    pub observed_to_bare: f64,
    /// After the engine ended: until the observers had seen every event
    /// and written their files.
    pub observers_finish_secs: f64,
    /// Events the engine sent per node.
    pub events_per_node: f64,
}

pub fn run(host: &Host, nodes: usize, repeat: usize) -> Result<ObserverBenchResults, String> {
    let plan = synthetic_plan(host, nodes, false)?;
    let rt = runtime()?;
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    // A real recorder, as `--metrics-addr` installs (without its listener).
    let _ = metrics_exporter_prometheus::PrometheusBuilder::new().install_recorder();
    let args = ObserveArgs {
        trace: Some(dir.path().join("trace.tsv")),
        trace_json: Some(dir.path().join("trace.json")),
        ..ObserveArgs::default()
    };
    let (mut bare, mut observed, mut finish, mut events) = (f64::INFINITY, f64::INFINITY, f64::INFINITY, 0);
    for _ in 0..repeat {
        let start = Instant::now();
        let outcome = rt.block_on(engine::execute(&plan, &RunOptions::default()));
        if !outcome.report.success() {
            return Err(format!("benchmark run failed: {:?}", outcome.report.failure));
        }
        bare = bare.min(start.elapsed().as_secs_f64());

        let mut observers = RunObservers::new(&args, false).map_err(|_| "cannot attach the observers".to_owned())?;
        let mut list = observers.take();
        list.push(Box::new(MetricsObserver::new()));
        let counter = EventCounter::default();
        let count = counter.0.clone();
        list.push(Box::new(counter));
        let mut engine_secs = 0.0;
        let start = Instant::now();
        let (outcome, problems) = observe::observe(
            &plan,
            list,
            |events| {
                let options = RunOptions { events: Some(events), ..RunOptions::default() };
                let engine_start = Instant::now();
                let outcome = rt.block_on(engine::execute(&plan, &options));
                engine_secs = engine_start.elapsed().as_secs_f64();
                outcome
            },
            |outcome| &outcome.report,
        );
        let total = start.elapsed().as_secs_f64();
        if !outcome.report.success() || !problems.is_empty() {
            return Err(format!("observed run failed: {:?} {problems:?}", outcome.report.failure));
        }
        if observers.observed().timeline.attempts.len() != nodes {
            return Err("the record's collector missed attempts".into());
        }
        observed = observed.min(engine_secs);
        finish = finish.min(total - engine_secs);
        events = count.load(std::sync::atomic::Ordering::Relaxed);
    }
    Ok(ObserverBenchResults {
        nodes,
        bare_nodes_per_sec: nodes as f64 / bare,
        observed_nodes_per_sec: nodes as f64 / observed,
        observed_to_bare: observed / bare,
        observers_finish_secs: finish,
        events_per_node: events as f64 / nodes as f64,
    })
}

/// Counts the events of a run (one more observer, as cheap as they come).
#[derive(Default)]
struct EventCounter(std::sync::Arc<std::sync::atomic::AtomicUsize>);

impl observe::RunObserver for EventCounter {
    fn event(&mut self, _plan: &backplane_host::plan::Plan, event: &observe::RunEvent) {
        if matches!(event, observe::RunEvent::RunStarted { .. }) {
            self.0.store(0, std::sync::atomic::Ordering::Relaxed);
        }
        self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

impl BenchReport for ObserverBenchResults {
    fn to_markdown(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "| measurement | value |\n|---|---|");
        let _ =
            writeln!(out, "| wide DAG, bare engine | {:.0} nodes/s ({} nodes) |", self.bare_nodes_per_sec, self.nodes);
        let _ = writeln!(
            out,
            "| wide DAG, with record collector + TSV + Chrome trace + metrics | {:.0} nodes/s |",
            self.observed_nodes_per_sec
        );
        let _ = writeln!(out, "| observed / bare engine time | {:.3} |", self.observed_to_bare);
        let _ = writeln!(out, "| events per node | {:.1} |", self.events_per_node);
        let _ = writeln!(out, "| observers done after the engine | {:.3} s |", self.observers_finish_secs);
        out
    }
}
