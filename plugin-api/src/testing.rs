//! Calling node types directly from unit tests, without a host.

use crate::{
    backend::{NodeTask, run_compute},
    error::PluginError_NE,
    node::{NodeSpecRef, NodeType, node_spec},
    payload::Payload,
};

/// Runs `spec`'s compute function the way an in-process backend does.
fn call(
    spec: NodeSpecRef,
    settings: &serde_json::Value,
    inputs: Vec<Payload>,
    node_id: &str,
    working_dir: &str,
) -> Result<Vec<Payload>, PluginError_NE> {
    let task = NodeTask {
        attempt: 1,
        node_id: node_id.into(),
        node_type: spec.type_name().as_str().into(),
        node_version: spec.version().as_str().into(),
        settings: settings.to_string().into(),
        inputs: inputs.into(),
        working_dir: working_dir.into(),
        compute: spec.compute(),
        ..NodeTask::default()
    };
    // The node's adapter already catches panics; this guards hand-written ones.
    crate::guard(|| run_compute(task, &|| false).into_result()).map(|v| v.into_vec())
}

/// Runs `N`'s compute function through the ABI adapter (settings as JSON,
/// panics caught) with `working_dir` as the workflow directory.
pub fn call_node<N: NodeType>(
    settings: serde_json::Value,
    inputs: Vec<Payload>,
    working_dir: &str,
) -> Result<Vec<Payload>, PluginError_NE> {
    call(node_spec::<N>(), &settings, inputs, "test", working_dir)
}

/// Calls a node spec's compute function (from any plugin) with `settings`
/// and `inputs`; `None` when it has none.
pub fn call_spec(
    spec: NodeSpecRef,
    settings: &serde_json::Value,
    inputs: Vec<Payload>,
) -> Option<Result<Vec<Payload>, PluginError_NE>> {
    spec.compute()
        .is_some()
        .then(|| call(spec, settings, inputs, "conformance", &std::env::temp_dir().to_string_lossy()))
}
