//! `backplane bench --cache`: the result cache on the wide DAG, side by side
//! in one run: no cache, every lookup a miss (each result stored), every
//! node a hit, and the time a resumed run takes to reach its first new task.

use super::{runtime, time_plan};
use backplane_host::{
    Host,
    cache::ResultCache,
    diagnostic::SourceFile,
    engine::{self, RunOptions},
    plan::{self, Plan},
    workflow::Workflow,
};
use serde::Serialize;
use std::{fmt::Write, path::Path, sync::Arc, time::Instant};

#[derive(Debug, Clone, Serialize)]
pub struct CacheBenchResults {
    pub nodes: usize,
    /// No cache.
    pub off_nodes_per_sec: f64,
    /// Every lookup a miss; every result stored and committed before the run counts as done.
    pub all_miss_nodes_per_sec: f64,
    pub all_miss_to_off: f64,
    /// Every node a hit, including opening the store (reading its index).
    pub cached_nodes_per_sec: f64,
    pub cached_open_secs: f64,
    /// A run whose first half was committed by an earlier (killed) run:
    /// from opening the cache to the first task submitted to a backend.
    pub resume_first_task_secs: f64,
    pub resume_hits: usize,
}

/// `nodes` independent `std.const` nodes, each with its own text, so each
/// has its own key (identical nodes would all share one entry).
fn distinct_plan(host: &Host, nodes: usize, first: usize) -> Result<Plan, String> {
    let mut text = String::with_capacity(nodes * 80);
    for i in first..first + nodes {
        let _ =
            writeln!(text, "[[node]]\nid = \"n{i}\"\ntype = \"std.const\"\nsettings = {{ text = \"node {i}\\n\" }}");
    }
    let workflow = Workflow::parse(SourceFile::new("cache-bench.toml", text)).map_err(|d| d.to_string())?;
    plan::build(&workflow, &host.nodes, &host.backends, &[], Default::default()).map_err(|d| d.to_string())
}

/// One run of `plan` with a cache at `dir`: seconds (open + run + commit) and the outcome's hits.
fn cached_run(plan: &Plan, dir: &Path) -> Result<(f64, f64, usize, Option<f64>), String> {
    let rt = runtime()?;
    let start = Instant::now();
    let cache = Arc::new(ResultCache::open(dir, "bench", "", None, None).map_err(|e| e.to_string())?);
    let opened = start.elapsed().as_secs_f64();
    let options = RunOptions { cache: Some(cache.clone()), record_nodes: true, ..RunOptions::default() };
    let outcome = rt.block_on(engine::execute(plan, &options));
    let report = cache.finish();
    let secs = start.elapsed().as_secs_f64();
    if !outcome.report.success() {
        return Err(format!("benchmark run failed: {:?}", outcome.report.failure));
    }
    if let Some(e) = report.error {
        return Err(format!("the cache failed: {e}"));
    }
    let first_task = outcome
        .nodes
        .ledger
        .as_ref()
        .and_then(|l| l.submitted.iter().copied().filter(|t| !t.is_nan()).reduce(f64::min))
        .map(|t| opened + t);
    Ok((secs, opened, outcome.report.cached, first_task))
}

pub fn run(host: &Host, nodes: usize, repeat: usize) -> Result<CacheBenchResults, String> {
    let plan = distinct_plan(host, nodes, 0)?;
    let off = time_plan(&plan, repeat)?;
    let (mut miss, mut hit, mut open) = (f64::INFINITY, f64::INFINITY, 0.0);
    for _ in 0..repeat {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let (secs, _, hits, _) = cached_run(&plan, dir.path())?;
        if hits != 0 {
            return Err(format!("a fresh cache gave {hits} hits"));
        }
        miss = miss.min(secs);
        let (secs, opened, hits, _) = cached_run(&plan, dir.path())?;
        if hits != nodes {
            return Err(format!("the rerun hit {hits} of {nodes} nodes"));
        }
        if secs < hit {
            hit = secs;
            open = opened;
        }
    }
    // The state a kill halfway leaves: the first half committed.
    let mut resume = f64::INFINITY;
    let mut resume_hits = 0;
    for _ in 0..repeat {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        cached_run(&distinct_plan(host, nodes / 2, 0)?, dir.path())?;
        let (_, _, hits, first) = cached_run(&plan, dir.path())?;
        resume_hits = hits;
        resume = resume.min(first.ok_or("the resumed run submitted nothing")?);
    }
    let n = nodes as f64;
    Ok(CacheBenchResults {
        nodes,
        off_nodes_per_sec: n / off,
        all_miss_nodes_per_sec: n / miss,
        all_miss_to_off: off / miss,
        cached_nodes_per_sec: n / hit,
        cached_open_secs: open,
        resume_first_task_secs: resume,
        resume_hits,
    })
}

impl super::BenchReport for CacheBenchResults {
    fn to_markdown(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "| measurement ({} independent `std.const` nodes, local backend) | result | target |\n|---|---|---|",
            self.nodes
        );
        let _ = writeln!(s, "| no cache | {:.0} nodes/s | |", self.off_nodes_per_sec);
        let _ = writeln!(
            s,
            "| cache on, every lookup a miss (all stored and committed) | {:.0} nodes/s ({:.2}x of no cache) | >= 0.5x |",
            self.all_miss_nodes_per_sec, self.all_miss_to_off
        );
        let _ = writeln!(
            s,
            "| fully cached rerun (open {:.3}s + run) | {:.0} nodes/s | >= 300,000 nodes/s |",
            self.cached_open_secs, self.cached_nodes_per_sec
        );
        let _ = writeln!(
            s,
            "| resume with half committed: open to first new task ({} hits first) | {:.3}s | |",
            self.resume_hits, self.resume_first_task_secs
        );
        s
    }
}
