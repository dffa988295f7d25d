//! `backplane`: run, validate and inspect workflows and plugins.
//!
//! Exit codes: 0 success; 1 the run failed (a node failed or was not run);
//! 2 invalid input (usage, config, workflow, conflicting plugins);
//! 3 an environment error (unreadable file, unwritable output);
//! 130 interrupted (Ctrl-C or SIGTERM).

mod bench;
mod cli;
mod shared_cache;

use clap::{Args, CommandFactory, Parser, Subcommand};
use std::{path::PathBuf, process::ExitCode};

#[derive(Parser)]
#[command(name = "backplane", version, about = "A plugin-based executor host: routes workflow nodes to backends")]
struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Clone)]
pub struct GlobalArgs {
    /// Config file; else backplane.toml beside the workflow, or upward from here, or the XDG one.
    #[arg(long, global = true, env = "BACKPLANE_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Extra plugin directory (repeatable); searched before BACKPLANE_PLUGIN_PATH.
    #[arg(long = "plugin-dir", global = true, value_name = "DIR")]
    pub plugin_dirs: Vec<PathBuf>,
    /// More log output (-v info, -vv debug, -vvv trace); BACKPLANE_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Only errors.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// Largest workflow or config file read (bytes, or a size such as 64MiB).
    #[arg(long, global = true, env = "BACKPLANE_MAX_FILE_SIZE", value_name = "BYTES",
          default_value_t = backplane_host::diagnostic::DEFAULT_MAX_FILE_BYTES, value_parser = parse_size)]
    pub max_file_size: u64,
}

pub fn parse_size(text: &str) -> Result<u64, String> {
    backplane_host::workflow::parse_memory(text)
        .ok_or_else(|| format!("`{text}` is not a size (e.g. 1048576 or 64MiB)"))
}

#[derive(Subcommand)]
enum Command {
    /// Run a workflow.
    Run(cli::run::RunArgs),
    /// Check a workflow (and config) without running anything.
    Validate(cli::run::ValidateArgs),
    /// Show where every node would run, and why.
    Plan(cli::run::PlanArgs),
    /// List loaded plugins and files that failed to load.
    Plugins(cli::inspect::JsonArg),
    /// List backend types and configured instances with capabilities.
    Backends(cli::inspect::JsonArg),
    /// List node types with ports and settings.
    Nodes(cli::inspect::NodesArgs),
    /// Check a plugin dylib: the conformance suite for its backends, checks for its node types.
    Verify(cli::verify::VerifyArgs),
    /// Serve a worker pool: run tasks from the NATS JetStream work queue.
    Worker(Box<cli::worker::WorkerArgs>),
    /// Measure engine throughput and latency on this machine.
    Bench(cli::bench::BenchArgs),
    /// List past runs (from `.backplane/runs`).
    Runs(cli::history::RunsArgs),
    /// Trace an output file back to the files it was made from.
    Provenance(cli::history::ProvenanceArgs),
    /// Show what a node logged in a past run (by default the latest).
    Logs(cli::history::LogsArgs),
    /// Write the HTML report of a past run (by default the latest).
    Report(cli::history::ReportArgs),
    /// Inspect and tidy the result cache.
    Cache(cli::cache::CacheArgs),
    /// Create a plugin crate (a backend, or node types) that builds and passes `verify` as generated.
    New(cli::new::NewArgs),
    /// Print a shell completion script: `source <(backplane completions bash)`.
    Completions(cli::shell::CompletionsArgs),
    /// Print the man page (roff), or write one per command with --out-dir.
    Man(cli::shell::ManArgs),
    /// Run one task read from stdin, write its result to stdout (used by
    /// backends that isolate tasks in child processes).
    #[command(hide = true)]
    RunTask,
}

/// Exit code of a run stopped by Ctrl-C or SIGTERM (128 + SIGINT, as shells do).
pub const EXIT_INTERRUPTED: i32 = 130;

pub enum Failure {
    /// The run itself failed (exit 1).
    Run,
    /// Stopped by a signal (exit 130).
    Interrupted,
    /// Invalid input, already reported (exit 2).
    Invalid(String),
    /// Environment problem (exit 3).
    Environment(String),
}

impl Failure {
    /// The text printed for it (empty for a failed or interrupted run).
    pub fn message(&self) -> &str {
        match self {
            Failure::Run | Failure::Interrupted => "",
            Failure::Invalid(m) | Failure::Environment(m) => m,
        }
    }

    /// The same failure, its message already printed (as JSON, say).
    pub fn reported(self) -> Self {
        match self {
            Failure::Invalid(_) => Failure::Invalid(String::new()),
            Failure::Environment(_) => Failure::Environment(String::new()),
            other => other,
        }
    }
}

/// Logs go to stderr, except for the worker service, a long-running process
/// whose log is its output (stdout, `info` by default).
fn init_logging(global: &GlobalArgs, service: bool) {
    use tracing_subscriber::EnvFilter;
    let level = match (global.quiet, global.verbose) {
        (true, _) => "error",
        (false, 0) if service => "info",
        (false, 0) => "warn",
        (false, 1) => "info",
        (false, 2) => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_env("BACKPLANE_LOG").unwrap_or_else(|_| EnvFilter::new(level));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_target(false);
    if service {
        builder.with_writer(std::io::stdout).with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout())).init();
    } else {
        builder.with_writer(std::io::stderr).with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())).init();
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(&cli.global, matches!(cli.command, Command::Worker(_)));
    let result = match cli.command {
        Command::Run(args) => cli::run::run(&cli.global, args),
        Command::Validate(args) => cli::run::validate(&cli.global, args),
        Command::Plan(args) => cli::run::plan(&cli.global, args),
        Command::Plugins(args) => cli::inspect::plugins(&cli.global, args),
        Command::Backends(args) => cli::inspect::backends(&cli.global, args),
        Command::Nodes(args) => cli::inspect::nodes(&cli.global, args),
        Command::Verify(args) => cli::verify::verify(&cli.global, args),
        Command::Bench(args) => cli::bench::bench(&cli.global, args),
        Command::New(args) => cli::new::new(args),
        Command::Completions(args) => cli::shell::completions(Cli::command(), args),
        Command::Man(args) => cli::shell::man(Cli::command(), args),
        Command::Runs(args) => cli::history::list(&cli.global, args),
        Command::Provenance(args) => cli::history::provenance(&cli.global, args),
        Command::Logs(args) => cli::history::logs(&cli.global, args),
        Command::Report(args) => cli::history::report(&cli.global, args),
        Command::Cache(args) => cli::cache::cache(&cli.global, args),
        Command::Worker(args) => cli::worker::worker(&cli.global, *args),
        Command::RunTask => cli::task::run_task(&cli.global),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Run) => ExitCode::from(1),
        Err(Failure::Interrupted) => ExitCode::from(EXIT_INTERRUPTED as u8),
        Err(Failure::Invalid(message)) => {
            // Empty when the problems were already printed (as JSON, say).
            if !message.is_empty() {
                eprintln!("{message}");
            }
            ExitCode::from(2)
        }
        Err(Failure::Environment(message)) => {
            if !message.is_empty() {
                eprintln!("error: {message}");
            }
            ExitCode::from(3)
        }
    }
}
