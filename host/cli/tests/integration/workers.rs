//! The `worker` backend against a real `nats-server -js` and real
//! `backplane worker` processes: sharing work, a worker killed mid-task,
//! NATS restarting mid-run, no worker for a pool, wrong credentials, a
//! 64 MiB payload through the object store, parity with `local`, and
//! per-item (`each`) tasks spread over the workers.

use crate::{
    fixtures::{json_errors, quickstart_outputs, run_json, workflow_with_config},
    nats::{NatsServer, USER, WorkerProcess, wait_until},
};
use std::{path::Path, time::Duration};

/// `n` independent `std.sleep` nodes of `ms` each, each with an output file.
fn sleepers(n: usize, ms: u64) -> String {
    let mut text = String::from("[workflow]\nname = \"sleepers\"\n");
    for i in 0..n {
        text.push_str(&format!(
            "\n[[node]]\nid = \"s{i}\"\ntype = \"std.sleep\"\nsettings = {{ ms = {ms} }}\ninputs = {{ in = \"seed.text\" }}\n"
        ));
        text.push_str(&format!("\n[[output]]\nfrom = \"s{i}.out\"\nto = \"out/s{i}.txt\"\n"));
    }
    text.push_str(
        "\n[[node]]\nid = \"seed\"\ntype = \"std.const\"\nsettings = { text = \"seed\" }\nbackend = \"local\"\n",
    );
    text
}

/// A config with a `local` instance and the worker instance `workers` as default.
fn config(nats: &NatsServer, extra: &str) -> String {
    format!(
        "default_backend = \"workers\"\n\n[backends.local]\ntype = \"local\"\n\n{}",
        nats.backend_table("workers", extra)
    )
}

fn assert_outputs(dir: &Path, n: usize) {
    for i in 0..n {
        let text = std::fs::read_to_string(dir.join(format!("out/s{i}.txt"))).unwrap();
        assert_eq!(text, "seed", "output of s{i}");
    }
}

/// The `N done` count from a worker's final log line.
fn done_count(log: &str) -> u64 {
    let line = log.lines().find(|l| l.contains("stopped:")).unwrap_or_else(|| panic!("no final counters in:\n{log}"));
    let after = &line[line.find("stopped:").unwrap() + "stopped:".len()..];
    after.split_whitespace().next().unwrap().parse().unwrap()
}

#[test]
fn a_workflow_runs_across_two_workers_and_both_take_part() {
    let nats = NatsServer::start();
    let mut a = WorkerProcess::start(&nats, "wa", "default", &["--concurrency", "2"]);
    let mut b = WorkerProcess::start(&nats, "wb", "default", &["--concurrency", "2"]);
    let dir = workflow_with_config(&sleepers(24, 40), &config(&nats, ""));
    let (code, report, stderr) = run_json(dir.path(), &[]);
    assert_eq!(code, Some(0), "{stderr}\n{report:#}");
    assert_eq!(report["succeeded"], 25);
    assert_outputs(dir.path(), 24);
    // Stopping gently exits 0 and reports the counters.
    assert_eq!(a.terminate(), Some(0), "{}", a.log());
    assert_eq!(b.terminate(), Some(0), "{}", b.log());
    let (done_a, done_b) = (done_count(&a.log()), done_count(&b.log()));
    assert!(done_a > 0 && done_b > 0, "both workers take part: {done_a} and {done_b}");
    assert_eq!(done_a + done_b, 24, "every task ran once");
}

#[test]
fn a_task_of_a_worker_killed_mid_run_is_redelivered_and_completes_once() {
    let nats = NatsServer::start();
    let mut victim = WorkerProcess::start(&nats, "victim", "default", &["--concurrency", "1"]);
    // Only the victim runs at first, so it certainly holds a task.
    let dir = workflow_with_config(&sleepers(3, 1500), &config(&nats, "redelivery_after_secs = 1"));
    let run = {
        let dir = dir.path().to_owned();
        std::thread::spawn(move || run_json(&dir, &[]))
    };
    victim.wait_for_log("running task", Duration::from_secs(30));
    let survivor = WorkerProcess::start(&nats, "survivor", "default", &["--concurrency", "3"]);
    victim.kill_9();
    let (code, report, stderr) = run.join().unwrap();
    assert_eq!(code, Some(0), "{stderr}\n{report:#}");
    assert_eq!(report["succeeded"], 4);
    assert_eq!(report["failed"], 0);
    assert_outputs(dir.path(), 3);
    // The survivor ran all three, the victim's one included (delivery 2).
    assert_eq!(survivor.tasks_started(), 3, "{}", survivor.log());
    assert!(survivor.log().contains("delivery 2"), "{}", survivor.log());
}

