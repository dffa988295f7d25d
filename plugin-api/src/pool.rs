//! A worker pool a backend can run its tasks on: the queue, per-task cancel
//! flags, admission and bounded shutdown every backend otherwise writes again.
//!
//! # Core concepts
//!
//! - [`TaskPool::submit`] only queues: it never runs a task on the host's
//!   thread. One of the pool's threads takes the task, asks the admission hook
//!   (if any) whether it may start, runs it and completes the sink exactly
//!   once, whatever happens: a panic in the run function becomes a `panicked`
//!   result, a task cancelled before it starts completes as `cancelled`.
//! - What "run" means is yours: [`TaskPool::in_process`] calls the node's
//!   in-process compute function ([`crate::run_compute_with`]); [`TaskPool::start`] takes
//!   any function, for example one that sends the task to a child process.
//! - A task sees cancellation through the [`Cancel`] it is given: true once
//!   [`TaskPool::cancel`] named it or the pool is shutting down.
//! - [`TaskPool::shutdown`] is bounded: queued tasks complete as cancelled,
//!   running ones see [`Cancel::is_cancelled`], and it waits at most the grace
//!   period for them before it returns.
//!
//! A rate-limited in-process backend is a config, an admission hook and the
//! forwarding methods:
//!
//! ```
//! use backplane_plugin_api::{pool::{Admission, PoolOptions, TaskPool}, prelude::*, serde_json};
//! use std::{sync::Mutex, time::{Duration, Instant}};
//!
//! pub struct Limited(TaskPool);
//!
//! #[derive(serde::Deserialize)]
//! #[serde(deny_unknown_fields)]
//! pub struct LimitedConfig { per_second: u32 }
//!
//! impl BackendPlugin for Limited {
//!     const NAME: &'static str = "acme-limited";
//!     const VERSION: &'static str = "0.1.0";
//!     const DESCRIPTION: &'static str = "At most `per_second` tasks start each second";
//!     type Config = LimitedConfig;
//!
//!     fn config_schema() -> serde_json::Value {
//!         serde_json::json!({ "type": "object", "required": ["per_second"], "additionalProperties": false,
//!             "properties": { "per_second": { "type": "integer", "minimum": 1 } } })
//!     }
//!     fn capabilities() -> Capabilities {
//!         Capabilities { flags: CapabilityFlags::IN_PROCESS_COMPUTE, max_concurrency: 1, ..Capabilities::default() }
//!     }
//!     fn create(config: LimitedConfig) -> Result<Self, PluginError_NE> {
//!         let gap = Duration::from_secs(1) / config.per_second.max(1);
//!         let next = Mutex::new(Instant::now());
//!         let options = PoolOptions::new("acme-limited", 1).admission(move |_task| {
//!             let mut next = next.lock().unwrap();
//!             let now = Instant::now();
//!             if now < *next {
//!                 return Admission::WaitFor(*next - now);
//!             }
//!             *next = now + gap;
//!             Admission::Start
//!         });
//!         Ok(Self(TaskPool::in_process(options)?))
//!     }
//!     fn submit(&self, task: NodeTask, sink: CompletionSinkBox) { self.0.submit(task, sink) }
//!     fn cancel(&self, task_id: u64) { self.0.cancel(task_id) }
//!     fn health(&self) -> Health { self.0.health() }
//!     fn shutdown(&self) { self.0.shutdown() }
//! }
//!
//! backplane_plugin_api::export_plugin! { backends: [Limited], nodes: [] }
//! # fn main() {}
//! ```

