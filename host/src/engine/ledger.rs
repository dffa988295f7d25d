//! What a run keeps per node beyond its state: cache outcome, key, output
//! digests and timings, for the run record, `--json` and provenance.
//!
//! Kept only when asked for ([`RunOptions::record_nodes`](super::RunOptions)),
//! so a bare engine run pays nothing for it.

use backplane_cache::{ContentHash, Digest, Key};
use std::collections::HashMap;

/// A node that outputs a file manifest (such as `std.read_files`' `files`
/// port) gets those files in its provenance, whatever backend it ran on.
pub use backplane_plugin_api::FILE_MANIFEST;

/// How a node met the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheStatus {
    /// Cacheable, but never looked up (the run stopped first).
    Pending,
    /// Its outputs came from the cache; `run` indexes [`NodeLedger::hit_runs`].
    Hit {
        run: u32,
    },
    Miss(MissCause),
    Off(OffReason),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MissCause {
    /// No entry for the key (why is told against the last run's record).
    Absent,
    /// `--rerun` matched it.
    Rerun,
    /// An entry was there but could not be trusted; indexes [`NodeLedger::problems`].
    Damaged(u32),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffReason {
    /// The run has no cache (`--no-cache`, `[cache] enabled = false`, or it could not be opened).
    NoCache,
    /// Its type is not `deterministic` (and the workflow did not say `cache = true`).
    NotDeterministic,
    /// `cache = false` in the workflow.
    Disabled,
    /// An input stayed on a backend as a reference, so its content is unknown here.
    ByReference,
    /// It runs per item of a stream, or its stream feeds a node that does
    /// (a stored result would not replay the items).
    Streamed,
}

impl CacheStatus {
    /// `hit`, `miss` or `off`, as `--json` says it.
    pub fn name(self) -> &'static str {
        match self {
            CacheStatus::Hit { .. } => "hit",
            CacheStatus::Miss(_) | CacheStatus::Pending => "miss",
            CacheStatus::Off(_) => "off",
        }
    }
}

impl OffReason {
    pub fn describe(self) -> &'static str {
        match self {
            OffReason::NoCache => "the run has no cache",
            OffReason::NotDeterministic => "not deterministic",
            OffReason::Disabled => "disabled in the workflow (cache = false)",
            OffReason::ByReference => "an input is held by reference on its backend",
            OffReason::Streamed => "it runs per item, or its items feed a node that does",
        }
    }
}

/// One output's identity.
#[derive(Debug, Clone, Copy)]
pub struct OutputDigest {
    /// The port, as the node type declares it.
    pub port: &'static str,
    pub content: ContentHash,
    /// Plain BLAKE3 of the bytes.
    pub data: Digest,
    pub size: u64,
}

/// Per-node details of a run, indexed by node.
#[derive(Debug, Default)]
pub struct NodeLedger {
    pub cache: Vec<CacheStatus>,
    pub keys: Vec<Option<Key>>,
    /// Empty until the node succeeds; outputs kept by reference are left out.
    pub outputs: Vec<Box<[OutputDigest]>>,
    /// Seconds from the run's start to the last attempt's submission and completion (NaN: never).
    pub submitted: Vec<f64>,
    pub finished: Vec<f64>,
    /// The runs hits came from.
    pub hit_runs: Vec<String>,
    hit_run_index: HashMap<String, u32>,
    /// Why damaged entries were not trusted.
    pub problems: Vec<String>,
    /// File manifests nodes output ([`FILE_MANIFEST`]), by node.
    pub files: HashMap<u32, String>,
}

impl NodeLedger {
    pub(super) fn new(nodes: usize) -> Self {
        Self {
            cache: vec![CacheStatus::Off(OffReason::NoCache); nodes],
            keys: vec![None; nodes],
            outputs: (0..nodes).map(|_| Box::default()).collect(),
            submitted: vec![f64::NAN; nodes],
            finished: vec![f64::NAN; nodes],
            ..Self::default()
        }
    }

    pub(super) fn hit_run(&mut self, run_id: String) -> u32 {
        let next = self.hit_runs.len() as u32;
        *self.hit_run_index.entry(run_id).or_insert_with_key(|id| {
            self.hit_runs.push(id.clone());
            next
        })
    }

    /// Content hash of `node`'s output `port`, when known.
    pub fn output(&self, node: usize, port: &str) -> Option<&OutputDigest> {
        self.outputs[node].iter().find(|o| o.port == port)
    }
}
