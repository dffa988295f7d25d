//! Runs one node task in this process: the far end of backends that isolate
//! each task in a child process (`backplane run-task`) or run it on a worker.

use crate::Host;
use backplane_plugin_api::{
    NodeTask, Payload, PluginError, PluginError_NE, TaskLog, guard, run_compute_logged, wire::TaskMessage,
};

/// Runs `message` with the node types registered in `host`; the node sees
/// `cancelled` through its context, and what it logs goes to `log`. Every
/// failure — unknown type, version mismatch, node error, panic — comes back
/// as an error value, never as a panic.
pub fn run_task(
    host: &Host,
    message: TaskMessage,
    cancelled: &(dyn Fn() -> bool + Sync),
    log: Option<&TaskLog>,
) -> Result<Vec<Payload>, PluginError_NE> {
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
    let task = NodeTask {
        task_id: message.task_id,
        attempt: message.attempt,
        node_id: message.node_id.into(),
        node_type: message.node_type.into(),
        node_version: message.node_version.into(),
        settings: message.settings.into(),
        inputs: message.inputs.into(),
        timeout_ms: message.timeout_ms,
        working_dir: message.working_dir.into(),
        compute: entry.spec.compute(),
        ..NodeTask::default()
    };
    // The node's adapter already catches panics; this guards hand-written ones.
    guard(|| run_compute_logged(task, cancelled, log).into_result()).map(|outputs| outputs.into_vec())
}
