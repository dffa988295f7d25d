//! A run record as one self-contained HTML page: a timeline with a lane
//! per instance slot, a running-tasks-over-time chart, per-backend
//! statistics and a paginated node table (`report.html`, with the data
//! embedded as JSON; no external URL, so it works offline).
//!
//! The data is columnar (one array per field, names and types indexed
//! once), so a 100,000-node run stays a few megabytes.

use super::record::{NodeRecord, RunRecord};
use crate::report::{NodeStatus, mean_and_p95};
use serde_json::{Value, json};
use std::collections::HashMap;

const TEMPLATE: &str = include_str!("report.html");
const PLACEHOLDER: &str = "__BACKPLANE_REPORT_DATA__";

/// The format of the embedded data (the template reads this one).
pub const REPORT_DATA_FORMAT: u32 = 1;

const NODE_STATUSES: [NodeStatus; 6] = [
    NodeStatus::Succeeded,
    NodeStatus::Failed,
    NodeStatus::Cancelled,
    NodeStatus::Skipped,
    NodeStatus::NotStarted,
    NodeStatus::Abandoned,
];

const ATTEMPT_STATUSES: [&str; 6] = ["succeeded", "failed", "timed-out", "cancelled", "lost", "abandoned"];

/// The whole page for `record`.
pub fn render(record: &RunRecord) -> String {
    let data = data(record).to_string().replace('<', "\\u003c");
    TEMPLATE.replacen(PLACEHOLDER, &data, 1)
}

/// Milliseconds, to the microsecond.
fn ms(secs: f64) -> f64 {
    (secs * 1e6).round() / 1e3
}

/// Per instance, what its attempts did.
#[derive(Default)]
struct InstanceStats {
    factory: String,
    nodes: usize,
    attempts: usize,
    succeeded: usize,
    finished: usize,
    received_bytes: u64,
    durations: Vec<f64>,
}

