//! The report of a finished run.

use super::{
    NodeOutcomes, RunOutcome,
    ledger::CacheStatus,
    run::{Run, State, Stop},
};
use crate::report::{BackendSummary, NodeStatus, RunReport, mean_and_p95};
use std::time::Duration;

impl Run<'_> {
    pub(super) fn into_outcome(mut self, elapsed: Duration, abandoned: usize) -> RunOutcome {
        self.finish_events();
        // The plan's nodes; the item units after them are counted by their nodes.
        let nodes = self.plan.nodes.len();
        self.state.truncate(nodes);
        self.attempt.truncate(nodes);
        self.assigned.truncate(nodes);
        let count = |s: State| self.state.iter().filter(|&&x| x == s).count();
        let mut planned = vec![0usize; self.plan.instances.len()];
        for node in &self.plan.nodes {
            planned[node.backend as usize] += 1;
        }
        // A node counts once, on the instance its last attempt ran on.
        let mut finished = vec![0usize; self.plan.instances.len()];
        for (node, state) in self.state.iter().enumerate() {
            if matches!(state, State::Succeeded | State::Failed | State::Cancelled) && self.attempt[node] > 0 {
                finished[self.assigned[node] as usize] += 1;
            }
        }
        // Per instance: attempts that finished, and the mean and p95 of their time.
        let stats: Vec<_> = self.durations.iter_mut().map(|d| (d.len(), mean_and_p95(d))).collect();
        let backends = self
            .plan
            .instances
            .iter()
            .enumerate()
            .filter(|&(i, _)| planned[i] > 0 || self.per_backend_done[i] > 0)
            .map(|(i, instance)| {
                let (finished_attempts, (mean_secs, p95_secs)) = stats[i];
                BackendSummary {
                    instance: instance.name.clone(),
                    factory: instance.factory.clone(),
                    nodes: finished[i],
                    attempts: self.per_backend_attempts[i],
                    succeeded_attempts: self.attempts_succeeded[i],
                    success_rate: (finished_attempts > 0)
                        .then(|| self.attempts_succeeded[i] as f64 / finished_attempts as f64),
                    mean_secs,
                    p95_secs,
                    received_bytes: self.received_bytes[i],
                    active: match (self.first_submit[i], self.last_complete[i]) {
                        (Some(a), Some(b)) => b.saturating_duration_since(a),
                        _ => Duration::ZERO,
                    },
                }
            })
            .collect();
        let cached =
            self.ledger.as_ref().map_or(0, |l| l.cache.iter().filter(|c| matches!(c, CacheStatus::Hit { .. })).count());
        let report = RunReport {
            workflow: self.plan.name.clone(),
            nodes: self.plan.nodes.len(),
            succeeded: self.succeeded,
            cached,
            executed: self.attempt.iter().filter(|&&a| a > 0).count(),
            failed: count(State::Failed),
            cancelled: count(State::Cancelled),
            not_started: count(State::Waiting),
            abandoned,
            elapsed,
            backends,
            rerouted: self.reroutes,
            skipped: count(State::Skipped),
            retries: self.retries,
            item_tasks: self.item_tasks,
            item_cache_hits: self.item_cache_hits,
            timeouts: self.layer_events.timeouts,
            breakers: self.layer_events.breakers,
            interrupted: self.stop == Some(Stop::Interrupted),
            failure: self.failures.first().cloned(),
            failures: self.failures,
        };
        let status = self
            .state
            .iter()
            .map(|s| match s {
                State::Waiting => NodeStatus::NotStarted,
                State::Running => NodeStatus::Abandoned,
                State::Succeeded => NodeStatus::Succeeded,
                State::Failed => NodeStatus::Failed,
                State::Cancelled => NodeStatus::Cancelled,
                State::Skipped => NodeStatus::Skipped,
            })
            .collect();
        let nodes = NodeOutcomes { status, attempts: self.attempt, instance: self.assigned, ledger: self.ledger };
        RunOutcome { report, outputs: self.outputs, nodes }
    }
}
