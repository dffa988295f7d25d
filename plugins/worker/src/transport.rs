//! The instance's async side, on its own runtime: publishing tasks, reading
//! results, following worker presence and expiring tasks nobody can run.

use crate::{config::Settings, pending::PendingTasks, pool::PoolView};
use async_nats::{
    Client, HeaderMap,
    connection::State,
    jetstream::{
        self,
        consumer::{DeliverPolicy, pull::OrderedConfig},
        kv::Operation,
        message::PublishMessage,
        object_store::ObjectStore,
    },
};
use backplane_plugin_api::{
    PluginError, PluginError_NE, log_debug, log_warn,
    wire::{TaskMessage, TaskReport, read_result},
};
use backplane_worker_protocol::{
    RESULTS_STREAM, TASKS_STREAM, WorkerAnnouncement, cancel_subject, connect, ensure_pool_consumer, ensure_streams,
    headers, objects, payload_store, presence_bucket, result_subject, task_subject,
};
use futures_util::{StreamExt, stream::FuturesUnordered};
use std::{
    sync::{Arc, atomic::AtomicBool},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};
use tokio::sync::mpsc::UnboundedReceiver;

/// Everything the instance's tasks share with its ABI methods.
pub struct Shared {
    pub settings: Settings,
    /// Unique per instance: names its result subject and prefixes task keys.
    pub host_id: String,
    pub client: Client,
    js: jetstream::Context,
    payloads: ObjectStore,
    tasks_stream: jetstream::stream::Stream,
    pub pending: PendingTasks,
    pub pool: PoolView,
    pub closed: AtomicBool,
}

impl Shared {
    pub fn connected(&self) -> bool {
        self.client.connection_state() == State::Connected
    }

    /// The task's key on the wire: `Nats-Msg-Id` for deduplication, and what
    /// cancellations name. Task ids restart with every run; keys never repeat.
    fn task_key(&self, task_id: u64) -> String {
        format!("{}.{task_id}", self.host_id)
    }

    fn fail(&self, task_id: u64, error: PluginError_NE) {
        if let Some(pending) = self.pending.take(task_id) {
            pending.complete(Err(error));
        }
    }
}

fn infrastructure(message: impl std::fmt::Display) -> impl FnOnce(String) -> PluginError_NE {
    let prefix = message.to_string();
    move |detail| PluginError::infrastructure(format!("{prefix}: {detail}"))
}

fn unique_host_id() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static INSTANCES: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    format!("h{}x{:x}x{}", std::process::id(), nanos, INSTANCES.fetch_add(1, Ordering::Relaxed))
}

/// Connects, makes sure the streams, buckets and the pool's consumer exist,
/// and starts the background tasks. Every failure is reported here, at
/// instance creation, with what to fix.
pub async fn start(settings: Settings, outbox: UnboundedReceiver<TaskMessage>) -> Result<Arc<Shared>, PluginError_NE> {
    let host_id = unique_host_id();
    let client =
        connect(&settings.urls, &settings.auth, &format!("backplane host {host_id}"), settings.connect_timeout)
            .await
            .map_err(|e| match e {
            backplane_worker_protocol::ConnectError::Rejected { .. }
            | backplane_worker_protocol::ConnectError::Unreachable { .. }
            | backplane_worker_protocol::ConnectError::Tls { .. } => PluginError::infrastructure(e.to_string()),
            _ => PluginError::invalid_config(e.to_string()),
        })?;
    let js = jetstream::new(client.clone());
    let setup = |e: backplane_worker_protocol::SetupError| PluginError::infrastructure(e.to_string());
    ensure_streams(&js).await.map_err(setup)?;
    ensure_pool_consumer(&js, &settings.pool, settings.consumer, true).await.map_err(setup)?;
    let payloads = payload_store(&js).await.map_err(setup)?;
    let presence = presence_bucket(&js).await.map_err(setup)?;
    let get_stream = |name: &'static str| {
        let js = js.clone();
        async move {
            js.get_stream(name).await.map_err(|e| infrastructure(format!("cannot open stream {name}"))(e.to_string()))
        }
    };
    let tasks_stream = get_stream(TASKS_STREAM).await?;
    let results_stream = get_stream(RESULTS_STREAM).await?;
    let watch = presence
        .watch_with_history(format!("{}.*", settings.pool))
        .await
        .map_err(|e| infrastructure("cannot watch worker presence")(e.to_string()))?;
    let results = open_results(&results_stream, &host_id, None).await?;
    let pool = PoolView::default();
    // Know the workers present before the first `capabilities`/`health` call.
    if let Ok(mut keys) = presence.keys().await {
        while let Some(Ok(key)) = keys.next().await {
            if let Ok(Some(value)) = presence.get(&key).await
                && let Ok(announcement) = serde_json::from_slice::<WorkerAnnouncement>(&value)
                && announcement.pool == settings.pool
            {
                pool.update(&key, announcement);
            }
        }
    }
    let shared = Arc::new(Shared {
        settings,
        host_id,
        client,
        js,
        payloads,
        tasks_stream,
        pending: PendingTasks::default(),
        pool,
        closed: AtomicBool::new(false),
    });
    tokio::spawn(publish_tasks(shared.clone(), outbox));
    tokio::spawn(read_results(shared.clone(), results_stream, results));
    tokio::spawn(follow_presence(shared.clone(), presence, watch));
    tokio::spawn(expire_tasks(shared.clone()));
    Ok(shared)
}

