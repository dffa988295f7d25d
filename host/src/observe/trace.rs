//! Trace files, written when the run ends: a TSV with one row per attempt
//! (and per cache hit), and the Chrome trace-event format that Perfetto and
//! `chrome://tracing` open (one process per instance, one thread per lane).

use super::{CacheOutcome, RunEvent, RunObserver, Timeline};
use crate::{plan::Plan, report::RunReport};
use serde::Serialize;
use std::{
    fmt::Write as _,
    path::PathBuf,
    time::{SystemTime, UNIX_EPOCH},
};

/// Writes `--trace` (TSV) and `--trace-json` (Chrome trace events).
pub struct TraceWriter {
    tsv: Option<PathBuf>,
    chrome: Option<PathBuf>,
    timeline: Timeline,
}

impl TraceWriter {
    pub fn new(tsv: Option<PathBuf>, chrome: Option<PathBuf>) -> Self {
        Self { tsv, chrome, timeline: Timeline::new() }
    }
}

impl RunObserver for TraceWriter {
    fn event(&mut self, _plan: &Plan, event: &RunEvent) {
        self.timeline.record(event);
    }

    fn finish(&mut self, plan: &Plan, _report: &RunReport) -> Result<(), String> {
        let mut problems = Vec::new();
        let files = [(&self.tsv, tsv(plan, &self.timeline)), (&self.chrome, chrome(plan, &self.timeline))];
        for (path, text) in files {
            let Some(path) = path else { continue };
            if let Err(e) = backplane_atomic_file::write(path, text.as_bytes()) {
                problems.push(format!("cannot write the trace {}: {e}", path.display()));
            }
        }
        if problems.is_empty() { Ok(()) } else { Err(problems.join("; ")) }
    }
}

/// The TSV columns, in order.
pub const TSV_COLUMNS: [&str; 14] = [
    "node",
    "type",
    "instance",
    "attempt",
    "status",
    "submit",
    "start",
    "complete",
    "queued",
    "duration",
    "bytes_in",
    "bytes_out",
    "cache",
    "error",
];

/// Seconds since the Unix epoch of `offset` seconds into a run started at `started`.
fn epoch(started: SystemTime, offset: f64) -> f64 {
    started.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs_f64() + offset
}

/// Keeps a field on its one line and in its one column.
fn field(text: &str) -> String {
    text.replace(['\t', '\n', '\r'], " ")
}

/// One row per attempt, then one per cache hit. Times are seconds since the
/// Unix epoch (microseconds); `queued` and `duration` are seconds; an empty
/// field is unknown (no end: the attempt was abandoned).
pub fn tsv(plan: &Plan, timeline: &Timeline) -> String {
    let started = timeline.started.unwrap_or(UNIX_EPOCH);
    let mut out = TSV_COLUMNS.join("\t");
    out.push('\n');
    let cache = |node: u32| match timeline.cache.get(node as usize) {
        Some(CacheOutcome::Miss) => "miss",
        Some(CacheOutcome::Hit) => "hit",
        _ => "-",
    };
    for row in &timeline.attempts {
        let planned = &plan.nodes[row.node as usize];
        let start = row.run_start();
        let (complete, duration) = match row.finished {
            Some(f) => (format!("{:.6}", epoch(started, f)), format!("{:.6}", f - start)),
            None => (String::new(), String::new()),
        };
        let _ = writeln!(
            out,
            "{}\t{}\t{}\t{}\t{}\t{:.6}\t{:.6}\t{complete}\t{:.6}\t{duration}\t{}\t{}\t{}\t{}",
            field(&planned.id),
            plan.types[planned.type_index as usize].name,
            field(&plan.instances[row.instance as usize].name),
            row.attempt,
            row.status_name(),
            epoch(started, row.submitted),
            epoch(started, start),
            start - row.submitted,
            row.bytes_in,
            row.bytes_out,
            cache(row.node),
            field(row.error.as_deref().unwrap_or("")),
        );
    }
    for &(node, at) in &timeline.hits {
        let planned = &plan.nodes[node as usize];
        let at = epoch(started, at);
        let _ = writeln!(
            out,
            "{}\t{}\t-\t0\tcached\t{at:.6}\t{at:.6}\t{at:.6}\t0.000000\t0.000000\t0\t0\thit\t",
            field(&planned.id),
            plan.types[planned.type_index as usize].name,
        );
    }
    out
}

