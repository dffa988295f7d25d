//! When an instance's circuit breaker opens, and for how long.

use super::seconds;
use crate::spanned_toml::{Reader, TableView};
use std::time::Duration;

/// Opens after `failures` infrastructure failures within `window`; new work
/// then goes elsewhere until `cooldown` has passed (half-open: one more
/// failure reopens it, a success closes it).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BreakerPolicy {
    pub failures: usize,
    pub window: Duration,
    pub cooldown: Duration,
}

impl Default for BreakerPolicy {
    fn default() -> Self {
        Self { failures: 5, window: Duration::from_secs(60), cooldown: Duration::from_secs(30) }
    }
}

/// Reads `[policy.breaker]`.
pub(super) fn parse(r: &mut Reader<'_>, mut table: TableView<'_, '_>) -> BreakerPolicy {
    let mut policy = BreakerPolicy::default();
    if let Some(n) = table.unsigned(r, "failures") {
        match *n.get_ref() {
            n @ 1..=1_000_000 => policy.failures = n as usize,
            _ => r.error_help(n.span(), "invalid `failures`", "use a count of at least 1"),
        }
    }
    if let Some(window) = seconds(r, &mut table, "window_secs", 86_400.0) {
        policy.window = window;
    }
    if let Some(cooldown) = seconds(r, &mut table, "cooldown_secs", 86_400.0) {
        policy.cooldown = cooldown;
    }
    table.finish(r, &["failures", "window_secs", "cooldown_secs"]);
    policy
}
