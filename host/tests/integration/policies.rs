//! Run policies with real signals sent to a real `backplane run` process:
//! Ctrl-C and SIGTERM stop a run cleanly, a second Ctrl-C exits at once, the
//! grace period bounds the wait, and `continue` runs independent branches on.

use crate::fixtures::{backplane, ensure_plugins_built, stderr_of, workflow_dir};
use std::{
    io::Read,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

fn start(dir: &std::path::Path, config: &str) -> Child {
    ensure_plugins_built();
    std::fs::write(dir.join("backplane.toml"), config).unwrap();
    Command::new(env!("CARGO_BIN_EXE_backplane"))
        .current_dir(dir)
        .env_remove("BACKPLANE_CONFIG")
        .env_remove("BACKPLANE_PLUGIN_PATH")
        .args(["run", "workflow.toml", "--config", "backplane.toml"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn signal(child: &Child, signal: i32) {
    // SAFETY: sending a signal to our own child process.
    assert_eq!(unsafe { libc::kill(child.id() as i32, signal) }, 0);
}

/// Waits up to `limit` for the child; returns its exit code, stderr and how long it took.
fn finish(mut child: Child, limit: Duration) -> (Option<i32>, String, Duration) {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut stderr = String::new();
            child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
            return (status.code(), stderr, started.elapsed());
        }
        if started.elapsed() > limit {
            child.kill().unwrap();
            panic!("the run did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

const SLEEPERS: &str = r#"
[[node]]
id = "nap-1"
type = "std.sleep"
settings = { ms = 30000 }

[[node]]
id = "nap-2"
type = "std.sleep"
settings = { ms = 30000 }

[[node]]
id = "after"
type = "std.noop"
inputs = { in = "nap-1.out" }
"#;

fn interrupts_a_run(signal_number: i32, name: &str) {
    let wf = workflow_dir(SLEEPERS);
    let child = start(wf.path(), "[backends.local]\ntype = \"local\"\nthreads = 2\n");
    std::thread::sleep(Duration::from_millis(800));
    signal(&child, signal_number);
    let (code, stderr, took) = finish(child, Duration::from_secs(20));
    assert_eq!(code, Some(130), "{stderr}");
    assert!(took < Duration::from_secs(10), "stopped within the grace period, took {took:?}");
    assert!(stderr.contains(&format!("{name}: cancelling running nodes")), "{stderr}");
    assert!(stderr.contains("interrupted after"), "{stderr}");
    assert!(stderr.contains("0 succeeded, 0 failed, 2 cancelled, 1 not started"), "{stderr}");
}

#[test]
fn ctrl_c_cancels_running_nodes_and_reports_what_never_started() {
    interrupts_a_run(libc::SIGINT, "interrupt");
}

#[test]
fn sigterm_stops_a_run_the_same_way() {
    interrupts_a_run(libc::SIGTERM, "SIGTERM");
}

const HANGING: &str = r#"
[[node]]
id = "stuck"
type = "std.noop"
backend = "stubborn"
"#;

fn stubborn_config(grace_secs: u32) -> String {
    format!(
        "default_backend = \"local\"\n[policy]\ncancel_grace_secs = {grace_secs}\n\n[backends.local]\ntype = \"local\"\n\n[backends.stubborn]\ntype = \"faulty\"\nmode = \"hang\"\n"
    )
}

#[test]
fn a_task_that_ignores_cancel_is_abandoned_after_the_grace_period() {
    let wf = workflow_dir(HANGING);
    let child = start(wf.path(), &stubborn_config(1));
    std::thread::sleep(Duration::from_millis(500));
    signal(&child, libc::SIGINT);
    let (code, stderr, took) = finish(child, Duration::from_secs(20));
    assert_eq!(code, Some(130), "{stderr}");
    assert!(took >= Duration::from_millis(900) && took < Duration::from_secs(8), "{took:?}");
    assert!(stderr.contains("1 abandoned"), "{stderr}");
}

#[test]
fn a_second_ctrl_c_exits_at_once() {
    let wf = workflow_dir(HANGING);
    let mut child = start(wf.path(), &stubborn_config(60));
    std::thread::sleep(Duration::from_millis(500));
    signal(&child, libc::SIGINT);
    std::thread::sleep(Duration::from_millis(500));
    assert!(child.try_wait().unwrap().is_none(), "still waiting for the stuck task after one Ctrl-C");
    signal(&child, libc::SIGINT);
    let (code, stderr, took) = finish(child, Duration::from_secs(20));
    assert_eq!(code, Some(130), "{stderr}");
    assert!(took < Duration::from_secs(3), "the second Ctrl-C took {took:?}");
    assert!(stderr.contains("exiting now"), "{stderr}");
}

const BRANCHES: &str = r#"
[[node]]
id = "broken"
type = "std.fail"
settings = { message = "this branch is broken" }

[[node]]
id = "downstream"
type = "std.noop"
inputs = { in = "broken.out" }

[[node]]
id = "fine"
type = "std.const"
settings = { text = "independent result" }

[[output]]
from = "fine.text"
to = "fine.txt"
"#;

#[test]
fn continue_runs_independent_branches_and_skips_dependants() {
    let wf = workflow_dir(BRANCHES);
    std::fs::write(wf.path().join("backplane.toml"), "[policy]\nfailure = \"continue\"\n").unwrap();
    let output = backplane()
        .current_dir(wf.path())
        .args(["run", "workflow.toml", "--config", "backplane.toml", "--json"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", stderr_of(&output));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(
        (report["succeeded"].as_u64(), report["failed"].as_u64(), report["skipped"].as_u64()),
        (Some(1), Some(1), Some(1)),
        "{report}"
    );
    assert_eq!(report["failures"][0]["node"], "broken");
    assert_eq!(std::fs::read_to_string(wf.path().join("fine.txt")).unwrap(), "independent result");

    // The flag overrides the config.
    let output = backplane()
        .current_dir(wf.path())
        .args(["run", "workflow.toml", "--config", "backplane.toml", "--json", "--on-failure", "fail-fast"])
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["skipped"], 0, "{report}");
}

#[test]
fn unknown_policies_are_config_errors() {
    let wf = workflow_dir(BRANCHES);
    std::fs::write(wf.path().join("backplane.toml"), "[policy]\nfailure = \"yolo\"\ncancel_grace_secs = -1\n").unwrap();
    let output = backplane()
        .current_dir(wf.path())
        .args(["run", "workflow.toml", "--config", "backplane.toml"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = stderr_of(&output);
    assert!(stderr.contains("backplane.toml:2:11: error: unknown failure policy `yolo`"), "{stderr}");
    assert!(stderr.contains("backplane.toml:3:21: error: invalid `cancel_grace_secs`"), "{stderr}");
}
