//! Creating the streams, buckets and consumers both sides use. Either side
//! may start first, so both call these; creation is idempotent.

use crate::{PAYLOAD_BUCKET, PRESENCE_BUCKET, PRESENCE_TTL, RESULTS_STREAM, TASKS_STREAM, pool_consumer, task_subject};
use async_nats::jetstream::{
    self,
    consumer::{AckPolicy, PullConsumer, pull},
    kv,
    object_store::{self, ObjectStore},
    stream::DiscardPolicy,
    stream::{RetentionPolicy, StorageType},
};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
#[error("cannot set up {what} on NATS: {message}")]
pub struct SetupError {
    pub what: String,
    pub message: String,
}

fn failed(what: impl Into<String>) -> impl FnOnce(Box<dyn std::error::Error + Send + Sync>) -> SetupError {
    let what = what.into();
    move |e| SetupError { what, message: e.to_string() }
}

/// Two processes starting together both find a stream missing and both
/// create it; the second creation fails although the stream now exists.
fn created_meanwhile(
    e: Box<dyn std::error::Error + Send + Sync>,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let text = e.to_string();
    if text.contains("overlap") || text.contains("already in use") { Ok(()) } else { Err(e) }
}

/// Hosts purge the results they read; results nobody read within this time
/// (their host died) are dropped.
const RESULT_RETENTION: Duration = Duration::from_secs(3600);
/// Payload objects left behind by a dead host are dropped after this.
const PAYLOAD_RETENTION: Duration = Duration::from_secs(24 * 3600);
/// Republishing the same task id within this window is ignored.
const DEDUPLICATION_WINDOW: Duration = Duration::from_secs(120);

/// The task and result streams, on disk so they survive a server restart.
pub async fn ensure_streams(js: &jetstream::Context) -> Result<(), SetupError> {
    js.get_or_create_stream(jetstream::stream::Config {
        name: TASKS_STREAM.into(),
        description: Some("Backplane tasks waiting for a worker".into()),
        subjects: vec!["bp.tasks.*".into()],
        retention: RetentionPolicy::WorkQueue,
        storage: StorageType::File,
        duplicate_window: DEDUPLICATION_WINDOW,
        ..Default::default()
    })
    .await
    .map(|_| ())
    .or_else(|e| created_meanwhile(e.into()))
    .map_err(failed(format!("the stream {TASKS_STREAM}")))?;
    js.get_or_create_stream(jetstream::stream::Config {
        name: RESULTS_STREAM.into(),
        description: Some("Backplane results waiting for their host".into()),
        subjects: vec!["bp.results.*".into()],
        retention: RetentionPolicy::Limits,
        storage: StorageType::File,
        max_age: RESULT_RETENTION,
        duplicate_window: DEDUPLICATION_WINDOW,
        ..Default::default()
    })
    .await
    .map(|_| ())
    .or_else(|e| created_meanwhile(e.into()))
    .map_err(failed(format!("the stream {RESULTS_STREAM}")))?;
    Ok(())
}

/// How the pool's shared consumer hands out tasks.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PoolConsumerSettings {
    /// A task not acknowledged (nor kept alive by progress acks) for this
    /// long goes to another worker: how fast a dead worker's tasks move.
    pub ack_wait: Duration,
    /// Tasks handed out and not yet acknowledged, across the pool.
    pub max_ack_pending: i64,
}

impl Default for PoolConsumerSettings {
    fn default() -> Self {
        Self { ack_wait: Duration::from_secs(30), max_ack_pending: 20_000 }
    }
}

/// The durable consumer every worker of `pool` pulls from. With `update`,
/// an existing consumer takes `settings` (the backend's config decides);
/// without, an existing consumer is used as it is (workers follow it).
pub async fn ensure_pool_consumer(
    js: &jetstream::Context,
    pool: &str,
    settings: PoolConsumerSettings,
    update: bool,
) -> Result<PullConsumer, SetupError> {
    let name = pool_consumer(pool);
    let what = format!("the consumer {name} of {TASKS_STREAM}");
    let stream = js.get_stream(TASKS_STREAM).await.map_err(|e| failed(what.clone())(e.into()))?;
    if !update && let Ok(consumer) = stream.get_consumer::<pull::Config>(&name).await {
        return Ok(consumer);
    }
    let config = pull::Config {
        durable_name: Some(name.clone()),
        description: Some(format!("workers of pool {pool}")),
        filter_subject: task_subject(pool),
        ack_policy: AckPolicy::Explicit,
        ack_wait: settings.ack_wait,
        // Workers enforce each task's own delivery limit (its header), so a
        // task over its limit is reported, not silently dropped.
        max_deliver: -1,
        max_ack_pending: settings.max_ack_pending,
        ..Default::default()
    };
    stream.create_consumer(config).await.map_err(|e| failed(what)(e.into()))
}

/// The presence bucket; entries expire when their worker stops refreshing them.
///
/// Its stream is created by hand with the settings `create_key_value` would
/// use: the client's own call first asks for account information in a shape
/// nats-server 2.9 does not send.
pub async fn presence_bucket(js: &jetstream::Context) -> Result<kv::Store, SetupError> {
    let what = format!("the key-value bucket {PRESENCE_BUCKET}");
    if let Ok(store) = js.get_key_value(PRESENCE_BUCKET).await {
        return Ok(store);
    }
    js.get_or_create_stream(jetstream::stream::Config {
        name: format!("KV_{PRESENCE_BUCKET}"),
        description: Some("live Backplane workers".into()),
        subjects: vec![format!("$KV.{PRESENCE_BUCKET}.>")],
        max_messages_per_subject: 1,
        max_age: PRESENCE_TTL * 2,
        // On disk, so workers stay visible across a server restart.
        storage: StorageType::File,
        allow_rollup: true,
        deny_delete: true,
        allow_direct: true,
        discard: DiscardPolicy::New,
        num_replicas: 1,
        ..Default::default()
    })
    .await
    .map(|_| ())
    .or_else(|e| created_meanwhile(e.into()))
    .map_err(|e| failed(what.clone())(e))?;
    js.get_key_value(PRESENCE_BUCKET).await.map_err(|e| failed(what)(e.into()))
}

/// The object store for large payloads.
pub async fn payload_store(js: &jetstream::Context) -> Result<ObjectStore, SetupError> {
    if let Ok(store) = js.get_object_store(PAYLOAD_BUCKET).await {
        return Ok(store);
    }
    let created = js
        .create_object_store(object_store::Config {
            bucket: PAYLOAD_BUCKET.into(),
            description: Some("Backplane payloads too large for a message".into()),
            max_age: PAYLOAD_RETENTION,
            storage: StorageType::File,
            ..Default::default()
        })
        .await;
    match created {
        Ok(store) => Ok(store),
        // Created by another process meanwhile?
        Err(e) => js
            .get_object_store(PAYLOAD_BUCKET)
            .await
            .map_err(|_| failed(format!("the object store {PAYLOAD_BUCKET}"))(e.into())),
    }
}