/// Chrome trace events: a complete (`X`) event per attempt on its
/// instance's lane, an instant (`i`) event per cache hit, and metadata
/// naming processes (instances) and threads (lanes). Microseconds.
/// Serialized straight from borrowed rows: a 100,000-node trace is written
/// in tens of milliseconds, without a tree of JSON values in between.
pub fn chrome(plan: &Plan, timeline: &Timeline) -> String {
    let us = |secs: f64| (secs * 1e6).round() as i64;
    let (lanes, lane_counts) = timeline.lanes(plan.instances.len());
    let mut events = Vec::with_capacity(timeline.attempts.len() + timeline.hits.len() + 16);
    let mut names = Vec::new();
    for (i, instance) in plan.instances.iter().enumerate() {
        names.push((i + 1, None, format!("{} ({})", instance.name, instance.factory)));
        for lane in 0..lane_counts[i] {
            names.push((i + 1, Some(lane), format!("{} #{lane}", instance.name)));
        }
    }
    if !timeline.hits.is_empty() {
        names.push((0, None, "cache hits".to_owned()));
    }
    for (pid, lane, name) in &names {
        let (kind, tid) = match lane {
            None => ("process_name", None),
            Some(lane) => ("thread_name", Some(*lane)),
        };
        events.push(ChromeEvent::Meta { ph: "M", name: kind, pid: *pid, tid, args: MetaArgs::Name { name } });
        if lane.is_none() && *pid > 0 {
            let sort = MetaArgs::SortIndex { sort_index: *pid };
            events.push(ChromeEvent::Meta { ph: "M", name: "process_sort_index", pid: *pid, tid: None, args: sort });
        }
    }
    for (row, &lane) in timeline.attempts.iter().zip(&lanes) {
        let planned = &plan.nodes[row.node as usize];
        let start = row.run_start();
        let end = row.finished.unwrap_or(timeline.elapsed).max(start);
        events.push(ChromeEvent::Complete {
            ph: "X",
            name: &planned.id,
            cat: plan.types[planned.type_index as usize].name,
            pid: row.instance as usize + 1,
            tid: lane,
            ts: us(start),
            dur: us(end - start),
            args: AttemptArgs {
                attempt: row.attempt,
                status: row.status_name(),
                queued_us: us(start - row.submitted),
                bytes_in: row.bytes_in,
                bytes_out: row.bytes_out,
                error: row.error.as_deref(),
            },
        });
    }
    for &(node, at) in &timeline.hits {
        let planned = &plan.nodes[node as usize];
        let cat = plan.types[planned.type_index as usize].name;
        events.push(ChromeEvent::Instant { ph: "i", s: "t", name: &planned.id, cat, pid: 0, tid: 0, ts: us(at) });
    }
    let started = timeline.started.map(|s| humantime::format_rfc3339_micros(s).to_string());
    let trace = ChromeTrace {
        trace_events: events,
        display_time_unit: "ms",
        other_data: OtherData { workflow: &plan.name, started: started.as_deref() },
    };
    serde_json::to_string(&trace).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ChromeTrace<'a> {
    trace_events: Vec<ChromeEvent<'a>>,
    display_time_unit: &'static str,
    other_data: OtherData<'a>,
}

#[derive(Serialize)]
struct OtherData<'a> {
    workflow: &'a str,
    started: Option<&'a str>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum ChromeEvent<'a> {
    Meta {
        ph: &'static str,
        name: &'static str,
        pid: usize,
        #[serde(skip_serializing_if = "Option::is_none")]
        tid: Option<u32>,
        args: MetaArgs<'a>,
    },
    Complete {
        ph: &'static str,
        name: &'a str,
        cat: &'a str,
        pid: usize,
        tid: u32,
        ts: i64,
        dur: i64,
        args: AttemptArgs<'a>,
    },
    Instant {
        ph: &'static str,
        s: &'static str,
        name: &'a str,
        cat: &'a str,
        pid: usize,
        tid: u32,
        ts: i64,
    },
}

#[derive(Serialize)]
#[serde(untagged)]
enum MetaArgs<'a> {
    Name { name: &'a str },
    SortIndex { sort_index: usize },
}

#[derive(Serialize)]
struct AttemptArgs<'a> {
    attempt: u8,
    status: &'static str,
    queued_us: i64,
    bytes_in: u64,
    bytes_out: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
}
