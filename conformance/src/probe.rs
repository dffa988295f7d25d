//! Submitting tasks to a backend and waiting for their completions.

use backplane_plugin_api::{
    BackendBox, CompletionSink, CompletionSink_TO, NodeSpecRef, NodeTask, Payload, PluginError_NE, PluginResult,
    abi_stable::{
        sabi_trait::TD_Opaque,
        std_types::{RString, RVec},
    },
};
use std::{
    sync::mpsc::{self, Receiver, RecvTimeoutError, Sender},
    time::{Duration, Instant},
};

/// What came back for one task.
#[derive(Debug)]
pub enum Outcome {
    Completed(Result<Vec<Payload>, PluginError_NE>),
    /// The sink was dropped without `complete`.
    Dropped,
}

struct ProbeSink {
    task_id: u64,
    channel: Sender<(u64, Outcome)>,
    completed: bool,
}

impl CompletionSink for ProbeSink {
    fn complete(mut self, result: PluginResult<RVec<Payload>>) {
        self.completed = true;
        let _ = self.channel.send((self.task_id, Outcome::Completed(result.into_result().map(RVec::into_vec))));
    }
}

impl Drop for ProbeSink {
    fn drop(&mut self) {
        if !self.completed {
            let _ = self.channel.send((self.task_id, Outcome::Dropped));
        }
    }
}

/// A sink that reports its completion (or its drop) on `channel`.
pub fn sink(task_id: u64, channel: Sender<(u64, Outcome)>) -> backplane_plugin_api::CompletionSinkBox {
    CompletionSink_TO::from_value(ProbeSink { task_id, channel, completed: false }, TD_Opaque)
}

/// Submits tasks to one backend instance and collects completions.
pub struct Probe<'a> {
    pub backend: &'a BackendBox,
    sender: Sender<(u64, Outcome)>,
    receiver: Receiver<(u64, Outcome)>,
    next_id: u64,
    pub working_dir: String,
}

impl<'a> Probe<'a> {
    pub fn new(backend: &'a BackendBox) -> Self {
        let (sender, receiver) = mpsc::channel();
        let working_dir = std::env::temp_dir().to_string_lossy().into_owned();
        Self { backend, sender, receiver, next_id: 1, working_dir }
    }

    /// Submits `spec` with `settings` and `inputs`; returns the task id.
    pub fn submit(&mut self, spec: NodeSpecRef, settings: serde_json::Value, inputs: Vec<Payload>) -> u64 {
        let task_id = self.next_id;
        self.next_id += 1;
        let task = task(task_id, spec, settings, inputs, &self.working_dir);
        self.backend.submit(task, sink(task_id, self.sender.clone()));
        task_id
    }

    /// Waits for `count` completions (any order) until `timeout`.
    pub fn collect(&self, count: usize, timeout: Duration) -> Result<Vec<(u64, Outcome)>, String> {
        let deadline = Instant::now() + timeout;
        let mut got = Vec::with_capacity(count);
        while got.len() < count {
            match self.receiver.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(item) => got.push(item),
                Err(RecvTimeoutError::Timeout) => {
                    return Err(format!("only {} of {count} tasks completed within {timeout:?} (a hang)", got.len()));
                }
                Err(RecvTimeoutError::Disconnected) => unreachable!("the probe holds a sender"),
            }
        }
        Ok(got)
    }

    /// Waits for one completion.
    pub fn one(&self, timeout: Duration) -> Result<(u64, Outcome), String> {
        self.collect(1, timeout).map(|mut v| v.remove(0))
    }

    /// Completions arriving after everything expected (duplicates would show here).
    pub fn extra(&self, wait: Duration) -> usize {
        std::thread::sleep(wait);
        self.receiver.try_iter().count()
    }
}

pub fn task(
    task_id: u64,
    spec: NodeSpecRef,
    settings: serde_json::Value,
    inputs: Vec<Payload>,
    working_dir: &str,
) -> NodeTask {
    NodeTask {
        task_id,
        attempt: 1,
        node_id: RString::from(format!("conformance-{task_id}")),
        node_type: spec.type_name().as_str().into(),
        node_version: spec.version().as_str().into(),
        settings: settings.to_string().into(),
        inputs: inputs.into(),
        resources: Default::default(),
        timeout_ms: 0,
        working_dir: working_dir.into(),
        compute: spec.compute(),
        extensions: RVec::new(),
    }
}

/// The node run in this process, the way the `local` backend runs it: the
/// reference for parity.
pub fn reference(
    spec: NodeSpecRef,
    settings: &serde_json::Value,
    inputs: Vec<Payload>,
) -> Result<Vec<Payload>, PluginError_NE> {
    if spec.compute().is_none() {
        return Err(backplane_plugin_api::PluginError::unsupported("no in-process compute"));
    }
    let t = task(0, spec, settings.clone(), inputs, &std::env::temp_dir().to_string_lossy());
    backplane_plugin_api::run_compute(t, &|| false).into_result().map(RVec::into_vec)
}
