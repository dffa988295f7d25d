//! The `ray` backend against real Ray (`address = "local"`: a private
//! single-node Ray started by the plugin's driver): parity with `local`,
//! node panics, a node that crashes its Ray worker, cancellation.
//!
//! Ray comes from the venv `plugins/ray-like/setup-venv.sh` makes
//! (`target/ray-venv`, or `BACKPLANE_RAY_PYTHON`); `.ci/run` creates it.

use crate::fixtures::{bin_dir, ensure_plugins_built, run_json, workflow_with_config, workspace_root};
use std::{path::PathBuf, time::Duration};

fn ray_python() -> PathBuf {
    let python = std::env::var_os("BACKPLANE_RAY_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target/ray-venv/bin/python"));
    assert!(
        python.is_file(),
        "no Python with Ray at {}: run plugins/ray-like/setup-venv.sh (or set BACKPLANE_RAY_PYTHON)",
        python.display()
    );
    python
}

/// A config with `local` and a private Ray instance `ray` (the default).
fn config(extra: &str) -> String {
    format!(
        "default_backend = \"ray\"\n\n[backends.local]\ntype = \"local\"\n\n[backends.ray]\ntype = \"ray\"\npython = \"{}\"\nnum_cpus = 2\n{extra}\n",
        ray_python().display()
    )
}

#[test]
fn the_quickstart_gives_byte_identical_outputs_on_local_and_ray() {
    let quickstart = workspace_root().join("examples/quickstart");
    let outputs = |config: &str| {
        let dir = tempfile::tempdir().unwrap();
        std::fs::copy(quickstart.join("workflow.toml"), dir.path().join("workflow.toml")).unwrap();
        std::fs::create_dir_all(dir.path().join("docs")).unwrap();
        for entry in std::fs::read_dir(quickstart.join("docs")).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), dir.path().join("docs").join(entry.file_name())).unwrap();
        }
        std::fs::write(dir.path().join("backplane.toml"), config).unwrap();
        let (code, report, stderr) = run_json(dir.path(), &[]);
        assert_eq!(code, Some(0), "{stderr}\n{report:#}");
        let read = |name: &str| std::fs::read(dir.path().join("out").join(name)).unwrap();
        (read("word-frequencies.tsv"), read("word-frequencies.b3"), report)
    };
    let (local_tsv, local_b3, _) = outputs("[backends.local]\ntype = \"local\"\n");
    let (ray_tsv, ray_b3, report) = outputs(&config(""));
    assert_eq!(report["backends"][0]["instance"], "ray", "{report:#}");
    assert_eq!(report["backends"][0]["nodes"], 11, "{report:#}");
    assert!(!local_tsv.is_empty());
    assert_eq!(local_tsv, ray_tsv);
    assert_eq!(local_b3, ray_b3);
}

#[test]
fn a_panicking_node_is_a_node_error_and_a_crashing_one_is_retried_by_ray_then_fails() {
    let workflow = r#"
[[node]]
id = "panics"
type = "std.panic"
settings = { message = "boom in ray" }

[[node]]
id = "crashes"
type = "std.shell"
settings = { command = "echo attempt >> attempts.txt; kill -ABRT $PPID; sleep 5" }
"#;
    let dir = workflow_with_config(workflow, &config("max_retries = 2\n[policy]\nfailure = \"continue\""));
    let (code, report, stderr) = run_json(dir.path(), &[]);
    assert_eq!(code, Some(1), "{stderr}");
    let failure = |node: &str| {
        report["failures"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["node"] == node)
            .unwrap_or_else(|| panic!("{report:#}"))
            .clone()
    };
    let panicked = failure("panics");
    assert_eq!(panicked["kind"], "panicked", "{report:#}");
    assert!(panicked["message"].as_str().unwrap().contains("boom in ray"), "{report:#}");
    let crashed = failure("crashes");
    assert_eq!(crashed["kind"], "node-failed", "{report:#}");
    assert!(crashed["message"].as_str().unwrap().contains("the Ray worker died running it"), "{report:#}");
    // The first run and Ray's two retries, each in a new worker process.
    let attempts = std::fs::read_to_string(dir.path().join("attempts.txt")).unwrap();
    assert_eq!(attempts.lines().count(), 3, "{attempts}");
}

#[test]
fn interrupting_a_run_cancels_its_ray_tasks() {
    use std::io::{BufRead, BufReader};
    let workflow = "[[node]]\nid = \"long\"\ntype = \"std.sleep\"\nsettings = { ms = 60000 }\n";
    let dir = workflow_with_config(workflow, &config(""));
    ensure_plugins_built();
    let mut child = std::process::Command::new(bin_dir().join("backplane"))
        .current_dir(dir.path())
        .args(["run", "--json", "workflow.toml", "--config", "backplane.toml"])
        .env("BACKPLANE_LOG", "debug")
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
    let start = std::time::Instant::now();
    while !log.lock().unwrap().contains("ray driver up") {
        assert!(start.elapsed() < Duration::from_secs(90), "Ray did not start:\n{}", log.lock().unwrap());
        std::thread::sleep(Duration::from_millis(50));
    }
    // The task is submitted at once; give the Ray worker a moment to start it.
    std::thread::sleep(Duration::from_secs(2));
    let interrupted = std::time::Instant::now();
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let output = child.wait_with_output().unwrap();
    reader.join().unwrap();
    let stderr = log.lock().unwrap().clone();
    assert_eq!(output.status.code(), Some(130), "{stderr}");
    assert!(interrupted.elapsed() < Duration::from_secs(30), "took {:?}", interrupted.elapsed());
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["cancelled"], 1, "{report:#}");
    assert!(stderr.contains("ray.cancel of task"), "the driver cancelled the Ray task:\n{stderr}");
}

#[test]
fn custom_resources_route_to_the_ray_instance_that_has_them_and_infeasible_ones_fail_the_plan() {
    // The private instance offers `licence`; the plan sees it in the live capabilities.
    let workflow = "[[node]]\nid = \"licensed\"\ntype = \"std.noop\"\nresources = { custom = { licence = 1 } }\n";
    let dir = workflow_with_config(workflow, &config("resources = { licence = 2 }"));
    let (code, report, stderr) = run_json(dir.path(), &[]);
    assert_eq!(code, Some(0), "{stderr}\n{report:#}");
    assert_eq!(report["backends"][0]["instance"], "ray", "{report:#}");

    let infeasible = "[[node]]\nid = \"greedy\"\ntype = \"std.noop\"\nresources = { custom = { licence = 5 } }\n";
    let dir = workflow_with_config(infeasible, &config("resources = { licence = 2 }"));
    let (code, _, stderr) = run_json(dir.path(), &[]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("needs 5 licence (has 2)"), "{stderr}");
}
