//! Seeing a run: the HTML report in a real headless Chromium, TSV and Chrome
//! traces, per-node logs, Prometheus metrics from a run and from a worker,
//! and per-backend statistics in `--json`.

use crate::{
    fixtures::{backplane, example_copy, free_port, http_get, render_in_chromium, stderr_of, stdout_of, workflow_dir},
    nats::{NatsServer, WorkerProcess, wait_until},
};
use serde_json::Value;
use std::{path::Path, time::Duration};

/// The text of `dom` between the first `<{tag} id="{id}"` and its closing tag.
fn element<'a>(dom: &'a str, tag: &str, id: &str) -> &'a str {
    let start = dom.find(&format!("<{tag} id=\"{id}\"")).unwrap_or_else(|| panic!("no #{id} in the DOM"));
    let end = start + dom[start..].find(&format!("</{tag}>")).unwrap();
    &dom[start..end]
}

/// An attribute of the element with `id`, as the DOM shows it (the first
/// tag with that id and attribute: the page's comments mention ids too).
fn attribute(dom: &str, id: &str, name: &str) -> String {
    let needle = format!("id=\"{id}\"");
    for (at, _) in dom.match_indices(&needle) {
        let tag_start = dom[..at].rfind('<').unwrap();
        let tag = &dom[tag_start..at + dom[at..].find('>').unwrap()];
        if let Some(found) = tag.find(&format!(" {name}=\"")) {
            let value = &tag[found + name.len() + 3..];
            return value[..value.find('"').unwrap()].to_owned();
        }
    }
    panic!("no #{id} with {name} in the DOM")
}

/// Checks a report page in Chromium: it rendered without a console line,
/// with `nodes` rows in the node table (its first page) and `bars` bars.
fn check_report_renders(page: &Path, rows: usize, bars: usize) -> String {
    let html = std::fs::read_to_string(page).unwrap();
    for fetch in ["src=\"http", "href=\"http", "url(http", "@import", "src=\"//", "href=\"//"] {
        assert!(!html.contains(fetch), "the report fetches something ({fetch}): it must work offline");
    }
    let (dom, console) = render_in_chromium(page);
    assert!(console.is_empty(), "console lines: {console:#?}");
    assert_eq!(attribute(&dom, "report-data", "type"), "application/json");
    assert!(dom.contains("data-rendered=\"1\""), "the page did not finish rendering");
    let errors = element(&dom, "pre", "report-errors");
    assert_eq!(&errors[errors.find('>').unwrap() + 1..], "", "errors in the page");
    let table = element(&dom, "table", "nodes");
    assert_eq!(table.matches("class=\"node-row\"").count(), rows, "node rows");
    assert_eq!(attribute(&dom, "timeline", "data-bars"), bars.to_string(), "timeline bars");
    dom
}

/// The TSV trace's rows as fields, after checking its header.
fn trace_rows(path: &Path) -> Vec<Vec<String>> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    assert_eq!(
        lines.next().unwrap(),
        "node\ttype\tinstance\tattempt\tstatus\tsubmit\tstart\tcomplete\tqueued\tduration\tbytes_in\tbytes_out\tcache\terror"
    );
    lines.map(|l| l.split('\t').map(str::to_owned).collect()).collect()
}

