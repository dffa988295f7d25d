//! Calling node types directly from unit tests, without a host.

use crate::{
    error::PluginError_NE,
    node::{ComputeFn, ComputeRequest, NodeType, TaskContext, node_spec},
    payload::Payload,
};

/// Runs `N`'s compute function through the ABI adapter (settings as JSON,
/// panics caught) with `working_dir` as the workflow directory.
pub fn call_node<N: NodeType>(
    settings: serde_json::Value,
    inputs: Vec<Payload>,
    working_dir: &str,
) -> Result<Vec<Payload>, PluginError_NE> {
    let spec = node_spec::<N>();
    let ComputeFn(compute) = spec.compute().into_option().expect("node_spec always sets compute");
    let settings = settings.to_string();
    let not_cancelled = || false;
    let ctx = TaskContext { node_id: "test", attempt: 1, working_dir, deadline: None, cancelled: &not_cancelled };
    compute(ComputeRequest { settings: settings.as_str().into(), inputs: inputs.into(), context: ctx.as_abi() })
        .into_result()
        .map(|v| v.into_vec())
}

/// Calls a node spec's compute function (from any plugin) with `settings`
/// and `inputs`; `None` when it has none.
pub fn call_spec(
    spec: crate::NodeSpecRef,
    settings: &serde_json::Value,
    inputs: Vec<Payload>,
) -> Option<Result<Vec<Payload>, PluginError_NE>> {
    let ComputeFn(compute) = spec.compute().into_option()?;
    let settings = settings.to_string();
    let not_cancelled = || false;
    let working_dir = std::env::temp_dir().to_string_lossy().into_owned();
    let ctx = TaskContext {
        node_id: "conformance",
        attempt: 1,
        working_dir: &working_dir,
        deadline: None,
        cancelled: &not_cancelled,
    };
    let request = ComputeRequest { settings: settings.as_str().into(), inputs: inputs.into(), context: ctx.as_abi() };
    Some(crate::guard(|| compute(request).into_result()).map(|v| v.into_vec()))
}
