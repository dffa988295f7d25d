//! Tasks submitted and not yet completed. Removing an entry is the only way
//! to reach its sink, so each task completes exactly once whichever of
//! result, cancel, timeout or shutdown comes first.

use backplane_plugin_api::{CompletionSinkBox, Payload, PluginError_NE, abi_stable::std_types::RVec};
use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

pub struct Pending {
    pub sink: CompletionSinkBox,
    pub node_type: String,
    pub node_version: String,
    pub submitted: Instant,
    /// Stream sequence of the task message once published: lets a cancelled
    /// or abandoned task be removed before a worker takes it.
    pub sequence: Option<u64>,
    /// Objects holding large inputs, deleted when the task completes.
    pub input_objects: Vec<String>,
    /// Since when no live worker could run it (`None`: one can).
    pub unrunnable_since: Option<Instant>,
}

#[derive(Default)]
pub struct PendingTasks {
    tasks: Mutex<HashMap<u64, Pending>>,
}

impl PendingTasks {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Pending>> {
        self.tasks.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn insert(&self, task_id: u64, pending: Pending) {
        self.lock().insert(task_id, pending);
    }

    pub fn take(&self, task_id: u64) -> Option<Pending> {
        self.lock().remove(&task_id)
    }

    pub fn take_all(&self) -> Vec<(u64, Pending)> {
        self.lock().drain().collect()
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn with<R>(&self, task_id: u64, f: impl FnOnce(&mut Pending) -> R) -> Option<R> {
        self.lock().get_mut(&task_id).map(f)
    }

    /// Removes the tasks `expired` selects, with the reason it gives.
    pub fn take_expired(
        &self,
        mut expired: impl FnMut(&mut Pending) -> Option<PluginError_NE>,
    ) -> Vec<(u64, Pending, PluginError_NE)> {
        let mut tasks = self.lock();
        let ids: Vec<(u64, PluginError_NE)> =
            tasks.iter_mut().filter_map(|(id, pending)| expired(pending).map(|e| (*id, e))).collect();
        ids.into_iter().filter_map(|(id, error)| tasks.remove(&id).map(|p| (id, p, error))).collect()
    }
}

impl Pending {
    pub fn complete(self, result: Result<Vec<Payload>, PluginError_NE>) {
        self.sink.complete(result.map(RVec::from).into());
    }

    pub fn age(&self) -> Duration {
        self.submitted.elapsed()
    }
}
