//! `backplane provenance FILE`: from an output file back to the files it
//! was made from, through the run record that wrote it.

use super::record::{FileRecord, NodeRecord, RunRecord};
use serde::Serialize;
use std::{
    collections::{HashMap, HashSet},
    path::{Path, PathBuf},
};

/// Deepest lineage printed; deeper ancestry ends in a `truncated` node.
const MAX_DEPTH: usize = 1000;

#[derive(Debug, Serialize)]
pub struct Lineage {
    pub file: String,
    pub run_id: String,
    pub record: String,
    pub blake3: String,
    pub bytes: u64,
    /// `unchanged`, `changed` or `missing`: the file now against the record.
    pub on_disk: &'static str,
    pub produced_by: LineageNode,
}

#[derive(Debug, Serialize)]
pub struct LineageNode {
    pub node: String,
    /// The output port followed, when reached through one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<String>,
    #[serde(rename = "type")]
    pub node_type: String,
    pub version: String,
    pub plugin: String,
    pub backend: String,
    pub status: String,
    pub cache: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hit_from: Option<String>,
    /// BLAKE3 of the output followed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blake3: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<FileCheck>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub inputs: Vec<LineageNode>,
    /// Its ancestry is shown where it first appears.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub repeated: bool,
    /// Deeper than [`MAX_DEPTH`]: its ancestry is not shown.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
}

#[derive(Debug, Serialize)]
pub struct FileCheck {
    pub op: String,
    pub path: String,
    pub blake3: String,
    pub bytes: u64,
    pub on_disk: &'static str,
}

/// BLAKE3 of a file, streamed; `None` when it cannot be read.
pub fn hash_file(path: &Path) -> Option<String> {
    let meta = std::fs::symlink_metadata(path).ok()?;
    if !meta.is_file() {
        return None;
    }
    let mut hasher = blake3::Hasher::new();
    hasher.update_reader(std::fs::File::open(path).ok()?).ok()?;
    Some(hasher.finalize().to_hex().to_string())
}

fn on_disk(path: &Path, recorded: &str) -> &'static str {
    match hash_file(path) {
        Some(h) if h == recorded => "unchanged",
        Some(_) => "changed",
        None => "missing",
    }
}

/// The `.backplane/runs` directories from `start` upward, nearest first.
pub fn runs_dirs_above(start: &Path) -> Vec<PathBuf> {
    start.ancestors().map(super::runs_dir).filter(|d| d.is_dir()).collect()
}

/// The lineage of `file` from the newest record (in `dirs`) that wrote it.
pub fn lineage(file: &Path, dirs: &[PathBuf]) -> Result<Lineage, String> {
    let absolute = std::path::absolute(file).map_err(|e| format!("{}: {e}", file.display()))?;
    let wanted = absolute.to_string_lossy().into_owned();
    if dirs.is_empty() {
        return Err(format!(
            "no run records found above {} (records live in .backplane/runs beside the workflow); pass --workflow FILE",
            absolute.parent().unwrap_or(&absolute).display()
        ));
    }
    for dir in dirs {
        for path in super::list(dir) {
            // Cheap test first: the record names the file somewhere.
            let Ok(text) = std::fs::read_to_string(&path) else { continue };
            if !text.contains(wanted.as_str()) {
                continue;
            }
            let Ok(record) = RunRecord::parse(&text, false) else { continue };
            if let Some(found) = from_record(&record, &wanted, &absolute, &path) {
                return Ok(found);
            }
        }
    }
    Err(format!(
        "no run record says it wrote {wanted} (searched {}); was it written by a workflow output or std.write_file?",
        dirs.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(", ")
    ))
}

fn from_record(record: &RunRecord, wanted: &str, absolute: &Path, path: &Path) -> Option<Lineage> {
    let by_id: HashMap<&str, &NodeRecord> = record.nodes.iter().map(|n| (n.node.as_str(), n)).collect();
    let (node, port, blake3, bytes) =
        match record.end.as_ref().and_then(|e| e.written.iter().find(|w| w.path == wanted)) {
            Some(w) => {
                let (node, port) = w.from.split_once('.')?;
                (node.to_owned(), Some(port.to_owned()), w.blake3.clone(), w.bytes)
            }
            None => {
                let (n, f) = record
                    .nodes
                    .iter()
                    .find_map(|n| n.files.iter().find(|f| f.op == "wrote" && f.path == wanted).map(|f| (n, f)))?;
                (n.node.clone(), None, f.blake3.clone(), f.bytes)
            }
        };
    let mut seen = HashSet::new();
    let produced_by = walk(&by_id, &node, port, 0, &mut seen)?;
    Some(Lineage {
        file: wanted.to_owned(),
        run_id: record.header.run_id.clone(),
        record: path.display().to_string(),
        on_disk: on_disk(absolute, &blake3),
        blake3,
        bytes,
        produced_by,
    })
}

fn walk(
    by_id: &HashMap<&str, &NodeRecord>,
    id: &str,
    port: Option<String>,
    depth: usize,
    seen: &mut HashSet<String>,
) -> Option<LineageNode> {
    let node = by_id.get(id)?;
    let blake3 = port.as_ref().and_then(|p| node.outputs.iter().find(|o| &o.port == p)).map(|o| o.blake3.clone());
    let mut out = LineageNode {
        node: node.node.clone(),
        port,
        node_type: node.node_type.clone(),
        version: node.version.clone(),
        plugin: node.plugin.clone(),
        backend: node.backend.clone(),
        status: node.status.name().to_owned(),
        cache: node.cache.clone(),
        hit_from: node.hit_from.clone(),
        blake3,
        files: Vec::new(),
        inputs: Vec::new(),
        repeated: false,
        truncated: false,
    };
    if !seen.insert(node.node.clone()) {
        out.repeated = true;
        return Some(out);
    }
    if depth >= MAX_DEPTH {
        out.truncated = true;
        return Some(out);
    }
    out.files = node.files.iter().map(check).collect();
    for input in node.components.iter().flat_map(|c| &c.inputs) {
        let Some((from, from_port)) = input.from.split_once('.') else { continue };
        if let Some(child) = walk(by_id, from, Some(from_port.to_owned()), depth + 1, seen) {
            out.inputs.push(child);
        }
    }
    Some(out)
}

fn check(f: &FileRecord) -> FileCheck {
    FileCheck {
        op: f.op.clone(),
        path: f.path.clone(),
        blake3: f.blake3.clone(),
        bytes: f.bytes,
        on_disk: on_disk(Path::new(&f.path), &f.blake3),
    }
}