#[test]
fn the_quickstart_and_routing_examples_write_a_report_and_traces_that_a_browser_renders() {
    for example in ["quickstart", "routing"] {
        let dir = example_copy(example);
        let output = backplane()
            .args(["run", "workflow.toml", "--config", "backplane.toml", "--json"])
            .args(["--report", "report.html", "--trace", "trace.tsv", "--trace-json", "trace.json"])
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(0), "{example}: {}", stderr_of(&output));
        let report: Value = serde_json::from_slice(&output.stdout).unwrap();
        let nodes = report["nodes"].as_u64().unwrap() as usize;
        let attempts: usize =
            report["backends"].as_array().unwrap().iter().map(|b| b["attempts"].as_u64().unwrap() as usize).sum();
        for backend in report["backends"].as_array().unwrap() {
            assert_eq!(backend["success_rate"], 1.0, "{backend}");
            let (mean, p95) = (backend["mean_secs"].as_f64().unwrap(), backend["p95_secs"].as_f64().unwrap());
            assert!(mean > 0.0 && p95 > 0.0 && p95 <= report["elapsed"].as_f64().unwrap(), "{backend}");
        }

        // One TSV row per attempt, each in order: submitted, started, completed.
        let rows = trace_rows(&dir.path().join("trace.tsv"));
        assert_eq!(rows.len(), attempts, "{example}");
        let instances: Vec<&str> =
            report["backends"].as_array().unwrap().iter().map(|b| b["instance"].as_str().unwrap()).collect();
        for row in &rows {
            let time = |i: usize| row[i].parse::<f64>().unwrap();
            assert!(time(5) <= time(6) && time(6) <= time(7), "{row:?}");
            assert_eq!(row[4], "succeeded");
            assert!(instances.contains(&row[2].as_str()), "{row:?} not on {instances:?}");
        }

        // The Chrome trace: a complete event per attempt, on a named process per instance.
        let trace: Value =
            serde_json::from_str(&std::fs::read_to_string(dir.path().join("trace.json")).unwrap()).unwrap();
        let events = trace["traceEvents"].as_array().unwrap();
        let complete: Vec<&Value> = events.iter().filter(|e| e["ph"] == "X").collect();
        assert_eq!(complete.len(), attempts);
        let processes: Vec<u64> =
            events.iter().filter(|e| e["name"] == "process_name").map(|e| e["pid"].as_u64().unwrap()).collect();
        for event in complete {
            assert!(processes.contains(&event["pid"].as_u64().unwrap()), "{event}");
            assert!(event["ts"].as_i64().unwrap() >= 0 && event["dur"].as_i64().unwrap() >= 0, "{event}");
        }

        check_report_renders(&dir.path().join("report.html"), nodes, attempts);
        // `backplane report` makes the same page from the run's record.
        let again = backplane().args(["report", "-o", "again.html"]).current_dir(dir.path()).output().unwrap();
        assert_eq!(again.status.code(), Some(0), "{}", stderr_of(&again));
        assert_eq!(
            std::fs::read(dir.path().join("again.html")).unwrap(),
            std::fs::read(dir.path().join("report.html")).unwrap(),
            "{example}: the report of a past run is the run's own"
        );
    }
}

