//! `backplane run` and `backplane validate`.

use super::say;
use super::{observers::RunObservers, print_json, recording::Recording, setup_with_diagnostics};
use crate::{Failure, GlobalArgs};
use backplane_host::{
    Host,
    config::Config,
    diagnostic::Diagnostic,
    diagnostic::{ReadError, SourceFile},
    engine::{self, FailurePolicy, RunOptions, RunReport},
    observe, output,
    output_targets::OutputRules,
    plan::{self, Plan},
    workflow::{self, Invocation, ParamInputs, Partial, Selection, WorkflowError},
};
use clap::Args;
use std::{io::IsTerminal, path::PathBuf};

/// The workflow and what the command line adds to it.
#[derive(Args)]
pub struct WorkflowArgs {
    /// The workflow file (`-` reads it from stdin).
    workflow: PathBuf,
    /// Sets a parameter the workflow declares in `[params]` (repeatable).
    #[arg(short = 'p', long = "param", value_name = "NAME=VALUE")]
    params: Vec<String>,
    /// Reads parameters from a TOML file of `name = value` lines
    /// (repeatable; later files win, `-p` wins over files).
    #[arg(long, value_name = "FILE")]
    params_file: Vec<PathBuf>,
    /// Runs only the nodes whose ids match GLOB, and the nodes they need
    /// (repeatable).
    #[arg(long, value_name = "GLOB")]
    select: Vec<String>,
    /// Runs NODE and the nodes it needs, nothing else.
    #[arg(long, value_name = "NODE")]
    until: Option<String>,
}

impl WorkflowArgs {
    /// The workflow's name for messages.
    fn shown(&self) -> String {
        if self.workflow.as_os_str() == "-" { workflow::STDIN_NAME.into() } else { self.workflow.display().to_string() }
    }

    fn invocation(&self, max_file_size: u64) -> Result<Invocation, (Failure, Vec<Diagnostic>)> {
        let mut files = Vec::with_capacity(self.params_file.len());
        for path in &self.params_file {
            let file = SourceFile::read(path, max_file_size).map_err(|e| match e {
                ReadError::Io { path, source } => {
                    let message = format!("cannot read parameter file {}: {source}", path.display());
                    (Failure::Environment(message.clone()), vec![Diagnostic::unlocated(path, message)])
                }
                ReadError::Invalid(d) => (Failure::Invalid(d.to_string()), vec![d]),
            })?;
            files.push(file);
        }
        Ok(Invocation {
            params: ParamInputs { flags: self.params.clone(), files },
            selection: Selection { select: self.select.clone(), until: self.until.clone() },
        })
    }
}

#[derive(Args)]
pub struct RunArgs {
    #[command(flatten)]
    input: WorkflowArgs,
    /// Print the run report as JSON on stdout.
    #[arg(long)]
    json: bool,
    /// Never show a progress bar.
    #[arg(long)]
    no_progress: bool,
    /// Plan only: print where every node would run, like `backplane plan`.
    #[arg(long)]
    dry_run: bool,
    /// `fail-fast` (stop at the first failure) or `continue` (run every node
    /// that does not depend on a failed one); default from `[policy]`.
    #[arg(long, value_name = "POLICY", value_parser = ["fail-fast", "continue"])]
    on_failure: Option<String>,
    #[command(flatten)]
    cache: super::recording::CacheArgs,
    #[command(flatten)]
    observe: super::observers::ObserveArgs,
}

#[derive(Args)]
pub struct PlanArgs {
    #[command(flatten)]
    input: WorkflowArgs,
    /// Print the routing table as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct ValidateArgs {
    #[command(flatten)]
    input: WorkflowArgs,
    /// Print problems as JSON.
    #[arg(long)]
    json: bool,
}

/// What a command needs to act on a workflow.
struct Prepared {
    host: Host,
    config: Config,
    plan: Plan,
    /// The workflow file's text, for the run record's hash.
    text: String,
}

