//! The local tier: a directory any number of processes share without locks.
//!
//! ```text
//! FORMAT                 "backplane-cache 1": a newer format is refused, not misread
//! entries/<id>.seg       append-only entry segments, one per writing process
//! cas/<aa>/<blake3>      blobs, named by the BLAKE3 of their bytes
//! ```
//!
//! - **Writers never meet.** Each process appends to a segment of its own,
//!   created exclusively; blobs are written to a temporary, fsynced, renamed
//!   into place and their directory fsynced (the atomic-file crate), always
//!   before the records that name them are appended and fdatasynced. Writes
//!   are grouped: one fdatasync commits every result that finished meanwhile.
//! - **Readers never wait.** Opening the store reads the segments (newest
//!   first, up to [`MAX_SCAN_BYTES`]) into an in-memory index; a record that
//!   is cut short (a writer killed mid-append, or still appending) ends its
//!   segment, and one whose checksum fails is never believed.
//! - **Wrong hits are impossible by construction**: every record carries the
//!   BLAKE3 of its body, every blob is checked against its name when read. A
//!   corrupt or missing blob reads as a miss and the rerun writes it again.
//! - A writer holds an `flock` on its segment while it runs, so `gc` merges
//!   only segments whose writers are gone.

use crate::{
    entry::{self, INLINE_MAX, RecordError},
    key::{Digest, Key, hex},
};
use std::{
    collections::HashSet,
    fs::{self, File, OpenOptions},
    io::{self, Read, Write},
    os::fd::AsRawFd,
    os::unix::fs::{MetadataExt, OpenOptionsExt},
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::{SystemTime, UNIX_EPOCH},
};

/// The format this build reads and writes.
pub const FORMAT_VERSION: u32 = 1;
const FORMAT_PREFIX: &str = "backplane-cache ";
const SEGMENT_MAGIC: &[u8; 8] = b"BPCSEG\0\x01";
const SEGMENT_HEADER: usize = 12;
/// Most segment bytes one open reads into its index; beyond it, older
/// segments are left out (a warning says to run `backplane cache gc`).
pub const MAX_SCAN_BYTES: u64 = 1 << 30;
/// Problems kept for the report; later ones are only counted.
const MAX_PROBLEMS: usize = 20;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot {action} {}: {source}", path.display())]
    Io { action: &'static str, path: PathBuf, source: io::Error },
    #[error(
        "the cache at {} has format {found}, newer than this Backplane reads ({FORMAT_VERSION}); use a newer Backplane, or another `[cache] dir`",
        path.display()
    )]
    NewerFormat { path: PathBuf, found: u32 },
    #[error("{} is not a Backplane cache ({}); point `[cache] dir` elsewhere or remove it", path.display(), reason)]
    NotACache { path: PathBuf, reason: String },
}

fn io_err<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> StoreError + 'a {
    move |source| StoreError::Io { action, path: path.to_owned(), source }
}

/// One output of a hit, its bytes read and checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HitOutput {
    pub port: String,
    pub content_type: String,
    pub data_hash: Digest,
    pub data: Vec<u8>,
    pub extensions: Vec<(String, String)>,
}

