//! The progress bar of `backplane run`: an observer of the run's events.

use backplane_host::{
    observe::{RunEvent, RunObserver},
    plan::Plan,
    report::RunReport,
};
use indicatif::ProgressStyle;
use std::time::{Duration, Instant};

/// Appears once the run has taken a second; its clock shows the run's time
/// and it opens at what the run has already done.
pub struct ProgressBar {
    bar: Option<indicatif::ProgressBar>,
    total: usize,
    done: usize,
    running: usize,
    /// How far into the run the last event or tick was.
    elapsed: Duration,
    redrawn: Option<Instant>,
}

/// How long a run goes before it gets a bar.
const SHOW_AFTER: Duration = Duration::from_secs(1);
/// Most redraws per second.
const REDRAW_EVERY: Duration = Duration::from_millis(100);

impl ProgressBar {
    pub fn new() -> Self {
        Self { bar: None, total: 0, done: 0, running: 0, elapsed: Duration::ZERO, redrawn: None }
    }

    fn redraw(&mut self) {
        let elapsed = self.elapsed;
        // Nodes finished per second of the whole run: indicatif's own
        // estimate reads the bar's late start as a burst.
        let message =
            format!("{} running, {:.0} nodes/s", self.running, self.done as f64 / elapsed.as_secs_f64().max(1e-3));
        match &self.bar {
            Some(bar) => {
                bar.set_message(message);
                bar.set_position(self.done as u64);
            }
            None if elapsed >= SHOW_AFTER => {
                let bar = indicatif::ProgressBar::new(self.total as u64)
                    .with_elapsed(elapsed)
                    .with_position(self.done as u64)
                    .with_message(message);
                if let Ok(style) =
                    ProgressStyle::with_template("{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} nodes ({msg})")
                {
                    bar.set_style(style);
                }
                bar.enable_steady_tick(REDRAW_EVERY);
                self.bar = Some(bar);
            }
            None => {}
        }
    }
}

impl RunObserver for ProgressBar {
    fn event(&mut self, _plan: &Plan, event: &RunEvent) {
        match event {
            RunEvent::RunStarted { nodes, .. } => self.total = *nodes,
            RunEvent::Dispatched { at, .. } => {
                self.running += 1;
                self.elapsed = *at;
            }
            RunEvent::Finished { status, at, .. } => {
                self.running = self.running.saturating_sub(1);
                self.done += usize::from(status.succeeded());
                self.elapsed = *at;
            }
            RunEvent::CacheHit { at, .. } => {
                self.done += 1;
                self.elapsed = *at;
            }
            _ => return,
        }
        if self.redrawn.is_none_or(|at| at.elapsed() >= REDRAW_EVERY) {
            self.redrawn = Some(Instant::now());
            self.redraw();
        }
    }

    fn tick(&mut self, _plan: &Plan, elapsed: Duration) {
        self.elapsed = elapsed;
        self.redraw();
    }

    fn finish(&mut self, _plan: &Plan, _report: &RunReport) -> Result<(), String> {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        Ok(())
    }
}
