//! Routing through the real binary: rules, precedence, derived instances,
//! environment overrides, infeasible plans and rerouting off a backend that
//! goes down mid-run. Which instance ran a node is read from the run report
//! (counted from completions), not from the plan.

use crate::fixtures::{backplane, command_in, run_json, stderr_of, workflow_with_config, workspace_root};
use serde_json::Value;
use std::path::Path;

fn plan_json(dir: &Path) -> Value {
    let output = command_in(dir, &["plan", "--json"]).output().unwrap();
    assert!(output.status.success(), "{}", stderr_of(&output));
    serde_json::from_slice(&output.stdout).unwrap()
}

/// node id -> (backend, reason) from a plan.
fn routes(plan: &Value) -> Vec<(String, String, String)> {
    plan["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            (
                n["node"].as_str().unwrap().into(),
                n["backend"].as_str().unwrap().into(),
                n["reason"].as_str().unwrap().into(),
            )
        })
        .collect()
}

/// instance -> nodes it completed, from a run report.
fn ran_on(report: &Value) -> Vec<(String, u64)> {
    report["backends"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| (b["instance"].as_str().unwrap().into(), b["nodes"].as_u64().unwrap()))
        .collect()
}

const THREE_POOLS: &str = r#"
default_backend = "small"

[backends.small]
type = "local"
threads = 1

[backends.big]
type = "local"
threads = 4
tags = ["bulk"]

[backends.big-2]
type = "local"
threads = 4
tags = ["bulk"]

[[route]]
match = { id = "pinned-by-rule*" }
backend = "small"

[[route]]
match = { id = "pinned-*" }
backend = "big"

[[route]]
match = { labels = { kind = "heavy" } }
require = { tags = ["bulk"] }

[[route]]
match = { type = "std.sleep" }
backend = "big"
backend_options = { threads = 1 }
"#;

const PRECEDENCE: &str = r#"
[[node]]
id = "explicit"
type = "std.noop"
backend = "big"
labels = { kind = "heavy" }

[[node]]
id = "pinned-by-rule"
type = "std.noop"

[[node]]
id = "heavy-1"
type = "std.noop"
labels = { kind = "heavy" }

[[node]]
id = "heavy-2"
type = "std.noop"
labels = { kind = "heavy" }

[[node]]
id = "wants-cpus"
type = "std.noop"
resources = { cpus = 3 }

[[node]]
id = "plain"
type = "std.noop"

[[node]]
id = "nap"
type = "std.sleep"
settings = { ms = 1 }
"#;

#[test]
fn every_routing_step_in_precedence_order() {
    let dir = workflow_with_config(PRECEDENCE, THREE_POOLS);
    let routes = routes(&plan_json(dir.path()));
    let get = |id: &str| routes.iter().find(|r| r.0 == id).cloned().unwrap();
    // 1. explicit beats a matching rule
    assert_eq!(get("explicit").1, "big");
    assert_eq!(get("explicit").2, "explicit `backend` on the node");
    // 2. the first matching rule wins (both `pinned-by-rule*` and `pinned-*` match)
    assert_eq!(get("pinned-by-rule").1, "small");
    assert!(get("pinned-by-rule").2.starts_with("route #1 (id = \"pinned-by-rule*\")"));
    // 3. rule requirements -> capability match, spread over interchangeable replicas
    let heavy = [get("heavy-1").1, get("heavy-2").1];
    assert!(heavy.contains(&"big".to_owned()) && heavy.contains(&"big-2".to_owned()), "{heavy:?}");
    assert!(get("heavy-1").2.contains("route #3") && get("heavy-1").2.contains("capability match"));
    // 3. the node's own resources -> capability match, with what was skipped
    assert_eq!(get("wants-cpus").2, "capability match (skipped small: needs 3 cpus (has 1))");
    // 4. nothing special -> the default
    assert_eq!((get("plain").1.as_str(), get("plain").2.as_str()), ("small", "default backend"));
    // backend_options -> a derived instance
    assert_eq!(get("nap").1, "big+route4");
}

