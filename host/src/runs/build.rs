//! A run record from a plan and what the engine reported.

use super::record::{
    AttemptRecord, End, FileIdentity, FileRecord, Header, NodeRecord, OutputRecord, RECORD_FORMAT, RunRecord,
    WrittenFile,
};
use crate::{
    cache::reason::{Components, InputComponent, miss_reason},
    engine::{
        RunOutcome,
        ledger::{CacheStatus, MissCause, NodeLedger, OffReason},
    },
    observe::Timeline,
    plan::Plan,
    workflow::OutputTarget,
};
use backplane_cache::key::hex;
use backplane_loader::PluginInfo;
use std::{collections::HashMap, path::PathBuf, time::SystemTime};

/// What only the caller knows about a run.
pub struct RecordContext<'a> {
    pub run_id: &'a str,
    pub started: SystemTime,
    /// The workflow file, absolute.
    pub workflow_path: &'a str,
    pub workflow_text: &'a str,
    /// The config file (absolute) and its text, when there is one.
    pub config: Option<(&'a str, &'a str)>,
    pub cache_dir: Option<&'a str>,
    pub salt: &'a str,
    /// Why the run has no cache, when it has none (`--no-cache`...).
    pub no_cache: &'a str,
    pub plugins: &'a [PluginInfo],
    /// The run's parameter values.
    pub params: &'a serde_json::Map<String, serde_json::Value>,
    /// A partial run's flags.
    pub selection: Option<&'a str>,
}

/// Setting names whose values are left out of the config's hash.
const SECRET_WORDS: &[&str] = &["token", "password", "secret", "credential", "creds", "nkey", "private"];

