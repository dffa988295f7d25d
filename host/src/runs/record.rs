//! What a run record holds, as JSON Lines: a header, one line per node, and
//! an end line. A run killed before its end has only the header.

use crate::{cache::reason::Components, report::NodeStatus};
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
