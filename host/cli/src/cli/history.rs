//! `backplane runs` and `backplane provenance`: what earlier runs did, from
//! their records in `.backplane/runs`.

use super::{print_json, say};
use crate::{Failure, GlobalArgs};
use backplane_host::runs::{self, provenance};
use clap::Args;
use std::path::{Path, PathBuf};

#[derive(Args)]
pub struct RunsArgs {
    /// The workflow whose runs to list (default: those recorded in the current directory).
    #[arg(long, value_name = "FILE")]
    workflow: Option<PathBuf>,
    /// Most runs listed, newest first.
    #[arg(long, default_value_t = 20)]
    limit: usize,
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct ProvenanceArgs {
    /// An output file a run wrote.
    file: PathBuf,
    /// Look in the records of this workflow (default: `.backplane/runs` in
    /// the file's directory and those above it).
    #[arg(long, value_name = "FILE")]
    workflow: Option<PathBuf>,
    #[arg(long)]
    json: bool,
}

/// Where a workflow's records are: beside it, or in the current directory.
fn records_dir(workflow: Option<&Path>) -> PathBuf {
    let dir = match workflow {
        Some(w) => w.parent().map(Path::to_path_buf).unwrap_or_default(),
        None => PathBuf::from("."),
    };
    runs::runs_dir(if dir.as_os_str().is_empty() { Path::new(".") } else { &dir })
}

pub fn list(_global: &GlobalArgs, args: RunsArgs) -> Result<(), Failure> {
    let dir = records_dir(args.workflow.as_deref());
    let wanted = args.workflow.as_deref().map(|w| std::path::absolute(w).unwrap_or_else(|_| w.to_owned()));
    let mut rows = Vec::new();
    let mut problems = Vec::new();
    for path in runs::list(&dir) {
        if rows.len() >= args.limit {
            break;
        }
        match runs::read(&path, true) {
            Ok(record) => {
                if wanted.as_ref().is_some_and(|w| Path::new(&record.header.workflow.path) != w) {
                    continue;
                }
                rows.push(record);
            }
            Err(e) => problems.push(e),
        }
    }
    for problem in &problems {
        eprintln!("warning: skipped a run record: {problem}");
    }
    if args.json {
        let runs: Vec<serde_json::Value> = rows
            .iter()
            .map(|r| {
                serde_json::json!({
                    "run_id": r.header.run_id, "started": r.header.started, "workflow": r.header.workflow.path,
                    "status": r.end.as_ref().map_or("did-not-finish", |e| e.status.as_str()),
                    "end": r.end,
                })
            })
            .collect();
        return print_json(&serde_json::json!({ "dir": dir, "runs": runs }));
    }
    if rows.is_empty() {
        eprintln!("no runs recorded in {}", dir.display());
        return Ok(());
    }
    say!(
        "{:<22}  {:<24}  {:<15}  {:>6}  {:>6}  {:>6}  {:>8}  WORKFLOW",
        "RUN",
        "STARTED",
        "STATUS",
        "NODES",
        "CACHED",
        "RAN",
        "SECONDS"
    );
    for r in &rows {
        let (status, nodes, cached, ran, secs) = match &r.end {
            Some(e) => (
                e.status.as_str(),
                e.nodes.to_string(),
                e.cached.to_string(),
                e.executed.to_string(),
                format!("{:.3}", e.elapsed_secs),
            ),
            None => ("did not finish", "-".into(), "-".into(), "-".into(), "-".into()),
        };
        say!(
            "{:<22}  {:<24}  {status:<15}  {nodes:>6}  {cached:>6}  {ran:>6}  {secs:>8}  {}",
            r.header.run_id,
            r.header.started,
            r.header.workflow.name
        );
    }
    Ok(())
}

pub fn provenance(_global: &GlobalArgs, args: ProvenanceArgs) -> Result<(), Failure> {
    let dirs = match &args.workflow {
        Some(w) => vec![records_dir(Some(w))],
        None => {
            let file = std::path::absolute(&args.file).unwrap_or_else(|_| args.file.clone());
            provenance::runs_dirs_above(file.parent().unwrap_or(Path::new("/")))
        }
    };
    let lineage = provenance::lineage(&args.file, &dirs).map_err(|e| Failure::Invalid(format!("error: {e}")))?;
    if args.json {
        return print_json(&lineage);
    }
    say!("{}", lineage.file);
    say!(
        "  blake3 {} ({} bytes), written by run {}; on disk: {}",
        lineage.blake3,
        lineage.bytes,
        lineage.run_id,
        lineage.on_disk
    );
    print_node(&lineage.produced_by, "", true);
    Ok(())
}

fn print_node(node: &provenance::LineageNode, prefix: &str, last: bool) {
    let branch = if last { "└─ " } else { "├─ " };
    let port = node.port.as_ref().map_or(String::new(), |p| format!(".{p}"));
    let cache = match (&node.cache[..], &node.hit_from) {
        ("hit", Some(run)) => format!(", cached from run {run}"),
        _ => String::new(),
    };
    let mut line =
        format!("{prefix}{branch}{}{port}  {} {} on {}{cache}", node.node, node.node_type, node.version, node.backend);
    if node.repeated {
        line.push_str("  (shown above)");
    }
    if node.truncated {
        line.push_str("  (deeper ancestry not shown)");
    }
    say!("{line}");
    let child_prefix = format!("{prefix}{}", if last { "   " } else { "│  " });
    let count = node.files.len() + node.inputs.len();
    for (i, f) in node.files.iter().enumerate() {
        let branch = if i + 1 == count { "└─ " } else { "├─ " };
        say!(
            "{child_prefix}{branch}{} {}  (blake3 {}…, {} bytes; on disk: {})",
            f.op,
            f.path,
            &f.blake3[..12],
            f.bytes,
            f.on_disk
        );
    }
    for (i, input) in node.inputs.iter().enumerate() {
        print_node(input, &child_prefix, node.files.len() + i + 1 == count);
    }
}
