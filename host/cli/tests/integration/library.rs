//! The host as a Rust library: a backend and a node type written in plain
//! Rust, registered without a dylib, running next to dylib node types.

use crate::fixtures::{dylib, ensure_plugins_built};
use backplane_host::{
    Host,
    config::Config,
    diagnostic::SourceFile,
    engine::{self, RunOptions},
    plan,
    registry::{Origin, RegistryError},
    workflow::Workflow,
};
use backplane_plugin_api::{
    backend_factory,
    extensions::{Placement, TaskExtension},
    node::Context,
    node_spec,
    prelude::*,
    run_compute,
};
use std::sync::{
    Mutex,
    atomic::{AtomicUsize, Ordering},
};

static INLINE_TASKS: AtomicUsize = AtomicUsize::new(0);
/// A node and the placement extension its task reached the backend with.
type SeenPlacement = (String, Result<Option<Placement>, String>);
static PLACEMENTS: Mutex<Vec<SeenPlacement>> = Mutex::new(Vec::new());

/// Runs each task on the submitting thread: the smallest possible backend.
struct InlineBackend;

impl BackendPlugin for InlineBackend {
    const NAME: &'static str = "inline";
    const VERSION: &'static str = "0.1.0";
    const DESCRIPTION: &'static str = "Runs tasks on the calling thread";
    type Config = serde_json::Value;

    fn capabilities() -> Capabilities {
        Capabilities {
            flags: CapabilityFlags::IN_PROCESS_COMPUTE,
            tags: RVec::from(vec![RString::from("licensed"), RString::from("gpu")]),
            ..Capabilities::default()
        }
    }
    fn create(_: serde_json::Value) -> Result<Self, PluginError_NE> {
        Ok(Self)
    }
    fn submit(&self, task: NodeTask, sink: CompletionSinkBox) {
        INLINE_TASKS.fetch_add(1, Ordering::Relaxed);
        PLACEMENTS.lock().unwrap().push((task.node_id.to_string(), Placement::of(&task)));
        sink.complete(run_compute(task, &|| false));
    }
}

struct Upper;

impl NodeType for Upper {
    const TYPE_NAME: &'static str = "test.upper";
    const VERSION: &'static str = "1.0.0";
    const DESCRIPTION: &'static str = "Uppercases text";
    type Settings = NoSettings;
    fn inputs() -> Vec<PortSpec> {
        vec![PortSpec::text("text")]
    }
    fn outputs() -> Vec<PortSpec> {
        vec![PortSpec::text("text")]
    }
    fn compute(_: NoSettings, mut inputs: Inputs, _: &Context<'_>) -> Result<Vec<Payload>, NodeError> {
        Ok(vec![Payload::text("text", inputs.text("text")?.to_uppercase())])
    }
}

/// Declares an output it never produces.
struct Silent;

impl NodeType for Silent {
    const TYPE_NAME: &'static str = "test.silent";
    const VERSION: &'static str = "1.0.0";
    const DESCRIPTION: &'static str = "Declares `text` but outputs nothing";
    type Settings = NoSettings;
    fn outputs() -> Vec<PortSpec> {
        vec![PortSpec::text("text")]
    }
    fn compute(_: NoSettings, _: Inputs, _: &Context<'_>) -> Result<Vec<Payload>, NodeError> {
        Ok(Vec::new())
    }
}

/// Needs a backend with the tag `licensed`.
struct Licensed;

impl NodeType for Licensed {
    const TYPE_NAME: &'static str = "test.licensed";
    const VERSION: &'static str = "1.0.0";
    const DESCRIPTION: &'static str = "Requires the tag `licensed`";
    type Settings = NoSettings;
    fn requirements() -> Requirements {
        Requirements { tags: RVec::from(vec![RString::from("licensed")]), ..Requirements::default() }
    }
    fn compute(_: NoSettings, _: Inputs, _: &Context<'_>) -> Result<Vec<Payload>, NodeError> {
        Ok(Vec::new())
    }
}

fn host() -> Host {
    ensure_plugins_built();
    let mut host = Host::new();
    host.register_backend_factory(backend_factory::<InlineBackend>(), Origin::code("tests"));
    host.register_node_type(node_spec::<Upper>(), Origin::code("tests"));
    host.register_node_type(node_spec::<Silent>(), Origin::code("tests"));
    host.register_node_type(node_spec::<Licensed>(), Origin::code("tests"));
    host.load_files(&[dylib("backplane_std_nodes"), dylib("backplane_local")]);
    assert!(host.load_errors.is_empty() && host.conflicts.is_empty());
    host
}

#[test]
fn rust_backend_runs_dylib_and_rust_nodes_with_fan_out_and_ordered_fan_in() {
    let mut host = host();
    host.backends.create("inline", "inline", serde_json::json!({}), None).unwrap();
    let workflow = Workflow::parse(SourceFile::new(
        "wf.toml",
        r#"
[[node]]
id = "word"
type = "std.const"
settings = { text = "abc" }

[[node]]
id = "shout"
type = "test.upper"
inputs = { text = "word.text" }

[[node]]
id = "joined"
type = "std.concat"
settings = { separator = "|" }
inputs = { parts = ["shout.text", "word.text", "shout.text"] }

[[output]]
from = "joined.text"
to = "-"

[[output]]
from = "shout.text"
to = "-"
"#
        .into(),
    ))
    .unwrap();
    let plan = plan::build(&workflow, &host.nodes, &host.backends, &[], Default::default()).unwrap();
    let before = INLINE_TASKS.load(Ordering::Relaxed);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let outcome = runtime.block_on(engine::execute(&plan, &RunOptions::default()));
    assert!(outcome.report.success(), "{:?}", outcome.report.failure);
    assert_eq!(INLINE_TASKS.load(Ordering::Relaxed) - before, 3);
    let text = |i: usize| String::from_utf8(outcome.outputs[i].as_ref().unwrap().data.to_vec()).unwrap();
    assert_eq!(text(0), "ABC|abc|ABC");
    assert_eq!(text(1), "ABC");
    assert_eq!(outcome.report.backends[0].instance, "inline");
    assert_eq!(outcome.report.backends[0].nodes, 3);
}

