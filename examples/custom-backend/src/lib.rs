//! `isolated`: a backend that runs every task in a fresh `backplane run-task`
//! child process, so a node that crashes, leaks or corrupts memory takes down
//! only its own process, never the host.
//!
//! # Core concepts
//!
//! - The instance is a plugin-api [`TaskPool`] of `max_parallel` threads:
//!   `submit` only queues, and each thread runs one child at a time. The
//!   pool owns the queue, the per-task cancel flags and bounded shutdown.
//! - A worker starts `<runner> [--plugin-dir D]... run-task`, writes the task
//!   as a [`wire`] frame to its stdin on one helper thread and reads the
//!   result frame from its stdout on another, so a large payload can never
//!   deadlock the two pipes.
//! - While the child runs, the worker wakes every [`POLL`] to check for
//!   cancellation, the task's deadline and shutdown; any of them kills the
//!   child (`SIGKILL`). The child's exit status explains a missing result: a
//!   crash or an outside kill is an `infrastructure` error naming the signal.
//! - Only the child is killed: processes it started in their own process
//!   group (a `std.shell` command) outlive it until they finish.

use backplane_plugin_api::{
    abi_stable::std_types::{RString, RVec},
    log_debug, log_warn,
    pool::{Cancel, PoolOptions, TaskPool},
    prelude::*,
    serde_json,
    wire::{self, TaskMessage},
};
use serde::Deserialize;
use std::{
    collections::BTreeMap,
    fs,
    io::{self, BufReader},
    os::unix::{fs::PermissionsExt, process::ExitStatusExt},
    path::PathBuf,
    process::{Child, Command, ExitStatus, Stdio},
    sync::{
        Arc,
        mpsc::{self, RecvTimeoutError},
    },
    thread,
    time::{Duration, Instant},
};

/// How often a worker checks a running child for cancellation, deadline and shutdown.
const POLL: Duration = Duration::from_millis(10);
/// How often to check whether a child has exited. A child exits within about
/// a millisecond of writing its result; polling at [`POLL`] instead would add
/// most of 10 ms to every task.
const REAP_POLL: Duration = Duration::from_millis(1);
/// How long to wait for a result frame once the child has exited, or for the
/// child to exit once its result is in. Bounds the wait when a grandchild
/// inherited the child's stdout and keeps the pipe open.
const GRACE: Duration = Duration::from_secs(1);

/// `[backends.<name>] type = "isolated"` settings.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IsolatedConfig {
    /// Children running at once; default: available parallelism.
    pub max_parallel: Option<usize>,
    /// The `backplane` executable to start, relative to the host's working
    /// directory; default: the current executable (the host's `backplane`).
    pub runner: Option<PathBuf>,
    /// Passed to each child as `--plugin-dir`; relative to the host's working directory.
    #[serde(default)]
    pub plugin_dirs: Vec<PathBuf>,
    /// Extra environment variables for the children.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
}

/// How to start a child: fixed at creation, shared by the workers.
struct Launcher {
    runner: PathBuf,
    plugin_dirs: Vec<PathBuf>,
    env: BTreeMap<String, String>,
}

/// A task's outputs or error, as a result frame carries them.
type TaskResult = Result<Vec<Payload>, PluginError_NE>;

pub struct IsolatedBackend {
    launcher: Arc<Launcher>,
    /// `max_parallel` threads, each running one child at a time.
    pool: TaskPool,
}

fn default_parallel() -> usize {
    thread::available_parallelism().map_or(1, |n| n.get())
}

fn capabilities(max_parallel: usize) -> Capabilities {
    Capabilities {
        // No IN_PROCESS_COMPUTE: the compute function runs in the child, not here.
        // One child at a time is not parallel.
        flags: if max_parallel > 1 { CapabilityFlags::PARALLEL } else { CapabilityFlags::NONE },
        isolation: Isolation::PROCESS,
        max_concurrency: max_parallel as u32,
        capacity: Resources { cpus: max_parallel as f64, ..Resources::default() },
        tags: RVec::from(vec![RString::from("isolated")]),
        ..Capabilities::default()
    }
}