/// Config, plugins, instances, the plan and the workflow's text, or every
/// problem found on the way.
fn prepare(
    global: &GlobalArgs,
    input: &WorkflowArgs,
    output_rules: OutputRules,
) -> Result<Prepared, (Failure, Vec<Diagnostic>)> {
    let path = input.workflow.as_path();
    let (host, config) = setup_with_diagnostics(global, Some(path))?;
    let invocation = input.invocation(global.max_file_size)?;
    let source = workflow::read_source(path, global.max_file_size).map_err(|e| {
        let diagnostics = e.diagnostics();
        let failure = match e {
            WorkflowError::Read { .. } => Failure::Environment(e.to_string()),
            WorkflowError::Invalid(_) => Failure::Invalid(e.to_string()),
        };
        (failure, diagnostics)
    })?;
    let output_rules = OutputRules { allow_outside_workflow_dir: config.allow_outside_workflow_dir, ..output_rules };
    let text = source.text.clone();
    let plan = plan::plan_source(source, &invocation, &host.nodes, &host.backends, &config.routes, output_rules)
        .map_err(|d| (Failure::Invalid(d.to_string()), d.0))?;
    Ok(Prepared { host, config, plan, text })
}

/// Under `--json`, a command that cannot get as far as its work still prints
/// one JSON document: `{"valid": false, "errors": [...]}` with every problem
/// as `{file, line, column, message, help}`.
fn failed(json: bool, (failure, diagnostics): (Failure, Vec<Diagnostic>)) -> Failure {
    if !json {
        return failure;
    }
    match print_json(&serde_json::json!({ "valid": false, "errors": diagnostics })) {
        Ok(()) => failure.reported(),
        Err(e) => e,
    }
}

/// `{"path", "origin"}` of the config a command used (`path` is null for
/// the built-in one); see [`backplane_host::config::ConfigSearch`].
fn config_json(config: &Config) -> serde_json::Value {
    serde_json::json!({ "path": config.source.as_ref().map(|s| &s.path), "origin": config.origin })
}

/// Says on stderr which config the command used and why (not with `-q`).
fn say_config(global: &GlobalArgs, config: &Config) {
    if global.quiet {
        return;
    }
    match &config.source {
        Some(source) => eprintln!("config: {} ({})", source.path.display(), config.origin),
        None => eprintln!("config: {}", config.origin),
    }
}

/// `params: top=10 (default), glob="a/*" (-p)`, when the workflow has any.
fn say_params(global: &GlobalArgs, plan: &Plan) {
    if global.quiet || plan.params.is_empty() {
        return;
    }
    let shown: Vec<String> = plan.params.iter().map(|p| format!("{}={} ({})", p.name, p.value, p.source)).collect();
    eprintln!("params: {}", shown.join(", "));
}

/// What a partial run leaves out: nodes by name (the first 20) and outputs.
fn partial_lines(partial: &Partial) -> Vec<String> {
    let mut lines =
        vec![format!("partial run ({}): {} of {} nodes", partial.selection, partial.selected, partial.nodes)];
    if !partial.not_run.is_empty() {
        let more = partial.nodes - partial.selected - partial.not_run.len();
        let more = if more > 0 { format!(" and {more} more") } else { String::new() };
        lines.push(format!("  not run: {}{more}", partial.not_run.join(", ")));
    }
    for output in &partial.not_written {
        lines.push(format!("  not written: {} (from {}, which does not run)", output.to, output.from));
    }
    lines
}

fn params_json(plan: &Plan) -> serde_json::Value {
    serde_json::Value::Object(plan.params.iter().map(|p| (p.name.clone(), p.value.clone())).collect())
}

pub fn validate(global: &GlobalArgs, args: ValidateArgs) -> Result<(), Failure> {
    if args.json {
        super::reserve_stdout_for_json();
    }
    let Prepared { plan, config, .. } =
        prepare(global, &args.input, OutputRules::default()).map_err(|e| failed(args.json, e))?;
    if args.json {
        print_json(&serde_json::json!({
            "valid": true, "errors": [], "nodes": plan.nodes.len(), "config": config_json(&config),
            "params": params_json(&plan), "partial": plan.partial,
        }))
    } else {
        say_config(global, &config);
        say_params(global, &plan);
        say!("{}: valid ({} nodes)", args.input.shown(), plan.nodes.len());
        Ok(())
    }
}

