//! The host's completion sink: a backend's way back into the engine's channel.

use backplane_plugin_api::{
    CompletionSink, CompletionSink_TO, CompletionSinkBox, Payload, PluginError, PluginError_NE, PluginResult,
    abi_stable::{sabi_trait::TD_Opaque, std_types::RVec},
};
use tokio::sync::mpsc::UnboundedSender;

/// What a backend reported for one task.
pub struct Completion {
    pub node: u32,
    /// Which attempt this is the result of.
    pub task_id: u64,
    pub result: Result<RVec<Payload>, PluginError_NE>,
    /// The backend lost the task (no result at all): a layer gave up on it,
    /// or the sink was dropped. Always the infrastructure's failure.
    pub lost: bool,
}

/// Sends the result to the engine's channel. Dropped without `complete`
/// (a buggy or crashed backend), it sends an infrastructure error instead,
/// so the run never waits for a task nobody will finish.
struct EngineSink {
    node: u32,
    task_id: u64,
    channel: UnboundedSender<Completion>,
    completed: bool,
}

impl CompletionSink for EngineSink {
    fn complete(mut self, result: PluginResult<RVec<Payload>>) {
        self.completed = true;
        // The engine may have stopped listening (run over); nothing to do then.
        let _ = self.channel.send(Completion {
            node: self.node,
            task_id: self.task_id,
            result: result.into_result(),
            lost: false,
        });
    }
}

impl Drop for EngineSink {
    fn drop(&mut self) {
        if !self.completed {
            let _ = self.channel.send(Completion {
                node: self.node,
                task_id: self.task_id,
                result: Err(PluginError::infrastructure(
                    "the backend dropped the task's completion sink without reporting a result",
                )),
                lost: true,
            });
        }
    }
}

pub fn completion_sink(node: u32, task_id: u64, channel: UnboundedSender<Completion>) -> CompletionSinkBox {
    CompletionSink_TO::from_value(EngineSink { node, task_id, channel, completed: false }, TD_Opaque)
}
