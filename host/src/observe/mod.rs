//! Observers of a run: one stream of events from the engine, handed to
//! every observer on a thread of their own, so that none of them can slow
//! or block the engine.
//!
//! # Core concepts
//!
//! - The engine buffers [`RunEvent`]s and hands them over in batches through
//!   an unbounded channel ([`EventChannel`]): it never waits for an
//!   observer, and a slow one costs memory, never run time.
//! - [`observe`] runs a list of [`RunObserver`]s on one thread for the life
//!   of a run. Each sees every event in order, with the plan to name nodes
//!   and instances by, and then [`RunObserver::finish`] with the report.
//!   An observer that panics is dropped with a warning; the run goes on.
//! - Times are offsets from the run's start ([`RunEvent::RunStarted`]
//!   carries the wall-clock start), so observers need no clock of their own.
//! - [`Timeline`] turns the stream into one row per attempt; the trace
//!   writers ([`trace`]) and the run records build on it.

pub mod metrics;
mod timeline;
pub mod trace;

pub use timeline::{AttemptRow, CacheOutcome, Timeline, lanes};

use crate::{
    plan::Plan,
    policy::FailureKind,
    report::{BreakerTransition, RunReport},
};
use backplane_plugin_api::task_log::LogLine;
use crossbeam_channel::{Receiver, Sender};
use std::{
    panic::AssertUnwindSafe,
    time::{Duration, SystemTime},
};

/// Something that happened in a run. Nodes and instances are indices into
/// the plan; `at` is the time since the run started.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum RunEvent {
    RunStarted {
        at: SystemTime,
        nodes: usize,
    },
    /// Ready, and waiting for its instance to take it.
    Queued {
        node: u32,
        instance: u32,
        at: Duration,
    },
    /// Succeeded from the result cache: no attempt runs.
    CacheHit {
        node: u32,
        at: Duration,
    },
    /// Looked up and not found (or asked to run again): it runs.
    CacheMiss {
        node: u32,
        at: Duration,
    },
    /// An attempt was handed to its instance.
    Dispatched {
        node: u32,
        instance: u32,
        attempt: u8,
        at: Duration,
        bytes_in: u64,
    },
    /// The backend said the attempt began to run (reported with its result;
    /// backends before plugin-api 1.2 never say).
    Started {
        node: u32,
        attempt: u8,
        at: Duration,
    },
    /// The lines the attempt's node logged, before its `Finished`.
    Logs {
        node: u32,
        attempt: u8,
        lines: Vec<LogLine>,
    },
    Finished {
        node: u32,
        instance: u32,
        attempt: u8,
        at: Duration,
        status: AttemptStatus,
        /// Output bytes that came back to the host (not references).
        bytes_out: u64,
        /// The error's text, for a failed attempt.
        error: Option<Box<str>>,
    },
    /// A failed attempt will be tried again after `delay`.
    Retried {
        node: u32,
        instance: u32,
        attempt: u8,
        delay: Duration,
        at: Duration,
    },
    /// Moved off an instance that went down.
    Rerouted {
        node: u32,
        from: u32,
        to: u32,
        at: Duration,
    },
    Breaker {
        instance: u32,
        transition: BreakerTransition,
        at: Duration,
    },
    RunFinished {
        at: Duration,
    },
}

/// How one attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptStatus {
    Succeeded,
    /// `lost`: no result came back at all (the infrastructure's failure).
    Failed {
        kind: FailureKind,
        lost: bool,
    },
}

impl AttemptStatus {
    /// `succeeded`, `failed`, `timed-out`, `cancelled` or `lost`.
    pub fn name(self) -> &'static str {
        match self {
            AttemptStatus::Succeeded => "succeeded",
            AttemptStatus::Failed { kind: FailureKind::TimedOut, .. } => "timed-out",
            AttemptStatus::Failed { kind: FailureKind::Cancelled, .. } => "cancelled",
            AttemptStatus::Failed { lost: true, .. } => "lost",
            AttemptStatus::Failed { .. } => "failed",
        }
    }

    pub fn succeeded(self) -> bool {
        self == AttemptStatus::Succeeded
    }
}

/// Sees a run's events, in order, on the observers' thread.
pub trait RunObserver: Send {
    fn event(&mut self, plan: &Plan, event: &RunEvent);

    /// Called about every [`TICK`] while no events come (a long task runs):
    /// `elapsed` is the time since the run started.
    fn tick(&mut self, plan: &Plan, elapsed: Duration) {
        let _ = (plan, elapsed);
    }

    /// The run is over; write what is left. An error is reported as a warning.
    fn finish(&mut self, plan: &Plan, report: &RunReport) -> Result<(), String> {
        let _ = (plan, report);
        Ok(())
    }
}

/// What travels to the observers' thread.
enum Message {
    Events(Vec<RunEvent>),
    End(Box<RunReport>),
}

