//! ABI evolution across minor versions, both ways, with real builds: a
//! plugin built against the next minor `plugin-api` (1.1) in today's host,
//! and today's plugins in the real host built against 1.1. (A breaking
//! change is rejected: see `loading`.)

use crate::fixtures::{
    backplane, bin_dir, next_minor_host, next_minor_plugin, stderr_of, workflow_dir, workspace_root,
};
use serde_json::Value;

#[test]
fn a_plugin_built_against_the_next_minor_loads_and_runs_in_this_host() {
    let plugin = next_minor_plugin();
    let output =
        backplane().args(["plugins", "--json", "--plugin-dir"]).arg(plugin.parent().unwrap()).output().unwrap();
    let json: Value = serde_json::from_slice(&output.stdout).unwrap();
    let loaded = json["plugins"].as_array().unwrap().iter().find(|p| p["name"] == "abi-fixture-next-minor");
    let loaded = loaded.unwrap_or_else(|| panic!("the 1.1 plugin did not load: {json}"));
    assert_eq!(loaded["interface_version"], "1.1.0");

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
    assert_eq!(std::fs::read_to_string(wf.path().join("hello.txt")).unwrap(), "hello from plugin-api 1.1\n");

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
    let quickstart = workspace_root().join("examples/quickstart");
    // The same quickstart through today's host and the 1.1 host, in two copies.
    let run = |host: &std::path::Path| {
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
    };
    let (output, next_work) = run(&next_host);
    let stderr = stderr_of(&output);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("11/11 nodes succeeded"), "{stderr}");
    // abi_stable's own check refused them; the swapped check let them in.
    assert!(stderr.contains("built against the older plugin-api 1.0.0"), "{stderr}");
    // The 1.1 host read its new root-module field from a 1.0 plugin and got the default.
    let line = stderr
        .lines()
        .find(|l| l.contains("read the 1.1 root-module field") && l.contains("backplane-local"))
        .unwrap_or_else(|| panic!("{stderr}"));
    assert!(line.contains("description=\"\""), "{line}");

    let (output, today_work) = run(std::path::Path::new(env!("CARGO_BIN_EXE_backplane")));
    assert!(output.status.success(), "{}", stderr_of(&output));
    let read = |dir: &tempfile::TempDir| std::fs::read(dir.path().join("out/word-frequencies.tsv")).unwrap();
    assert_eq!(read(&next_work), read(&today_work), "byte-identical results from both hosts");
}
