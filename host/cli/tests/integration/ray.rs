//! The `ray` backend against real Ray (`address = "local"`: a private
//! single-node Ray started by the plugin's driver): parity with `local`,
//! node panics, a node that crashes its Ray worker, cancellation, per-item
//! (`each`) tasks as Ray tasks.
//!
//! Ray comes from the venv `plugins/ray-like/setup-venv.sh` makes
//! (`target/ray-venv`, or `BACKPLANE_RAY_PYTHON`); `.ci/run` creates it.

use crate::fixtures::{RunningRun, json_errors, quickstart_outputs, run_json, workflow_with_config, workspace_root};
use std::{path::PathBuf, time::Duration};

fn ray_python() -> PathBuf {
    let python = std::env::var_os("BACKPLANE_RAY_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target/ray-venv/bin/python"));
    assert!(
        python.is_file(),
        "no Python with Ray at {}: run plugins/ray-like/setup-venv.sh (or set BACKPLANE_RAY_PYTHON)",
        python.display()
    );
    python
}

/// A config with `local` and a private Ray instance `ray` (the default).
fn config(extra: &str) -> String {
    format!(
        "default_backend = \"ray\"\n\n[backends.local]\ntype = \"local\"\n\n[backends.ray]\ntype = \"ray\"\npython = \"{}\"\nnum_cpus = 2\n{extra}\n",
        ray_python().display()
    )
}

#[test]
fn the_quickstart_gives_byte_identical_outputs_on_local_and_ray() {
    let shared = tempfile::tempdir().unwrap();
    let cache = format!("\n[cache]\ndir = \"{}\"\n", shared.path().display());
    let (local_tsv, local_b3, _) = quickstart_outputs("[backends.local]\ntype = \"local\"\n");
    let (ray_tsv, ray_b3, report) = quickstart_outputs(&format!("{}{cache}", config("")));
    assert_eq!(report["backends"][0]["instance"], "ray", "{report:#}");
    assert_eq!(report["backends"][0]["nodes"], 11, "{report:#}");
    assert!(!local_tsv.is_empty());
    assert_eq!(local_tsv, ray_tsv);
    assert_eq!(local_b3, ray_b3);
    // Computed on Ray (outputs came back as bytes to be stored), a hit on `local`.
    let (tsv, b3, report) = quickstart_outputs(&format!("[backends.local]\ntype = \"local\"\n{cache}"));
    assert_eq!((report["cached"].as_u64(), report["executed"].as_u64()), (Some(10), Some(1)), "{report:#}");
    assert_eq!((tsv, b3), (ray_tsv, ray_b3));
}

#[test]
fn a_panicking_node_is_a_node_error_a_crashing_one_is_retried_by_ray_then_fails_and_nodes_see_the_host_attempt() {
    let workflow = r#"
[[node]]
id = "panics"
type = "std.panic"
settings = { message = "boom in ray" }

[[node]]
id = "crashes"
type = "std.shell"
settings = { command = "echo $BACKPLANE_ATTEMPT >> attempts.txt; kill -ABRT $PPID; sleep 5" }

[[node]]
id = "second-try"
type = "std.shell"
settings = { command = "[ $BACKPLANE_ATTEMPT -ge 2 ] || exit 3; echo $BACKPLANE_ATTEMPT" }
retry = { node_attempts = 2 }

[[output]]
from = "second-try.stdout"
to = "out/second-try.txt"
"#;
    let dir = workflow_with_config(workflow, &config("max_retries = 2\n[policy]\nfailure = \"continue\""));
    let (code, report, stderr) = run_json(dir.path(), &[]);
    assert_eq!(code, Some(1), "{stderr}");
    let failure = |node: &str| {
        report["failures"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["node"] == node)
            .unwrap_or_else(|| panic!("{report:#}"))
            .clone()
    };
    let panicked = failure("panics");
    assert_eq!(panicked["kind"], "panicked", "{report:#}");
    assert!(panicked["message"].as_str().unwrap().contains("boom in ray"), "{report:#}");
    let crashed = failure("crashes");
    assert_eq!(crashed["kind"], "node-failed", "{report:#}");
    assert!(crashed["message"].as_str().unwrap().contains("the Ray worker died running it"), "{report:#}");
    // The first run and Ray's two retries, each in a new worker process, all
    // within the host's first attempt.
    let attempts = std::fs::read_to_string(dir.path().join("attempts.txt")).unwrap();
    assert_eq!(attempts.lines().collect::<Vec<_>>(), ["1", "1", "1"], "{attempts}");
    // The host's retry is attempt 2 on the Ray worker too.
    let second = std::fs::read_to_string(dir.path().join("out/second-try.txt")).unwrap();
    assert_eq!(second, "2\n");
}

