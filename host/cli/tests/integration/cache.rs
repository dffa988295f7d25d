//! The result cache and run records through the real binary: resume,
//! explained misses, `--no-cache`/`--rerun`, provenance, damaged and foreign
//! caches, two processes sharing one cache, and kill -9 at random points.

use crate::fixtures::{backplane, backplane_process, quickstart_copy, run_json, stderr_of, stdout_of};
use serde_json::Value;
use std::{collections::BTreeMap, path::Path};

const LOCAL: &str = "[backends.local]\ntype = \"local\"\nthreads = 2\n";

/// `id -> (cache, cache_reason)` of a `--json` report.
fn cache_of(report: &Value) -> BTreeMap<String, (String, String)> {
    report["node_results"]
        .as_array()
        .expect("node_results")
        .iter()
        .map(|n| {
            let text = |k: &str| n[k].as_str().unwrap_or_default().to_owned();
            (text("id"), (text("cache"), text("cache_reason")))
        })
        .collect()
}

fn run_ok(dir: &Path, args: &[&str]) -> Value {
    let output = backplane()
        .current_dir(dir)
        .args(["run", "--json", "workflow.toml", "--config", "backplane.toml"])
        .args(args)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
    serde_json::from_slice(&output.stdout).unwrap()
}

fn outputs(dir: &Path) -> (Vec<u8>, Vec<u8>) {
    let read = |name: &str| std::fs::read(dir.join("out").join(name)).unwrap();
    (read("word-frequencies.tsv"), read("word-frequencies.b3"))
}

#[test]
fn a_second_run_executes_only_the_source_and_reports_the_rest_cached() {
    let dir = quickstart_copy(LOCAL);
    let first = run_ok(dir.path(), &[]);
    assert_eq!((first["cached"].as_u64(), first["executed"].as_u64()), (Some(0), Some(11)));
    assert!(cache_of(&first).values().filter(|c| c.0 == "miss").all(|c| c.1 == "new"), "{first:#}");
    let produced = outputs(dir.path());

    let output = backplane()
        .current_dir(dir.path())
        .args(["run", "workflow.toml", "--config", "backplane.toml"])
        .output()
        .unwrap();
    let stderr = stderr_of(&output);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("11/11 nodes succeeded in") && stderr.contains("(10 cached, 1 ran)"), "{stderr}");
    assert!(stderr.contains("local (local): 1 nodes"), "{stderr}");
    assert_eq!(outputs(dir.path()), produced, "cached outputs are byte-identical");

    let second = run_ok(dir.path(), &[]);
    let cache = cache_of(&second);
    assert_eq!(cache["read"], ("off".into(), "std.read_files is not deterministic".into()));
    let first_id = first["run_id"].as_str().unwrap();
    for (id, (status, reason)) in &cache {
        if id != "read" {
            assert_eq!(status, "hit", "{id}: {reason}");
            assert_eq!(reason, &format!("stored by run {first_id}"));
        }
    }
    // Settings written in another key order are the same settings: still hits.
    let workflow = dir.path().join("workflow.toml");
    let text = std::fs::read_to_string(&workflow).unwrap();
    assert!(text.contains("settings = { index = 0, count = 2 }"), "the quickstart's chunk settings changed");
    std::fs::write(
        &workflow,
        text.replace("settings = { index = 0, count = 2 }", "settings = { count = 2, index = 0 }"),
    )
    .unwrap();
    let reordered = run_ok(dir.path(), &[]);
    assert_eq!(reordered["cached"].as_u64(), Some(10), "{reordered:#}");
    let results = second["node_results"].as_array().unwrap();
    assert!(results.iter().all(|n| n["status"] == "succeeded" && n["backend"] == "local"), "{second:#}");
    assert_eq!(results.iter().find(|n| n["id"] == "merge").unwrap()["hit_from"], first_id);
}