use crate::{
    abi_stable::std_types::{RResult, RVec},
    backend::{CompletionSinkBox, NodeTask, TaskIo, run_compute_with},
    error::{PluginError, PluginError_NE, PluginResult},
    extensions::{FeedsItems, TaskExtension},
    guard::guard,
    payload::Payload,
    resources::Health,
    task_log::TaskLog,
};
use crossbeam_channel::{Receiver, Sender, TryRecvError};
use std::{
    collections::HashSet,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

/// What a pool thread does with one task: its outputs or its error.
pub type TaskOutcome = Result<RVec<Payload>, PluginError_NE>;

/// Whether a task may start now, asked by the thread that dequeued it.
#[derive(Debug)]
pub enum Admission {
    /// Start it.
    Start,
    /// Ask again after this long (a rate limit, a resource that is busy). The
    /// thread waits holding the task; cancellation and shutdown still reach it.
    WaitFor(Duration),
    /// Never start it: complete it with this error.
    Refuse(PluginError_NE),
}

type AdmitFn = dyn Fn(&NodeTask) -> Admission + Send + Sync;
type RunFn = dyn Fn(NodeTask, &Cancel<'_>) -> TaskOutcome + Send + Sync;

/// How a [`TaskPool`] is built.
pub struct PoolOptions {
    name: String,
    threads: usize,
    shutdown_grace: Duration,
    spin_before_park: Duration,
    admission: Option<Box<AdmitFn>>,
}

impl PoolOptions {
    /// `threads` workers named `<name>-<i>`; at least one.
    pub fn new(name: impl Into<String>, threads: usize) -> Self {
        Self {
            name: name.into(),
            threads,
            shutdown_grace: Duration::from_secs(2),
            spin_before_park: Duration::from_micros(100),
            admission: None,
        }
    }

    /// How long [`TaskPool::shutdown`] waits for running tasks (default 2 s).
    pub fn shutdown_grace(mut self, grace: Duration) -> Self {
        self.shutdown_grace = grace;
        self
    }

    /// How long an idle thread polls for the next task before it parks
    /// (default 100 µs). Waking a parked thread costs tens of microseconds on a
    /// VM; a dependent chain submits its next node well within this window.
    pub fn spin_before_park(mut self, spin: Duration) -> Self {
        self.spin_before_park = spin;
        self
    }

    /// Asked before each task starts, on the pool thread that holds it.
    pub fn admission(mut self, admit: impl Fn(&NodeTask) -> Admission + Send + Sync + 'static) -> Self {
        self.admission = Some(Box::new(admit));
        self
    }
}

/// The cancellation a running task sees.
pub struct Cancel<'a> {
    cancellations: &'a Cancellations,
    task_id: u64,
    log: &'a TaskLog,
    /// Locked only to emit: a sink is `Send` but not `Sync`.
    sink: &'a Mutex<CompletionSinkBox>,
}

impl Cancel<'_> {
    /// True once the task was cancelled or the pool is shutting down.
    pub fn is_cancelled(&self) -> bool {
        self.cancellations.contains(self.task_id)
    }

    /// The task's own log, handed to the host with its result.
    pub fn log(&self) -> &TaskLog {
        self.log
    }

    /// Hands on one item the task's node emitted on a stream output (1.3),
    /// through the task's sink; an error once the task is cancelled.
    pub fn emit(&self, item: Payload) -> PluginResult<()> {
        if self.is_cancelled() {
            return RResult::RErr(PluginError::cancelled());
        }
        self.sink.lock().unwrap_or_else(PoisonError::into_inner).emit(item)
    }
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
        let mut ids = self.ids.lock().unwrap_or_else(PoisonError::into_inner);
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
                && self.ids.lock().unwrap_or_else(PoisonError::into_inner).contains(&id)
    }

    fn forget(&self, id: u64) {
        if self.count.load(Ordering::Acquire) != 0 {
            let mut ids = self.ids.lock().unwrap_or_else(PoisonError::into_inner);
            ids.remove(&id);
            self.count.store(ids.len(), Ordering::Release);
        }
    }
}

// `Stop` is rare and boxing `Run` would cost an allocation per task.
#[allow(clippy::large_enum_variant)]
enum Message {
    Run(NodeTask, CompletionSinkBox),
    Stop,
}

/// What the pool's threads share.
struct Shared {
    run: Box<RunFn>,
    admission: Option<Box<AdmitFn>>,
    cancellations: Cancellations,
    spin_before_park: Duration,
}