/// Runs one task in a child process and returns its result.
fn run_in_child(launcher: &Launcher, task: NodeTask, cancel: &Cancel<'_>) -> Result<RVec<Payload>, PluginError_NE> {
    let (id, timeout_ms) = (task.task_id, task.timeout_ms);
    // `checked_add`: an absurd timeout means no deadline, not a panic.
    let deadline = (timeout_ms > 0).then(|| Instant::now().checked_add(Duration::from_millis(timeout_ms))).flatten();
    let mut child = spawn(launcher)?;
    let message = TaskMessage::from_task(task);
    let mut stdin = child.stdin.take().expect("stdin is piped");
    // A child that dies early makes this fail with EPIPE (SIGPIPE is ignored,
    // Rust's default); its exit status then tells what happened.
    thread::spawn(move || message.write_to(&mut stdin));
    let stdout = child.stdout.take().expect("stdout is piped");
    let (sender, results) = mpsc::channel();
    // Detached: it ends at EOF, which a grandchild holding the pipe may delay past the child's exit.
    thread::spawn(move || sender.send(wire::read_result(&mut BufReader::new(stdout))));

    let read = loop {
        match results.recv_timeout(POLL) {
            Ok(read) => break read,
            Err(RecvTimeoutError::Disconnected) => break Err(io::Error::other("the result reader failed")),
            Err(RecvTimeoutError::Timeout) => {}
        }
        let stop = if cancel.is_cancelled() {
            Some(PluginError::cancelled())
        } else if deadline.is_some_and(|d| Instant::now() >= d) {
            Some(PluginError::timed_out(format!("task process killed at its {timeout_ms} ms deadline")))
        } else {
            None
        };
        if let Some(error) = stop {
            kill(&mut child);
            return Err(error);
        }
        match child.try_wait() {
            Ok(None) => {}
            // The child may have written a whole frame just before exiting.
            Ok(Some(_)) => {
                break results.recv_timeout(GRACE).unwrap_or_else(|_| Err(io::ErrorKind::UnexpectedEof.into()));
            }
            Err(e) => break Err(e),
        }
    };
    conclude(id, &mut child, read)
}

fn spawn(launcher: &Launcher) -> Result<Child, PluginError_NE> {
    let mut command = Command::new(&launcher.runner);
    for dir in &launcher.plugin_dirs {
        command.arg("--plugin-dir").arg(dir);
    }
    command
        .arg("run-task")
        .envs(&launcher.env)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| PluginError::infrastructure(format!("cannot start `{}`: {e}", launcher.runner.display())))
}

/// The task's result from what was read and how the child ended; reaps the child.
fn conclude(id: u64, child: &mut Child, read: io::Result<TaskResult>) -> Result<RVec<Payload>, PluginError_NE> {
    let status = wait_briefly(child);
    if status.is_none() {
        kill(child);
    }
    let problem = match read {
        Ok(result) => {
            match status {
                None => log_warn!("task {id}: process still running {GRACE:?} after its result; killed it"),
                Some(status) if !status.success() => {
                    log_debug!("task {id}: exited with {} after its result", describe(status))
                }
                Some(_) => {}
            }
            return result.map(RVec::from);
        }
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => "no result or a truncated one".to_owned(),
        Err(e) => format!("an invalid result ({e})"),
    };
    Err(PluginError::infrastructure(match status {
        Some(status) => {
            format!("task process exited with {}: {problem} (its stderr above may say why)", describe(status))
        }
        None => format!("task process sent {problem}; killed it"),
    }))
}

/// `exit code 3`, or `signal 9` for a process killed by a signal.
fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(signal)) if status.core_dumped() => format!("signal {signal} (core dumped)"),
        (None, Some(signal)) => format!("signal {signal}"),
        _ => status.to_string(),
    }
}

fn kill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// The child's exit status, waiting up to [`GRACE`] for it; `None` if it is still running.
fn wait_briefly(child: &mut Child) -> Option<ExitStatus> {
    let until = Instant::now() + GRACE;
    loop {
        match child.try_wait() {
            Ok(None) if Instant::now() < until => thread::sleep(REAP_POLL),
            Ok(status) => return status,
            Err(_) => return None,
        }
    }
}

impl BackendPlugin for IsolatedBackend {
    const NAME: &'static str = "isolated";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str = "Runs every task in a fresh child process, for crash isolation";
    type Config = IsolatedConfig;

    fn config_schema() -> serde_json::Value {
        serde_json::json!({
            "type": "object",
            "properties": {
                "max_parallel": { "type": "integer", "minimum": 1, "description": "children running at once (default: available parallelism)" },
                "runner": { "type": "string", "description": "the backplane executable (default: the current executable)" },
                "plugin_dirs": { "type": "array", "items": { "type": "string" }, "description": "passed to each child as --plugin-dir" },
                "env": { "type": "object", "additionalProperties": { "type": "string" }, "description": "extra environment variables for children" }
            },
            "additionalProperties": false
        })
    }

    /// What any instance may offer: one with `max_parallel = 1` is not parallel.
    fn capabilities() -> Capabilities {
        Capabilities { flags: CapabilityFlags::PARALLEL, ..capabilities(default_parallel()) }
    }

