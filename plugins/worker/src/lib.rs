//! `worker`: runs nodes on remote `backplane worker` services through a NATS
//! JetStream work queue.
//!
//! # Core concepts
//!
//! - An instance owns a NATS connection and a small tokio runtime (the
//!   host's runtime is invisible inside a dylib). `submit` only records the
//!   task and hands it to the runtime, which publishes it to the pool's
//!   subject with the task's key as `Nats-Msg-Id` (republishing is harmless).
//! - Results arrive on this instance's own subject of the results stream,
//!   read by an ordered consumer that survives reconnects.
//! - [`pending::PendingTasks`] holds each task's sink until the first of
//!   result, cancel, timeout, "no worker can run it" or shutdown takes it:
//!   each task completes exactly once.
//! - [`pool::PoolView`] follows the pool's presence bucket: live capabilities
//!   and health come from the workers present now.

mod config;
mod pending;
mod pool;
mod transport;

use backplane_plugin_api::{Health, log_debug, prelude::*, wire::TaskMessage};
use pending::Pending;
use std::{
    sync::{Arc, Mutex, atomic::Ordering},
    time::{Duration, Instant},
};
use transport::Shared;

pub use config::WorkerConfig;

pub struct WorkerBackend {
    shared: Arc<Shared>,
    outbox: tokio::sync::mpsc::UnboundedSender<TaskMessage>,
    runtime: Mutex<Option<tokio::runtime::Runtime>>,
}

impl BackendPlugin for WorkerBackend {
    const NAME: &'static str = "worker";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str =
        "Runs nodes on `backplane worker` services that pull tasks from a NATS JetStream work queue";
    type Config = config::Strict<WorkerConfig>;

    fn config_schema() -> serde_json::Value {
        config::schema()
    }

    fn capabilities() -> Capabilities {
        pool::static_capabilities()
    }

    fn create(config::Strict(config): config::Strict<WorkerConfig>) -> Result<Self, PluginError_NE> {
        let settings = config.validate().map_err(|e| PluginError::invalid_config(format!("worker backend: {e}")))?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("backplane-worker-nats")
            .enable_all()
            .build()
            .map_err(|e| PluginError::infrastructure(format!("worker backend: cannot start its runtime: {e}")))?;
        let (outbox, inbox) = tokio::sync::mpsc::unbounded_channel();
        let shared = runtime.block_on(transport::start(settings, inbox))?;
        log_debug!("worker backend {} connected, pool `{}`", shared.host_id, shared.settings.pool);
        Ok(Self { shared, outbox, runtime: Mutex::new(Some(runtime)) })
    }

    fn live_capabilities(&self) -> Capabilities {
        pool::live_capabilities(&self.shared.pool.live())
    }

    fn submit(&self, task: NodeTask, sink: CompletionSinkBox) {
        if self.shared.closed.load(Ordering::Acquire) {
            sink.complete(RResult::RErr(PluginError::infrastructure("worker backend is shut down")));
            return;
        }
        let message = TaskMessage::from_task(task);
        self.shared.pending.insert(
            message.task_id,
            Pending {
                sink,
                node_type: message.node_type.clone(),
                node_version: message.node_version.clone(),
                submitted: Instant::now(),
                sequence: None,
                input_objects: Vec::new(),
                unrunnable_since: None,
            },
        );
        if let Err(returned) = self.outbox.send(message)
            && let Some(pending) = self.shared.pending.take(returned.0.task_id)
        {
            pending.complete(Err(PluginError::infrastructure("worker backend is shut down")));
        }
    }

    fn cancel(&self, task_id: u64) {
        if let Some(pending) = self.shared.pending.take(task_id) {
            let handle = self.handle();
            if let Some(handle) = handle {
                handle.spawn(transport::withdraw(self.shared.clone(), task_id, pending.sequence));
            }
            pending.complete(Err(PluginError::cancelled()));
        }
    }

    fn health(&self) -> Health {
        let workers = self.shared.pool.live();
        let degraded = |message: String| Health::degraded(message);
        if !self.shared.connected() {
            return degraded(format!(
                "lost the connection to NATS at {}; reconnecting (queued tasks wait in the stream)",
                self.shared.settings.urls.join(",")
            ));
        }
        if workers.is_empty() {
            return degraded(format!("no live workers in pool `{}`", self.shared.settings.pool));
        }
        Health { message: format!("{} workers: {}", workers.len(), pool::describe(&workers)).into(), ..Health::up() }
    }

    fn shutdown(&self) {
        self.shared.closed.store(true, Ordering::Release);
        let Some(runtime) = self.runtime.lock().unwrap_or_else(|e| e.into_inner()).take() else { return };
        let abandoned = self.shared.pending.take_all();
        let withdrawals: Vec<_> = abandoned
            .iter()
            .map(|(id, pending)| transport::withdraw(self.shared.clone(), *id, pending.sequence))
            .collect();
        for (_, pending) in abandoned {
            pending.complete(Err(PluginError::cancelled()));
        }
        // Tell workers and the stream before the connection goes, but never hang on it.
        let shared = self.shared.clone();
        runtime.block_on(async move {
            let work = async {
                for withdrawal in withdrawals {
                    withdrawal.await;
                }
                let _ = shared.client.flush().await;
            };
            let _ = tokio::time::timeout(Duration::from_secs(2), work).await;
        });
        runtime.shutdown_timeout(Duration::from_secs(1));
    }
}

impl WorkerBackend {
    fn handle(&self) -> Option<tokio::runtime::Handle> {
        self.runtime.lock().unwrap_or_else(|e| e.into_inner()).as_ref().map(|r| r.handle().clone())
    }
}

impl Drop for WorkerBackend {
    fn drop(&mut self) {
        self.shutdown();
    }
}

backplane_plugin_api::export_plugin! {
    backends: [WorkerBackend],
    nodes: [],
}