/// How often a thread waiting for admission looks for cancellation.
const ADMISSION_POLL: Duration = Duration::from_millis(10);

impl Shared {
    fn next_message(&self, queue: &Receiver<Message>) -> Option<Message> {
        let start = Instant::now();
        loop {
            match queue.try_recv() {
                Ok(message) => return Some(message),
                Err(TryRecvError::Disconnected) => return None,
                Err(TryRecvError::Empty) if start.elapsed() < self.spin_before_park => std::hint::spin_loop(),
                Err(TryRecvError::Empty) => return queue.recv().ok(),
            }
        }
    }

    /// Waits until admission lets the task start; `Err` if it never will.
    fn admit(&self, task: &NodeTask) -> Result<(), PluginError_NE> {
        let Some(admit) = &self.admission else { return Ok(()) };
        loop {
            if self.cancellations.contains(task.task_id) {
                return Err(PluginError::cancelled());
            }
            match guard(|| Ok(admit(task)))? {
                Admission::Start => return Ok(()),
                Admission::Refuse(error) => return Err(error),
                Admission::WaitFor(wait) => std::thread::sleep(wait.min(ADMISSION_POLL)),
            }
        }
    }

    fn execute(&self, task: NodeTask, sink: &Mutex<CompletionSinkBox>, log: &TaskLog) -> TaskOutcome {
        let task_id = task.task_id;
        if self.cancellations.contains(task_id) {
            return Err(PluginError::cancelled()); // cancelled while queued: never started
        }
        self.admit(&task)?;
        sink.lock().unwrap_or_else(PoisonError::into_inner).started(0);
        let cancel = Cancel { cancellations: &self.cancellations, task_id, log, sink };
        guard(|| (self.run)(task, &cancel))
    }

    fn work(&self, queue: &Receiver<Message>) {
        while let Some(Message::Run(task, sink)) = self.next_message(queue) {
            self.run_one(task, sink);
        }
    }

    fn run_one(&self, task: NodeTask, sink: CompletionSinkBox) {
        let task_id = task.task_id;
        let log = TaskLog::new();
        let sink = Mutex::new(sink);
        let outcome = self.execute(task, &sink, &log);
        let sink = sink.into_inner().unwrap_or_else(PoisonError::into_inner);
        self.cancellations.forget(task_id);
        log.forward(&sink);
        sink.complete(outcome.into());
    }
}

/// A fixed set of threads running the tasks a backend submits. Drop shuts it down.
pub struct TaskPool {
    name: String,
    threads: usize,
    shared: Arc<Shared>,
    queue: Sender<Message>,
    /// Kept to drain what is left after the threads stopped.
    leftovers: Receiver<Message>,
    workers: Mutex<Vec<JoinHandle<()>>>,
    stopped: AtomicBool,
    shutdown_grace: Duration,
}

impl TaskPool {
    /// A pool that runs each task's in-process compute function on its threads.
    pub fn in_process(options: PoolOptions) -> Result<Self, PluginError_NE> {
        Self::start(options, |task, cancel| {
            let io = TaskIo { log: Some(cancel.log()), emit: Some(&|item| cancel.emit(item)) };
            run_compute_with(task, &|| cancel.is_cancelled(), io).into_result()
        })
    }