#[test]
fn interrupting_a_run_cancels_its_ray_tasks() {
    let workflow = "[[node]]\nid = \"long\"\ntype = \"std.sleep\"\nsettings = { ms = 60000 }\n";
    let dir = workflow_with_config(workflow, &config(""));
    let run = RunningRun::start(dir.path(), "debug");
    run.wait_for_log("ray driver up", Duration::from_secs(90));
    // The task is submitted at once; give the Ray worker a moment to start it.
    std::thread::sleep(Duration::from_secs(2));
    let interrupted = std::time::Instant::now();
    unsafe { libc::kill(run.child.id() as i32, libc::SIGINT) };
    let (code, report, log) = run.finish();
    assert_eq!(code, Some(130), "{log}");
    assert!(interrupted.elapsed() < Duration::from_secs(30), "took {:?}", interrupted.elapsed());
    assert_eq!(report["cancelled"], 1, "{report:#}");
    assert!(log.contains("ray.cancel of task"), "the driver cancelled the Ray task:\n{log}");
}

#[test]
fn custom_resources_route_to_the_ray_instance_that_has_them_and_infeasible_ones_fail_the_plan() {
    // The private instance offers `licence`; the plan sees it in the live capabilities.
    let workflow = "[[node]]\nid = \"licensed\"\ntype = \"std.noop\"\nresources = { custom = { licence = 1 } }\n";
    let dir = workflow_with_config(workflow, &config("resources = { licence = 2 }"));
    let (code, report, stderr) = run_json(dir.path(), &[]);
    assert_eq!(code, Some(0), "{stderr}\n{report:#}");
    assert_eq!(report["backends"][0]["instance"], "ray", "{report:#}");

    let infeasible = "[[node]]\nid = \"greedy\"\ntype = \"std.noop\"\nresources = { custom = { licence = 5 } }\n";
    let dir = workflow_with_config(infeasible, &config("resources = { licence = 2 }"));
    let (code, report, stderr) = run_json(dir.path(), &[]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(json_errors(&report).contains("needs 5 licence (has 2)"), "{report:#}");
}

#[test]
fn tags_and_labels_mapped_to_custom_resources_route_nodes_to_ray_and_hold_the_resource_while_they_run() {
    // `licensed` takes both licences of the private instance, so two such nodes must take turns.
    let mapped = "resources = { licence = 2 }\n\
                  tag_resources = { licensed = { resource = \"licence\", amount = 2 }, absent = \"nowhere\" }\n\
                  label_resources = { \"zone=eu\" = \"nowhere\" }\n\
                  [policy]\nfailure = \"continue\"\n\n\
                  [[route]]\nmatch = { id = \"turn-*\" }\nrequire = { tags = [\"licensed\"] }\n";
    // `local` is the default: only the tag sends the `turn-*` nodes to Ray.
    let config = config(mapped).replace("default_backend = \"ray\"", "default_backend = \"local\"");
    let turn = "settings = { command = \"echo start >> turns.txt; sleep 2; echo end >> turns.txt\" }";
    let workflow = format!(
        "[[node]]\nid = \"turn-a\"\ntype = \"std.shell\"\n{turn}\n\n[[node]]\nid = \"turn-b\"\ntype = \"std.shell\"\n{turn}\n\n\
         [[node]]\nid = \"plain\"\ntype = \"std.noop\"\n\n\
         [[node]]\nid = \"in-eu\"\ntype = \"std.noop\"\nbackend = \"ray\"\nlabels = {{ zone = \"eu\" }}\n"
    );
    let dir = workflow_with_config(&workflow, &config);
    let (code, report, stderr) = run_json(dir.path(), &[]);
    assert_eq!(code, Some(1), "{stderr}\n{report:#}");
    let nodes_on = |instance: &str| {
        report["backends"].as_array().unwrap().iter().find(|b| b["instance"] == instance).map(|b| b["nodes"].clone())
    };
    assert_eq!(nodes_on("ray"), Some(3.into()), "{report:#}");
    assert_eq!(nodes_on("local"), Some(1.into()), "{report:#}");
    let turns = std::fs::read_to_string(dir.path().join("turns.txt")).unwrap();
    assert_eq!(turns.lines().collect::<Vec<_>>(), ["start", "end", "start", "end"], "the two ran at once");
    // A label whose resource no Ray node has fails its node at once, saying why.
    let failures = report["failures"].as_array().unwrap();
    assert_eq!(failures.len(), 1, "{report:#}");
    assert_eq!(failures[0]["node"], "in-eu", "{report:#}");
    assert_eq!(failures[0]["kind"], "unsupported", "{report:#}");
    assert!(
        failures[0]["message"]
            .as_str()
            .unwrap()
            .contains("its label `zone=eu` maps to Ray resource `nowhere`, which no live Ray node has"),
        "{report:#}"
    );
    assert!(stderr.contains("tag `absent` maps to Ray resource `nowhere`, which no live Ray node has"), "{stderr}");

    // A tag whose resource no Ray node has is not offered: the plan fails.
    let absent = config.replace("\"licensed\"]", "\"absent\"]");
    let dir = workflow_with_config("[[node]]\nid = \"turn-c\"\ntype = \"std.noop\"\n", &absent);
    let (code, report, stderr) = run_json(dir.path(), &[]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(json_errors(&report).contains("ray: missing tag absent"), "{report:#}");
}

/// A head and two worker Ray nodes, each in its own network namespace on a
/// private bridge (Ray replaces 127.0.0.1 by the machine's address, so
/// loopback alone cannot separate nodes). Worker `w1` has the custom
/// resource `special`; both have `worker`. Torn down on drop.
struct RayCluster {
    script: PathBuf,
    vars: Vec<(String, String)>,
    ns: String,
    subnet: String,
}

impl RayCluster {
    fn up() -> Self {
        ray_python();
        let script = workspace_root().join("plugins/ray-like/testing/netns-cluster.sh");
        let ns = format!("bpt{}", std::process::id() % 10_000);
        let subnet = format!("10.79.{}", std::process::id() % 250);
        let mut cluster = Self { script, vars: Vec::new(), ns, subnet };
        // Torn down by `drop` even when starting fails half-way.
        let up = cluster.command(&["up"]).output().unwrap();
        assert!(up.status.success(), "the Ray cluster did not start:\n{}", String::from_utf8_lossy(&up.stderr));
        let env = cluster.command(&["env"]).output().unwrap();
        cluster.vars = String::from_utf8_lossy(&env.stdout)
            .lines()
            .filter_map(|l| l.strip_prefix("export ")?.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())))
            .collect();
        cluster
    }

    fn command(&self, args: &[&str]) -> std::process::Command {
        let mut command = std::process::Command::new("bash");
        command
            .arg(&self.script)
            .args(args)
            .env("BP_NS", &self.ns)
            .env("BP_SUBNET", &self.subnet)
            .env("VENV", workspace_root().join("target/ray-venv"));
        command
    }

    fn var(&self, name: &str) -> &str {
        &self.vars.iter().find(|(k, _)| k == name).unwrap_or_else(|| panic!("cluster env has no {name}")).1
    }

    fn ip(&self, node: &str) -> String {
        format!(
            "{}.{}",
            self.subnet,
            match node {
                "head" => 1,
                "w1" => 2,
                _ => 3,
            }
        )
    }

    /// A config whose `ray` instance connects to this cluster, its driver in the head's namespace.
    fn config(&self) -> String {
        format!(
            "default_backend = \"ray\"\n\n[backends.ray]\ntype = \"ray\"\npython = \"{}\"\naddress = \"{}\"\n\
             auth_token = \"{}\"\nnode_ip_address = \"{}\"\ndriver_prefix = [\"ip\", \"netns\", \"exec\", \"{}-head\"]\nmax_retries = 3\n",
            ray_python().display(),
            self.var("BP_RAY_ADDRESS"),
            self.var("RAY_AUTH_TOKEN"),
            self.ip("head"),
            self.ns
        )
    }

    /// `kill -9` of the raylet of `node`.
    fn kill_raylet(&self, node: &str) {
        let pids = self.command(&["pids", node, "raylet"]).output().unwrap();
        let pids = String::from_utf8_lossy(&pids.stdout).to_string();
        assert!(!pids.trim().is_empty(), "no raylet in {node}");
        for pid in pids.split_whitespace() {
            unsafe { libc::kill(pid.parse().unwrap(), libc::SIGKILL) };
        }
    }
}

