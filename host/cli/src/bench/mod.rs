//! `backplane bench`: engine throughput and latency through the real local
//! backend dylib, with the bare thread round trip measured in the same run so
//! ratios hold on a noisy machine.

use backplane_host::{
    Host,
    diagnostic::SourceFile,
    engine::{self, RunOptions},
    plan::{self, Plan},
    workflow::Workflow,
};
use serde::Serialize;
use std::{fmt::Write, sync::Arc, time::Instant};

pub mod cache;
pub mod observers;
pub mod ray;
pub mod streams;
pub mod validation;
pub mod workers;

/// What every benchmark prints: its `--json` keys (kept stable: others
/// read them) and a Markdown table for BENCHMARKS.md.
pub trait BenchReport: Serialize {
    fn to_markdown(&self) -> String;
}

pub struct BenchSettings {
    pub wide: usize,
    pub chain: usize,
    pub round_trips: usize,
    pub large: usize,
    pub repeat: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct BenchResults {
    pub cpus: usize,
    pub backend: String,
    pub wide_nodes: usize,
    pub wide_nodes_per_sec: f64,
    pub chain_nodes: usize,
    pub chain_us_per_node: f64,
    /// Both sides parked between messages.
    pub baseline_parked_us: f64,
    /// Both sides polling: the floor on a busy machine.
    pub baseline_spinning_us: f64,
    pub chain_to_parked_baseline: f64,
    pub chain_to_spinning_baseline: f64,
    pub parse_plan_nodes_per_sec: f64,
    pub large_nodes: usize,
    pub large_plan_bytes_per_node: f64,
    pub large_peak_bytes_per_node: f64,
    pub large_nodes_per_sec: f64,
}

pub fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())
}

/// A wide (independent) or chained DAG of `std.noop` nodes on the default
/// instance, planned by the real front end (TOML text, parse, validate, route).
pub fn synthetic_plan(host: &Host, nodes: usize, chained: bool) -> Result<Plan, String> {
    host.nodes
        .get("std.noop")
        .ok_or("the `std.noop` node type is not loaded (is the std-nodes plugin on the plugin path?)")?;
    let text = workflow_text(nodes, chained);
    let workflow = Workflow::parse(SourceFile::new(if chained { "chain.toml" } else { "wide.toml" }, text))
        .map_err(|d| d.to_string())?;
    let plan =
        plan::build(&workflow, &host.nodes, &host.backends, &[], Default::default()).map_err(|d| d.to_string())?;
    drop(workflow);
    // Give the parser's freed memory back, so the plan's own size is what
    // the resident set shows.
    // SAFETY: a plain glibc call with no pointers.
    unsafe { libc::malloc_trim(0) };
    Ok(plan)
}

/// [`synthetic_plan`] with every node on `instance` instead (one that the
/// benchmark created apart from the config).
pub fn synthetic_plan_on(
    host: &Host,
    instance: Arc<backplane_host::registry::BackendInstance>,
    nodes: usize,
    chained: bool,
) -> Result<Plan, String> {
    let mut plan = synthetic_plan(host, nodes, chained)?;
    plan.run_everything_on(instance);
    Ok(plan)
}

/// Best (shortest) time of `repeat` runs of `plan`, in seconds.
pub fn time_plan(plan: &Plan, repeat: usize) -> Result<f64, String> {
    let rt = runtime()?;
    let mut best = f64::INFINITY;
    for _ in 0..repeat {
        let start = Instant::now();
        let outcome = rt.block_on(engine::execute(plan, &RunOptions::default()));
        let secs = start.elapsed().as_secs_f64();
        if !outcome.report.success() {
            return Err(format!("benchmark run failed: {:?}", outcome.report.failure));
        }
        best = best.min(secs);
    }
    Ok(best)
}

/// Mean microseconds for a tokio task to hand a job to a std thread and get
/// the answer back on a oneshot: the floor under any in-process backend.
/// With `spin`, both sides poll instead of parking (the busy-machine floor);
/// without, both park and pay a thread wake-up each way.
pub fn baseline_round_trip(round_trips: usize, repeat: usize, spin: bool) -> Result<f64, String> {
    use tokio::sync::oneshot;
    let rt = runtime()?;
    let (jobs, receiver) = crossbeam_channel::unbounded::<(u64, oneshot::Sender<u64>)>();
    let worker = std::thread::spawn(move || {
        loop {
            let job = if spin {
                match receiver.try_recv() {
                    Ok(job) => job,
                    Err(crossbeam_channel::TryRecvError::Empty) => {
                        std::hint::spin_loop();
                        continue;
                    }
                    Err(crossbeam_channel::TryRecvError::Disconnected) => break,
                }
            } else {
                match receiver.recv() {
                    Ok(job) => job,
                    Err(_) => break,
                }
            };
            let _ = job.1.send(job.0 + 1);
        }
    });
    let mut best = f64::INFINITY;
    for _ in 0..repeat {
        let secs = rt.block_on(async {
            let start = Instant::now();
            for i in 0..round_trips as u64 {
                let (tx, mut rx) = oneshot::channel();
                jobs.send((i, tx)).expect("worker alive");
                let answer = if spin {
                    loop {
                        match rx.try_recv() {
                            Ok(answer) => break answer,
                            Err(oneshot::error::TryRecvError::Empty) => std::hint::spin_loop(),
                            Err(e) => panic!("worker dropped the reply: {e}"),
                        }
                    }
                } else {
                    rx.await.expect("worker replies")
                };
                assert_eq!(answer, i + 1);
            }
            start.elapsed().as_secs_f64()
        });
        best = best.min(secs);
    }
    drop(jobs);
    let _ = worker.join();
    Ok(best / round_trips as f64 * 1e6)
}

