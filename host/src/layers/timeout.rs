//! Deadlines around an instance: at a task's deadline it is cancelled; if
//! no result comes within the grace period after that, the attempt is
//! abandoned (it fails as timed out and lost; a late result is ignored).
//!
//! An abandoned attempt gives back its slot (and, in the admission layer, its
//! resources): the host no longer knows whether it runs, and holding them
//! for a task that may never answer would stall the instance.
//!
//! A deadline counts time running, not time waiting: a task with a deadline
//! is held in the host while the instance already has as many tasks as it
//! can run at once (its `max_concurrency`; 0 means unknown and holds
//! nothing), so its clock starts when the backend can start it rather than
//! while it would sit in the backend's queue.

use super::{InstanceService, LayerContext, LayerTimer, Readiness, Request};
use crate::{
    layers::Completion,
    policy::{FailureKind, TimeoutPolicy},
};
use backplane_plugin_api::{Capabilities, CompletionSinkBox, Health, NodeTask, PluginError};
use std::{collections::HashMap, time::Duration};

/// A task with a deadline, while it runs.
struct Timed {
    node: u32,
    limit: Duration,
    /// The deadline passed and the task was cancelled.
    expired: bool,
}

pub struct Timeout<S> {
    inner: S,
    policy: TimeoutPolicy,
    /// How many tasks the instance runs at once (0: unknown).
    concurrency: usize,
    /// Tasks submitted through this layer and not completed yet.
    outstanding: usize,
    timed: HashMap<u64, Timed>,
}

impl<S> Timeout<S> {
    pub fn new(inner: S, policy: TimeoutPolicy, concurrency: usize) -> Self {
        Self { inner, policy, concurrency, outstanding: 0, timed: HashMap::new() }
    }

    pub fn inner(&self) -> &S {
        &self.inner
    }
}

fn secs(limit: Duration) -> String {
    format!("{}s", limit.as_secs_f64())
}

impl<S: InstanceService> InstanceService for Timeout<S> {
    fn poll_ready(&mut self, request: &Request<'_>) -> Readiness {
        if request.deadline.is_some() && self.concurrency > 0 && self.outstanding >= self.concurrency {
            return Readiness::Wait;
        }
        self.inner.poll_ready(request)
    }

    fn call(&mut self, request: &Request<'_>, task: NodeTask, sink: CompletionSinkBox, cx: &mut LayerContext<'_>) {
        self.outstanding += 1;
        if let Some(limit) = request.deadline {
            self.timed.insert(request.task_id, Timed { node: request.node, limit, expired: false });
            cx.set_timer(cx.now + limit, LayerTimer::Deadline { task_id: request.task_id });
        }
        self.inner.call(request, task, sink, cx);
    }

    fn cancel(&mut self, task_id: u64) {
        self.inner.cancel(task_id);
    }

    fn completed(&mut self, completion: &mut Completion, cx: &mut LayerContext<'_>) {
        self.inner.completed(completion, cx);
        self.outstanding = self.outstanding.saturating_sub(1);
        if self.timed.is_empty() {
            return;
        }
        let Some(timed) = self.timed.remove(&completion.task_id) else { return };
        // Failed after its deadline's cancel: a timeout, whatever the backend
        // called it. Counted here, once per accepted result; an abandoned
        // attempt (made up by this layer) already says so.
        if timed.expired && completion.result.is_err() {
            cx.events.timeouts += 1;
            let abandoned = completion.lost
                && completion.result.as_ref().is_err_and(|e| FailureKind::of(e) == FailureKind::TimedOut);
            if !abandoned {
                completion.result = Err(PluginError::timed_out(format!("exceeded {}; cancelled", secs(timed.limit))));
            }
        }
    }

    fn fire(&mut self, timer: LayerTimer, cx: &mut LayerContext<'_>) {
        match timer {
            LayerTimer::Deadline { task_id } => {
                if let Some(timed) = self.timed.get_mut(&task_id) {
                    timed.expired = true;
                    self.inner.cancel(task_id);
                    cx.set_timer(cx.now + self.policy.grace, LayerTimer::Abandon { task_id });
                }
            }
            LayerTimer::Abandon { task_id } => {
                if let Some(timed) = self.timed.get(&task_id) {
                    let grace = self.policy.grace.as_secs_f64();
                    let message = format!(
                        "no result {grace}s after its deadline ({}), even after a cancel; abandoned (a late result is ignored)",
                        secs(timed.limit)
                    );
                    // Through the channel, so every layer and the scheduler
                    // see it as the attempt's result.
                    let abandoned =
                        Completion::synthetic(timed.node, task_id, Err(PluginError::timed_out(message)), true);
                    let _ = cx.completions.send(abandoned.into());
                }
            }
            other => self.inner.fire(other, cx),
        }
    }

    fn health(&mut self) -> Health {
        self.inner.health()
    }

    fn refresh(&mut self, capabilities: &Capabilities) {
        self.concurrency = capabilities.max_concurrency as usize;
        self.inner.refresh(capabilities);
    }
}
