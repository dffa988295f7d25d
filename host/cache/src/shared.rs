//! A second tier shared by hosts on several machines (the `backplane` binary
//! implements it on NATS JetStream: a key-value bucket of records and an
//! object store of blobs).
//!
//! What comes back is checked like a local read: the record's checksum and
//! key, every blob against its name. A shared hit is written to the local
//! tier too, so the next run finds it without the network.

use crate::{
    entry::{self, INLINE_MAX},
    key::{Digest, Key},
    store::{Hit, HitOutput},
};

/// Storage another host can read. Calls block; implementations bound them
/// with their own timeouts and report failures as `Err` (never a panic).
pub trait SharedTier: Send + Sync {
    /// Where it is, for messages.
    fn describe(&self) -> String;
    /// The record stored under `key`, as [`entry::encode_record_into`] wrote it.
    fn get_record(&self, key: &Key) -> Result<Option<Vec<u8>>, String>;
    fn get_blob(&self, hash: &Digest) -> Result<Option<Vec<u8>>, String>;
    /// [`SharedTier::get_record`] for many keys, answers in their order;
    /// implementations ask concurrently (a wide DAG looks up thousands at once).
    fn get_records(&self, keys: &[Key]) -> Vec<Result<Option<Vec<u8>>, String>> {
        keys.iter().map(|k| self.get_record(k)).collect()
    }
    fn put_record(&self, key: &Key, record: &[u8]) -> Result<(), String>;
    fn put_blob(&self, hash: &Digest, data: &[u8]) -> Result<(), String>;
}

/// What a shared lookup found.
pub enum SharedLookup {
    /// With the record's bytes and blobs, to be kept locally.
    Hit(Hit, Vec<u8>, Vec<(Digest, Vec<u8>)>),
    Absent,
    Unusable(String),
}

/// Checks what `tier` answered for `key` (fetching the blobs it names).
pub fn check(tier: &dyn SharedTier, key: &Key, answer: Result<Option<Vec<u8>>, String>) -> SharedLookup {
    let record = match answer {
        Ok(Some(r)) => r,
        Ok(None) => return SharedLookup::Absent,
        Err(e) => return SharedLookup::Unusable(format!("the shared cache ({}) failed: {e}", tier.describe())),
    };
    let (found, body, total) = match entry::split_record(&record) {
        Ok(parts) => parts,
        Err(e) => return SharedLookup::Unusable(format!("a shared entry for {key} is damaged: {e}")),
    };
    if found != *key || total != record.len() {
        return SharedLookup::Unusable(format!("the shared entry under {key} is for another key"));
    }
    let entry = match entry::decode_body(&record[body]) {
        Ok(e) => e,
        Err(e) => return SharedLookup::Unusable(format!("a shared entry for {key} is damaged: {e}")),
    };
    let mut outputs = Vec::with_capacity(entry.outputs.len());
    let mut blobs = Vec::new();
    for mut o in entry.outputs {
        let data = match o.inline.take() {
            Some(data) => data,
            None => match tier.get_blob(&o.data_hash) {
                Ok(Some(data)) if data.len() as u64 == o.size && blake3::hash(&data).as_bytes() == &o.data_hash => {
                    blobs.push((o.data_hash, data.clone()));
                    data
                }
                Ok(Some(_)) => {
                    return SharedLookup::Unusable(format!("a shared blob of {key} does not match its name"));
                }
                Ok(None) => return SharedLookup::Unusable(format!("a shared blob of {key} is missing")),
                Err(e) => return SharedLookup::Unusable(format!("the shared cache ({}) failed: {e}", tier.describe())),
            },
        };
        outputs.push(HitOutput::new(o, data));
    }
    SharedLookup::Hit(Hit { run_id: entry.run_id, created: entry.created, outputs }, record, blobs)
}

/// Puts a committed batch (records back to back, and its blobs) in `tier`.
pub(crate) fn publish(tier: &dyn SharedTier, records: &[u8], blobs: &[(Digest, Vec<u8>)]) -> Result<(), String> {
    for (hash, data) in blobs {
        debug_assert!(data.len() > INLINE_MAX);
        tier.put_blob(hash, data)?;
    }
    let mut at = 0;
    while at < records.len() {
        let (key, _, total) = entry::split_record(&records[at..]).map_err(|e| e.to_string())?;
        tier.put_record(&key, &records[at..at + total])?;
        at += total;
    }
    Ok(())
}
