//! The innermost service: the backend instance itself, across the ABI.

use super::{InstanceService, LayerContext, LayerTimer, Readiness, Request};
use crate::{layers::Completion, registry::BackendInstance};
use backplane_plugin_api::{Capabilities, CompletionSinkBox, Health, NodeTask};
use std::sync::Arc;

pub struct PluginBackend {
    instance: Arc<BackendInstance>,
}

impl PluginBackend {
    pub fn new(instance: Arc<BackendInstance>) -> Self {
        Self { instance }
    }

    pub fn instance(&self) -> &Arc<BackendInstance> {
        &self.instance
    }
}

impl InstanceService for PluginBackend {
    fn poll_ready(&mut self, _: &Request<'_>) -> Readiness {
        Readiness::Ready
    }

    fn call(&mut self, _: &Request<'_>, task: NodeTask, sink: CompletionSinkBox, _: &mut LayerContext<'_>) {
        self.instance.backend.submit(task, sink);
    }

    fn cancel(&mut self, task_id: u64) {
        self.instance.backend.cancel(task_id);
    }

    fn completed(&mut self, _: &mut Completion, _: &mut LayerContext<'_>) {}

    fn fire(&mut self, timer: LayerTimer, _: &mut LayerContext<'_>) {
        tracing::debug!(?timer, "a timer no layer of this instance claims");
    }

    fn health(&mut self) -> Health {
        self.instance.backend.health()
    }

    fn refresh(&mut self, _: &Capabilities) {}
}