impl HitOutput {
    /// A stored output with its bytes, read and checked.
    pub(crate) fn new(stored: entry::StoredOutput, data: Vec<u8>) -> Self {
        let entry::StoredOutput { port, content_type, data_hash, extensions, .. } = stored;
        Self { port, content_type, data_hash, data, extensions }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hit {
    pub run_id: String,
    pub created: u64,
    pub outputs: Vec<HitOutput>,
}

/// What a lookup found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    Hit(Hit),
    Absent,
    /// An entry was found but cannot be trusted; the result is recomputed.
    Corrupt(String),
}

struct Segment {
    path: PathBuf,
    bytes: Vec<u8>,
}

/// An open local tier.
pub struct LocalStore {
    root: PathBuf,
    segments: Vec<Segment>,
    /// Body range of each key's newest record.
    index: crate::key::KeyMap<(u32, u32, u32)>,
    problems: Vec<String>,
    more_problems: usize,
    /// Blobs found corrupt or missing: the writer rewrites them.
    suspect: Arc<Mutex<HashSet<Digest>>>,
}

/// Paths inside a store.
pub fn entries_dir(root: &Path) -> PathBuf {
    root.join("entries")
}
pub fn blob_path(root: &Path, hash: &Digest) -> PathBuf {
    let name = hex(hash);
    root.join("cas").join(&name[..2]).join(name)
}

/// Creates `dir` when missing; refuses one that is a link or not a directory.
fn own_dir(dir: &Path) -> Result<(), StoreError> {
    match fs::symlink_metadata(dir) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(m) => Err(StoreError::NotACache {
            path: dir.to_owned(),
            reason: format!("it is a {}, not a directory", backplane_atomic_file::kind_of(m.file_type())),
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => match fs::create_dir(dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => own_dir(dir),
            Err(e) => Err(io_err("create directory", dir)(e)),
        },
        Err(e) => Err(io_err("read", dir)(e)),
    }
}

/// Opens `path` for reading without following a link; `None` when it is not
/// a regular file.
fn open_regular(path: &Path) -> io::Result<Option<File>> {
    let file = OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK).open(path)?;
    Ok(file.metadata()?.is_file().then_some(file))
}

/// Checks or writes `FORMAT`.
fn check_format(root: &Path) -> Result<(), StoreError> {
    let path = root.join("FORMAT");
    let text = match open_regular(&path) {
        Ok(Some(file)) => {
            let mut text = String::new();
            file.take(256).read_to_string(&mut text).map_err(io_err("read", &path))?;
            text
        }
        Ok(None) => {
            return Err(StoreError::NotACache { path: path.clone(), reason: "FORMAT is not a regular file".into() });
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let text = format!("{FORMAT_PREFIX}{FORMAT_VERSION}\n");
            backplane_atomic_file::write(&path, text.as_bytes())
                .map_err(|e| io_err("write", &path)(io::Error::other(e.to_string())))?;
            return Ok(());
        }
        Err(e) => return Err(io_err("read", &path)(e)),
    };
    let version = text.trim().strip_prefix(FORMAT_PREFIX).and_then(|v| v.parse::<u32>().ok()).ok_or_else(|| {
        StoreError::NotACache { path: root.to_owned(), reason: format!("its FORMAT file says {:?}", text.trim()) }
    })?;
    match version {
        FORMAT_VERSION => Ok(()),
        v if v > FORMAT_VERSION => Err(StoreError::NewerFormat { path: root.to_owned(), found: v }),
        v => Err(StoreError::NotACache { path: root.to_owned(), reason: format!("format {v} is no longer read") }),
    }
}

/// The segment files, oldest first (names start with the creation time);
/// none when there is no `entries/` yet.
pub(crate) fn segment_files(root: &Path) -> Result<Vec<PathBuf>, StoreError> {
    let dir = entries_dir(root);
    let entries = match fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err("list", &dir)(e)),
    };
    let mut files: Vec<PathBuf> =
        entries.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == "seg")).collect();
    files.sort();
    Ok(files)
}

/// What scanning one segment found.
pub struct ScannedSegment {
    pub bytes: Vec<u8>,
    /// Each record's key and body range, in file order.
    pub records: Vec<(Key, std::ops::Range<usize>)>,
    /// Why the scan stopped before the end, when it did for a reason other
    /// than a record cut short at the tail.
    pub damage: Option<String>,
    /// Bytes after the last whole record (a writer killed mid-append, or
    /// one still writing).
    pub torn_tail: usize,
}

/// Reads and checks one segment.
pub fn scan_segment(path: &Path) -> Result<ScannedSegment, String> {
    let mut file = match open_regular(path) {
        Ok(Some(f)) => f,
        Ok(None) => return Err("not a regular file".into()),
        Err(e) => return Err(e.to_string()),
    };
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).map_err(|e| e.to_string())?;
    if bytes.len() < SEGMENT_HEADER || &bytes[..8] != SEGMENT_MAGIC {
        // A writer killed before its header was durable leaves an empty file.
        if bytes.is_empty() {
            return Ok(ScannedSegment { bytes, records: Vec::new(), damage: None, torn_tail: 0 });
        }
        return Err("not a cache segment (bad header)".into());
    }
    let version = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
    if version != FORMAT_VERSION {
        return Err(format!("segment format {version}, this Backplane reads {FORMAT_VERSION}"));
    }
    let mut at = SEGMENT_HEADER;
    let mut records = Vec::new();
    let mut damage = None;
    let mut torn_tail = 0;
    while at < bytes.len() {
        match entry::split_record(&bytes[at..]) {
            Ok((key, body, total)) => {
                records.push((key, at + body.start..at + body.end));
                at += total;
            }
            Err(RecordError::Truncated) => {
                torn_tail = bytes.len() - at;
                break;
            }
            Err(e) => {
                damage = Some(format!("{e} at byte {at}; the {} bytes after it are ignored", bytes.len() - at));
                break;
            }
        }
    }
    Ok(ScannedSegment { bytes, records, damage, torn_tail })
}

