//! The observers `backplane run` attaches to a run: the progress bar, the
//! run record's collector, trace files and metrics, from its flags.

use super::progress;
use crate::Failure;
use backplane_host::{
    observe::{RunEvent, RunObserver, Timeline, metrics::MetricsObserver, trace::TraceWriter},
    plan::Plan,
    report::RunReport,
    runs::logs::AttemptLog,
};
use std::{
    path::PathBuf,
    sync::{Arc, Mutex},
};

/// `run`'s flags for reports, traces and metrics.
#[derive(clap::Args, Default)]
pub struct ObserveArgs {
    /// Write an HTML report of the run to FILE: a timeline, running tasks
    /// over time, per-backend statistics and the node table (one file, no
    /// external links). `backplane report RUN` writes one for a past run.
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    /// Write a TSV trace to FILE: one row per attempt (and per cache hit).
    #[arg(long, value_name = "FILE")]
    pub trace: Option<PathBuf>,
    /// Write the run in Chrome's trace-event format to FILE (open it in
    /// Perfetto or chrome://tracing).
    #[arg(long, value_name = "FILE")]
    pub trace_json: Option<PathBuf>,
    /// Serve Prometheus metrics at http://ADDR/metrics while the run goes
    /// on; a port alone binds 127.0.0.1.
    #[arg(long, value_name = "ADDR")]
    pub metrics_addr: Option<String>,
}

/// What the run record takes from the run's events.
#[derive(Default)]
pub struct Observed {
    pub timeline: Timeline,
    pub logs: Vec<AttemptLog>,
}

/// Collects [`Observed`] for the run record, which is written after the run.
struct RecordCollector {
    observed: Observed,
    out: Arc<Mutex<Option<Observed>>>,
}

impl RunObserver for RecordCollector {
    fn event(&mut self, _plan: &Plan, event: &RunEvent) {
        if let RunEvent::Logs { node, attempt, lines } = event {
            self.observed.logs.push(AttemptLog { node: *node, attempt: *attempt, lines: lines.clone() });
        }
        self.observed.timeline.record(event);
    }

    fn finish(&mut self, _plan: &Plan, _report: &RunReport) -> Result<(), String> {
        *self.out.lock().unwrap_or_else(|e| e.into_inner()) = Some(std::mem::take(&mut self.observed));
        Ok(())
    }
}

/// The observers of one run, and where the record's share arrives.
pub struct RunObservers {
    pub list: Vec<Box<dyn RunObserver>>,
    observed: Arc<Mutex<Option<Observed>>>,
}

impl RunObservers {
    /// Everything the flags ask for; the metrics endpoint starts serving now.
    pub fn new(args: &ObserveArgs, progress_bar: bool) -> Result<Self, Failure> {
        let observed = Arc::new(Mutex::new(None));
        let mut list: Vec<Box<dyn RunObserver>> =
            vec![Box::new(RecordCollector { observed: Observed::default(), out: observed.clone() })];
        if progress_bar {
            list.push(Box::new(progress::ProgressBar::new()));
        }
        if args.trace.is_some() || args.trace_json.is_some() {
            list.push(Box::new(TraceWriter::new(args.trace.clone(), args.trace_json.clone())));
        }
        if let Some(addr) = &args.metrics_addr {
            let bound = super::metrics::serve(addr)?;
            eprintln!("serving metrics at http://{bound}/metrics");
            list.push(Box::new(MetricsObserver::new()));
        }
        Ok(Self { list, observed })
    }

    /// Splits off the list to hand to the run; the rest waits for `observed`.
    pub fn take(&mut self) -> Vec<Box<dyn RunObserver>> {
        std::mem::take(&mut self.list)
    }

    /// What the record collector saw (empty if it never finished).
    pub fn observed(&self) -> Observed {
        self.observed.lock().unwrap_or_else(|e| e.into_inner()).take().unwrap_or_default()
    }
}