impl Drop for RayCluster {
    fn drop(&mut self) {
        let _ = self.command(&["down"]).output();
    }
}

/// A shell node that records and prints the address of the Ray node it runs on.
const WHERE: &str = "ip -o -4 addr show dev eth0 | awk '{print $4}' | cut -d/ -f1";

#[test]
fn on_a_three_node_cluster_placement_follows_custom_resources_tags_and_labels_and_a_killed_raylet_s_task_is_retried_elsewhere()
 {
    let cluster = RayCluster::up();

    // Only w1 has `special`.
    let placed = format!(
        "[[node]]\nid = \"special\"\ntype = \"std.shell\"\nresources = {{ custom = {{ special = 1 }} }}\n\
         settings = {{ command = \"{WHERE}\" }}\n\n[[output]]\nfrom = \"special.stdout\"\nto = \"out/special.txt\"\n"
    );
    let dir = workflow_with_config(&placed, &cluster.config());
    let (code, report, stderr) = run_json(dir.path(), &[]);
    assert_eq!(code, Some(0), "{stderr}\n{report:#}");
    let ran_on = std::fs::read_to_string(dir.path().join("out/special.txt")).unwrap();
    assert_eq!(ran_on.trim(), cluster.ip("w1"));

    // The tag `special` maps to w1's resource, the label `site=two` to w2's `other`.
    let mapped = format!(
        "{}tag_resources = {{ special = \"special\" }}\nlabel_resources = {{ \"site=two\" = \"other\" }}\n\n\
         [[route]]\nmatch = {{ id = \"tagged-*\" }}\nrequire = {{ tags = [\"special\"] }}\n",
        cluster.config()
    );
    let mut workflow = String::new();
    for i in 0..3 {
        for (node, labels) in [("tagged", ""), ("labelled", "labels = { site = \"two\" }\n")] {
            workflow += &format!(
                "[[node]]\nid = \"{node}-{i}\"\ntype = \"std.shell\"\n{labels}settings = {{ command = \"{WHERE}\" }}\n\n\
                 [[output]]\nfrom = \"{node}-{i}.stdout\"\nto = \"out/{node}-{i}.txt\"\n\n"
            );
        }
    }
    let dir = workflow_with_config(&workflow, &mapped);
    let (code, report, stderr) = run_json(dir.path(), &[]);
    assert_eq!(code, Some(0), "{stderr}\n{report:#}");
    for i in 0..3 {
        let ran_on = |node: &str| std::fs::read_to_string(dir.path().join(format!("out/{node}-{i}.txt"))).unwrap();
        assert_eq!(ran_on("tagged").trim(), cluster.ip("w1"), "tagged-{i}");
        assert_eq!(ran_on("labelled").trim(), cluster.ip("w2"), "labelled-{i}");
    }

    // A 6 s task on a worker node; its raylet is killed mid-task.
    let marks = dir.path().join("started-on.txt");
    let long = format!(
        "[[node]]\nid = \"long\"\ntype = \"std.shell\"\nresources = {{ custom = {{ worker = 1 }} }}\n\
         settings = {{ command = \"{WHERE} >> {}; sleep 6; {WHERE}\" }}\n\n[[output]]\nfrom = \"long.stdout\"\nto = \"out/long.txt\"\n",
        marks.display()
    );
    std::fs::write(dir.path().join("workflow.toml"), long).unwrap();
    let run = {
        let dir = dir.path().to_owned();
        std::thread::spawn(move || run_json(&dir, &[]))
    };
    let start = std::time::Instant::now();
    while std::fs::read_to_string(&marks).map_or(true, |m| m.trim().is_empty()) {
        assert!(start.elapsed() < Duration::from_secs(120), "the task never started");
        std::thread::sleep(Duration::from_millis(50));
    }
    let first = std::fs::read_to_string(&marks).unwrap().trim().to_owned();
    let victim = if first == cluster.ip("w1") { "w1" } else { "w2" };
    cluster.kill_raylet(victim);
    let (code, report, stderr) = run.join().unwrap();
    assert_eq!(code, Some(0), "{stderr}\n{report:#}");
    let finished_on = std::fs::read_to_string(dir.path().join("out/long.txt")).unwrap();
    let survivor = if victim == "w1" { "w2" } else { "w1" };
    assert_eq!(finished_on.trim(), cluster.ip(survivor), "retried on the other node");
    let started = std::fs::read_to_string(&marks).unwrap();
    assert_eq!(started.lines().collect::<Vec<_>>(), [cluster.ip(victim), cluster.ip(survivor)]);
}

