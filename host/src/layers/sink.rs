//! The host's completion sink: a backend's way back into the engine's channel.

use backplane_plugin_api::{
    CompletionSink, CompletionSink_TO, CompletionSinkBox, Payload, PluginError, PluginError_NE, PluginResult, TaskLog,
    abi_stable::{
        sabi_trait::TD_Opaque,
        std_types::{RStr, RVec},
    },
    log::LogLevel,
    task_log::LogLine,
};
use std::{
    cell::Cell,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
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
    /// When the backend said the task began to run (backends before 1.2,
    /// and layers that answer for a task, say nothing).
    pub started: Option<Instant>,
    /// What the task's node logged, bounded as [`TaskLog`] bounds it.
    pub logs: Vec<LogLine>,
}

impl Completion {
    /// A completion the host makes up for a task (a timeout, a lost sink).
    pub fn synthetic(node: u32, task_id: u64, result: Result<RVec<Payload>, PluginError_NE>, lost: bool) -> Self {
        Self { node, task_id, result, lost, started: None, logs: Vec::new() }
    }
}

/// Sends the result to the engine's channel. Dropped without `complete`
/// (a buggy or crashed backend), it sends an infrastructure error instead,
/// so the run never waits for a task nobody will finish.
struct EngineSink {
    node: u32,
    task_id: u64,
    channel: UnboundedSender<Completion>,
    completed: bool,
    started: Cell<Option<Instant>>,
    log: TaskLog,
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
            started: self.started.get(),
            logs: if self.log.is_empty() { Vec::new() } else { self.log.take() },
        });
    }

    // Added in plugin-api 1.2.
    fn started(&self, at_unix_us: u64) {
        self.note_start(at_unix_us);
    }
    fn log(&self, level: LogLevel, message: RStr<'_>) {
        self.log.push(level, message.as_str());
    }
}

impl EngineSink {
    fn note_start(&self, at_unix_us: u64) {
        if self.started.get().is_none() {
            self.started.set(Some(instant_of(at_unix_us)));
        }
    }
}

/// The instant of a wall-clock time another process reported (0: now); one
/// in the future (a skewed clock) reads as now.
fn instant_of(at_unix_us: u64) -> Instant {
    let now = Instant::now();
    if at_unix_us == 0 {
        return now;
    }
    let at = UNIX_EPOCH + Duration::from_micros(at_unix_us);
    match SystemTime::now().duration_since(at) {
        Ok(ago) => now.checked_sub(ago).unwrap_or(now),
        Err(_) => now,
    }
}

impl Drop for EngineSink {
    fn drop(&mut self) {
        if !self.completed {
            let _ = self.channel.send(Completion::synthetic(
                self.node,
                self.task_id,
                Err(PluginError::infrastructure(
                    "the backend dropped the task's completion sink without reporting a result",
                )),
                true,
            ));
        }
    }
}

pub fn completion_sink(node: u32, task_id: u64, channel: UnboundedSender<Completion>) -> CompletionSinkBox {
    let sink = EngineSink { node, task_id, channel, completed: false, started: Cell::new(None), log: TaskLog::new() };
    CompletionSink_TO::from_value(sink, TD_Opaque)
}