/// The data the template reads (its schema is the template's too).
pub fn data(record: &RunRecord) -> Value {
    let nodes = &record.nodes;
    let mut instance_index: HashMap<&str, usize> = HashMap::new();
    let mut instances: Vec<(&str, InstanceStats)> = Vec::new();
    // Instances in order of first appearance: last-attempt backends, then attempts'.
    let names = nodes
        .iter()
        .map(|n| n.backend.as_str())
        .chain(nodes.iter().flat_map(|n| n.tries.iter().map(|t| t.backend.as_str())));
    for name in names {
        if !instance_index.contains_key(name) {
            instance_index.insert(name, instances.len());
            instances.push((name, InstanceStats::default()));
        }
    }
    let mut types: Vec<&str> = Vec::new();
    let mut type_index: HashMap<&str, usize> = HashMap::new();
    let mut columns = NodeColumns::default();
    let mut attempts = AttemptColumns::default();
    let (mut hit_nodes, mut hit_at) = (Vec::new(), Vec::new());
    for (i, node) in nodes.iter().enumerate() {
        let t = *type_index.entry(node.node_type.as_str()).or_insert_with(|| {
            types.push(node.node_type.as_str());
            types.len() - 1
        });
        let instance = instance_index[node.backend.as_str()];
        let stats = &mut instances[instance].1;
        stats.factory.clone_from(&node.backend_type);
        if node.attempts > 0 {
            stats.nodes += 1;
        }
        columns.push(node, t, instance);
        for attempt in &node.tries {
            let stats = &mut instances[instance_index[attempt.backend.as_str()]].1;
            stats.attempts += 1;
            if let Some(finished) = attempt.finished {
                stats.finished += 1;
                stats.durations.push(finished - attempt.submitted);
            }
            if attempt.status == "succeeded" {
                stats.succeeded += 1;
            }
            stats.received_bytes += attempt.bytes_out;
            attempts.node.push(i);
            attempts.instance.push(instance_index[attempt.backend.as_str()]);
            attempts.attempt.push(attempt.attempt);
            attempts.status.push(ATTEMPT_STATUSES.iter().position(|s| *s == attempt.status).unwrap_or(1));
            attempts.submit.push(ms(attempt.submitted));
            let start = attempt.started.unwrap_or(attempt.submitted);
            attempts.start.push(ms(start));
            let elapsed = record.end.as_ref().map_or(start, |e| e.elapsed_secs);
            attempts.end.push(ms(attempt.finished.unwrap_or(elapsed).max(start)));
            attempts.bytes_in.push(attempt.bytes_in);
            attempts.bytes_out.push(attempt.bytes_out);
        }
        if let Some(at) = node.cached_at {
            hit_nodes.push(i);
            hit_at.push(ms(at));
        }
    }
    let instances: Vec<Value> = instances
        .into_iter()
        .map(|(name, mut s)| {
            let (mean, p95) = mean_and_p95(&mut s.durations);
            json!({
                "name": name, "factory": s.factory, "nodes": s.nodes, "attempts": s.attempts,
                "succeeded": s.succeeded, "failed": s.finished - s.succeeded,
                "success_rate": (s.finished > 0).then(|| s.succeeded as f64 / s.finished as f64),
                "mean_ms": mean.map(ms), "p95_ms": p95.map(ms), "received_bytes": s.received_bytes,
            })
        })
        .collect();
    let count = |status: NodeStatus| nodes.iter().filter(|n| n.status == status).count();
    let end = record.end.as_ref();
    let retries: usize = nodes.iter().map(|n| n.tries.len().saturating_sub(1)).sum();
    let timeouts = nodes.iter().flat_map(|n| &n.tries).filter(|t| t.status == "timed-out").count();
    let failures: Vec<Value> = nodes
        .iter()
        .filter(|n| n.status == NodeStatus::Failed)
        .map(|n| {
            let last = n.tries.last();
            json!({
                "node": n.node, "type": n.node_type, "backend": n.backend,
                "kind": last.map_or("failed", |t| t.status.as_str()),
                "message": last.and_then(|t| t.error.as_deref()).unwrap_or(""),
            })
        })
        .collect();
    json!({
        "format": REPORT_DATA_FORMAT,
        "workflow": record.header.workflow.name,
        "workflow_path": record.header.workflow.path,
        "run_id": record.header.run_id,
        "started": record.header.started,
        "elapsed_ms": end.map(|e| ms(e.elapsed_secs)),
        "outcome": end.map_or("did-not-finish", |e| e.status.as_str()),
        "totals": {
            "nodes": nodes.len(), "succeeded": count(NodeStatus::Succeeded),
            "cached": nodes.iter().filter(|n| n.cached_at.is_some()).count(),
            "executed": nodes.iter().filter(|n| n.attempts > 0).count(),
            "failed": count(NodeStatus::Failed), "cancelled": count(NodeStatus::Cancelled),
            "skipped": count(NodeStatus::Skipped), "not_started": count(NodeStatus::NotStarted),
            "abandoned": count(NodeStatus::Abandoned), "retries": retries, "timeouts": timeouts,
        },
        "instances": instances,
        "breakers": end.map_or(Vec::new(), |e| e.breakers.iter().map(|b| json!({
            "instance": b.instance, "at_ms": ms(b.at_secs), "event": b.event,
        })).collect()),
        "failures": failures,
        "types": types,
        "node_statuses": NODE_STATUSES.map(NodeStatus::name),
        "nodes": columns.into_json(),
        "attempt_statuses": ATTEMPT_STATUSES,
        "attempts": {
            "node": attempts.node, "instance": attempts.instance, "attempt": attempts.attempt,
            "status": attempts.status, "submit": attempts.submit, "start": attempts.start, "end": attempts.end,
            "bytes_in": attempts.bytes_in, "bytes_out": attempts.bytes_out,
        },
        "hits": { "node": hit_nodes, "at": hit_at },
    })
}

#[derive(Default)]
struct NodeColumns<'a> {
    id: Vec<&'a str>,
    node_type: Vec<usize>,
    status: Vec<usize>,
    instance: Vec<usize>,
    attempts: Vec<u8>,
    cache: Vec<&'a str>,
    cache_reason: Vec<&'a str>,
}

impl<'a> NodeColumns<'a> {
    fn push(&mut self, node: &'a NodeRecord, node_type: usize, instance: usize) {
        self.id.push(&node.node);
        self.node_type.push(node_type);
        self.status.push(NODE_STATUSES.iter().position(|s| *s == node.status).unwrap_or(0));
        self.instance.push(instance);
        self.attempts.push(node.attempts);
        self.cache.push(&node.cache);
        self.cache_reason.push(&node.cache_reason);
    }

    fn into_json(self) -> Value {
        json!({
            "id": self.id, "type": self.node_type, "status": self.status, "instance": self.instance,
            "attempts": self.attempts, "cache": self.cache, "cache_reason": self.cache_reason,
        })
    }
}

#[derive(Default)]
struct AttemptColumns {
    node: Vec<usize>,
    instance: Vec<usize>,
    attempt: Vec<u8>,
    status: Vec<usize>,
    submit: Vec<f64>,
    start: Vec<f64>,
    end: Vec<f64>,
    bytes_in: Vec<u64>,
    bytes_out: Vec<u64>,
}
