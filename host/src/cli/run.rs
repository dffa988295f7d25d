//! `backplane run` and `backplane validate`.

use super::say;
use super::{print_json, setup};
use crate::{Failure, GlobalArgs};
use backplane_host::{
    Host,
    engine::{self, RunOptions, RunReport},
    output,
    plan::{self, Plan},
    workflow,
};
use clap::Args;
use std::{io::IsTerminal, path::PathBuf};

#[derive(Args)]
pub struct RunArgs {
    /// The workflow file.
    workflow: PathBuf,
    /// Print the run report as JSON on stdout.
    #[arg(long)]
    json: bool,
    /// Never show a progress bar.
    #[arg(long)]
    no_progress: bool,
    /// Plan only: print where every node would run, like `backplane plan`.
    #[arg(long)]
    dry_run: bool,
}

#[derive(Args)]
pub struct PlanArgs {
    workflow: PathBuf,
    /// Print the routing table as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct ValidateArgs {
    workflow: PathBuf,
    /// Print problems as JSON.
    #[arg(long)]
    json: bool,
}

fn load_plan(
    host: &Host,
    path: &std::path::Path,
) -> Result<Plan, (Failure, Vec<backplane_host::diagnostic::Diagnostic>)> {
    let source = workflow::read_source(path).map_err(|e| (Failure::Environment(e.to_string()), Vec::new()))?;
    plan::plan_source(source, &host.nodes, &host.backends, &host.routes)
        .map_err(|d| (Failure::Invalid(d.to_string()), d.0))
}

pub fn validate(global: &GlobalArgs, args: ValidateArgs) -> Result<(), Failure> {
    let host = setup(global)?;
    match load_plan(&host, &args.workflow) {
        Ok(plan) => {
            if args.json {
                print_json(&serde_json::json!({ "valid": true, "errors": [], "nodes": plan.nodes.len() }))
            } else {
                say!("{}: valid ({} nodes)", args.workflow.display(), plan.nodes.len());
                Ok(())
            }
        }
        Err((failure, diagnostics)) if args.json && !diagnostics.is_empty() => {
            print_json(&serde_json::json!({ "valid": false, "errors": diagnostics }))?;
            Err(match failure {
                Failure::Invalid(_) => Failure::Invalid(String::new()),
                other => other,
            })
        }
        Err((failure, _)) => Err(failure),
    }
}

pub fn plan(global: &GlobalArgs, args: PlanArgs) -> Result<(), Failure> {
    let host = setup(global)?;
    let plan = load_plan(&host, &args.workflow).map_err(|(f, _)| f)?;
    print_plan(&plan, args.json)
}

fn print_plan(plan: &Plan, json: bool) -> Result<(), Failure> {
    let rows = plan.routing_table();
    if json {
        let mut per_instance = vec![0usize; plan.instances.len()];
        for node in &plan.nodes {
            per_instance[node.backend as usize] += 1;
        }
        let instances: Vec<serde_json::Value> = plan
            .instances
            .iter()
            .zip(&per_instance)
            .map(|(i, nodes)| {
                serde_json::json!({
                    "name": i.name, "type": i.factory, "derived_from": i.derived_from,
                    "config": i.config, "nodes": nodes,
                })
            })
            .collect();
        return print_json(&serde_json::json!({ "workflow": plan.name, "nodes": rows, "instances": instances }));
    }
    let width = |f: fn(&plan::RouteRow) -> &str, title: &str| {
        rows.iter().map(|r| f(r).len()).chain([title.len()]).max().unwrap_or(0)
    };
    let (wn, wt, wb) = (width(|r| &r.node, "NODE"), width(|r| &r.type_name, "TYPE"), width(|r| &r.backend, "BACKEND"));
    say!("{:wn$}  {:wt$}  {:wb$}  REASON", "NODE", "TYPE", "BACKEND");
    for r in &rows {
        say!("{:wn$}  {:wt$}  {:wb$}  {}", r.node, r.type_name, r.backend, r.reason);
    }
    Ok(())
}

pub fn run(global: &GlobalArgs, args: RunArgs) -> Result<(), Failure> {
    let host = setup(global)?;
    let plan = load_plan(&host, &args.workflow).map_err(|(f, _)| f)?;
    if args.dry_run {
        return print_plan(&plan, args.json);
    }
    let options = RunOptions {
        progress: !args.no_progress && !global.quiet && std::io::stderr().is_terminal(),
        ..RunOptions::default()
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::Environment(format!("cannot start the async runtime: {e}")))?;
    let outcome = runtime.block_on(engine::execute(&plan, &options));
    let written = output::write_outputs(&plan, &outcome.outputs).map_err(Failure::Environment)?;
    if args.json {
        print_json(&outcome.report)?;
    } else if !global.quiet {
        print_summary(&outcome.report, &written);
    }
    if outcome.report.success() { Ok(()) } else { Err(Failure::Run) }
}

fn print_summary(report: &RunReport, written: &[PathBuf]) {
    let secs = report.elapsed.as_secs_f64();
    match &report.failure {
        None => eprintln!("✔ {}: {}/{} nodes succeeded in {secs:.3}s", report.workflow, report.succeeded, report.nodes),
        Some(failure) => {
            eprintln!("✘ {} failed after {secs:.3}s", report.workflow);
            eprintln!("  {failure}");
            eprintln!(
                "  {} succeeded, {} failed, {} cancelled, {} not started{}",
                report.succeeded,
                report.failed,
                report.cancelled,
                report.not_started,
                if report.abandoned > 0 { format!(", {} abandoned", report.abandoned) } else { String::new() }
            );
        }
    }
    for reroute in &report.rerouted {
        eprintln!("  rerouted {} nodes from {} ({}) to {}", reroute.nodes, reroute.from, reroute.reason, reroute.to);
    }
    for backend in &report.backends {
        eprintln!(
            "  {} ({}): {} nodes, {:.3}s",
            backend.instance,
            backend.factory,
            backend.nodes,
            backend.active.as_secs_f64()
        );
    }
    for path in written {
        eprintln!("  wrote {}", path.display());
    }
}
