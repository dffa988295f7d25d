//! The result cache as a run sees it: `[cache]` in the config, and the
//! [`ResultCache`] the engine asks before running a node and tells after.
//!
//! # Core concepts
//!
//! - A node is cached when its type is `deterministic` or the workflow says
//!   `cache = true`; `cache = false` turns it off. Source nodes (which read
//!   the world) run every time, and their consumers hit when what they read
//!   is unchanged, because keys are made of input *content*.
//! - Lookups read the store's in-memory index (the engine never waits on
//!   another process); stores go to a writer thread that commits in groups.
//! - A cache that cannot be opened (unreadable, a newer format, not a
//!   cache) gives a warning and a run without a cache, or an error with
//!   `[cache] required = true`. Never a panic, never a wrong result.

pub mod reason;

use backplane_cache::{Key, LocalStore, Lookup, OutputRef, SharedLookup, SharedTier, StoreError, WriteReport, Writer};
use globset::GlobSet;
use std::{
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

/// The name of the directory beside a workflow that holds its cache and its run records.
pub const STATE_DIR: &str = ".backplane";

/// Where a workflow in `workflow_dir` keeps its cache: `[cache] dir`, else
/// `BACKPLANE_CACHE_DIR` (the caller reads it), else `.backplane/cache` beside it.
pub fn default_dir(workflow_dir: &Path) -> PathBuf {
    workflow_dir.join(STATE_DIR).join("cache")
}

/// A run's view of the cache.
pub struct ResultCache {
    store: LocalStore,
    /// `None` once finished.
    writer: Mutex<Option<Writer>>,
    salt: String,
    rerun: Option<GlobSet>,
    /// Asked after a local miss; what this run stores goes there too.
    shared: Option<Arc<dyn SharedTier>>,
    /// Set after the shared tier's first failure: the run stops asking it.
    shared_failed: std::sync::atomic::AtomicBool,
}

impl ResultCache {
    /// Opens the store at `dir` for run `run_id`, with an optional shared tier.
    pub fn open(
        dir: &Path,
        run_id: &str,
        salt: &str,
        rerun: Option<GlobSet>,
        shared: Option<Arc<dyn SharedTier>>,
    ) -> Result<Self, StoreError> {
        let store = LocalStore::open(dir)?;
        let writer = store.writer(run_id, shared.clone());
        Ok(Self {
            store,
            writer: Mutex::new(Some(writer)),
            salt: salt.to_owned(),
            rerun,
            shared,
            shared_failed: Default::default(),
        })
    }

    pub fn dir(&self) -> &Path {
        self.store.root()
    }

    pub fn salt(&self) -> &str {
        &self.salt
    }

    /// Problems found while opening, already logged as warnings.
    pub fn problems(&self) -> (&[String], usize) {
        self.store.problems()
    }

    /// Whether `--rerun` asks node `id` to run again.
    pub fn rerun(&self, id: &str) -> bool {
        self.rerun.as_ref().is_some_and(|g| g.is_match(id))
    }

    /// The local tier first, then the shared one (whose hits are kept
    /// locally), for many keys at once: the shared tier is asked for all
    /// local misses together. Answers come in the keys' order.
    pub fn lookup_many(&self, keys: &[Key]) -> Vec<Lookup> {
        use std::sync::atomic::Ordering;
        let mut found: Vec<Lookup> = keys.iter().map(|k| self.store.get(k)).collect();
        let Some(shared) = self.shared.as_deref().filter(|_| !self.shared_failed.load(Ordering::Relaxed)) else {
            return found;
        };
        let missed: Vec<usize> = (0..keys.len()).filter(|&i| !matches!(found[i], Lookup::Hit(_))).collect();
        if missed.is_empty() {
            return found;
        }
        let asked: Vec<Key> = missed.iter().map(|&i| keys[i]).collect();
        let answers = shared.get_records(&asked);
        for (i, answer) in missed.into_iter().zip(answers) {
            match backplane_cache::shared::check(shared, &keys[i], answer) {
                SharedLookup::Hit(hit, record, blobs) => {
                    if let Some(writer) = self.writer.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
                        writer.put_record(record, blobs);
                    }
                    found[i] = Lookup::Hit(hit);
                }
                SharedLookup::Absent => {}
                SharedLookup::Unusable(problem) if problem.starts_with("the shared cache") => {
                    tracing::warn!("{problem}; this run no longer asks it");
                    self.shared_failed.store(true, Ordering::Relaxed);
                    break;
                }
                SharedLookup::Unusable(problem) => tracing::warn!("{problem}"),
            }
        }
        found
    }

    /// Queues a successful result for storing; never blocks on I/O.
    pub fn store(&self, key: Key, node_type: &str, outputs: &[OutputRef<'_>]) {
        if let Some(writer) = self.writer.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            writer.put(key, node_type, outputs);
        }
    }

    /// Hands queued results to the writer thread to commit; the engine
    /// calls it before it waits.
    pub fn flush(&self) {
        if let Some(writer) = self.writer.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            writer.flush();
        }
    }

    /// Commits what is queued (waits for the writer); later stores are dropped.
    pub fn finish(&self) -> WriteReport {
        let writer = self.writer.lock().unwrap_or_else(|e| e.into_inner()).take();
        writer.map(Writer::finish).unwrap_or_default()
    }
}
