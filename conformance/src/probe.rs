//! Submitting tasks to a backend and waiting for their completions.

use backplane_plugin_api::{
    BackendBox, CompletionSink, CompletionSink_TO, NodeSpecRef, NodeTask, Payload, PluginError_NE, PluginResult,
    abi_stable::{
        sabi_trait::TD_Opaque,
        std_types::{RString, RVec},
    },
    describe,
};
use std::{
    cell::RefCell,
    collections::HashSet,
    sync::mpsc::{self, Receiver, RecvTimeoutError, Sender},
    time::{Duration, Instant},
};

/// Dropped sinks with no result at all before the suite stops: enough to
/// tell a pattern from one bad path (`parity` submits six tasks).
const STOP_AFTER_DROPPED: usize = 3;

/// What came back for one task.
#[derive(Debug)]
pub enum Outcome {
    Completed(Result<Vec<Payload>, PluginError_NE>),
    /// The sink was dropped without `complete`; with what the backend
    /// logged as the reason when that happened inside `submit` (a panic).
    Dropped(Option<String>),
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
            let _ = self.channel.send((self.task_id, Outcome::Dropped(None)));
        }
    }
}

/// A sink that reports its completion (or its drop) on `channel`.
pub fn sink(task_id: u64, channel: Sender<(u64, Outcome)>) -> backplane_plugin_api::CompletionSinkBox {
    CompletionSink_TO::from_value(ProbeSink { task_id, channel, completed: false }, TD_Opaque)
}

/// Submits tasks to one backend instance and collects completions, each
/// matched to its task: a check sees only the completions of the tasks it
/// submitted, so a slow backend's late answer to an earlier check is never
/// blamed on the next one.
pub struct Probe<'a> {
    pub backend: &'a BackendBox,
    sender: Sender<(u64, Outcome)>,
    receiver: Receiver<(u64, Outcome)>,
    next_id: u64,
    pub working_dir: String,
    tracking: RefCell<Tracking>,
}

/// Which task ids are whose.
#[derive(Default)]
struct Tracking {
    /// Submitted since the last wait began: what that wait is for.
    batch: HashSet<u64>,
    /// Submitted and not answered yet.
    pending: HashSet<u64>,
    answered: HashSet<u64>,
    /// Answers to tasks of an earlier wait that had given up on them.
    late: Vec<u64>,
    /// Second answers for one task.
    duplicates: Vec<u64>,
    /// Answers for task ids never submitted.
    unknown: Vec<u64>,
    /// Tasks answered with a result (of any check), and with a dropped sink.
    completed: usize,
    dropped: usize,
    /// A wait ended with nothing at all having come back for it.
    hung: bool,
    /// What the backend logged as an error inside `submit`, by task.
    submit_errors: std::collections::HashMap<u64, String>,
}

/// Whose an arriving completion is.
enum Arrival {
    Expected,
    Stray,
}

impl Tracking {
    fn arrive(&mut self, task_id: u64, outcome: &Outcome) -> Arrival {
        match outcome {
            Outcome::Completed(_) => self.completed += 1,
            Outcome::Dropped(_) => self.dropped += 1,
        }
        if self.pending.remove(&task_id) {
            self.answered.insert(task_id);
            if self.batch.contains(&task_id) {
                return Arrival::Expected;
            }
            self.late.push(task_id);
        } else if self.answered.contains(&task_id) {
            self.duplicates.push(task_id);
        } else {
            self.unknown.push(task_id);
        }
        Arrival::Stray
    }
}

impl<'a> Probe<'a> {
    pub fn new(backend: &'a BackendBox) -> Self {
        let (sender, receiver) = mpsc::channel();
        let working_dir = std::env::temp_dir().to_string_lossy().into_owned();
        Self { backend, sender, receiver, next_id: 1, working_dir, tracking: RefCell::default() }
    }

    /// Submits `spec` with `settings` and `inputs`; returns the task id.
    pub fn submit(&mut self, spec: NodeSpecRef, settings: serde_json::Value, inputs: Vec<Payload>) -> u64 {
        let task_id = self.next_id;
        self.next_id += 1;
        let task = task(task_id, spec, settings, inputs, &self.working_dir);
        {
            let mut tracking = self.tracking.borrow_mut();
            tracking.batch.insert(task_id);
            tracking.pending.insert(task_id);
        }
        let _ = backplane_loader::take_last_error();
        self.backend.submit(task, sink(task_id, self.sender.clone()));
        if let Some(error) = backplane_loader::take_last_error() {
            self.tracking.borrow_mut().submit_errors.insert(task_id, error);
        }
        task_id
    }

    /// Waits for `count` completions (any order) of the tasks submitted
    /// since the last wait, giving up when none has come for `timeout`: the
    /// limit is per task, so a slow backend that keeps answering is waited
    /// for. Completions of other tasks are set aside as late, duplicate or
    /// unknown ([`Probe::stray_check`]).
    pub fn collect(&self, count: usize, timeout: Duration) -> Result<Vec<(u64, Outcome)>, String> {
        match self.collect_partial(count, timeout) {
            (got, None) => Ok(got),
            (_, Some(why)) => Err(why),
        }
    }