#[test]
fn backend_config_is_checked_against_the_factory_schema() {
    let mut host = host();
    let err = host.backends.create("tiny", "local", serde_json::json!({ "threads": 0, "colour": "red" }), None).err();
    let Some(RegistryError::InvalidConfig { problems, .. }) = err else {
        panic!("expected InvalidConfig, got {err:?}")
    };
    assert!(problems.iter().any(|p| p.contains("/threads")), "{problems:?}");
    assert!(problems.iter().any(|p| p.contains("colour")), "{problems:?}");
    let created = host.backends.create("tiny", "local", serde_json::json!({ "threads": 1 }), None).unwrap();
    assert_eq!(created.capabilities().max_concurrency, 1);
}

#[test]
fn registering_a_node_type_twice_in_code_is_a_conflict() {
    let mut host = host();
    host.register_node_type(node_spec::<Upper>(), Origin::code("again"));
    let conflict = host.conflicts.first().expect("conflict recorded").to_string();
    assert!(conflict.contains("node type `test.upper` is defined twice"), "{conflict}");
    assert!(conflict.contains("`tests` (registered in code)") && conflict.contains("`again`"), "{conflict}");
}

fn run(host: &Host, workflow: &str) -> backplane_host::engine::RunOutcome {
    let workflow = Workflow::parse(SourceFile::new("wf.toml", workflow.into())).unwrap();
    let plan = plan::build(&workflow, &host.nodes, &host.backends, &[], Default::default()).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(engine::execute(&plan, &RunOptions::default()))
}

#[test]
fn a_missing_output_that_a_consumer_needs_fails_the_producer() {
    let mut host = host();
    host.backends.create("inline", "inline", serde_json::json!({}), None).unwrap();
    let outcome = run(
        &host,
        "[[node]]\nid = \"quiet\"\ntype = \"test.silent\"\n\n[[node]]\nid = \"up\"\ntype = \"test.upper\"\ninputs = { text = \"quiet.text\" }\n",
    );
    let failure = outcome.report.failure.expect("the run fails");
    assert_eq!(failure.node, "quiet");
    assert_eq!(failure.message, "the node produced no `text` output, which its consumers need");
    assert_eq!(outcome.report.not_started, 1);
}

#[test]
fn runs_sharing_an_instance_never_see_each_others_cancellations() {
    let mut host = host();
    host.backends.create("pool", "local", serde_json::json!({ "threads": 2 }), None).unwrap();
    // A run that fails fast cancels its in-flight sleeper...
    let first = run(
        &host,
        "[[node]]\nid = \"bad\"\ntype = \"std.fail\"\n\n[[node]]\nid = \"nap\"\ntype = \"std.sleep\"\nsettings = { ms = 200 }\n",
    );
    assert_eq!(first.report.failure.unwrap().node, "bad");
    // ...and the next run on the same instance, with the same node indices, is unaffected.
    let second = run(
        &host,
        "[[node]]\nid = \"ok\"\ntype = \"std.noop\"\n\n[[node]]\nid = \"nap\"\ntype = \"std.sleep\"\nsettings = { ms = 10 }\n",
    );
    assert!(second.report.success(), "{:?}", second.report.failure);
}

#[test]
fn a_node_s_required_tags_and_labels_reach_its_backend_as_the_placement_extension() {
    let mut host = host();
    host.backends.create("inline", "inline", serde_json::json!({}), None).unwrap();
    let workflow = r#"
[[node]]
id = "plain"
type = "std.noop"

[[node]]
id = "licensed"
type = "test.licensed"

[[node]]
id = "labelled"
type = "test.licensed"
labels = { zone = "eu" }
"#;
    let workflow = Workflow::parse(SourceFile::new("wf.toml", workflow.into())).unwrap();
    let config = "[[route]]\nmatch = { labels = { zone = \"eu\" } }\nrequire = { tags = [\"gpu\"] }\n";
    let config = Config::parse(SourceFile::new("backplane.toml", config.into())).unwrap();
    let plan = plan::build(&workflow, &host.nodes, &host.backends, &config.routes, Default::default()).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let outcome = runtime.block_on(engine::execute(&plan, &RunOptions::default()));
    assert!(outcome.report.success(), "{:?}", outcome.report.failure);

    // Only this run's nodes: other tests in the same process use the backend too.
    let mut seen: Vec<SeenPlacement> = PLACEMENTS
        .lock()
        .unwrap()
        .iter()
        .filter(|(node, _)| ["plain", "licensed", "labelled"].contains(&node.as_str()))
        .cloned()
        .collect();
    seen.sort_by(|a, b| a.0.cmp(&b.0));
    let placement = |tags: &[&str], labels: &[(&str, &str)]| Placement {
        tags: tags.iter().map(|t| t.to_string()).collect(),
        labels: labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
    };
    assert_eq!(
        seen,
        [
            // The type's tag, the rule's tag and the node's label.
            ("labelled".to_owned(), Ok(Some(placement(&["licensed", "gpu"], &[("zone", "eu")])))),
            ("licensed".to_owned(), Ok(Some(placement(&["licensed"], &[])))),
            ("plain".to_owned(), Ok(None)),
        ]
    );
}
