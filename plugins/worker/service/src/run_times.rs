//! Which node types are fast enough to run on the worker's async thread.
//!
//! Handing a task to a blocking thread and back costs two thread wake-ups
//! (tens of microseconds on a VM), far more than a node that runs in a few
//! microseconds. A node type whose recent runs were all short runs inline;
//! one slow run sends it back to the blocking pool.

use std::{collections::HashMap, sync::Mutex, time::Duration};

/// A run shorter than this counts as fast.
const FAST: Duration = Duration::from_micros(200);
/// Consecutive fast runs before a node type runs inline.
const FAST_RUNS_BEFORE_INLINE: u32 = 16;

#[derive(Default)]
pub struct RunTimes {
    /// Consecutive fast runs, by node type.
    fast_runs: Mutex<HashMap<String, u32>>,
}

impl RunTimes {
    pub fn runs_inline(&self, node_type: &str) -> bool {
        self.lock().get(node_type).is_some_and(|n| *n >= FAST_RUNS_BEFORE_INLINE)
    }

    pub fn record(&self, node_type: &str, took: Duration) {
        let mut runs = self.lock();
        let count = match runs.get_mut(node_type) {
            Some(count) => count,
            None => runs.entry(node_type.to_owned()).or_default(),
        };
        *count = if took < FAST { count.saturating_add(1) } else { 0 };
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, u32>> {
        self.fast_runs.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_type_runs_inline_after_a_streak_of_fast_runs_until_a_slow_one() {
        let times = RunTimes::default();
        for _ in 0..FAST_RUNS_BEFORE_INLINE - 1 {
            times.record("std.noop", Duration::from_micros(3));
        }
        assert!(!times.runs_inline("std.noop"));
        times.record("std.noop", Duration::from_micros(3));
        assert!(times.runs_inline("std.noop"));
        times.record("std.noop", Duration::from_millis(5));
        assert!(!times.runs_inline("std.noop"));
        assert!(!times.runs_inline("std.sleep"));
    }
}
