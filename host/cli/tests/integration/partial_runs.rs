//! Partial runs: `--select GLOB` and `--until NODE` run some nodes and what
//! they need; outputs of the others are not written, and the run says so.

use crate::fixtures::{backplane, stderr_of, stdout_of, workflow_dir};

/// Two branches from one source; each writes an output.
const BRANCHES: &str = r#"
[[node]]
id = "source"
type = "std.const"
settings = { text = "b\na\nc\n" }

[[node]]
id = "sorted"
type = "std.sort"
inputs = { text = "source.text" }

[[node]]
id = "sorted-digest"
type = "std.hash"
inputs = { data = "sorted.text" }

[[node]]
id = "count"
type = "std.line_count"
inputs = { text = "source.text" }

[[output]]
from = "sorted.text"
to = "out/sorted.txt"

[[output]]
from = "sorted-digest.digest"
to = "out/sorted.b3"

[[output]]
from = "count.count"
to = "out/count.txt"
"#;

#[test]
fn until_runs_a_node_and_its_ancestors_and_says_what_was_not_written() {
    let wf = workflow_dir(BRANCHES);
    let output = backplane()
        .args(["run", "workflow.toml", "--until", "sorted", "--no-cache"])
        .current_dir(wf.path())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
    assert_eq!(std::fs::read_to_string(wf.path().join("out/sorted.txt")).unwrap(), "a\nb\nc\n");
    assert!(!wf.path().join("out/sorted.b3").exists());
    assert!(!wf.path().join("out/count.txt").exists());
    let stderr = stderr_of(&output);
    assert!(stderr.contains("2/2 nodes succeeded"), "{stderr}");
    let partial: Vec<&str> = stderr.lines().skip_while(|l| !l.contains("partial run")).collect();
    insta::assert_snapshot!(partial.join("\n"), @r"
      partial run (--until sorted): 2 of 4 nodes
        not run: sorted-digest, count
        not written: out/sorted.b3 (from sorted-digest.digest, which does not run)
        not written: out/count.txt (from count.count, which does not run)
    ");
}

#[test]
fn select_globs_add_up_and_plan_shows_what_would_run() {
    let wf = workflow_dir(BRANCHES);
    let output = backplane()
        .args(["plan", "workflow.toml", "--select", "sorted-*", "--select", "cou?t"])
        .current_dir(wf.path())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
    insta::assert_snapshot!(stdout_of(&output), @r"
    partial run (--select sorted-* --select cou?t): 4 of 4 nodes
    NODE           TYPE            BACKEND  REASON
    source         std.const       local    default backend
    sorted         std.sort        local    default backend
    sorted-digest  std.hash        local    default backend
    count          std.line_count  local    default backend
    ");
    let output = backplane()
        .args(["run", "workflow.toml", "--json", "--select", "count", "--no-cache"])
        .current_dir(wf.path())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["nodes"], 2);
    assert_eq!(report["partial"]["selected"], 2);
    assert_eq!(report["partial"]["nodes"], 4);
    assert_eq!(report["partial"]["not_run"], serde_json::json!(["sorted", "sorted-digest"]));
    assert_eq!(report["partial"]["not_written"].as_array().map(Vec::len), Some(2));
    assert_eq!(std::fs::read_to_string(wf.path().join("out/count.txt")).unwrap(), "3\n");
    let record = std::fs::read_to_string(report["record"].as_str().unwrap()).unwrap();
    let header: serde_json::Value = serde_json::from_slice(record.lines().next().unwrap().as_bytes()).unwrap();
    assert_eq!(header["selection"], "--select count");
}

#[test]
fn a_selection_matching_nothing_is_an_error_with_the_nodes_named() {
    let wf = workflow_dir(BRANCHES);
    let output = backplane()
        .args(["run", "workflow.toml", "--select", "srt*", "--select", "[", "--until", "cuont"])
        .current_dir(wf.path())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    insta::assert_snapshot!(stderr_of(&output), @r"
    --select [: error: not a glob: unclosed character class; missing ']'
      help: use `*`, `?` and `[...]` over node ids, e.g. `--select 'count*'`
    --select srt*: error: matches no node
      help: nodes: source, sorted, sorted-digest, count
    --until cuont: error: the workflow has no node `cuont`
      help: did you mean `count`? nodes: source, sorted, sorted-digest, count
    3 errors
    ");
}

#[test]
fn a_partial_run_still_checks_the_whole_workflow() {
    let broken = BRANCHES.replace("type = \"std.line_count\"", "type = \"std.line_cuont\"");
    let wf = workflow_dir(&broken);
    let output =
        backplane().args(["run", "workflow.toml", "--until", "sorted"]).current_dir(wf.path()).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = stderr_of(&output);
    assert!(stderr.contains("std.line_cuont"), "an unselected node's error is still reported: {stderr}");
    assert!(!wf.path().join("out/sorted.txt").exists(), "nothing ran");
}
