//! Runs a [`Plan`]: a single tokio task owns all run state, submits ready
//! nodes to their backend instances, and reacts to completions.
//!
//! # Core concepts
//!
//! - Completions arrive on one unbounded channel from whatever thread the
//!   backend completes on; the loop drains them in batches, so a busy run
//!   costs no wake-ups and no task per node.
//! - A node is ready when every input slot is filled. Outputs move to their
//!   consumer (the last consumer of a port gets the original, earlier ones a
//!   clone), so payload bytes are never copied on a single-consumer edge.
//! - Every instance is reached through its layer stack ([`crate::layers`]):
//!   admission (in-flight limit and resources), circuit breaker and
//!   timeout. Ready nodes wait in a first-in-first-out queue per instance
//!   until the stack is ready for them.
//! - Failure policy: `fail-fast` (the first failure stops submission,
//!   cancels what is in flight and waits a bounded grace period) or
//!   `continue` (independent branches run on; dependants of a failed node are
//!   skipped). Retry is a policy object the scheduler asks after each failed
//!   attempt; a retry keeps the node's inputs and may move it elsewhere.
//! - Interrupts (Ctrl-C, SIGTERM, through [`RunOptions::interrupt`]) stop the
//!   run the way a fail-fast failure does.
//! - Health-aware: an instance with queued nodes has its `health()` read at
//!   most every 100 ms (and at once when a layer says it changed); when it
//!   is down, its queued and future nodes move to the next capable healthy
//!   instance (pinned nodes fail instead).
//! - With [`RunOptions::events`], every state change is also an event for
//!   the run's observers ([`crate::observe`]), buffered and sent in batches:
//!   observing costs the engine a push per event, never a wait.

mod by_reference;
mod cache;
mod fanout;
pub mod ledger;
mod outcome;
mod run;

pub use crate::policy::{BreakerPolicy, FailurePolicy, RetryPolicy, RunPolicy, TimeoutPolicy};
pub use crate::report::{BackendSummary, BreakerEvent, NodeFailure, NodeStatus, Reroute, RunReport};
pub use ledger::{CacheStatus, NodeLedger};

use crate::{config::Config, layers::Message, plan::Plan};
use backplane_plugin_api::Payload;
use run::Run;
use std::{
    sync::Arc,
    time::{Duration, Instant},
};
use tokio::sync::{mpsc, watch};

/// How to run: the config's `[policy]` and what only the caller knows.
#[derive(Clone, Default)]
pub struct RunOptions {
    pub policy: RunPolicy,
    /// Becomes `true` when the run must stop (Ctrl-C, SIGTERM).
    pub interrupt: Option<watch::Receiver<bool>>,
    /// Where the run's events go (see [`crate::observe::observe`]).
    pub events: Option<crate::observe::EventChannel>,
    /// Looked up before cacheable nodes run; their results are stored.
    pub cache: Option<Arc<crate::cache::ResultCache>>,
    /// Keep a [`NodeLedger`] (digests, timings) for the run record, even without a cache.
    pub record_nodes: bool,
}

impl RunOptions {
    /// Options that follow `config`'s `[policy]`. `RunOptions::default()`
    /// is the policy of an empty config.
    pub fn from_config(config: &Config) -> Self {
        Self::from_policy(config.policy.clone())
    }

    pub fn from_policy(policy: RunPolicy) -> Self {
        Self { policy, ..Self::default() }
    }
}

/// The run's result: the report, the workflow outputs (by output index) and
/// what happened to each node.
pub struct RunOutcome {
    pub report: RunReport,
    pub outputs: Vec<Option<Payload>>,
    pub nodes: NodeOutcomes,
}

/// Each node's end state, by node index.
pub struct NodeOutcomes {
    pub status: Vec<NodeStatus>,
    /// Attempts made (0: none, e.g. a cache hit).
    pub attempts: Vec<u8>,
    /// The instance the last attempt ran on (the planned one when none ran).
    pub instance: Vec<u32>,
    /// With a cache or [`RunOptions::record_nodes`].
    pub ledger: Option<NodeLedger>,
}

/// Runs the plan to completion or first failure.
pub async fn execute(plan: &Plan, options: &RunOptions) -> RunOutcome {
    let started = Instant::now();
    let (channel, mut completions) = mpsc::unbounded_channel();
    let mut run = Run::new(plan, options, channel, started);
    let mut housekeeping = Instant::now() + HOUSEKEEPING_INTERVAL;
    let mut drain_deadline: Option<Instant> = None;
    let mut abandoned = 0;
    let mut interrupt = options.interrupt.clone();
    loop {
        run.fire_timers(Instant::now());
        if !run.stopping() {
            run.dispatch_all();
        }
        if run.finished() {
            break;
        }
        let now = Instant::now();
        if now >= housekeeping {
            housekeeping = now + HOUSEKEEPING_INTERVAL;
            if !run.stopping() && interrupt.as_ref().is_some_and(|i| *i.borrow()) {
                run.interrupt();
            }
            if drain_deadline.is_some_and(|d| now >= d) {
                abandoned = run.in_flight();
                tracing::warn!(
                    "{abandoned} task(s) did not stop within the cancellation grace period; abandoning them"
                );
                break;
            }
        }
        // Poll briefly before parking: a fast backend usually answers within
        // microseconds, and waking a parked thread costs tens of them here.
        let completion = match spin_for_completion(&mut completions) {
            Some(completion) => Some(completion),
            None => {
                // Observers hear of what happened, and results finished so
                // far are committed, while the engine waits.
                run.flush_events();
                if let Some(cache) = &options.cache {
                    cache.flush();
                }
                tokio::select! {
                completion = completions.recv() => completion,
                () = tokio::time::sleep_until(run.next_wake(housekeeping).into()) => None,
                () = interrupted(&mut interrupt), if !run.stopping() => {
                    run.interrupt();
                    None
                }
                }
            }
        };
        if let Some(completion) = completion {
            run.receive(completion);
            while let Ok(completion) = completions.try_recv() {
                run.receive(completion);
            }
        }
        if run.stopping() && drain_deadline.is_none() {
            drain_deadline = Some(Instant::now() + options.policy.cancel_grace);
            // Take what already finished first, so cancels go only to tasks still running.
            while let Ok(completion) = completions.try_recv() {
                run.receive(completion);
            }
            run.cancel_in_flight();
        }
    }
    run.into_outcome(started.elapsed(), abandoned)
}

/// Resolves once the interrupt flag is set (never without one).
async fn interrupted(interrupt: &mut Option<watch::Receiver<bool>>) {
    match interrupt {
        Some(flag) => {
            while !*flag.borrow_and_update() {
                if flag.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
        }
        None => std::future::pending().await,
    }
}

/// How often the loop reports progress, checks the drain deadline and reads
/// the health of instances with queued nodes.
const HOUSEKEEPING_INTERVAL: Duration = Duration::from_millis(100);

/// How long the engine polls for a completion before parking.
const SPIN_BEFORE_PARK: Duration = Duration::from_micros(50);

fn spin_for_completion(completions: &mut mpsc::UnboundedReceiver<Message>) -> Option<Message> {
    let start = Instant::now();
    loop {
        match completions.try_recv() {
            Ok(completion) => return Some(completion),
            Err(mpsc::error::TryRecvError::Empty) if start.elapsed() < SPIN_BEFORE_PARK => std::hint::spin_loop(),
            Err(_) => return None,
        }
    }
}
