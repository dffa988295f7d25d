//! `backplane cache stats|verify|gc|clear`: reading and tidying a store
//! while other processes use it.

use crate::{
    entry::{self, Entry},
    key::{Digest, Key},
    store::{self, StoreError},
};
use std::{
    collections::{HashMap, HashSet},
    fs, io,
    os::fd::AsRawFd,
    path::{Path, PathBuf},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

/// Blobs younger than this are never collected: a writer may have stored
/// one whose entry it has not committed yet.
const BLOB_GRACE: Duration = Duration::from_secs(3600);
/// Unlocked segments younger than this are left alone by `gc`.
const SEGMENT_GRACE: Duration = Duration::from_secs(60);
/// Problems listed by `verify`; later ones are only counted.
const MAX_LISTED: usize = 100;

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Stats {
    pub entries: usize,
    /// Records, counting superseded ones.
    pub records: usize,
    pub segments: usize,
    pub segment_bytes: u64,
    pub blobs: usize,
    pub blob_bytes: u64,
    pub oldest: Option<u64>,
    pub newest: Option<u64>,
    /// Segments or records that cannot be read.
    pub damaged: usize,
}

/// Every blob file: path, hash (from its name), size, modified.
fn blob_files(root: &Path) -> Vec<(PathBuf, Option<Digest>, u64, SystemTime)> {
    let mut out = Vec::new();
    let Ok(shards) = fs::read_dir(root.join("cas")) else { return out };
    for shard in shards.flatten() {
        let Ok(files) = fs::read_dir(shard.path()) else { continue };
        for file in files.flatten() {
            let Ok(meta) = fs::symlink_metadata(file.path()) else { continue };
            if !meta.is_file() {
                continue;
            }
            let hash = file.file_name().to_str().and_then(crate::key::parse_hex);
            out.push((file.path(), hash, meta.len(), meta.modified().unwrap_or(UNIX_EPOCH)));
        }
    }
    out
}

/// Every readable record, oldest segment first.
fn all_records(root: &Path, damaged: &mut Vec<String>) -> Result<Vec<(PathBuf, Key, Entry, usize)>, StoreError> {
    let mut out = Vec::new();
    for path in store::segment_files(root)? {
        match store::scan_segment(&path) {
            Ok(scanned) => {
                if let Some(d) = scanned.damage {
                    damaged.push(format!("{}: {d}", path.display()));
                }
                for (key, body) in scanned.records {
                    let len = body.len() + 36;
                    match entry::decode_body(&scanned.bytes[body]) {
                        Ok(e) => out.push((path.clone(), key, e, len)),
                        Err(e) => damaged.push(format!("{}: entry {key}: {e}", path.display())),
                    }
                }
            }
            Err(e) => damaged.push(format!("{}: {e}", path.display())),
        }
    }
    Ok(out)
}

pub fn stats(root: &Path) -> Result<Stats, StoreError> {
    let mut damaged = Vec::new();
    let records = all_records(root, &mut damaged)?;
    let segments = store::segment_files(root)?;
    let keys: HashSet<Key> = records.iter().map(|r| r.1).collect();
    let blobs = blob_files(root);
    Ok(Stats {
        entries: keys.len(),
        records: records.len(),
        segments: segments.len(),
        segment_bytes: segments.iter().filter_map(|p| fs::metadata(p).ok()).map(|m| m.len()).sum(),
        blobs: blobs.len(),
        blob_bytes: blobs.iter().map(|b| b.2).sum(),
        oldest: records.iter().map(|r| r.2.created).min(),
        newest: records.iter().map(|r| r.2.created).max(),
        damaged: damaged.len(),
    })
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Verification {
    pub entries: usize,
    pub blobs_checked: usize,
    /// What is wrong, at most [`MAX_LISTED`].
    pub problems: Vec<String>,
    pub more_problems: usize,
}

impl Verification {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
    fn problem(&mut self, p: String) {
        if self.problems.len() < MAX_LISTED {
            self.problems.push(p);
        } else {
            self.more_problems += 1;
        }
    }
}

/// Checks every record's checksum and every blob an entry names.
pub fn verify(root: &Path) -> Result<Verification, StoreError> {
    let mut damaged = Vec::new();
    let records = all_records(root, &mut damaged)?;
    let mut v = Verification::default();
    for d in damaged {
        v.problem(d);
    }
    let mut checked: HashMap<Digest, Result<(), String>> = HashMap::new();
    let keys: HashSet<Key> = records.iter().map(|r| r.1).collect();
    v.entries = keys.len();
    for (_, key, e, _) in &records {
        for o in e.outputs.iter().filter(|o| o.inline.is_none()) {
            let result = checked
                .entry(o.data_hash)
                .or_insert_with(|| store::read_blob(root, &o.data_hash, o.size).map(drop))
                .clone();
            if let Err(problem) = result {
                v.problem(format!("entry {key} ({}): {problem}", e.node_type));
            }
        }
    }
    v.blobs_checked = checked.len();
    Ok(v)
}

/// What `gc` did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Collection {
    pub entries_kept: usize,
    pub entries_removed: usize,
    pub segments_merged: usize,
    pub blobs_removed: usize,
    pub bytes_freed: u64,
    /// Segments of writers still running, left as they are.
    pub segments_in_use: usize,
}

/// Whether a writer may still append to `path`: it holds the segment's
/// `flock`, or the segment is so young its writer may not have locked it yet.
fn in_use(path: &Path) -> bool {
    let Ok(file) = fs::File::open(path) else { return false };
    // `gc` writes its merged segments whole and never appends to them.
    let merged = path.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.contains("-gc-"));
    let young =
        !merged && file.metadata().and_then(|m| m.modified()).is_ok_and(|m| m > SystemTime::now() - SEGMENT_GRACE);
    // SAFETY: flock on a descriptor we own; released when it closes.
    let locked = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0;
    young || locked
}

