//! What a run record holds, as JSON Lines: a header, one line per node, and
//! an end line. A run killed before its end has only the header.

use crate::{
    cache::reason::Components,
    report::{BreakerEvent, NodeStatus},
};
use serde::{Deserialize, Serialize};

/// The format of the records this build writes.
pub const RECORD_FORMAT: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Header {
    pub record: String,
    pub format: u32,
    pub run_id: String,
    /// RFC 3339.
    pub started: String,
    pub workflow: FileIdentity,
    /// `None`: the built-in default config.
    pub config: Option<FileIdentity>,
    /// Keys of settings whose values were left out of the config's hash.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub redacted: Vec<String>,
    /// `None`: the run had no cache.
    pub cache_dir: Option<String>,
    pub backplane_version: String,
    /// The run's `[params]` values, by name.
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub params: serde_json::Map<String, serde_json::Value>,
    /// A partial run's `--select`/`--until` flags.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selection: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FileIdentity {
    pub path: String,
    pub name: String,
    /// BLAKE3 (hex) of the file's text (for a config, with secrets redacted).
    pub hash: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeRecord {
    pub node: String,
    #[serde(rename = "type")]
    pub node_type: String,
    pub version: String,
    pub plugin: String,
    pub plugin_version: String,
    /// The instance its last attempt ran on (or would have).
    pub backend: String,
    pub backend_type: String,
    pub status: NodeStatus,
    pub attempts: u8,
    /// `hit`, `miss` or `off`.
    pub cache: String,
    pub cache_reason: String,
    /// The run a hit's result came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hit_from: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// What its key is made of; `None` when an input's content was unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub components: Option<Components>,
    pub outputs: Vec<OutputRecord>,
    /// Files it read or wrote (from a file manifest output).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<FileRecord>,
    /// Seconds from the run's start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub submitted: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished: Option<f64>,
    /// When it succeeded from the cache (seconds from the run's start).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cached_at: Option<f64>,
    /// Each attempt, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tries: Vec<AttemptRecord>,
}

/// One attempt of a node. Times are seconds from the run's start.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttemptRecord {
    pub attempt: u8,
    /// The instance it ran on.
    pub backend: String,
    /// `succeeded`, `failed`, `timed-out`, `cancelled`, `lost` or `abandoned`.
    pub status: String,
    pub submitted: f64,
    /// When the backend said it began to run (not every backend says).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished: Option<f64>,
    pub bytes_in: u64,
    pub bytes_out: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Lines its node logged, kept in the run's log file ([`End::logs`]).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub log_lines: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OutputRecord {
    pub port: String,
    /// Content hash (content type and bytes), as consumers' keys use it.
    pub hash: String,
    /// Plain BLAKE3 of the bytes (`b3sum` prints it).
    pub blake3: String,
    pub bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRecord {
    /// `read` or `wrote`.
    pub op: String,
    pub path: String,
    pub blake3: String,
    pub bytes: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct End {
    pub record: String,
    pub finished: String,
    pub elapsed_secs: f64,
    /// `succeeded`, `failed` or `interrupted`.
    pub status: String,
    pub nodes: usize,
    pub cached: usize,
    pub executed: usize,
    pub failed: usize,
    /// Workflow outputs written to files.
    pub written: Vec<WrittenFile>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub breakers: Vec<BreakerEvent>,
    /// The file beside the record with what nodes logged, when any did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logs: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WrittenFile {
    pub path: String,
    /// `node.port`.
    pub from: String,
    pub blake3: String,
    pub bytes: u64,
}

/// A whole record.
#[derive(Debug, Clone)]
pub struct RunRecord {
    pub header: Header,
    pub nodes: Vec<NodeRecord>,
    /// `None`: the run did not finish (killed).
    pub end: Option<End>,
}

impl RunRecord {
    /// The record as JSON Lines.
    pub fn to_lines(&self) -> String {
        let mut text = serde_json::to_string(&self.header).expect("records serialize");
        text.push('\n');
        for node in &self.nodes {
            text.push_str(&serde_json::to_string(node).expect("records serialize"));
            text.push('\n');
        }
        if let Some(end) = &self.end {
            text.push_str(&serde_json::to_string(end).expect("records serialize"));
            text.push('\n');
        }
        text
    }

    /// Parses a record; `header_only` stops after the first line.
    pub fn parse(text: &str, header_only: bool) -> Result<Self, String> {
        let mut lines = text.lines().enumerate();
        let (_, first) = lines.next().ok_or("the record is empty")?;
        let header: Header = serde_json::from_str(first).map_err(|e| format!("line 1: {e}"))?;
        if header.format > RECORD_FORMAT {
            return Err(format!(
                "record format {} is newer than this Backplane reads ({RECORD_FORMAT})",
                header.format
            ));
        }
        let mut record = RunRecord { header, nodes: Vec::new(), end: None };
        if header_only {
            // The end line is last: read it without parsing every node.
            if let Some(last) = text.lines().last().filter(|l| l.starts_with("{\"record\":\"end\"")) {
                record.end = serde_json::from_str(last).ok();
            }
            return Ok(record);
        }
        for (i, line) in lines {
            if line.starts_with("{\"record\":\"end\"") {
                record.end = Some(serde_json::from_str(line).map_err(|e| format!("line {}: {e}", i + 1))?);
            } else {
                record.nodes.push(serde_json::from_str(line).map_err(|e| format!("line {}: {e}", i + 1))?);
            }
        }
        Ok(record)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> Header {
        Header {
            record: "run".into(),
            format: RECORD_FORMAT,
            run_id: "r1".into(),
            started: "2026-12-02T00:00:00.000Z".into(),
            workflow: FileIdentity { path: "/w/workflow.toml".into(), name: "workflow.toml".into(), hash: "aa".into() },
            config: None,
            redacted: Vec::new(),
            cache_dir: None,
            backplane_version: "0.1.0".into(),
            params: serde_json::Map::new(),
            selection: None,
        }
    }

    #[test]
    fn a_record_round_trips_and_a_killed_one_has_no_end() {
        let end = End {
            record: "end".into(),
            finished: "2026-12-02T00:00:01.000Z".into(),
            elapsed_secs: 1.0,
            status: "succeeded".into(),
            nodes: 0,
            cached: 0,
            executed: 0,
            failed: 0,
            written: Vec::new(),
            breakers: Vec::new(),
            logs: None,
        };
        let record = RunRecord { header: header(), nodes: Vec::new(), end: Some(end) };
        let text = record.to_lines();
        assert_eq!(text.lines().count(), 2);
        for header_only in [true, false] {
            let back = RunRecord::parse(&text, header_only).unwrap();
            assert_eq!(back.header.run_id, "r1");
            assert_eq!(back.end.map(|e| e.status), Some("succeeded".into()));
        }
        let killed = RunRecord { header: header(), nodes: Vec::new(), end: None }.to_lines();
        assert!(RunRecord::parse(&killed, true).unwrap().end.is_none());
    }

    #[test]
    fn a_newer_or_broken_record_is_refused_with_its_line() {
        let mut newer = header();
        newer.format = RECORD_FORMAT + 1;
        let text = RunRecord { header: newer, nodes: Vec::new(), end: None }.to_lines();
        assert!(RunRecord::parse(&text, true).unwrap_err().contains("newer than this Backplane reads"));
        let broken =
            format!("{}{{\"node\": 3}}\n", RunRecord { header: header(), nodes: Vec::new(), end: None }.to_lines());
        assert!(RunRecord::parse(&broken, false).unwrap_err().starts_with("line 2:"));
        assert!(RunRecord::parse("", true).is_err());
    }
}
