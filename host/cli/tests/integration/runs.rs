//! Workflows run end to end through the real binary and plugin dylibs.

use crate::fixtures::{backplane, stderr_of, workflow_dir, workspace_root};
use std::{collections::BTreeMap, time::Instant};

/// Word frequencies computed independently of Backplane, the way the
/// quickstart workflow defines them.
fn expected_frequencies(docs: &std::path::Path, top: usize) -> String {
    let stop: Vec<&str> = "a an and are as at be by do does for from had has in is it its of on or so that the their them they to was what when where which who why will with".split(' ').collect();
    let mut files: Vec<_> = std::fs::read_dir(docs).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    for file in files {
        let text = std::fs::read_to_string(file).unwrap();
        for word in text.split(|c: char| !(c.is_alphanumeric() || c == '\'')).filter(|w| !w.is_empty()) {
            let word = word.to_lowercase();
            if !stop.contains(&word.as_str()) {
                *counts.entry(word).or_default() += 1;
            }
        }
    }
    let mut sorted: Vec<(String, u64)> = counts.into_iter().collect();
    sorted.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    sorted.into_iter().take(top).map(|(w, c)| format!("{w}\t{c}\n")).collect()
}

#[test]
fn quickstart_writes_word_frequencies() {
    let quickstart = workspace_root().join("examples/quickstart");
    let work = tempfile::tempdir().unwrap();
    // Copy so parallel test runs never share an output directory.
    copy_dir(&quickstart, work.path());
    let output = backplane()
        .arg("run")
        .arg(work.path().join("workflow.toml"))
        .arg("--config")
        .arg(work.path().join("backplane.toml"))
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr_of(&output));
    let stderr = stderr_of(&output);
    assert!(stderr.contains("11/11 nodes succeeded"), "{stderr}");
    assert!(stderr.contains("local (local): 11 nodes"), "{stderr}");
    let result = std::fs::read_to_string(work.path().join("out/word-frequencies.tsv")).unwrap();
    assert_eq!(result, expected_frequencies(&work.path().join("docs"), 20));
    let digest = std::fs::read_to_string(work.path().join("out/word-frequencies.b3")).unwrap();
    assert_eq!(digest, format!("{}\n", blake3_hex(result.as_bytes())));
}

fn blake3_hex(data: &[u8]) -> String {
    blake3::hash(data).to_hex().to_string()
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            // Outputs and caches of runs made in the example itself stay there.
            if entry.file_name() == "out" || entry.file_name() == ".backplane" {
                continue;
            }
            std::fs::create_dir_all(&target).unwrap();
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[test]
fn json_report_and_stdout_output() {
    let wf = workflow_dir(
        r#"
[[node]]
id = "greeting"
type = "std.const"
settings = { text = "hello\nworld\n" }

[[node]]
id = "upper"
type = "std.shell"
settings = { command = "tr a-z A-Z" }
inputs = { stdin = "greeting.text" }

[[output]]
from = "upper.stdout"
to = "-"
"#,
    );
    let output = backplane().arg("run").arg(wf.path().join("workflow.toml")).arg("--quiet").output().unwrap();
    assert!(output.status.success(), "{}", stderr_of(&output));
    assert_eq!(String::from_utf8_lossy(&output.stdout), "HELLO\nWORLD\n");
}

#[test]
fn a_panicking_node_is_a_node_failure_with_its_message() {
    let wf = workflow_dir(
        r#"
[[node]]
id = "boom"
type = "std.panic"
settings = { message = "the flux capacitor broke" }

[[node]]
id = "after"
type = "std.noop"
inputs = { in = "boom.out" }
"#,
    );
    let output = backplane().arg("run").arg(wf.path().join("workflow.toml")).arg("--json").output().unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", stderr_of(&output));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["failure"]["node"], "boom");
    assert_eq!(report["failure"]["kind"], "panicked");
    assert!(report["failure"]["message"].as_str().unwrap().contains("the flux capacitor broke"));
    assert_eq!(report["not_started"], 1);
    assert_eq!(report["succeeded"], 0);
}

#[test]
fn a_failing_node_stops_the_run_and_names_the_node() {
    let wf = workflow_dir(
        r#"
[[node]]
id = "bad"
type = "std.shell"
settings = { command = "echo 'disk on fire' >&2; exit 3" }

[[node]]
id = "good"
type = "std.const"
settings = { text = "fine" }
"#,
    );
    let output = backplane().arg("run").arg(wf.path().join("workflow.toml")).output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = stderr_of(&output);
    assert!(stderr.contains("node `bad` (std.shell) failed on backend `local`"), "{stderr}");
    assert!(stderr.contains("status 3") && stderr.contains("disk on fire"), "{stderr}");
}

#[test]
fn fail_fast_cancels_running_nodes_and_never_starts_dependants() {
    let wf = workflow_dir(
        r#"
[[node]]
id = "bad"
type = "std.fail"
settings = { message = "broken on purpose" }

[[node]]
id = "slow"
type = "std.sleep"
settings = { ms = 30000 }

[[node]]
id = "after-slow"
type = "std.noop"
inputs = { in = "slow.out" }
"#,
    );
    let started = Instant::now();
    let output = backplane().arg("run").arg(wf.path().join("workflow.toml")).arg("--json").output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["failure"]["node"], "bad");
    assert_eq!(report["failure"]["message"], "broken on purpose");
    // The 30 s sleep was cancelled rather than waited for.
    assert_eq!(
        (report["failed"].as_u64(), report["cancelled"].as_u64(), report["not_started"].as_u64()),
        (Some(1), Some(1), Some(1)),
        "{report}"
    );
    assert!(started.elapsed().as_secs() < 20, "the run waited for the sleeping node: {report}");
}