#[test]
fn a_64_mib_intermediate_result_stays_in_ray_and_only_its_digest_reaches_the_host() {
    let workflow = r#"
[[node]]
id = "make"
type = "std.shell"
settings = { command = "yes 0123456789abcdef | head -c 67108864" }

[[node]]
id = "digest"
type = "std.hash"
inputs = { data = "make.stdout" }
# A cached node's key is made of its inputs' bytes, which would bring them to the host.
cache = false

[[output]]
from = "digest.digest"
to = "out/digest.b3"
"#;
    let dir = workflow_with_config(workflow, &config(""));
    let (code, report, stderr) = run_json(dir.path(), &[]);
    assert_eq!(code, Some(0), "{stderr}\n{report:#}");
    let expected: Vec<u8> = b"0123456789abcdef\n".iter().copied().cycle().take(64 << 20).collect();
    let digest = std::fs::read_to_string(dir.path().join("out/digest.b3")).unwrap();
    assert_eq!(digest.trim(), blake3::hash(&expected).to_hex().as_str());
    // The 64 MiB went from one Ray task to the next by reference: what came
    // back to the host is the digest line alone.
    let ray = &report["backends"][0];
    assert_eq!(ray["instance"], "ray", "{report:#}");
    assert!(ray["received_bytes"].as_u64().unwrap() < 1024, "{report:#}");

    // The same workflow with its consumer on `local`: the bytes must come to the host.
    let crossing = workflow.replace("type = \"std.hash\"\n", "type = \"std.hash\"\nbackend = \"local\"\n");
    std::fs::write(dir.path().join("workflow.toml"), crossing).unwrap();
    let (code, report, stderr) = run_json(dir.path(), &[]);
    assert_eq!(code, Some(0), "{stderr}\n{report:#}");
    let ray = report["backends"].as_array().unwrap().iter().find(|b| b["instance"] == "ray").unwrap().clone();
    assert_eq!(ray["received_bytes"].as_u64().unwrap(), 64 << 20, "{report:#}");
    assert_eq!(std::fs::read_to_string(dir.path().join("out/digest.b3")).unwrap(), digest);
}