/// The engine's end of the observers' channel (see [`observe`]).
#[derive(Clone)]
pub struct EventChannel {
    batches: Sender<Message>,
    /// Emptied batches coming back, so a run allocates a handful of them.
    spare: Receiver<Vec<RunEvent>>,
}

/// Events collected by the engine, sent a batch at a time.
pub(crate) struct EventBuffer {
    batch: Vec<RunEvent>,
    channel: EventChannel,
}

/// How often quiet observers get a [`RunObserver::tick`].
pub const TICK: Duration = Duration::from_millis(100);

/// A batch goes as soon as it holds this many events (and at the latest
/// whenever the engine waits).
const BATCH: usize = 4096;

impl EventBuffer {
    pub(crate) fn new(channel: EventChannel) -> Self {
        Self { batch: Vec::with_capacity(BATCH), channel }
    }

    #[inline]
    pub(crate) fn push(&mut self, event: RunEvent) {
        self.batch.push(event);
        if self.batch.len() >= BATCH {
            self.flush();
        }
    }

    pub(crate) fn flush(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        let next = self.channel.spare.try_recv().unwrap_or_else(|_| Vec::with_capacity(BATCH));
        let batch = std::mem::replace(&mut self.batch, next);
        // The observers' thread is gone only when the run is over.
        let _ = self.channel.batches.send(Message::Events(batch));
    }
}

impl Drop for EventBuffer {
    fn drop(&mut self) {
        self.flush();
    }
}

/// Runs `run` with a channel to `observers`, which see its events on a
/// thread of their own; then hands them the report `report_of` reads from
/// what `run` returned. Returns that, and the problems observers reported.
pub fn observe<R>(
    plan: &Plan,
    observers: Vec<Box<dyn RunObserver>>,
    run: impl FnOnce(EventChannel) -> R,
    report_of: impl FnOnce(&R) -> &RunReport,
) -> (R, Vec<String>) {
    let (batches, received) = crossbeam_channel::unbounded();
    let (returned, spare) = crossbeam_channel::unbounded();
    std::thread::scope(|scope| {
        let dispatcher = std::thread::Builder::new()
            .name("backplane-observers".into())
            .spawn_scoped(scope, move || dispatch(plan, observers, &received, &returned));
        let dispatcher = match dispatcher {
            Ok(handle) => Some(handle),
            Err(e) => {
                tracing::warn!("cannot start the observers' thread, so this run has no report, trace or metrics: {e}");
                None
            }
        };
        let channel = EventChannel { batches, spare };
        let result = run(channel.clone());
        let _ = channel.batches.send(Message::End(Box::new(report_of(&result).clone())));
        drop(channel);
        let problems = match dispatcher.map(|d| d.join()) {
            Some(Ok(problems)) => problems,
            Some(Err(_)) => vec!["the observers' thread panicked".to_owned()],
            None => Vec::new(),
        };
        (result, problems)
    })
}

/// The observers' thread: every batch to every observer, then `finish`.
fn dispatch(
    plan: &Plan,
    mut observers: Vec<Box<dyn RunObserver>>,
    received: &Receiver<Message>,
    returned: &Sender<Vec<RunEvent>>,
) -> Vec<String> {
    let mut problems = Vec::new();
    let mut started: Option<std::time::Instant> = None;
    loop {
        let message = match received.recv_timeout(TICK) {
            Ok(message) => message,
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                if let Some(started) = started {
                    let elapsed = started.elapsed();
                    guarded(&mut observers, &mut problems, &mut |observer| observer.tick(plan, elapsed));
                }
                continue;
            }
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break,
        };
        match message {
            Message::Events(mut batch) => {
                if started.is_none() && matches!(batch.first(), Some(RunEvent::RunStarted { .. })) {
                    started = Some(std::time::Instant::now());
                }
                guarded(&mut observers, &mut problems, &mut |observer| {
                    for event in &batch {
                        observer.event(plan, event);
                    }
                });
                batch.clear();
                let _ = returned.send(batch);
            }
            Message::End(report) => {
                let mut failed = Vec::new();
                guarded(&mut observers, &mut problems, &mut |observer| {
                    if let Err(e) = observer.finish(plan, &report) {
                        failed.push(e);
                    }
                });
                problems.extend(failed);
                break;
            }
        }
    }
    problems
}

/// Calls `call` on each observer; one that panics is dropped, and the rest go on.
fn guarded(
    observers: &mut Vec<Box<dyn RunObserver>>,
    problems: &mut Vec<String>,
    call: &mut dyn FnMut(&mut dyn RunObserver),
) {
    observers.retain_mut(|observer| {
        let ok = std::panic::catch_unwind(AssertUnwindSafe(|| call(observer.as_mut()))).is_ok();
        if !ok {
            problems.push("an observer of the run panicked and was stopped".to_owned());
        }
        ok
    });
}

#[cfg(test)]
mod tests;
