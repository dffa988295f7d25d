//! What nodes logged in a run: one JSON line per log line, in a file beside
//! the run's record (`<run id>.logs`), which the record's end line names.
//! Each attempt's lines are bounded by the plugin API's task log (the first
//! 16 KiB and the last 48 KiB of each attempt, see
//! [`backplane_plugin_api::task_log`]).

use crate::plan::Plan;
use backplane_plugin_api::{log::LogLevel, task_log::LogLine};
use serde::{Deserialize, Serialize};
use std::{
    fs,
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
};

/// One line a node logged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogEntry {
    pub node: String,
    pub attempt: u8,
    /// `error`, `warn`, `info`, `debug` or `trace`.
    pub level: String,
    pub message: String,
}

/// The lines of one attempt, as observers collect them.
pub struct AttemptLog {
    pub node: u32,
    pub attempt: u8,
    pub lines: Vec<LogLine>,
}

pub fn level_name(level: LogLevel) -> &'static str {
    match level {
        LogLevel::ERROR => "error",
        LogLevel::WARN => "warn",
        LogLevel::INFO => "info",
        LogLevel::DEBUG => "debug",
        _ => "trace",
    }
}

/// The log file of run `run_id` in `dir`.
pub fn logs_path(dir: &Path, run_id: &str) -> PathBuf {
    dir.join(format!("{run_id}.logs"))
}

/// Writes the run's log file (atomically) when any node logged; returns its name.
pub fn write(dir: &Path, run_id: &str, plan: &Plan, logs: &[AttemptLog]) -> Result<Option<String>, String> {
    if logs.iter().all(|l| l.lines.is_empty()) {
        return Ok(None);
    }
    let mut text = String::new();
    for log in logs {
        let node = plan.nodes.get(log.node as usize).map_or("", |n| n.id.as_str());
        for line in &log.lines {
            let entry = LogEntry {
                node: node.to_owned(),
                attempt: log.attempt,
                level: level_name(line.level).to_owned(),
                message: line.message.clone(),
            };
            text.push_str(&serde_json::to_string(&entry).expect("log lines serialize"));
            text.push('\n');
        }
    }
    let path = logs_path(dir, run_id);
    backplane_atomic_file::write(&path, text.as_bytes()).map_err(|e| e.to_string())?;
    Ok(path.file_name().map(|n| n.to_string_lossy().into_owned()))
}

/// Most bytes read of one log file (64 KiB per attempt of a 10,000-node run).
const MAX_LOG_BYTES: u64 = 1 << 30;

/// The lines of `node` (every node's with `None`) in the log file at `path`,
/// in order, read line by line.
pub fn read(path: &Path, node: Option<&str>) -> Result<Vec<LogEntry>, String> {
    let meta = fs::symlink_metadata(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if !meta.is_file() {
        return Err(format!("{} is not a regular file", path.display()));
    }
    if meta.len() > MAX_LOG_BYTES {
        return Err(format!("{} is larger than {} MiB", path.display(), MAX_LOG_BYTES >> 20));
    }
    let file = fs::File::open(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut entries = Vec::new();
    for (i, line) in BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let entry: LogEntry =
            serde_json::from_str(&line).map_err(|e| format!("{}:{}: not a log line: {e}", path.display(), i + 1))?;
        if node.is_none_or(|n| n == entry.node) {
            entries.push(entry);
        }
    }
    Ok(entries)
}
