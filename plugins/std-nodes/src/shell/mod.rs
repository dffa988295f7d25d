//! `std.shell`: runs a shell command as a node.

#[cfg(target_os = "linux")]
mod watchdog;

use crate::{ANY, VERSION, schema, unset};
use backplane_plugin_api::{log::LogLevel, payload::OCTETS, prelude::*};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::{
    collections::BTreeMap,
    fs,
    io::{self, Read, Write},
    process::{Child, Command, ExitStatus, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::{self, JoinHandle},
    time::{Duration, Instant},
};

/// How much of the end of stderr a failure message quotes.
const STDERR_TAIL: usize = 2048;
/// How much of the end of stderr goes to the node's log (the host keeps at
/// most 64 KiB of one attempt's log).
const STDERR_KEPT: usize = 64 * 1024;

/// `std.shell`: runs `sh -c <command>` in the workflow's directory.
pub struct Shell;

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ShellSettings {
    /// The command line, run with `sh -c` in the workflow's directory.
    #[serde(skip_serializing_if = "unset")]
    pub command: String,
    /// Extra environment variables, on top of the host's environment.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Kill the command after this many seconds; unset means no limit beyond the task's deadline.
    #[serde(default)]
    pub timeout_secs: Option<f64>,
    /// Most bytes of stdout kept (the output is held in memory); a command
    /// printing more is killed and fails. Default 1 GiB.
    #[serde(default = "default_max_stdout")]
    #[schemars(range(min = 1, max = MAX_STDOUT_LIMIT))]
    pub max_stdout_bytes: u64,
}

/// Default of `max_stdout_bytes`.
const DEFAULT_MAX_STDOUT: u64 = 1 << 30;
/// Highest `max_stdout_bytes` accepted: larger outputs belong in files.
const MAX_STDOUT_LIMIT: u64 = 64 << 30;

fn default_max_stdout() -> u64 {
    DEFAULT_MAX_STDOUT
}

impl Default for ShellSettings {
    fn default() -> Self {
        Self { command: String::new(), env: BTreeMap::new(), timeout_secs: None, max_stdout_bytes: DEFAULT_MAX_STDOUT }
    }
}

impl NodeType for Shell {
    const TYPE_NAME: &'static str = "std.shell";
    const VERSION: &'static str = VERSION;
    const DESCRIPTION: &'static str =
        "Runs a shell command (`sh -c`) in the workflow's directory and outputs its stdout";
    type Settings = ShellSettings;

    fn inputs() -> Vec<PortSpec> {
        vec![
            PortSpec::new("stdin", ANY).optional().describe("piped to the command's standard input"),
            PortSpec::new("files", ANY).optional().multiple().describe(
                "each written to a temporary file; paths in $BACKPLANE_INPUT_0, $BACKPLANE_INPUT_1... \
                 and all of them, space-separated, in $BACKPLANE_INPUTS",
            ),
        ]
    }
    fn outputs() -> Vec<PortSpec> {
        vec![PortSpec::new("stdout", ANY).describe("the command's standard output: text if UTF-8, else bytes")]
    }
    fn settings_schema() -> serde_json::Value {
        schema::<Self::Settings>()
    }
    fn tags() -> Vec<&'static str> {
        vec!["process"]
    }
    fn deterministic() -> bool {
        false
    }

    fn check_settings(s: &Self::Settings, _: &CheckContext) -> Vec<SettingsProblem> {
        let mut problems = Vec::new();
        if s.command.trim().is_empty() {
            problems.push(
                SettingsProblem::at("command", "`command` is empty")
                    .help("set it to a shell command such as `sort -u`"),
            );
        }
        if let Some(secs) = s.timeout_secs
            && !Duration::try_from_secs_f64(secs).is_ok_and(|d| !d.is_zero())
        {
            problems.push(SettingsProblem::at(
                "timeout_secs",
                format!("`timeout_secs` must be a positive number of seconds, got {secs}"),
            ));
        }
        problems
    }

    fn compute(s: Self::Settings, mut inputs: Inputs, ctx: &Context<'_>) -> Result<Vec<Payload>, NodeError> {
        // Hosts built against plugin-api 1.0 never ran the check.
        if let Some(problem) = Self::check_settings(&s, &CheckContext::default()).into_iter().next() {
            return Err(problem.into_node_error());
        }
        let limit = s.timeout_secs.and_then(|secs| Duration::try_from_secs_f64(secs).ok());
        let stdin = inputs.take("stdin");
        let files = inputs.take_all("files");

        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(&s.command)
            .current_dir(ctx.working_dir())
            .envs(&s.env)
            .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // Declared before the child, so it is removed only after the command is gone.
        let mut _input_dir = None;
        let mut paths = Vec::with_capacity(files.len());
        if !files.is_empty() {
            let dir = tempfile::Builder::new().prefix("backplane-shell-").tempdir()?;
            for (i, file) in files.iter().enumerate() {
                let path = dir.path().join(format!("input-{i}"));
                fs::write(&path, &*file.data)
                    .map_err(|e| NodeError::new(format!("cannot write input file {}: {e}", path.display())))?;
                command.env(format!("BACKPLANE_INPUT_{i}"), &path);
                paths.push(path.display().to_string());
            }
            _input_dir = Some(dir);
        }
        command.env("BACKPLANE_INPUTS", paths.join(" "));
        // Which node and attempt this is, e.g. to ask for more on a retry.
        command.env("BACKPLANE_NODE_ID", ctx.node_id()).env("BACKPLANE_ATTEMPT", ctx.attempt().to_string());
        // Its own process group, so a timeout or cancellation can kill
        // everything the command started, not just `sh`; on Linux the group
        // is also registered with a watchdog that kills it if this process
        // dies, even by SIGKILL.
        #[cfg(target_os = "linux")]
        if let Err(e) = watchdog::watch(&mut command) {
            backplane_plugin_api::log_warn!(
                "cannot start the process watchdog ({e}); the processes of node `{}` may outlive a killed host",
                ctx.node_id()
            );
        }
        #[cfg(all(unix, not(target_os = "linux")))]
        std::os::unix::process::CommandExt::process_group(&mut command, 0);

        let child = command
            .spawn()
            .map_err(|e| NodeError::new(format!("cannot start `sh` in {}: {e}", ctx.working_dir().display())))?;
        let mut child = Running { child, status: None, finished: false };

        // Separate threads feed stdin and drain stdout/stderr, so a command
        // blocked writing one pipe never deadlocks against us writing another.
        if let (Some(payload), Some(mut pipe)) = (stdin, child.child.stdin.take()) {
            // A command that exits without reading its input closes the pipe
            // early; that is its choice, not an error.
            spawn("std.shell stdin", move || drop(pipe.write_all(&payload.data)))?;
        }
        let stdout_pipe = child.child.stdout.take().expect("stdout is piped");
        let max_stdout = s.max_stdout_bytes;
        let overflowed = Arc::new(AtomicBool::new(false));
        let stdout = spawn("std.shell stdout", {
            let overflowed = Arc::clone(&overflowed);
            move || {
                let mut buf = Vec::new();
                // One byte past the limit tells "exactly the limit" from "more".
                let mut limited = stdout_pipe.take(max_stdout.saturating_add(1));
                let read = limited.read_to_end(&mut buf);
                // Flag before the pipe closes: a command writing on then dies
                // of SIGPIPE, which must read as "too much", not as a crash.
                overflowed.store(buf.len() as u64 > max_stdout, Ordering::Release);
                drop(limited);
                read.map(|_| buf)
            }
        })?;
        let stderr_pipe = child.child.stderr.take().expect("stderr is piped");
        let stderr = spawn("std.shell stderr", move || read_tail(stderr_pipe))?;

        let started = Instant::now();
        let task_deadline = ctx.remaining().map(|left| started + left);
        let own_deadline = limit.map(|limit| started + limit);
        let mut pause = Duration::from_millis(1);
        // Done when the command has exited and both pipes are closed.
        while child.status.is_none() || !stdout.is_finished() || !stderr.is_finished() {
            if child.status.is_none() {
                child.status = child.reap_if_exited()?;
            }
            if ctx.is_cancelled() {
                return Err(NodeError::with(PluginError::cancelled()));
            }
            // The reader stops at the limit while the command may go on writing.
            if overflowed.load(Ordering::Acquire) {
                return Err(too_much_stdout(max_stdout));
            }
            let now = Instant::now();
            if own_deadline.is_some_and(|d| now >= d) {
                return Err(NodeError::with(PluginError::timed_out(format!(
                    "command still running after `timeout_secs` ({}s) and was killed; \
                     raise `timeout_secs` or make the command faster",
                    s.timeout_secs.unwrap_or_default()
                ))));
            }
            if task_deadline.is_some_and(|d| now >= d) {
                return Err(NodeError::with(PluginError::timed_out(
                    "command still running at the task's deadline and was killed",
                )));
            }
            thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(10));
        }
        child.finished = true;
        let status = child.status.expect("loop exits only after the command exited");
        let stdout = join(stdout)??;
        let (tail, truncated) = join(stderr)?;
        // The command may have exited before the reader reached the limit.
        if stdout.len() as u64 > max_stdout {
            return Err(too_much_stdout(max_stdout));
        }

        // What the command printed on stderr is the node's log, on success too.
        log_stderr(ctx, &tail, truncated);
        if !status.success() {
            let quoted = tail.len().saturating_sub(STDERR_TAIL);
            return Err(NodeError::new(failure_message(status, &tail[quoted..], truncated || quoted > 0)));
        }
        Ok(vec![match String::from_utf8(stdout) {
            Ok(text) => Payload::text("stdout", text),
            Err(e) => Payload::bytes("stdout", OCTETS, e.into_bytes()),
        }])
    }
}