    fn create(config: IsolatedConfig) -> Result<Self, PluginError_NE> {
        let max_parallel = match config.max_parallel {
            Some(0) => return Err(PluginError::invalid_config("`max_parallel` must be at least 1")),
            Some(n) => n,
            None => default_parallel(),
        };
        // Absolute, so that `health` checks the very file `Command` starts
        // (a bare name would otherwise be looked up in PATH by one and not the other).
        let runner = match config.runner {
            Some(runner) => std::path::absolute(&runner)
                .map_err(|e| PluginError::invalid_config(format!("`runner` {}: {e}", runner.display())))?,
            None => std::env::current_exe().map_err(|e| {
                PluginError::invalid_config(format!("cannot find the current executable ({e}): set `runner`"))
            })?,
        };
        let launcher = Arc::new(Launcher { runner, plugin_dirs: config.plugin_dirs, env: config.env });
        let runs = launcher.clone();
        let pool = TaskPool::start(PoolOptions::new("backplane-isolated", max_parallel), move |task, cancel| {
            run_in_child(&runs, task, cancel)
        })?;
        log_debug!("isolated backend: {max_parallel} workers running `{}`", launcher.runner.display());
        Ok(Self { launcher, pool })
    }

    fn live_capabilities(&self) -> Capabilities {
        capabilities(self.pool.threads())
    }

    fn submit(&self, task: NodeTask, sink: CompletionSinkBox) {
        self.pool.submit(task, sink);
    }

    fn cancel(&self, task_id: u64) {
        self.pool.cancel(task_id);
    }

    fn health(&self) -> Health {
        if self.pool.is_shut_down() {
            return self.pool.health();
        }
        let runner = &self.launcher.runner;
        match fs::metadata(runner) {
            Ok(meta) if meta.is_file() && meta.permissions().mode() & 0o111 != 0 => Health::up(),
            Ok(_) => Health::down(format!("runner `{}` is not an executable file", runner.display())),
            Err(e) => Health::down(format!("runner `{}` does not exist or cannot be read: {e}", runner.display())),
        }
    }

    /// Queued tasks complete as cancelled and running children are killed
    /// (each worker polls for it every [`POLL`]); bounded by the pool's grace.
    fn shutdown(&self) {
        self.pool.shutdown();
    }
}

backplane_plugin_api::export_plugin! {
    backends: [IsolatedBackend],
    nodes: [],
}

#[cfg(test)]
mod tests {
    use super::*;
    use backplane_plugin_api::{
        CompletionSink, CompletionSink_TO, HealthStatus, PluginResult, abi_stable::sabi_trait::TD_Opaque,
    };
    use std::{path::Path, sync::OnceLock};

    type Outcome = Option<Result<Vec<Payload>, PluginError_NE>>;

    /// Reports its result, or `None` when dropped without one.
    struct ChannelSink(Option<mpsc::Sender<Outcome>>);

    impl CompletionSink for ChannelSink {
        fn complete(mut self, result: PluginResult<RVec<Payload>>) {
            let _ = self.0.take().unwrap().send(Some(result.into_result().map(RVec::into_vec)));
        }
    }

    impl Drop for ChannelSink {
        fn drop(&mut self) {
            if let Some(sender) = self.0.take() {
                let _ = sender.send(None);
            }
        }
    }

    /// A stand-in for `backplane` whose behaviour `MODE` picks, next to the
    /// test binary in `target/`. One script for every test: writing an
    /// executable while another thread forks can make its exec fail with
    /// "text file busy".
    fn fake_runner() -> &'static Path {
        static DIR: OnceLock<PathBuf> = OnceLock::new();
        DIR.get_or_init(|| {
            let dir = std::env::current_exe().unwrap().parent().unwrap().join("isolated-test");
            fs::create_dir_all(&dir).unwrap();
            let mut result = Vec::new();
            wire::write_result(&mut result, &Ok(vec![Payload::text("out", "hi".into())])).unwrap();
            let script = r#"#!/bin/sh
[ "$*" = "--plugin-dir /plugins run-task" ] || { echo "unexpected arguments: $*" >&2; exit 7; }
case "$MODE" in
    ok) cat >/dev/null; exec cat "$RESULT" ;;
    crash) kill -9 $$ ;;
    sleep) exec sleep 10 ;;