#[test]
fn sigterm_drains_a_worker_and_its_unfinished_task_is_redelivered() {
    let nats = NatsServer::start();
    let mut leaving =
        WorkerProcess::start(&nats, "leaving", "default", &["--concurrency", "1", "--drain-timeout", "0.3"]);
    let dir = workflow_with_config(&sleepers(1, 3000), &config(&nats, ""));
    let run = {
        let dir = dir.path().to_owned();
        std::thread::spawn(move || run_json(&dir, &[]))
    };
    leaving.wait_for_log("running task", Duration::from_secs(30));
    let staying = WorkerProcess::start(&nats, "staying", "default", &[]);
    assert_eq!(leaving.terminate(), Some(0), "{}", leaving.log());
    assert!(leaving.log().contains("releasing 1 unfinished tasks for redelivery"), "{}", leaving.log());
    let (code, report, stderr) = run.join().unwrap();
    assert_eq!(code, Some(0), "{stderr}\n{report:#}");
    assert_outputs(dir.path(), 1);
    assert!(staying.log().contains("delivery 2"), "{}", staying.log());
}

#[test]
fn nats_restarting_mid_run_loses_and_duplicates_nothing() {
    let mut nats = NatsServer::start();
    let _a = WorkerProcess::start(&nats, "wa", "default", &["--concurrency", "2"]);
    let _b = WorkerProcess::start(&nats, "wb", "default", &["--concurrency", "2"]);
    let dir = workflow_with_config(&sleepers(20, 300), &config(&nats, "redelivery_after_secs = 2"));
    let run = {
        let dir = dir.path().to_owned();
        std::thread::spawn(move || run_json(&dir, &[]))
    };
    std::thread::sleep(Duration::from_millis(700));
    nats.kill();
    std::thread::sleep(Duration::from_millis(1000));
    nats.restart();
    let (code, report, stderr) = run.join().unwrap();
    let nodes = report["nodes"].as_u64().unwrap();
    let succeeded = report["succeeded"].as_u64().unwrap();
    // Every node ends exactly one way.
    let ended: u64 = ["succeeded", "failed", "cancelled", "not_started", "skipped", "abandoned"]
        .iter()
        .map(|k| report[k].as_u64().unwrap())
        .sum();
    assert_eq!(ended, nodes, "{report:#}");
    if code == Some(0) {
        assert_eq!(succeeded, 21);
        assert_outputs(dir.path(), 20);
    } else {
        // Or it fails, and then with the infrastructure error.
        let failures = report["failures"].as_array().unwrap();
        assert!(!failures.is_empty(), "{stderr}");
        assert!(failures.iter().all(|f| f["kind"] == "infrastructure"), "{report:#}");
    }
}

#[test]
fn no_worker_for_the_pool_fails_within_the_deadline() {
    let nats = NatsServer::start();
    // A worker exists, but for another pool.
    let _other = WorkerProcess::start(&nats, "elsewhere", "other", &[]);
    let dir = workflow_with_config(
        &sleepers(1, 10),
        &config(
            &nats,
            "pool = \"empty\"\nno_worker_timeout_secs = 1\n[policy]\nretry = { infrastructure_attempts = 1 }",
        ),
    );
    let started = std::time::Instant::now();
    let (code, report, stderr) = run_json(dir.path(), &[]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(20), "took {:?}", started.elapsed());
    let failure = &report["failures"][0];
    assert_eq!(failure["kind"], "infrastructure", "{report:#}");
    let message = failure["message"].as_str().unwrap();
    assert!(message.contains("no worker can run node type `std.sleep`"), "{message}");
    assert!(message.contains("no worker of pool `empty` is alive"), "{message}");
    assert!(message.contains("backplane worker --nats <url> --pool empty"), "{message}");
}

#[test]
fn a_worker_refuses_node_types_it_may_not_run_with_a_clear_error() {
    let nats = NatsServer::start();
    let _w = WorkerProcess::start(&nats, "noop-only", "default", &["--node-types", "std.noop"]);
    let dir = workflow_with_config(
        &sleepers(1, 10),
        &config(&nats, "no_worker_timeout_secs = 2\n[policy]\nretry = { infrastructure_attempts = 1 }"),
    );
    let (code, report, stderr) = run_json(dir.path(), &[]);
    assert_eq!(code, Some(1), "{stderr}");
    let failure = &report["failures"][0];
    assert_eq!(failure["kind"], "unsupported", "{report:#}");
    let message = failure["message"].as_str().unwrap();
    assert!(message.contains("worker noop-only may not run node type `std.sleep`"), "{message}");
}

