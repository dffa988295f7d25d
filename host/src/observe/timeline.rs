//! A run's events as one row per attempt: what traces, reports and run
//! records are made of.

use super::{AttemptStatus, RunEvent};
use std::time::{Duration, SystemTime};

/// One attempt of one node. Times are seconds from the run's start.
#[derive(Debug, Clone, PartialEq)]
pub struct AttemptRow {
    pub node: u32,
    pub instance: u32,
    /// 1 for the first.
    pub attempt: u8,
    pub submitted: f64,
    /// When the backend said it began to run; `None` from backends that do
    /// not say (then it counts as running from `submitted`).
    pub started: Option<f64>,
    pub finished: Option<f64>,
    /// `None`: no result came (still running when the run ended: abandoned).
    pub status: Option<AttemptStatus>,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub error: Option<Box<str>>,
    /// Lines its node logged.
    pub log_lines: u32,
}

impl AttemptRow {
    /// `succeeded`, `failed`, …, or `abandoned` without a result.
    pub fn status_name(&self) -> &'static str {
        self.status.map_or("abandoned", AttemptStatus::name)
    }

    /// When it began to run: the backend's word, else its submission.
    pub fn run_start(&self) -> f64 {
        self.started.unwrap_or(self.submitted)
    }
}

/// What the cache did for a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CacheOutcome {
    /// Not looked up.
    #[default]
    None,
    Hit,
    Miss,
}

/// Every attempt of a run, in the order they were dispatched.
#[derive(Debug, Default)]
pub struct Timeline {
    /// The run's wall-clock start.
    pub started: Option<SystemTime>,
    pub attempts: Vec<AttemptRow>,
    /// Cache hits: the node and when (seconds).
    pub hits: Vec<(u32, f64)>,
    /// By node.
    pub cache: Vec<CacheOutcome>,
    /// Seconds from start to the end of the run.
    pub elapsed: f64,
    /// By node: the row of its attempt in flight.
    open: Vec<Option<u32>>,
}

fn secs(at: &Duration) -> f64 {
    at.as_secs_f64()
}

impl Timeline {
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes in one event; returns the row of an attempt that just ended.
    pub fn record(&mut self, event: &RunEvent) -> Option<usize> {
        match event {
            RunEvent::RunStarted { at, nodes } => {
                self.started = Some(*at);
                self.open = vec![None; *nodes];
                self.cache = vec![CacheOutcome::None; *nodes];
            }
            RunEvent::Dispatched { node, instance, attempt, at, bytes_in } => {
                let row = self.attempts.len() as u32;
                self.attempts.push(AttemptRow {
                    node: *node,
                    instance: *instance,
                    attempt: *attempt,
                    submitted: secs(at),
                    started: None,
                    finished: None,
                    status: None,
                    bytes_in: *bytes_in,
                    bytes_out: 0,
                    error: None,
                    log_lines: 0,
                });
                if let Some(open) = self.open.get_mut(*node as usize) {
                    *open = Some(row);
                }
            }
            RunEvent::Started { node, at, .. } => {
                if let Some(row) = self.open_row(*node) {
                    row.started = Some(secs(at));
                }
            }
            RunEvent::Logs { node, lines, .. } => {
                if let Some(row) = self.open_row(*node) {
                    row.log_lines += lines.len() as u32;
                }
            }
            RunEvent::Finished { node, at, status, bytes_out, error, .. } => {
                let index = self.open.get_mut(*node as usize).and_then(Option::take)? as usize;
                let row = &mut self.attempts[index];
                row.finished = Some(secs(at));
                row.status = Some(*status);
                row.bytes_out = *bytes_out;
                row.error = error.clone();
                return Some(index);
            }
            RunEvent::CacheHit { node, at } => {
                self.hits.push((*node, secs(at)));
                if let Some(cache) = self.cache.get_mut(*node as usize) {
                    *cache = CacheOutcome::Hit;
                }
            }
            RunEvent::CacheMiss { node, .. } => {
                if let Some(cache) = self.cache.get_mut(*node as usize) {
                    *cache = CacheOutcome::Miss;
                }
            }
            RunEvent::RunFinished { at } => self.elapsed = secs(at),
            _ => {}
        }
        None
    }

    fn open_row(&mut self, node: u32) -> Option<&mut AttemptRow> {
        let index = (*self.open.get(node as usize)?)?;
        self.attempts.get_mut(index as usize)
    }

    /// Each attempt's lane within its instance: attempts that overlap in
    /// time get different lanes, and a lane is reused once free (greedy
    /// interval partitioning, by start). Returns the lanes, by row, and the
    /// lane count, by instance.
    pub fn lanes(&self, instances: usize) -> (Vec<u32>, Vec<u32>) {
        lanes(&self.attempts, instances, self.elapsed)
    }
}

/// See [`Timeline::lanes`]; an attempt without an end runs to `end`.
pub fn lanes(attempts: &[AttemptRow], instances: usize, end: f64) -> (Vec<u32>, Vec<u32>) {
    let mut order: Vec<usize> = (0..attempts.len()).collect();
    order.sort_by(|&a, &b| attempts[a].run_start().total_cmp(&attempts[b].run_start()));
    let mut lane = vec![0u32; attempts.len()];
    // Per instance: when each of its lanes is free again.
    let mut free_at: Vec<Vec<f64>> = vec![Vec::new(); instances];
    for i in order {
        let row = &attempts[i];
        let Some(lanes) = free_at.get_mut(row.instance as usize) else { continue };
        let start = row.run_start();
        let finish = row.finished.unwrap_or(end).max(start);
        match lanes.iter().position(|&free| free <= start) {
            Some(l) => {
                lanes[l] = finish;
                lane[i] = l as u32;
            }
            None => {
                lane[i] = lanes.len() as u32;
                lanes.push(finish);
            }
        }
    }
    (lane, free_at.iter().map(|l| l.len() as u32).collect())
}
