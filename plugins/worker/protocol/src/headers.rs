//! NATS headers on task and result messages. The body is a wire frame; these
//! carry what the transport needs without parsing it.

use async_nats::HeaderMap;

/// Task id (decimal) on both tasks and results.
pub const TASK_ID: &str = "Backplane-Task";
/// On a task: the subject its result must be published on.
pub const REPLY_TO: &str = "Backplane-Reply";
/// On a task: deliveries after which a worker reports it instead of running it.
pub const MAX_DELIVERIES: &str = "Backplane-Max-Deliveries";
/// On a task: outputs larger than this many bytes go to the object store.
pub const INLINE_LIMIT: &str = "Backplane-Inline-Limit";
/// On a result: the worker that produced it.
pub const WORKER: &str = "Backplane-Worker";

/// A header parsed as a number, if present and valid.
pub fn number(headers: Option<&HeaderMap>, name: &str) -> Option<u64> {
    headers?.get(name)?.as_str().parse().ok()
}

/// A header as text, if present.
pub fn text<'a>(headers: Option<&'a HeaderMap>, name: &str) -> Option<&'a str> {
    Some(headers?.get(name)?.as_str())
}

/// On a task: delays (milliseconds, comma-separated) before a released task
/// is offered again, by delivery number; the last one repeats.
pub const BACKOFF: &str = "Backplane-Backoff";

/// Formats delays for [`BACKOFF`].
pub fn format_backoff(delays: &[std::time::Duration]) -> String {
    delays.iter().map(|d| d.as_millis().to_string()).collect::<Vec<_>>().join(",")
}

/// The delay for the `delivery`-th delivery (1-based) from a [`BACKOFF`] header.
pub fn backoff_for(headers: Option<&HeaderMap>, delivery: u64) -> std::time::Duration {
    let delays: Vec<u64> =
        text(headers, BACKOFF).unwrap_or_default().split(',').filter_map(|d| d.trim().parse().ok()).collect();
    let index = usize::try_from(delivery.saturating_sub(1)).unwrap_or(usize::MAX).min(delays.len().saturating_sub(1));
    std::time::Duration::from_millis(delays.get(index).copied().unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn backoff_repeats_its_last_delay() {
        let mut headers = HeaderMap::new();
        headers.insert(BACKOFF, format_backoff(&[Duration::from_millis(500), Duration::from_secs(2)]).as_str());
        let at = |n| backoff_for(Some(&headers), n);
        assert_eq!((at(1), at(2), at(9)), (Duration::from_millis(500), Duration::from_secs(2), Duration::from_secs(2)));
        assert_eq!(backoff_for(None, 3), Duration::ZERO);
    }
}
