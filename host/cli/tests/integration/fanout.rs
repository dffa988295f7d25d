//! Per-item fan-out on the real `local` backend: a node with an `each`
//! input runs once per item of a stream, its results gathered in item order;
//! only a failed item is retried; a failing item stops the producer under
//! fail-fast and drains it under `continue`; a producer never starves the
//! items it waits for, even on one thread.

use crate::fixtures::{run_json, stderr_of, workflow_with_config};
use insta::assert_snapshot;

/// `lines` numbered lines, split one per item, each item through `command`
/// (`std.shell`, the item on stdin) with the given window, gathered to `out.txt`.
fn per_line_workflow(lines: usize, command: &str, window: u32) -> String {
    let text: String = (0..lines).map(|i| format!("{i}\n")).collect();
    format!(
        "[workflow]\nname = \"per-line\"\n\n\
         [[node]]\nid = \"text\"\ntype = \"std.const\"\nsettings = {{ text = {text:?} }}\n\n\
         [[node]]\nid = \"split\"\ntype = \"std.split\"\ninputs = {{ text = \"text.text\" }}\n\n\
         [[node]]\nid = \"each\"\ntype = \"std.shell\"\nsettings = {{ command = {command:?} }}\n\
         inputs = {{ stdin = {{ each = \"split.items\", window = {window} }} }}\n\n\
         [[output]]\nfrom = \"each.stdout\"\nto = \"out.txt\"\n"
    )
}

const TWO_THREADS: &str = "[backends.local]\ntype = \"local\"\nthreads = 2\n";

#[test]
fn each_item_runs_as_its_own_task_and_results_are_gathered_in_item_order() {
    // Items ending in 0 are slow, so later items finish first.
    let command = "read x; case $x in *0) sleep 0.05;; esac; echo \"item $x\"";
    let dir = workflow_with_config(&per_line_workflow(40, command, 4), TWO_THREADS);
    let (code, report, stderr) = run_json(dir.path(), &[]);
    assert_eq!(code, Some(0), "{stderr}");
    let expected: String = (0..40).map(|i| format!("item {i}\n")).collect();
    assert_eq!(std::fs::read_to_string(dir.path().join("out.txt")).unwrap(), expected);
    assert_eq!(report["item_tasks"], 40, "{report}");
    assert_eq!((report["nodes"].as_u64(), report["succeeded"].as_u64()), (Some(3), Some(3)), "{report}");
    // Each item was its own attempt on the instance, beside the three nodes' tasks.
    assert_eq!(report["backends"][0]["attempts"], 2 + 40, "{report}");
}

