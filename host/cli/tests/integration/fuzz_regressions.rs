//! Replays every input in `fuzz/regressions/<target>/` (crashes the fuzzers
//! found, minimized, plus the defects found by hand that they guard) through
//! the real code: workflows and configs through `backplane validate --json`
//! (which must answer with one JSON document and exit 0 or 2, never crash),
//! wire frames through the decoder (which must not panic, and must re-encode
//! what it decodes).

use crate::fixtures::{backplane, stderr_of, workspace_root};
use backplane_plugin_api::wire::{TaskMessage, read_result, write_result};
use std::path::PathBuf;

fn inputs(target: &str) -> Vec<PathBuf> {
    let dir = workspace_root().join("fuzz/regressions").join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{} holds no regression inputs", dir.display());
    files
}

/// `validate --json` on `workflow` with `config`: exits 0 or 2 with a JSON document.
fn validates_cleanly(workflow: &std::path::Path, config: &std::path::Path, what: &std::path::Path) {
    let dir = tempfile::tempdir().unwrap();
    let output = backplane()
        .current_dir(dir.path())
        .args(["validate", "--json"])
        .arg(workflow)
        .arg("--config")
        .arg(config)
        .output()
        .unwrap();
    let code = output.status.code();
    assert!(matches!(code, Some(0 | 2)), "{}: exit {code:?}\n{}", what.display(), stderr_of(&output));
    let json: serde_json::Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("{}: stdout is not JSON ({e})", what.display()));
    assert_eq!(json["valid"] == true, code == Some(0), "{}: {json}", what.display());
}

#[test]
fn workflow_regressions_are_reported_not_crashes() {
    let config = workspace_root().join("examples/quickstart/backplane.toml");
    for input in inputs("workflow") {
        validates_cleanly(&input, &config, &input);
    }
}

#[test]
fn config_regressions_are_reported_not_crashes() {
    let workflow = workspace_root().join("examples/quickstart/workflow.toml");
    for input in inputs("config") {
        validates_cleanly(&workflow, &input, &input);
    }
}

#[test]
fn wire_regressions_decode_or_fail_and_round_trip() {
    for input in inputs("wire") {
        let data = std::fs::read(&input).unwrap();
        if let Ok(task) = TaskMessage::read_from(&mut &data[..]) {
            let mut bytes = Vec::new();
            task.write_to(&mut bytes).unwrap();
            assert_eq!(TaskMessage::read_from(&mut &bytes[..]).unwrap(), task, "{}", input.display());
        }
        if let Ok(result) = read_result(&mut &data[..]) {
            let mut bytes = Vec::new();
            write_result(&mut bytes, &result).unwrap();
            assert_eq!(read_result(&mut &bytes[..]).unwrap().is_ok(), result.is_ok(), "{}", input.display());
        }
    }
}
