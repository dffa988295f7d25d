//! The credit window of a streaming edge: how far a producer may run ahead
//! of the per-item consumers of its stream.
//!
//! The producer's sink takes a credit for every item it forwards and waits
//! inside `emit` when none is left; the engine returns the credit once the
//! item's result is gathered (in item order), so neither items in flight nor
//! results waiting for an earlier item ever exceed the window. Closing the
//! window (the run stops, the producer's attempt is cancelled) wakes a
//! waiting producer with an error, which ends its task.

use std::sync::{Condvar, Mutex, PoisonError};

/// One edge's credits, shared by the producer's sink and the engine.
pub struct Credits {
    state: Mutex<State>,
    changed: Condvar,
}

struct State {
    available: u64,
    closed: bool,
    /// A producer waits in `take`.
    waiting: bool,
    /// Wake a waiting producer once this many credits are back: waking it
    /// per credit would cost a thread switch per item.
    wake_at: u64,
}

/// Why [`Credits::take`] gave up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Closed;

impl Credits {
    pub fn new(window: u32) -> Self {
        let window = u64::from(window.max(1));
        let state = State { available: window, closed: false, waiting: false, wake_at: window.div_ceil(2) };
        Self { state: Mutex::new(state), changed: Condvar::new() }
    }

    /// Takes one credit, waiting while there is none; `Err` once closed.
    pub fn take(&self) -> Result<(), Closed> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if state.closed {
                return Err(Closed);
            }
            if state.available > 0 {
                state.available -= 1;
                state.waiting = false;
                return Ok(());
            }
            state.waiting = true;
            state = self.changed.wait(state).unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// Gives `n` credits back.
    pub fn give(&self, n: u64) {
        if n == 0 {
            return;
        }
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.available += n;
        let wake = state.waiting && state.available >= state.wake_at;
        drop(state);
        if wake {
            self.changed.notify_all();
        }
    }

    /// Wakes every waiting producer with [`Closed`]; later takes fail at once.
    pub fn close(&self) {
        self.state.lock().unwrap_or_else(PoisonError::into_inner).closed = true;
        self.changed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::{
        sync::{
            Arc,
            atomic::{AtomicU64, Ordering},
        },
        time::Duration,
    };

    #[test]
    fn a_producer_stops_at_the_window_and_goes_on_as_credits_return() {
        let credits = Arc::new(Credits::new(3));
        let taken = Arc::new(AtomicU64::new(0));
        let producer = {
            let (credits, taken) = (credits.clone(), taken.clone());
            std::thread::spawn(move || {
                while credits.take().is_ok() {
                    taken.fetch_add(1, Ordering::AcqRel);
                }
            })
        };
        let reaches = |n: u64| {
            let until = std::time::Instant::now() + Duration::from_secs(5);
            while taken.load(Ordering::Acquire) < n && std::time::Instant::now() < until {
                std::thread::sleep(Duration::from_millis(1));
            }
            std::thread::sleep(Duration::from_millis(20)); // time to overrun, if it could
            taken.load(Ordering::Acquire)
        };
        assert_eq!(reaches(3), 3, "the window is 3");
        credits.give(2);
        assert_eq!(reaches(5), 5);
        credits.close();
        producer.join().unwrap();
        assert_eq!(credits.take(), Err(Closed), "a closed window stays closed");
    }
}
