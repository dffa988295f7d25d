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

/// Runs `workflow` with `config` (both in a temp dir) and returns the exit code,
/// JSON report and stderr.
fn run_with(workflow: &str, config: &str) -> (Option<i32>, serde_json::Value, String) {
    let wf = workflow_dir(workflow);
    std::fs::write(wf.path().join("backplane.toml"), config).unwrap();
    let output = backplane()
        .current_dir(wf.path())
        .args(["run", "workflow.toml", "--config", "backplane.toml", "--json"])
        .output()
        .unwrap();
    let report = serde_json::from_slice(&output.stdout).unwrap_or(serde_json::Value::Null);
    (output.status.code(), report, stderr_of(&output))
}

fn faulty(settings: &str, policy: &str) -> String {
    format!(
        "default_backend = \"faulty\"\n{policy}\n[backends.faulty]\ntype = \"faulty\"\n{settings}\n[backends.local]\ntype = \"local\"\n"
    )
}

const ONE_NODE: &str = "[[node]]\nid = \"job\"\ntype = \"std.const\"\nsettings = { text = \"done\" }\n\n[[output]]\nfrom = \"job.text\"\nto = \"out.txt\"\n";

#[test]
fn infrastructure_failures_are_retried_with_backoff() {
    let config = faulty(
        "mode = \"fail-then-complete\"\nfail_times = 2\nfail_kind = \"infrastructure\"",
        "[policy.retry]\nbackoff_secs = 0.2\n[policy.breaker]\nfailures = 100",
    );
    let started = Instant::now();
    let (code, report, stderr) = run_with(ONE_NODE, &config);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(report["retries"], 2, "{report}");
    // Backoff 0.2 s then 0.4 s, each with at most 25% jitter.
    assert!(started.elapsed() >= Duration::from_millis(450), "{:?}", started.elapsed());
    assert!(
        stderr.contains("attempt 1 failed (infrastructure): infrastructure failure: failure 1 of 2 for job; retrying"),
        "{stderr}"
    );
    assert!(
        stderr.contains("attempt 2 failed (infrastructure): infrastructure failure: failure 2 of 2 for job; retrying"),
        "{stderr}"
    );
}

#[test]
fn node_failures_are_not_retried_unless_the_node_asks() {
    let config = faulty("mode = \"fail-then-complete\"\nfail_times = 1\nfail_kind = \"node\"", "");
    let (code, report, _) = run_with(ONE_NODE, &config);
    assert_eq!(code, Some(1));
    assert_eq!(report["retries"], 0);
    assert_eq!(report["failure"]["message"], "failure 1 of 1 for job");

    let with_retry = ONE_NODE.replace("settings = {", "retry = { node_attempts = 2, backoff_secs = 0 }\nsettings = {");
    let (code, report, stderr) = run_with(&with_retry, &config);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(report["retries"], 1);
}

#[test]
fn exhausted_retries_fail_with_the_attempt_count() {
    let config = faulty(
        "mode = \"fail-then-complete\"\nfail_times = 5",
        "[policy.retry]\nbackoff_secs = 0\n[policy.breaker]\nfailures = 100",
    );
    let (code, report, _) = run_with(ONE_NODE, &config);
    assert_eq!(code, Some(1));
    assert_eq!(report["failure"]["kind"], "infrastructure");
    assert_eq!(report["failure"]["message"], "infrastructure failure: failure 3 of 5 for job (after 3 attempts)");
}

#[test]
fn a_hanging_node_hits_its_timeout_is_cancelled_then_abandoned() {
    let workflow = "[[node]]\nid = \"stuck\"\ntype = \"std.noop\"\ntimeout_secs = 0.3\n";
    let config =
        faulty("mode = \"hang\"", "[policy.timeout]\ngrace_secs = 0.3\n[policy.retry]\ninfrastructure_attempts = 1");
    let started = Instant::now();
    let (code, report, stderr) = run_with(workflow, &config);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(10), "the hanging task was not abandoned");
    assert_eq!(report["failure"]["kind"], "timed-out", "{report}");
    assert!(report["failure"]["message"].as_str().unwrap().contains("abandoned"), "{report}");
}