fn proc_status_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// `nodes` `std.noop` nodes, each fed by the one before when `chained`.
fn workflow_text(nodes: usize, chained: bool) -> String {
    let mut text = String::with_capacity(nodes * 72);
    for i in 0..nodes {
        let _ = writeln!(text, "[[node]]\nid = \"n{i}\"\ntype = \"std.noop\"");
        if chained && i > 0 {
            let _ = writeln!(text, "inputs = {{ in = \"n{}.out\" }}", i - 1);
        }
    }
    text
}

pub fn run(host: &Host, settings: &BenchSettings) -> Result<BenchResults, String> {
    let backend = host.backends.default_instance().ok_or("no backend instance is configured")?;
    let backend_desc =
        format!("{} ({}, {} threads)", backend.name, backend.factory, backend.capabilities().max_concurrency);

    let wide = synthetic_plan(host, settings.wide, false)?;
    let wide_secs = time_plan(&wide, settings.repeat)?;
    drop(wide);
    let chain = synthetic_plan(host, settings.chain, true)?;
    let chain_secs = time_plan(&chain, settings.repeat)?;
    drop(chain);
    let parked_us = baseline_round_trip(settings.round_trips, settings.repeat, false)?;
    let spinning_us = baseline_round_trip(settings.round_trips, settings.repeat, true)?;
    let chain_us = chain_secs / settings.chain as f64 * 1e6;

    // The real front end: TOML text -> workflow -> validated, routed plan.
    let text = workflow_text(settings.wide, false);
    let start = Instant::now();
    let workflow = Workflow::parse(SourceFile::new("bench.toml", text)).map_err(|d| d.to_string())?;
    let parsed =
        plan::build(&workflow, &host.nodes, &host.backends, &[], Default::default()).map_err(|d| d.to_string())?;
    let parse_plan_secs = start.elapsed().as_secs_f64();
    drop((parsed, workflow));

    let (mut plan_bytes, mut peak_bytes, mut large_rate) = (0.0, 0.0, 0.0);
    if settings.large > 0 {
        let before = proc_status_kib("VmRSS:").unwrap_or(0);
        let large = synthetic_plan(host, settings.large, false)?;
        let after_plan = proc_status_kib("VmRSS:").unwrap_or(0);
        // Reset the peak so it measures this run only (Linux: clear_refs 5).
        let _ = std::fs::write("/proc/self/clear_refs", "5");
        let secs = time_plan(&large, 1)?;
        let peak = proc_status_kib("VmHWM:").unwrap_or(0);
        let n = settings.large as f64;
        plan_bytes = after_plan.saturating_sub(before) as f64 * 1024.0 / n;
        peak_bytes = peak.saturating_sub(before) as f64 * 1024.0 / n;
        large_rate = n / secs;
    }
    Ok(BenchResults {
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        backend: backend_desc,
        wide_nodes: settings.wide,
        wide_nodes_per_sec: settings.wide as f64 / wide_secs,
        chain_nodes: settings.chain,
        chain_us_per_node: chain_us,
        baseline_parked_us: parked_us,
        baseline_spinning_us: spinning_us,
        chain_to_parked_baseline: chain_us / parked_us,
        chain_to_spinning_baseline: chain_us / spinning_us,
        parse_plan_nodes_per_sec: settings.wide as f64 / parse_plan_secs,
        large_nodes: settings.large,
        large_plan_bytes_per_node: plan_bytes,
        large_peak_bytes_per_node: peak_bytes,
        large_nodes_per_sec: large_rate,
    })
}

impl BenchReport for BenchResults {
    fn to_markdown(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "Machine: {} CPUs; backend: {}\n", self.cpus, self.backend);
        let _ = writeln!(s, "| measurement | result | target |\n|---|---|---|");
        let _ = writeln!(
            s,
            "| wide DAG, {} independent `std.noop` nodes | {:.0} nodes/s | >= 300,000 nodes/s |",
            self.wide_nodes, self.wide_nodes_per_sec
        );
        let _ = writeln!(
            s,
            "| chain of {} dependent `std.noop` nodes | {:.2} us/node | <= 10x baseline |",
            self.chain_nodes, self.chain_us_per_node
        );
        let _ = writeln!(
            s,
            "| baseline: tokio task -> std thread -> oneshot, both parking | {:.2} us/round trip | |",
            self.baseline_parked_us
        );
        let _ = writeln!(s, "| baseline: the same, both polling | {:.2} us/round trip | |", self.baseline_spinning_us);
        let _ = writeln!(s, "| chain / parking baseline | {:.2}x | <= 10x |", self.chain_to_parked_baseline);
        let _ = writeln!(s, "| chain / polling baseline | {:.2}x | <= 10x |", self.chain_to_spinning_baseline);
        let _ = writeln!(
            s,
            "| parse + validate + route a {}-node workflow file | {:.0} nodes/s | |",
            self.wide_nodes, self.parse_plan_nodes_per_sec
        );
        if self.large_nodes > 0 {
            let _ = writeln!(
                s,
                "| {}-node wide DAG: plan memory | {:.0} bytes/node | |",
                self.large_nodes, self.large_plan_bytes_per_node
            );
            let _ = writeln!(
                s,
                "| {}-node wide DAG: peak memory while running | {:.0} bytes/node | <= 1024 bytes/node |",
                self.large_nodes, self.large_peak_bytes_per_node
            );
            let _ =
                writeln!(s, "| {}-node wide DAG: run | {:.0} nodes/s | |", self.large_nodes, self.large_nodes_per_sec);
        }
        s
    }
}