pub fn plan(global: &GlobalArgs, args: PlanArgs) -> Result<(), Failure> {
    if args.json {
        super::reserve_stdout_for_json();
    }
    let Prepared { plan, config, .. } =
        prepare(global, &args.input, OutputRules::default()).map_err(|e| failed(args.json, e))?;
    if !args.json {
        say_config(global, &config);
        say_params(global, &plan);
    }
    print_plan(&plan, &config, args.json)
}

fn print_plan(plan: &Plan, config: &Config, json: bool) -> Result<(), Failure> {
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
        return print_json(&serde_json::json!({
            "workflow": plan.name, "nodes": rows, "instances": instances, "config": config_json(config),
            "params": params_json(plan), "partial": plan.partial,
        }));
    }
    if let Some(partial) = &plan.partial {
        for line in partial_lines(partial) {
            say!("{line}");
        }
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
    // The JSON report owns stdout: outputs to `-` are refused with `--json`.
    if args.json {
        super::reserve_stdout_for_json();
    }
    let rules = OutputRules { stdout_reserved: args.json && !args.dry_run, ..OutputRules::default() };
    let Prepared { host, config, plan, text } =
        prepare(global, &args.input, rules).map_err(|e| failed(args.json, e))?;
    if !args.json {
        say_config(global, &config);
        say_params(global, &plan);
    }
    if args.dry_run {
        return print_plan(&plan, &config, args.json);
    }
    let show_bar = !args.no_progress && !global.quiet && std::io::stderr().is_terminal();
    let mut observers = RunObservers::new(&args.observe, show_bar)?;
    let recording = Recording::start(&config, &plan, &args.input.workflow, text, &args.cache)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::Environment(format!("cannot start the async runtime: {e}")))?;
    let (interrupt, interrupted) = tokio::sync::watch::channel(false);
    let mut options = RunOptions::from_config(&config);
    if let Some(policy) = args.on_failure.as_deref().and_then(FailurePolicy::from_name) {
        options.policy.failure = policy;
    }
    options.interrupt = Some(interrupted);
    options.cache = recording.cache.clone();
    options.record_nodes = true;
    let has_cache = options.cache.is_some();
    let run_id = recording.run_id.clone();
    let grace = options.policy.cancel_grace;
    let (outcome, problems) = observe::observe(
        &plan,
        observers.take(),
        |events| {
            options.events = Some(events);
            runtime.block_on(async {
                tokio::spawn(watch_signals(interrupt, grace));
                engine::execute(&plan, &options).await
            })
        },
        |outcome| &outcome.report,
    );
    for problem in problems {
        eprintln!("warning: {problem}");
    }
    let written = output::write_outputs(&plan, &outcome.outputs);
    let recorded = recording.finish(&host, &plan, &outcome, observers.observed(), &written.files)?;
    if let Some(e) = &recorded.cache_error {
        eprintln!("warning: results of this run could not all be stored in the cache: {e}");
    }
    if let Some(path) = &args.observe.report {
        let page = backplane_host::runs::report::render(&recorded.record);
        if let Err(e) = backplane_atomic_file::write(path, page.as_bytes()) {
            eprintln!("warning: cannot write the report {}: {e}", path.display());
        }
    }
    if args.json {
        let mut report = serde_json::to_value(&outcome.report).map_err(|e| Failure::Environment(e.to_string()))?;
        report["written"] = serde_json::json!(written.files);
        report["output_errors"] = serde_json::json!(written.errors);
        report["run_id"] = serde_json::json!(run_id);
        report["record"] = serde_json::json!(recorded.path);
        report["stored"] = serde_json::json!(recorded.stored);
        report["node_results"] = serde_json::Value::Array(recorded.record.nodes.iter().map(node_result).collect());
        report["config"] = config_json(&config);
        report["params"] = params_json(&plan);
        report["partial"] = serde_json::json!(plan.partial);
        print_json(&report)?;
    } else if !global.quiet {
        print_summary(&outcome.report, &written.files, has_cache);
        for line in plan.partial.iter().flat_map(partial_lines) {
            eprintln!("  {line}");
        }
    }
    for error in &written.errors {
        eprintln!("error: {error}");
    }
    if outcome.report.interrupted {
        Err(Failure::Interrupted)
    } else if !outcome.report.success() {
        Err(Failure::Run)
    } else if !written.errors.is_empty() {
        // Reported above, with the summary.
        Err(Failure::Environment(String::new()))
    } else {
        Ok(())
    }
}

