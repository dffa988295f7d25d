//! `[cache.shared]`: the result cache's second tier on NATS JetStream, so
//! hosts on several machines share hits. Records live in a key-value bucket
//! (key: the cache key in hex), blobs in an object store (name: their
//! BLAKE3). The server and credentials are the worker backend's.
//!
//! The host library only knows the [`SharedTier`] trait; the NATS client runs
//! on a runtime of its own, and every call is bounded by [`CALL_TIMEOUT`].

use async_nats::jetstream::{
    self, kv,
    object_store::{self, ObjectMetadata, ObjectStore},
    stream::StorageType,
};
use backplane_cache::{Digest, Key, SharedTier, key::hex};
use backplane_host::config::cache::SharedCacheConfig;
use backplane_worker_protocol::NatsAuth;
use std::time::Duration;
use tokio::io::AsyncReadExt;

/// Longest a lookup (of one round of keys) or a store may take before the
/// tier counts as failed.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Lookups in flight at once.
const CONCURRENT_GETS: usize = 64;

pub struct NatsTier {
    runtime: Option<tokio::runtime::Runtime>,
    records: kv::Store,
    blobs: ObjectStore,
    describe: String,
}

impl NatsTier {
    pub fn connect(config: &SharedCacheConfig) -> Result<Self, String> {
        let auth: NatsAuth = serde_json::from_value(config.auth.clone()).map_err(|e| format!("[cache.shared]: {e}"))?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("backplane-shared-cache")
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        let describe = format!("bucket {} on {}", config.bucket, config.servers.join(","));
        let (records, blobs) = runtime.block_on(async {
            let client =
                backplane_worker_protocol::connect(&config.servers, &auth, "backplane-cache", Duration::from_secs(5))
                    .await
                    .map_err(|e| e.to_string())?;
            let js = jetstream::new(client);
            Ok::<_, String>((record_bucket(&js, &config.bucket).await?, blob_store(&js, &config.bucket).await?))
        })?;
        Ok(Self { runtime: Some(runtime), records, blobs, describe })
    }

    /// Runs `work` on the tier's runtime and waits for it, at most [`CALL_TIMEOUT`].
    fn call<T: Send + 'static>(
        &self,
        work: impl Future<Output = Result<T, String>> + Send + 'static,
    ) -> Result<T, String> {
        let runtime = self.runtime.as_ref().ok_or("the shared cache is closed")?;
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        runtime.spawn(async move {
            let _ = tx.send(tokio::time::timeout(CALL_TIMEOUT, work).await);
        });
        match rx.recv() {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(format!("no answer within {}s", CALL_TIMEOUT.as_secs())),
            Err(_) => Err("the shared cache's runtime stopped".into()),
        }
    }
}

impl Drop for NatsTier {
    fn drop(&mut self) {
        // Dropped from the engine's runtime possibly: never block there.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl SharedTier for NatsTier {
    fn describe(&self) -> String {
        self.describe.clone()
    }

    fn get_record(&self, key: &Key) -> Result<Option<Vec<u8>>, String> {
        let (records, name) = (self.records.clone(), key.to_string());
        self.call(async move { records.get(name).await.map(|v| v.map(|b| b.to_vec())).map_err(|e| e.to_string()) })
    }

    fn get_blob(&self, hash: &Digest) -> Result<Option<Vec<u8>>, String> {
        let (blobs, name) = (self.blobs.clone(), hex(hash));
        self.call(async move {
            let mut object = match blobs.get(&name).await {
                Ok(object) => object,
                Err(e) if e.kind() == object_store::GetErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(e.to_string()),
            };
            let mut data = Vec::with_capacity(object.info.size);
            object.read_to_end(&mut data).await.map_err(|e| e.to_string())?;
            Ok(Some(data))
        })
    }

    fn get_records(&self, keys: &[Key]) -> Vec<Result<Option<Vec<u8>>, String>> {
        use futures_util::StreamExt;
        let records = self.records.clone();
        let names: Vec<String> = keys.iter().map(Key::to_string).collect();
        let count = names.len();
        let answers = self.call(async move {
            let gets = futures_util::stream::iter(names).map(|name| {
                let records = records.clone();
                async move { records.get(name).await.map(|v| v.map(|b| b.to_vec())).map_err(|e| e.to_string()) }
            });
            Ok(gets.buffered(CONCURRENT_GETS).collect::<Vec<_>>().await)
        });
        match answers {
            Ok(answers) => answers,
            Err(e) => vec![Err(e); count],
        }
    }

    fn put_record(&self, key: &Key, record: &[u8]) -> Result<(), String> {
        let (records, name, value) = (self.records.clone(), key.to_string(), bytes::Bytes::copy_from_slice(record));
        self.call(async move { records.put(name, value).await.map(drop).map_err(|e| e.to_string()) })
    }

    fn put_blob(&self, hash: &Digest, data: &[u8]) -> Result<(), String> {
        let (blobs, name, data) = (self.blobs.clone(), hex(hash), data.to_vec());
        self.call(async move {
            // Content-addressed: one already there is the same bytes.
            if blobs.info(&name).await.is_ok() {
                return Ok(());
            }
            let meta = ObjectMetadata { name, chunk_size: Some(128 << 10), ..Default::default() };
            blobs.put(meta, &mut data.as_slice()).await.map(drop).map_err(|e| e.to_string())
        })
    }
}

/// The records bucket, created by hand with `create_key_value`'s settings
/// (its own call asks nats-server 2.9 for account information it does not send).
async fn record_bucket(js: &jetstream::Context, bucket: &str) -> Result<kv::Store, String> {
    if let Ok(store) = js.get_key_value(bucket).await {
        return Ok(store);
    }
    let created = js
        .get_or_create_stream(jetstream::stream::Config {
            name: format!("KV_{bucket}"),
            description: Some("Backplane result cache entries".into()),
            subjects: vec![format!("$KV.{bucket}.>")],
            max_messages_per_subject: 1,
            storage: StorageType::File,
            allow_rollup: true,
            deny_delete: true,
            allow_direct: true,
            num_replicas: 1,
            ..Default::default()
        })
        .await;
    if let Err(e) = created {
        // Another host may have created it meanwhile.
        if js.get_key_value(bucket).await.is_err() {
            return Err(format!("cannot create the key-value bucket {bucket}: {e}"));
        }
    }
    js.get_key_value(bucket).await.map_err(|e| format!("cannot open the key-value bucket {bucket}: {e}"))
}

async fn blob_store(js: &jetstream::Context, bucket: &str) -> Result<ObjectStore, String> {
    let name = format!("{bucket}-blobs");
    if let Ok(store) = js.get_object_store(&name).await {
        return Ok(store);
    }
    let config = object_store::Config {
        bucket: name.clone(),
        description: Some("Backplane result cache blobs".into()),
        storage: StorageType::File,
        ..Default::default()
    };
    match js.create_object_store(config).await {
        Ok(store) => Ok(store),
        Err(e) => js.get_object_store(&name).await.map_err(|_| format!("cannot create the object store {name}: {e}")),
    }
}
