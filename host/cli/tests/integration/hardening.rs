//! What an attacker or an unlucky user can do to a run: planted links,
//! special files, kill -9 mid-write, orphaned children, invalid bytes,
//! `--json` that must stay JSON.

use crate::fixtures::{RunningRun, backplane, command_in, stderr_of, workflow_with_config};
use serde_json::Value;
use std::{
    os::unix::fs::{FileTypeExt, symlink},
    path::Path,
    time::{Duration, Instant},
};

const LOCAL: &str = "[backends.local]\ntype = \"local\"\n";

fn mkfifo(path: &Path) {
    let c_path = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0, "mkfifo {}", path.display());
}

/// Whether process `pid` is gone (or a zombie nobody reaps yet).
fn is_dead(pid: &str) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map_or(true, |stat| stat.rsplit(')').next().unwrap().trim_start().starts_with('Z'))
}

fn wait_until(within: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < within, "{what} did not happen within {within:?}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn temporaries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.') && n.ends_with(".tmp"))
        .collect()
}

#[test]
fn a_link_planted_under_a_predictable_temporary_name_never_redirects_an_output() {
    let workflow = "[[node]]\nid = \"slow\"\ntype = \"std.shell\"\nsettings = { command = \"sleep 1; echo output\" }\n\n\
                    [[output]]\nfrom = \"slow.stdout\"\nto = \"out.txt\"\n";
    let dir = workflow_with_config(workflow, LOCAL);
    let victim = dir.path().join("victim.txt");
    std::fs::write(&victim, "precious\n").unwrap();
    let run = RunningRun::start(dir.path(), "warn");
    // The name the host would have used before: `.out.txt.<pid>.tmp`.
    symlink(&victim, dir.path().join(format!(".out.txt.{}.tmp", run.child.id()))).unwrap();
    let (code, report, log) = run.finish();
    assert_eq!(code, Some(0), "{log}");
    assert_eq!(report["succeeded"], 1, "{report:#}");
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n", "the link's target was written");
    assert_eq!(std::fs::read_to_string(dir.path().join("out.txt")).unwrap(), "output\n");
}

#[test]
fn output_destinations_are_checked_before_anything_runs() {
    let workflow = r#"[[node]]
id = "make"
type = "std.shell"
settings = { command = "touch ran.txt; echo x" }

[[output]]
from = "make.stdout"
to = "fifo"

[[output]]
from = "make.stdout"
to = "a-dir"

[[output]]
from = "make.stdout"
to = "link.txt"

[[output]]
from = "make.stdout"
to = "plain-file/inside.txt"

[[output]]
from = "make.stdout"
to = "same.txt"

[[output]]
from = "make.stdout"
to = "./same.txt"

[[output]]
from = "make.stdout"
to = ""

[[output]]
from = "make.stdout"
to = "../../escaped.txt"
"#;
    let dir = workflow_with_config(workflow, LOCAL);
    mkfifo(&dir.path().join("fifo"));
    std::fs::create_dir(dir.path().join("a-dir")).unwrap();
    std::fs::write(dir.path().join("plain-file"), "").unwrap();
    std::fs::write(dir.path().join("target.txt"), "mine\n").unwrap();
    symlink(dir.path().join("target.txt"), dir.path().join("link.txt")).unwrap();
    for command in ["validate", "run"] {
        let output = command_in(dir.path(), &[command]).output().unwrap();
        assert_eq!(output.status.code(), Some(2), "{command}");
        let stderr = stderr_of(&output);
        let expected = [
            "workflow.toml:8:6: error: output `fifo`: ",
            "is a named pipe (FIFO), not a regular file",
            "workflow.toml:12:6: error: output `a-dir`: ",
            "is a directory, not a regular file",
            "workflow.toml:16:6: error: output `link.txt`: ",
            "is a symbolic link; files are never written through or over links",
            "workflow.toml:20:6: error: output `plain-file/inside.txt` cannot be created: ",
            "plain-file is not a directory",
            "workflow.toml:28:6: error: two outputs write `./same.txt`",
            "help: the other output to this file is on line 24",
            "workflow.toml:32:6: error: the output's `to` is empty",
            "workflow.toml:36:6: error: output path `../../escaped.txt` leaves the workflow's directory",
            "set `allow_outside_workflow_dir = true` in the config",
        ];
        for needle in expected {
            assert!(stderr.contains(needle), "{command}: `{needle}` missing from:\n{stderr}");
        }
    }
    assert!(!dir.path().join("ran.txt").exists(), "nothing ran");
    assert!(std::fs::symlink_metadata(dir.path().join("fifo")).unwrap().file_type().is_fifo());
    assert_eq!(std::fs::read_to_string(dir.path().join("target.txt")).unwrap(), "mine\n");
}

