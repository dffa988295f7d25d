//! Runs one node task in this process: the far end of backends that isolate
//! each task in a child process (`backplane run-task`) or run it on a worker.

use crate::Host;
use backplane_plugin_api::{
    ComputeFn, ComputeRequest, Payload, PluginError, PluginError_NE, TaskContext, guard, wire::TaskMessage,
};
use std::time::{Duration, Instant};

/// Runs `message` with the node types registered in `host`. Every failure —
/// unknown type, version mismatch, node error, panic — comes back as an error
/// value, never as a panic.
pub fn run_task(host: &Host, message: TaskMessage) -> Result<Vec<Payload>, PluginError_NE> {
    let Some(entry) = host.nodes.get(&message.node_type) else {
        return Err(PluginError::unsupported(format!(
            "node type `{}` is not loaded here (is its plugin on this machine's plugin path?)",
            message.node_type
        )));
    };
    if !message.node_version.is_empty() && message.node_version != entry.version() {
        return Err(PluginError::unsupported(format!(
            "node type `{}` is version {} here but the task needs {}",
            message.node_type,
            entry.version(),
            message.node_version
        )));
    }
    let Some(ComputeFn(compute)) = entry.spec.compute().into_option() else {
        return Err(PluginError::unsupported(format!(
            "node type `{}` has no in-process compute function",
            message.node_type
        )));
    };
    let deadline = (message.timeout_ms > 0).then(|| Instant::now() + Duration::from_millis(message.timeout_ms));
    let not_cancelled = || false;
    let context = TaskContext {
        node_id: &message.node_id,
        attempt: message.attempt,
        working_dir: &message.working_dir,
        deadline,
        cancelled: &not_cancelled,
    };
    let request = ComputeRequest {
        settings: message.settings.as_str().into(),
        inputs: message.inputs.into(),
        context: context.as_abi(),
    };
    // The node's adapter already catches panics; this guards hand-written ones.
    guard(|| compute(request).into_result()).map(|outputs| outputs.into_vec())
}
