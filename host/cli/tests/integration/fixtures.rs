//! Shared test fixtures.

use assert_cmd::Command;
use std::{
    path::{Path, PathBuf},
    sync::OnceLock,
};

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).ancestors().nth(2).expect("host/cli/ is inside the workspace").to_path_buf()
}

/// The directory holding the `backplane` binary and, after a workspace
/// build, the plugin dylibs.
pub fn bin_dir() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_backplane")).parent().expect("binary has a directory").to_path_buf()
}

pub fn dylib(stem: &str) -> PathBuf {
    bin_dir().join(format!("lib{stem}.{}", std::env::consts::DLL_EXTENSION))
}

/// `cargo`, without the variables cargo sets for this test process: build
/// scripts that track them (ring's) would read them as changed and rebuild
/// half the tree.
pub fn cargo_command() -> std::process::Command {
    let mut command = std::process::Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    without_test_cargo_env(&mut command);
    command
}

/// Removes from `command`'s environment what cargo set for this test process,
/// for commands that run cargo themselves.
pub fn without_test_cargo_env(command: &mut std::process::Command) {
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        let set_for_tests = ["CARGO_MANIFEST_DIR", "CARGO_MANIFEST_PATH", "CARGO_CRATE_NAME", "CARGO_PRIMARY_PACKAGE"]
            .contains(&name.as_ref())
            || ["CARGO_PKG_", "CARGO_BIN_EXE_", "CARGO_TARGET_TMPDIR"].iter().any(|p| name.starts_with(p));
        if set_for_tests {
            command.env_remove(name.as_ref());
        }
    }
}

/// Builds the workspace's plugin dylibs (a no-op when they are fresh), so
/// `cargo test -p backplane-host` works as well as a workspace run.
pub fn ensure_plugins_built() {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let status = cargo_command()
            .current_dir(workspace_root())
            .args([
                "build",
                "-p",
                "backplane-local",
                "-p",
                "backplane-std-nodes",
                "-p",
                "backplane-worker",
                "-p",
                "backplane-ray-like",
                "-p",
                "backplane-ray-node-runner",
                "-p",
                "backplane-test-faulty",
            ])
            .status()
            .expect("cargo runs");
        assert!(status.success(), "building the plugin dylibs failed");
    });
}

/// The real binary with a clean environment (no user config or plugin path).
pub fn backplane() -> Command {
    ensure_plugins_built();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_backplane"));
    cmd.env_remove("BACKPLANE_CONFIG")
        .env_remove("BACKPLANE_PLUGIN_PATH")
        .env_remove("BACKPLANE_LOG")
        .timeout(std::time::Duration::from_secs(120));
    cmd
}

/// The real binary as a std `Command`, for a process to spawn and kill,
/// with the same clean environment as [`backplane`].
pub fn backplane_process() -> std::process::Command {
    ensure_plugins_built();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_backplane"));
    cmd.env_remove("BACKPLANE_CONFIG").env_remove("BACKPLANE_PLUGIN_PATH").env_remove("BACKPLANE_LOG");
    cmd
}

/// A temp dir with `workflow.toml` and `backplane.toml`.
pub fn workflow_with_config(workflow: &str, config: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("workflow.toml"), workflow).unwrap();
    std::fs::write(dir.path().join("backplane.toml"), config).unwrap();
    dir
}

/// `backplane <args> workflow.toml --config backplane.toml` in `dir`.
pub fn command_in(dir: &Path, args: &[&str]) -> Command {
    let mut cmd = backplane();
    cmd.current_dir(dir).args(args).args(["workflow.toml", "--config", "backplane.toml"]);
    cmd
}

/// `backplane run --json` in `dir` with extra environment: exit code, run
/// report (null if none was printed), stderr.
pub fn run_json(dir: &Path, env: &[(&str, &str)]) -> (Option<i32>, serde_json::Value, String) {
    let mut cmd = command_in(dir, &["run", "--json"]);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let output = cmd.output().unwrap();
    let report = serde_json::from_slice(&output.stdout).unwrap_or(serde_json::Value::Null);
    (output.status.code(), report, stderr_of(&output))
}

