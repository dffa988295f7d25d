//! ABI evolution across minor versions, both ways, with real builds:
//! - 1.1 (today) added the node spec's settings check: a plugin built
//!   against 1.0 loads and runs in today's host (its types have no check),
//!   and today's plugins load and run in the real host built against 1.0
//!   (which ignores the check);
//! - an invented next minor (1.2) with one of each append-only change: its
//!   plugin in today's host, and today's plugins in the host built against it.
//!
//! (A breaking change is rejected: see `loading`.)

use crate::fixtures::{
    NEXT_MINOR, PREVIOUS_MINOR, backplane, bin_dir, next_minor_host, next_minor_plugin, previous_minor_host,
    previous_minor_plugin, stderr_of, workflow_dir, workspace_root,
};
use serde_json::Value;

#[test]
fn a_plugin_built_against_the_next_minor_loads_and_runs_in_this_host() {
    let plugin = next_minor_plugin();
    let output =
        backplane().args(["plugins", "--json", "--plugin-dir"]).arg(plugin.parent().unwrap()).output().unwrap();
    let json: Value = serde_json::from_slice(&output.stdout).unwrap();
    let loaded = json["plugins"].as_array().unwrap().iter().find(|p| p["name"] == "abi-fixture-next-minor");
    let loaded = loaded.unwrap_or_else(|| panic!("the {NEXT_MINOR} plugin did not load: {json}"));
    assert_eq!(loaded["interface_version"], NEXT_MINOR);

    let run = |workflow: &str| {
        let wf = workflow_dir(workflow);
        let output = backplane()
            .arg("--plugin-dir")
            .arg(plugin.parent().unwrap())
            .args(["run", "--json"])
            .arg(wf.path().join("workflow.toml"))
            .output()
            .unwrap();
        let report: Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|_| panic!("{}", stderr_of(&output)));
        (output.status.code(), report, wf)
    };
    let (code, _, wf) =
        run("[[node]]\nid = \"hi\"\ntype = \"fixture.hello\"\n\n[[output]]\nfrom = \"hi.text\"\nto = \"hello.txt\"\n");
    assert_eq!(code, Some(0));
    assert_eq!(std::fs::read_to_string(wf.path().join("hello.txt")).unwrap(), "hello from plugin-api 1.2\n");

    // An error variant this host has never heard of still arrives, with the
    // plugin's own wording, as an unknown kind.
    let (code, report, _) = run("[[node]]\nid = \"over\"\ntype = \"fixture.quota\"\n");
    assert_eq!(code, Some(1));
    assert_eq!(report["failure"]["node"], "over");
    assert_eq!(report["failure"]["kind"], "unknown");
    assert_eq!(report["failure"]["message"], "quota exceeded: 3 of 2 slots used");
}

#[test]
fn todays_plugins_load_and_run_in_a_host_built_against_the_next_minor() {
    let next_host = next_minor_host();
    crate::fixtures::ensure_plugins_built();
    // The same quickstart through today's host and the next-minor host, in two copies.
    let (output, next_work) = quickstart_on(&next_host);
    let stderr = stderr_of(&output);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("11/11 nodes succeeded"), "{stderr}");
    // abi_stable's own check refused them; the swapped check let them in.
    assert!(
        stderr.contains(&format!("built against the older plugin-api {}", backplane_plugin_api::INTERFACE_VERSION)),
        "{stderr}"
    );
    // The next-minor host read its new root-module field from today's plugin and got the default.
    let line = stderr
        .lines()
        .find(|l| l.contains("read the 1.2 root-module field") && l.contains("backplane-local"))
        .unwrap_or_else(|| panic!("{stderr}"));
    assert!(line.contains("description=\"\""), "{line}");

    let (output, today_work) = quickstart_on(std::path::Path::new(env!("CARGO_BIN_EXE_backplane")));
    assert!(output.status.success(), "{}", stderr_of(&output));
    let read = |dir: &tempfile::TempDir| std::fs::read(dir.path().join("out/word-frequencies.tsv")).unwrap();
    assert_eq!(read(&next_work), read(&today_work), "byte-identical results from both hosts");
}

/// A workflow that only the 1.1 settings check rejects before running:
/// `std.chunk` with `index` out of range passes the schema.
const CHUNK_OUT_OF_RANGE: &str = "[[node]]\nid = \"src\"\ntype = \"std.const\"\nsettings = { text = \"a\\nb\\n\" }\n\n\
                                  [[node]]\nid = \"part\"\ntype = \"std.chunk\"\ninputs = { text = \"src.text\" }\n\
                                  settings = { index = 5, count = 2 }\n";

