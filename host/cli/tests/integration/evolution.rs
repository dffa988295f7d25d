//! ABI evolution across minor versions, both ways, with real builds:
//! - 1.3 (today) added `emit` to the compute context and the completion
//!   sink (streaming outputs): a backend built against 1.2 runs in today's
//!   host, which keeps streaming producers off it (it lacks the capability);
//!   today's plugins load and run in the real host built against 1.2, where
//!   a streaming producer fails with a message that says to upgrade;
//! - 1.2 added the completion sink's `started` and `log` and the compute
//!   context's `log`: a backend built against 1.1 runs in today's host
//!   (which then counts its tasks as running from dispatch and keeps no
//!   logs from it), and today's node plugins compute on it;
//! - 1.1 added the node spec's settings check: a plugin built against 1.0
//!   still loads and runs in today's host (its types have no check);
//! - an invented next minor (1.4) with one of each append-only change: its
//!   plugin in today's host, and today's plugins in the host built against it.
//!
//! (A breaking change is rejected: see `loading`.)

use crate::fixtures::{
    NEXT_MINOR, OLDEST_MINOR, PREVIOUS_MINOR, backplane, bin_dir, minor_1_1_plugin, next_minor_host, next_minor_plugin,
    oldest_minor_plugin, previous_minor_host, previous_minor_plugin, stderr_of, workflow_dir,
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
    assert_eq!(std::fs::read_to_string(wf.path().join("hello.txt")).unwrap(), "hello from plugin-api 1.4\n");

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
        .find(|l| l.contains("read the 1.4 root-module field") && l.contains("backplane-local"))
        .unwrap_or_else(|| panic!("{stderr}"));
    assert!(line.contains("description=\"\""), "{line}");

    let (output, today_work) = quickstart_on(std::path::Path::new(env!("CARGO_BIN_EXE_backplane")));
    assert!(output.status.success(), "{}", stderr_of(&output));
    let read = |dir: &tempfile::TempDir| std::fs::read(dir.path().join("out/word-frequencies.tsv")).unwrap();
    assert_eq!(read(&next_work), read(&today_work), "byte-identical results from both hosts");
}