impl LocalStore {
    /// Opens (creating when missing) the store at `root` and reads its index.
    pub fn open(root: &Path) -> Result<Self, StoreError> {
        fs::create_dir_all(root).map_err(io_err("create directory", root))?;
        check_format(root)?;
        for dir in ["entries", "cas"] {
            own_dir(&root.join(dir))?;
        }
        let mut store = LocalStore {
            root: root.to_owned(),
            segments: Vec::new(),
            index: Default::default(),
            problems: Vec::new(),
            more_problems: 0,
            suspect: Arc::default(),
        };
        let mut scanned_bytes = 0u64;
        for path in segment_files(root)?.into_iter().rev() {
            if scanned_bytes > MAX_SCAN_BYTES {
                store.problem(format!(
                    "the cache's entries exceed {} MiB; older segments were not read (run `backplane cache gc`)",
                    MAX_SCAN_BYTES >> 20
                ));
                break;
            }
            let scanned = match scan_segment(&path) {
                Ok(s) => s,
                Err(e) => {
                    store.problem(format!("cache segment {} is skipped: {e}", path.display()));
                    continue;
                }
            };
            if let Some(damage) = &scanned.damage {
                store.problem(format!("cache segment {} is damaged: {damage}", path.display()));
            }
            scanned_bytes += scanned.bytes.len() as u64;
            let segment = store.segments.len() as u32;
            for (key, body) in scanned.records.iter().rev() {
                // Newest first: a key seen already has a newer record.
                store.index.entry(*key).or_insert((segment, body.start as u32, body.end as u32));
            }
            store.segments.push(Segment { path, bytes: scanned.bytes });
        }
        Ok(store)
    }