#[test]
fn wrong_credentials_are_a_clear_error_on_both_sides() {
    let nats = NatsServer::start();
    // Host side: the instance cannot be created.
    let bad = format!(
        "default_backend = \"workers\"\n[backends.workers]\ntype = \"worker\"\nnats = \"{}\"\nuser = \"{USER}\"\npassword = \"wrong\"\n",
        nats.url()
    );
    let dir = workflow_with_config(&sleepers(1, 1), &bad);
    let (code, report, stderr) = run_json(dir.path(), &[]);
    assert_eq!(code, Some(2), "{stderr}");
    let errors = json_errors(&report);
    assert!(errors.contains("backplane.toml:2:1"), "{report:#}");
    assert!(errors.contains("rejected the credentials (authorization violation)"), "{report:#}");

    // Worker side: a wrong password...
    let mut wrong = WorkerProcess::spawn(&nats, "w", "default", &[], &[("BACKPLANE_NATS_PASSWORD", "wrong")], true);
    assert_eq!(wrong.wait(Duration::from_secs(20)), Some(3));
    assert!(wrong.log().contains("rejected the credentials (authorization violation)"), "{}", wrong.log());
    // ...no credentials at all, refused before connecting...
    let mut none = WorkerProcess::spawn(&nats, "w", "default", &[], &[], false);
    assert_eq!(none.wait(Duration::from_secs(20)), Some(2));
    assert!(none.log().contains("no NATS credentials given"), "{}", none.log());
    // ...and `--insecure` does not get past a server that wants them.
    let mut insecure = WorkerProcess::spawn(&nats, "w", "default", &["--insecure"], &[], false);
    assert_eq!(insecure.wait(Duration::from_secs(20)), Some(3));
    assert!(insecure.log().contains("authorization violation"), "{}", insecure.log());
}

#[test]
fn a_64_mib_payload_round_trips_through_the_object_store() {
    let nats = NatsServer::start();
    let _w = WorkerProcess::start(&nats, "w", "default", &[]);
    // 64 MiB made on the host, echoed by a worker (input and output both go
    // through the object store: a NATS message holds at most 1 MiB), hashed
    // on the host before and after.
    let workflow = r#"
[workflow]
name = "large"

[[node]]
id = "make"
type = "std.shell"
backend = "local"
settings = { command = "head -c 67108864 /dev/urandom" }

[[node]]
id = "echo"
type = "std.shell"
settings = { command = "cat" }
inputs = { stdin = "make.stdout" }

[[node]]
id = "before"
type = "std.hash"
backend = "local"
inputs = { data = "make.stdout" }

[[node]]
id = "after"
type = "std.hash"
backend = "local"
inputs = { data = "echo.stdout" }

[[output]]
from = "before.digest"
to = "out/before.b3"

[[output]]
from = "after.digest"
to = "out/after.b3"
"#;
    let dir = workflow_with_config(workflow, &config(&nats, ""));
    let (code, report, stderr) = run_json(dir.path(), &[]);
    assert_eq!(code, Some(0), "{stderr}\n{report:#}");
    let before = std::fs::read_to_string(dir.path().join("out/before.b3")).unwrap();
    let after = std::fs::read_to_string(dir.path().join("out/after.b3")).unwrap();
    assert_eq!(before.trim().len(), 64, "{before}");
    assert_eq!(before, after);
}

#[test]
fn the_quickstart_gives_byte_identical_outputs_on_local_and_worker() {
    let nats = NatsServer::start();
    let _a = WorkerProcess::start(&nats, "wa", "default", &[]);
    let _b = WorkerProcess::start(&nats, "wb", "default", &["--isolation", "process"]);
    let shared = tempfile::tempdir().unwrap();
    let cache = format!("\n[cache]\ndir = \"{}\"\n", shared.path().display());
    let (local_tsv, local_b3, _) = quickstart_outputs("[backends.local]\ntype = \"local\"\n");
    let (worker_tsv, worker_b3, report) = quickstart_outputs(&format!("{}{cache}", config(&nats, "")));
    assert_eq!(report["backends"][0]["instance"], "workers", "{report:#}");
    assert_eq!(report["backends"][0]["nodes"], 11, "{report:#}");
    assert!(!local_tsv.is_empty());
    assert_eq!(local_tsv, worker_tsv);
    assert_eq!(local_b3, worker_b3);
    // Computed on the workers, a hit on `local`: keys never name the backend.
    let (tsv, b3, report) = quickstart_outputs(&format!("[backends.local]\ntype = \"local\"\n{cache}"));
    assert_eq!((report["cached"].as_u64(), report["executed"].as_u64()), (Some(10), Some(1)), "{report:#}");
    assert_eq!((tsv, b3), (worker_tsv, worker_b3));
}