/// A spawned command that is killed, with its whole process group, and
/// reaped when dropped before it finished: every early return (timeout,
/// cancellation, error) cleans up without leaving processes or zombies.
struct Running {
    child: Child,
    status: Option<ExitStatus>,
    finished: bool,
}

impl Running {
    /// The exit status once the command has exited. Its group is released
    /// from the watchdog first, while the unreaped child still holds the id.
    fn reap_if_exited(&mut self) -> io::Result<Option<ExitStatus>> {
        #[cfg(target_os = "linux")]
        {
            if !exited(&self.child, false)? {
                return Ok(None);
            }
            watchdog::release(self.child.id());
        }
        self.child.try_wait()
    }
}

/// Whether `child` has exited (waiting for it with `block`), without reaping it.
#[cfg(target_os = "linux")]
fn exited(child: &Child, block: bool) -> io::Result<bool> {
    // SAFETY: waitid fills `info`; WNOWAIT leaves the child to be reaped later.
    unsafe {
        let mut info: libc::siginfo_t = std::mem::zeroed();
        let flags = libc::WEXITED | libc::WNOWAIT | if block { 0 } else { libc::WNOHANG };
        if libc::waitid(libc::P_PID, child.id(), &mut info, flags) != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(info.si_pid() != 0)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        #[cfg(unix)]
        // SAFETY: kill(2) has no memory-safety preconditions. The group id is
        // the child's pid: taken until the child is reaped below, and after
        // that (when the loop reaped it) for as long as the group has members.
        unsafe {
            libc::kill(-(self.child.id() as libc::pid_t), libc::SIGKILL);
        }
        if self.status.is_none() {
            let _ = self.child.kill();
            #[cfg(target_os = "linux")]
            if exited(&self.child, true).is_ok() {
                watchdog::release(self.child.id());
            }
            let _ = self.child.wait();
        }
    }
}

