//! The worker's series for the `metrics` facade (served by `backplane worker
//! --metrics-addr`); without a recorder installed they cost nothing.

use metrics::{Counter, Gauge, Histogram, counter, gauge, histogram};

pub const TASKS: &str = "backplane_worker_tasks_total";
pub const IN_FLIGHT: &str = "backplane_worker_tasks_in_flight";
pub const RUNNING: &str = "backplane_worker_task_running_seconds";

/// Handles registered once per worker, labelled by pool and worker id.
pub struct WorkerMetrics {
    succeeded: Counter,
    failed: Counter,
    refused: Counter,
    released: Counter,
    pub in_flight: Gauge,
    pub running: Histogram,
}

/// How a task this worker took ended.
pub enum Ended {
    Succeeded,
    Failed,
    /// Answered without running (not allowed, not loaded, redelivered too often).
    Refused,
    /// Given back for redelivery (the worker stopped).
    Released,
}

impl WorkerMetrics {
    pub fn new(pool: &str, worker: &str) -> Self {
        let labels =
            |outcome: &str| [("pool", pool.to_owned()), ("worker", worker.to_owned()), ("outcome", outcome.to_owned())];
        let base = [("pool", pool.to_owned()), ("worker", worker.to_owned())];
        Self {
            succeeded: counter!(TASKS, &labels("succeeded")),
            failed: counter!(TASKS, &labels("failed")),
            refused: counter!(TASKS, &labels("refused")),
            released: counter!(TASKS, &labels("released")),
            in_flight: gauge!(IN_FLIGHT, &base),
            running: histogram!(RUNNING, &base),
        }
    }

    pub fn ended(&self, how: Ended) {
        match how {
            Ended::Succeeded => &self.succeeded,
            Ended::Failed => &self.failed,
            Ended::Refused => &self.refused,
            Ended::Released => &self.released,
        }
        .increment(1);
    }
}
