//! The progress bar of `backplane run`, drawn from the engine's progress
//! callback.

use backplane_host::engine::{Progress, ProgressFn};
use indicatif::ProgressStyle;
use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

/// Appears once the run has taken a second; its clock shows the run's time
/// and it opens at what the run has already done.
#[derive(Clone, Default)]
pub struct ProgressBar(Arc<Mutex<Option<indicatif::ProgressBar>>>);

/// How long a run goes before it gets a bar.
const SHOW_AFTER: Duration = Duration::from_secs(1);

impl ProgressBar {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn callback(self) -> ProgressFn {
        Arc::new(move |progress: &Progress| self.update(progress))
    }

    fn update(&self, progress: &Progress) {
        let mut bar = self.0.lock().unwrap_or_else(|e| e.into_inner());
        // Nodes finished per second of the whole run: indicatif's own
        // estimate reads the bar's late start as a burst.
        let rate = format!("{:.0} nodes/s", progress.succeeded as f64 / progress.elapsed.as_secs_f64().max(1e-3));
        match &*bar {
            Some(bar) => {
                bar.set_message(rate);
                bar.set_position(progress.succeeded as u64);
            }
            None if progress.elapsed >= SHOW_AFTER => *bar = Some(new_bar(progress, rate)),
            None => {}
        }
    }

    pub fn finish(self) {
        if let Some(bar) = self.0.lock().unwrap_or_else(|e| e.into_inner()).take() {
            bar.finish_and_clear();
        }
    }
}

fn new_bar(progress: &Progress, rate: String) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(progress.total as u64)
        .with_elapsed(progress.elapsed)
        .with_position(progress.succeeded as u64)
        .with_message(rate);
    if let Ok(style) =
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} nodes ({msg})")
    {
        bar.set_style(style);
    }
    bar
}
