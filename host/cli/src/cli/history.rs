//! `backplane runs`, `provenance`, `logs` and `report`: what earlier runs
//! did, from their records in `.backplane/runs`.

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

#[derive(Args)]
pub struct LogsArgs {
    /// `[RUN] NODE`: the node whose log to show, in run RUN (a run id, or a
    /// record file; default: the latest run).
    #[arg(value_name = "RUN|NODE", num_args = 1..=2, required = true)]
    which: Vec<String>,
    /// Look in the records of this workflow (default: those in the current directory).
    #[arg(long, value_name = "FILE")]
    workflow: Option<PathBuf>,
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct ReportArgs {
    /// The run (a run id, or a record file; default: the latest run).
    run: Option<String>,
    /// Look in the records of this workflow (default: those in the current directory).
    #[arg(long, value_name = "FILE")]
    workflow: Option<PathBuf>,
    /// Where to write the page (default: `report-<run id>.html`).
    #[arg(long, short, value_name = "FILE")]
    output: Option<PathBuf>,
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

/// The record of run `run` (an id or a file) in `dir`, or the newest there.
fn find_run(dir: &Path, run: Option<&str>) -> Result<PathBuf, Failure> {
    let Some(run) = run else {
        return runs::list(dir).into_iter().next().ok_or_else(|| {
            Failure::Invalid(format!(
                "error: no runs recorded in {}\n  help: run the workflow first, or pass --workflow FILE",
                dir.display()
            ))
        });
    };
    let as_file = Path::new(run);
    if run.ends_with(".jsonl") && as_file.is_file() {
        return Ok(as_file.to_owned());
    }
    let path = runs::record_path(dir, run);
    if path.is_file() {
        return Ok(path);
    }
    let known: Vec<String> = runs::list(dir)
        .iter()
        .take(5)
        .filter_map(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .collect();
    Err(Failure::Invalid(format!(
        "error: no run `{run}` is recorded in {}\n  help: the latest runs are: {}",
        dir.display(),
        if known.is_empty() { "none".to_owned() } else { known.join(", ") }
    )))
}

pub fn logs(_global: &GlobalArgs, args: LogsArgs) -> Result<(), Failure> {
    let (run, node) = match args.which.as_slice() {
        [node] => (None, node.as_str()),
        [run, node] => (Some(run.as_str()), node.as_str()),
        _ => unreachable!("clap takes one or two"),
    };
    let dir = records_dir(args.workflow.as_deref());
    let path = find_run(&dir, run)?;
    let record = runs::read(&path, false).map_err(|e| Failure::Invalid(format!("error: {e}")))?;
    let Some(found) = record.nodes.iter().find(|n| n.node == node) else {
        let ids: Vec<&str> = record.nodes.iter().map(|n| n.node.as_str()).collect();
        let hint = match backplane_host::suggest(node, &ids) {
            Some(close) => format!("did you mean `{close}`?"),
            None => "`backplane runs` lists runs; the record names every node".to_owned(),
        };
        return Err(Failure::Invalid(format!(
            "error: run {} has no node `{node}`\n  help: {hint}",
            record.header.run_id
        )));
    };
    let entries = match record.end.as_ref().and_then(|e| e.logs.as_deref()) {
        Some(name) => runs::logs::read(&path.with_file_name(name), Some(node))
            .map_err(|e| Failure::Environment(format!("error: {e}")))?,
        None => Vec::new(),
    };
    if args.json {
        return print_json(&serde_json::json!({
            "run_id": record.header.run_id, "node": node, "tries": found.tries, "lines": entries,
        }));
    }
    say!("run {}, node `{node}` ({}), {}", record.header.run_id, found.node_type, found.status.name());
    if found.tries.is_empty() {
        say!("  it ran no attempt ({}: {})", found.cache, found.cache_reason);
    }
    for attempt in &found.tries {
        say!("── attempt {} on {}: {} ──", attempt.attempt, attempt.backend, attempt.status);
        let mut printed = false;
        for entry in entries.iter().filter(|e| e.attempt == attempt.attempt) {
            say!("{:5} {}", entry.level, entry.message);
            printed = true;
        }
        if !printed {
            say!("(nothing logged)");
        }
        if let Some(error) = &attempt.error {
            say!("error: {error}");
        }
    }
    Ok(())
}

/// The id in `ids` closest to `wanted`, when one is close.
pub fn report(_global: &GlobalArgs, args: ReportArgs) -> Result<(), Failure> {
    let dir = records_dir(args.workflow.as_deref());
    let path = find_run(&dir, args.run.as_deref())?;
    let record = runs::read(&path, false).map_err(|e| Failure::Invalid(format!("error: {e}")))?;
    let output = args.output.unwrap_or_else(|| PathBuf::from(format!("report-{}.html", record.header.run_id)));
    backplane_atomic_file::write(&output, runs::report::render(&record).as_bytes())
        .map_err(|e| Failure::Environment(format!("error: cannot write {}: {e}", output.display())))?;
    say!("wrote {}", output.display());
    Ok(())
}