#[test]
fn the_config_may_allow_relative_outputs_outside_the_workflow_directory() {
    let outer = tempfile::tempdir().unwrap();
    let inner = outer.path().join("project");
    std::fs::create_dir(&inner).unwrap();
    let workflow = "[[node]]\nid = \"c\"\ntype = \"std.const\"\nsettings = { text = \"hi\" }\n\n\
                    [[output]]\nfrom = \"c.text\"\nto = \"../shared/hi.txt\"\n";
    std::fs::write(inner.join("workflow.toml"), workflow).unwrap();
    std::fs::write(inner.join("backplane.toml"), format!("allow_outside_workflow_dir = true\n{LOCAL}")).unwrap();
    let output = command_in(&inner, &["run"]).output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
    assert_eq!(std::fs::read_to_string(outer.path().join("shared/hi.txt")).unwrap(), "hi");
}

#[test]
fn one_output_that_cannot_be_written_does_not_stop_the_others() {
    // The FIFO appears only while the run runs, so the plan-time check passes.
    let workflow = r#"[[node]]
id = "make"
type = "std.shell"
settings = { command = "mkdir -p out && mkfifo out/b.txt && echo data" }

[[output]]
from = "make.stdout"
to = "out/b.txt"

[[output]]
from = "make.stdout"
to = "out/a.txt"
"#;
    let dir = workflow_with_config(workflow, LOCAL);
    let output = command_in(dir.path(), &["run"]).output().unwrap();
    assert_eq!(output.status.code(), Some(3), "an output that cannot be written is an environment error");
    let stderr = stderr_of(&output);
    assert!(stderr.contains("✔ workflow: 1/1 nodes succeeded"), "the summary is printed: {stderr}");
    assert!(stderr.contains("wrote ") && stderr.contains("out/a.txt"), "{stderr}");
    assert!(stderr.contains("error: cannot write output make.stdout -> "), "{stderr}");
    assert!(stderr.contains("named pipe (FIFO), not a regular file"), "{stderr}");
    assert_eq!(std::fs::read_to_string(dir.path().join("out/a.txt")).unwrap(), "data\n");
    assert!(std::fs::symlink_metadata(dir.path().join("out/b.txt")).unwrap().file_type().is_fifo());

    // The JSON report says the same.
    std::fs::remove_file(dir.path().join("out/b.txt")).unwrap();
    let output = command_in(dir.path(), &["run", "--json"]).output().unwrap();
    assert_eq!(output.status.code(), Some(3));
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["output_errors"].as_array().unwrap().len(), 1, "{report:#}");
    assert_eq!(report["written"].as_array().unwrap().len(), 1, "{report:#}");
}