    fn problem(&mut self, message: String) {
        tracing::warn!("{message}");
        if self.problems.len() < MAX_PROBLEMS {
            self.problems.push(message);
        } else {
            self.more_problems += 1;
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Problems found while opening (damaged or unreadable segments).
    pub fn problems(&self) -> (&[String], usize) {
        (&self.problems, self.more_problems)
    }

    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// The entry for `key`, its blobs read and checked.
    pub fn get(&self, key: &Key) -> Lookup {
        let Some(&(segment, start, end)) = self.index.get(key) else { return Lookup::Absent };
        let segment = &self.segments[segment as usize];
        let entry = match entry::decode_body(&segment.bytes[start as usize..end as usize]) {
            Ok(e) => e,
            Err(e) => return Lookup::Corrupt(format!("entry in {}: {e}", segment.path.display())),
        };
        let mut outputs = Vec::with_capacity(entry.outputs.len());
        for mut o in entry.outputs {
            let data = match o.inline.take() {
                Some(data) => data,
                None => match self.read_blob(&o.data_hash, o.size) {
                    Ok(data) => data,
                    Err(problem) => {
                        self.suspect.lock().unwrap_or_else(|e| e.into_inner()).insert(o.data_hash);
                        return Lookup::Corrupt(problem);
                    }
                },
            };
            outputs.push(HitOutput::new(o, data));
        }
        Lookup::Hit(Hit { run_id: entry.run_id, created: entry.created, outputs })
    }

    fn read_blob(&self, hash: &Digest, size: u64) -> Result<Vec<u8>, String> {
        read_blob(&self.root, hash, size)
    }

    /// A writer for results of run `run_id`, on a thread of its own; what
    /// it commits is also published to `shared`.
    pub fn writer(&self, run_id: &str, shared: Option<Arc<dyn crate::SharedTier>>) -> Writer {
        Writer::start(self.root.clone(), self.suspect.clone(), run_id.to_owned(), shared)
    }
}

/// Reads blob `hash` and checks its size and hash.
pub fn read_blob(root: &Path, hash: &Digest, size: u64) -> Result<Vec<u8>, String> {
    let path = blob_path(root, hash);
    let file = match open_regular(&path) {
        Ok(Some(f)) => f,
        Ok(None) => return Err(format!("blob {} is not a regular file", path.display())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(format!("blob {} is missing", path.display())),
        Err(e) => return Err(format!("cannot read blob {}: {e}", path.display())),
    };
    let mut data = Vec::with_capacity(size.min(1 << 30) as usize);
    file.take(size + 1).read_to_end(&mut data).map_err(|e| format!("cannot read blob {}: {e}", path.display()))?;
    if data.len() as u64 != size || blake3::hash(&data).as_bytes() != hash {
        return Err(format!("blob {} does not match its name (corrupt)", path.display()));
    }
    Ok(data)
}

/// Results encoded on the caller's thread, waiting to be committed.
#[derive(Default)]
struct Batch {
    records: Vec<u8>,
    results: usize,
    /// Outputs over [`INLINE_MAX`]: written (and synced) before the records.
    blobs: Vec<(Digest, Vec<u8>)>,
    blob_bytes: usize,
    /// Holds records that came from the shared tier: not published back.
    local_only: bool,
}

/// A batch is handed to the writer thread at this size (or when flushed).
const BATCH_BYTES: usize = 256 << 10;
const BATCH_BLOB_BYTES: usize = 64 << 20;

/// What a writer did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteReport {
    /// Results made durable.
    pub committed: usize,
    /// Results not stored because writing failed.
    pub dropped: usize,
    /// The first write error, which stopped storing.
    pub error: Option<String>,
}

/// Stores results: [`Writer::put`] encodes a result into the current batch
/// on the caller's thread (no allocation per result, so the writer never
/// fights the engine over the allocator); a thread of its own writes each
/// batch's blobs, then its records, with one fdatasync.
pub struct Writer {
    run_id: String,
    pending: Mutex<Batch>,
    batches: Option<crossbeam_channel::Sender<Batch>>,
    /// Record buffers the writer thread has finished with, for reuse: a
    /// fresh 256 KiB buffer per batch is an mmap and page faults each time.
    recycled: crossbeam_channel::Receiver<Vec<u8>>,
    thread: Option<std::thread::JoinHandle<WriteReport>>,
}

impl Writer {
    fn start(
        root: PathBuf,
        suspect: Arc<Mutex<HashSet<Digest>>>,
        run_id: String,
        shared: Option<Arc<dyn crate::SharedTier>>,
    ) -> Self {
        let (batches, receiver) = crossbeam_channel::unbounded();
        let (recycle, recycled) = crossbeam_channel::bounded(4);
        let thread = std::thread::Builder::new()
            .name("backplane-cache-writer".into())
            .spawn(move || write_loop(&root, &suspect, &receiver, &recycle, shared.as_deref()))
            .expect("spawn the cache writer thread");
        Writer { run_id, pending: Mutex::default(), batches: Some(batches), recycled, thread: Some(thread) }
    }

    /// Adds a result to the current batch; never blocks on I/O.
    pub fn put(&self, key: Key, node_type: &str, outputs: &[entry::OutputRef<'_>]) {
        let mut batch = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        if batch.records.capacity() == 0 {
            batch.records = self.recycled.try_recv().unwrap_or_else(|_| Vec::with_capacity(BATCH_BYTES + (16 << 10)));
        }
        entry::encode_record_into(&mut batch.records, &key, &self.run_id, now_secs(), node_type, outputs);
        batch.results += 1;
        for o in outputs.iter().filter(|o| o.data.len() > INLINE_MAX) {
            batch.blob_bytes += o.data.len();
            batch.blobs.push((o.data_hash, o.data.to_vec()));
        }
        if batch.records.len() >= BATCH_BYTES || batch.blob_bytes >= BATCH_BLOB_BYTES {
            let full = std::mem::take(&mut *batch);
            drop(batch);
            self.send(full);
        }
    }

    /// Adds a record read from the shared tier (already checked), with its
    /// blobs, so the local tier has it next time.
    pub fn put_record(&self, record: Vec<u8>, blobs: Vec<(Digest, Vec<u8>)>) {
        let blob_bytes = blobs.iter().map(|b| b.1.len()).sum();
        self.send(Batch { records: record, results: 1, blobs, blob_bytes, local_only: true });
    }

    /// Hands what is batched to the writer thread (call before waiting, so
    /// results finished meanwhile are committed rather than held).
    pub fn flush(&self) {
        let batch = std::mem::take(&mut *self.pending.lock().unwrap_or_else(|e| e.into_inner()));
        if batch.results > 0 {
            self.send(batch);
        }
    }

    fn send(&self, batch: Batch) {
        if let Some(batches) = &self.batches {
            let _ = batches.send(batch);
        }
    }

    /// Commits what is queued and stops.
    pub fn finish(mut self) -> WriteReport {
        self.flush();
        self.batches = None;
        self.thread
            .take()
            .map(|t| {
                t.join().unwrap_or_else(|_| WriteReport {
                    error: Some("the cache writer panicked".into()),
                    ..WriteReport::default()
                })
            })
            .unwrap_or_default()
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.flush();
        self.batches = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

pub(crate) fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// A name no other writer has: creation time (so names sort by age), pid, random.
fn segment_name() -> String {
    use std::hash::{BuildHasher, Hasher};
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(now.as_nanos());
    format!("{:013}-{}-{:016x}.seg", now.as_millis(), std::process::id(), h.finish())
}

/// The open segment of one writer.
struct SegmentWriter {
    file: File,
    path: PathBuf,
}

impl SegmentWriter {
    fn create(root: &Path) -> io::Result<Self> {
        let dir = entries_dir(root);
        let path = dir.join(segment_name());
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&path)?;
        // SAFETY: flock on a descriptor we own; released when it closes.
        unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        let mut header = SEGMENT_MAGIC.to_vec();
        header.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        file.write_all(&header)?;
        file.sync_data()?;
        File::open(&dir)?.sync_all()?;
        Ok(SegmentWriter { file, path })
    }
}

fn write_loop(
    root: &Path,
    suspect: &Mutex<HashSet<Digest>>,
    batches: &crossbeam_channel::Receiver<Batch>,
    recycle: &crossbeam_channel::Sender<Vec<u8>>,
    shared: Option<&dyn crate::SharedTier>,
) -> WriteReport {
    let mut shared_failed = false;
    let mut report = WriteReport::default();
    let mut segment: Option<SegmentWriter> = None;
    let mut written_blobs: HashSet<Digest> = HashSet::new();
    while let Ok(first) = batches.recv() {
        // Everything queued meanwhile is committed with the same fdatasync.
        let mut group = vec![first];
        group.extend(batches.try_iter());
        let results: usize = group.iter().map(|b| b.results).sum();
        if report.error.is_some() {
            report.dropped += results;
            continue;
        }
        let outcome = commit(root, suspect, &mut segment, &mut written_blobs, &group);
        if let Some(tier) = shared.filter(|_| outcome.is_ok() && !shared_failed) {
            for batch in group.iter().filter(|b| !b.local_only) {
                if let Err(e) = crate::shared::publish(tier, &batch.records, &batch.blobs) {
                    tracing::warn!(
                        "cannot store results in the shared cache ({}): {e}; this run shares no more",
                        tier.describe()
                    );
                    shared_failed = true;
                    break;
                }
            }
        }
        for batch in group {
            let mut buffer = batch.records;
            buffer.clear();
            let _ = recycle.try_send(buffer);
        }
        match outcome {
            Ok(()) => report.committed += results,
            Err(e) => {
                tracing::warn!("cannot store results in the cache at {}: {e}; this run stores no more", root.display());
                report.dropped += results;
                report.error = Some(e);
            }
        }
    }
    report
}

/// Makes a group of batches durable: blobs, then records, then one fdatasync.
fn commit(
    root: &Path,
    suspect: &Mutex<HashSet<Digest>>,
    segment: &mut Option<SegmentWriter>,
    written_blobs: &mut HashSet<Digest>,
    group: &[Batch],
) -> Result<(), String> {
    for batch in group {
        for (hash, data) in &batch.blobs {
            write_blob(root, hash, data, suspect, written_blobs)?;
        }
    }
    if segment.is_none() {
        *segment = Some(SegmentWriter::create(root).map_err(|e| format!("create a segment: {e}"))?);
    }
    let s = segment.as_mut().expect("created above");
    for batch in group {
        s.file.write_all(&batch.records).map_err(|e| format!("append to {}: {e}", s.path.display()))?;
    }
    s.file.sync_data().map_err(|e| format!("sync {}: {e}", s.path.display()))
}

/// Writes a blob unless a sound one is there already.
fn write_blob(
    root: &Path,
    hash: &Digest,
    data: &[u8],
    suspect: &Mutex<HashSet<Digest>>,
    written: &mut HashSet<Digest>,
) -> Result<(), String> {
    if written.contains(hash) {
        return Ok(());
    }
    let path = blob_path(root, hash);
    let known_bad = suspect.lock().unwrap_or_else(|e| e.into_inner()).remove(hash);
    let present = !known_bad && fs::symlink_metadata(&path).is_ok_and(|m| m.is_file() && m.size() == data.len() as u64);
    if !present {
        backplane_atomic_file::write(&path, data).map_err(|e| e.to_string())?;
    }
    written.insert(*hash);
    Ok(())
}

#[cfg(test)]
mod tests;
