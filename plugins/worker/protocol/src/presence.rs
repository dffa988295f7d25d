//! What a worker tells the pool's users about itself.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The value of a worker's presence entry, refreshed every
/// [`PRESENCE_INTERVAL`](crate::PRESENCE_INTERVAL).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerAnnouncement {
    pub worker_id: String,
    pub pool: String,
    pub hostname: String,
    pub pid: u32,
    pub tags: Vec<String>,
    /// Tasks it runs at once.
    pub concurrency: u32,
    /// `none` (in the worker's process) or `process` (a child per task).
    pub isolation: String,
    /// Node types it can run, with their versions.
    pub node_types: BTreeMap<String, String>,
    pub counters: WorkerCounters,
    /// Set while it drains before exiting: it takes no new tasks.
    #[serde(default)]
    pub draining: bool,
}

/// Running totals since the worker started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerCounters {
    pub done: u64,
    pub failed: u64,
    pub in_flight: u64,
    /// Tasks refused: unknown node type or version, not allowed, or over
    /// their delivery limit.
    pub refused: u64,
}

impl WorkerAnnouncement {
    /// Whether this worker runs `node_type` at `version` (empty: any version).
    pub fn runs(&self, node_type: &str, version: &str) -> bool {
        self.node_types.get(node_type).is_some_and(|v| version.is_empty() || v == version)
    }
}
