//! `backplane verify` on our plugins, the third-party examples (built on
//! their own, outside this workspace) and deliberately broken fixtures.

use crate::fixtures::{backplane, dylib, stderr_of, workspace_root};
use serde_json::Value;
use std::{path::PathBuf, sync::OnceLock};

/// Builds `examples/` with plain `cargo build`, as a third party would.
pub(crate) fn example(stem: &str) -> PathBuf {
    static BUILT: OnceLock<()> = OnceLock::new();
    let examples = workspace_root().join("examples");
    BUILT.get_or_init(|| {
        let output = std::process::Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .current_dir(&examples)
            .args(["build", "--offline", "-j2"])
            .env_remove("CARGO_TARGET_DIR")
            .output()
            .expect("cargo runs");
        assert!(output.status.success(), "building examples/ failed:\n{}", stderr_of(&output));
    });
    examples.join("target/debug").join(format!("lib{stem}.{}", std::env::consts::DLL_EXTENSION))
}

fn verify(plugin: &std::path::Path, extra: &[&str]) -> (Option<i32>, Value) {
    // Broken fixtures hang on purpose; a short timeout keeps their checks quick.
    let output = backplane().arg("verify").arg(plugin).args(["--json", "--timeout", "5"]).args(extra).output().unwrap();
    let report =
        serde_json::from_slice(&output.stdout).unwrap_or_else(|_| panic!("no JSON report: {}", stderr_of(&output)));
    (output.status.code(), report)
}

/// (subject, check, status, detail) of one check.
type Row = (String, String, String, String);

/// (subject, check, status, detail) of every check.
fn checks(report: &Value) -> Vec<Row> {
    report["subjects"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| {
            s["checks"].as_array().unwrap().iter().map(move |c| {
                (
                    s["name"].as_str().unwrap().to_owned(),
                    c["name"].as_str().unwrap().to_owned(),
                    c["status"].as_str().unwrap().to_owned(),
                    c["detail"].as_str().unwrap().to_owned(),
                )
            })
        })
        .collect()
}

fn assert_all_pass(report: &Value) {
    let failing: Vec<_> = checks(report).into_iter().filter(|c| c.2 != "pass").collect();
    assert!(failing.is_empty(), "{failing:#?}");
}

#[test]
fn our_local_backend_passes() {
    let (code, report) = verify(&dylib("backplane_local"), &[]);
    assert_all_pass(&report);
    assert_eq!(code, Some(0));
    assert_eq!(report["passed"], 15);
}

#[test]
fn the_standard_node_library_passes() {
    let (code, report) = verify(&dylib("backplane_std_nodes"), &[]);
    assert_all_pass(&report);
    assert_eq!(code, Some(0));
    assert!(checks(&report).iter().any(|c| c.0 == "std.shell" && c.1 == "settings-schema"));
}

#[test]
fn the_example_node_plugin_passes() {
    let (code, report) = verify(&example("backplane_example_nodes"), &[]);
    assert_all_pass(&report);
    assert_eq!(code, Some(0));
    let subjects: Vec<String> = checks(&report).into_iter().map(|c| c.0).collect();
    assert!(subjects.contains(&"example.rot13".to_owned()) && subjects.contains(&"example.number_stats".to_owned()));
}

#[test]
fn the_example_process_isolation_backend_passes() {
    let (code, report) =
        verify(&example("backplane_example_isolated"), &["--backend-config", r#"{"max_parallel": 2}"#]);
    assert_all_pass(&report);
    assert_eq!(code, Some(0));
    // Every task really ran in a child process: the backend declares process isolation.
    let caps = checks(&report).into_iter().find(|c| c.1 == "capabilities").unwrap();
    assert!(caps.3.contains("isolation process"), "{caps:?}");
}

/// The checks after `parity`, which the suite skips once the backend has
/// answered nothing usable.
const LATER_TASK_CHECKS: [&str; 7] = [
    "concurrent",
    "node-failure",
    "node-panic",
    "alive-after-panic",
    "large-payload",
    "cancel-running",
    "cancel-queued",
];

/// The `faulty` backend's checks with the config `mode_config`.
fn faulty_checks(mode_config: &str, extra: &[&str]) -> (Option<i32>, Vec<Row>) {
    let config = format!("faulty={mode_config}");
    let mut args = vec!["--backend-config", config.as_str()];
    args.extend_from_slice(extra);
    let (code, report) = verify(&dylib("backplane_test_faulty"), &args);
    (code, checks(&report).into_iter().filter(|c| c.0 == "faulty").collect())
}

fn find<'c>(checks: &'c [Row], name: &str) -> &'c Row {
    checks.iter().find(|c| c.1 == name).unwrap_or_else(|| panic!("no `{name}` check: {checks:#?}"))
}