/// The config's text with every secret-looking `key = value` value blanked,
/// and the keys that were.
fn redact(text: &str) -> (String, Vec<String>) {
    let mut out = String::with_capacity(text.len());
    let mut redacted = Vec::new();
    for line in text.lines() {
        let key = line.split('=').next().unwrap_or("").trim().trim_matches('"').to_ascii_lowercase();
        if line.contains('=') && SECRET_WORDS.iter().any(|w| key.contains(w)) {
            out.push_str(&format!("{key} = <redacted>\n"));
            redacted.push(key);
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    (out, redacted)
}

fn identity(path: &str, text: &str) -> FileIdentity {
    let name = std::path::Path::new(path).file_name().map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    FileIdentity { path: path.to_owned(), name, hash: blake3::hash(text.as_bytes()).to_hex().to_string() }
}

pub fn header(cx: &RecordContext<'_>) -> Header {
    let (config, redacted) = match cx.config {
        Some((path, text)) => {
            let (clean, redacted) = redact(text);
            (Some(identity(path, &clean)), redacted)
        }
        None => (None, Vec::new()),
    };
    Header {
        record: "run".into(),
        format: RECORD_FORMAT,
        run_id: cx.run_id.to_owned(),
        started: humantime::format_rfc3339_millis(cx.started).to_string(),
        workflow: identity(cx.workflow_path, cx.workflow_text),
        config,
        redacted,
        cache_dir: cx.cache_dir.map(str::to_owned),
        backplane_version: env!("CARGO_PKG_VERSION").into(),
        params: cx.params.clone(),
        selection: cx.selection.map(str::to_owned),
    }
}

/// The key components of node `i`, when every input's content is known.
fn components(plan: &Plan, ledger: &NodeLedger, i: usize, salt_hash: &str) -> Option<Components> {
    let planned = &plan.nodes[i];
    let node_type = &plan.types[planned.type_index as usize];
    let mut inputs = Vec::with_capacity(planned.inputs.len());
    for input in &planned.inputs {
        let digest = ledger.output(input.from as usize, input.from_port)?;
        inputs.push(InputComponent {
            port: input.port.to_owned(),
            from: format!("{}.{}", plan.nodes[input.from as usize].id, input.from_port),
            hash: digest.content.to_string(),
        });
    }
    inputs.sort_by(|a, b| a.port.cmp(&b.port));
    Some(Components {
        node_type: node_type.name.to_owned(),
        version: node_type.version.to_owned(),
        settings: planned.settings.clone(),
        inputs,
        salt: salt_hash.to_owned(),
    })
}

/// `read|wrote<TAB>blake3<TAB>bytes<TAB>path` lines; others are skipped.
fn parse_manifest(text: &str) -> Vec<FileRecord> {
    text.lines()
        .filter_map(|line| {
            let mut parts = line.splitn(4, '\t');
            let op = parts.next()?;
            let blake3 = parts.next()?;
            let bytes = parts.next()?.parse().ok()?;
            let path = parts.next()?;
            (matches!(op, "read" | "wrote") && blake3.len() == 64).then(|| FileRecord {
                op: op.into(),
                path: path.into(),
                blake3: blake3.into(),
                bytes,
            })
        })
        .collect()
}

/// Each node's attempts, from the run's timeline.
fn tries(plan: &Plan, timeline: &Timeline) -> Vec<Vec<AttemptRecord>> {
    let mut tries = vec![Vec::new(); plan.nodes.len()];
    for row in &timeline.attempts {
        let Some(node) = tries.get_mut(row.node as usize) else { continue };
        node.push(AttemptRecord {
            attempt: row.attempt,
            backend: plan.instances.get(row.instance as usize).map_or_else(String::new, |i| i.name.clone()),
            status: row.status_name().to_owned(),
            submitted: row.submitted,
            started: row.started,
            finished: row.finished,
            bytes_in: row.bytes_in,
            bytes_out: row.bytes_out,
            error: row.error.as_deref().map(str::to_owned),
            log_lines: row.log_lines,
        });
    }
    tries
}

/// One record per node. `previous` holds the last run's components by node
/// id; `timeline` (from the run's observers) gives each attempt.
pub fn node_records(
    plan: &Plan,
    outcome: &RunOutcome,
    timeline: &Timeline,
    previous: &HashMap<String, Components>,
    cx: &RecordContext<'_>,
) -> Vec<NodeRecord> {
    let mut tries = tries(plan, timeline);
    let mut cached_at = vec![None; plan.nodes.len()];
    for &(node, at) in &timeline.hits {
        if let Some(slot) = cached_at.get_mut(node as usize) {
            *slot = Some(at);
        }
    }
    let salt_hash = blake3::hash(cx.salt.as_bytes()).to_hex().to_string();
    let versions: HashMap<&str, &str> = cx.plugins.iter().map(|p| (p.name.as_str(), p.version.as_str())).collect();
    let nodes = &outcome.nodes;
    let empty = NodeLedger::default();
    let ledger = nodes.ledger.as_ref();
    (0..plan.nodes.len())
        .map(|i| {
            let planned = &plan.nodes[i];
            let node_type = &plan.types[planned.type_index as usize];
            let instance = &plan.instances[nodes.instance[i] as usize];
            let status = ledger.map_or(CacheStatus::Off(OffReason::NoCache), |l| l.cache[i]);
            let components = ledger.and_then(|l| components(plan, l, i, &salt_hash));
            let (hit_from, cache_reason) = match status {
                CacheStatus::Hit { run } => {
                    let from = ledger.map(|l| l.hit_runs[run as usize].clone()).unwrap_or_default();
                    (Some(from.clone()), format!("stored by run {from}"))
                }
                CacheStatus::Miss(MissCause::Absent) => match &components {
                    Some(now) => (None, miss_reason(previous.get(&planned.id), now)),
                    None => (None, "new".into()),
                },
                CacheStatus::Miss(MissCause::Rerun) => (None, "--rerun asked for it".into()),
                CacheStatus::Miss(MissCause::Damaged(p)) => {
                    let problem = ledger.and_then(|l| l.problems.get(p as usize)).cloned().unwrap_or_default();
                    (None, format!("entry not usable: {problem}"))
                }
                CacheStatus::Pending => (None, "not looked up (the run stopped first)".into()),
                CacheStatus::Off(OffReason::NoCache) => (None, cx.no_cache.to_owned()),
                CacheStatus::Off(OffReason::NotDeterministic) => {
                    (None, format!("{} is not deterministic", node_type.name))
                }
                CacheStatus::Off(reason) => (None, reason.describe().to_owned()),
            };
            let l = ledger.unwrap_or(&empty);
            let outputs = l.outputs.get(i).map_or(Vec::new(), |o| {
                o.iter()
                    .map(|d| OutputRecord {
                        port: d.port.to_owned(),
                        hash: d.content.to_string(),
                        blake3: hex(&d.data),
                        bytes: d.size,
                    })
                    .collect()
            });
            let time = |v: Option<&f64>| v.copied().filter(|t| !t.is_nan());
            NodeRecord {
                node: planned.id.clone(),
                node_type: node_type.name.to_owned(),
                version: node_type.version.to_owned(),
                plugin: node_type.plugin.clone(),
                plugin_version: versions.get(node_type.plugin.as_str()).map_or_else(String::new, |v| (*v).to_owned()),
                backend: instance.name.clone(),
                backend_type: instance.factory.clone(),
                status: nodes.status[i],
                attempts: nodes.attempts[i],
                cache: status.name().to_owned(),
                cache_reason,
                hit_from,
                key: l.keys.get(i).copied().flatten().map(|k| k.to_string()),
                components,
                outputs,
                files: l.files.get(&(i as u32)).map_or(Vec::new(), |m| parse_manifest(m)),
                submitted: time(l.submitted.get(i)),
                finished: time(l.finished.get(i)),
                cached_at: cached_at[i],
                tries: std::mem::take(&mut tries[i]),
            }
        })
        .collect()
}

/// The end line: totals, the workflow outputs written to `written` files,
/// and the name of the log file beside the record, if one was written.
pub fn end(plan: &Plan, outcome: &RunOutcome, written: &[PathBuf], logs: Option<String>, finished: SystemTime) -> End {
    let report = &outcome.report;
    let files = plan
        .outputs
        .iter()
        .zip(&outcome.outputs)
        .filter_map(|(declared, payload)| {
            let OutputTarget::File(path) = &declared.target else { return None };
            let payload = payload.as_ref()?;
            if !written.contains(path) {
                return None;
            }
            Some(WrittenFile {
                path: std::path::absolute(path).unwrap_or_else(|_| path.clone()).to_string_lossy().into_owned(),
                from: declared.source.clone(),
                blake3: blake3::hash(&payload.data).to_hex().to_string(),
                bytes: payload.data.len() as u64,
            })
        })
        .collect();
    End {
        record: "end".into(),
        finished: humantime::format_rfc3339_millis(finished).to_string(),
        elapsed_secs: report.elapsed.as_secs_f64(),
        status: if report.success() {
            "succeeded"
        } else if report.interrupted {
            "interrupted"
        } else {
            "failed"
        }
        .into(),
        nodes: report.nodes,
        cached: report.cached,
        executed: report.executed,
        failed: report.failed,
        written: files,
        breakers: report.breakers.clone(),
        logs,
    }
}

/// A record with only its header.
pub fn started(cx: &RecordContext<'_>) -> RunRecord {
    RunRecord { header: header(cx), nodes: Vec::new(), end: None }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_looking_settings_are_redacted_before_hashing() {
        let config = "[backends.w]\ntype = \"worker\"\npassword = \"hunter2\"\nauth_token = \"t\"\nthreads = 2\n";
        let (clean, keys) = redact(config);
        assert!(!clean.contains("hunter2") && !clean.contains("\"t\""), "{clean}");
        assert!(clean.contains("threads = 2"));
        assert_eq!(keys, ["password", "auth_token"]);
        let other = config.replace("hunter2", "swordfish");
        assert_eq!(redact(&other).0, clean, "the hash does not depend on the secret");
    }

    #[test]
    fn manifests_give_files_and_skip_what_is_not_a_manifest_line() {
        let hash = "a".repeat(64);
        let text = format!("read\t{hash}\t3\t/d/a.txt\nwrote\t{hash}\t4\t/d/b c.txt\nnoise\nread\tshort\t1\t/x\n");
        let files = parse_manifest(&text);
        assert_eq!(files.len(), 2);
        assert_eq!((files[0].op.as_str(), files[0].path.as_str(), files[0].bytes), ("read", "/d/a.txt", 3));
        assert_eq!((files[1].op.as_str(), files[1].path.as_str()), ("wrote", "/d/b c.txt"));
    }
}