#[test]
fn kill_9_during_write_file_leaves_the_old_content_and_the_next_run_cleans_up() {
    let size = 200_000_000;
    let workflow = format!(
        "[[node]]\nid = \"big\"\ntype = \"std.shell\"\nsettings = {{ command = \"head -c {size} /dev/zero\" }}\n\n\
         [[node]]\nid = \"write\"\ntype = \"std.write_file\"\ninputs = {{ data = \"big.stdout\" }}\n\
         settings = {{ path = \"big.bin\" }}\n"
    );
    let dir = workflow_with_config(&workflow, LOCAL);
    let destination = dir.path().join("big.bin");
    std::fs::write(&destination, "old").unwrap();
    let mut run = RunningRun::start(dir.path(), "warn");
    // Kill as soon as the write has begun: a temporary appears, or (before
    // the fix) the destination itself is truncated and grows.
    wait_until(Duration::from_secs(60), "the write to start", || {
        !temporaries(dir.path()).is_empty() || std::fs::metadata(&destination).map_or(0, |m| m.len()) != 3
    });
    run.child.kill().unwrap();
    run.child.wait().unwrap();
    assert_eq!(std::fs::read(&destination).unwrap(), b"old", "a killed write must leave the old content");

    let (code, _, log) = RunningRun::start(dir.path(), "warn").finish();
    assert_eq!(code, Some(0), "{log}");
    assert_eq!(std::fs::metadata(&destination).unwrap().len(), size);
    assert_eq!(temporaries(dir.path()), Vec::<String>::new(), "the killed run's temporary was removed");
}

#[test]
fn std_shell_children_die_with_a_host_killed_by_sigkill() {
    let workflow = "[[node]]\nid = \"sleeper\"\ntype = \"std.shell\"\n\
                    settings = { command = \"echo $$ > sh.pid; sleep 300 & echo $! > bg.pid; sleep 300\" }\n";
    let dir = workflow_with_config(workflow, LOCAL);
    let mut run = RunningRun::start(dir.path(), "warn");
    let read = |name: &str| std::fs::read_to_string(dir.path().join(name)).unwrap_or_default().trim().to_owned();
    wait_until(Duration::from_secs(30), "the command to start", || !read("bg.pid").is_empty());
    let (sh, background) = (read("sh.pid"), read("bg.pid"));
    assert!(!is_dead(&sh) && !is_dead(&background));
    run.child.kill().unwrap();
    run.child.wait().unwrap();
    wait_until(Duration::from_secs(5), "the shell and its background job to die", || {
        is_dead(&sh) && is_dead(&background)
    });
}

