//! `backplane bench --validation`: the cost of validating workflows full of
//! errors at two sizes, ten times apart, so the ratio shows whether it grows
//! linearly (1.0) or worse.

use backplane_host::{Host, diagnostic::SourceFile, plan};
use serde::Serialize;
use std::{fmt::Write, time::Instant};

#[derive(Debug, Clone, Serialize)]
pub struct ValidationResults {
    pub errors_small: usize,
    pub errors_large: usize,
    /// Seconds to validate one node whose `env` has that many bad values on one line.
    pub one_line_small_secs: f64,
    pub one_line_large_secs: f64,
    /// The same errors, one per line.
    pub own_lines_small_secs: f64,
    pub own_lines_large_secs: f64,
    /// (large time / small time) / (large / small): 1.0 is linear.
    pub one_line_growth: f64,
    pub own_lines_growth: f64,
}

/// A `std.shell` node whose `env` holds `errors` numbers (it takes strings).
fn workflow(errors: usize, one_line: bool) -> String {
    let mut text = String::from("[[node]]\nid = \"a\"\ntype = \"std.shell\"\n");
    if one_line {
        text.push_str("settings = { command = \"true\", env = { ");
        for i in 0..errors {
            let _ = write!(text, "{}k{i} = 1", if i == 0 { "" } else { ", " });
        }
        text.push_str(" } }\n");
    } else {
        text.push_str("[node.settings]\ncommand = \"true\"\n[node.settings.env]\n");
        for i in 0..errors {
            let _ = writeln!(text, "k{i} = 1");
        }
    }
    text
}

fn time(host: &Host, text: String, repeat: usize) -> Result<f64, String> {
    let mut best = f64::INFINITY;
    for _ in 0..repeat.max(1) {
        let source = SourceFile::new("bench.toml", text.clone());
        let start = Instant::now();
        let result =
            plan::plan_source(source, &Default::default(), &host.nodes, &host.backends, &[], Default::default());
        best = best.min(start.elapsed().as_secs_f64());
        if result.is_ok() {
            return Err("the error workflow validated; is `std.shell` loaded?".into());
        }
    }
    Ok(best)
}

pub fn run(host: &Host, errors: usize, repeat: usize) -> Result<ValidationResults, String> {
    let (small, large) = (errors / 10, errors);
    let one_line_small_secs = time(host, workflow(small, true), repeat)?;
    let one_line_large_secs = time(host, workflow(large, true), repeat)?;
    let own_lines_small_secs = time(host, workflow(small, false), repeat)?;
    let own_lines_large_secs = time(host, workflow(large, false), repeat)?;
    let growth = |s: f64, l: f64| (l / s) / (large as f64 / small as f64);
    Ok(ValidationResults {
        errors_small: small,
        errors_large: large,
        one_line_small_secs,
        one_line_large_secs,
        own_lines_small_secs,
        own_lines_large_secs,
        one_line_growth: growth(one_line_small_secs, one_line_large_secs),
        own_lines_growth: growth(own_lines_small_secs, own_lines_large_secs),
    })
}

impl super::BenchReport for ValidationResults {
    fn to_markdown(&self) -> String {
        let mut s = String::from("| workflow | errors | seconds | growth (1.0 = linear) |\n|---|---|---|---|\n");
        for (what, small, large, growth) in [
            ("bad `env` values on one line", self.one_line_small_secs, self.one_line_large_secs, self.one_line_growth),
            (
                "bad `env` values, one per line",
                self.own_lines_small_secs,
                self.own_lines_large_secs,
                self.own_lines_growth,
            ),
        ] {
            let _ = writeln!(s, "| {what} | {} | {small:.3} | |", self.errors_small);
            let _ = writeln!(s, "| {what} | {} | {large:.3} | {growth:.2} |", self.errors_large);
        }
        s
    }
}