#[test]
fn an_edited_document_reruns_only_what_its_content_reaches_and_a_setting_change_says_what_changed() {
    let dir = quickstart_copy(LOCAL);
    run_ok(dir.path(), &[]);
    // One stop word for another in the first document: both halves read the
    // new text, only the first half's lines differ, and without stop words
    // its words are the same again.
    let doc = dir.path().join("docs/backends.txt");
    let text = std::fs::read_to_string(&doc).unwrap();
    assert!(text.contains(" the same "), "the fixture sentence is gone from backends.txt");
    std::fs::write(&doc, text.replacen(" the same ", " a same ", 1)).unwrap();
    let report = run_ok(dir.path(), &[]);
    let cache = cache_of(&report);
    for id in ["half-1", "half-2", "words-1", "content-1"] {
        assert_eq!(cache[id], ("miss".into(), "input text changed".into()), "{id}: {cache:#?}");
    }
    for id in ["words-2", "content-2", "count-1", "count-2", "merge", "digest"] {
        assert_eq!(cache[id].0, "hit", "{id}: {cache:#?}");
    }
    assert_eq!((report["cached"].as_u64(), report["executed"].as_u64()), (Some(6), Some(5)));
    let fresh = quickstart_copy(LOCAL);
    std::fs::copy(&doc, fresh.path().join("docs/backends.txt")).unwrap();
    run_ok(fresh.path(), &["--no-cache"]);
    assert_eq!(outputs(dir.path()), outputs(fresh.path()), "a resumed run writes what a fresh one does");

    let workflow = dir.path().join("workflow.toml");
    let text = std::fs::read_to_string(&workflow).unwrap();
    assert!(text.contains("default = 20"), "the quickstart's `top` parameter is gone");
    let text = text.replace("default = 20", "default = 30");
    std::fs::write(&workflow, text).unwrap();
    let report = run_ok(dir.path(), &[]);
    let cache = cache_of(&report);
    assert_eq!(cache["merge"], ("miss".into(), "settings changed: top 20 -> 30".into()));
    assert_eq!(cache["digest"], ("miss".into(), "input data changed".into()));
    assert_eq!((report["cached"].as_u64(), report["executed"].as_u64()), (Some(8), Some(3)));
}

