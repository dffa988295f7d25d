//! `backplane verify <plugin>`: the conformance suite against every backend
//! a plugin exports, and the node-type checks against every node type.

use super::{load_config, load_host, print_json, say};
use crate::{Failure, GlobalArgs};
use backplane_conformance::{BackendSuite, Check, Status, check_backend_with, check_node_type, tally};
use backplane_host::loader;
use clap::Args;
use serde::Serialize;
use std::{
    io::IsTerminal,
    path::PathBuf,
    time::{Duration, Instant},
};

#[derive(Args)]
pub struct VerifyArgs {
    /// The plugin dylib to check.
    plugin: PathBuf,
    /// Configuration for the backends under test: a JSON object for all of
    /// them, or `NAME=JSON` for one (repeatable). Default: `{}`.
    #[arg(long, value_name = "[NAME=]JSON")]
    backend_config: Vec<String>,
    /// Seconds one task may take before it counts as a hang.
    #[arg(long, default_value_t = 60)]
    timeout: u64,
    /// Print the results as JSON.
    #[arg(long)]
    json: bool,
}

/// `--backend-config` values as (backend name or `None` for all, config).
fn parse_configs(values: &[String]) -> Result<Vec<(Option<String>, serde_json::Value)>, Failure> {
    values
        .iter()
        .map(|value| {
            let (name, json) = match value.split_once('=') {
                Some((name, json)) if !name.trim_start().starts_with('{') => (Some(name.to_owned()), json),
                _ => (None, value.as_str()),
            };
            serde_json::from_str(json)
                .map(|config| (name, config))
                .map_err(|e| Failure::Invalid(format!("error: --backend-config `{value}` is not JSON: {e}")))
        })
        .collect()
}

#[derive(Serialize)]
struct Subject {
    kind: &'static str,
    name: String,
    checks: Vec<Check>,
    /// How long its checks took.
    seconds: f64,
}

#[derive(Serialize)]
struct Report {
    plugin: PathBuf,
    loaded: bool,
    subjects: Vec<Subject>,
    passed: usize,
    failed: usize,
    skipped: usize,
}

pub fn verify(global: &GlobalArgs, args: VerifyArgs) -> Result<(), Failure> {
    let configs = parse_configs(&args.backend_config)?;
    // The standard node types the suite runs come from the usual plugin path.
    let host = load_host(global, &load_config(global)?)?;
    // Checks are shown as they are made: on stdout, or on a terminal's
    // stderr when stdout carries the JSON report.
    let show = |line: String| {
        if !args.json {
            say!("{line}");
        } else if std::io::stderr().is_terminal() {
            eprintln!("{line}");
        }
    };
    let mut subjects = Vec::new();
    let plugin = match loader::load(&args.plugin) {
        Ok(plugin) => Some(plugin),
        Err(e) => {
            subjects.push(Subject {
                kind: "plugin",
                name: args.plugin.display().to_string(),
                checks: vec![Check::fail("load", e.to_string())],
                seconds: 0.0,
            });
            None
        }
    };
    if let Some(p) = &plugin {
        show(format!(
            "plugin {} {} (plugin-api {}): {}",
            p.name,
            p.version,
            p.interface_version,
            args.plugin.display()
        ));
    }
    if let Some(plugin) = &plugin {
        let mut nodes: Vec<_> = host.nodes.sorted().into_iter().map(|e| e.spec).collect();
        nodes.extend(plugin.nodes.iter().copied());
        if plugin.backends.is_empty() && plugin.nodes.is_empty() {
            subjects.push(Subject {
                kind: "plugin",
                name: plugin.name.clone(),
                checks: vec![Check::fail("exports", "it exports no backends and no node types")],
                seconds: 0.0,
            });
        }
        for factory in &plugin.backends {
            let name = factory.name().as_str();
            let config = configs
                .iter()
                .find(|(n, _)| n.as_deref() == Some(name))
                .or_else(|| configs.iter().find(|(n, _)| n.is_none()));
            let config = config.map_or_else(|| serde_json::json!({}), |(_, c)| c.clone());
            let suite =
                BackendSuite { factory: *factory, config, nodes: &nodes, timeout: Duration::from_secs(args.timeout) };
            show(format!("backend `{name}`"));
            let started = Instant::now();
            let checks = check_backend_with(&suite, &mut |check| show(check_line(check)));
            let seconds = started.elapsed().as_secs_f64();
            subjects.push(Subject { kind: "backend", name: name.to_owned(), checks, seconds });
        }
        for spec in &plugin.nodes {
            show(format!("node `{}`", spec.type_name()));
            let started = Instant::now();
            let checks = check_node_type(*spec);
            checks.iter().for_each(|check| show(check_line(check)));
            let seconds = started.elapsed().as_secs_f64();
            subjects.push(Subject { kind: "node", name: spec.type_name().to_string(), checks, seconds });
        }
    }
    let all: Vec<Check> = subjects.iter().flat_map(|s| s.checks.iter().cloned()).collect();
    let (passed, failed, skipped) = tally(&all);
    let report = Report { plugin: args.plugin.clone(), loaded: plugin.is_some(), subjects, passed, failed, skipped };
    if args.json {
        print_json(&report)?;
    } else {
        if plugin.is_none() {
            for subject in &report.subjects {
                say!("{} `{}`", subject.kind, subject.name);
                subject.checks.iter().for_each(|check| say!("{}", check_line(check)));
            }
        }
        say!("{passed} passed, {failed} failed, {skipped} skipped");
    }
    if failed == 0 && report.loaded { Ok(()) } else { Err(Failure::Run) }
}

/// Check names are at most this long; the details line up after them.
const NAME_WIDTH: usize = 18;

/// `  PASS  name  detail`, as each check is made.
fn check_line(check: &Check) -> String {
    let status = match check.status {
        Status::Pass => "PASS",
        Status::Fail => "FAIL",
        Status::Skip => "SKIP",
    };
    format!("  {status}  {:NAME_WIDTH$}  {}", check.name, check.detail)
}