esac
"#;
            // Written aside and renamed: a concurrent test run may be executing the old copy.
            for (name, bytes) in [("result", result.as_slice()), ("runner", script.as_bytes())] {
                let temp = dir.join(format!("{name}.{}", std::process::id()));
                fs::write(&temp, bytes).unwrap();
                fs::set_permissions(&temp, fs::Permissions::from_mode(0o755)).unwrap();
                fs::rename(&temp, dir.join(name)).unwrap();
            }
            dir
        })
    }

    fn backend(mode: &str, max_parallel: usize) -> IsolatedBackend {
        let dir = fake_runner();
        let env = [("MODE", mode.to_owned()), ("RESULT", dir.join("result").display().to_string())];
        IsolatedBackend::create(IsolatedConfig {
            max_parallel: Some(max_parallel),
            runner: Some(dir.join("runner")),
            plugin_dirs: vec!["/plugins".into()],
            env: env.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
        })
        .unwrap()
    }

    fn submit(backend: &IsolatedBackend, task_id: u64, timeout_ms: u64) -> mpsc::Receiver<Outcome> {
        let task = NodeTask {
            task_id,
            attempt: 1,
            node_id: "n".into(),
            node_type: "std.noop".into(),
            node_version: RString::new(),
            settings: "{}".into(),
            inputs: vec![Payload::text("in", "x".repeat(1 << 20))].into(),
            resources: Resources::default(),
            timeout_ms,
            working_dir: "/".into(),
            compute: None.into(),
            extensions: RVec::new(),
        };
        let (sender, receiver) = mpsc::channel();
        backend.submit(task, CompletionSink_TO::from_value(ChannelSink(Some(sender)), TD_Opaque));
        receiver
    }

    /// The task's error, failing the test if it succeeded or the sink was dropped.
    fn error(receiver: &mpsc::Receiver<Outcome>) -> PluginError {
        let outcome = receiver.recv_timeout(Duration::from_secs(5)).expect("no completion within 5 s");
        outcome.expect("sink dropped without completing").unwrap_err().into_enum().unwrap()
    }

    #[test]
    fn config_rejects_unknown_keys_and_zero_parallel() {
        assert!(serde_json::from_str::<IsolatedConfig>(r#"{ "threads": 2 }"#).is_err());
        let config = serde_json::from_str(r#"{ "max_parallel": 0 }"#).unwrap();
        assert!(matches!(
            IsolatedBackend::create(config).err().unwrap().into_enum(),
            Ok(PluginError::InvalidConfig { .. })
        ));
    }

    #[test]
    fn health_is_down_when_the_runner_is_missing() {
        let config = serde_json::from_str(r#"{ "runner": "/nonexistent/backplane" }"#).unwrap();
        let health = IsolatedBackend::create(config).unwrap().health();
        assert_eq!(health.status, HealthStatus::DOWN);
        assert!(health.message.contains("/nonexistent/backplane"), "{}", health.message);
        assert_eq!(backend("ok", 1).health().status, HealthStatus::UP);
    }

    #[test]
    fn the_childs_result_completes_the_task() {
        let backend = backend("ok", 2);
        let outcome = submit(&backend, 1, 0).recv_timeout(Duration::from_secs(5)).unwrap().unwrap();
        assert_eq!(outcome.unwrap(), vec![Payload::text("out", "hi".into())]);
    }

    #[test]
    fn a_killed_child_is_an_infrastructure_error_naming_the_signal() {
        let PluginError::Infrastructure { message } = error(&submit(&backend("crash", 1), 1, 0)) else { panic!() };
        assert!(message.contains("exited with signal 9"), "{message}");
    }

    #[test]
    fn a_child_past_its_deadline_is_killed() {
        let started = Instant::now();
        assert!(matches!(error(&submit(&backend("sleep", 1), 1, 100)), PluginError::TimedOut { .. }));
        assert!(started.elapsed() < Duration::from_secs(3));
    }

    #[test]
    fn cancel_kills_a_running_task_and_skips_a_queued_one() {
        let backend = backend("sleep", 1);
        let (running, queued) = (submit(&backend, 1, 0), submit(&backend, 2, 0));
        thread::sleep(Duration::from_millis(100));
        backend.cancel(2);
        backend.cancel(1);
        assert_eq!(error(&running), PluginError::Cancelled);
        assert_eq!(error(&queued), PluginError::Cancelled);
    }

    #[test]
    fn shutdown_cancels_everything_and_refuses_new_work() {
        let backend = backend("sleep", 1);
        let (running, queued) = (submit(&backend, 1, 0), submit(&backend, 2, 0));
        thread::sleep(Duration::from_millis(100));
        backend.shutdown();
        assert_eq!(error(&running), PluginError::Cancelled);
        assert_eq!(error(&queued), PluginError::Cancelled);
        assert!(matches!(error(&submit(&backend, 3, 0)), PluginError::Infrastructure { .. }));
    }
}