#[test]
fn live_capabilities_and_health_follow_the_workers_present() {
    let nats = NatsServer::start();
    let dir = workflow_with_config(&sleepers(1, 1), &config(&nats, ""));
    let backends = |dir: &Path| {
        let output = crate::fixtures::backplane()
            .current_dir(dir)
            .args(["backends", "--json", "--config", "backplane.toml"])
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", crate::fixtures::stderr_of(&output));
        let value: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        value["instances"].as_array().unwrap().iter().find(|i| i["name"] == "workers").unwrap().clone()
    };
    let empty = backends(dir.path());
    assert_eq!(empty["health"], "degraded", "{empty:#}");
    assert!(empty["health_message"].as_str().unwrap().contains("no live workers"), "{empty:#}");
    assert_eq!(empty["config"]["password"], "<redacted>", "secrets are not shown");
    let _a = WorkerProcess::start(&nats, "wa", "default", &["--concurrency", "3", "--tags", "gpu,big"]);
    let _b = WorkerProcess::start(&nats, "wb", "default", &["--concurrency", "2", "--tags", "gpu"]);
    wait_until(Duration::from_secs(10), "both workers in `backplane backends`", || {
        backends(dir.path())["capabilities"]["max_concurrency"] == 5
    });
    let live = backends(dir.path());
    assert_eq!(live["health"], "up", "{live:#}");
    assert!(live["health_message"].as_str().unwrap().contains("2 workers: wa (3 slots"), "{live:#}");
    assert_eq!(live["capabilities"]["tags"], serde_json::json!(["gpu"]), "{live:#}");
}

#[test]
fn the_worker_backend_passes_the_conformance_suite() {
    let nats = NatsServer::start();
    let _a = WorkerProcess::start(&nats, "wa", "default", &["--concurrency", "4"]);
    let _b = WorkerProcess::start(&nats, "wb", "default", &["--concurrency", "4"]);
    let config = serde_json::json!({ "nats": nats.url(), "user": USER, "password": crate::nats::PASSWORD });
    let output = crate::fixtures::backplane()
        .arg("verify")
        .arg(crate::fixtures::dylib("backplane_worker"))
        .arg("--backend-config")
        .arg(format!("worker={config}"))
        .output()
        .unwrap();
    let stdout = crate::fixtures::stdout_of(&output);
    assert!(output.status.success(), "{stdout}{}", crate::fixtures::stderr_of(&output));
    assert!(stdout.contains("15 passed, 0 failed, 0 skipped"), "{stdout}");
}

#[test]
fn per_item_tasks_run_across_two_workers_and_are_gathered_in_item_order() {
    let nats = NatsServer::start();
    let mut a = WorkerProcess::start(&nats, "wa", "default", &["--concurrency", "2"]);
    let mut b = WorkerProcess::start(&nats, "wb", "default", &["--concurrency", "2"]);
    let text: String = (0..40).map(|i| format!("line {i}\n")).collect();
    // The producer streams, so it runs on `local`; every item is a task on the workers.
    let workflow = format!(
        "[workflow]\nname = \"per-item-on-workers\"\n\n\
         [[node]]\nid = \"text\"\ntype = \"std.const\"\nsettings = {{ text = {text:?} }}\nbackend = \"local\"\n\n\
         [[node]]\nid = \"split\"\ntype = \"std.split\"\ninputs = {{ text = \"text.text\" }}\n\n\
         [[node]]\nid = \"each\"\ntype = \"std.sleep\"\nsettings = {{ ms = 30 }}\n\
         inputs = {{ in = {{ each = \"split.items\", window = 8 }} }}\n\n\
         [[output]]\nfrom = \"each.out\"\nto = \"out.txt\"\n"
    );
    let dir = workflow_with_config(&workflow, &config(&nats, ""));
    let (code, report, stderr) = run_json(dir.path(), &[]);
    assert_eq!(code, Some(0), "{stderr}\n{report:#}");
    assert_eq!(report["item_tasks"], 40, "{report:#}");
    assert_eq!(std::fs::read_to_string(dir.path().join("out.txt")).unwrap(), text);
    assert_eq!(a.terminate(), Some(0), "{}", a.log());
    assert_eq!(b.terminate(), Some(0), "{}", b.log());
    let (done_a, done_b) = (done_count(&a.log()), done_count(&b.log()));
    assert!(done_a > 0 && done_b > 0, "both workers take part: {done_a} and {done_b}");
    assert_eq!(done_a + done_b, 40, "every item ran once, on a worker");
}
