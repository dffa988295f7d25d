//! The worker service (`backplane worker`): pulls tasks for one pool from the
//! NATS JetStream work queue, runs them with the node types loaded here and
//! publishes their results.
//!
//! # Core concepts
//!
//! - Tasks are pulled only when a slot is free, so a task never waits in this
//!   worker's buffer while another worker idles; each running task sends
//!   in-progress acknowledgements as its heartbeat.
//! - A task is acknowledged only after the results stream stored its result:
//!   a worker killed at any point leaves the task to be redelivered, and the
//!   result's `Nats-Msg-Id` makes a second run's result a duplicate the
//!   stream drops.
//! - A task over its delivery limit, for a node type this worker does not
//!   have (or may not run), or malformed, is answered with an error result:
//!   never dropped silently.
//! - On stop (SIGTERM) it pulls nothing more, lets running tasks finish for a
//!   grace period, then releases the rest for redelivery.

mod allow_list;
mod execute;
mod metrics;
mod presence;
mod run_times;

use async_nats::jetstream::{self, AckKind, consumer::PullConsumer, object_store::ObjectStore};
use backplane_loader::{Host, task_runner};
use backplane_plugin_api::{
    Payload, PluginError, PluginError_NE, TaskLog,
    wire::{TaskMessage, TaskReport},
};
use backplane_worker_protocol::{
    ConnectError, NatsAuth, SetupError, WorkerCounters, cancel_subject, connect, ensure_pool_consumer, ensure_streams,
    headers, objects, payload_store, presence_bucket,
};
pub use execute::Isolation;
use futures_util::StreamExt;
pub use presence::hostname;
use std::{
    collections::{HashMap, HashSet, VecDeque},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

/// How a worker serves.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    pub urls: Vec<String>,
    pub auth: NatsAuth,
    pub pool: String,
    pub tags: Vec<String>,
    /// Tasks run at once.
    pub concurrency: usize,
    pub isolation: Isolation,
    /// How long running tasks may finish after a stop before they are released.
    pub drain_timeout: Duration,
    /// Node types this worker may run (globs; `!glob` denies); empty: all loaded.
    pub allowed_node_types: Vec<String>,
    pub worker_id: String,
}

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("{0}")]
    Connect(#[from] ConnectError),
    #[error("{0}")]
    Setup(#[from] SetupError),
    #[error("invalid --node-types pattern: {0}")]
    Pattern(String),
    #[error("cannot subscribe to cancellations: {0}")]
    Subscribe(String),
}

/// Counters shared by the tasks of one worker.
#[derive(Default)]
struct Counters {
    done: AtomicU64,
    failed: AtomicU64,
    in_flight: AtomicU64,
    refused: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> WorkerCounters {
        WorkerCounters {
            done: self.done.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            in_flight: self.in_flight.load(Ordering::Relaxed),
            refused: self.refused.load(Ordering::Relaxed),
        }
    }
}

/// Cancellation requests, by task key: for running tasks and for tasks that
/// may still arrive (a cancel can overtake its task).
#[derive(Default)]
struct Cancellations {
    running: Mutex<HashMap<String, Arc<AtomicBool>>>,
    recent: Mutex<(HashSet<String>, VecDeque<String>)>,
}

const REMEMBERED_CANCELLATIONS: usize = 10_000;

impl Cancellations {
    fn cancel(&self, key: &str) {
        if let Some(flag) = self.running.lock().unwrap_or_else(|e| e.into_inner()).get(key) {
            flag.store(true, Ordering::Release);
        }
        let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        if recent.0.insert(key.to_owned()) {
            recent.1.push_back(key.to_owned());
            if recent.1.len() > REMEMBERED_CANCELLATIONS
                && let Some(old) = recent.1.pop_front()
            {
                recent.0.remove(&old);
            }
        }
    }

    fn start(&self, key: &str) -> Arc<AtomicBool> {
        let cancelled = self.recent.lock().unwrap_or_else(|e| e.into_inner()).0.contains(key);
        let flag = Arc::new(AtomicBool::new(cancelled));
        self.running.lock().unwrap_or_else(|e| e.into_inner()).insert(key.to_owned(), flag.clone());
        flag
    }

    fn finish(&self, key: &str) {
        self.running.lock().unwrap_or_else(|e| e.into_inner()).remove(key);
    }
}

/// What every task handler of one worker shares.
struct Worker {
    options: WorkerOptions,
    host: Arc<Host>,
    allowed: allow_list::AllowList,
    js: jetstream::Context,
    payloads: ObjectStore,
    counters: Counters,
    metrics: metrics::WorkerMetrics,
    cancellations: Cancellations,
    run_times: run_times::RunTimes,
    /// Interval of in-progress acknowledgements: a third of the consumer's
    /// ack wait, refreshed with presence (the backend's config may change it).
    heartbeat_ms: AtomicU64,
    /// Set when the drain period ends: running tasks are released.
    release: watch::Receiver<bool>,
}

/// Serves until `stop` turns true, then drains. Returns the final counters.
pub async fn serve(
    host: Arc<Host>,
    options: WorkerOptions,
    mut stop: watch::Receiver<bool>,
) -> Result<WorkerCounters, WorkerError> {
    let allowed = allow_list::AllowList::new(&options.allowed_node_types).map_err(WorkerError::Pattern)?;
    let client = connect(
        &options.urls,
        &options.auth,
        &format!("backplane worker {}", options.worker_id),
        Duration::from_secs(5),
    )
    .await?;
    let js = jetstream::new(client.clone());
    ensure_streams(&js).await?;
    let consumer = ensure_pool_consumer(&js, &options.pool, Default::default(), false).await?;
    let payloads = payload_store(&js).await?;
    let bucket = presence_bucket(&js).await?;
    let mut cancels =
        client.subscribe(cancel_subject(&options.pool)).await.map_err(|e| WorkerError::Subscribe(e.to_string()))?;
    let (release_tx, release) = watch::channel(false);
    let worker = Arc::new(Worker {
        heartbeat_ms: AtomicU64::new(heartbeat_for(consumer.cached_info().config.ack_wait)),
        metrics: metrics::WorkerMetrics::new(&options.pool, &options.worker_id),
        options,
        host,
        allowed,
        js: js.clone(),
        payloads,
        counters: Counters::default(),
        cancellations: Cancellations::default(),
        run_times: Default::default(),
        release,
    });
    let cancel_listener = {
        let worker = worker.clone();
        tokio::spawn(async move {
            while let Some(message) = cancels.next().await {
                if let Ok(key) = std::str::from_utf8(&message.payload) {
                    worker.cancellations.cancel(key);
                }
            }
        })
    };
    let (draining_tx, draining) = watch::channel(false);
    let announcer = tokio::spawn(presence::announce(worker.clone(), bucket.clone(), js.clone(), draining));
    tracing::info!(
        "worker {} serving pool `{}` with {} slots ({} isolation), {} node types",
        worker.options.worker_id,
        worker.options.pool,
        worker.options.concurrency,
        worker.options.isolation.name(),
        worker.host.nodes.names().len()
    );

    pull_tasks(&worker, consumer, &mut stop).await;

    // Drain: running tasks get the grace period, then are released.
    let _ = draining_tx.send(true);
    tracing::info!(
        "stopping: waiting up to {:.0}s for {} running tasks",
        worker.options.drain_timeout.as_secs_f64(),
        worker.counters.in_flight.load(Ordering::Relaxed)
    );
    if !all_finished(&worker, worker.options.drain_timeout).await {
        tracing::warn!(
            "releasing {} unfinished tasks for redelivery",
            worker.counters.in_flight.load(Ordering::Relaxed)
        );
        let _ = release_tx.send(true);
        all_finished(&worker, Duration::from_secs(5)).await;
    }
    announcer.abort();
    cancel_listener.abort();
    presence::withdraw(&worker, &bucket).await;
    let _ = client.flush().await;
    let counters = worker.counters.snapshot();
    tracing::info!(
        "worker {} stopped: {} done, {} failed, {} refused",
        worker.options.worker_id,
        counters.done,
        counters.failed,
        counters.refused
    );
    Ok(counters)
}

/// Waits up to `within` for the worker to have no task in flight; false if
/// some still are.
async fn all_finished(worker: &Worker, within: Duration) -> bool {
    let idle = async {
        while worker.counters.in_flight.load(Ordering::Acquire) > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(within, idle).await.is_ok()
}

/// Resolves once the flag is set (at once if it already is).
async fn until_set(flag: &mut watch::Receiver<bool>) {
    let _ = flag.wait_for(|set| *set).await;
}

fn heartbeat_for(ack_wait: Duration) -> u64 {
    (ack_wait.as_millis() as u64 / 3).clamp(100, 10_000)
}

/// Most tasks asked for in one pull request.
const MAX_BATCH: usize = 256;

/// Pulls as many tasks as there are free slots, until `stop`.
async fn pull_tasks(worker: &Arc<Worker>, mut consumer: PullConsumer, stop: &mut watch::Receiver<bool>) {
    let slots = Arc::new(Semaphore::new(worker.options.concurrency));
    let mut last_error = None::<String>;
    'pulling: loop {
        let first = tokio::select! {
            permit = slots.clone().acquire_owned() => permit.expect("never closed"),
            _ = until_set(stop) => break,
        };
        let mut permits = vec![first];
        while permits.len() < MAX_BATCH {
            match slots.clone().try_acquire_owned() {
                Ok(permit) => permits.push(permit),
                Err(_) => break,
            }
        }
        let request = consumer.batch().max_messages(permits.len()).expires(Duration::from_secs(1)).messages();
        let mut batch = tokio::select! {
            batch = request => match batch {
                Ok(batch) => batch,
                Err(e) => {
                    let text = e.to_string();
                    if last_error.as_ref() != Some(&text) {
                        tracing::warn!("cannot pull tasks: {text}; retrying");
                        last_error = Some(text);
                    }
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    // A server that lost its data needs the stream and consumer again.
                    if ensure_streams(&worker.js).await.is_ok()
                        && let Ok(recreated) = ensure_pool_consumer(&worker.js, &worker.options.pool, Default::default(), false).await
                    {
                        consumer = recreated;
                    }
                    continue;
                }
            },
            _ = until_set(stop) => break,
        };
        loop {
            let stopping = *stop.borrow();
            match batch.next().await {
                Some(Ok(message)) if stopping => {
                    // Pulled while stopping: give it straight back.
                    let _ = message.ack_with(AckKind::Nak(None)).await;
                }
                Some(Ok(message)) => {
                    last_error = None;
                    let permit = match permits.pop() {
                        Some(permit) => permit,
                        None => slots.clone().acquire_owned().await.expect("never closed"),
                    };
                    tokio::spawn(handle(worker.clone(), message, permit));
                }
                Some(Err(e)) => {
                    tracing::debug!("pull request ended: {e}");
                    break;
                }
                None => break,
            }
        }
        if *stop.borrow() {
            break 'pulling;
        }
    }
}

/// What became of a task this worker took.
enum Outcome {
    /// Answered: publish this result (with when it started and what its
    /// node logged), then acknowledge.
    Answer(Result<Vec<Payload>, PluginError_NE>, TaskReport),
    /// Released while stopping: give it back for redelivery.
    Released,
}

async fn handle(worker: Arc<Worker>, message: jetstream::Message, slot: OwnedSemaphorePermit) {
    worker.counters.in_flight.fetch_add(1, Ordering::AcqRel);
    worker.metrics.in_flight.increment(1.0);
    let h = message.headers.as_ref();
    let key = headers::text(h, async_nats::header::NATS_MESSAGE_ID.as_ref()).unwrap_or_default().to_owned();
    let reply = headers::text(h, headers::REPLY_TO).map(str::to_owned);
    let task_id = headers::number(h, headers::TASK_ID);
    let (Some(reply), Some(task_id)) = (reply, task_id) else {
        tracing::warn!(
            "dropping a malformed task message without {} or {} headers",
            headers::REPLY_TO,
            headers::TASK_ID
        );
        worker.counters.refused.fetch_add(1, Ordering::Relaxed);
        let _ = message.ack_with(AckKind::Term).await;
        worker.counters.in_flight.fetch_sub(1, Ordering::AcqRel);
        worker.metrics.in_flight.decrement(1.0);
        worker.metrics.ended(metrics::Ended::Refused);
        return;
    };
    let delivered = message.info().map_or(1, |i| i.delivered.max(1) as u64);
    let max_deliveries = headers::number(h, headers::MAX_DELIVERIES).unwrap_or(u64::MAX);
    let outcome = if delivered > max_deliveries {
        worker.counters.refused.fetch_add(1, Ordering::Relaxed);
        Outcome::Answer(
            Err(PluginError::infrastructure(format!(
                "task delivered {delivered} times: the workers that took it died or stopped before finishing it \
                 (redelivery limit max_deliveries = {max_deliveries} reached)"
            ))),
            TaskReport::default(),
        )
    } else {
        match TaskMessage::read_from(&mut &message.payload[..]) {
            Ok(task) => run(&worker, &message, &key, task, slot).await,
            Err(e) => Outcome::refused(PluginError::infrastructure(format!("malformed task: {e}"))),
        }
    };
    match outcome {
        Outcome::Answer(result, report) => {
            let failed = result.is_err();
            if report.started_unix_us > 0 {
                let ran = TaskReport::now_us().saturating_sub(report.started_unix_us);
                worker.metrics.running.record(ran as f64 / 1e6);
            }
            if answer(&worker, &message, &reply, &key, task_id, result, &report).await {
                let counter = if failed { &worker.counters.failed } else { &worker.counters.done };
                counter.fetch_add(1, Ordering::Relaxed);
                worker.metrics.ended(match (failed, report.started_unix_us) {
                    (false, _) => metrics::Ended::Succeeded,
                    (true, 0) => metrics::Ended::Refused,
                    (true, _) => metrics::Ended::Failed,
                });
            } else {
                worker.metrics.ended(metrics::Ended::Released);
            }
        }
        Outcome::Released => {
            let delay = headers::backoff_for(h, delivered);
            let _ = message.ack_with(AckKind::Nak(Some(delay))).await;
            worker.metrics.ended(metrics::Ended::Released);
        }
    }
    worker.counters.in_flight.fetch_sub(1, Ordering::AcqRel);
    worker.metrics.in_flight.decrement(1.0);
}

/// Refusals, then the node itself, with heartbeats while it runs.
async fn run(
    worker: &Arc<Worker>,
    message: &jetstream::Message,
    key: &str,
    mut task: TaskMessage,
    slot: OwnedSemaphorePermit,
) -> Outcome {
    let id = &worker.options.worker_id;
    if !worker.allowed.allows(&task.node_type) {
        worker.counters.refused.fetch_add(1, Ordering::Relaxed);
        return Outcome::refused(PluginError::unsupported(format!(
            "worker {id} may not run node type `{}` (its --node-types allow: {})",
            task.node_type,
            worker.options.allowed_node_types.join(",")
        )));
    }
    match worker.host.nodes.get(&task.node_type) {
        None => {
            worker.counters.refused.fetch_add(1, Ordering::Relaxed);
            return Outcome::refused(PluginError::unsupported(format!(
                "worker {id} does not have node type `{}`: put its plugin on the worker's plugin path",
                task.node_type
            )));
        }
        Some(entry) if !task.node_version.is_empty() && entry.version() != task.node_version => {
            worker.counters.refused.fetch_add(1, Ordering::Relaxed);
            return Outcome::refused(PluginError::unsupported(format!(
                "worker {id} has node type `{}` version {}, the task needs {}: deploy the same plugin version",
                task.node_type,
                entry.version(),
                task.node_version
            )));
        }
        Some(_) => {}
    }
    tracing::debug!(
        "running task {key}: node `{}` ({}), delivery {}",
        task.node_id,
        task.node_type,
        message.info().map_or(1, |i| i.delivered)
    );
    if let Err(e) = objects::resolve(&worker.payloads, &mut task.inputs).await {
        return Outcome::refused(PluginError::infrastructure(e.to_string()));
    }
    let cancelled = worker.cancellations.start(key);
    let deadline = (task.timeout_ms > 0).then(|| tokio::time::Instant::now() + Duration::from_millis(task.timeout_ms));
    let work = match worker.options.isolation.clone() {
        Isolation::InProcess if worker.run_times.runs_inline(&task.node_type) => {
            let reported = run_in_process(worker, task, &|| cancelled.load(Ordering::Acquire));
            Box::pin(std::future::ready(reported)) as std::pin::Pin<Box<dyn Future<Output = _> + Send>>
        }
        Isolation::InProcess => {
            let worker = worker.clone();
            let flag = cancelled.clone();
            let blocking =
                tokio::task::spawn_blocking(move || run_in_process(&worker, task, &|| flag.load(Ordering::Acquire)));
            Box::pin(async move {
                blocking.await.unwrap_or_else(|e| {
                    (Err(PluginError::panicked(format!("task thread failed: {e}"))), TaskReport::default())
                })
            })
        }
        Isolation::Process { program, plugin_dirs } => {
            let started = TaskReport::now_us();
            Box::pin(async move {
                let result = execute::in_child_process(program, plugin_dirs, task, cancelled.clone(), deadline).await;
                (result, TaskReport { started_unix_us: started, logs: Vec::new() })
            })
        }
    };
    let outcome = with_heartbeat(worker, message, work).await;
    worker.cancellations.finish(key);
    drop(slot);
    outcome
}

impl Outcome {
    /// Answered without running: nothing started, nothing logged.
    fn refused(error: PluginError_NE) -> Self {
        Outcome::Answer(Err(error), TaskReport::default())
    }
}

/// Runs `task` on this thread, noting when it started, how long its type
/// took, and what its node logged.
fn run_in_process(
    worker: &Worker,
    task: TaskMessage,
    cancelled: &(dyn Fn() -> bool + Sync),
) -> (Result<Vec<Payload>, PluginError_NE>, TaskReport) {
    let node_type = task.node_type.clone();
    let (started, started_us) = (std::time::Instant::now(), TaskReport::now_us());
    let log = TaskLog::new();
    let result = task_runner::run_task(&worker.host, task, cancelled, Some(&log));
    worker.run_times.record(&node_type, started.elapsed());
    (result, TaskReport::of(started_us, &log))
}

/// Awaits `work`, acknowledging progress meanwhile; gives up on it when the
/// worker releases its tasks.
async fn with_heartbeat(
    worker: &Worker,
    message: &jetstream::Message,
    work: impl Future<Output = (Result<Vec<Payload>, PluginError_NE>, TaskReport)>,
) -> Outcome {
    let mut work = std::pin::pin!(work);
    let mut release = worker.release.clone();
    loop {
        let beat = Duration::from_millis(worker.heartbeat_ms.load(Ordering::Relaxed));
        tokio::select! {
            (result, report) = &mut work => return Outcome::Answer(result, report),
            _ = tokio::time::sleep(beat) => {
                let _ = message.ack_with(AckKind::Progress).await;
            }
            _ = until_set(&mut release) => return Outcome::Released,
        }
    }
}

/// Publishes the result durably, then acknowledges the task. Retries a
/// failed publish (NATS restarting) while heartbeating; returns whether the
/// task was answered (false: released for redelivery instead).
async fn answer(
    worker: &Worker,
    message: &jetstream::Message,
    reply: &str,
    key: &str,
    task_id: u64,
    result: Result<Vec<Payload>, PluginError_NE>,
    report: &TaskReport,
) -> bool {
    let limit = headers::number(message.headers.as_ref(), headers::INLINE_LIMIT).unwrap_or(512 * 1024) as usize;
    let result = match result {
        Ok(mut outputs) => match objects::offload(&worker.payloads, &mut outputs, limit, &format!("{key}.out")).await {
            Ok(_) => Ok(outputs),
            Err(e) => Err(PluginError::infrastructure(e.to_string())),
        },
        error => error,
    };
    let mut body = Vec::new();
    if let Err(e) =
        backplane_plugin_api::wire::write_result(&mut body, &result).and_then(|()| report.write_to(&mut body))
    {
        tracing::error!("cannot encode the result of task {key}: {e}");
        return false;
    }
    let body = bytes::Bytes::from(body);
    let mut pause = Duration::from_millis(100);
    let mut release = worker.release.clone();
    loop {
        let mut h = async_nats::HeaderMap::new();
        h.insert(async_nats::header::NATS_MESSAGE_ID, key);
        h.insert(headers::TASK_ID, task_id.to_string().as_str());
        h.insert(headers::WORKER, worker.options.worker_id.as_str());
        let stored = async {
            worker.js.publish_with_headers(reply.to_owned(), h, body.clone()).await?.await.map_err(Into::into)
        };
        let stored: Result<_, async_nats::Error> = stored.await;
        match stored {
            Ok(_) => break,
            Err(e) => {
                tracing::warn!("cannot store the result of task {key} (retrying in {:.1}s): {e}", pause.as_secs_f64());
                let _ = message.ack_with(AckKind::Progress).await;
                tokio::select! {
                    _ = tokio::time::sleep(pause) => {}
                    _ = until_set(&mut release) => {
                        let _ = message.ack_with(AckKind::Nak(None)).await;
                        return false;
                    }
                }
                pause = (pause * 2).min(Duration::from_secs(2));
            }
        }
    }
    if let Err(e) = message.ack().await {
        // The result is stored; a redelivery reruns the task and its
        // result is dropped as a duplicate.
        tracing::debug!("cannot acknowledge task {key}: {e}");
    }
    true
}