/// The first Ctrl-C or SIGTERM asks the run to stop (cancel in-flight tasks,
/// wait up to the grace period); a second one exits at once.
async fn watch_signals(interrupt: tokio::sync::watch::Sender<bool>, grace: std::time::Duration) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut int), Ok(mut term)) = (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) else {
        tracing::warn!("cannot listen for Ctrl-C/SIGTERM; they will end the run abruptly");
        return;
    };
    let next = async |int: &mut tokio::signal::unix::Signal, term: &mut tokio::signal::unix::Signal| {
        tokio::select! {
            _ = int.recv() => "interrupt",
            _ = term.recv() => "SIGTERM",
        }
    };
    let first = next(&mut int, &mut term).await;
    eprintln!(
        "{first}: cancelling running nodes (waiting up to {:.0}s); press Ctrl-C again to exit at once",
        grace.as_secs_f64()
    );
    let _ = interrupt.send(true);
    let second = next(&mut int, &mut term).await;
    eprintln!("{second}: exiting now; running nodes are abandoned");
    std::process::exit(crate::EXIT_INTERRUPTED);
}

/// One entry of `--json`'s `node_results`.
fn node_result(n: &backplane_host::runs::NodeRecord) -> serde_json::Value {
    let mut v = serde_json::json!({
        "id": n.node, "type": n.node_type, "status": n.status, "backend": n.backend,
        "attempts": n.attempts, "cache": n.cache, "cache_reason": n.cache_reason,
    });
    if let Some(from) = &n.hit_from {
        v["hit_from"] = serde_json::json!(from);
    }
    if let (Some(a), Some(b)) = (n.submitted, n.finished) {
        v["seconds"] = serde_json::json!(b - a);
    }
    v
}

fn print_summary(report: &RunReport, written: &[PathBuf], has_cache: bool) {
    let secs = report.elapsed.as_secs_f64();
    let cached =
        if has_cache { format!(" ({} cached, {} ran)", report.cached, report.executed) } else { String::new() };
    if report.success() {
        eprintln!("✔ {}: {}/{} nodes succeeded in {secs:.3}s{cached}", report.workflow, report.succeeded, report.nodes);
    } else {
        if report.interrupted {
            eprintln!("✘ {} interrupted after {secs:.3}s", report.workflow);
        } else {
            eprintln!("✘ {} failed after {secs:.3}s", report.workflow);
        }
        for failure in &report.failures {
            eprintln!("  {failure}");
        }
        let mut counts = format!(
            "  {} succeeded, {} failed, {} cancelled, {} not started",
            report.succeeded, report.failed, report.cancelled, report.not_started
        );
        if report.skipped > 0 {
            counts.push_str(&format!(", {} skipped (depend on a failed node)", report.skipped));
        }
        if report.abandoned > 0 {
            counts.push_str(&format!(", {} abandoned", report.abandoned));
        }
        eprintln!("{counts}");
    }
    if report.item_tasks > 0 {
        let hits = match report.item_cache_hits {
            0 => String::new(),
            hits => format!(", {hits} from the cache"),
        };
        eprintln!("  {} per-item tasks (`each`){hits}", report.item_tasks);
    }
    for reroute in &report.rerouted {
        eprintln!("  rerouted {} nodes from {} ({}) to {}", reroute.nodes, reroute.from, reroute.reason, reroute.to);
    }
    for backend in &report.backends {
        let attempts =
            if backend.attempts == backend.nodes { String::new() } else { format!(" ({} attempts)", backend.attempts) };
        let stats = match (backend.success_rate, backend.mean_secs, backend.p95_secs) {
            (Some(rate), Some(mean), Some(p95)) => {
                format!("; {:.1}% succeeded, mean {}, p95 {}", rate * 100.0, seconds(mean), seconds(p95))
            }
            _ => String::new(),
        };
        eprintln!(
            "  {} ({}): {} nodes{attempts}, {:.3}s{stats}",
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

/// A duration for the summary: milliseconds below a second, else seconds.
fn seconds(secs: f64) -> String {
    if secs < 1.0 { format!("{:.2}ms", secs * 1e3) } else { format!("{secs:.2}s") }
}