#[test]
fn a_plugin_built_against_the_first_minor_loads_and_runs_in_this_host() {
    let plugin = oldest_minor_plugin();
    let output =
        backplane().args(["-vv", "plugins", "--json", "--plugin-dir"]).arg(plugin.parent().unwrap()).output().unwrap();
    let json: Value = serde_json::from_slice(&output.stdout).unwrap();
    let loaded = json["plugins"].as_array().unwrap().iter().find(|p| p["name"] == "abi-fixture-oldest-minor");
    let loaded = loaded.unwrap_or_else(|| panic!("the {OLDEST_MINOR} plugin did not load: {json}"));
    assert_eq!(loaded["interface_version"], OLDEST_MINOR);
    assert!(stderr_of(&output).contains(&format!("built against the older plugin-api {OLDEST_MINOR}")));

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

/// Two `std.shell` nodes that print to stderr and succeed, one on `backend`.
fn shell_pair_on(backend: &str) -> String {
    format!(
        "[[node]]\nid = \"here\"\ntype = \"std.shell\"\nsettings = {{ command = \"echo said-here >&2; echo out\" }}\n\n\
         [[node]]\nid = \"there\"\ntype = \"std.shell\"\nbackend = \"{backend}\"\n\
         settings = {{ command = \"echo said-there >&2; echo out\" }}\n"
    )
}

#[test]
fn a_backend_built_against_1_1_runs_in_this_host_without_start_or_logs() {
    let plugin = minor_1_1_plugin();
    let wf = workflow_dir(&shell_pair_on("old"));
    let config = "default_backend = \"local\"\n\n[backends.local]\ntype = \"local\"\n\n[backends.old]\ntype = \"fixture-pool\"\n";
    std::fs::write(wf.path().join("backplane.toml"), config).unwrap();
    let output = backplane()
        .arg("--plugin-dir")
        .arg(plugin.parent().unwrap())
        .arg("--plugin-dir")
        .arg(bin_dir())
        .args(["run", "workflow.toml", "--config", "backplane.toml", "--trace", "trace.tsv"])
        .current_dir(wf.path())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
    let trace = std::fs::read_to_string(wf.path().join("trace.tsv")).unwrap();
    let row = |node: &str| -> Vec<String> {
        let line = trace.lines().find(|l| l.starts_with(&format!("{node}\t"))).unwrap_or_else(|| panic!("{trace}"));
        line.split('\t').map(str::to_owned).collect()
    };
    // Columns: node type instance attempt status submit start complete queued ...
    let (old, today) = (row("there"), row("here"));
    assert_eq!((old[2].as_str(), old[4].as_str()), ("old", "succeeded"));
    assert_eq!(old[5], old[6], "a 1.1 backend never says when a task starts: it runs from dispatch");
    assert_eq!(old[8], "0.000000");
    assert_ne!(today[5], today[6], "today's local backend says when each task starts");
    // Today's std.shell logged its stderr on both; only today's pool forwarded it.
    let logs = |node: &str| {
        let output = backplane().args(["logs", node]).current_dir(wf.path()).output().unwrap();
        assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
        crate::fixtures::stdout_of(&output)
    };
    assert!(logs("here").contains("said-here"), "{}", logs("here"));
    let old_logs = logs("there");
    assert!(old_logs.contains("(nothing logged)") && !old_logs.contains("said-there"), "{old_logs}");
}

/// `std.split` streaming a text into `std.line_count`, placed by `backend`
/// (empty: by routing).
fn split_and_count(backend: &str) -> String {
    let backend = if backend.is_empty() { String::new() } else { format!("backend = \"{backend}\"\n") };
    format!(
        "[[node]]\nid = \"text\"\ntype = \"std.const\"\nsettings = {{ text = \"a\\nb\\nc\\n\" }}\n\n\
         [[node]]\nid = \"split\"\ntype = \"std.split\"\ninputs = {{ text = \"text.text\" }}\n{backend}\n\
         [[node]]\nid = \"count\"\ntype = \"std.line_count\"\ninputs = {{ text = \"split.items\" }}\n\n\
         [[output]]\nfrom = \"count.count\"\nto = \"count.txt\"\n"
    )
}

#[test]
fn a_backend_built_against_the_previous_minor_runs_in_this_host_and_streaming_producers_stay_off_it() {
    let plugin = previous_minor_plugin();
    let config =
        "default_backend = \"old\"\n\n[backends.local]\ntype = \"local\"\n\n[backends.old]\ntype = \"fixture-pool\"\n";
    let run = |workflow: &str| {
        let wf = workflow_dir(workflow);
        std::fs::write(wf.path().join("backplane.toml"), config).unwrap();
        let output = backplane()
            .arg("--plugin-dir")
            .arg(plugin.parent().unwrap())
            .arg("--plugin-dir")
            .arg(bin_dir())
            .args(["run", "workflow.toml", "--config", "backplane.toml"])
            .current_dir(wf.path())
            .output()
            .unwrap();
        (output, wf)
    };
    // By routing: the producer goes to `local`, the rest to the 1.2 default.
    let (output, wf) = run(&split_and_count(""));
    assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
    assert_eq!(std::fs::read_to_string(wf.path().join("count.txt")).unwrap(), "3\n");
    let stderr = stderr_of(&output);
    assert!(stderr.contains("old (fixture-pool): 2 nodes") && stderr.contains("local (local): 1 node"), "{stderr}");
    // Pinned to the 1.2 backend, it is refused before anything runs.
    let (output, _) = run(&split_and_count("old"));
    assert_eq!(output.status.code(), Some(2), "{}", stderr_of(&output));
    let stderr = stderr_of(&output);
    assert!(stderr.contains("no backend can run node `split` (std.split)"), "{stderr}");
    assert!(stderr.contains("old: lacks capability streaming"), "{stderr}");
    assert!(stderr.contains("`std.split` streams its output `items`"), "{stderr}");
}

#[test]
fn todays_plugins_load_and_run_in_a_host_built_against_the_previous_minor() {
    let old_host = previous_minor_host();
    crate::fixtures::ensure_plugins_built();
    let wf = workflow_dir(&shell_pair_on("local"));
    let run = run_with(&old_host, wf.path(), &["-vv"]);
    let stderr = stderr_of(&run);
    assert_eq!(run.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("loaded plugin") && stderr.contains("plugin=backplane-std-nodes"), "{stderr}");
    assert!(stderr.contains("2/2 nodes succeeded"), "{stderr}");

    // The quickstart runs on the 1.2 host with today's plugins.
    let (output, _work) = quickstart_on(&old_host);
    assert!(stderr_of(&output).contains("11/11 nodes succeeded"), "{}", stderr_of(&output));

    // Today's local backend hands streamed items to the sink; the 1.2 host's
    // sink has no `emit`, so the call falls back to its default, and the
    // producer fails saying why instead of losing its items.
    let wf = workflow_dir(&split_and_count(""));
    let run = run_with(&old_host, wf.path(), &[]);
    let stderr = stderr_of(&run);
    assert_eq!(run.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("split"), "{stderr}");
    assert!(
        stderr.contains(
            "this host was built against plugin-api before 1.3 and cannot take streamed items; upgrade backplane"
        ),
        "{stderr}"
    );
    assert!(!wf.path().join("count.txt").exists(), "nothing downstream ran on a lost stream ({PREVIOUS_MINOR} host)");
}

/// Runs a copy of the quickstart with `host` (`-vv`) and today's plugins.
fn quickstart_on(host: &std::path::Path) -> (std::process::Output, tempfile::TempDir) {
    let work = crate::fixtures::example_copy("quickstart");
    let output = run_with(host, work.path(), &["-vv", "--config", "backplane.toml"]);
    (output, work)
}

/// Runs `dir`'s `workflow.toml` with `host` and today's plugins, global
/// options `global` first, in a clean environment.
fn run_with(host: &std::path::Path, dir: &std::path::Path, global: &[&str]) -> std::process::Output {
    std::process::Command::new(host)
        .env_remove("BACKPLANE_CONFIG")
        .env_remove("BACKPLANE_PLUGIN_PATH")
        .args(global)
        .arg("--plugin-dir")
        .arg(bin_dir())
        .args(["run", "workflow.toml"])
        .current_dir(dir)
        .output()
        .unwrap()
}