#[test]
fn a_driver_killed_mid_run_is_restarted_and_its_task_retried_on_the_new_driver() {
    let workflow = "[[node]]\nid = \"slow\"\ntype = \"std.sleep\"\nsettings = { ms = 3000 }\n\n\
                    [[output]]\nfrom = \"slow.out\"\nto = \"out/slow.txt\"\n";
    // The retry comes long before the new driver is up (seconds): it waits for it.
    let config = config("[policy]\nretry = { infrastructure_attempts = 2, backoff_secs = 0.1 }");
    let dir = workflow_with_config(workflow, &config);
    let run = RunningRun::start(dir.path(), "debug");
    let log = run.wait_for_log("driver pid ", Duration::from_secs(90));
    let at = log.find("driver pid ").unwrap() + "driver pid ".len();
    let pid: i32 = log[at..].split(|c: char| !c.is_ascii_digit()).next().unwrap().parse().unwrap();
    std::thread::sleep(Duration::from_secs(1));
    unsafe { libc::kill(pid, libc::SIGKILL) };
    let (code, report, log) = run.finish();
    assert_eq!(code, Some(0), "{log}");
    assert_eq!(report["retries"], 1, "{report:#}");
    assert!(log.contains("the Ray driver stopped"), "{log}");
    assert!(log.contains("1 tasks submitted while the Ray driver restarted go to the new one"), "{log}");
    assert_eq!(log.matches("driver pid ").count(), 2, "a second driver started:\n{log}");
}