#[test]
fn a_backend_that_drops_sinks_fails_with_reasons_and_stops_early() {
    let (code, faulty) = faulty_checks(r#"{"mode":"drop-sink"}"#, &[]);
    assert_eq!(code, Some(1));
    let parity = find(&faulty, "parity");
    assert_eq!(parity.2, "fail");
    assert!(parity.3.contains("the sink was dropped without a result"), "{parity:?}");
    // Three lost sinks in a row and nothing else: the rest would only repeat it.
    for name in LATER_TASK_CHECKS {
        let check = find(&faulty, name);
        assert_eq!(
            (check.2.as_str(), check.3.as_str()),
            ("skip", "not run: all 6 tasks so far had their sinks dropped without a result (see `parity`)")
        );
    }
}

#[test]
fn a_panic_in_submit_is_reported_with_its_message() {
    let (code, faulty) = faulty_checks(r#"{"mode":"panic-in-submit"}"#, &[]);
    assert_eq!(code, Some(1));
    assert_eq!(find(&faulty, "create-valid").2, "pass", "{faulty:#?}");
    let parity = find(&faulty, "parity");
    assert_eq!(parity.2, "fail");
    assert!(
        parity.3.starts_with("std.const: the sink was dropped without a result inside `submit`: backend submit failed: panicked: faulty backend panics in submit (node conformance-1)"),
        "{parity:?}"
    );
    assert_eq!(find(&faulty, "concurrent").2, "skip", "{faulty:#?}");
}

#[test]
fn a_backend_that_never_completes_gets_its_report_within_two_minutes_at_default_settings() {
    let output = backplane()
        .arg("verify")
        .arg(dylib("backplane_test_faulty"))
        .args(["--json", "--backend-config", r#"faulty={"mode":"never-complete"}"#, "--backend-config", "sloppy={}"])
        .timeout(std::time::Duration::from_secs(180))
        .output()
        .unwrap();
    let report: Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|_| panic!("{}", stderr_of(&output)));
    let faulty: Vec<_> = checks(&report).into_iter().filter(|c| c.0 == "faulty").collect();
    // The plugin's other backend, `sloppy`, takes its own time; this one's is in the report.
    let subjects = report["subjects"].as_array().unwrap();
    let seconds = subjects.iter().find(|s| s["name"] == "faulty").unwrap()["seconds"].as_f64().unwrap();
    assert!(seconds < 120.0, "the never-completing backend's checks took {seconds} s: {faulty:#?}");
    let parity = find(&faulty, "parity");
    assert_eq!(parity.2, "fail");
    assert!(
        parity.3.starts_with("std.const: no result within 60s (a hang); std.noop: no result within 60s"),
        "{parity:?}"
    );
    for name in LATER_TASK_CHECKS {
        let check = find(&faulty, name);
        assert_eq!(check.2, "skip", "{check:?}");
        assert!(check.3.starts_with("not run: the backend completed none of its tasks within 60s"), "{check:?}");
    }
    assert_eq!(find(&faulty, "shutdown-in-flight").2, "fail");
}

#[test]
fn a_slow_but_correct_backend_passes_where_a_whole_batch_outlasts_the_timeout() {
    // One task at a time, one start per 15 ms: the 500 concurrent tasks take
    // about 7.5 s, past the 5 s `--timeout`, which bounds each task's wait.
    let (code, faulty) = faulty_checks(r#"{"mode":"slow","delay_ms":15}"#, &[]);
    let failing: Vec<_> = faulty.iter().filter(|c| c.2 != "pass").collect();
    assert!(failing.is_empty(), "{failing:#?}");
    assert!(find(&faulty, "concurrent").3.starts_with("500 concurrent tasks completed exactly once"));
    assert_eq!(code, Some(1), "sloppy still fails its own check");
}

#[test]
fn a_late_answer_is_blamed_on_its_own_check_never_on_the_next_one() {
    // Task 1 (the first parity sample) answers 0.3 s after the 2 s the check
    // waits, while the next checks run; every other task answers at once.
    let output = backplane()
        .arg("verify")
        .arg(dylib("backplane_test_faulty"))
        .args(["--json", "--timeout", "2", "--backend-config", r#"faulty={"mode":"late-task-one","delay_ms":2300}"#])
        .output()
        .unwrap();
    let report: Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|_| panic!("{}", stderr_of(&output)));
    let code = output.status.code();
    assert_eq!(code, Some(1));
    let faulty: Vec<_> = checks(&report).into_iter().filter(|c| c.0 == "faulty").collect();
    let status = |name: &str| faulty.iter().find(|c| c.1 == name).unwrap_or_else(|| panic!("{name}: {faulty:#?}"));
    let parity = status("parity");
    assert_eq!(parity.2, "fail");
    assert!(parity.3.starts_with("std.const: no result within 2s (a hang)") && !parity.3.contains("got"), "{parity:?}");
    for name in ["concurrent", "node-failure", "node-panic", "alive-after-panic", "large-payload"] {
        assert_eq!(status(name).2, "pass", "{name} was blamed for task 1's late answer: {faulty:#?}");
    }
    let strays = status("stray-completions");
    assert_eq!(strays.2, "pass", "{strays:?}");
    assert!(strays.3.starts_with("1 late completions (tasks 1)"), "{strays:?}");
}

#[test]
fn a_backend_that_ignores_its_config_schema_fails() {
    let (code, report) =
        verify(&dylib("backplane_test_faulty"), &["--backend-config", r#"faulty={"mode":"complete"}"#]);
    assert_eq!(code, Some(1));
    let sloppy = checks(&report).into_iter().find(|c| c.0 == "sloppy" && c.1 == "create-invalid").unwrap();
    assert_eq!(sloppy.2, "fail");
    assert!(sloppy.3.contains("which its own schema forbids"), "{sloppy:?}");
    // `sloppy` also runs nodes with `&|| false` as their cancel flag: it ignores cancellation.
    let cancel = checks(&report).into_iter().find(|c| c.0 == "sloppy" && c.1 == "cancel-running").unwrap();
    assert_eq!(cancel.2, "fail");
    assert_eq!(cancel.3, "a cancelled running task never completed: only 0 of 1 tasks completed within 5s (a hang)");
}

#[test]
fn a_file_that_is_not_a_plugin_fails_to_verify() {
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join(format!("libjunk.{}", std::env::consts::DLL_EXTENSION));
    std::fs::write(&junk, b"junk").unwrap();
    let (code, report) = verify(&junk, &[]);
    assert_eq!(code, Some(1));
    assert_eq!(report["loaded"], false);
    assert!(checks(&report)[0].3.contains("not a Backplane plugin"));
}

#[test]
fn the_example_backend_runs_a_workflow_and_contains_a_crashing_node() {
    let dir = workspace_root().join("examples/custom-backend");
    let plugins = example("backplane_example_isolated").parent().unwrap().to_path_buf();
    let run = |workflow: &str| {
        backplane()
            .current_dir(&dir)
            .arg("--plugin-dir")
            .arg(&plugins)
            // Run in place, so uncached: the example must run on its backend every time.
            .args(["run", "--no-cache", workflow, "--config", "backplane.toml"])
            .output()
            .unwrap()
    };
    let ok = run("workflow.toml");
    let stderr = stderr_of(&ok);
    assert_eq!(ok.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("3/3 nodes succeeded") && stderr.contains("isolated (isolated): 3 nodes"), "{stderr}");
    assert!(String::from_utf8_lossy(&ok.stdout).contains("the\t3\n"), "the word counts are printed");

    let crash = run("crash.toml");
    let stderr = stderr_of(&crash);
    assert_eq!(crash.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("node `crash` (std.shell) failed on backend `isolated`") && stderr.contains("signal 9"),
        "{stderr}"
    );
}

#[test]
fn a_single_threaded_local_instance_passes_too() {
    let (code, report) = verify(&dylib("backplane_local"), &["--backend-config", r#"{"threads": 1}"#]);
    assert_all_pass(&report);
    assert_eq!(code, Some(0));
}

#[test]
fn a_backend_that_works_inside_submit_fails_promptly() {
    let started = std::time::Instant::now();
    let (code, report) = verify(&dylib("backplane_test_faulty"), &["--backend-config", r#"faulty={"mode":"inline"}"#]);
    assert_eq!(code, Some(1));
    let prompt = checks(&report).into_iter().find(|c| c.0 == "faulty" && c.1 == "submit-returns").unwrap();
    assert_eq!(prompt.2, "fail", "{prompt:?}");
    assert!(prompt.3.contains("did not return within"), "{prompt:?}");
    // The long-task checks were skipped rather than waited through (sloppy's cancel checks take ~20 s).
    assert!(checks(&report).iter().any(|c| c.0 == "faulty" && c.1 == "cancel" && c.2 == "skip"));
    assert!(started.elapsed() < std::time::Duration::from_secs(90), "{:?}", started.elapsed());
}

#[test]
fn a_schema_that_is_not_json_schema_fails_its_check_with_the_place_named() {
    let output = backplane()
        .arg("verify")
        .arg(dylib("backplane_test_faulty"))
        .args(["--json", "--timeout", "5", "--backend-config", r#"faulty={"mode":"complete"}"#])
        .env("BACKPLANE_TEST_BAD_SCHEMAS", "1")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    let find = |subject: &str, check: &str| {
        checks(&report).into_iter().find(|c| c.0 == subject && c.1 == check).unwrap_or_else(|| panic!("{report:#}"))
    };
    let config = find("sloppy", "config-schema");
    assert_eq!(config.2, "fail");
    assert!(config.3.starts_with("the factory's config schema is not valid JSON Schema at `/type`: "), "{config:?}");
    let settings = find("test.bad_schema", "settings-schema");
    assert_eq!(settings.2, "fail");
    assert!(settings.3.starts_with("the settings schema is not valid JSON Schema at `/properties`: "), "{settings:?}");
}