#[test]
fn a_report_of_100000_nodes_stays_under_20_mb_and_usable_in_a_browser() {
    let mut workflow = String::from("[workflow]\nname = \"wide\"\n");
    for i in 0..100_000 {
        workflow.push_str(&format!("[[node]]\nid = \"n{i}\"\ntype = \"std.const\"\nsettings = {{ text = \"x\" }}\n"));
    }
    let dir = workflow_dir(&workflow);
    let output = backplane()
        .args(["run", "workflow.toml", "--report", "report.html", "--no-progress"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
    let size = std::fs::metadata(dir.path().join("report.html")).unwrap().len();
    assert!(size < 20 << 20, "{size} bytes");
    // The first page of the table, and every attempt on the timeline (a canvas at this size).
    let dom = check_report_renders(&dir.path().join("report.html"), 100, 100_000);
    assert_eq!(attribute(&dom, "timeline", "data-mode"), "canvas");
}

const SHOUTING: &str = "[[node]]\nid = \"shout\"\ntype = \"std.shell\"\n\
                        settings = { command = \"echo building >&2; echo 'step 2 of 2' >&2; echo done\" }\n";

#[test]
fn logs_shows_what_a_successful_shell_node_printed_on_stderr() {
    let dir = workflow_dir(SHOUTING);
    let run = backplane().args(["run", "workflow.toml"]).current_dir(dir.path()).output().unwrap();
    assert_eq!(run.status.code(), Some(0), "{}", stderr_of(&run));
    let logs = backplane().args(["logs", "shout"]).current_dir(dir.path()).output().unwrap();
    assert_eq!(logs.status.code(), Some(0), "{}", stderr_of(&logs));
    let text = stdout_of(&logs);
    let run_id = text.split_whitespace().nth(1).unwrap().trim_end_matches(',').to_owned();
    insta::assert_snapshot!(text.replace(&run_id, "<run id>"), @r"
    run <run id>, node `shout` (std.shell), succeeded
    ── attempt 1 on local: succeeded ──
    info  building
    info  step 2 of 2
    ");
    // By run id too, and as JSON; the record names the attempt's log lines.
    let json = backplane().args(["logs", &run_id, "shout", "--json"]).current_dir(dir.path()).output().unwrap();
    let json: Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(json["lines"][1]["message"], "step 2 of 2");
    assert_eq!(json["tries"][0]["log_lines"], 2);
    // A node the run does not have.
    let wrong = backplane().args(["logs", "shot"]).current_dir(dir.path()).output().unwrap();
    assert_eq!(wrong.status.code(), Some(2));
    insta::assert_snapshot!(stderr_of(&wrong).replace(&run_id, "<run id>"), @r"
    error: run <run id> has no node `shot`
      help: did you mean `shout`?
    ");
}

/// The lines of the exposition `body` for `metric` with every label in `labels`.
fn series<'a>(body: &'a str, metric: &str, labels: &[&str]) -> Vec<&'a str> {
    body.lines()
        .filter(|l| l.starts_with(&format!("{metric}{{")) && labels.iter().all(|label| l.contains(label)))
        .collect()
}

#[test]
fn a_run_serves_per_instance_metrics_while_it_goes_on() {
    let workflow = "[[node]]\nid = \"quick\"\ntype = \"std.const\"\nsettings = { text = \"x\" }\nbackend = \"small\"\n\n\
                    [[node]]\nid = \"slow\"\ntype = \"std.shell\"\nsettings = { command = \"sleep 4; echo done\" }\nbackend = \"big\"\n";
    let dir = workflow_dir(workflow);
    let config = "default_backend = \"small\"\n\n[backends.small]\ntype = \"local\"\nthreads = 1\n\n\
                  [backends.big]\ntype = \"local\"\nthreads = 2\n";
    std::fs::write(dir.path().join("backplane.toml"), config).unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let mut child = crate::fixtures::backplane_process()
        .args(["run", "workflow.toml", "--config", "backplane.toml", "--metrics-addr", &addr])
        .current_dir(dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut body = String::new();
    wait_until(Duration::from_secs(20), "the slow node in flight on `big` and the quick one done", || {
        body = http_get(&addr, "/metrics").unwrap_or_default();
        series(&body, "backplane_tasks_in_flight", &["instance=\"big\""]).iter().any(|l| l.ends_with(" 1"))
            && !series(&body, "backplane_tasks_total", &["instance=\"small\"", "outcome=\"succeeded\""]).is_empty()
    });
    assert!(
        series(&body, "backplane_tasks_in_flight", &["instance=\"small\"", "backend=\"local\""])[0].ends_with(" 0")
    );
    // Latency histograms with real buckets, per instance.
    let buckets = series(&body, "backplane_task_total_seconds_bucket", &["instance=\"small\""]);
    assert!(buckets.len() > 10 && buckets.iter().any(|l| l.contains("le=\"0.001\"")), "{body}");
    assert!(!series(&body, "backplane_task_queued_seconds_count", &["instance=\"small\""]).is_empty(), "{body}");
    let status = child.wait().unwrap();
    assert!(status.success());
}

#[test]
fn a_worker_serves_its_metrics_where_told() {
    let nats = NatsServer::start();
    let addr = format!("127.0.0.1:{}", free_port());
    let worker = WorkerProcess::start(&nats, "wm", "default", &["--metrics-addr", &addr]);
    assert!(worker.log().contains(&format!("serving metrics at http://{addr}/metrics")), "{}", worker.log());
    let workflow = "[[node]]\nid = \"seed\"\ntype = \"std.const\"\nsettings = { text = \"x\" }\n\n\
                    [[node]]\nid = \"away\"\ntype = \"std.noop\"\ninputs = { in = \"seed.text\" }\nbackend = \"workers\"\n";
    let dir = workflow_dir(workflow);
    std::fs::write(
        dir.path().join("backplane.toml"),
        format!("[backends.local]\ntype = \"local\"\n\n{}", nats.backend_table("workers", "")),
    )
    .unwrap();
    let run = backplane()
        .args(["run", "workflow.toml", "--config", "backplane.toml"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(0), "{}", stderr_of(&run));
    let body = http_get(&addr, "/metrics").expect("the worker answers on /metrics");
    let done =
        series(&body, "backplane_worker_tasks_total", &["pool=\"default\"", "worker=\"wm\"", "outcome=\"succeeded\""]);
    assert_eq!(done.len(), 1, "{body}");
    assert!(done[0].ends_with(" 1"), "{body}");
    assert!(!series(&body, "backplane_worker_task_running_seconds_bucket", &["worker=\"wm\""]).is_empty(), "{body}");
}
