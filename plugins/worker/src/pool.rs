//! The plugin's view of the pool: which workers are alive and what they run,
//! from the presence bucket.

use backplane_plugin_api::{
    Capabilities, CapabilityFlags, Isolation, Resources,
    abi_stable::std_types::{RString, RVec},
};
use backplane_worker_protocol::{PRESENCE_TTL, WorkerAnnouncement};
use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

struct Seen {
    announcement: WorkerAnnouncement,
    at: Instant,
}

#[derive(Default)]
pub struct PoolView {
    workers: Mutex<HashMap<String, Seen>>,
}

impl PoolView {
    pub fn update(&self, key: &str, announcement: WorkerAnnouncement) {
        self.lock().insert(key.to_owned(), Seen { announcement, at: Instant::now() });
    }

    pub fn remove(&self, key: &str) {
        self.lock().remove(key);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Seen>> {
        self.workers.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Workers heard from within the presence TTL and not draining.
    pub fn live(&self) -> Vec<WorkerAnnouncement> {
        self.live_within(PRESENCE_TTL)
    }

    fn live_within(&self, ttl: Duration) -> Vec<WorkerAnnouncement> {
        let mut workers = self.lock();
        workers.retain(|_, seen| seen.at.elapsed() < ttl * 4);
        let mut live: Vec<WorkerAnnouncement> = workers
            .values()
            .filter(|seen| seen.at.elapsed() < ttl && !seen.announcement.draining)
            .map(|seen| seen.announcement.clone())
            .collect();
        live.sort_by(|a, b| a.worker_id.cmp(&b.worker_id));
        live
    }
}

/// What the pool offers right now: its static capabilities, with the total
/// concurrency of live workers and the tags every one of them has.
pub fn live_capabilities(workers: &[WorkerAnnouncement]) -> Capabilities {
    let mut tags: Option<Vec<String>> = None;
    for worker in workers {
        tags = Some(match tags {
            None => worker.tags.clone(),
            Some(common) => common.into_iter().filter(|t| worker.tags.contains(t)).collect(),
        });
    }
    Capabilities {
        max_concurrency: workers.iter().map(|w| w.concurrency).sum(),
        tags: tags.unwrap_or_default().into_iter().map(RString::from).collect(),
        ..static_capabilities()
    }
}

/// Any worker instance: remote, parallel, spread over machines, each task
/// outside the host's process.
pub fn static_capabilities() -> Capabilities {
    Capabilities {
        flags: CapabilityFlags::PARALLEL | CapabilityFlags::REMOTE | CapabilityFlags::DISTRIBUTED,
        isolation: Isolation::PROCESS,
        max_concurrency: 0,
        capacity: Resources::default(),
        tags: RVec::new(),
        extensions: RVec::new(),
    }
}

/// One line per worker, for health messages.
pub fn describe(workers: &[WorkerAnnouncement]) -> String {
    workers
        .iter()
        .map(|w| {
            format!(
                "{} ({} slots; done {}, failed {}, in flight {})",
                w.worker_id, w.concurrency, w.counters.done, w.counters.failed, w.counters.in_flight
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn worker(id: &str, tags: &[&str], concurrency: u32) -> WorkerAnnouncement {
        WorkerAnnouncement {
            worker_id: id.into(),
            pool: "p".into(),
            hostname: "h".into(),
            pid: 1,
            tags: tags.iter().map(|t| (*t).to_owned()).collect(),
            concurrency,
            isolation: "none".into(),
            node_types: [("std.noop".to_owned(), "1.0.0".to_owned())].into(),
            counters: Default::default(),
            draining: false,
        }
    }

    #[test]
    fn live_capabilities_sum_slots_and_keep_common_tags() {
        let caps = live_capabilities(&[worker("a", &["gpu", "x86"], 4), worker("b", &["gpu"], 2)]);
        assert_eq!(caps.max_concurrency, 6);
        assert_eq!(caps.tags.iter().map(|t| t.as_str()).collect::<Vec<_>>(), ["gpu"]);
        assert!(caps.flags.contains(CapabilityFlags::REMOTE));
        assert_eq!(live_capabilities(&[]).max_concurrency, 0);
    }

    #[test]
    fn silent_and_draining_workers_are_not_live() {
        let view = PoolView::default();
        view.update("p.a", worker("a", &[], 1));
        let mut draining = worker("b", &[], 1);
        draining.draining = true;
        view.update("p.b", draining);
        assert_eq!(view.live().iter().map(|w| w.worker_id.as_str()).collect::<Vec<_>>(), ["a"]);
        std::thread::sleep(Duration::from_millis(30));
        assert!(view.live_within(Duration::from_millis(10)).is_empty());
        assert!(view.live().iter().any(|w| w.runs("std.noop", "1.0.0")));
    }
}