#[test]
fn several_instances_of_one_type_each_run_their_nodes_and_options_do_not_leak() {
    let dir = workflow_with_config(PRECEDENCE, THREE_POOLS);
    let plan = plan_json(dir.path());
    let instance =
        |name: &str| plan["instances"].as_array().unwrap().iter().find(|i| i["name"] == name).cloned().unwrap();
    assert_eq!(instance("big")["config"]["threads"], 4, "the shared instance keeps its settings");
    assert_eq!(instance("big+route4")["config"]["threads"], 1);
    assert_eq!(instance("big+route4")["derived_from"], "big");

    let (code, report, stderr) = run_json(dir.path(), &[]);
    assert_eq!(code, Some(0), "{stderr}");
    let ran = ran_on(&report);
    let count = |name: &str| ran.iter().find(|r| r.0 == name).map_or(0, |r| r.1);
    assert_eq!(count("small"), 2, "{ran:?}"); // pinned-by-rule, plain
    assert_eq!(count("big") + count("big-2"), 4, "{ran:?}"); // explicit, heavy-1, heavy-2, wants-cpus
    assert!(count("big-2") >= 1, "{ran:?}");
    assert_eq!(count("big+route4"), 1, "{ran:?}");
}

#[test]
fn the_routing_example_uses_three_instances_and_explains_each_choice() {
    let example = workspace_root().join("examples/routing");
    let output = backplane()
        .current_dir(&example)
        .args(["plan", "workflow.toml", "--config", "backplane.toml"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr_of(&output));
    insta::assert_snapshot!(String::from_utf8_lossy(&output.stdout));
    // --dry-run prints the same table and runs nothing.
    let dry = backplane()
        .current_dir(&example)
        .args(["run", "--dry-run", "workflow.toml", "--config", "backplane.toml"])
        .output()
        .unwrap();
    assert_eq!(dry.stdout, output.stdout);
}

#[test]
fn an_infeasible_plan_lists_what_each_instance_lacks() {
    let dir = workflow_with_config(
        r#"
[[node]]
id = "train"
type = "std.noop"
resources = { cpus = 8, gpus = 1 }

[[node]]
id = "fine"
type = "std.noop"
"#,
        THREE_POOLS,
    );
    let output = command_in(dir.path(), &["plan"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    insta::assert_snapshot!(stderr_of(&output));
}

#[test]
fn environment_overrides_settings_and_default() {
    let dir = workflow_with_config("[[node]]\nid = \"plain\"\ntype = \"std.noop\"\n", THREE_POOLS);
    let output = command_in(dir.path(), &["plan", "--json"])
        .env("BACKPLANE_BACKENDS__SMALL__THREADS", "3")
        .env("BACKPLANE_DEFAULT_BACKEND", "big-2")
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr_of(&output));
    let plan: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(routes(&plan)[0].1, "big-2");
    let small = plan["instances"].as_array().unwrap().iter().find(|i| i["name"] == "small").unwrap();
    assert_eq!(small["config"]["threads"], 3);

    let bad = command_in(dir.path(), &["plan"]).env("BACKPLANE_BACKENDS__SMALL__THREADS", "zero").output().unwrap();
    assert_eq!(bad.status.code(), Some(2));
    let stderr = stderr_of(&bad);
    assert!(
        stderr.contains("environment variable BACKPLANE_BACKENDS__SMALL__THREADS: error: backend instance `small`"),
        "the variable is named: {stderr}"
    );

    let unknown = command_in(dir.path(), &["plan"]).env("BACKPLANE_DEFAULT_BACKEND", "gpu").output().unwrap();
    assert_eq!(unknown.status.code(), Some(2));
    assert!(
        stderr_of(&unknown).contains(
            "environment variable BACKPLANE_DEFAULT_BACKEND: error: `gpu` is not a configured backend instance"
        )
    );
}

#[test]
fn config_files_are_found_through_xdg_config_home() {
    let xdg = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(xdg.path().join("backplane")).unwrap();
    std::fs::write(
        xdg.path().join("backplane/backplane.toml"),
        "default_backend = \"solo\"\n[backends.solo]\ntype = \"local\"\nthreads = 1\n",
    )
    .unwrap();
    let wf = crate::fixtures::workflow_dir("[[node]]\nid = \"a\"\ntype = \"std.noop\"\n");
    let output = backplane()
        .current_dir(wf.path())
        .env("XDG_CONFIG_HOME", xdg.path())
        .args(["plan", "workflow.toml", "--json"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr_of(&output));
    let plan: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(routes(&plan)[0].1, "solo");
}

#[test]
fn config_errors_are_all_reported_with_locations() {
    let dir = workflow_with_config(
        "[[node]]\nid = \"a\"\ntype = \"std.noop\"\n",
        r#"
default_backend = "nowhere"
plugin_dir = ["x"]

[backends.small]
type = "local"
thread = 2

[backends.odd]
type = "lcoal"

[[route]]
matc = { type = "std.*" }
backend = "smal"
"#,
    );
    let output = command_in(dir.path(), &["plan"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    insta::assert_snapshot!(stderr_of(&output));
}

const FLAKY: &str = r#"
default_backend = "flaky"

[backends.flaky]
type = "faulty"
mode = "complete"
down_when_file_exists = "down"
tags = ["fast"]

[backends.local]
type = "local"
tags = ["fast"]
"#;

fn flaky_workflow(pin: bool) -> String {
    // `trigger` makes `flaky` report down 300 ms before its dependants are queued.
    let mut text = String::from(
        "[[node]]\nid = \"trigger\"\ntype = \"std.shell\"\nbackend = \"local\"\nsettings = { command = \"touch down && sleep 0.3\" }\n\n",
    );
    for i in 0..4 {
        let backend = if pin && i == 0 { "backend = \"flaky\"\n" } else { "" };
        text.push_str(&format!(
            "[[node]]\nid = \"work-{i}\"\ntype = \"std.noop\"\n{backend}inputs = {{ in = \"trigger.stdout\" }}\n\n"
        ));
    }
    text
}

#[test]
fn nodes_queued_on_a_backend_that_goes_down_are_rerouted() {
    let dir = workflow_with_config(&flaky_workflow(false), FLAKY);
    let plan = plan_json(dir.path());
    assert!(routes(&plan).iter().filter(|r| r.0.starts_with("work-")).all(|r| r.1 == "flaky"), "{plan}");
    let (code, report, stderr) = run_json(dir.path(), &[]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(ran_on(&report), vec![("flaky".to_owned(), 0), ("local".to_owned(), 5)], "{report}");
    let rerouted = &report["rerouted"][0];
    assert_eq!(
        (rerouted["from"].as_str(), rerouted["to"].as_str(), rerouted["nodes"].as_u64()),
        (Some("flaky"), Some("local"), Some(4))
    );
    assert!(rerouted["reason"].as_str().unwrap().contains("down exists"), "{rerouted}");
    assert!(stderr.contains("backend `flaky` is down"), "{stderr}");
}

#[test]
fn a_node_pinned_to_a_backend_that_goes_down_fails_clearly() {
    let dir = workflow_with_config(&flaky_workflow(true), FLAKY);
    let (code, report, _) = run_json(dir.path(), &[]);
    assert_eq!(code, Some(1));
    assert_eq!(report["failure"]["node"], "work-0");
    assert!(report["failure"]["message"].as_str().unwrap().contains("is down"), "{report}");
    assert!(report["failure"]["message"].as_str().unwrap().contains("pinned"), "{report}");
}

#[test]
fn an_instance_down_at_plan_time_is_skipped() {
    let dir = workflow_with_config("[[node]]\nid = \"a\"\ntype = \"std.noop\"\n", FLAKY);
    std::fs::write(dir.path().join("down"), "").unwrap();
    let routes = routes(&plan_json(dir.path()));
    assert_eq!(routes[0].1, "local");
    assert!(routes[0].2.contains("flaky: unhealthy"), "{routes:?}");
}
