//! Which config a command uses: `--config`, `BACKPLANE_CONFIG`,
//! `backplane.toml` beside the workflow, then upward from the current
//! directory, then the XDG config; and that `plan`, `run` and `validate`
//! say which one and why.

use crate::fixtures::{backplane, stderr_of};
use serde_json::Value;
use std::path::Path;

/// A config with one `local` instance named `name` as the default.
fn config_named(name: &str) -> String {
    format!("default_backend = \"{name}\"\n\n[backends.{name}]\ntype = \"local\"\n")
}

const WORKFLOW: &str = "[[node]]\nid = \"hello\"\ntype = \"std.const\"\nsettings = { text = \"hi\" }\n";

/// A project: `project/flows/workflow.toml`, with configs where `configs` say.
fn project(configs: &[(&str, &str)]) -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(root.path().join("project/flows")).unwrap();
    std::fs::create_dir_all(root.path().join("project/elsewhere/deeper")).unwrap();
    std::fs::write(root.path().join("project/flows/workflow.toml"), WORKFLOW).unwrap();
    for (dir, name) in configs {
        std::fs::write(root.path().join(dir).join("backplane.toml"), config_named(name)).unwrap();
    }
    root
}

/// `plan` of the project's workflow from `cwd` with `extra` arguments and
/// `env`: (the instance the node went to, the JSON config, plan's stderr
/// with the temp dir's path replaced by `<root>`).
fn plan_from(root: &Path, cwd: &str, extra: &[&str], env: &[(&str, &str)]) -> (String, Value, String) {
    let workflow = root.join("project/flows/workflow.toml");
    let run = |json: bool| {
        let mut command = backplane();
        command.arg("plan").arg(&workflow).args(extra).current_dir(root.join(cwd));
        // An empty XDG home: the machine's own user config stays out of it.
        command.env("XDG_CONFIG_HOME", root.join("xdg"));
        for (k, v) in env {
            command.env(k, v);
        }
        if json {
            command.arg("--json");
        }
        let output = command.output().unwrap();
        assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
        output
    };
    let json: Value = serde_json::from_slice(&run(true).stdout).unwrap();
    let stderr = stderr_of(&run(false)).replace(&root.display().to_string(), "<root>");
    (json["nodes"][0]["backend"].as_str().unwrap().to_owned(), json["config"].clone(), stderr)
}

#[test]
fn the_config_beside_the_workflow_wins_over_one_found_upward() {
    let root = project(&[("project/flows", "beside"), ("project", "upward")]);
    let (backend, config, stderr) = plan_from(root.path(), "project/elsewhere/deeper", &[], &[]);
    assert_eq!(backend, "beside");
    assert_eq!(config["origin"], "beside-workflow");
    insta::assert_snapshot!(stderr, @"config: <root>/project/flows/backplane.toml (beside the workflow)");
}

#[test]
fn without_one_beside_the_workflow_the_nearest_upward_from_the_current_directory_is_used() {
    let root = project(&[("project", "upward")]);
    let (backend, config, stderr) = plan_from(root.path(), "project/elsewhere/deeper", &[], &[]);
    assert_eq!((backend.as_str(), &config["origin"]), ("upward", &Value::from("ancestor")));
    assert!(config["path"].as_str().unwrap().ends_with("project/backplane.toml"), "{config}");
    insta::assert_snapshot!(stderr, @"config: <root>/project/backplane.toml (found upward from the current directory)");
}

#[test]
fn the_flag_and_the_variable_win_over_discovery_and_say_so() {
    let root = project(&[("project/flows", "beside")]);
    std::fs::write(root.path().join("chosen.toml"), config_named("chosen")).unwrap();
    let chosen = root.path().join("chosen.toml");
    let (backend, config, stderr) = plan_from(root.path(), "project", &["--config", chosen.to_str().unwrap()], &[]);
    assert_eq!((backend.as_str(), &config["origin"]), ("chosen", &Value::from("flag")));
    insta::assert_snapshot!(stderr, @"config: <root>/chosen.toml (from --config)");

    let (backend, config, stderr) =
        plan_from(root.path(), "project", &[], &[("BACKPLANE_CONFIG", chosen.to_str().unwrap())]);
    assert_eq!((backend.as_str(), &config["origin"]), ("chosen", &Value::from("env")));
    insta::assert_snapshot!(stderr, @"config: <root>/chosen.toml (from BACKPLANE_CONFIG)");
}

#[test]
fn the_user_config_and_the_built_in_one_are_named_too() {
    let root = project(&[]);
    let (backend, config, stderr) = plan_from(root.path(), "project", &[], &[]);
    assert_eq!(
        (backend.as_str(), &config["origin"], &config["path"]),
        ("local", &Value::from("built-in"), &Value::Null)
    );
    insta::assert_snapshot!(stderr, @"config: built in: one `local` instance");

    std::fs::create_dir_all(root.path().join("xdg/backplane")).unwrap();
    std::fs::write(root.path().join("xdg/backplane/backplane.toml"), config_named("mine")).unwrap();
    let (backend, config, stderr) = plan_from(root.path(), "project", &[], &[]);
    assert_eq!((backend.as_str(), &config["origin"]), ("mine", &Value::from("xdg")));
    insta::assert_snapshot!(stderr, @"config: <root>/xdg/backplane/backplane.toml (the user config)");
}

#[test]
fn run_and_validate_say_which_config_they_used() {
    let root = project(&[("project/flows", "beside")]);
    let workflow = root.path().join("project/flows/workflow.toml");
    for command in ["run", "validate"] {
        let output = backplane().arg(command).arg(&workflow).current_dir(root.path()).output().unwrap();
        assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
        let stderr = stderr_of(&output);
        assert!(stderr.contains("project/flows/backplane.toml (beside the workflow)"), "{command}: {stderr}");
        let output = backplane().arg(command).arg(&workflow).arg("--json").current_dir(root.path()).output().unwrap();
        let json: Value = serde_json::from_slice(&output.stdout).unwrap();
        assert_eq!(json["config"]["origin"], "beside-workflow", "{command}: {json}");
    }
}