    /// A pool whose threads hand each task to `run` and complete its sink with
    /// what `run` returns. `run` polls [`Cancel::is_cancelled`] (or kills what
    /// runs the task) to honour cancellation and shutdown.
    pub fn start(
        options: PoolOptions,
        run: impl Fn(NodeTask, &Cancel<'_>) -> TaskOutcome + Send + Sync + 'static,
    ) -> Result<Self, PluginError_NE> {
        let PoolOptions { name, threads, shutdown_grace, spin_before_park, admission } = options;
        if threads == 0 {
            return Err(PluginError::invalid_config(format!("{name}: a pool needs at least one thread")));
        }
        let shared = Arc::new(Shared {
            run: Box::new(run),
            admission,
            cancellations: Cancellations::default(),
            spin_before_park,
        });
        let (queue, receiver) = crossbeam_channel::unbounded();
        let workers = (0..threads)
            .map(|i| {
                let (receiver, shared) = (receiver.clone(), shared.clone());
                std::thread::Builder::new()
                    .name(format!("{name}-{i}"))
                    .spawn(move || shared.work(&receiver))
                    .map_err(|e| PluginError::infrastructure(format!("{name}: cannot start a thread: {e}")))
            })
            .collect::<Result<Vec<_>, _>>();
        let pool = Self {
            name,
            threads,
            shared,
            queue,
            leftovers: receiver,
            workers: Mutex::new(Vec::new()),
            stopped: AtomicBool::new(false),
            shutdown_grace,
        };
        match workers {
            Ok(workers) => *pool.workers.lock().unwrap_or_else(PoisonError::into_inner) = workers,
            Err(error) => return Err(error), // dropping `pool` would stop no threads: none were kept
        }
        Ok(pool)
    }

    /// The number of threads: tasks that run at once.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Queues the task; returns at once. After shutdown the sink completes at
    /// once with an `infrastructure` error.
    ///
    /// A task with the [`FeedsItems`]
    /// extension runs on a thread of its own, beside the pool's: it waits
    /// for consumers that may need the pool's threads.
    pub fn submit(&self, task: NodeTask, sink: CompletionSinkBox) {
        if self.stopped.load(Ordering::Acquire) {
            return sink.complete(RResult::RErr(self.shut_down_error()));
        }
        if task.extensions.iter().any(|e| e.0 == <FeedsItems as TaskExtension>::KEY) {
            return self.run_beside(task, sink);
        }
        if let Err(crossbeam_channel::SendError(Message::Run(_, sink))) = self.queue.send(Message::Run(task, sink)) {
            sink.complete(RResult::RErr(self.shut_down_error()));
        }
    }

    fn run_beside(&self, task: NodeTask, sink: CompletionSinkBox) {
        // Shared with the thread, so a thread that cannot start leaves the task here to fail.
        let job = Arc::new(Mutex::new(Some((task, sink))));
        let (shared, on_thread) = (self.shared.clone(), job.clone());
        let started = std::thread::Builder::new().name(format!("{}-producer", self.name)).spawn(move || {
            if let Some((task, sink)) = on_thread.lock().unwrap_or_else(PoisonError::into_inner).take() {
                shared.run_one(task, sink);
            }
        });
        if let Err(e) = started
            && let Some((_, sink)) = job.lock().unwrap_or_else(PoisonError::into_inner).take()
        {
            let message = format!("{}: cannot start a thread for a streaming producer: {e}", self.name);
            sink.complete(RResult::RErr(PluginError::infrastructure(message)));
        }
    }

    /// Best effort, returns at once: a queued task completes as cancelled
    /// without starting, a running one sees [`Cancel::is_cancelled`].
    pub fn cancel(&self, task_id: u64) {
        self.shared.cancellations.insert(task_id);
    }

    /// Up, or down once shut down.
    pub fn health(&self) -> Health {
        match self.is_shut_down() {
            false => Health::up(),
            true => Health::down(format!("{} is shut down", self.name)),
        }
    }

    pub fn is_shut_down(&self) -> bool {
        self.stopped.load(Ordering::Acquire)
    }

    /// Refuses new work, completes queued tasks as cancelled, tells running
    /// ones to stop and waits up to the grace period for them. A thread still
    /// busy after that (a task that ignores cancellation) is left to finish on
    /// its own; its sink is still completed when it does.
    pub fn shutdown(&self) {
        self.stopped.store(true, Ordering::Release);
        self.shared.cancellations.all.store(true, Ordering::Release);
        let workers = std::mem::take(&mut *self.workers.lock().unwrap_or_else(PoisonError::into_inner));
        for _ in &workers {
            let _ = self.queue.send(Message::Stop);
        }
        let deadline = Instant::now() + self.shutdown_grace;
        while workers.iter().any(|w| !w.is_finished()) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(2));
        }
        for worker in workers.into_iter().filter(JoinHandle::is_finished) {
            let _ = worker.join();
        }
        // Tasks queued behind the stop messages, or submitted while stopping.
        while let Ok(message) = self.leftovers.try_recv() {
            if let Message::Run(task, sink) = message {
                self.shared.cancellations.forget(task.task_id);
                sink.complete(RResult::RErr(PluginError::cancelled()));
            }
        }
    }

    fn shut_down_error(&self) -> PluginError_NE {
        PluginError::infrastructure(format!("{} is shut down", self.name))
    }
}