/// Merges finished segments into one, keeping each key's newest entry,
/// dropping entries older than `older_than` and then the oldest until the
/// store is within `max_size`, and removes blobs no entry names.
pub fn gc(root: &Path, max_size: Option<u64>, older_than: Option<Duration>) -> Result<Collection, StoreError> {
    let mut c = Collection::default();
    let paths = store::segment_files(root)?;
    let (busy, idle): (Vec<PathBuf>, Vec<PathBuf>) = paths.into_iter().partition(|p| in_use(p));
    c.segments_in_use = busy.len();
    // Newest record per key among the idle segments.
    let mut newest: HashMap<Key, (Entry, usize)> = HashMap::new();
    let mut total_records = 0;
    for path in &idle {
        let Ok(scanned) = store::scan_segment(path) else { continue };
        for (key, body) in scanned.records {
            let len = body.len() + 36;
            let Ok(e) = entry::decode_body(&scanned.bytes[body]) else { continue };
            total_records += 1;
            match newest.get(&key) {
                Some((old, _)) if old.created > e.created => {}
                _ => {
                    newest.insert(key, (e, len));
                }
            }
        }
    }
    let cutoff = older_than.map(|d| store::now_secs().saturating_sub(d.as_secs()));
    let mut kept: Vec<(Key, Entry, usize)> = newest
        .into_iter()
        .filter(|(_, (e, _))| cutoff.is_none_or(|c| e.created >= c))
        .map(|(k, (e, l))| (k, e, l))
        .collect();
    kept.sort_by(|a, b| b.1.created.cmp(&a.1.created).then(a.0.cmp(&b.0)));
    if let Some(max) = max_size {
        let mut used = 0u64;
        let mut counted: HashSet<Digest> = HashSet::new();
        let mut keep = 0;
        for (_, e, len) in &kept {
            let mut size = *len as u64;
            for o in e.outputs.iter().filter(|o| o.inline.is_none()) {
                if counted.insert(o.data_hash) {
                    size += o.size;
                }
            }
            if used + size > max {
                break;
            }
            used += size;
            keep += 1;
        }
        kept.truncate(keep);
    }
    c.entries_kept = kept.len();
    c.entries_removed = total_records - kept.len();
    if !idle.is_empty() {
        // The merged segment is complete and durable before any old one goes.
        let mut bytes = Vec::new();
        bytes.extend_from_slice(b"BPCSEG\0\x01");
        bytes.extend_from_slice(&store::FORMAT_VERSION.to_le_bytes());
        kept.sort_by(|a, b| a.1.created.cmp(&b.1.created).then(a.0.cmp(&b.0)));
        for (key, e, _) in &kept {
            bytes.extend_from_slice(&entry::encode_record(key, e));
        }
        let merged = store::entries_dir(root).join(format!(
            "{:013}-gc-{}.seg",
            SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis()),
            std::process::id()
        ));
        if !kept.is_empty() {
            backplane_atomic_file::write(&merged, &bytes).map_err(|e| StoreError::Io {
                action: "write",
                path: merged.clone(),
                source: io::Error::other(e.to_string()),
            })?;
        }
        for path in &idle {
            if *path != merged {
                c.bytes_freed += fs::metadata(path).map_or(0, |m| m.len());
                let _ = fs::remove_file(path);
                c.segments_merged += 1;
            }
        }
        if !kept.is_empty() {
            c.bytes_freed = c.bytes_freed.saturating_sub(bytes.len() as u64);
        }
    }
    // Blobs still named by any entry (kept ones, and those of running writers).
    let mut named: HashSet<Digest> = kept.iter().flat_map(|(_, e, _)| e.outputs.iter().map(|o| o.data_hash)).collect();
    for path in &busy {
        if let Ok(scanned) = store::scan_segment(path) {
            for (_, body) in scanned.records {
                if let Ok(e) = entry::decode_body(&scanned.bytes[body]) {
                    named.extend(e.outputs.iter().map(|o| o.data_hash));
                }
            }
        }
    }
    let grace = SystemTime::now() - BLOB_GRACE;
    for (path, hash, size, modified) in blob_files(root) {
        if hash.is_some_and(|h| named.contains(&h)) || modified > grace {
            continue;
        }
        if fs::remove_file(&path).is_ok() {
            c.blobs_removed += 1;
            c.bytes_freed += size;
        }
    }
    Ok(c)
}

/// Removes every entry and blob. Running writers' segments go too: what
/// they store afterwards is lost with them, never misread.
pub fn clear(root: &Path) -> Result<(usize, u64), StoreError> {
    let mut removed = 0;
    let mut bytes = 0;
    for path in store::segment_files(root)? {
        bytes += fs::metadata(&path).map_or(0, |m| m.len());
        if fs::remove_file(&path).is_ok() {
            removed += 1;
        }
    }
    for (path, _, size, _) in blob_files(root) {
        if fs::remove_file(&path).is_ok() {
            bytes += size;
        }
    }
    Ok((removed, bytes))
}
