//! The policy layers through the real binary and the real `local` dylib:
//! a deadline counts time running, not time queued; a timeout is the node's
//! failure (not retried, not counted by the breaker) unless configured
//! otherwise; resources are reserved while tasks run.

use crate::fixtures::{backplane, stderr_of, workflow_dir};

/// Runs `workflow` with `config` in a temp dir: exit code, JSON report, stderr.
fn run(workflow: &str, config: &str, extra: &[&str]) -> (Option<i32>, serde_json::Value, String) {
    let wf = workflow_dir(workflow);
    std::fs::write(wf.path().join("backplane.toml"), config).unwrap();
    let output = backplane()
        .current_dir(wf.path())
        .args(["run", "workflow.toml", "--config", "backplane.toml", "--json"])
        .args(extra)
        .output()
        .unwrap();
    let report = serde_json::from_slice(&output.stdout).unwrap_or(serde_json::Value::Null);
    (output.status.code(), report, stderr_of(&output))
}

/// Like [`run`] without `--json`, for errors read from stderr.
fn run_plain(workflow: &str, config: &str) -> (Option<i32>, String) {
    let wf = workflow_dir(workflow);
    std::fs::write(wf.path().join("backplane.toml"), config).unwrap();
    let output = backplane()
        .current_dir(wf.path())
        .args(["run", "workflow.toml", "--config", "backplane.toml"])
        .output()
        .unwrap();
    (output.status.code(), stderr_of(&output))
}

fn failed_nodes(report: &serde_json::Value) -> Vec<String> {
    let mut nodes: Vec<String> =
        report["failures"].as_array().unwrap().iter().map(|f| f["node"].as_str().unwrap().to_owned()).collect();
    nodes.sort();
    nodes
}

#[test]
fn a_deadline_counts_time_running_not_time_queued_behind_another_task() {
    // One thread: `fast` can start only when `slow` is done, 2 s later.
    let workflow = "[[node]]\nid = \"slow\"\ntype = \"std.sleep\"\nsettings = { ms = 2000 }\n\n\
                    [[node]]\nid = \"fast\"\ntype = \"std.const\"\nsettings = { text = \"fast\" }\ntimeout_secs = 1\n";
    let (code, report, stderr) = run(workflow, "[backends.local]\ntype = \"local\"\nthreads = 1\n", &[]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!((report["succeeded"].as_u64(), report["timeouts"].as_u64()), (Some(2), Some(0)), "{report}");
}

#[test]
fn node_timeouts_do_not_open_the_breaker_of_their_instance() {
    let mut workflow = String::new();
    for i in 0..5 {
        workflow.push_str(&format!(
            "[[node]]\nid = \"stuck-{i}\"\ntype = \"std.sleep\"\nsettings = {{ ms = 30000 }}\ntimeout_secs = 0.2\n\n"
        ));
    }
    // `healthy` becomes ready after the five timeouts.
    workflow.push_str(
        "[[node]]\nid = \"later\"\ntype = \"std.sleep\"\nsettings = { ms = 1000 }\n\n\
         [[node]]\nid = \"healthy\"\ntype = \"std.noop\"\ninputs = { in = \"later.out\" }\n",
    );
    let config = "[backends.local]\ntype = \"local\"\nthreads = 8\n";
    let (code, report, stderr) = run(&workflow, config, &["--on-failure", "continue"]);
    assert_eq!(code, Some(1), "{stderr}");
    assert_eq!(failed_nodes(&report), ["stuck-0", "stuck-1", "stuck-2", "stuck-3", "stuck-4"], "{report:#}");
    assert!(report["failures"].as_array().unwrap().iter().all(|f| f["kind"] == "timed-out"), "{report:#}");
    assert_eq!(report["succeeded"], 2, "{report:#}");
    assert_eq!(report["breakers"], serde_json::json!([]), "{report:#}");
}

#[test]
fn a_timeout_is_not_retried_unless_timeouts_count_as_infrastructure() {
    let workflow = "[[node]]\nid = \"slow\"\ntype = \"std.sleep\"\nsettings = { ms = 30000 }\ntimeout_secs = 0.3\n";
    let local = "[backends.local]\ntype = \"local\"\n";
    let (code, report, stderr) = run(workflow, &format!("[policy.retry]\nbackoff_secs = 0\n{local}"), &[]);
    assert_eq!(code, Some(1), "{stderr}");
    assert_eq!((report["retries"].as_u64(), report["timeouts"].as_u64()), (Some(0), Some(1)), "{report:#}");
    assert_eq!(report["failure"]["message"], "timed out: exceeded 0.3s; cancelled");

    let config = format!("[policy.retry]\nbackoff_secs = 0\n[policy.timeout]\ncounts_as = \"infrastructure\"\n{local}");
    let (code, report, stderr) = run(workflow, &config, &[]);
    assert_eq!(code, Some(1), "{stderr}");
    assert_eq!((report["retries"].as_u64(), report["timeouts"].as_u64()), (Some(2), Some(3)), "{report:#}");
    assert!(report["failure"]["message"].as_str().unwrap().ends_with("(after 3 attempts)"), "{report:#}");
}

#[test]
fn an_unknown_timeout_rule_is_a_config_error() {
    let (code, stderr) = run_plain("", "[policy.timeout]\ncounts_as = \"nobody\"\n");
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("backplane.toml:2:13: error: unknown `counts_as` value `nobody`"), "{stderr}");
}

