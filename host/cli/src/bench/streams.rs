//! `backplane bench --streams`: items through a streaming output on the real
//! `local` backend. A text of `items` lines goes through `std.split` (one
//! item per line, each handed to the host's sink with `emit`) into
//! `std.line_count`, which reads the accumulated value; beside it, in the
//! same run, the same text through `std.lines` (no stream) into the count.
//!
//! Per-item fan-out: the same items each through a `std.noop` task of its
//! own (`each = "split.items"`), gathered into the count; and the peak memory
//! of a longer stream whose per-item results nobody reads, which the credit
//! window bounds (the input text aside).

use super::{BenchReport, time_plan};
use backplane_host::{
    Host,
    diagnostic::SourceFile,
    plan::{self, Plan},
    workflow::Workflow,
};
use serde::Serialize;
use std::fmt::Write;

#[derive(Debug, Clone, Serialize)]
pub struct StreamBenchResults {
    pub items: usize,
    /// Lines per second through `std.split` -> `std.line_count` (each line one item).
    pub stream_items_per_sec: f64,
    /// Lines per second through `std.lines` -> `std.line_count` (one payload).
    pub unstreamed_lines_per_sec: f64,
    /// Streamed run time over the unstreamed one.
    pub stream_to_unstreamed: f64,
    /// Items per second through `std.split` -> per-item `std.noop` -> `std.line_count`.
    pub fanout_items_per_sec: f64,
    /// Items in the memory measurement's stream.
    pub memory_items: usize,
    /// Its input text, in bytes (held by the plan and the producer's task).
    pub memory_input_bytes: usize,
    /// How much the process's peak resident memory grew while it ran (the
    /// input text's copies included: the producer's input and the settings it came from).
    pub memory_peak_growth_bytes: u64,
    /// The credit window the memory measurement ran with.
    pub memory_window: u32,
}

/// The window of the fan-out rows: the default of an `each` edge.
const WINDOW: u32 = backplane_host::workflow::DEFAULT_WINDOW;

/// A text of `items` short lines, escaped for a TOML basic string.
fn lines(items: usize) -> String {
    let mut text = String::with_capacity(items * 10);
    for i in 0..items {
        let _ = write!(text, "l{i}\\n");
    }
    text
}

fn plan_of(host: &Host, workflow: String) -> Result<Plan, String> {
    let workflow = Workflow::parse(SourceFile::new("streams-bench.toml", workflow)).map_err(|d| d.to_string())?;
    plan::build(&workflow, &host.nodes, &host.backends, &[], Default::default()).map_err(|d| d.to_string())
}

/// `const` -> `middle` -> `std.line_count` over a text of `items` lines.
fn plan_through(host: &Host, middle: &str, items: usize) -> Result<Plan, String> {
    let port = if middle == "std.split" { "items" } else { "text" };
    plan_of(
        host,
        format!(
            "[[node]]\nid = \"text\"\ntype = \"std.const\"\nsettings = {{ text = \"{}\" }}\n\n\
             [[node]]\nid = \"middle\"\ntype = \"{middle}\"\ninputs = {{ text = \"text.text\" }}\n\n\
             [[node]]\nid = \"count\"\ntype = \"std.line_count\"\ninputs = {{ text = \"middle.{port}\" }}\n",
            lines(items)
        ),
    )
}

/// `const` -> `std.split` -> per-item `std.noop`, gathered into `std.line_count` when `gather`
/// (nodes in that order).
pub(super) fn plan_fanout(host: &Host, items: usize, gather: bool) -> Result<Plan, String> {
    let count = "[[node]]\nid = \"count\"\ntype = \"std.line_count\"\ninputs = { text = \"each.out\" }\n";
    plan_of(
        host,
        format!(
            "[[node]]\nid = \"text\"\ntype = \"std.const\"\nsettings = {{ text = \"{}\" }}\n\n\
             [[node]]\nid = \"split\"\ntype = \"std.split\"\ninputs = {{ text = \"text.text\" }}\n\n\
             [[node]]\nid = \"each\"\ntype = \"std.noop\"\ninputs = {{ in = {{ each = \"split.items\", window = {WINDOW} }} }}\n\n{}",
            lines(items),
            if gather { count } else { "" }
        ),
    )
}

/// The process's peak resident memory (`VmHWM`), in bytes.
fn peak_rss() -> Result<u64, String> {
    let status = std::fs::read_to_string("/proc/self/status").map_err(|e| format!("/proc/self/status: {e}"))?;
    let kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .ok_or("no VmHWM in /proc/self/status")?;
    Ok(kib * 1024)
}

/// Resets the peak resident memory to the current one (Linux's `clear_refs` 5).
fn reset_peak_rss() -> Result<(), String> {
    std::fs::write("/proc/self/clear_refs", "5").map_err(|e| format!("cannot reset the peak memory: {e}"))
}

pub fn run(host: &Host, items: usize, repeat: usize) -> Result<StreamBenchResults, String> {
    if host.nodes.get("std.split").is_none() {
        return Err("the `std.split` node type is not loaded (is the std-nodes plugin on the plugin path?)".into());
    }
    let streamed = plan_through(host, "std.split", items)?;
    let unstreamed = plan_through(host, "std.lines", items)?;
    let (mut stream_secs, mut plain_secs) = (f64::INFINITY, f64::INFINITY);
    for _ in 0..repeat {
        stream_secs = stream_secs.min(time_plan(&streamed, 1)?);
        plain_secs = plain_secs.min(time_plan(&unstreamed, 1)?);
    }
    let fanout = plan_fanout(host, items, true)?;
    let mut fanout_secs = f64::INFINITY;
    for _ in 0..repeat {
        fanout_secs = fanout_secs.min(time_plan(&fanout, 1)?);
    }
    drop(fanout);
    let memory_items = items * 10;
    let long = plan_fanout(host, memory_items, false)?;
    let input_bytes = long.nodes[0].settings.len();
    reset_peak_rss()?;
    let before = peak_rss()?;
    time_plan(&long, 1)?;
    let grew = peak_rss()?.saturating_sub(before);
    Ok(StreamBenchResults {
        items,
        stream_items_per_sec: items as f64 / stream_secs,
        unstreamed_lines_per_sec: items as f64 / plain_secs,
        stream_to_unstreamed: stream_secs / plain_secs,
        fanout_items_per_sec: items as f64 / fanout_secs,
        memory_items,
        memory_input_bytes: input_bytes,
        memory_peak_growth_bytes: grew,
        memory_window: WINDOW,
    })
}

impl BenchReport for StreamBenchResults {
    fn to_markdown(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "| measurement | value |\n|---|---|");
        let _ = writeln!(
            out,
            "| `std.split` -> `std.line_count`, one item per line | {:.0} items/s ({} items) |",
            self.stream_items_per_sec, self.items
        );
        let _ = writeln!(
            out,
            "| `std.lines` -> `std.line_count`, one payload | {:.0} lines/s |",
            self.unstreamed_lines_per_sec
        );
        let _ = writeln!(out, "| streamed / unstreamed run time | {:.2} |", self.stream_to_unstreamed);
        let _ = writeln!(
            out,
            "| `std.split` -> per-item `std.noop` (window {}) -> `std.line_count` | {:.0} items/s |",
            WINDOW, self.fanout_items_per_sec
        );
        let _ = writeln!(
            out,
            "| peak memory growth of a {}-item fan-out (its input text: {} B) | {} B |",
            self.memory_items, self.memory_input_bytes, self.memory_peak_growth_bytes
        );
        out
    }
}