#[test]
fn a_node_that_honours_cancel_is_reported_as_timed_out() {
    let workflow = "[[node]]\nid = \"slow\"\ntype = \"std.sleep\"\nsettings = { ms = 30000 }\ntimeout_secs = 0.3\nbackend = \"local\"\n";
    let config = faulty("mode = \"complete\"", "[policy.retry]\ninfrastructure_attempts = 1");
    let (code, report, stderr) = run_with(workflow, &config);
    assert_eq!(code, Some(1), "{stderr}");
    assert_eq!(report["failure"]["kind"], "timed-out", "{report}");
    assert_eq!(report["failure"]["message"], "timed out: exceeded 0.3s; cancelled");
    assert_eq!(report["timeouts"], 1);
}

#[test]
fn a_late_result_of_an_abandoned_attempt_is_ignored() {
    // Attempt 1 answers after 1.5 s; it is abandoned at 0.4 s and attempt 2
    // succeeds at once (the backend sees the attempt number: only attempt 1 is slow). A slow downstream node keeps the run alive until the
    // late answer arrives, which must be dropped, not delivered twice.
    let workflow = r#"
[[node]]
id = "job"
type = "std.const"
settings = { text = "once" }
timeout_secs = 0.2

[[node]]
id = "wait"
type = "std.sleep"
settings = { ms = 2000 }
backend = "local"
inputs = { in = "job.text" }

[[output]]
from = "wait.out"
to = "out.txt"
"#;
    let config = faulty(
        "mode = \"late-first-attempt\"\ndelay_ms = 1500",
        "[policy.timeout]\ngrace_secs = 0.2\n[policy.retry]\nbackoff_secs = 0",
    );
    let wf = workflow_dir(workflow);
    std::fs::write(wf.path().join("backplane.toml"), &config).unwrap();
    let output = backplane()
        .current_dir(wf.path())
        .args(["run", "workflow.toml", "--config", "backplane.toml", "--json"])
        .output()
        .unwrap();
    let stderr = stderr_of(&output);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!((report["retries"].as_u64(), report["succeeded"].as_u64()), (Some(1), Some(2)), "{report}");
    assert!(stderr.contains("ignoring a late or duplicate result"), "{stderr}");
    assert_eq!(std::fs::read_to_string(wf.path().join("out.txt")).unwrap(), "once");
}

#[test]
fn a_flapping_backend_opens_its_breaker_and_work_moves_to_a_capable_instance() {
    let mut workflow = String::new();
    for i in 0..6 {
        workflow.push_str(&format!(
            "[[node]]\nid = \"job-{i}\"\ntype = \"std.const\"\nsettings = {{ text = \"{i}\" }}\n\n"
        ));
    }
    let config = faulty(
        "mode = \"flaky\"",
        "[policy.retry]\nbackoff_secs = 0.05\n[policy.breaker]\nfailures = 3\nwindow_secs = 60\ncooldown_secs = 60",
    );
    let (code, report, stderr) = run_with(&workflow, &config);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(report["breakers"][0]["instance"], "faulty", "{report}");
    assert_eq!(report["breakers"][0]["event"], "opened", "{report}");
    let local =
        report["backends"].as_array().unwrap().iter().find(|b| b["instance"] == "local").expect("local ran nodes");
    assert_eq!(local["nodes"], 6, "{report}");
    assert!(stderr.contains("circuit breaker open after 3 infrastructure failures"), "{stderr}");
    assert!(report["rerouted"][0]["to"] == "local", "{report}");
}

#[test]
fn a_route_rule_can_set_the_retry_policy_of_its_nodes() {
    let config = faulty(
        "mode = \"fail-then-complete\"\nfail_times = 1\nfail_kind = \"node\"",
        "[[route]]\nmatch = { id = \"job\" }\nretry = { node_attempts = 2, backoff_secs = 0 }\n",
    );
    let (code, report, stderr) = run_with(ONE_NODE, &config);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(report["retries"], 1);
}