/// The problems a `--json` command printed for invalid input, one per line as
/// `file:line:column: message` (`{"valid": false, "errors": [...]}`).
pub fn json_errors(report: &serde_json::Value) -> String {
    let errors = report["errors"].as_array().map(Vec::as_slice).unwrap_or_default();
    errors
        .iter()
        .map(|e| {
            let file = e["file"].as_str().unwrap_or_default();
            let file = std::path::Path::new(file).file_name().map_or(file.into(), |n| n.to_string_lossy());
            format!("{file}:{}:{}: {}", e["line"], e["column"], e["message"].as_str().unwrap_or_default())
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Runs a copy of the quickstart with `config`; returns its two output files
/// (`.tsv`, `.b3`) and the run report.
pub fn quickstart_outputs(config: &str) -> (Vec<u8>, Vec<u8>, serde_json::Value) {
    let dir = quickstart_copy(config);
    let (code, report, stderr) = run_json(dir.path(), &[]);
    assert_eq!(code, Some(0), "{stderr}\n{report:#}");
    let read = |name: &str| std::fs::read(dir.path().join("out").join(name)).unwrap();
    (read("word-frequencies.tsv"), read("word-frequencies.b3"), report)
}

/// A temp dir with the quickstart's workflow and documents, and `config` as `backplane.toml`.
pub fn quickstart_copy(config: &str) -> tempfile::TempDir {
    let quickstart = workspace_root().join("examples/quickstart");
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(quickstart.join("workflow.toml"), dir.path().join("workflow.toml")).unwrap();
    std::fs::create_dir_all(dir.path().join("docs")).unwrap();
    for entry in std::fs::read_dir(quickstart.join("docs")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.path().join("docs").join(entry.file_name())).unwrap();
    }
    std::fs::write(dir.path().join("backplane.toml"), config).unwrap();
    dir
}

/// A `backplane run --json` started in `dir`, its stderr (the log) collected
/// as it comes, for tests that act mid-run.
pub struct RunningRun {
    pub child: std::process::Child,
    log: std::sync::Arc<std::sync::Mutex<String>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl RunningRun {
    pub fn start(dir: &Path, log_filter: &str) -> Self {
        use std::io::{BufRead, BufReader};
        ensure_plugins_built();
        let mut child = std::process::Command::new(bin_dir().join("backplane"))
            .current_dir(dir)
            .args(["run", "--json", "workflow.toml", "--config", "backplane.toml"])
            .env("BACKPLANE_LOG", log_filter)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let reader = {
            let (log, stderr) = (log.clone(), child.stderr.take().unwrap());
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    let mut log = log.lock().unwrap();
                    log.push_str(&line);
                    log.push('\n');
                }
            })
        };
        Self { child, log, reader: Some(reader) }
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Waits until the log contains `needle`; returns the log.
    pub fn wait_for_log(&self, needle: &str, within: std::time::Duration) -> String {
        let start = std::time::Instant::now();
        loop {
            let log = self.log();
            if log.contains(needle) {
                return log;
            }
            assert!(start.elapsed() < within, "`{needle}` did not appear within {within:?}:\n{log}");
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    /// Waits for the exit: exit code, report, the whole log.
    pub fn finish(mut self) -> (Option<i32>, serde_json::Value, String) {
        let stdout = self.child.stdout.take().unwrap();
        let report = serde_json::from_reader(stdout).unwrap_or(serde_json::Value::Null);
        let status = self.child.wait().unwrap();
        if let Some(reader) = self.reader.take() {
            reader.join().unwrap();
        }
        (status.code(), report, self.log())
    }
}

pub fn stderr_of(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

pub fn stdout_of(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// How a fixture copy of `plugin-api` differs from the real one.
pub enum AbiSkew {
    /// `Capabilities::max_concurrency` is a `u64` instead of a `u32`.
    ChangedFieldType,
    /// The same types, but version 2.0.0.
    NextMajor,
    /// The same interface, built with `panic = "abort"`.
    PanicAbort,
}

/// Builds the `abi-plugin` fixture against a modified copy of `plugin-api`
/// and returns the dylib.
pub fn skewed_plugin(skew: AbiSkew) -> PathBuf {
    let (name, version, panic) = match skew {
        AbiSkew::ChangedFieldType => ("abi-fixture-changed-field", backplane_plugin_api::INTERFACE_VERSION, "unwind"),
        AbiSkew::NextMajor => ("abi-fixture-next-major", "2.0.0", "unwind"),
        AbiSkew::PanicAbort => ("abi-fixture-panic-abort", backplane_plugin_api::INTERFACE_VERSION, "abort"),
    };
    let change_field = matches!(skew, AbiSkew::ChangedFieldType);
    build_fixture_plugin(name, "host/cli/tests/fixtures/abi-plugin/src/lib.rs", panic, |api| {
        write_api_copy(api, version, |file, text| match file {
            "resources.rs" if change_field => patch(&text, "pub max_concurrency: u32,", "pub max_concurrency: u64,"),
            _ => text,
        })
    })
}

/// Writes a copy of `plugin-api` at `version` into `api`, passing each source
/// file (by name) through `edit`.
fn write_api_copy(api: &Path, version: &str, edit: impl Fn(&str, String) -> String) {
    std::fs::create_dir_all(api.join("src")).unwrap();
    for entry in std::fs::read_dir(workspace_root().join("plugin-api/src")).unwrap() {
        let entry = entry.unwrap();
        let text = edit(entry.file_name().to_str().unwrap(), std::fs::read_to_string(entry.path()).unwrap());
        write_if_changed(&api.join("src").join(entry.file_name()), &text);
    }
    write_if_changed(
        &api.join("Cargo.toml"),
        &format!(
            "[package]\nname = \"backplane-plugin-api\"\nversion = \"{version}\"\nedition = \"2024\"\n\n\
             [dependencies]\nabi_stable = {{ version = \"0.11.3\", default-features = false }}\n\
             serde = {{ version = \"1\", features = [\"derive\"] }}\nserde_json = \"1\"\ncrossbeam-channel = \"0.5\"\n"
        ),
    );
}

/// Builds the plugin `name` from `source` (relative to the workspace) against
/// the `plugin-api` copy `write_api` writes, with the given panic strategy.
/// Builds go to `target/abi-fixtures` so later runs reuse them; `Cargo.lock`
/// is copied so dependency versions match the host's.
fn build_fixture_plugin(name: &str, source: &str, panic: &str, write_api: impl FnOnce(&Path)) -> PathBuf {
    let root = workspace_root();
    let base = root.join("target/abi-fixtures");
    let work = base.join(name);
    write_api(&work.join("plugin-api"));
    std::fs::create_dir_all(work.join("plugin/src")).unwrap();
    write_if_changed(
        &work.join("plugin/Cargo.toml"),
        &format!(
            "[package]\nname = \"{name}\"\nversion = \"0.1.0\"\nedition = \"2024\"\n\n[lib]\ncrate-type = [\"cdylib\"]\n\n\
             [dependencies]\nbackplane-plugin-api = {{ path = \"../plugin-api\" }}\n"
        ),
    );
    write_if_changed(&work.join("plugin/src/lib.rs"), &std::fs::read_to_string(root.join(source)).unwrap());
    write_if_changed(
        &work.join("Cargo.toml"),
        &format!(
            "[workspace]\nresolver = \"3\"\nmembers = [\"plugin-api\", \"plugin\"]\n\n[profile.dev]\npanic = \"{panic}\"\n"
        ),
    );
    if !work.join("Cargo.lock").exists() {
        std::fs::copy(root.join("Cargo.lock"), work.join("Cargo.lock")).unwrap();
    }
    // Each panic strategy needs its own build of the dependencies.
    let target_dir = base.join(format!("target-{panic}"));
    cargo_build(&work.join("Cargo.toml"), &target_dir, &[]);
    let file = format!("lib{}.{}", name.replace('-', "_"), std::env::consts::DLL_EXTENSION);
    // A directory of its own, so a plugin dir holds this plugin alone (two
    // builds of one fixture would define the same types twice).
    copy_into_place(&target_dir.join("debug").join(&file), &work.join("lib").join(&file))
}

fn write_if_changed(path: &Path, text: &str) {
    if std::fs::read_to_string(path).ok().as_deref() != Some(text) {
        std::fs::write(path, text).unwrap();
    }
}

/// A temp directory holding `workflow.toml` with `text`.
pub fn workflow_dir(text: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("workflow.toml"), text).unwrap();
    dir
}

/// Replaces `from` with `to` in `text`, insisting the anchor still exists.
fn patch(text: &str, from: &str, to: &str) -> String {
    assert!(text.contains(from), "fixture anchor `{from}` is gone from plugin-api; update the fixture");
    text.replacen(from, to, 1)
}

/// Writes a copy of `plugin-api` as the next minor version with one of each
/// kind of append-only change: a root-module field, a backend method with a
/// default body, an error variant.
fn write_next_minor_api(api: &Path) {
    write_api_copy(api, NEXT_MINOR, |file, mut text| {
        match file {
            "module.rs" => {
                text = patch(
                    &text,
                    "    pub node_specs: extern \"C\" fn() -> PluginResult<RVec<NodeSpecRef>>,\n}",
                    "    pub node_specs: extern \"C\" fn() -> PluginResult<RVec<NodeSpecRef>>,\n    /// Added in 1.4.\n    #[sabi(missing_field(default))]\n    pub description: RStr<'static>,\n}",
                );
                text = patch(
                    &text,
                    "        node_specs,\n    }",
                    "        node_specs,\n        description: RStr::from_str(\"built against plugin-api 1.4\"),\n    }",
                );
            }
            "error.rs" => {
                text = patch(
                    &text,
                    "    Unsupported { message: RString },",
                    "    Unsupported { message: RString },\n    /// Added in 1.4.\n    QuotaExceeded { message: RString },",
                );
                text = patch(
                    &text,
                    "            Self::Unsupported { .. } => \"unsupported\",",
                    "            Self::Unsupported { .. } => \"unsupported\",\n            Self::QuotaExceeded { .. } => \"quota-exceeded\",",
                );
                text = patch(
                    &text,
                    "            Self::Unsupported { message } => write!(f, \"unsupported: {message}\"),",
                    "            Self::Unsupported { message } => write!(f, \"unsupported: {message}\"),\n            Self::QuotaExceeded { message } => write!(f, \"quota exceeded: {message}\"),",
                );
            }
            "wire.rs" => {
                text = patch(
                    &text,
                    "        | PluginError::Unsupported { message } => message.to_string(),",
                    "        | PluginError::Unsupported { message }\n        | PluginError::QuotaExceeded { message } => message.to_string(),",
                );
            }
            "backend.rs" => {
                text = patch(
                    &text,
                    "    #[sabi(last_prefix_field)]\n    fn shutdown(&self);\n}",
                    "    #[sabi(last_prefix_field)]\n    fn shutdown(&self);\n    /// Added in 1.4.\n    fn queue_depth(&self) -> u64 {\n        0\n    }\n}",
                );
            }
            _ => {}
        }
        text
    });
}

fn cargo_build(manifest: &Path, target_dir: &Path, extra: &[&str]) {
    let output = cargo_command()
        .args(["build", "--offline", "-j2", "--manifest-path"])
        .arg(manifest)
        .args(extra)
        .env("CARGO_TARGET_DIR", target_dir)
        .output()
        .expect("cargo runs");
    assert!(output.status.success(), "building {} failed:\n{}", manifest.display(), stderr_of(&output));
}

/// Today's `plugin-api` source `file` without what 1.3 appended: the
/// compute context's and the completion sink's `emit` (and the calls to
/// them; the helpers around streams are no ABI and stay).
fn without_1_3(file: &str, text: String) -> String {
    match file {
        "backend.rs" => {
            let text = patch(
                &text,
                "    /// Added in 1.3: one item the task's node emitted on a stream output\n    /// (`item.port` names it), before `complete`. It may wait while the\n    /// stream's consumers are a window behind; an error means the task\n    /// should stop emitting (its consumers are gone). Hosts before 1.3\n    /// cannot take items.\n    fn emit(&self, item: Payload) -> PluginResult<()> {\n        let _ = item;\n        Err(PluginError::unsupported(crate::stream::HOST_CANNOT_STREAM)).into()\n    }\n",
                "",
            );
            patch(
                &text,
                "    fn emit(&self, item: Payload) -> PluginResult<()> {\n        match self.io.emit {\n            Some(emit) => emit(item),\n            None => Err(PluginError::unsupported(crate::stream::CANNOT_STREAM)).into(),\n        }\n    }\n",
                "",
            )
        }
        "node.rs" => {
            let text = patch(
                &text,
                "    /// Added in 1.3: hands on one item of a stream output (`item.port` names\n    /// it), waiting while the stream's consumers are a window behind. An\n    /// error means stop: the consumers are gone or the task was cancelled.\n    /// Contexts before 1.3 cannot stream.\n    fn emit(&self, item: Payload) -> PluginResult<()> {\n        let _ = item;\n        Err(PluginError::unsupported(crate::stream::CANNOT_STREAM)).into()\n    }\n",
                "",
            );
            patch(
                &text,
                "        self.0.emit(item).into_result().map_err(NodeError::with)\n",
                "        let _ = item;\n        Err(NodeError::with(PluginError::unsupported(crate::stream::CANNOT_STREAM)))\n",
            )
        }
        "pool.rs" => patch(
            &text,
            "        self.sink.lock().unwrap_or_else(PoisonError::into_inner).emit(item)\n",
            "        let _ = (item, self.sink);\n        RResult::RErr(PluginError::unsupported(crate::stream::CANNOT_STREAM))\n",
        ),
        _ => text,
    }
}

/// Today's `plugin-api` source `file` without what 1.2 appended: the
/// completion sink's `started` and `log`, the compute context's `log` (and
/// the calls to them; the task log itself is no ABI and stays).
fn without_1_2(file: &str, text: String) -> String {
    match file {
        "backend.rs" => {
            let text = patch(
                &text,
                "    /// Added in 1.2: the task left the backend's own queue and began to run,\n    /// at `at_unix_us` microseconds since the Unix epoch (0: now). Call it at\n    /// most once, before `complete`; the host tells time queued in the\n    /// backend from time running by it. Hosts before 1.2 ignore it.\n    fn started(&self, at_unix_us: u64) {\n        let _ = at_unix_us;\n    }\n    /// Added in 1.2: one line the task's node logged (see [`crate::task_log`]),\n    /// forwarded before `complete`; the host keeps it with the node's\n    /// attempt. Hosts before 1.2 ignore it.\n    fn log(&self, level: LogLevel, message: RStr<'_>) {\n        let _ = (level, message);\n    }\n",
                "",
            );
            patch(
                &text,
                "    fn log(&self, level: LogLevel, message: RStr<'_>) {\n        if let Some(log) = self.io.log {\n            log.push(level, message.as_str());\n        }\n    }\n",
                "",
            )
        }
        "node.rs" => {
            let text = patch(
                &text,
                "    /// Added in 1.2: keeps one line the node logged with its task (the\n    /// `log_*!` macros land here too while the node computes, see\n    /// [`crate::log`]). Contexts before 1.2 drop it.\n    fn log(&self, level: LogLevel, message: RStr<'_>) {\n        let _ = (level, message);\n    }\n",
                "",
            );
            let text = patch(
                &text,
                "let keep = |level: LogLevel, message: &str| ctx.0.log(level, message.into());",
                "let keep = |_: LogLevel, _: &str| {};",
            );
            patch(&text, "        self.0.log(level, message.into());\n", "        let _ = (level, message);\n")
        }
        "pool.rs" => {
            let text = patch(&text, "        sink.lock().unwrap_or_else(PoisonError::into_inner).started(0);\n", "");
            patch(&text, "        log.forward(&sink);\n", "")
        }
        "wire.rs" => patch(
            &text,
            "        if self.started_unix_us > 0 {\n            sink.started(self.started_unix_us);\n        }\n        for (level, message) in &self.logs {\n            sink.log(crate::log::LogLevel(*level), message.as_str().into());\n        }\n",
            "        let _ = sink;\n",
        ),
        "task_log.rs" => patch(
            &text,
            "            sink.log(line.level, line.message.as_str().into());\n",
            "            let _ = (sink, line);\n",
        ),
        _ => text,
    }
}

/// Writes a copy of `plugin-api` as the previous minor version, 1.2.0:
/// today's sources without what 1.3 appended.
fn write_previous_minor_api(api: &Path) {
    write_api_copy(api, PREVIOUS_MINOR, without_1_3);
}

/// Writes a copy of `plugin-api` as 1.1.0: 1.2's sources without what 1.2 appended.
fn write_minor_1_1_api(api: &Path) {
    write_api_copy(api, MINOR_1_1, |file, text| without_1_2(file, without_1_3(file, text)));
}

/// Writes a copy of `plugin-api` as the first minor version, 1.0.0: 1.1's
/// sources without what 1.1 appended (the node spec's settings check).
fn write_oldest_minor_api(api: &Path) {
    write_api_copy(api, OLDEST_MINOR, |file, text| match file {
        "node.rs" => {
            let text = without_1_2(file, without_1_3(file, text));
            let text = patch(
                &text,
                "    /// Added in 1.1: checks settings beyond the JSON Schema when a workflow\n    /// is validated (a regex that must compile, an index below a count).\n    /// `RNone` from plugins built against 1.0.\n    #[sabi(missing_field(default))]\n    pub check_settings: ROption<SettingsCheckFn>,\n",
                "",
            );
            patch(&text, "        check_settings: RSome(SettingsCheckFn(check_adapter::<N>)),\n", "")
        }
        _ => without_1_2(file, without_1_3(file, text)),
    });
}

/// The first interface version, whose plugins still load.
pub const OLDEST_MINOR: &str = "1.0.0";
/// The interface version before today's, which the evolution tests rebuild.
pub const PREVIOUS_MINOR: &str = "1.2.0";
/// The interface version before that: the first whose sink hears "started" and logs.
pub const MINOR_1_1: &str = "1.1.0";
/// The interface version after today's, which the evolution tests invent.
pub const NEXT_MINOR: &str = "1.4.0";

/// A plugin built against the next minor interface.
pub fn next_minor_plugin() -> PathBuf {
    build_fixture_plugin(
        "abi-fixture-next-minor",
        "host/cli/tests/fixtures/abi-plugin-next/src/lib.rs",
        "unwind",
        write_next_minor_api,
    )
}

/// The minimal `abi-plugin` fixture built against the previous minor interface.
pub fn previous_minor_plugin() -> PathBuf {
    build_fixture_plugin(
        "abi-fixture-previous-minor",
        "host/cli/tests/fixtures/abi-plugin/src/lib.rs",
        "unwind",
        write_previous_minor_api,
    )
}

/// The minimal `abi-plugin` fixture built against 1.1 (before "started" and logs).
pub fn minor_1_1_plugin() -> PathBuf {
    build_fixture_plugin(
        "abi-fixture-minor-1-1",
        "host/cli/tests/fixtures/abi-plugin/src/lib.rs",
        "unwind",
        write_minor_1_1_api,
    )
}

/// The minimal `abi-plugin` fixture built against the first minor interface.
pub fn oldest_minor_plugin() -> PathBuf {
    build_fixture_plugin(
        "abi-fixture-oldest-minor",
        "host/cli/tests/fixtures/abi-plugin/src/lib.rs",
        "unwind",
        write_oldest_minor_api,
    )
}

/// The real host, built against the previous minor interface: its
/// completion sink cannot implement what 1.3 added, so that method goes.
pub fn previous_minor_host() -> PathBuf {
    build_host_variant("host-previous-minor", PREVIOUS_MINOR, write_previous_minor_api, |work, root| {
        let sink = std::fs::read_to_string(root.join("host/src/layers/sink.rs")).unwrap();
        let start = sink.find(SINK_1_3_ANCHOR).expect("the 1.3 anchor in the host's sink");
        let end = start + sink[start..].find("\n    }\n").expect("the end of `emit`") + "\n    }\n".len();
        write_if_changed(&work.join("host/src/layers/sink.rs"), &format!("{}{}", &sink[..start], &sink[end..]));
    })
}

/// Where the host's sink implements what plugin-api 1.3 added (`emit`).
const SINK_1_3_ANCHOR: &str = "    // Added in plugin-api 1.3.\n";

/// The real host, built against the next minor interface, with one line
/// added to its loader that reads the field the next minor added.
pub fn next_minor_host() -> PathBuf {
    build_host_variant("host-next-minor", NEXT_MINOR, write_next_minor_api, |work, root| {
        let loader = std::fs::read_to_string(root.join("host/loader/src/loader/mod.rs")).unwrap();
        write_if_changed(
            &work.join("host/loader/src/loader/mod.rs"),
            &patch(
                &loader,
                "    let name = module.name().to_string();\n",
                "    let name = module.name().to_string();\n    tracing::info!(plugin = %name, description = ?module.description().as_str(), \"read the 1.4 root-module field\");\n",
            ),
        );
    })
}

/// The crates the `backplane` binary builds from, besides `plugin-api`.
const HOST_CRATES: [&str; 8] = [
    "host",
    "host/loader",
    "host/cli",
    "host/atomic-file",
    "host/cache",
    "conformance",
    "plugins/worker/protocol",
    "plugins/worker/service",
];

/// A copy of the real host (and what it builds from) against the
/// `plugin-api` copy `write_api` writes at `version`; `edit` then changes
/// the copied sources. Returns the `backplane` binary.
fn build_host_variant(
    name: &str,
    version: &str,
    write_api: impl FnOnce(&Path),
    edit: impl FnOnce(&Path, &Path),
) -> PathBuf {
    let root = workspace_root();
    let base = root.join("target/abi-fixtures");
    let work = base.join(name);
    write_api(&work.join("plugin-api"));
    for dir in HOST_CRATES {
        let dir = format!("{dir}/src");
        copy_tree(&root.join(&dir), &work.join(&dir));
    }
    for manifest in HOST_CRATES.map(|dir| format!("{dir}/Cargo.toml")) {
        write_if_changed(&work.join(&manifest), &std::fs::read_to_string(root.join(&manifest)).unwrap());
    }
    edit(&work, &root);
    let workspace = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    let members_start = workspace.find("members = [").unwrap();
    let members_end = members_start + workspace[members_start..].find("default-members").unwrap();
    let default_end = members_end + workspace[members_end..].find("]\n").unwrap() + 1;
    let workspace = format!(
        "{}members = [\"plugin-api\", {}]\n{}",
        &workspace[..members_start],
        HOST_CRATES.map(|dir| format!("\"{dir}\"")).join(", "),
        &workspace[default_end + 1..]
    );
    let today = format!("version = \"{}\" }}", backplane_plugin_api::INTERFACE_VERSION);
    write_if_changed(&work.join("Cargo.toml"), &patch(&workspace, &today, &format!("version = \"{version}\" }}")));
    if !work.join("Cargo.lock").exists() {
        std::fs::copy(root.join("Cargo.lock"), work.join("Cargo.lock")).unwrap();
    }
    let target_dir = base.join("target-unwind");
    cargo_build(&work.join("Cargo.toml"), &target_dir, &["-p", "backplane", "--bin", "backplane"]);
    // Beside the fixture plugins built in the same directory, the host would
    // load them all: it runs from a directory of its own instead.
    copy_into_place(&target_dir.join("debug/backplane"), &work.join("bin/backplane"))
}

/// Copies `from` to `to` when they differ, renaming it into place (another
/// test may be running or have loaded the old file); returns `to`.
fn copy_into_place(from: &Path, to: &Path) -> PathBuf {
    let built = std::fs::read(from).unwrap();
    if std::fs::read(to).ok().as_deref() != Some(&built[..]) {
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        let temp = to.with_extension(format!("tmp{}", std::process::id()));
        std::fs::write(&temp, &built).unwrap();
        std::fs::set_permissions(&temp, std::fs::metadata(from).unwrap().permissions()).unwrap();
        std::fs::rename(&temp, to).unwrap();
    }
    to.to_owned()
}

/// Mirrors `from` into `to` (files gone from `from` are removed, so a moved
/// module cannot linger in the copy).
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(to).unwrap() {
        let entry = entry.unwrap();
        if !from.join(entry.file_name()).exists() {
            let path = entry.path();
            let _ = if path.is_dir() { std::fs::remove_dir_all(&path) } else { std::fs::remove_file(&path) };
        }
    }
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            write_if_changed(&target, &std::fs::read_to_string(entry.path()).unwrap());
        }
    }
}

/// A copy of `examples/<name>` (its workflow, config and docs) in a temp dir.
pub fn example_copy(name: &str) -> tempfile::TempDir {
    let example = workspace_root().join("examples").join(name);
    let dir = tempfile::tempdir().unwrap();
    for file in ["workflow.toml", "backplane.toml"] {
        std::fs::copy(example.join(file), dir.path().join(file)).unwrap();
    }
    std::fs::create_dir_all(dir.path().join("docs")).unwrap();
    for entry in std::fs::read_dir(example.join("docs")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.path().join("docs").join(entry.file_name())).unwrap();
    }
    dir
}

/// Debian's headless Chromium (`./scripts/test` installs the `chromium` package).
pub fn chromium() -> PathBuf {
    ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .expect("chromium is missing: `./scripts/test` installs it (Debian's `chromium` package)")
}

/// `page` loaded in headless Chromium: the DOM after its scripts ran, and
/// the console lines Chromium logged (messages, uncaught errors).
pub fn render_in_chromium(page: &Path) -> (String, Vec<String>) {
    let profile = tempfile::tempdir().unwrap();
    let output = std::process::Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--enable-logging=stderr",
            "--virtual-time-budget=5000",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("--dump-dom")
        .arg(format!("file://{}", page.display()))
        .output()
        .unwrap();
    assert!(output.status.success(), "chromium failed: {}", stderr_of(&output));
    let console = stderr_of(&output).lines().filter(|l| l.contains(":CONSOLE")).map(str::to_owned).collect();
    (stdout_of(&output), console)
}

/// A port nothing listens on now (bound and released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The body of `GET http://addr{path}`, or `None` when nothing answers.
pub fn http_get(addr: &str, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(std::time::Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200").then(|| body.to_owned())
}