fn too_much_stdout(limit: u64) -> NodeError {
    NodeError::new(format!(
        "the command printed more than `max_stdout_bytes` ({limit} bytes) on stdout and was killed; \
         raise `max_stdout_bytes`, or write large results to a file and output its path"
    ))
}

fn spawn<T: Send + 'static>(name: &str, f: impl FnOnce() -> T + Send + 'static) -> Result<JoinHandle<T>, NodeError> {
    thread::Builder::new()
        .name(name.into())
        .spawn(f)
        .map_err(|e| NodeError::new(format!("cannot start a thread for `{name}`: {e}")))
}

fn join<T>(handle: JoinHandle<T>) -> Result<T, NodeError> {
    handle.join().map_err(|_| NodeError::new("a pipe-reading thread of `std.shell` panicked"))
}

/// Each line of stderr (its kept tail), as the node's log at info level.
fn log_stderr(ctx: &Context<'_>, tail: &[u8], truncated: bool) {
    if tail.is_empty() {
        return;
    }
    let start = if truncated { tail.iter().take_while(|&&b| b & 0xC0 == 0x80).count() } else { 0 };
    if truncated {
        ctx.log(LogLevel::WARN, &format!("[stderr: only its last {} KiB are kept]", STDERR_KEPT / 1024));
    }
    for line in String::from_utf8_lossy(&tail[start..]).lines() {
        ctx.log(LogLevel::INFO, line);
    }
}

