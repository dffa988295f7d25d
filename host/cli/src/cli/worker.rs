//! `backplane worker`: serves one pool of the NATS work queue until SIGTERM.

use super::load_host;
use crate::{Failure, GlobalArgs};
use backplane_host::config::Config;
use backplane_worker_protocol::{ConnectError, NatsAuth, check_pool_name};
use backplane_worker_service::{Isolation, WorkerError, WorkerOptions, serve};
use clap::{Args, ValueEnum};
use std::{sync::Arc, time::Duration};

#[derive(Args)]
pub struct WorkerArgs {
    /// NATS server URL(s), comma-separated.
    #[arg(long, env = "BACKPLANE_NATS_URL", value_delimiter = ',', required = true, value_name = "URL")]
    nats: Vec<String>,
    /// The pool to serve: backends send tasks to a pool.
    #[arg(long, default_value = "default")]
    pool: String,
    /// Tags describing this worker (gpu, arm64...), comma-separated.
    #[arg(long, value_delimiter = ',')]
    tags: Vec<String>,
    /// Tasks run at once [default: available parallelism].
    #[arg(long)]
    concurrency: Option<usize>,
    /// Where tasks run: in this process, or in a child process each.
    #[arg(long, value_enum, default_value = "in-process")]
    isolation: IsolationArg,
    /// Node types it may run: globs, comma-separated; `!glob` denies (`std.*,!std.shell`) [default: all loaded].
    #[arg(long = "node-types", value_delimiter = ',', value_name = "GLOBS")]
    node_types: Vec<String>,
    /// Seconds running tasks may finish after SIGTERM before they are released for redelivery.
    #[arg(long, default_value_t = 30.0, value_name = "SECS")]
    drain_timeout: f64,
    /// This worker's name in presence and results [default: <hostname>-<pid>].
    #[arg(long)]
    worker_id: Option<String>,
    /// Serve Prometheus metrics (tasks by outcome, in flight, running
    /// time) at http://ADDR/metrics; a port alone binds 127.0.0.1.
    #[arg(long, value_name = "ADDR")]
    metrics_addr: Option<String>,
    #[command(flatten)]
    auth: NatsAuth,
}

#[derive(Clone, Copy, ValueEnum)]
enum IsolationArg {
    InProcess,
    Process,
}

fn default_worker_id() -> String {
    let host: String = backplane_worker_service::hostname()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '-' })
        .collect();
    format!("{host}-{}", std::process::id())
}

pub fn worker(global: &GlobalArgs, args: WorkerArgs) -> Result<(), Failure> {
    check_pool_name(&args.pool).map_err(|e| Failure::Invalid(format!("error: --pool: {e}")))?;
    let worker_id = args.worker_id.unwrap_or_else(default_worker_id);
    if worker_id.is_empty() || !worker_id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
        return Err(Failure::Invalid(format!("error: --worker-id `{worker_id}` must be letters, digits, `-` and `_`")));
    }
    if let Some(addr) = &args.metrics_addr {
        let bound = super::metrics::serve(addr)?;
        eprintln!("serving metrics at http://{bound}/metrics");
    }
    let drain_timeout = Duration::try_from_secs_f64(args.drain_timeout)
        .map_err(|_| Failure::Invalid("error: --drain-timeout must be a non-negative number of seconds".into()))?;
    let isolation = match args.isolation {
        IsolationArg::InProcess => Isolation::InProcess,
        IsolationArg::Process => Isolation::Process {
            program: std::env::current_exe()
                .map_err(|e| Failure::Environment(format!("cannot find this executable: {e}")))?,
            plugin_dirs: global.plugin_dirs.clone(),
        },
    };
    let host = load_host(global, &Config::default())?;
    if !host.conflicts.is_empty() {
        let text: Vec<String> = host.conflicts.iter().map(|c| format!("error: {c}")).collect();
        return Err(Failure::Invalid(text.join("\n")));
    }
    let options = WorkerOptions {
        urls: args.nats,
        auth: args.auth,
        pool: args.pool,
        tags: args.tags,
        concurrency: args
            .concurrency
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
            .max(1),
        isolation,
        drain_timeout,
        allowed_node_types: args.node_types,
        worker_id,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| Failure::Environment(format!("cannot start the async runtime: {e}")))?;
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let served = runtime.block_on(async move {
        tokio::spawn(watch_signals(stop_tx));
        serve(Arc::new(host), options, stop).await
    });
    match served {
        Ok(_) => Ok(()),
        Err(WorkerError::Connect(
            e @ (ConnectError::NoCredentials | ConnectError::BadOptions(_) | ConnectError::BadUrl { .. }),
        )) => Err(Failure::Invalid(format!("error: {e}"))),
        Err(WorkerError::Pattern(e)) => Err(Failure::Invalid(format!("error: invalid --node-types pattern: {e}"))),
        Err(e) => Err(Failure::Environment(e.to_string())),
    }
}

/// The first SIGTERM or Ctrl-C drains; a second exits at once (tasks still
/// unacknowledged are redelivered to other workers).
async fn watch_signals(stop: tokio::sync::watch::Sender<bool>) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut int), Ok(mut term)) = (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) else {
        tracing::warn!("cannot listen for SIGTERM; stopping will not drain");
        return;
    };
    tokio::select! {
        _ = int.recv() => {}
        _ = term.recv() => {}
    }
    let _ = stop.send(true);
    tokio::select! {
        _ = int.recv() => {}
        _ = term.recv() => {}
    }
    tracing::warn!("second signal: exiting now; unfinished tasks will be redelivered");
    std::process::exit(crate::EXIT_INTERRUPTED);
}