// ---- publishing -------------------------------------------------------------

fn task_headers(shared: &Shared, message: &TaskMessage) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(async_nats::header::NATS_MESSAGE_ID, shared.task_key(message.task_id).as_str());
    h.insert(headers::TASK_ID, message.task_id.to_string().as_str());
    h.insert(headers::REPLY_TO, result_subject(&shared.host_id).as_str());
    h.insert(headers::MAX_DELIVERIES, shared.settings.max_deliveries.to_string().as_str());
    h.insert(headers::INLINE_LIMIT, shared.settings.inline_limit.to_string().as_str());
    h.insert(headers::BACKOFF, headers::format_backoff(&shared.settings.backoff).as_str());
    h
}

fn encode(message: &TaskMessage) -> Result<bytes::Bytes, PluginError_NE> {
    let mut body = Vec::with_capacity(256 + message.inputs.iter().map(|p| p.data.len() + 64).sum::<usize>());
    message.write_to(&mut body).map_err(|e| PluginError::infrastructure(format!("cannot encode the task: {e}")))?;
    Ok(body.into())
}

type AckFuture = jetstream::context::PublishAckFuture;

async fn send(shared: &Shared, message: &TaskMessage) -> Result<AckFuture, PluginError_NE> {
    let publish = PublishMessage::build().payload(encode(message)?).headers(task_headers(shared, message));
    shared.js.send_publish(task_subject(&shared.settings.pool), publish).await.map_err(|e| {
        infrastructure(format!("cannot publish the task to NATS at {}", shared.settings.urls.join(",")))(e.to_string())
    })
}

fn confirmed(
    shared: &Shared,
    task_id: u64,
    ack: Result<jetstream::publish::PublishAck, jetstream::context::PublishError>,
) {
    match ack {
        Ok(ack) => {
            shared.pending.with(task_id, |p| p.sequence = Some(ack.sequence));
        }
        Err(e) => shared.fail(task_id, PluginError::infrastructure(format!("NATS did not store the task: {e}"))),
    }
}

/// Publishes tasks in submission order without waiting for each
/// acknowledgement: acknowledgements are awaited together.
async fn publish_tasks(shared: Arc<Shared>, mut outbox: UnboundedReceiver<TaskMessage>) {
    let mut acks = FuturesUnordered::new();
    loop {
        tokio::select! {
            message = outbox.recv() => {
                let Some(message) = message else { break };
                if objects::needs_offload(&message.inputs, shared.settings.inline_limit) {
                    tokio::spawn(publish_large(shared.clone(), message));
                    continue;
                }
                match send(&shared, &message).await {
                    Ok(ack) => acks.push(async move { (message.task_id, ack.await) }),
                    Err(e) => shared.fail(message.task_id, e),
                }
            }
            Some((task_id, ack)) = acks.next(), if !acks.is_empty() => confirmed(&shared, task_id, ack),
        }
    }
    while let Some((task_id, ack)) = acks.next().await {
        confirmed(&shared, task_id, ack);
    }
}

/// A task with large inputs: the inputs go to the object store first.
async fn publish_large(shared: Arc<Shared>, mut message: TaskMessage) {
    let id = message.task_id;
    let prefix = format!("{}.in", shared.task_key(id));
    let stored =
        match objects::offload(&shared.payloads, &mut message.inputs, shared.settings.inline_limit, &prefix).await {
            Ok(stored) => stored,
            Err(e) => return shared.fail(id, PluginError::infrastructure(e.to_string())),
        };
    let kept = shared.pending.with(id, |p| p.input_objects = stored.clone()).is_some();
    if !kept {
        // Cancelled meanwhile.
        objects::delete(&shared.payloads, &stored).await;
        return;
    }
    match send(&shared, &message).await {
        Ok(ack) => confirmed(&shared, id, ack.await),
        Err(e) => shared.fail(id, e),
    }
}