/// Four `std.shell` nodes asking for `resources` that each hold a lock
/// directory for 300 ms; a second holder at once fails at `mkdir`.
fn lock_holders(resources: &str) -> String {
    (0..4)
        .map(|i| {
            format!(
                "[[node]]\nid = \"holder-{i}\"\ntype = \"std.shell\"\nresources = {resources}\n\
                 settings = {{ command = \"mkdir lock.d && sleep 0.3 && rmdir lock.d\" }}\n\n"
            )
        })
        .collect()
}

#[test]
fn tasks_reserve_their_cpus_so_four_four_cpu_nodes_on_four_threads_run_one_at_a_time() {
    let config = "[backends.local]\ntype = \"local\"\nthreads = 4\n";
    let (code, report, stderr) = run(&lock_holders("{ cpus = 4 }"), config, &[]);
    assert_eq!(code, Some(0), "no two holders overlapped: {stderr}");
    assert_eq!(report["succeeded"], 4);
    // The check itself works: with one cpu each they overlap.
    let (code, _, stderr) = run(&lock_holders("{ cpus = 1 }"), config, &[]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("File exists"), "{stderr}");
}

#[test]
fn memory_is_compared_with_what_a_local_instance_offers() {
    let config = "[backends.local]\ntype = \"local\"\nthreads = 4\nmemory = \"1GiB\"\n";
    let (code, _, stderr) = run(&lock_holders("{ memory = \"768MiB\" }"), config, &[]);
    assert_eq!(code, Some(0), "two 768 MiB tasks never share 1 GiB: {stderr}");

    let too_big = "[[node]]\nid = \"big\"\ntype = \"std.noop\"\nresources = { memory = \"2GiB\" }\n";
    let (code, stderr) = run_plain(too_big, config);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("needs 2147483648 bytes of memory (has 1073741824)"), "{stderr}");
}

#[test]
fn a_local_instance_offers_custom_resources_and_shares_them() {
    let workflow = lock_holders("{ custom = { licence = 1 } }");
    let (code, stderr) = run_plain(&workflow, "[backends.local]\ntype = \"local\"\nthreads = 4\n");
    assert_eq!(code, Some(2), "without the setting no instance has a licence: {stderr}");
    assert!(stderr.contains("needs 1 licence (has 0)"), "{stderr}");

    let config = "[backends.local]\ntype = \"local\"\nthreads = 4\ncustom = { licence = 1 }\n";
    let (code, report, stderr) = run(&workflow, config, &[]);
    assert_eq!(code, Some(0), "one licence, one holder at a time: {stderr}");
    assert_eq!(report["succeeded"], 4);
}

#[test]
fn an_operator_declares_what_an_instance_offers_in_the_config() {
    // The declared cpu replaces the four the instance reports; the licence is added.
    let config = "[backends.local]\ntype = \"local\"\nthreads = 4\ncapacity = { cpus = 1, custom = { licence = 1 } }\n";
    let (code, report, stderr) = run(&lock_holders("{ cpus = 1 }"), config, &[]);
    assert_eq!(code, Some(0), "one declared cpu, one holder at a time: {stderr}");
    assert_eq!(report["succeeded"], 4);

    let (code, stderr) = run_plain(&lock_holders("{ custom = { licence = 2 } }"), config);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("needs 2 licence (has 1)"), "{stderr}");

    let typo = "[backends.local]\ntype = \"local\"\ncapacity = { cpu = 1 }\n";
    let (code, stderr) = run_plain("", typo);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("backplane.toml:3:14:") && stderr.contains("`cpu`"), "{stderr}");
}