impl Drop for TaskPool {
    fn drop(&mut self) {
        self.shutdown();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CompletionSink, CompletionSink_TO, PluginResult, abi_stable::sabi_trait::TD_Opaque, describe};
    use std::sync::mpsc;

    type Outcome = Option<Result<Vec<Payload>, PluginError_NE>>;

    /// Reports its result, or `None` when dropped without one.
    struct ChannelSink(Option<mpsc::Sender<Outcome>>);

    impl CompletionSink for ChannelSink {
        fn complete(mut self, result: PluginResult<RVec<Payload>>) {
            let _ = self.0.take().unwrap().send(Some(result.into_result().map(RVec::into_vec)));
        }
    }

    impl Drop for ChannelSink {
        fn drop(&mut self) {
            if let Some(sender) = self.0.take() {
                let _ = sender.send(None);
            }
        }
    }

    fn submit(pool: &TaskPool, task_id: u64) -> mpsc::Receiver<Outcome> {
        let (sender, receiver) = mpsc::channel();
        pool.submit(
            NodeTask { task_id, ..NodeTask::default() },
            CompletionSink_TO::from_value(ChannelSink(Some(sender)), TD_Opaque),
        );
        receiver
    }

    fn kind(receiver: &mpsc::Receiver<Outcome>) -> &'static str {
        match receiver.recv_timeout(Duration::from_secs(5)).expect("no completion in 5 s") {
            None => "dropped",
            Some(Ok(_)) => "ok",
            Some(Err(e)) => describe(&e),
        }
    }

    /// A pool whose tasks wait for cancellation, up to 10 s.
    fn sleepy(threads: usize) -> TaskPool {
        TaskPool::start(PoolOptions::new("sleepy", threads), |_, cancel| {
            let until = Instant::now() + Duration::from_secs(10);
            while !cancel.is_cancelled() && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(PluginError::cancelled())
        })
        .unwrap()
    }

    #[test]
    fn every_task_completes_once_with_what_run_returned() {
        let pool = TaskPool::start(PoolOptions::new("ok", 3), |task, _| match task.task_id % 3 {
            0 => Ok(vec![Payload::text("out", task.task_id.to_string())].into()),
            1 => Err(PluginError::node_failed("odd")),
            _ => panic!("boom"),
        })
        .unwrap();
        let receivers: Vec<_> = (0..300).map(|id| submit(&pool, id)).collect();
        for (id, receiver) in receivers.iter().enumerate() {
            assert_eq!(kind(receiver), ["ok", "node-failed", "panicked"][id % 3], "task {id}");
            assert!(receiver.try_recv().is_err(), "task {id} completed twice");
        }
    }

    #[test]
    fn a_task_that_feeds_items_runs_beside_the_threads_so_its_consumers_can_run() {
        // One thread; the producer waits for a consumer submitted after it.
        let consumed = Arc::new(AtomicBool::new(false));
        let flag = consumed.clone();
        let pool = TaskPool::start(PoolOptions::new("one", 1), move |task, _| {
            if task.task_id == 1 {
                let until = Instant::now() + Duration::from_secs(5);
                while !flag.load(Ordering::Acquire) && Instant::now() < until {
                    std::thread::sleep(Duration::from_millis(1));
                }
                assert_eq!(std::thread::current().name(), Some("one-producer"));
            } else {
                flag.store(true, Ordering::Release);
            }
            Ok(RVec::new())
        })
        .unwrap();
        let (sender, producer) = mpsc::channel();
        let extensions = vec![FeedsItems { ports: vec!["items".into()] }.to_extension()].into();
        pool.submit(
            NodeTask { task_id: 1, extensions, ..NodeTask::default() },
            CompletionSink_TO::from_value(ChannelSink(Some(sender)), TD_Opaque),
        );
        let consumer = submit(&pool, 2);
        assert_eq!(kind(&consumer), "ok");
        assert_eq!(kind(&producer), "ok");
        assert!(consumed.load(Ordering::Acquire), "the producer finished before its consumer ran");
    }

    #[test]
    fn cancel_skips_a_queued_task_and_reaches_a_running_one() {
        let pool = sleepy(1);
        let (running, queued) = (submit(&pool, 1), submit(&pool, 2));
        std::thread::sleep(Duration::from_millis(50));
        pool.cancel(2);
        pool.cancel(1);
        assert_eq!(kind(&running), "cancelled");
        assert_eq!(kind(&queued), "cancelled");
        assert_eq!(pool.shared.cancellations.count.load(Ordering::Acquire), 0, "finished tasks are forgotten");
    }

    #[test]
    fn shutdown_is_bounded_cancels_everything_and_refuses_new_work() {
        let stubborn =
            TaskPool::start(PoolOptions::new("stubborn", 1).shutdown_grace(Duration::from_millis(100)), |_, _| {
                std::thread::sleep(Duration::from_secs(2)); // ignores cancellation
                Ok(RVec::new())
            })
            .unwrap();
        let (running, queued) = (submit(&stubborn, 1), submit(&stubborn, 2));
        std::thread::sleep(Duration::from_millis(50));
        let started = Instant::now();
        stubborn.shutdown();
        assert!(started.elapsed() < Duration::from_secs(1), "shutdown took {:?}", started.elapsed());
        assert_eq!(kind(&queued), "cancelled", "a queued task is completed by shutdown itself");
        assert_eq!(kind(&submit(&stubborn, 3)), "infrastructure");
        assert_eq!(kind(&running), "ok", "the stuck task still completes its sink when it ends");
        assert_eq!(stubborn.health().status, crate::HealthStatus::DOWN);
    }

    #[test]
    fn admission_holds_a_task_until_it_may_start_or_refuses_it() {
        let opens = Instant::now() + Duration::from_millis(200);
        let options = PoolOptions::new("gated", 2).admission(move |task| match task.task_id {
            1 if Instant::now() < opens => Admission::WaitFor(Duration::from_millis(500)),
            2 => Admission::Refuse(PluginError::unsupported("not this one")),
            _ => Admission::Start,
        });
        let pool = TaskPool::start(options, |_, _| Ok(RVec::new())).unwrap();
        let (gated, refused) = (submit(&pool, 1), submit(&pool, 2));
        assert_eq!(kind(&refused), "unsupported");
        assert_eq!(kind(&gated), "ok");
        assert!(Instant::now() >= opens, "the task started before admission let it");

        // Cancellation reaches a task waiting for admission.
        let closed = TaskPool::start(
            PoolOptions::new("closed", 1).admission(|_| Admission::WaitFor(Duration::from_secs(60))),
            |_, _| Ok(RVec::new()),
        )
        .unwrap();
        let waiting = submit(&closed, 7);
        std::thread::sleep(Duration::from_millis(30));
        closed.cancel(7);
        assert_eq!(kind(&waiting), "cancelled");
    }

    #[test]
    fn zero_threads_is_an_invalid_config() {
        let error = TaskPool::in_process(PoolOptions::new("empty", 0)).err().unwrap();
        assert_eq!(describe(&error), "invalid-config");
    }
}
