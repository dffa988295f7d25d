//! The small mistakes of workflow and config authors, and what they are
//! told: suggestions for misspelt names, required settings, the variable
//! behind a bad environment override, workflows read from stdin.

use crate::fixtures::{backplane, stderr_of, stdout_of, workflow_dir};

#[test]
fn nodes_suggests_the_type_a_misspelt_name_is_close_to() {
    let output = backplane().args(["nodes", "std.shel"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    insta::assert_snapshot!(stderr_of(&output), @r"
    error: no node type `std.shel` is loaded
      help: did you mean `std.shell`? `backplane nodes` lists the loaded node types
    ");
}

#[test]
fn nodes_says_which_settings_have_no_default() {
    let output = backplane().args(["nodes", "std.read_files"]).output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
    let stdout = stdout_of(&output);
    let summary: Vec<&str> = stdout.lines().take_while(|l| !l.contains("settings schema")).collect();
    insta::assert_snapshot!(summary.join("\n"), @r"
    std.read_files 0.1.0 — Reads every file matching a glob, in sorted path order, into one text (each file ends with a newline)
        inputs:   outputs: text, files
        defaults: {}
        required settings (no default): glob
    ");
}

/// `validate` of a one-node workflow with `config` beside it (and `env`): stderr.
fn validate_with(config: &str, env: &[(&str, &str)]) -> String {
    let wf = workflow_dir("[[node]]\nid = \"a\"\ntype = \"std.noop\"\n");
    std::fs::write(wf.path().join("backplane.toml"), config).unwrap();
    let mut command = backplane();
    command.args(["validate", "workflow.toml"]).current_dir(wf.path());
    for (k, v) in env {
        command.env(k, v);
    }
    let output = command.output().unwrap();
    assert_eq!(output.status.code(), Some(2), "{}", stderr_of(&output));
    stderr_of(&output)
}

#[test]
fn a_misspelt_instance_key_gets_a_suggestion_and_both_lists_of_keys() {
    let stderr = validate_with("[backends.small]\ntype = \"local\"\ntag = [\"io\"]\n", &[]);
    insta::assert_snapshot!(stderr, @r"
    backplane.toml:3:7: error: backend instance `small`: unknown setting `tag` (known: custom, memory, threads)
      help: did you mean `tags`? settings of `local`: custom, memory, threads; keys of every instance: type, max_in_flight, tags, capacity
    1 error
    ");
}

#[test]
fn a_bad_environment_override_names_the_variable_not_the_file() {
    let config = "[backends.small]\ntype = \"local\"\nthreads = 2\n";
    let stderr = validate_with(config, &[("BACKPLANE_BACKENDS__SMALL__THREADS", "abc")]);
    insta::assert_snapshot!(stderr, @r#"
    environment variable BACKPLANE_BACKENDS__SMALL__THREADS: error: backend instance `small`: "abc" is not of type "integer"
      help: fix its value, or unset it to keep the config file's
    1 error
    "#);
}

#[test]
fn a_workflow_from_stdin_validates_and_runs_and_its_errors_name_stdin() {
    let dir = tempfile::tempdir().unwrap();
    let good = "[[node]]\nid = \"hi\"\ntype = \"std.const\"\nsettings = { text = \"from stdin\" }\n\n\
                [[output]]\nfrom = \"hi.text\"\nto = \"hi.txt\"\n";
    let output = backplane().args(["validate", "-"]).current_dir(dir.path()).write_stdin(good).output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
    assert!(stdout_of(&output).contains("<stdin>: valid (1 nodes)"), "{}", stdout_of(&output));
    let output = backplane().args(["run", "-"]).current_dir(dir.path()).write_stdin(good).output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
    assert_eq!(std::fs::read_to_string(dir.path().join("hi.txt")).unwrap(), "from stdin");

    let bad = "[[node]]\nid = \"hi\"\ntype = \"std.cnost\"\n";
    let output = backplane().args(["validate", "-"]).current_dir(dir.path()).write_stdin(bad).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    insta::assert_snapshot!(stderr_of(&output), @r"
    <stdin>:3:8: error: unknown node type `std.cnost` (node `hi`)
      help: did you mean `std.const`? `backplane nodes` lists the loaded node types
    1 error
    ");
}

#[test]
fn a_route_rule_sets_the_timeout_of_the_nodes_it_matches_unless_they_set_their_own() {
    let workflow = "[[node]]\nid = \"slow\"\ntype = \"std.sleep\"\nsettings = { ms = 20000 }\n\n\
                    [[node]]\nid = \"own\"\ntype = \"std.sleep\"\nsettings = { ms = 300 }\ntimeout_secs = 60\n";
    let config = "[[route]]\nmatch = { type = \"std.sleep\" }\ntimeout_secs = 0.2\n\n\
                  [policy]\nfailure = \"continue\"\n\n[policy.timeout]\ngrace_secs = 1\n";
    let dir = crate::fixtures::workflow_with_config(workflow, config);
    let (code, report, stderr) = crate::fixtures::run_json(dir.path(), &[]);
    assert_eq!(code, Some(1), "{stderr}\n{report:#}");
    let failures = report["failures"].as_array().unwrap();
    assert_eq!(failures.len(), 1, "{report:#}");
    assert_eq!((failures[0]["node"].as_str(), failures[0]["kind"].as_str()), (Some("slow"), Some("timed-out")));
    assert_eq!(report["succeeded"], 1, "`own` keeps its own 60 s: {report:#}");

    // `timeout_secs` alone is an action; a bad one is located.
    let bad = "[[route]]\nmatch = {}\ntimeout_secs = -1\n";
    let stderr = validate_with(bad, &[]);
    insta::assert_snapshot!(stderr, @r"
    backplane.toml:3:16: error: invalid `timeout_secs`
      help: use a number of seconds greater than 0 and at most 31536000 (a year)
    1 error
    ");
}

#[test]
fn bad_backend_options_in_a_route_are_one_located_error_whether_or_not_a_node_matches() {
    let config = "[backends.big]\ntype = \"local\"\nthreads = 4\n\n\
                  [[route]]\nmatch = { type = \"std.shell\" }\nbackend = \"big\"\nbackend_options = { thread = 1 }\n";
    // No node matches the rule: still an error.
    let stderr = validate_with(config, &[]);
    insta::assert_snapshot!(stderr, @r"
    backplane.toml:8:30: error: `backend_options` of route #1 for `big` (local): unknown setting `thread` (known: custom, memory, threads)
      help: did you mean `threads`? settings of `local`: custom, memory, threads; keys of every instance: type, max_in_flight, tags, capacity
    1 error
    ");
    // Three matching nodes: the same one error, not one per node.
    let workflow: String = (0..3)
        .map(|i| format!("[[node]]\nid = \"s{i}\"\ntype = \"std.shell\"\nsettings = {{ command = \"true\" }}\n"))
        .collect();
    let wf = workflow_dir(&workflow);
    std::fs::write(wf.path().join("backplane.toml"), config).unwrap();
    let output = backplane().args(["validate", "workflow.toml"]).current_dir(wf.path()).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(stderr_of(&output), stderr);

    // Without a named backend, options some instance takes are fine; options none takes are an error.
    let loose = "[backends.big]\ntype = \"local\"\n\n[[route]]\nmatch = {}\nbackend_options = { threads = 1 }\n";
    let wf = workflow_dir("[[node]]\nid = \"a\"\ntype = \"std.noop\"\n");
    std::fs::write(wf.path().join("backplane.toml"), loose).unwrap();
    let output = backplane().args(["validate", "workflow.toml"]).current_dir(wf.path()).output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
    let stderr = validate_with(&loose.replace("threads = 1", "threads = \"many\""), &[]);
    assert!(
        stderr.contains("`backend_options` of route #1 for `big` (local)") && stderr.contains("1 error"),
        "{stderr}"
    );
}