#[test]
fn a_ray_task_past_its_deadline_is_cancelled_and_reported_as_a_timeout() {
    // The instance's own deadline (the driver's), not the host's policy timeout.
    let workflow = "[[node]]\nid = \"stuck\"\ntype = \"std.sleep\"\nsettings = { ms = 60000 }\n";
    let dir = workflow_with_config(
        workflow,
        &config("task_timeout_secs = 2\n[policy]\nretry = { infrastructure_attempts = 1 }"),
    );
    let started = std::time::Instant::now();
    let (code, report, stderr) = run_json(dir.path(), &[]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(45), "took {:?}", started.elapsed());
    let failure = &report["failures"][0];
    assert_eq!(failure["kind"], "timed-out", "{report:#}");
}

#[test]
fn a_ray_task_says_when_it_started_and_its_shell_nodes_stderr_reaches_backplane_logs() {
    let workflow = "[[node]]\nid = \"shout\"\ntype = \"std.shell\"\n\
                    settings = { command = \"echo 'said on ray' >&2; echo done\" }\n";
    let dir = workflow_with_config(workflow, &config(""));
    let output = crate::fixtures::command_in(dir.path(), &["run", "--trace", "trace.tsv"]).output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", crate::fixtures::stderr_of(&output));
    let trace = std::fs::read_to_string(dir.path().join("trace.tsv")).unwrap();
    let row: Vec<&str> = trace.lines().nth(1).unwrap().split('\t').collect();
    let (submit, start, complete) =
        (row[5].parse::<f64>().unwrap(), row[6].parse::<f64>().unwrap(), row[7].parse::<f64>().unwrap());
    assert_eq!(row[2], "ray");
    // Ray takes a while to place a task: the time before the task began is queued, not running.
    assert!(submit < start && start <= complete, "{trace}");
    let logs = crate::fixtures::backplane().args(["logs", "shout"]).current_dir(dir.path()).output().unwrap();
    let text = crate::fixtures::stdout_of(&logs);
    assert!(text.contains("── attempt 1 on ray: succeeded ──\ninfo  said on ray"), "{text}");
}

#[test]
fn per_item_tasks_are_ray_tasks_gathered_in_item_order_and_a_failed_item_alone_is_retried() {
    // The producer streams, so it runs on `local`; every item is a Ray task.
    // Item 4 fails once; the retry runs it alone.
    let text: String = (0..12).map(|i| format!("{i}\n")).collect();
    let command = "read x; echo $x >> runs.log; \
                   if [ $x = 4 ] && [ ! -e seen-4 ]; then touch seen-4; exit 3; fi; echo \"ray $x\"";
    let workflow = format!(
        "[workflow]\nname = \"per-item-on-ray\"\n\n\
         [[node]]\nid = \"text\"\ntype = \"std.const\"\nsettings = {{ text = {text:?} }}\nbackend = \"local\"\n\n\
         [[node]]\nid = \"split\"\ntype = \"std.split\"\ninputs = {{ text = \"text.text\" }}\n\n\
         [[node]]\nid = \"each\"\ntype = \"std.shell\"\nsettings = {{ command = {command:?} }}\n\
         retry = {{ node_attempts = 2, backoff_secs = 0.01 }}\n\
         inputs = {{ stdin = {{ each = \"split.items\", window = 4 }} }}\n\n\
         [[output]]\nfrom = \"each.stdout\"\nto = \"out.txt\"\n"
    );
    let dir = workflow_with_config(&workflow, &config(""));
    let (code, report, stderr) = run_json(dir.path(), &[]);
    assert_eq!(code, Some(0), "{stderr}\n{report:#}");
    assert_eq!((report["item_tasks"].as_u64(), report["retries"].as_u64()), (Some(12), Some(1)), "{report:#}");
    let ray = report["backends"].as_array().unwrap().iter().find(|b| b["instance"] == "ray").unwrap();
    assert_eq!(ray["attempts"], 13, "every item and the retry ran on Ray: {report:#}");
    let expected: String = (0..12).map(|i| format!("ray {i}\n")).collect();
    assert_eq!(std::fs::read_to_string(dir.path().join("out.txt")).unwrap(), expected);
    let mut runs: Vec<u32> =
        std::fs::read_to_string(dir.path().join("runs.log")).unwrap().lines().map(|l| l.parse().unwrap()).collect();
    runs.sort_unstable();
    assert_eq!(runs, [0, 1, 2, 3, 4, 4, 5, 6, 7, 8, 9, 10, 11], "item 4 ran twice, the others once");
}
