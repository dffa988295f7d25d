//! Keeping this worker's presence entry fresh, so hosts see it alive with
//! what it runs and its counters.

use super::{Worker, heartbeat_for};
use async_nats::jetstream::{self, kv};
use backplane_worker_protocol::{PRESENCE_INTERVAL, TASKS_STREAM, WorkerAnnouncement, pool_consumer, presence_bucket};
use std::sync::{Arc, atomic::Ordering};
use tokio::sync::watch;

fn key(worker: &Worker) -> String {
    format!("{}.{}", worker.options.pool, worker.options.worker_id)
}

fn announcement(worker: &Worker, draining: bool) -> WorkerAnnouncement {
    WorkerAnnouncement {
        worker_id: worker.options.worker_id.clone(),
        pool: worker.options.pool.clone(),
        hostname: hostname(),
        pid: std::process::id(),
        tags: worker.options.tags.clone(),
        concurrency: worker.options.concurrency as u32,
        isolation: worker.options.isolation.name().into(),
        node_types: worker
            .host
            .nodes
            .sorted()
            .into_iter()
            .filter(|n| worker.allowed.allows(n.type_name()))
            .map(|n| (n.type_name().to_owned(), n.version().to_owned()))
            .collect(),
        counters: worker.counters.snapshot(),
        draining,
    }
}

pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "unknown".into())
}

/// Refreshes the entry every [`PRESENCE_INTERVAL`], and the heartbeat
/// interval from the pool consumer's current ack wait.
pub async fn announce(
    worker: Arc<Worker>,
    mut bucket: kv::Store,
    js: jetstream::Context,
    draining: watch::Receiver<bool>,
) {
    let key = key(&worker);
    let mut tick = tokio::time::interval(PRESENCE_INTERVAL);
    let mut last_error = None::<String>;
    loop {
        tick.tick().await;
        let value = serde_json::to_vec(&announcement(&worker, *draining.borrow())).unwrap_or_default();
        match bucket.put(&key, value.into()).await {
            Ok(_) => last_error = None,
            Err(e) => {
                let text = e.to_string();
                if last_error.as_ref() != Some(&text) {
                    tracing::warn!("cannot refresh this worker's presence: {text}");
                    last_error = Some(text);
                }
                // A server that lost its data (a new one at the same address)
                // needs the bucket again.
                if let Ok(recreated) = presence_bucket(&js).await {
                    bucket = recreated;
                }
            }
        }
        if let Ok(stream) = js.get_stream_no_info(TASKS_STREAM).await
            && let Ok(info) = stream.consumer_info(pool_consumer(&worker.options.pool)).await
        {
            worker.heartbeat_ms.store(heartbeat_for(info.config.ack_wait), Ordering::Relaxed);
        }
    }
}

/// Removes the entry at exit so hosts stop counting this worker at once.
pub async fn withdraw(worker: &Worker, bucket: &kv::Store) {
    if let Err(e) = bucket.delete(key(worker)).await {
        tracing::debug!("cannot remove this worker's presence: {e}");
    }
}