#[test]
fn no_cache_neither_reads_nor_writes_and_rerun_reruns_only_the_matches() {
    let dir = quickstart_copy(LOCAL);
    let report = run_ok(dir.path(), &["--no-cache"]);
    assert!(cache_of(&report).values().all(|c| c == &("off".into(), "the run has no cache (--no-cache)".into())));
    assert!(!dir.path().join(".backplane/cache").exists(), "--no-cache created a cache");
    run_ok(dir.path(), &[]);
    let report = run_ok(dir.path(), &["--no-cache"]);
    assert_eq!((report["cached"].as_u64(), report["executed"].as_u64()), (Some(0), Some(11)));

    let report = run_ok(dir.path(), &["--rerun", "count-*", "--rerun", "digest"]);
    let cache = cache_of(&report);
    for id in ["count-1", "count-2", "digest"] {
        assert_eq!(cache[id], ("miss".into(), "--rerun asked for it".into()), "{id}");
    }
    // Same counts, so their consumer hits.
    assert_eq!(cache["merge"].0, "hit");
    let bad = backplane()
        .current_dir(dir.path())
        .args(["run", "workflow.toml", "--config", "backplane.toml", "--rerun", "count-[1"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(stderr_of(&bad).contains("--rerun `count-[1` is not a glob"), "{}", stderr_of(&bad));
}

#[test]
fn provenance_traces_an_output_to_the_documents_it_was_read_from() {
    let dir = quickstart_copy(LOCAL);
    let report = run_ok(dir.path(), &[]);
    let out = dir.path().join("out/word-frequencies.tsv");
    let lineage = |args: &[&str]| {
        let output = backplane().arg("provenance").arg(&out).args(args).output().unwrap();
        assert!(output.status.success(), "{}", stderr_of(&output));
        stdout_of(&output)
    };
    let json: Value = serde_json::from_str(&lineage(&["--json"])).unwrap();
    assert_eq!(json["run_id"], report["run_id"]);
    assert_eq!(json["on_disk"], "unchanged");
    assert_eq!(json["blake3"], blake3::hash(&std::fs::read(&out).unwrap()).to_hex().as_str());
    assert_eq!(
        (json["produced_by"]["node"].as_str(), json["produced_by"]["port"].as_str()),
        (Some("merge"), Some("counts"))
    );
    // Down one branch to the source node and the files it read.
    let mut node = &json["produced_by"]["inputs"][0];
    let mut path = vec![node["node"].as_str().unwrap().to_owned()];
    while node["node"] != "read" {
        node = &node["inputs"][0];
        path.push(node["node"].as_str().unwrap().to_owned());
    }
    assert_eq!(path, ["count-1", "content-1", "words-1", "half-1", "read"]);
    let files: Vec<&str> = node["files"].as_array().unwrap().iter().map(|f| f["path"].as_str().unwrap()).collect();
    let docs = std::fs::canonicalize(dir.path().join("docs")).unwrap();
    let expected: Vec<String> = ["backends.txt", "pipelines.txt", "plugins.txt", "scheduling.txt"]
        .iter()
        .map(|f| docs.join(f).to_string_lossy().into_owned())
        .collect();
    let files: Vec<String> =
        files.iter().map(|f| std::fs::canonicalize(f).unwrap().to_string_lossy().into_owned()).collect();
    assert_eq!(files, expected);
    assert!(node["files"].as_array().unwrap().iter().all(|f| f["on_disk"] == "unchanged" && f["op"] == "read"));

    std::fs::write(dir.path().join("docs/plugins.txt"), "changed\n").unwrap();
    let text = lineage(&[]);
    assert!(text.contains("plugins.txt") && text.contains("on disk: changed"), "{text}");
    assert!(text.contains("read.text  std.read_files") && text.contains("(shown above)"), "{text}");

    let runs = backplane().current_dir(dir.path()).args(["runs", "--json"]).output().unwrap();
    let runs: Value = serde_json::from_slice(&runs.stdout).unwrap();
    assert_eq!(runs["runs"][0]["run_id"], report["run_id"]);
    assert_eq!(runs["runs"][0]["status"], "succeeded");

    let elsewhere = tempfile::tempdir().unwrap();
    let stray = elsewhere.path().join("x.tsv");
    std::fs::write(&stray, "x").unwrap();
    let output = backplane().arg("provenance").arg(&stray).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr_of(&output).contains("no run records found above"), "{}", stderr_of(&output));
}

#[test]
fn a_damaged_cache_gives_misses_and_correct_outputs_and_verify_names_the_damage() {
    let dir = quickstart_copy(LOCAL);
    run_ok(dir.path(), &[]);
    let produced = outputs(dir.path());
    let cache = dir.path().join(".backplane/cache");
    let verify = |expect: i32| {
        let output = backplane().args(["cache", "verify", "--dir"]).arg(&cache).output().unwrap();
        assert_eq!(output.status.code(), Some(expect), "{}{}", stdout_of(&output), stderr_of(&output));
        stdout_of(&output)
    };
    assert!(verify(0).contains("ok: every entry and blob is sound"));
    // Flip a byte in the middle of the only segment.
    let segment = std::fs::read_dir(cache.join("entries")).unwrap().next().unwrap().unwrap().path();
    let mut bytes = std::fs::read(&segment).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x55;
    std::fs::write(&segment, &bytes).unwrap();
    assert!(verify(1).contains("is damaged") || verify(1).contains("checksum"), "{}", verify(1));
    let output = backplane()
        .current_dir(dir.path())
        .args(["run", "--json", "workflow.toml", "--config", "backplane.toml"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr_of(&output));
    assert!(stderr_of(&output).contains("is damaged"), "{}", stderr_of(&output));
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert!(report["executed"].as_u64().unwrap() > 1, "{report:#}");
    assert_eq!(outputs(dir.path()), produced);
    // The rerun stored what was lost: everything hits again.
    let report = run_ok(dir.path(), &[]);
    assert_eq!(report["cached"].as_u64(), Some(10));
    let stats = backplane().args(["cache", "stats", "--json", "--dir"]).arg(&cache).output().unwrap();
    let stats: Value = serde_json::from_slice(&stats.stdout).unwrap();
    assert_eq!(stats["stats"]["entries"].as_u64(), Some(10), "{stats:#}");
}

#[test]
fn a_newer_or_foreign_cache_runs_uncached_with_a_warning_or_fails_when_required() {
    let dir = quickstart_copy(LOCAL);
    let cache = dir.path().join(".backplane/cache");
    std::fs::create_dir_all(&cache).unwrap();
    std::fs::write(cache.join("FORMAT"), "backplane-cache 9\n").unwrap();
    let (code, report, stderr) = run_json(dir.path(), &[]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("has format 9, newer than this Backplane reads (1)"), "{stderr}");
    let reasons = cache_of(&report);
    assert!(reasons.values().all(|c| c.0 == "off" && c.1.contains("the cache could not be used")), "{reasons:#?}");

    std::fs::write(dir.path().join("backplane.toml"), format!("{LOCAL}\n[cache]\nrequired = true\n")).unwrap();
    let (code, _, stderr) = run_json(dir.path(), &[]);
    assert_eq!(code, Some(3), "{stderr}");
    assert!(stderr.contains("the result cache cannot be used") && stderr.contains("required = false"), "{stderr}");

    // An unwritable cache directory: a warning, and a correct uncached run.
    let unwritable = quickstart_copy(&format!("{LOCAL}\n[cache]\ndir = \"/proc/backplane-cache\"\n"));
    let (code, report, stderr) = run_json(unwritable.path(), &[]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("the result cache cannot be used"), "{stderr}");
    assert_eq!(report["executed"].as_u64(), Some(11));
}

#[test]
fn two_processes_share_one_cache_without_locks() {
    let shared = tempfile::tempdir().unwrap();
    let config = format!("{LOCAL}\n[cache]\ndir = \"{}\"\n", shared.path().display());
    let (a, b) = (quickstart_copy(&config), quickstart_copy(&config));
    let start = |dir: &Path| {
        backplane_process()
            .current_dir(dir)
            .args(["run", "--json", "workflow.toml", "--config", "backplane.toml"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (ra, rb) = (start(a.path()), start(b.path()));
    for child in [ra, rb] {
        let output = child.wait_with_output().unwrap();
        assert!(output.status.success(), "{}", stderr_of(&output));
        assert!(!stderr_of(&output).contains("lock"), "{}", stderr_of(&output));
    }
    assert_eq!(outputs(a.path()), outputs(b.path()));
    // A third workflow directory with the same cache hits what either stored.
    let c = quickstart_copy(&config);
    let report = run_ok(c.path(), &[]);
    assert_eq!(report["cached"].as_u64(), Some(10), "{report:#}");
}

/// `chains` independent chains of `depth` steps: a cached sleep (so kills
/// land mid-run) and a hash, each chain seeded differently.
fn kill_workflow(chains: usize, depth: usize, ms: u64) -> String {
    use std::fmt::Write;
    let mut text = String::new();
    for c in 0..chains {
        let _ = writeln!(
            text,
            "[[node]]\nid = \"seed-{c}\"\ntype = \"std.const\"\nsettings = {{ text = \"chain {c}\\n\" }}\n"
        );
        let mut previous = format!("seed-{c}.text");
        for k in 0..depth {
            let _ = writeln!(
                text,
                "[[node]]\nid = \"wait-{c}-{k}\"\ntype = \"std.sleep\"\nsettings = {{ ms = {ms} }}\ncache = true\ninputs = {{ in = \"{previous}\" }}\n"
            );
            let _ = writeln!(
                text,
                "[[node]]\nid = \"hash-{c}-{k}\"\ntype = \"std.hash\"\ninputs = {{ data = \"wait-{c}-{k}.out\" }}\n"
            );
            previous = format!("hash-{c}-{k}.digest");
        }
        let _ = writeln!(text, "[[output]]\nfrom = \"{previous}\"\nto = \"out/chain-{c}.txt\"\n");
    }
    text
}

/// Whether a run has committed a result to the cache at `cache` (a segment longer than its header).
fn first_commit(cache: &Path) -> bool {
    std::fs::read_dir(cache.join("entries"))
        .map(|entries| entries.flatten().any(|e| e.metadata().is_ok_and(|m| m.len() > 12)))
        .unwrap_or(false)
}

/// Each node's output hashes, from a run record.
fn output_hashes(record: &Path) -> BTreeMap<String, Vec<String>> {
    std::fs::read_to_string(record)
        .unwrap()
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|v| v.get("node").is_some())
        .map(|v| {
            let hashes = v["outputs"].as_array().unwrap().iter().map(|o| o["blake3"].as_str().unwrap().to_owned());
            (v["node"].as_str().unwrap().to_owned(), hashes.collect())
        })
        .collect()
}

fn chain_outputs(dir: &Path, chains: usize) -> Vec<Vec<u8>> {
    (0..chains).map(|c| std::fs::read(dir.join(format!("out/chain-{c}.txt"))).unwrap()).collect()
}

/// Kills a real run at random points (`BACKPLANE_CACHE_KILLS`, default 50;
/// the soak runs 1,000) and resumes it each time: every entry the killed
/// run committed is a hit (0 lost), every output and every node's result is
/// what an uncached run produces (0 wrong hits), and `verify` finds nothing.
#[test]
fn kill_9_at_random_points_never_leaves_a_wrong_or_lost_result() {
    let kills: usize = std::env::var("BACKPLANE_CACHE_KILLS").ok().and_then(|k| k.parse().ok()).unwrap_or(50);
    let (chains, depth) = (6, 8);
    let dir = crate::fixtures::workflow_with_config(&kill_workflow(chains, depth, 8), LOCAL);
    let started = std::time::Instant::now();
    let reference = run_ok(dir.path(), &["--no-cache"]);
    let window = started.elapsed().mul_f64(1.2);
    // The nodes' own time: 6 chains of 8 sleeps of 8 ms on 2 threads.
    let run_span = std::time::Duration::from_millis(8 * (chains * depth) as u64 / 2);
    let expected_outputs = chain_outputs(dir.path(), chains);
    let expected_hashes = output_hashes(Path::new(reference["record"].as_str().unwrap()));
    assert_eq!(expected_hashes.len(), chains * (2 * depth + 1));
    let cache = dir.path().join(".backplane/cache");
    let mut seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64 | 1;
    let initial_seed = seed;
    let mut random = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let (mut total_committed, mut mid_run) = (0, 0);
    for kill in 0..kills {
        let _ = std::fs::remove_dir_all(&cache);
        let _ = std::fs::remove_dir_all(dir.path().join("out"));
        let mut child = backplane_process()
            .current_dir(dir.path())
            .args(["run", "-q", "workflow.toml", "--config", "backplane.toml"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // Even kills land anywhere in the run's expected span (start-up and
        // cache opening included); odd ones after the first commit, so many
        // land between commits whatever the machine's load.
        let fraction = (random() % 10_000) as f64 / 10_000.0;
        let delay = if kill % 2 == 0 {
            let delay = window.mul_f64(fraction);
            std::thread::sleep(delay);
            delay
        } else {
            let waited = std::time::Instant::now();
            while !first_commit(&cache) && waited.elapsed() < std::time::Duration::from_secs(60) {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            let after = run_span.mul_f64(fraction * 0.8);
            std::thread::sleep(after);
            waited.elapsed()
        };
        child.kill().unwrap();
        let status = child.wait().unwrap();
        let context = format!("kill {kill} after {delay:?} (seed {initial_seed})");
        let committed = if cache.join("entries").is_dir() {
            let stats = backplane().args(["cache", "stats", "--json", "--dir"]).arg(&cache).output().unwrap();
            let stats: Value =
                serde_json::from_slice(&stats.stdout).unwrap_or_else(|_| panic!("{context}: {}", stderr_of(&stats)));
            let verify = backplane().args(["cache", "verify", "--dir"]).arg(&cache).output().unwrap();
            assert!(verify.status.success(), "{context}: {}", stdout_of(&verify));
            stats["stats"]["entries"].as_u64().unwrap()
        } else {
            0
        };
        let resumed = run_ok(dir.path(), &[]);
        assert_eq!(resumed["cached"].as_u64(), Some(committed), "{context}: a committed result was lost");
        assert_eq!(chain_outputs(dir.path(), chains), expected_outputs, "{context}: outputs differ");
        let hashes = output_hashes(Path::new(resumed["record"].as_str().unwrap()));
        assert_eq!(hashes, expected_hashes, "{context}: a node's result differs from an uncached run's");
        total_committed += committed;
        if kill % 2 == 1 && status.code().is_none() && committed > 0 && (committed as usize) < expected_hashes.len() {
            mid_run += 1;
        }
    }
    // The kills after a first commit must mostly land mid-run, or the test proved nothing.
    let after_commit = kills / 2;
    eprintln!(
        "{mid_run} of {after_commit} kills after a commit landed mid-run; {total_committed} results committed in all"
    );
    assert!(
        mid_run * 2 >= after_commit,
        "only {mid_run} of {after_commit} kills after a commit landed mid-run (committed {total_committed})"
    );
}

#[test]
fn a_killed_run_is_listed_as_unfinished_and_gc_and_clear_tidy_the_cache() {
    let dir = quickstart_copy(LOCAL);
    let first = run_ok(dir.path(), &[]);
    // A run that is killed while it sleeps leaves its record's header.
    let slow = "[[node]]\nid = \"nap\"\ntype = \"std.sleep\"\nsettings = { ms = 20000 }\n";
    std::fs::write(dir.path().join("slow.toml"), slow).unwrap();
    let mut child = backplane_process()
        .current_dir(dir.path())
        .args(["run", "-q", "slow.toml", "--config", "backplane.toml"])
        .spawn()
        .unwrap();
    let runs_dir = dir.path().join(".backplane/runs");
    let start = std::time::Instant::now();
    // Two records (other files there hold what nodes logged).
    let records = || {
        let entries = std::fs::read_dir(&runs_dir).unwrap().flatten();
        entries.filter(|e| e.path().extension().is_some_and(|x| x == "jsonl")).count()
    };
    while records() < 2 {
        assert!(start.elapsed() < std::time::Duration::from_secs(30), "the slow run wrote no record");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let runs = backplane().current_dir(dir.path()).args(["runs", "--json"]).output().unwrap();
    let runs: Value = serde_json::from_slice(&runs.stdout).unwrap();
    let statuses: Vec<(&str, &str)> = runs["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["workflow"].as_str().unwrap().rsplit('/').next().unwrap(), r["status"].as_str().unwrap()))
        .collect();
    assert_eq!(statuses, [("slow.toml", "did-not-finish"), ("workflow.toml", "succeeded")], "{runs:#}");
    let text = backplane().current_dir(dir.path()).arg("runs").output().unwrap();
    assert!(stdout_of(&text).contains("did not finish"), "{}", stdout_of(&text));
    assert_eq!(runs["runs"][1]["run_id"], first["run_id"]);

    let cache = dir.path().join(".backplane/cache");
    let json = |args: &[&str]| -> Value {
        let output = backplane().arg("cache").args(args).arg("--json").arg("--dir").arg(&cache).output().unwrap();
        assert!(output.status.success(), "{}", stderr_of(&output));
        serde_json::from_slice(&output.stdout).unwrap()
    };
    // Segments this young may belong to a writer that has not locked them yet: gc leaves them.
    let gc = json(&["gc", "--older-than", "1h"]);
    assert_eq!(gc["gc"]["segments_in_use"].as_u64(), Some(1), "{gc:#}");
    assert_eq!(json(&["stats"])["stats"]["entries"].as_u64(), Some(10));
    let cleared = json(&["clear"]);
    assert_eq!(cleared["segments_removed"].as_u64(), Some(1), "{cleared:#}");
    assert_eq!(json(&["stats"])["stats"]["entries"].as_u64(), Some(0));
    let report = run_ok(dir.path(), &[]);
    assert_eq!(report["cached"].as_u64(), Some(0));
    let missing = backplane().args(["cache", "stats", "--dir"]).arg(dir.path().join("nowhere")).output().unwrap();
    assert_eq!(missing.status.code(), Some(2));
    assert!(stderr_of(&missing).contains("there is no cache at"), "{}", stderr_of(&missing));
}

/// Two hosts with their own local tiers and one NATS server: what one
/// computed is a hit for the other, checked like a local read.
#[test]
fn hosts_with_separate_local_caches_share_hits_through_nats() {
    use crate::nats::{NatsServer, PASSWORD, USER};
    let nats = NatsServer::start();
    let config =
        format!("{LOCAL}\n[cache.shared]\nnats = \"{}\"\nuser = \"{USER}\"\npassword = \"{PASSWORD}\"\n", nats.url());
    let (a, b) = (quickstart_copy(&config), quickstart_copy(&config));
    let first = run_ok(a.path(), &[]);
    assert_eq!((first["cached"].as_u64(), first["executed"].as_u64()), (Some(0), Some(11)));
    let second = run_ok(b.path(), &[]);
    assert_eq!((second["cached"].as_u64(), second["executed"].as_u64()), (Some(10), Some(1)), "{second:#}");
    let from = cache_of(&second);
    assert_eq!(from["merge"].1, format!("stored by run {}", first["run_id"].as_str().unwrap()));
    assert_eq!(outputs(a.path()), outputs(b.path()));
    // The shared hits were kept locally: with NATS gone, `b` still hits.
    drop(nats);
    let (code, report, stderr) = run_json(b.path(), &[]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("the shared result cache cannot be used"), "{stderr}");
    assert_eq!(report["cached"].as_u64(), Some(10), "{report:#}");
    // Wrong credentials: a warning naming the cause, and a run on the local tier.
    let nats = NatsServer::start();
    let wrong =
        quickstart_copy(&config.replace(&nats_url_placeholder(&config), &nats.url()).replace(PASSWORD, "wrong"));
    let (code, report, stderr) = run_json(wrong.path(), &[]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("rejected the credentials"), "{stderr}");
    assert_eq!(report["executed"].as_u64(), Some(11));
}

/// The `nats = "..."` address in a config.
fn nats_url_placeholder(config: &str) -> String {
    config.lines().find_map(|l| l.strip_prefix("nats = \"")).unwrap().trim_end_matches('"').to_owned()
}

#[test]
fn cache_settings_are_checked_with_locations() {
    let config = format!("{LOCAL}\n[cache]\nsalt = 3\nrequierd = true\n\n[cache.shared]\nbucket = \"a b\"\n");
    let dir = quickstart_copy(&config);
    let output = crate::fixtures::command_in(dir.path(), &["validate"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = stderr_of(&output);
    for expected in [
        "backplane.toml:6:8: error: `salt` in [cache] must be a string, found an integer",
        "backplane.toml:7:1: error: unknown key `requierd` in [cache]",
        "did you mean `required`?",
        "backplane.toml:9:1: error: [cache.shared] has no `nats`",
        "backplane.toml:10:10: error: bucket `a b` must be letters, digits, `-` and `_`",
    ] {
        assert!(stderr.contains(expected), "missing `{expected}` in:\n{stderr}");
    }
}

/// `backplane run` with the cache directory on a 64 KiB tmpfs of its own
/// (a private mount namespace), so storing a 300 KB result runs out of space.
fn run_on_a_full_cache(dir: &Path, cache: &Path) -> (Option<i32>, Value, String) {
    crate::fixtures::ensure_plugins_built();
    let output = std::process::Command::new("unshare")
        .args(["-m", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs \"$0\" && exec \"$@\""])
        .arg(cache)
        .arg(env!("CARGO_BIN_EXE_backplane"))
        .args(["run", "--json", "workflow.toml", "--config", "backplane.toml"])
        .current_dir(dir)
        .env_remove("BACKPLANE_CONFIG")
        .env_remove("BACKPLANE_PLUGIN_PATH")
        .output()
        .unwrap();
    let report = serde_json::from_slice(&output.stdout).unwrap_or(Value::Null);
    (output.status.code(), report, stderr_of(&output))
}

#[test]
fn a_full_cache_disk_gives_a_warning_and_a_correct_run_or_an_error_when_required() {
    let cache = tempfile::tempdir().unwrap();
    let workflow = "[[node]]\nid = \"big\"\ntype = \"std.shell\"\ncache = true\n\
                    settings = { command = \"head -c 300000 /dev/zero | tr '\\\\0' x\" }\n\n\
                    [[output]]\nfrom = \"big.stdout\"\nto = \"out/big.txt\"\n";
    let config = format!("{LOCAL}\n[cache]\ndir = \"{}\"\n", cache.path().display());
    let dir = crate::fixtures::workflow_with_config(workflow, &config);
    let (code, report, stderr) = run_on_a_full_cache(dir.path(), cache.path());
    assert_eq!(code, Some(0), "{stderr}\n{report:#}");
    assert!(stderr.contains("cannot store results in the cache") && stderr.contains("No space left"), "{stderr}");
    assert_eq!(report["stored"].as_u64(), Some(0), "{report:#}");
    assert_eq!(std::fs::read(dir.path().join("out/big.txt")).unwrap(), vec![b'x'; 300_000]);

    std::fs::write(dir.path().join("backplane.toml"), format!("{config}required = true\n")).unwrap();
    let (code, _, stderr) = run_on_a_full_cache(dir.path(), cache.path());
    assert_eq!(code, Some(3), "{stderr}");
    assert!(
        stderr.contains("results could not be stored in the cache") && stderr.contains("required = true"),
        "{stderr}"
    );
    // The run's outputs are written all the same: never lost.
    assert_eq!(std::fs::read(dir.path().join("out/big.txt")).unwrap().len(), 300_000);
}
