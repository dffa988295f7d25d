//! Payloads too large for a NATS message travel through the JetStream object
//! store: the sender stores the bytes and puts a reference in
//! `Payload::object_ref`; the receiver reads them back. Whoever receives a
//! payload last deletes its object; the bucket's age limit collects what a
//! dead process leaves behind.

use async_nats::jetstream::object_store::{ObjectMetadata, ObjectStore};
use backplane_plugin_api::{Payload, abi_stable::std_types::RVec};
use tokio::io::AsyncReadExt;

/// `object_ref` prefix of a payload held in the object store.
pub const REF_PREFIX: &str = "nats-object:";

/// Chunks are stored one acknowledged message at a time, so fewer, larger
/// chunks are faster; 512 KiB stays under the default 1 MiB message limit.
const CHUNK_SIZE: usize = 512 * 1024;

#[derive(Debug, thiserror::Error)]
#[error("object store: cannot {action} payload object `{name}`: {message}")]
pub struct ObjectError {
    pub action: &'static str,
    pub name: String,
    pub message: String,
}

/// The object names `payloads` refer to.
pub fn referenced(payloads: &[Payload]) -> Vec<String> {
    payloads.iter().filter_map(|p| p.object_ref.strip_prefix(REF_PREFIX).map(str::to_owned)).collect()
}

/// Moves inline payloads into `store` under `<name_prefix>.<index>`, leaving
/// references behind: every payload over `limit` bytes, then the largest
/// others until what stays inline totals at most `limit` (a message has a
/// size limit too). Returns the names stored.
pub async fn offload(
    store: &ObjectStore,
    payloads: &mut [Payload],
    limit: usize,
    name_prefix: &str,
) -> Result<Vec<String>, ObjectError> {
    let mut by_size: Vec<usize> = (0..payloads.len()).filter(|&i| payloads[i].object_ref.is_empty()).collect();
    by_size.sort_by_key(|&i| std::cmp::Reverse(payloads[i].data.len()));
    let mut inline: usize = by_size.iter().map(|&i| payloads[i].data.len()).sum();
    let mut stored = Vec::new();
    for index in by_size {
        let payload = &mut payloads[index];
        if payload.data.len() <= limit && inline <= limit {
            break;
        }
        let name = format!("{name_prefix}.{index}");
        let meta = ObjectMetadata { name: name.clone(), chunk_size: Some(CHUNK_SIZE), ..Default::default() };
        store.put(meta, &mut payload.data.as_slice()).await.map_err(|e| ObjectError {
            action: "store",
            name: name.clone(),
            message: e.to_string(),
        })?;
        inline -= payload.data.len();
        payload.object_ref = format!("{REF_PREFIX}{name}").into();
        payload.data = RVec::new();
        stored.push(name);
    }
    Ok(stored)
}

/// Whether [`offload`] would move anything.
pub fn needs_offload(payloads: &[Payload], limit: usize) -> bool {
    payloads.iter().map(|p| p.data.len()).sum::<usize>() > limit
}

/// Replaces every reference in `payloads` by the bytes it names. Returns
/// the names read, for the caller to delete once it is done with them.
pub async fn resolve(store: &ObjectStore, payloads: &mut [Payload]) -> Result<Vec<String>, ObjectError> {
    let mut read = Vec::new();
    for payload in payloads.iter_mut() {
        let Some(name) = payload.object_ref.strip_prefix(REF_PREFIX).map(str::to_owned) else { continue };
        let error = |message: String| ObjectError { action: "read", name: name.clone(), message };
        let mut object = store.get(&name).await.map_err(|e| error(e.to_string()))?;
        let mut data = Vec::with_capacity(object.info.size);
        object.read_to_end(&mut data).await.map_err(|e| error(e.to_string()))?;
        payload.data = data.into();
        payload.object_ref = Default::default();
        read.push(name);
    }
    Ok(read)
}

/// Deletes objects; failures are returned for logging, they are not fatal
/// (the bucket's age limit removes leftovers).
pub async fn delete(store: &ObjectStore, names: &[String]) -> Vec<ObjectError> {
    let mut errors = Vec::new();
    for name in names {
        if let Err(e) = store.delete(name).await {
            errors.push(ObjectError { action: "delete", name: name.clone(), message: e.to_string() });
        }
    }
    errors
}
