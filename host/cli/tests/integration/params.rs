//! Workflow parameters: `[params]`, `-p name=value`, `--params-file`, and
//! `${params.name}` in settings, labels, resources and output paths.

use crate::fixtures::{backplane, stderr_of, stdout_of, workflow_dir};

/// A greeting written to `out/${params.name}.txt`, cut to `${params.lines}`
/// lines by `std.head`, whose `lines` setting must be an integer: a run
/// that succeeds shows the parameter kept its type.
const GREETING: &str = r#"
[params]
greeting = { type = "string", default = "hello", description = "the first word" }
name = "world"
lines = { type = "integer", default = 1 }
cpus = 0.5
unused = false

[[node]]
id = "say"
type = "std.const"
settings = { text = "${params.greeting}, ${params.name}\nsecond line\n$${params.name} stays\n" }
labels = { who = "${params.name}" }
resources = { cpus = "${params.cpus}" }

[[node]]
id = "cut"
type = "std.head"
settings = { lines = "${params.lines}" }
inputs = { text = "say.text" }

[[output]]
from = "cut.text"
to = "out/${params.name}.txt"
"#;

fn run_json(dir: &std::path::Path, args: &[&str]) -> serde_json::Value {
    let output = backplane().args(["run", "workflow.toml", "--json"]).args(args).current_dir(dir).output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
    serde_json::from_slice(&output.stdout).unwrap()
}

#[test]
fn parameters_have_defaults_and_are_set_by_files_then_flags_keeping_their_types() {
    let wf = workflow_dir(GREETING);
    let report = run_json(wf.path(), &[]);
    assert_eq!(std::fs::read_to_string(wf.path().join("out/world.txt")).unwrap(), "hello, world\n");
    assert_eq!(
        report["params"],
        serde_json::json!({"greeting": "hello", "name": "world", "lines": 1, "cpus": 0.5, "unused": false})
    );

    std::fs::write(wf.path().join("params.toml"), "name = \"file\"\nlines = 2\ngreeting = \"hi\"\n").unwrap();
    run_json(wf.path(), &["--params-file", "params.toml", "-p", "greeting=hey"]);
    assert_eq!(
        std::fs::read_to_string(wf.path().join("out/file.txt")).unwrap(),
        "hey, file\nsecond line\n",
        "the file sets name and lines, -p wins over the file for greeting"
    );
    let report = run_json(wf.path(), &["-p", "lines=3", "-p", "name=flag"]);
    assert_eq!(
        std::fs::read_to_string(wf.path().join("out/flag.txt")).unwrap(),
        "hello, flag\nsecond line\n${params.name} stays\n",
        "`$${{params.x}}` is the text itself"
    );

    // The run record keeps the values the run used.
    let record = std::fs::read_to_string(report["record"].as_str().unwrap()).unwrap();
    let header: serde_json::Value = serde_json::from_str(record.lines().next().unwrap()).unwrap();
    assert_eq!(header["params"]["name"], "flag");
    assert_eq!(header["params"]["lines"], 3);
}

#[test]
fn parameters_reach_the_cache_key_only_through_the_settings_they_change() {
    let wf = workflow_dir(GREETING);
    let first = run_json(wf.path(), &[]);
    assert_eq!((first["cached"].as_u64(), first["executed"].as_u64()), (Some(0), Some(2)));
    let unused = run_json(wf.path(), &["-p", "unused=true"]);
    assert_eq!((unused["cached"].as_u64(), unused["executed"].as_u64()), (Some(2), Some(0)), "{unused}");
    let changed = run_json(wf.path(), &["-p", "greeting=bye"]);
    assert_eq!((changed["cached"].as_u64(), changed["executed"].as_u64()), (Some(0), Some(2)), "{changed}");
    assert_eq!(std::fs::read_to_string(wf.path().join("out/world.txt")).unwrap(), "bye, world\n");
}

#[test]
fn plan_and_validate_take_the_same_flags_and_say_the_values() {
    let wf = workflow_dir(GREETING);
    let output = backplane()
        .args(["plan", "workflow.toml", "-p", "name=planned", "-p", "lines=2"])
        .current_dir(wf.path())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
    let params = stderr_of(&output).lines().find(|l| l.starts_with("params:")).map(str::to_owned);
    insta::assert_snapshot!(params.unwrap_or_default(), @r#"params: greeting="hello" (default), name="planned" (-p), lines=2 (-p), cpus=0.5 (default), unused=false (default)"#);
    let output = backplane()
        .args(["validate", "workflow.toml", "--json", "-p", "lines=7"])
        .current_dir(wf.path())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["params"]["lines"], 7);
    assert!(stdout_of(&output).contains("\"valid\": true"));
}

#[test]
fn bad_flags_and_parameter_files_are_errors_naming_the_flag_or_the_file_position() {
    let wf = workflow_dir(GREETING);
    std::fs::write(wf.path().join("params.toml"), "lines = \"two\"\nnmae = \"x\"\n").unwrap();
    let output = backplane()
        .args(["validate", "workflow.toml", "--params-file", "params.toml"])
        .args(["-p", "lines=many", "-p", "greting=hi", "-p", "name"])
        .current_dir(wf.path())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    insta::assert_snapshot!(stderr_of(&output), @r"
    -p greting=hi: error: the workflow declares no parameter `greting`
      help: did you mean `greeting`? the workflow declares: greeting, name, lines, cpus, unused
    -p lines=many: error: parameter `lines` takes an integer
      help: write e.g. `-p lines=10`
    -p name: error: a parameter is set as `name=value`
      help: write e.g. `-p top=10`
    params.toml:1:9: error: parameter `lines` takes an integer
      help: write e.g. `lines = 10`
    params.toml:2:1: error: the workflow declares no parameter `nmae`
      help: did you mean `name`? the workflow declares: greeting, name, lines, cpus, unused
    5 errors
    ");
}

#[test]
fn bad_declarations_and_references_are_located_in_the_workflow() {
    let wf = workflow_dir(
        r#"[params]
n = { type = "integr" }
required = { type = "string", description = "no default" }
list = [1, 2]
text = "words"

[[node]]
id = "a"
type = "std.head"
settings = { lines = "${params.nn}" }
labels = { l = "${params.text" }
resources = { cpus = "${params.text}" }
inputs = { text = "b.text" }

[[node]]
id = "b"
type = "std.const"
"#,
    );
    let output = backplane().args(["validate", "workflow.toml"]).current_dir(wf.path()).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    insta::assert_snapshot!(stderr_of(&output), @r#"
    workflow.toml:2:14: error: unknown parameter type `integr`
      help: did you mean `integer`? types are: string, integer, float, boolean
    workflow.toml:3:1: error: parameter `required` has no default and this run does not set it
      help: set it with `-p required=VALUE` or in a `--params-file`, or give it a default
    workflow.toml:4:8: error: parameter `list` must be a default value or a table
      help: write e.g. `top = 10` or `top = { type = "integer", default = 10, description = "..." }`
    workflow.toml:10:22: error: unknown parameter `nn`
      help: did you mean `n`? the workflow declares: n, required, list, text
    workflow.toml:10:22: error: invalid settings for node `a` (std.head) at `/lines`: "${params.nn}" is not of type "integer"
      help: `backplane nodes std.head` shows its settings schema
    workflow.toml:11:16: error: `${params.text` is not closed
      help: write `${params.NAME}`, or `$${params.` for the text itself
    workflow.toml:12:22: error: invalid `cpus`
      help: use a number of at least 0
    7 errors
    "#);
}
