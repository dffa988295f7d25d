//! Streaming outputs on the real `local` backend: items a node emits reach
//! plain consumers and workflow outputs as the stream's accumulated value;
//! a streaming producer is kept off backends that cannot stream.

use crate::{
    fixtures::{backplane, stderr_of, workflow_dir},
    nats::NatsServer,
};

/// A text streamed by `std.split` (with `split_settings`) into a line count
/// and straight into an output file.
fn split_workflow(text: &str, split_settings: &str) -> String {
    format!(
        "[workflow]\nname = \"split\"\n\n\
         [[node]]\nid = \"text\"\ntype = \"std.const\"\nsettings = {{ text = {text:?} }}\n\n\
         [[node]]\nid = \"split\"\ntype = \"std.split\"\ninputs = {{ text = \"text.text\" }}\nsettings = {{ {split_settings} }}\n\n\
         [[node]]\nid = \"count\"\ntype = \"std.line_count\"\ninputs = {{ text = \"split.items\" }}\n\n\
         [[output]]\nfrom = \"split.items\"\nto = \"again.txt\"\n\n\
         [[output]]\nfrom = \"count.count\"\nto = \"count.txt\"\n"
    )
}

#[test]
fn streamed_items_reach_plain_consumers_and_outputs_as_the_whole_text() {
    let text: String = (0..500).map(|i| format!("line {i} with ü and € inside\n")).collect();
    for settings in ["", "lines = 7", "bytes = 100", "bytes = 1"] {
        let wf = workflow_dir(&split_workflow(&text, settings));
        let output =
            backplane().args(["run", "workflow.toml", "--trace", "trace.tsv"]).current_dir(wf.path()).output().unwrap();
        assert_eq!(output.status.code(), Some(0), "{settings}: {}", stderr_of(&output));
        assert_eq!(std::fs::read_to_string(wf.path().join("again.txt")).unwrap(), text, "{settings}");
        assert_eq!(std::fs::read_to_string(wf.path().join("count.txt")).unwrap(), "500\n", "{settings}");
        // The items came back with the producer's one attempt.
        let trace = std::fs::read_to_string(wf.path().join("trace.tsv")).unwrap();
        let split = trace.lines().find(|l| l.starts_with("split\t")).unwrap();
        let bytes_out: usize = split.split('\t').nth(11).unwrap().parse().unwrap();
        assert_eq!(bytes_out, text.len(), "{settings}: {split}");
    }
}

#[test]
fn nodes_shows_the_stream_and_validate_refuses_a_split_into_nothing() {
    let output = backplane().args(["nodes", "std.split"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(stdout.contains("outputs: items (stream)"), "{stdout}");

    let wf = workflow_dir(&split_workflow("a\n", "lines = 0"));
    let output = backplane().args(["validate", "workflow.toml"]).current_dir(wf.path()).output().unwrap();
    assert_eq!(output.status.code(), Some(2), "{}", stderr_of(&output));
    assert!(stderr_of(&output).contains("at `/lines`: 0 is less than the minimum of 1"), "{}", stderr_of(&output));
}

#[test]
fn a_streaming_producer_is_routed_off_a_backend_that_cannot_stream_or_refused_there() {
    let nats = NatsServer::start();
    let config = format!(
        "default_backend = \"pool\"\n\n{}\n[backends.here]\ntype = \"local\"\n",
        nats.backend_table("pool", "")
    );
    let plan = |workflow: &str| {
        let wf = workflow_dir(workflow);
        std::fs::write(wf.path().join("backplane.toml"), &config).unwrap();
        let output = backplane()
            .args(["plan", "workflow.toml", "--config", "backplane.toml"])
            .current_dir(wf.path())
            .output()
            .unwrap();
        (output.status.code(), String::from_utf8_lossy(&output.stdout).into_owned(), stderr_of(&output))
    };
    // Unpinned, routing finds `here`, which streams, and says why not `pool`.
    let (code, stdout, stderr) = plan(&split_workflow("a\n", ""));
    assert_eq!(code, Some(0), "{stderr}");
    let row = stdout.lines().find(|l| l.starts_with("split ")).unwrap_or_else(|| panic!("{stdout}"));
    assert!(row.contains("here") && row.contains("skipped pool: lacks capability streaming"), "{row}");
    // Pinned to the worker pool, it is a plan-time error naming the instance.
    let pinned =
        split_workflow("a\n", "").replace("type = \"std.split\"\n", "type = \"std.split\"\nbackend = \"pool\"\n");
    let (code, _, stderr) = plan(&pinned);
    assert_eq!(code, Some(2), "{stderr}");
    insta::assert_snapshot!(stderr);
}

#[test]
fn the_third_party_example_streams_words_into_a_plain_consumer() {
    let plugin = crate::verify::example("backplane_example_nodes");
    let workflow = crate::fixtures::workspace_root().join("examples/custom-nodes/workflow.toml");
    let work = workflow_dir(&std::fs::read_to_string(workflow).unwrap());
    let output = backplane()
        .arg("--plugin-dir")
        .arg(plugin.parent().unwrap())
        .args(["run", "workflow.toml"])
        .current_dir(work.path())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    // "Hello from a third-party plugin! / It loads like any other.": ten words.
    assert!(stdout.lines().any(|line| line == "10"), "{stdout}");
    assert!(stdout.contains("Hello from a third-party plugin!"), "{stdout}");
}

#[test]
fn std_files_streams_one_item_per_file_and_accumulates_a_json_array() {
    let wf = workflow_dir(
        "[[node]]\nid = \"files\"\ntype = \"std.files\"\nsettings = { glob = \"data/*.txt\" }\n\n\
         [[output]]\nfrom = \"files.files\"\nto = \"files.json\"\n\n\
         [[output]]\nfrom = \"files.manifest\"\nto = \"manifest.tsv\"\n",
    );
    std::fs::create_dir(wf.path().join("data")).unwrap();
    std::fs::write(wf.path().join("data/b.txt"), "second\n").unwrap();
    std::fs::write(wf.path().join("data/a.txt"), "first \"quoted\"\n").unwrap();
    let output = backplane().args(["run", "workflow.toml"]).current_dir(wf.path()).output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
    let files: serde_json::Value =
        serde_json::from_slice(&std::fs::read(wf.path().join("files.json")).unwrap()).unwrap();
    assert_eq!(
        files,
        serde_json::json!([
            { "path": "data/a.txt", "text": "first \"quoted\"\n" },
            { "path": "data/b.txt", "text": "second\n" },
        ])
    );
    let manifest = std::fs::read_to_string(wf.path().join("manifest.tsv")).unwrap();
    assert_eq!(manifest.lines().count(), 2, "{manifest}");
    assert!(manifest.lines().all(|l| l.starts_with("read\t")), "{manifest}");
}
