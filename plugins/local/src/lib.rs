//! `local`: runs nodes in the host's process on a thread pool the plugin owns.
//!
//! # Core concepts
//!
//! - `submit` only pushes the task on a channel; one of `threads` workers
//!   calls the node's in-process compute function and completes the sink.
//! - Idle workers poll for up to 100 us before parking, so neither a wide DAG
//!   nor a dependent chain pays a thread wake-up per node.
//! - Cancellation is a set of task ids consulted before a task starts and,
//!   through `ComputeContext::is_cancelled`, while it runs.

use backplane_plugin_api::{
    abi_stable::std_types::{RString, RVec, Tuple2},
    guard, log_debug,
    prelude::*,
    run_compute,
};
use crossbeam_channel::{Receiver, Sender, TryRecvError};
use serde::Deserialize;
use std::{
    collections::{BTreeMap, HashSet},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

/// `[backends.<name>] type = "local"` settings.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalConfig {
    /// Worker threads; default: available parallelism. Also the instance's
    /// cpu capacity: tasks that ask for cpus share this many.
    pub threads: Option<usize>,
    /// Memory the instance offers to tasks that ask for some (bytes, or a
    /// size such as "16GiB"); default: not stated, not limited.
    pub memory: Option<Size>,
    /// Named resources the instance offers (`{ licence = 2 }`); tasks that
    /// ask for one share what is declared here.
    #[serde(default)]
    pub custom: BTreeMap<String, f64>,
}

/// A size in bytes, written as a number or with a unit.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Size {
    Bytes(u64),
    Text(String),
}

impl Size {
    fn bytes(&self) -> Result<u64, PluginError_NE> {
        match self {
            Self::Bytes(n) => Ok(*n),
            Self::Text(text) => backplane_plugin_api::parse_size(text).ok_or_else(|| {
                PluginError::invalid_config(format!(
                    "`memory = \"{text}\"` is not a size (e.g. 17179869184 or \"16GiB\")"
                ))
            }),
        }
    }
}

/// What an instance offers besides its threads.
#[derive(Debug, Clone, Default)]
struct Offered {
    memory_bytes: u64,
    custom: Vec<(String, f64)>,
}

// `Stop` is rare and boxing `Run` would cost an allocation per task.
#[allow(clippy::large_enum_variant)]
enum Message {
    Run(NodeTask, CompletionSinkBox),
    Stop,
}

/// Task ids cancelled before or while running; empty on the hot path.
///
/// A cancel can arrive just after its task finished; such an id stays until
/// the set is pruned. Task ids are never reused, so a stale id is harmless,
/// and pruning bounds the memory.
#[derive(Default)]
struct Cancellations {
    count: AtomicUsize,
    ids: Mutex<HashSet<u64>>,
    /// Set by shutdown: every task counts as cancelled.
    all: AtomicBool,
}

/// More stale ids than this and the oldest half (lowest ids) is dropped.
const MAX_CANCELLATIONS: usize = 65_536;

impl Cancellations {
    fn insert(&self, id: u64) {
        let mut ids = self.ids.lock().unwrap_or_else(|e| e.into_inner());
        if ids.len() >= MAX_CANCELLATIONS {
            let mut sorted: Vec<u64> = ids.iter().copied().collect();
            sorted.sort_unstable();
            for old in &sorted[..sorted.len() / 2] {
                ids.remove(old);
            }
        }
        ids.insert(id);
        self.count.store(ids.len(), Ordering::Release);
    }
    fn contains(&self, id: u64) -> bool {
        self.all.load(Ordering::Acquire)
            || self.count.load(Ordering::Acquire) != 0
                && self.ids.lock().unwrap_or_else(|e| e.into_inner()).contains(&id)
    }
    fn forget(&self, id: u64) {
        if self.count.load(Ordering::Acquire) != 0 {
            let mut ids = self.ids.lock().unwrap_or_else(|e| e.into_inner());
            ids.remove(&id);
            self.count.store(ids.len(), Ordering::Release);
        }
    }
}

pub struct LocalBackend {
    threads: usize,
    offered: Offered,
    queue: Sender<Message>,
    cancellations: Arc<Cancellations>,
    workers: Mutex<Vec<JoinHandle<()>>>,
}

fn capabilities(threads: usize, offered: &Offered) -> Capabilities {
    Capabilities {
        // One thread runs one task at a time: not parallel.
        flags: if threads > 1 {
            CapabilityFlags::PARALLEL | CapabilityFlags::IN_PROCESS_COMPUTE
        } else {
            CapabilityFlags::IN_PROCESS_COMPUTE
        },
        isolation: Isolation::NONE,
        max_concurrency: threads as u32,
        capacity: Resources {
            cpus: threads as f64,
            memory_bytes: offered.memory_bytes,
            gpus: 0.0,
            custom: offered.custom.iter().map(|(name, amount)| Tuple2(RString::from(name.as_str()), *amount)).collect(),
        },
        tags: RVec::from(vec![RString::from("local")]),
        extensions: RVec::new(),
    }
}

/// More threads than this is a typo, not a machine: each costs a stack.
const MAX_THREADS: usize = 1024;

fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// How long an idle worker polls for the next task before parking. Waking a
/// parked thread costs 30-80 us on a VM with halted idle vCPUs; a dependent
/// chain submits its next node well within this window.
const SPIN_BEFORE_PARK: Duration = Duration::from_micros(100);

/// How long `shutdown` waits for running tasks.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

fn next_message(queue: &Receiver<Message>) -> Option<Message> {
    let start = Instant::now();
    loop {
        match queue.try_recv() {
            Ok(message) => return Some(message),
            Err(TryRecvError::Disconnected) => return None,
            Err(TryRecvError::Empty) if start.elapsed() < SPIN_BEFORE_PARK => std::hint::spin_loop(),
            Err(TryRecvError::Empty) => return queue.recv().ok(),
        }
    }
}

fn worker_loop(queue: Receiver<Message>, cancellations: Arc<Cancellations>) {
    while let Some(Message::Run(task, sink)) = next_message(&queue) {
        let id = task.task_id;
        let result = if cancellations.contains(id) {
            Err(PluginError::cancelled())
        } else {
            let is_cancelled = || cancellations.contains(id);
            guard(|| run_compute(task, &is_cancelled).into_result())
        };
        cancellations.forget(id);
        sink.complete(result.into());
    }
}

impl BackendPlugin for LocalBackend {
    const NAME: &'static str = "local";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str = "Runs nodes in process on a thread pool owned by the plugin";
    type Config = LocalConfig;

    fn config_schema() -> serde_json::Value {
        serde_json::json!({
            "type": "object",
            "properties": {
                "threads": { "type": "integer", "minimum": 1, "maximum": MAX_THREADS, "description": "worker threads (default: available parallelism); also the cpus tasks share" },
                "memory": { "type": ["integer", "string"], "minimum": 0, "description": "memory offered to tasks that ask for some, in bytes or with a unit (\"16GiB\"); default: not limited" },
                "custom": { "type": "object", "additionalProperties": { "type": "number", "minimum": 0 }, "description": "named resources offered, e.g. { licence = 2 }" }
            },
            "additionalProperties": false
        })
    }

    /// What any instance may offer: an instance with one thread is not parallel.
    fn capabilities() -> Capabilities {
        Capabilities {
            flags: CapabilityFlags::PARALLEL | CapabilityFlags::IN_PROCESS_COMPUTE,
            ..capabilities(default_threads(), &Offered::default())
        }
    }

    fn create(config: LocalConfig) -> Result<Self, PluginError_NE> {
        let threads = match config.threads {
            Some(0) => return Err(PluginError::invalid_config("`threads` must be at least 1")),
            Some(n) => n,
            None => default_threads(),
        };
        let mut offered =
            Offered { memory_bytes: config.memory.as_ref().map_or(Ok(0), Size::bytes)?, custom: Vec::new() };
        for (name, amount) in config.custom {
            if !amount.is_finite() || amount < 0.0 {
                return Err(PluginError::invalid_config(format!(
                    "custom resource `{name}` must be a number of at least 0"
                )));
            }
            offered.custom.push((name, amount));
        }
        let (queue, receiver) = crossbeam_channel::unbounded();
        let cancellations = Arc::new(Cancellations::default());
        let workers = (0..threads)
            .map(|i| {
                let receiver = receiver.clone();
                let cancellations = cancellations.clone();
                std::thread::Builder::new()
                    .name(format!("backplane-local-{i}"))
                    .spawn(move || worker_loop(receiver, cancellations))
                    .map_err(|e| PluginError::infrastructure(format!("cannot start worker thread: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        log_debug!("local backend started with {threads} threads");
        Ok(Self { threads, offered, queue, cancellations, workers: Mutex::new(workers) })
    }

    fn live_capabilities(&self) -> Capabilities {
        capabilities(self.threads, &self.offered)
    }

    fn submit(&self, task: NodeTask, sink: CompletionSinkBox) {
        if let Err(crossbeam_channel::SendError(Message::Run(_, sink))) = self.queue.send(Message::Run(task, sink)) {
            sink.complete(RResult::RErr(PluginError::infrastructure("local backend is shut down")));
        }
    }

    fn cancel(&self, task_id: u64) {
        self.cancellations.insert(task_id);
    }

    fn shutdown(&self) {
        let workers = std::mem::take(&mut *self.workers.lock().unwrap_or_else(|e| e.into_inner()));
        // Queued tasks complete as cancelled; running ones see `is_cancelled`.
        self.cancellations.all.store(true, Ordering::Release);
        for _ in &workers {
            let _ = self.queue.send(Message::Stop);
        }
        // Give running tasks a moment to finish, but never hang on a stuck
        // node: a thread still busy after that is left to the process exit.
        let deadline = Instant::now() + SHUTDOWN_GRACE;
        while workers.iter().any(|w| !w.is_finished()) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        for worker in workers.into_iter().filter(|w| w.is_finished()) {
            let _ = worker.join();
        }
        // Tasks queued behind the stop messages are dropped with their sinks,
        // which the host reads as an error rather than waiting forever.
    }
}

impl Drop for LocalBackend {
    fn drop(&mut self) {
        self.shutdown();
    }
}

backplane_plugin_api::export_plugin! {
    backends: [LocalBackend],
    nodes: [],
}