#[test]
fn a_command_that_ignores_a_large_stdin_does_not_kill_the_host() {
    // More than a pipe buffer of input to a command that exits without reading
    // it: the writer gets EPIPE, which must be an error, not a fatal SIGPIPE.
    let wf = workflow_dir(
        r#"
[[node]]
id = "big"
type = "std.read_files"
settings = { glob = "big.txt" }

[[node]]
id = "peek"
type = "std.shell"
settings = { command = "head -c 5" }
inputs = { stdin = "big.text" }

[[output]]
from = "peek.stdout"
to = "-"
"#,
    );
    std::fs::write(wf.path().join("big.txt"), "abcdefgh\n".repeat(200_000)).unwrap();
    let output = backplane().arg("run").arg(wf.path().join("workflow.toml")).arg("--quiet").output().unwrap();
    assert!(output.status.success(), "{}", stderr_of(&output));
    assert_eq!(String::from_utf8_lossy(&output.stdout), "abcde");
}

fn faulty_run(mode: &str) -> (Option<i32>, String) {
    let wf = workflow_dir(
        r#"
[[node]]
id = "victim"
type = "std.const"
backend = "faulty"
settings = { text = "x" }
"#,
    );
    let config = wf.path().join("backplane.toml");
    std::fs::write(
        &config,
        format!("default_backend = \"local\"\n[backends.local]\ntype = \"local\"\n[backends.faulty]\ntype = \"faulty\"\nmode = \"{mode}\"\n"),
    )
    .unwrap();
    let output = backplane()
        .arg("run")
        .arg(wf.path().join("workflow.toml"))
        .arg("--config")
        .arg(&config)
        .timeout(std::time::Duration::from_secs(30))
        .output()
        .unwrap();
    (output.status.code(), stderr_of(&output))
}

#[test]
fn a_backend_that_drops_the_sink_yields_an_error_not_a_hang() {
    let (code, stderr) = faulty_run("drop-sink");
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("dropped the task's completion sink"), "{stderr}");
}

#[test]
fn a_backend_that_panics_in_submit_does_not_take_the_host_down() {
    let (code, stderr) = faulty_run("panic-in-submit");
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("node `victim`") && stderr.contains("completion sink"), "{stderr}");
}

#[test]
fn a_backend_thread_that_panics_holding_the_sink_yields_an_error() {
    let (code, stderr) = faulty_run("panic-in-thread");
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("dropped the task's completion sink"), "{stderr}");
}

#[test]
fn a_well_behaved_third_backend_runs_the_node() {
    let (code, stderr) = faulty_run("complete");
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("faulty (faulty): 1 nodes"), "{stderr}");
}

/// Four `std.shell` nodes that each hold a lock directory for 300 ms; a second
/// holder fails at `mkdir`. Returns whether the run succeeded.
fn run_lock_holders(max_in_flight: usize) -> (bool, String) {
    let mut workflow = String::new();
    for i in 0..4 {
        workflow.push_str(&format!(
            "[[node]]\nid = \"holder-{i}\"\ntype = \"std.shell\"\nsettings = {{ command = \"mkdir lock.d && sleep 0.3 && rmdir lock.d\" }}\n\n"
        ));
    }
    let wf = workflow_dir(&workflow);
    let config = wf.path().join("backplane.toml");
    std::fs::write(
        &config,
        format!("[backends.local]\ntype = \"local\"\nthreads = 4\nmax_in_flight = {max_in_flight}\n"),
    )
    .unwrap();
    let output =
        backplane().arg("run").arg(wf.path().join("workflow.toml")).arg("--config").arg(&config).output().unwrap();
    (output.status.success(), stderr_of(&output))
}

#[test]
fn the_in_flight_limit_of_an_instance_is_respected() {
    let (ok, stderr) = run_lock_holders(1);
    assert!(ok, "with one task in flight at a time no two holders overlap: {stderr}");
    let (ok, stderr) = run_lock_holders(4);
    assert!(!ok, "with four in flight they do overlap (the check itself works)");
    assert!(stderr.contains("lock.d") && stderr.contains("File exists"), "{stderr}");
}

#[test]
fn plugin_logs_reach_the_host_log() {
    let output = backplane().args(["-vv", "backends"]).output().unwrap();
    assert!(output.status.success());
    let stderr = stderr_of(&output);
    let line = stderr.lines().find(|l| l.contains("local backend started with")).expect("plugin log line");
    assert!(line.contains("DEBUG") && line.contains("plugin=\"backplane-local\""), "{line}");
}
