//! `backplane bench --streams`: items through a streaming output on the real
//! `local` backend. A text of `items` lines goes through `std.split` (one
//! item per line, each handed to the host's sink with `emit`) into
//! `std.line_count`, which reads the accumulated value; beside it, in the
//! same run, the same text through `std.lines` (no stream) into the count.

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
}

/// `const` -> `middle` -> `std.line_count` over a text of `items` lines.
fn plan_through(host: &Host, middle: &str, items: usize) -> Result<Plan, String> {
    let mut text = String::with_capacity(items * 8);
    for i in 0..items {
        let _ = write!(text, "l{i}\\n");
    }
    let port = if middle == "std.split" { "items" } else { "text" };
    let workflow = format!(
        "[[node]]\nid = \"text\"\ntype = \"std.const\"\nsettings = {{ text = \"{text}\" }}\n\n\
         [[node]]\nid = \"middle\"\ntype = \"{middle}\"\ninputs = {{ text = \"text.text\" }}\n\n\
         [[node]]\nid = \"count\"\ntype = \"std.line_count\"\ninputs = {{ text = \"middle.{port}\" }}\n"
    );
    let workflow = Workflow::parse(SourceFile::new("streams-bench.toml", workflow)).map_err(|d| d.to_string())?;
    plan::build(&workflow, &host.nodes, &host.backends, &[], Default::default()).map_err(|d| d.to_string())
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
    Ok(StreamBenchResults {
        items,
        stream_items_per_sec: items as f64 / stream_secs,
        unstreamed_lines_per_sec: items as f64 / plain_secs,
        stream_to_unstreamed: stream_secs / plain_secs,
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
        out
    }
}