    /// [`Probe::collect`], keeping what did come back when it gives up.
    pub fn collect_partial(&self, count: usize, timeout: Duration) -> (Vec<(u64, Outcome)>, Option<String>) {
        let started = Instant::now();
        let mut deadline = started + timeout;
        let mut got = Vec::with_capacity(count);
        let problem = loop {
            if got.len() >= count {
                break None;
            }
            match self.receiver.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok((id, mut outcome)) => {
                    let mut tracking = self.tracking.borrow_mut();
                    if let (Outcome::Dropped(why), Some(error)) = (&mut outcome, tracking.submit_errors.remove(&id)) {
                        *why = Some(error);
                    }
                    if let Arrival::Expected = tracking.arrive(id, &outcome) {
                        got.push((id, outcome));
                        deadline = Instant::now() + timeout;
                    }
                }
                Err(RecvTimeoutError::Timeout) if got.is_empty() => {
                    self.tracking.borrow_mut().hung = true;
                    break Some(format!("only 0 of {count} tasks completed within {timeout:?} (a hang)"));
                }
                Err(RecvTimeoutError::Timeout) => {
                    let busy = started.elapsed().saturating_sub(timeout).as_secs_f64().max(1e-3);
                    break Some(format!(
                        "{} of {count} tasks completed ({:.1} per second), then none for {timeout:?}: \
                         a stuck task, or a backend slower than --timeout allows",
                        got.len(),
                        got.len() as f64 / busy
                    ));
                }
                Err(RecvTimeoutError::Disconnected) => unreachable!("the probe holds a sender"),
            }
        };
        self.tracking.borrow_mut().batch.clear();
        (got, problem)
    }

    /// Why the remaining task checks are not worth running, if they are not:
    /// nothing ever came back, or every answer so far was a dropped sink.
    pub fn stop_reason(&self, timeout: Duration) -> Option<String> {
        let tracking = self.tracking.borrow();
        if tracking.completed > 0 {
            return None;
        }
        if tracking.hung && tracking.dropped == 0 {
            return Some(format!(
                "not run: the backend completed none of its tasks within {timeout:?} (does every path call `sink.complete`?)"
            ));
        }
        (tracking.dropped >= STOP_AFTER_DROPPED).then(|| {
            format!(
                "not run: all {} tasks so far had their sinks dropped without a result (see `parity`)",
                tracking.dropped
            )
        })
    }

    /// Waits for one completion.
    pub fn one(&self, timeout: Duration) -> Result<(u64, Outcome), String> {
        self.collect(1, timeout).map(|mut v| v.remove(0))
    }

    /// Duplicate or unknown completions arriving within `wait` (late answers
    /// to earlier checks are set aside, not counted).
    pub fn extra(&self, wait: Duration) -> usize {
        std::thread::sleep(wait);
        let mut tracking = self.tracking.borrow_mut();
        let before = tracking.duplicates.len() + tracking.unknown.len();
        for (id, outcome) in self.receiver.try_iter() {
            tracking.arrive(id, &outcome);
        }
        tracking.duplicates.len() + tracking.unknown.len() - before
    }

    /// A check reporting completions that were nobody's to wait for, if
    /// there were any: late ones (a slow backend; the check that submitted
    /// them already reported the wait it gave up), duplicates and unknown
    /// task ids (wrong).
    pub fn stray_check(&self) -> Option<crate::Check> {
        let mut tracking = self.tracking.borrow_mut();
        for (id, outcome) in self.receiver.try_iter() {
            tracking.arrive(id, &outcome);
        }
        let ids = |v: &[u64]| v.iter().map(u64::to_string).collect::<Vec<_>>().join(", ");
        let (late, duplicates, unknown) = (&tracking.late, &tracking.duplicates, &tracking.unknown);
        if duplicates.is_empty() && unknown.is_empty() {
            return (!late.is_empty()).then(|| {
                crate::Check::pass(
                    "stray-completions",
                    format!(
                        "{} late completions (tasks {}) after their checks stopped waiting; counted for no other check",
                        late.len(),
                        ids(late)
                    ),
                )
            });
        }
        Some(crate::Check::fail(
            "stray-completions",
            format!(
                "{} duplicate completions (tasks {}), {} for task ids never submitted ({}), {} late",
                duplicates.len(),
                ids(duplicates),
                unknown.len(),
                ids(unknown),
                late.len()
            ),
        ))
    }
}

impl Outcome {
    /// One line for a check's detail.
    pub fn describe(&self) -> String {
        match self {
            Outcome::Completed(Ok(outputs)) => format!("{} outputs", outputs.len()),
            Outcome::Completed(Err(e)) => format!("a {} error: {e}", describe(e)),
            Outcome::Dropped(None) => "the sink was dropped without a result".to_owned(),
            Outcome::Dropped(Some(why)) => format!("the sink was dropped without a result inside `submit`: {why}"),
        }
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
