//! Every class of workflow error, with file:line:column, snapshot-tested
//! through `backplane validate`.

use crate::fixtures::{backplane, stderr_of};

/// Validates `workflow` (as `workflow.toml` in a temp dir, run from that
/// dir so paths in messages are stable) and returns stderr.
fn validate(workflow: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("workflow.toml"), workflow).unwrap();
    let output = backplane().current_dir(dir.path()).args(["validate", "workflow.toml"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2), "invalid workflows exit with 2:\n{}", stderr_of(&output));
    stderr_of(&output)
}

#[test]
fn unknown_node_type() {
    insta::assert_snapshot!(validate(
        r#"
[[node]]
id = "count"
type = "std.word_cont"
"#
    ));
}

#[test]
fn unknown_input_port_and_unknown_source() {
    insta::assert_snapshot!(validate(
        r#"
[[node]]
id = "text"
type = "std.const"
settings = { text = "a b" }

[[node]]
id = "count"
type = "std.word_count"
inputs = { txt = "text.text", text = "txet.text" }
"#
    ));
}

#[test]
fn unknown_output_port_of_the_source() {
    insta::assert_snapshot!(validate(
        r#"
[[node]]
id = "text"
type = "std.const"

[[node]]
id = "count"
type = "std.word_count"
inputs = { text = "text.words" }
"#
    ));
}

#[test]
fn missing_required_input() {
    insta::assert_snapshot!(validate(
        r#"
[[node]]
id = "count"
type = "std.word_count"
"#
    ));
}

#[test]
fn settings_that_violate_the_schema() {
    insta::assert_snapshot!(validate(
        r#"
[[node]]
id = "read"
type = "std.read_files"
settings = { pattern = "*.txt" }

[[node]]
id = "first"
type = "std.head"
settings = { lines = "ten" }
inputs = { text = "read.text" }
"#
    ));
}

#[test]
fn cycle_names_the_nodes_on_it() {
    insta::assert_snapshot!(validate(
        r#"
[[node]]
id = "a"
type = "std.noop"
inputs = { in = "c.out" }

[[node]]
id = "b"
type = "std.noop"
inputs = { in = "a.out" }

[[node]]
id = "c"
type = "std.noop"
inputs = { in = "b.out" }

[[node]]
id = "d"
type = "std.noop"
inputs = { in = "c.out" }
"#
    ));
}

#[test]
fn unknown_keys_and_wrong_types() {
    insta::assert_snapshot!(validate(
        r#"
[workflow]
name = "typos"
descripton = "oops"

[[node]]
id = "a"
type = "std.noop"
setings = { x = 1 }
timeout_secs = "soon"
resources = { cpu = 2 }

[[outputs]]
from = "a.out"
"#
    ));
}

#[test]
fn duplicate_ids_and_unknown_backend() {
    insta::assert_snapshot!(validate(
        r#"
[[node]]
id = "a"
type = "std.noop"

[[node]]
id = "a"
type = "std.noop"
backend = "gpu-pool"
"#
    ));
}

#[test]
fn bad_toml_syntax() {
    insta::assert_snapshot!(validate("[[node]]\nid = \"a\"\ntype = std.noop\n"));
}

#[test]
fn every_problem_is_reported_at_once() {
    let stderr = validate(
        r#"
[[node]]
id = "a"
type = "std.nope"

[[node]]
id = "b"
type = "std.word_count"
color = "blue"

[[output]]
from = "zzz.out"
to = "x.txt"
"#,
    );
    assert!(stderr.contains("workflow.toml:4:8: error: unknown node type `std.nope`"), "{stderr}");
    assert!(stderr.contains("workflow.toml:9:1: error: unknown key `color`"), "{stderr}");
    assert!(
        stderr.contains("workflow.toml:7:6: error: node `b` (std.word_count) is missing its required input `text`"),
        "{stderr}"
    );
    assert!(stderr.contains("workflow.toml:12:8: error: output refers to unknown node `zzz`"), "{stderr}");
    assert!(stderr.trim_end().ends_with("4 errors"), "{stderr}");
}

#[test]
fn json_diagnostics() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("workflow.toml"), "[[node]]\nid = \"a\"\ntype = \"std.nope\"\n").unwrap();
    let output = backplane().current_dir(dir.path()).args(["validate", "workflow.toml", "--json"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(json["valid"], false);
    assert_eq!(json["errors"][0]["line"], 3);
    assert_eq!(json["errors"][0]["column"], 8);
    assert!(json["errors"][0]["message"].as_str().unwrap().contains("unknown node type `std.nope`"));
}

#[test]
fn a_valid_workflow_validates() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("workflow.toml"), "[[node]]\nid = \"a\"\ntype = \"std.noop\"\n").unwrap();
    let output = backplane().current_dir(dir.path()).args(["validate", "workflow.toml"]).output().unwrap();
    assert!(output.status.success(), "{}", stderr_of(&output));
    assert_eq!(String::from_utf8_lossy(&output.stdout), "workflow.toml: valid (1 nodes)\n");
}

#[test]
fn help_text() {
    let output = backplane().arg("--help").output().unwrap();
    assert!(output.status.success());
    insta::assert_snapshot!(String::from_utf8_lossy(&output.stdout));
}