#[test]
fn a_workflow_that_is_not_utf8_is_invalid_input_located_at_the_first_bad_byte() {
    let dir = workflow_with_config("", LOCAL);
    std::fs::write(dir.path().join("workflow.toml"), b"[[node]]\nid = \"a\xff\"\n").unwrap();
    let output = command_in(dir.path(), &["validate"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = stderr_of(&output);
    assert!(stderr.contains("workflow.toml:2:8: error: the file is not valid UTF-8"), "{stderr}");
}

#[test]
fn files_over_the_size_limit_and_deep_nesting_are_refused_quickly() {
    let dir = workflow_with_config("", LOCAL);
    std::fs::write(dir.path().join("workflow.toml"), "[".repeat(40_000_000)).unwrap();
    let output = command_in(dir.path(), &["validate"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr_of(&output).contains("the file is larger than 16777216 bytes"), "{}", stderr_of(&output));
    let output = command_in(dir.path(), &["validate", "--max-file-size", "64MiB"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = stderr_of(&output);
    assert!(
        stderr.contains("workflow.toml:1:65: error: arrays and inline tables are nested more than 64 deep"),
        "{stderr}"
    );

    std::fs::write(dir.path().join("backplane.toml"), format!("a = {}1{}", "[".repeat(100), "]".repeat(100))).unwrap();
    std::fs::write(dir.path().join("workflow.toml"), "[[node]]\nid = \"a\"\ntype = \"std.noop\"\n").unwrap();
    let output = command_in(dir.path(), &["validate"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr_of(&output).contains("backplane.toml:1:69: error: arrays and inline tables are nested"),
        "{}",
        stderr_of(&output)
    );
}

#[test]
fn a_huge_route_glob_is_a_located_error_not_a_panic() {
    let config = format!("{LOCAL}\n[[route]]\nmatch = {{ type = \"{}\" }}\nbackend = \"local\"\n", "a".repeat(400_000));
    let dir = workflow_with_config("[[node]]\nid = \"a\"\ntype = \"std.noop\"\n", &config);
    for command in ["validate", "plan", "run"] {
        let output = command_in(dir.path(), &[command]).output().unwrap();
        assert_eq!(output.status.code(), Some(2), "{command}: {}", stderr_of(&output));
        let stderr = stderr_of(&output);
        assert!(stderr.contains("backplane.toml:5:18: error: invalid glob `aaaa"), "{command}: {stderr}");
        assert!(stderr.contains("globs may have at most 1024"), "{command}: {stderr}");
        assert!(stderr.len() < 2000, "the glob is not echoed whole: {} bytes", stderr.len());
    }
}

#[test]
fn diagnostics_are_capped_per_file_with_a_count_of_the_rest() {
    // 100,000 settings errors (`env` values must be strings), all on one line.
    let one_line: String = (0..100_000).map(|i| format!("k{i} = 1, ")).collect();
    let workflow = format!(
        "[[node]]\nid = \"a\"\ntype = \"std.shell\"\nsettings = {{ command = \"true\", env = {{ {} }} }}\n",
        one_line.trim_end_matches(", ")
    );
    let dir = workflow_with_config(&workflow, LOCAL);
    let output = command_in(dir.path(), &["validate", "--json"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    let json: Value = serde_json::from_slice(&output.stdout).unwrap();
    let errors = json["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 101, "100 shown and one counting the rest");
    let last = errors.last().unwrap();
    assert!(last["message"].as_str().unwrap().starts_with("and "), "{last}");
    assert!(last["message"].as_str().unwrap().ends_with(" more errors in this file"), "{last}");
    let output = command_in(dir.path(), &["validate"]).output().unwrap();
    let stderr = stderr_of(&output);
    assert_eq!(stderr.lines().filter(|l| l.contains(": error: ")).count(), 101, "{}", &stderr[..500]);
}

fn json_of(output: &std::process::Output) -> Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!("stdout is not one JSON document ({e}): {}", String::from_utf8_lossy(&output.stdout))
    })
}

#[test]
fn json_means_json_also_when_the_input_is_invalid() {
    let dir = workflow_with_config("[[node]]\nid = \"a\"\ntype = \"std.nope\"\n", LOCAL);
    for command in ["validate", "plan", "run"] {
        let output = command_in(dir.path(), &[command, "--json"]).output().unwrap();
        assert_eq!(output.status.code(), Some(2), "{command}");
        let json = json_of(&output);
        assert_eq!(json["valid"], false, "{command}: {json:#}");
        let error = &json["errors"][0];
        assert_eq!((error["line"].as_u64(), error["column"].as_u64()), (Some(3), Some(8)), "{command}: {json:#}");
        assert!(error["message"].as_str().unwrap().contains("unknown node type `std.nope`"), "{json:#}");
        assert!(error["file"].as_str().unwrap().ends_with("workflow.toml"), "{json:#}");
        assert!(error["help"].is_string(), "{json:#}");
    }
    // A config error, an unreadable workflow: still one JSON document.
    std::fs::write(dir.path().join("backplane.toml"), "bogus = 1\n").unwrap();
    let output = command_in(dir.path(), &["run", "--json"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(json_of(&output)["errors"][0]["message"].as_str().unwrap().contains("unknown key `bogus`"));
    // (With a valid config again: the one beside the workflow is found first.)
    std::fs::write(dir.path().join("backplane.toml"), LOCAL).unwrap();
    let output = backplane().args(["plan", "--json", "missing.toml"]).current_dir(dir.path()).output().unwrap();
    assert_eq!(output.status.code(), Some(3));
    assert!(json_of(&output)["errors"][0]["message"].as_str().unwrap().contains("cannot read"));
}

#[test]
fn an_output_to_stdout_is_refused_with_run_json_and_kept_without() {
    let workflow = "[[node]]\nid = \"c\"\ntype = \"std.const\"\nsettings = { text = \"plain text\" }\n\n\
                    [[output]]\nfrom = \"c.text\"\nto = \"-\"\n";
    let dir = workflow_with_config(workflow, LOCAL);
    let output = command_in(dir.path(), &["run", "--json"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    let json = json_of(&output);
    assert_eq!(json["errors"][0]["line"], 8, "{json:#}");
    assert!(json["errors"][0]["message"].as_str().unwrap().contains("which `--json` reserves for the run report"));
    let output = command_in(dir.path(), &["run"]).output().unwrap();
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&output.stdout), "plain text");
}

#[test]
fn a_fail_fast_run_lists_every_failure_it_counts_and_backends_count_attempts() {
    // `early` fails at once and stops the run; `late` fails while it stops.
    let workflow = "[[node]]\nid = \"early\"\ntype = \"std.fail\"\nbackend = \"local\"\n\n\
                    [[node]]\nid = \"late\"\ntype = \"std.fail\"\nbackend = \"slow\"\n";
    let config =
        format!("{LOCAL}\n[backends.slow]\ntype = \"faulty\"\nmode = \"late-first-attempt\"\ndelay_ms = 300\n");
    let dir = workflow_with_config(workflow, &config);
    let output = command_in(dir.path(), &["run", "--json"]).output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    let report = json_of(&output);
    assert_eq!(report["failed"], 2, "{report:#}");
    assert_eq!(report["failures"].as_array().unwrap().len(), 2, "{report:#}");
    let output = command_in(dir.path(), &["run"]).output().unwrap();
    let stderr = stderr_of(&output);
    assert!(stderr.contains("node `early`") && stderr.contains("node `late`"), "{stderr}");
    assert!(stderr.contains("0 succeeded, 2 failed"), "{stderr}");

    // A node retried twice: one node, three attempts.
    let workflow = "[[node]]\nid = \"job\"\ntype = \"std.const\"\nsettings = { text = \"x\" }\n";
    let config = "default_backend = \"faulty\"\n[policy.retry]\ninfrastructure_attempts = 3\nbackoff_secs = 0\n\n\
                  [backends.faulty]\ntype = \"faulty\"\nmode = \"fail-then-complete\"\nfail_times = 2\n";
    let dir = workflow_with_config(workflow, config);
    let output = command_in(dir.path(), &["run", "--json"]).output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
    let report = json_of(&output);
    assert_eq!(
        (report["backends"][0]["nodes"].as_u64(), report["backends"][0]["attempts"].as_u64()),
        (Some(1), Some(3))
    );
    // Again, uncached: the first run stored the result.
    let stderr = stderr_of(&command_in(dir.path(), &["run", "--no-cache"]).output().unwrap());
    assert!(stderr.contains("faulty (faulty): 1 nodes (3 attempts)"), "{stderr}");
}

#[test]
fn node_types_check_their_settings_and_the_workflow_its_resources_before_anything_runs() {
    let workflow = r#"[[node]]
id = "first"
type = "std.shell"
settings = { command = "touch ran.txt" }

[[node]]
id = "part"
type = "std.chunk"
inputs = { text = "first.stdout" }
settings = { index = 5, count = 2 }

[[node]]
id = "grep"
type = "std.regex_filter"
inputs = { text = "first.stdout" }
settings = { pattern = "(unclosed" }

[[node]]
id = "read"
type = "std.read_files"
settings = { glob = "data/[" }

[[node]]
id = "write"
type = "std.write_file"
inputs = { data = "first.stdout" }
settings = { path = "../../outside.txt" }

[[node]]
id = "greedy"
type = "std.noop"
resources = { cpus = -1, custom = { licence = -2 } }
labels = { "bad key" = "x" }
"#;
    let dir = workflow_with_config(workflow, LOCAL);
    let output = command_in(dir.path(), &["validate"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = stderr_of(&output);
    let expected = [
        "workflow.toml:10:22: error: invalid settings for node `part` (std.chunk) at `/index`: `index` 5 is out of range for `count` 2",
        "help: chunks are numbered from 0 to 1",
        "workflow.toml:16:24: error: invalid settings for node `grep` (std.regex_filter) at `/pattern`: invalid regex `(unclosed`",
        "workflow.toml:21:21: error: invalid settings for node `read` (std.read_files) at `/glob`: invalid glob `data/[`",
        "workflow.toml:27:21: error: invalid settings for node `write` (std.write_file) at `/path`: `../../outside.txt` leaves the workflow's directory",
        "workflow.toml:32:22: error: invalid `cpus`",
        "workflow.toml:32:47: error: invalid amount of custom resource `licence`",
        "workflow.toml:33:12: error: invalid label key `bad key`",
    ];
    for needle in expected {
        assert!(stderr.contains(needle), "`{needle}` missing from:\n{stderr}");
    }
    let output = command_in(dir.path(), &["run"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(!dir.path().join("ran.txt").exists(), "no node ran");
}

#[test]
fn numeric_backend_settings_have_upper_bounds() {
    let config = "[backends.local]\ntype = \"local\"\nthreads = 1000000\nmax_in_flight = 100000000000\n";
    let dir = workflow_with_config("[[node]]\nid = \"a\"\ntype = \"std.noop\"\n", config);
    let output = command_in(dir.path(), &["validate"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = stderr_of(&output);
    assert!(
        stderr.contains(
            "backplane.toml:3:11: error: backend instance `local`: 1000000 is greater than the maximum of 1024"
        ),
        "{stderr}"
    );
    assert!(stderr.contains("backplane.toml:4:17: error: `max_in_flight` must be from 1 to 10000000"), "{stderr}");
}

#[test]
fn the_progress_bar_shows_the_real_rate_of_the_run() {
    // 60 sleeps of 50 ms on two threads: about 40 nodes/s over 1.5 s; the bar
    // appears after a second, with 40 nodes already done.
    let nodes: String = (0..60)
        .map(|i| format!("[[node]]\nid = \"s{i}\"\ntype = \"std.sleep\"\nsettings = {{ ms = 50 }}\n\n"))
        .collect();
    let dir = workflow_with_config(&nodes, "[backends.local]\ntype = \"local\"\nthreads = 2\n");
    let binary = crate::fixtures::bin_dir().join("backplane");
    crate::fixtures::ensure_plugins_built();
    // `script` gives the run a terminal, so it draws its bar.
    let command = format!("{} run workflow.toml --config backplane.toml", binary.display());
    let started = Instant::now();
    let output = std::process::Command::new("script")
        .args(["-qfec", &command, "/dev/null"])
        .current_dir(dir.path())
        .env_remove("BACKPLANE_CONFIG")
        .env_remove("BACKPLANE_PLUGIN_PATH")
        .output()
        .unwrap();
    let elapsed = started.elapsed().as_secs_f64();
    let screen = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{screen}");
    let rates: Vec<f64> =
        screen.split(" nodes/s").filter_map(|before| before.rsplit(['(', ' ']).next()?.parse().ok()).collect();
    assert!(!rates.is_empty(), "no rate drawn:\n{screen}");
    let true_rate = 60.0 / elapsed;
    for rate in rates {
        assert!(
            rate > 0.0 && rate <= 2.0 * true_rate.max(40.0),
            "the bar said {rate} nodes/s; the run did {true_rate:.1}"
        );
    }
}