#[test]
fn a_plugin_built_against_the_previous_minor_loads_and_runs_in_this_host() {
    let plugin = previous_minor_plugin();
    let output =
        backplane().args(["-vv", "plugins", "--json", "--plugin-dir"]).arg(plugin.parent().unwrap()).output().unwrap();
    let json: Value = serde_json::from_slice(&output.stdout).unwrap();
    let loaded = json["plugins"].as_array().unwrap().iter().find(|p| p["name"] == "abi-fixture-previous-minor");
    let loaded = loaded.unwrap_or_else(|| panic!("the {PREVIOUS_MINOR} plugin did not load: {json}"));
    assert_eq!(loaded["interface_version"], PREVIOUS_MINOR);
    assert!(stderr_of(&output).contains(&format!("built against the older plugin-api {PREVIOUS_MINOR}")));

    // Its node type has no settings check; it validates and runs.
    let wf = workflow_dir(
        "[[node]]\nid = \"e\"\ntype = \"fixture.abi_echo\"\n\n[[output]]\nfrom = \"e.text\"\nto = \"echo.txt\"\n",
    );
    let output = backplane()
        .arg("--plugin-dir")
        .arg(plugin.parent().unwrap())
        .arg("run")
        .arg(wf.path().join("workflow.toml"))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
    assert_eq!(std::fs::read_to_string(wf.path().join("echo.txt")).unwrap(), "echo");
}

#[test]
fn todays_plugins_load_and_run_in_a_host_built_against_the_previous_minor() {
    let old_host = previous_minor_host();
    crate::fixtures::ensure_plugins_built();
    let wf = workflow_dir(CHUNK_OUT_OF_RANGE);
    let validate = |host: &std::path::Path| {
        std::process::Command::new(host)
            .env_remove("BACKPLANE_CONFIG")
            .env_remove("BACKPLANE_PLUGIN_PATH")
            .arg("-vv")
            .arg("--plugin-dir")
            .arg(bin_dir())
            .arg("validate")
            .arg(wf.path().join("workflow.toml"))
            .output()
            .unwrap()
    };
    // Today's host asks the std plugin's settings check...
    let today = validate(std::path::Path::new(env!("CARGO_BIN_EXE_backplane")));
    assert_eq!(today.status.code(), Some(2));
    assert!(stderr_of(&today).contains("workflow.toml:10:22: error: invalid settings for node `part` (std.chunk) at `/index`: `index` 5 is out of range for `count` 2"), "{}", stderr_of(&today));
    // ...the 1.0 host cannot, loads the 1.1 plugins all the same, and the
    // node's own run-time check still stops the run.
    let old = validate(&old_host);
    let stderr = stderr_of(&old);
    assert_eq!(old.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("loaded plugin") && stderr.contains("plugin=backplane-std-nodes"), "{stderr}");
    let run = std::process::Command::new(&old_host)
        .env_remove("BACKPLANE_CONFIG")
        .env_remove("BACKPLANE_PLUGIN_PATH")
        .arg("--plugin-dir")
        .arg(bin_dir())
        .arg("run")
        .arg(wf.path().join("workflow.toml"))
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(1), "{}", stderr_of(&run));
    assert!(stderr_of(&run).contains("`index` 5 is out of range"), "{}", stderr_of(&run));

    // The quickstart runs on the 1.0 host with today's plugins.
    let (output, _work) = quickstart_on(&old_host);
    assert!(stderr_of(&output).contains("11/11 nodes succeeded"), "{}", stderr_of(&output));
}

/// Runs a copy of the quickstart with `host` (`-vv`) and today's plugins.
fn quickstart_on(host: &std::path::Path) -> (std::process::Output, tempfile::TempDir) {
    let quickstart = workspace_root().join("examples/quickstart");
    let work = tempfile::tempdir().unwrap();
    for name in ["workflow.toml", "backplane.toml"] {
        std::fs::copy(quickstart.join(name), work.path().join(name)).unwrap();
    }
    std::fs::create_dir_all(work.path().join("docs")).unwrap();
    for entry in std::fs::read_dir(quickstart.join("docs")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), work.path().join("docs").join(entry.file_name())).unwrap();
    }
    let output = std::process::Command::new(host)
        .env_remove("BACKPLANE_CONFIG")
        .env_remove("BACKPLANE_PLUGIN_PATH")
        .arg("-vv")
        .arg("--plugin-dir")
        .arg(bin_dir())
        .args(["run", "workflow.toml", "--config", "backplane.toml"])
        .current_dir(work.path())
        .output()
        .unwrap();
    (output, work)
}