/// Removes a task nobody waits for any more: from the stream if no worker
/// took it yet, from workers running it, and its input objects.
pub async fn withdraw(shared: Arc<Shared>, task_id: u64, sequence: Option<u64>) {
    if let Some(sequence) = sequence {
        // Fails harmlessly when a worker already acknowledged it.
        let _ = shared.tasks_stream.delete_message(sequence).await;
    }
    let key = shared.task_key(task_id);
    if let Err(e) = shared.client.publish(cancel_subject(&shared.settings.pool), key.into()).await {
        log_debug!("cannot broadcast the cancellation of task {task_id}: {e}");
    }
}

async fn delete_objects(shared: &Shared, names: &[String]) {
    for e in objects::delete(&shared.payloads, names).await {
        log_debug!("{e}");
    }
}

// ---- results ----------------------------------------------------------------

type Results = jetstream::consumer::pull::Ordered;

/// How often results already read are purged from the results stream.
const RESULT_PURGE_INTERVAL: Duration = Duration::from_secs(1);

async fn open_results(
    stream: &jetstream::stream::Stream,
    host_id: &str,
    after: Option<u64>,
) -> Result<Results, PluginError_NE> {
    let consumer = stream
        .create_consumer(OrderedConfig {
            filter_subject: result_subject(host_id),
            deliver_policy: match after {
                Some(sequence) => DeliverPolicy::ByStartSequence { start_sequence: sequence + 1 },
                // The subject is this instance's own: everything on it is ours.
                None => DeliverPolicy::All,
            },
            ..Default::default()
        })
        .await
        .map_err(|e| infrastructure("cannot read results from NATS")(e.to_string()))?;
    consumer.messages().await.map_err(|e| infrastructure("cannot read results from NATS")(e.to_string()))
}

/// Resolves when the client is connected again after having been
/// disconnected. Consumers the server forgot in a restart notice it only
/// after their heartbeats lapse (many seconds); this notices at once.
struct Reconnects {
    client: Client,
    was_down: bool,
}

impl Reconnects {
    fn new(client: &Client) -> Self {
        Self { client: client.clone(), was_down: false }
    }

    async fn next(&mut self) {
        loop {
            tokio::time::sleep(Duration::from_millis(50)).await;
            match self.client.connection_state() {
                State::Connected if self.was_down => {
                    self.was_down = false;
                    return;
                }
                State::Connected => {}
                _ => self.was_down = true,
            }
        }
    }
}

async fn read_results(shared: Arc<Shared>, stream: jetstream::stream::Stream, mut results: Results) {
    let mut last_sequence = None;
    let mut purged_below = 0;
    let mut reconnects = Reconnects::new(&shared.client);
    let mut purge = tokio::time::interval(RESULT_PURGE_INTERVAL);
    loop {
        tokio::select! {
            next = results.next() => match next {
                Some(Ok(message)) => {
                    if let Ok(info) = message.info() {
                        last_sequence = Some(info.stream_sequence);
                    }
                    on_result(&shared, message.message);
                    continue;
                }
                Some(Err(e)) => log_debug!("reading results: {e}"),
                None => {}
            },
            () = reconnects.next() => log_debug!("reconnected to NATS: reading results anew"),
            _ = purge.tick() => {
                // Results already read are of no use to anyone: drop them
                // rather than keep them for the stream's age limit.
                if let Some(last) = last_sequence.filter(|last| *last >= purged_below) {
                    match stream.purge().filter(result_subject(&shared.host_id)).sequence(last + 1).await {
                        Ok(_) => purged_below = last + 1,
                        Err(e) => log_debug!("cannot purge read results: {e}"),
                    }
                }
                continue;
            }
        }
        // The ordered consumer gave up (its server restarted and forgot it):
        // start a new one after the last result seen, once the server is back.
        loop {
            if shared.closed.load(std::sync::atomic::Ordering::Acquire) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
            match open_results(&stream, &shared.host_id, last_sequence).await {
                Ok(reopened) => {
                    results = reopened;
                    break;
                }
                Err(e) => log_debug!("{e}"),
            }
        }
    }
}