/// Reads `pipe` to the end, keeping only the last [`STDERR_KEPT`] bytes, and
/// whether anything before them was dropped.
fn read_tail(mut pipe: impl Read) -> (Vec<u8>, bool) {
    let mut tail = Vec::new();
    let mut truncated = false;
    let mut buf = [0; 8192];
    loop {
        match pipe.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => tail.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        }
        if tail.len() > 2 * STDERR_KEPT {
            tail.drain(..tail.len() - STDERR_KEPT);
            truncated = true;
        }
    }
    if tail.len() > STDERR_KEPT {
        tail.drain(..tail.len() - STDERR_KEPT);
        truncated = true;
    }
    (tail, truncated)
}

fn failure_message(status: ExitStatus, tail: &[u8], truncated: bool) -> String {
    let how = match status.code() {
        Some(code) => format!("command exited with status {code}"),
        None => format!("command was terminated ({status})"),
    };
    // The cut may have split a character: skip its continuation bytes.
    let start = if truncated { tail.iter().take_while(|&&b| b & 0xC0 == 0x80).count() } else { 0 };
    let stderr = String::from_utf8_lossy(&tail[start..]);
    match stderr.trim() {
        "" => format!("{how} and printed nothing on stderr"),
        text if truncated => format!("{how}: …{text}"),
        text => format!("{how}: {text}"),
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use backplane_plugin_api::{ComputeFn, ComputeRequest, PluginError_NE, TaskContext, node_spec, testing::call_node};
    use serde_json::{Value, json};
    use std::path::Path;

    fn shell(settings: Value, inputs: Vec<Payload>, dir: &Path) -> Result<Payload, PluginError_NE> {
        let mut out = call_node::<Shell>(settings, inputs, dir.to_str().unwrap())?;
        assert_eq!(out.len(), 1);
        Ok(out.remove(0))
    }

    /// Whether `pid` is gone (or a zombie waiting for an init that never reaps).
    fn is_dead(pid: &str) -> bool {
        fs::read_to_string(format!("/proc/{pid}/stat"))
            .map_or(true, |stat| stat.rsplit(')').next().unwrap().trim_start().starts_with('Z'))
    }

    #[test]
    fn runs_in_the_working_dir_with_env() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("marker.txt"), "").unwrap();
        let settings = json!({ "command": r#"printf '%s ' "$GREETING"; ls"#, "env": { "GREETING": "hi there" } });
        let out = shell(settings, vec![], dir.path()).unwrap();
        assert_eq!(out.port.as_str(), "stdout");
        assert_eq!(out.content_type.as_str(), "text/plain; charset=utf-8");
        assert_eq!(out.as_text().unwrap(), "hi there marker.txt\n");
    }

    #[test]
    fn the_command_knows_its_node_and_attempt() {
        let dir = tempfile::tempdir().unwrap();
        let out = shell(json!({ "command": r#"echo "$BACKPLANE_NODE_ID $BACKPLANE_ATTEMPT""# }), vec![], dir.path());
        assert_eq!(out.unwrap().as_text().unwrap(), "test 1\n");
    }

    #[test]
    fn non_utf8_stdout_is_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let out = shell(json!({ "command": r"printf '\377\376'" }), vec![], dir.path()).unwrap();
        assert_eq!(out.content_type.as_str(), OCTETS);
        assert_eq!(out.data.as_slice(), [0xff, 0xfe]);
    }

    #[test]
    fn pipes_large_stdin_without_deadlock() {
        let dir = tempfile::tempdir().unwrap();
        // Larger than any pipe buffer in both directions.
        let input: String = (0..100_000).map(|i| format!("line {i}\n")).collect();
        let stdin = Payload::text("stdin", input.clone());
        let out = shell(json!({ "command": "tr a-z A-Z" }), vec![stdin], dir.path()).unwrap();
        assert_eq!(out.as_text().unwrap(), input.to_uppercase());
    }

    #[test]
    fn command_may_ignore_its_stdin() {
        let dir = tempfile::tempdir().unwrap();
        let stdin = Payload::text("stdin", "x".repeat(1 << 20));
        let out = shell(json!({ "command": "echo ignored" }), vec![stdin], dir.path()).unwrap();
        assert_eq!(out.as_text().unwrap(), "ignored\n");
    }

    #[test]
    fn files_are_exported_as_temp_paths_and_removed_afterwards() {
        let dir = tempfile::tempdir().unwrap();
        let files = vec![Payload::text("files", "first\n".into()), Payload::text("files", "second\n".into())];
        let command =
            r#"cat "$BACKPLANE_INPUT_1" "$BACKPLANE_INPUT_0"; echo $BACKPLANE_INPUTS; dirname "$BACKPLANE_INPUT_0""#;
        let out = shell(json!({ "command": command }), files, dir.path()).unwrap();
        let text = out.as_text().unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[..2], ["second", "first"]);
        let temp_dir = Path::new(lines[3]);
        assert_eq!(lines[2], format!("{0}/input-0 {0}/input-1", temp_dir.display()));
        assert!(!temp_dir.exists(), "temporary input directory was left behind");
    }

    #[test]
    fn failure_quotes_the_tail_of_stderr() {
        let dir = tempfile::tempdir().unwrap();
        let command = "i=0; while [ $i -lt 500 ]; do echo noise >&2; i=$((i+1)); done; echo 'real problem' >&2; exit 3";
        let err = shell(json!({ "command": command }), vec![], dir.path()).unwrap_err();
        let Ok(PluginError::NodeFailed { message }) = err.as_enum() else { panic!("{err:?}") };
        assert!(message.starts_with("command exited with status 3: …"), "{message}");
        assert!(message.ends_with("noise\nreal problem"), "{message}");
        assert!(message.len() < STDERR_TAIL + 50, "{} bytes", message.len());

        let err = shell(json!({ "command": "exit 1" }), vec![], dir.path()).unwrap_err();
        assert_eq!(err.to_string(), "command exited with status 1 and printed nothing on stderr");
    }

    #[test]
    fn timeout_kills_the_whole_process_group() {
        let dir = tempfile::tempdir().unwrap();
        let command = "sleep 30 & echo $! > bg.pid; sleep 30";
        let started = Instant::now();
        let err = shell(json!({ "command": command, "timeout_secs": 0.3 }), vec![], dir.path()).unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());
        let Ok(PluginError::TimedOut { message }) = err.as_enum() else { panic!("{err:?}") };
        assert!(message.contains("`timeout_secs` (0.3s)"), "{message}");
        let pid = fs::read_to_string(dir.path().join("bg.pid")).unwrap();
        let pid = pid.trim();
        // SIGKILL is delivered asynchronously; give it a moment.
        let patience = Instant::now() + Duration::from_secs(2);
        while !is_dead(pid) && Instant::now() < patience {
            thread::sleep(Duration::from_millis(10));
        }
        assert!(is_dead(pid), "background process {pid} survived the timeout");
    }

    #[test]
    fn cancellation_kills_the_command() {
        let dir = tempfile::tempdir().unwrap();
        let cancel = AtomicBool::new(false);
        let started = Instant::now();
        let result = thread::scope(|scope| {
            scope.spawn(|| {
                thread::sleep(Duration::from_millis(100));
                cancel.store(true, Ordering::SeqCst);
            });
            let ComputeFn(compute) = node_spec::<Shell>().compute().into_option().unwrap();
            let cancelled = || cancel.load(Ordering::SeqCst);
            let working_dir = dir.path().to_str().unwrap();
            let ctx = TaskContext { node_id: "t", attempt: 1, working_dir, deadline: None, cancelled: &cancelled };
            let settings = r#"{"command":"sleep 30"}"#;
            compute(ComputeRequest { settings: settings.into(), inputs: Vec::new().into(), context: ctx.as_abi() })
                .into_result()
        });
        assert_eq!(result.unwrap_err().as_enum().unwrap(), &PluginError::Cancelled);
        assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());
    }

    #[test]
    fn stdout_beyond_the_limit_kills_the_command_with_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let started = Instant::now();
        let err = shell(json!({ "command": "cat /dev/zero", "max_stdout_bytes": 1_000_000 }), vec![], dir.path())
            .unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());
        assert!(err.to_string().contains("more than `max_stdout_bytes` (1000000 bytes)"), "{err}");
        // Just over the limit, then a clean exit: still too much.
        let err = shell(json!({ "command": "head -c 1001 /dev/zero", "max_stdout_bytes": 1000 }), vec![], dir.path())
            .unwrap_err();
        assert!(err.to_string().contains("more than `max_stdout_bytes` (1000 bytes)"), "{err}");
        // Exactly the limit is fine.
        let out = shell(json!({ "command": "head -c 1000 /dev/zero", "max_stdout_bytes": 1000 }), vec![], dir.path());
        assert_eq!(out.unwrap().data.len(), 1000);
        assert_eq!(Shell::settings_schema()["properties"]["max_stdout_bytes"]["maximum"], json!(MAX_STDOUT_LIMIT));
    }

    #[test]
    fn the_command_keeps_its_exit_status_signal_and_parent_under_the_watchdog() {
        let dir = tempfile::tempdir().unwrap();
        let err = shell(json!({ "command": "exit 42" }), vec![], dir.path()).unwrap_err();
        assert!(err.to_string().starts_with("command exited with status 42"), "{err}");
        let err = shell(json!({ "command": "kill -TERM $$" }), vec![], dir.path()).unwrap_err();
        assert!(err.to_string().contains("signal: 15"), "{err}");
        let out = shell(json!({ "command": "echo $PPID" }), vec![], dir.path()).unwrap();
        assert_eq!(out.as_text().unwrap().trim(), std::process::id().to_string(), "the command is our own child");
    }

    /// Children of this test process that are zombies, by pid.
    fn zombie_children() -> Vec<String> {
        let me = std::process::id().to_string();
        fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter_map(|e| fs::read_to_string(e.path().join("stat")).ok())
            .filter_map(|stat| {
                let rest = stat.rsplit(')').next()?.split_whitespace().collect::<Vec<_>>();
                (rest.first() == Some(&"Z") && rest.get(1) == Some(&me.as_str()))
                    .then(|| stat.split(' ').next().unwrap().to_owned())
            })
            .collect()
    }

    #[test]
    fn watchdogs_are_reaped_and_hold_no_other_commands_pipes() {
        let dir = tempfile::tempdir().unwrap();
        thread::scope(|scope| {
            // A long command running beside short ones: the short ones must
            // see EOF on their pipes at once, whatever the long one's
            // watchdog holds.
            let long = scope.spawn(|| shell(json!({ "command": "sleep 2" }), vec![], dir.path()));
            thread::sleep(Duration::from_millis(200));
            for _ in 0..20 {
                let started = Instant::now();
                let out = shell(json!({ "command": "echo quick" }), vec![], dir.path()).unwrap();
                assert_eq!(out.as_text().unwrap(), "quick\n");
                assert!(started.elapsed() < Duration::from_secs(1), "took {:?}", started.elapsed());
            }
            long.join().unwrap().unwrap();
        });
        assert_eq!(zombie_children(), Vec::<String>::new(), "every watchdog was reaped");
    }

    #[test]
    fn rejects_bad_settings() {
        let dir = tempfile::tempdir().unwrap();
        let err = shell(json!({ "command": " " }), vec![], dir.path()).unwrap_err();
        assert!(err.to_string().starts_with("`command` is empty"), "{err}");
        let err = shell(json!({ "command": "true", "timeout_secs": -1 }), vec![], dir.path()).unwrap_err();
        assert_eq!(err.to_string(), "`timeout_secs` must be a positive number of seconds, got -1");
        assert_eq!(Shell::settings_schema()["required"], json!(["command"]));
    }
}
