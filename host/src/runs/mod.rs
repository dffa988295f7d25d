//! Run records: one file per run under `.backplane/runs/` beside the
//! workflow, so every output can be traced to what made it.
//!
//! # Core concepts
//!
//! - A record is JSON Lines ([`record`]): the header is written when the
//!   run starts, the node lines and the end line when it ends, each time
//!   atomically. A run killed in between leaves its header: `backplane runs`
//!   shows it as unfinished.
//! - Each node line has its key's components, so the next run explains a
//!   miss by what changed ([`crate::cache::reason`]), and its output hashes,
//!   so [`provenance`] can walk from a file back to the files it came from.
//! - Each node line has its attempts (from the run's [`Timeline`](crate::observe::Timeline)):
//!   instance, status, when it was dispatched, started and finished; what
//!   nodes logged is in a file beside the record ([`logs`]). [`report`]
//!   renders a record as an HTML page.

mod build;
pub mod logs;
pub mod provenance;
pub mod record;
pub mod report;

pub use build::{RecordContext, end, header, node_records, started};
pub use record::{NodeRecord, RunRecord};

use crate::cache::reason::Components;
use std::{
    collections::HashMap,
    fs,
    path::{Path, PathBuf},
    time::{SystemTime, UNIX_EPOCH},
};

/// Records of workflows in `workflow_dir`.
pub fn runs_dir(workflow_dir: &Path) -> PathBuf {
    workflow_dir.join(crate::cache::STATE_DIR).join("runs")
}

/// A new run id: the UTC start time (so ids sort by age) and 4 random hex digits.
pub fn new_run_id(started: SystemTime) -> String {
    use std::hash::{BuildHasher, Hasher};
    let stamp = humantime::format_rfc3339_millis(started).to_string().replace(['-', ':'], "");
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(started.duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos());
    h.write_u32(std::process::id());
    format!("{stamp}-{:04x}", h.finish() & 0xffff)
}

/// The file of run `run_id` in `dir`.
pub fn record_path(dir: &Path, run_id: &str) -> PathBuf {
    dir.join(format!("{run_id}.jsonl"))
}

/// Writes `record` atomically (its header alone at the start, whole at the end).
pub fn write(dir: &Path, record: &RunRecord) -> Result<PathBuf, String> {
    let path = record_path(dir, &record.header.run_id);
    backplane_atomic_file::write(&path, record.to_lines().as_bytes()).map_err(|e| e.to_string())?;
    Ok(path)
}

/// Most bytes read of one record (a 1M-node run is about 400 MB; more is not ours).
const MAX_RECORD_BYTES: u64 = 1 << 30;

/// The text of one record file.
fn read_text(path: &Path) -> Result<String, String> {
    let meta = fs::symlink_metadata(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if !meta.is_file() {
        return Err(format!("{} is not a regular file", path.display()));
    }
    if meta.len() > MAX_RECORD_BYTES {
        return Err(format!("{} is larger than {} MiB", path.display(), MAX_RECORD_BYTES >> 20));
    }
    fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

/// Reads one record.
pub fn read(path: &Path, header_only: bool) -> Result<RunRecord, String> {
    RunRecord::parse(&read_text(path)?, header_only).map_err(|e| format!("{}: {e}", path.display()))
}

/// The record files in `dir`, newest first.
pub fn list(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(dir) else { return Vec::new() };
    let mut files: Vec<PathBuf> =
        entries.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == "jsonl")).collect();
    files.sort();
    files.reverse();
    files
}

/// The key components of each node in the newest finished run of the
/// workflow at `workflow_path`, for explaining misses.
pub fn previous_components(dir: &Path, workflow_path: &str) -> HashMap<String, Components> {
    for path in list(dir) {
        let Ok(text) = read_text(&path) else { continue };
        let Ok(head) = RunRecord::parse(&text, true) else { continue };
        if head.header.workflow.path != workflow_path || head.end.is_none() {
            continue;
        }
        let Ok(record) = RunRecord::parse(&text, false) else { continue };
        return record.nodes.into_iter().filter_map(|n| Some((n.node, n.components?))).collect();
    }
    HashMap::new()
}