#[test]
fn only_the_failed_item_is_retried() {
    // Item 7 fails on its first attempt; every run of a command is logged.
    let command = "read x; echo $x >> runs.log; \
                   if [ $x = 7 ] && [ ! -e seen-7 ]; then touch seen-7; exit 3; fi; echo \"ok $x\"";
    let workflow = per_line_workflow(20, command, 8);
    let config = format!("{TWO_THREADS}\n[policy.retry]\nnode_attempts = 2\nbackoff_secs = 0.01\n");
    let dir = workflow_with_config(&workflow, &config);
    let (code, report, stderr) = run_json(dir.path(), &[]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(report["retries"], 1, "{report}");
    let mut runs: Vec<u32> =
        std::fs::read_to_string(dir.path().join("runs.log")).unwrap().lines().map(|l| l.parse().unwrap()).collect();
    runs.sort_unstable();
    let mut expected: Vec<u32> = (0..20).collect();
    expected.insert(8, 7);
    assert_eq!(runs, expected, "item 7 ran twice, every other item once");
    let out: String = (0..20).map(|i| format!("ok {i}\n")).collect();
    assert_eq!(std::fs::read_to_string(dir.path().join("out.txt")).unwrap(), out);
}

#[test]
fn a_failing_item_stops_its_producer_under_fail_fast() {
    // 200,000 items with a window of 2: the producer is stopped, never runs to its end.
    let dir = workflow_with_config(&per_line_workflow(200_000, "read x; [ $x != 3 ]", 2), TWO_THREADS);
    let (code, report, stderr) = run_json(dir.path(), &[]);
    assert_eq!(code, Some(1), "{stderr}");
    let failure = &report["failure"];
    assert_eq!(failure["node"], "each", "{report}");
    assert!(failure["message"].as_str().unwrap().starts_with("item 3: "), "{report}");
    assert_eq!(report["cancelled"], 1, "the producer was cancelled: {report}");
    assert!(report["item_tasks"].as_u64().unwrap() < 100, "the window held the producer back: {report}");
    assert!(!dir.path().join("out.txt").exists());
}

#[test]
fn under_continue_a_failing_item_fails_its_node_and_the_producer_runs_on_for_its_other_readers() {
    let workflow = per_line_workflow(2_000, "read x; [ $x != 3 ]", 2)
        + "\n[[node]]\nid = \"after\"\ntype = \"std.noop\"\ninputs = { in = \"each.stdout\" }\n\n\
           [[node]]\nid = \"whole\"\ntype = \"std.line_count\"\ninputs = { text = \"split.items\" }\n\n\
           [[output]]\nfrom = \"whole.count\"\nto = \"count.txt\"\n";
    let config = format!("{TWO_THREADS}\n[policy]\nfailure = \"continue\"\n");
    let dir = workflow_with_config(&workflow, &config);
    let (code, report, stderr) = run_json(dir.path(), &[]);
    assert_eq!(code, Some(1), "{stderr}");
    assert_eq!((report["failed"].as_u64(), report["skipped"].as_u64()), (Some(1), Some(1)), "{report}");
    assert_eq!(std::fs::read_to_string(dir.path().join("count.txt")).unwrap(), "2000\n", "{stderr}");
}

#[test]
fn a_producer_and_its_items_share_one_thread_without_waiting_on_each_other() {
    let config = "[backends.local]\ntype = \"local\"\nthreads = 1\n";
    let workflow = per_line_workflow(3_000, "", 1)
        .replace("type = \"std.shell\"\nsettings = { command = \"\" }", "type = \"std.noop\"")
        .replace("stdin = {", "in = {")
        .replace("each.stdout", "each.out");
    let dir = workflow_with_config(&workflow, config);
    let (code, report, stderr) = run_json(dir.path(), &[]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(report["item_tasks"], 3_000, "{report}");
    let expected: String = (0..3_000).map(|i| format!("{i}\n")).collect();
    assert_eq!(std::fs::read_to_string(dir.path().join("out.txt")).unwrap(), expected);
}

#[test]
fn each_edges_that_cannot_be_are_plan_time_errors_at_their_place() {
    let workflow = "[workflow]\nname = \"bad-each\"\n\n\
        [[node]]\nid = \"text\"\ntype = \"std.const\"\nsettings = { text = \"a\\n\" }\n\n\
        [[node]]\nid = \"split\"\ntype = \"std.split\"\ninputs = { text = \"text.text\" }\n\n\
        [[node]]\nid = \"not-a-stream\"\ntype = \"std.noop\"\ninputs = { in = { each = \"text.text\" } }\n\n\
        [[node]]\nid = \"per-item\"\ntype = \"std.split\"\ninputs = { text = { each = \"split.items\" } }\n\n\
        [[node]]\nid = \"chained\"\ntype = \"std.noop\"\ninputs = { in = { each = \"per-item.items\" } }\n\n\
        [[node]]\nid = \"chained-again\"\ntype = \"std.noop\"\ninputs = { in = { each = \"per-item.items\" } }\n\n\
        [[node]]\nid = \"two\"\ntype = \"std.shell\"\nsettings = { command = \"cat\" }\n\
        inputs = { stdin = { each = \"split.items\" }, files = { each = \"split.items\" } }\n\n\
        [[node]]\nid = \"windows\"\ntype = \"std.noop\"\ninputs = { in = { each = \"split.items\", window = 0, widow = 3 } }\n\n\
        [[node]]\nid = \"count\"\ntype = \"std.line_count\"\ninputs = { text = \"split.items\" }\n\n\
        [[node]]\nid = \"waits\"\ntype = \"std.shell\"\nsettings = { command = \"cat\" }\n\
        inputs = { stdin = { each = \"split.items\" }, files = \"count.count\" }\n";
    let dir = workflow_with_config(workflow, TWO_THREADS);
    let output = crate::fixtures::command_in(dir.path(), &["validate"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert_snapshot!(stderr_of(&output));
}

/// A copy of the quickstart, with `per-file.toml` beside its workflow and `config`.
fn quickstart_with_per_file(config: &str) -> tempfile::TempDir {
    let dir = crate::fixtures::quickstart_copy(config);
    let per_file = crate::fixtures::workspace_root().join("examples/quickstart/per-file.toml");
    std::fs::copy(per_file, dir.path().join("per-file.toml")).unwrap();
    dir
}

/// `backplane run WORKFLOW --json` in `dir`, which must succeed: its report.
fn run_report(dir: &std::path::Path, workflow: &str) -> serde_json::Value {
    let output = crate::fixtures::backplane()
        .current_dir(dir)
        .args(["run", workflow, "--config", "backplane.toml", "--json"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{workflow}: {}", stderr_of(&output));
    serde_json::from_slice(&output.stdout).unwrap()
}

#[test]
fn the_quickstart_counted_per_file_gives_the_static_quickstarts_result() {
    let config =
        std::fs::read_to_string(crate::fixtures::workspace_root().join("examples/quickstart/backplane.toml")).unwrap();
    let dir = quickstart_with_per_file(&config);
    run_report(dir.path(), "workflow.toml");
    let report = run_report(dir.path(), "per-file.toml");
    let files = std::fs::read_dir(dir.path().join("docs")).unwrap().count() as u64;
    assert_eq!(report["item_tasks"], 3 * files, "three per-file stages: {report}");
    let read = |path: &str| std::fs::read(dir.path().join("out").join(path)).unwrap();
    let counts = read("word-frequencies.tsv");
    assert!(counts.len() > 100, "the static quickstart counted words");
    assert_eq!(String::from_utf8(read("per-file/word-frequencies.tsv")).unwrap(), String::from_utf8(counts).unwrap());
    assert_eq!(read("per-file/word-frequencies.b3"), read("word-frequencies.b3"));
}

#[test]
fn items_are_cached_by_content_so_an_edited_file_reruns_only_its_own_chain() {
    let cache = tempfile::tempdir().unwrap();
    let config = format!("[backends.local]\ntype = \"local\"\n\n[cache]\ndir = \"{}\"\n", cache.path().display());
    let dir = quickstart_with_per_file(&config);
    let files = std::fs::read_dir(dir.path().join("docs")).unwrap().count() as u64;
    let run = |workflow: &str| {
        let report = run_report(dir.path(), workflow);
        (report["item_tasks"].as_u64(), report["item_cache_hits"].as_u64())
    };
    assert_eq!(run("per-file.toml"), (Some(3 * files), Some(0)), "the first run computes every item");
    assert_eq!(run("per-file.toml"), (Some(3 * files), Some(3 * files)), "the second finds every item");
    // One document changes: its three stages run again, every other file's are found.
    let first = std::fs::read_dir(dir.path().join("docs")).unwrap().map(|e| e.unwrap().path()).min().unwrap();
    let mut text = std::fs::read_to_string(&first).unwrap();
    text.push_str("backplane backplane backplane\n");
    std::fs::write(&first, text).unwrap();
    assert_eq!(run("per-file.toml"), (Some(3 * files), Some(3 * (files - 1))));
    let read = |path: &str| std::fs::read_to_string(dir.path().join("out").join(path)).unwrap();
    let per_file_counts = read("per-file/word-frequencies.tsv");
    run("workflow.toml");
    assert_eq!(per_file_counts, read("word-frequencies.tsv"), "the partly cached result is the fresh static one");
    assert!(per_file_counts.contains("backplane\t"), "{per_file_counts}");
}
