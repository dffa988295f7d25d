//! `backplane bench`.

use super::say;
use super::setup;
use crate::bench::BenchReport;
use crate::{Failure, GlobalArgs};
use clap::Args;

#[derive(Args)]
pub struct BenchArgs {
    /// Nodes in the wide (independent) DAG.
    #[arg(long, default_value_t = 100_000)]
    wide: usize,
    /// Nodes in the dependent chain.
    #[arg(long, default_value_t = 1_000)]
    chain: usize,
    /// Round trips for the bare baseline.
    #[arg(long, default_value_t = 10_000)]
    round_trips: usize,
    /// Nodes in the large-plan memory measurement (0 skips it).
    #[arg(long, default_value_t = 1_000_000)]
    large: usize,
    /// Repetitions of each measurement (the best is reported).
    #[arg(long, default_value_t = 3)]
    repeat: usize,
    /// Print results as JSON.
    #[arg(long)]
    json: bool,
    /// Measure the worker backend instead: starts nats-server and worker processes on loopback.
    #[arg(long)]
    workers: bool,
    /// With --workers: independent tasks in the throughput run.
    #[arg(long, default_value_t = 20_000)]
    tasks: usize,
    /// With --workers: worker processes.
    #[arg(long, default_value_t = 2)]
    worker_processes: usize,
    /// With --workers: slots per worker (no-op tasks need many to keep the queue busy).
    #[arg(long, default_value_t = 64)]
    worker_concurrency: usize,
    /// With --workers: the nats-server binary [default: found on PATH or in /usr/sbin].
    #[arg(long, value_name = "PATH")]
    nats_server: Option<std::path::PathBuf>,
    /// Measure the ray backend instead: 10,000 trivial nodes on a private local Ray, and the same
    /// tasks with Ray's Python API.
    #[arg(long, conflicts_with = "workers")]
    ray: bool,
    /// With --ray: Python with `ray` installed [default: BACKPLANE_RAY_PYTHON, else target/ray-venv].
    #[arg(long, value_name = "PATH")]
    ray_python: Option<std::path::PathBuf>,
    /// Measure validation instead: workflows with a tenth of --errors and with --errors settings
    /// errors, to show the cost grows linearly.
    #[arg(long, conflicts_with_all = ["workers", "ray"])]
    validation: bool,
    /// Measure the result cache instead: --wide nodes with no cache, all misses, all hits, and a resume.
    #[arg(long, conflicts_with_all = ["workers", "ray", "validation"])]
    cache: bool,
    /// Measure what observers cost instead: --wide nodes bare, and with the run record's collector,
    /// both traces and metrics attached, alternately in one run.
    #[arg(long, conflicts_with_all = ["workers", "ray", "validation", "cache"])]
    observers: bool,
    /// Measure streaming outputs instead: --items lines as one item each through `std.split`,
    /// beside the same text as one payload, alternately in one run.
    #[arg(long, conflicts_with_all = ["workers", "ray", "validation", "cache", "observers"])]
    streams: bool,
    /// With --streams: items in the stream.
    #[arg(long, default_value_t = 1_000_000)]
    items: usize,
    /// With --validation: settings errors in the larger workflow.
    #[arg(long, default_value_t = 100_000)]
    errors: usize,
}

pub fn bench(global: &GlobalArgs, args: BenchArgs) -> Result<(), Failure> {
    let host = setup(global)?;
    if args.ray {
        let python = args
            .ray_python
            .or_else(|| std::env::var_os("BACKPLANE_RAY_PYTHON").map(Into::into))
            .unwrap_or_else(|| "target/ray-venv/bin/python".into());
        let settings = crate::bench::ray::RayBenchSettings {
            tasks: if args.tasks == 20_000 { 10_000 } else { args.tasks },
            repeat: args.repeat.max(1),
            cpus: 2,
            python,
        };
        let results = crate::bench::ray::run(&host, &settings).map_err(Failure::Invalid)?;
        return print(&results, args.json);
    }
    if args.validation {
        let results =
            crate::bench::validation::run(&host, args.errors.max(10), args.repeat).map_err(Failure::Invalid)?;
        return print(&results, args.json);
    }
    if args.observers {
        let results =
            crate::bench::observers::run(&host, args.wide.max(2), args.repeat.max(1)).map_err(Failure::Invalid)?;
        return print(&results, args.json);
    }
    if args.streams {
        let results =
            crate::bench::streams::run(&host, args.items.max(1), args.repeat.max(1)).map_err(Failure::Invalid)?;
        return print(&results, args.json);
    }
    if args.cache {
        let results =
            crate::bench::cache::run(&host, args.wide.max(2), args.repeat.max(1)).map_err(Failure::Invalid)?;
        return print(&results, args.json);
    }
    if args.workers {
        let settings = crate::bench::workers::WorkerBenchSettings {
            tasks: args.tasks,
            chain: args.chain,
            workers: args.worker_processes.max(1),
            concurrency: args.worker_concurrency.max(1),
            repeat: args.repeat.max(1),
            nats_server: args.nats_server,
            plugin_dirs: global.plugin_dirs.clone(),
        };
        let results = crate::bench::workers::run(&host, &settings).map_err(Failure::Invalid)?;
        return print(&results, args.json);
    }
    let settings = crate::bench::BenchSettings {
        wide: args.wide,
        chain: args.chain,
        round_trips: args.round_trips,
        large: args.large,
        repeat: args.repeat.max(1),
    };
    let results = crate::bench::run(&host, &settings).map_err(Failure::Invalid)?;
    print(&results, args.json)
}

/// `--json` or the Markdown table.
fn print(results: &impl BenchReport, json: bool) -> Result<(), Failure> {
    if json {
        super::print_json(results)
    } else {
        say!("{}", results.to_markdown());
        Ok(())
    }
}