fn on_result(shared: &Arc<Shared>, message: async_nats::Message) {
    let Some(task_id) = headers::number(message.headers.as_ref(), headers::TASK_ID) else {
        log_warn!("ignoring a result without a {} header on {}", headers::TASK_ID, message.subject);
        return;
    };
    let worker = headers::text(message.headers.as_ref(), headers::WORKER).unwrap_or("unknown").to_owned();
    let mut body = &message.payload[..];
    let result = read_result(&mut body)
        .unwrap_or_else(|e| Err(PluginError::infrastructure(format!("malformed result from worker {worker}: {e}"))));
    // When the task started and what its node logged (workers before 1.2 send neither).
    let report = TaskReport::read_from(&mut body).unwrap_or_default();
    let Some(pending) = shared.pending.take(task_id) else {
        // Cancelled, timed out, or a duplicate: drop it and what it stored.
        log_debug!("ignoring a late result for task {task_id} from worker {worker}");
        if let Ok(outputs) = result {
            let shared = shared.clone();
            tokio::spawn(async move { delete_objects(&shared, &objects::referenced(&outputs)).await });
        }
        return;
    };
    match result {
        Ok(outputs) if !objects::referenced(&outputs).is_empty() => {
            let shared = shared.clone();
            tokio::spawn(async move {
                let mut outputs = outputs;
                let fetched = objects::resolve(&shared.payloads, &mut outputs).await;
                let mut used = pending.input_objects.clone();
                used.extend(objects::referenced(&outputs));
                let result = match fetched {
                    Ok(names) => {
                        used.extend(names);
                        Ok(outputs)
                    }
                    Err(e) => Err(PluginError::infrastructure(e.to_string())),
                };
                report.forward(&pending.sink);
                pending.complete(result);
                delete_objects(&shared, &used).await;
            });
        }
        result => {
            let inputs = pending.input_objects.clone();
            report.forward(&pending.sink);
            pending.complete(result);
            if !inputs.is_empty() {
                let shared = shared.clone();
                tokio::spawn(async move { delete_objects(&shared, &inputs).await });
            }
        }
    }
}

// ---- presence and expiry ------------------------------------------------------

async fn follow_presence(shared: Arc<Shared>, bucket: jetstream::kv::Store, mut watch: jetstream::kv::Watch) {
    let mut reconnects = Reconnects::new(&shared.client);
    loop {
        loop {
            let entry = tokio::select! {
                entry = watch.next() => entry,
                () = reconnects.next() => break,
            };
            let Some(entry) = entry else { break };
            match entry {
                Ok(entry) => match entry.operation {
                    Operation::Put => match serde_json::from_slice::<WorkerAnnouncement>(&entry.value) {
                        Ok(announcement) => shared.pool.update(&entry.key, announcement),
                        Err(e) => log_warn!("ignoring a malformed presence entry `{}`: {e}", entry.key),
                    },
                    Operation::Delete | Operation::Purge => shared.pool.remove(&entry.key),
                },
                Err(e) => {
                    // As for results: after an error, start over.
                    log_debug!("watching worker presence: {e}");
                    break;
                }
            }
        }
        if shared.closed.load(std::sync::atomic::Ordering::Acquire) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        match bucket.watch_with_history(format!("{}.*", shared.settings.pool)).await {
            Ok(w) => watch = w,
            Err(e) => log_debug!("watching worker presence: {e}"),
        }
    }
}

fn no_worker_message(shared: &Shared, node_type: &str, version: &str, waited: Duration) -> String {
    let pool = &shared.settings.pool;
    let workers = shared.pool.live();
    let present = if workers.is_empty() {
        format!("no worker of pool `{pool}` is alive")
    } else {
        let has: Vec<String> = workers
            .iter()
            .map(|w| match w.node_types.get(node_type) {
                Some(v) => format!("{} has version {v}", w.worker_id),
                None => format!("{} does not have it", w.worker_id),
            })
            .collect();
        format!("no live worker of pool `{pool}` runs it ({})", has.join(", "))
    };
    format!(
        "no worker can run node type `{node_type}` {version} after waiting {:.1}s: {present}; start one with \
         `backplane worker --nats <url> --pool {pool}` and the node's plugin on its plugin path",
        waited.as_secs_f64()
    )
}

/// Every 100 ms: fails tasks past the instance's task timeout, and tasks no
/// live worker could run for `no_worker_timeout`.
async fn expire_tasks(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !shared.closed.load(std::sync::atomic::Ordering::Acquire) {
        tick.tick().await;
        if shared.pending.len() == 0 {
            continue;
        }
        let workers = shared.pool.live();
        let now = Instant::now();
        let settings = &shared.settings;
        let expired = shared.pending.take_expired(|p| {
            if let Some(limit) = settings.task_timeout
                && p.age() > limit
            {
                return Some(PluginError::timed_out(format!(
                    "task not finished {:.1}s after submission (task_timeout_secs)",
                    limit.as_secs_f64()
                )));
            }
            if workers.iter().any(|w| w.runs(&p.node_type, &p.node_version)) {
                p.unrunnable_since = None;
                return None;
            }
            let since = *p.unrunnable_since.get_or_insert(now);
            (now.duration_since(since) >= settings.no_worker_timeout).then(|| {
                PluginError::infrastructure(no_worker_message(
                    &shared,
                    &p.node_type,
                    &p.node_version,
                    now.duration_since(since),
                ))
            })
        });
        for (task_id, pending, error) in expired {
            let objects = pending.input_objects.clone();
            tokio::spawn(withdraw(shared.clone(), task_id, pending.sequence));
            pending.complete(Err(error));
            delete_objects(&shared, &objects).await;
        }
    }
}
