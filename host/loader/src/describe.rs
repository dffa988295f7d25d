//! Serializable views of what the registries hold, for `backplane backends`,
//! `nodes` and `plugins` (text and `--json`).

use crate::registry::{BackendInstance, FactoryEntry, NodeEntry, Origin};
use backplane_plugin_api::{Capabilities, PortSpec, Requirements, Resources};
use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct ResourcesView {
    pub cpus: f64,
    pub memory_bytes: u64,
    pub gpus: f64,
    pub custom: Vec<(String, f64)>,
}

impl From<&Resources> for ResourcesView {
    fn from(r: &Resources) -> Self {
        Self {
            cpus: r.cpus,
            memory_bytes: r.memory_bytes,
            gpus: r.gpus,
            custom: r.custom.iter().map(|t| (t.0.to_string(), t.1)).collect(),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct CapabilitiesView {
    pub flags: Vec<String>,
    pub isolation: String,
    pub max_concurrency: u32,
    pub capacity: ResourcesView,
    pub tags: Vec<String>,
}

impl From<&Capabilities> for CapabilitiesView {
    fn from(c: &Capabilities) -> Self {
        Self {
            flags: c.flags.names(),
            isolation: c.isolation.name().to_owned(),
            max_concurrency: c.max_concurrency,
            capacity: (&c.capacity).into(),
            tags: c.tags.iter().map(|t| t.to_string()).collect(),
        }
    }
}

impl std::fmt::Display for CapabilitiesView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "flags: {}; isolation: {}", self.flags.join(", "), self.isolation)?;
        if self.max_concurrency > 0 {
            write!(f, "; concurrency: {}", self.max_concurrency)?;
        }
        if self.capacity.cpus > 0.0 {
            write!(f, "; cpus: {}", self.capacity.cpus)?;
        }
        if self.capacity.gpus > 0.0 {
            write!(f, "; gpus: {}", self.capacity.gpus)?;
        }
        if !self.tags.is_empty() {
            write!(f, "; tags: {}", self.tags.join(", "))?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct FactoryView {
    pub name: String,
    pub version: String,
    pub description: String,
    pub origin: Origin,
    pub capabilities: CapabilitiesView,
    pub config_schema: serde_json::Value,
}

impl From<&FactoryEntry> for FactoryView {
    fn from(f: &FactoryEntry) -> Self {
        Self {
            name: f.name().to_owned(),
            version: f.factory.version().to_string(),
            description: f.factory.description().to_string(),
            origin: f.origin.clone(),
            capabilities: f.factory.capabilities().into(),
            config_schema: serde_json::from_str(f.factory.config_schema().as_str()).unwrap_or_default(),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct InstanceView {
    pub name: String,
    #[serde(rename = "type")]
    pub factory: String,
    pub is_default: bool,
    pub health: String,
    pub health_message: String,
    pub max_in_flight: usize,
    pub config: serde_json::Value,
    pub capabilities: CapabilitiesView,
}

impl InstanceView {
    pub fn new(instance: &BackendInstance, is_default: bool) -> Self {
        let health = instance.backend.health();
        Self {
            name: instance.name.clone(),
            factory: instance.factory.clone(),
            is_default,
            health: health.status.name().to_owned(),
            health_message: health.message.to_string(),
            max_in_flight: instance.max_in_flight,
            config: redact_secrets(&instance.config),
            capabilities: (&instance.capabilities()).into(),
        }
    }
}

/// Setting names whose values are never shown (credentials).
const SECRET_KEYS: &[&str] = &["password", "token", "secret"];

/// A copy of a backend config with credential values replaced.
pub fn redact_secrets(config: &serde_json::Value) -> serde_json::Value {
    match config {
        serde_json::Value::Object(map) => map
            .iter()
            .map(|(k, v)| {
                let secret = SECRET_KEYS.iter().any(|s| k.to_ascii_lowercase().contains(s));
                (k.clone(), if secret { serde_json::Value::from("<redacted>") } else { redact_secrets(v) })
            })
            .collect(),
        other => other.clone(),
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct PortView {
    pub name: String,
    pub content_type: String,
    pub required: bool,
    pub multiple: bool,
    /// A stream output (plugin-api 1.3): items while the node computes.
    pub stream: bool,
    pub description: String,
}

impl From<&PortSpec> for PortView {
    fn from(p: &PortSpec) -> Self {
        Self {
            name: p.name.to_string(),
            content_type: p.content_type.to_string(),
            required: p.required,
            multiple: p.multiple,
            stream: p.is_stream(),
            description: p.description.to_string(),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct RequirementsView {
    pub flags: Vec<String>,
    pub isolation: String,
    pub resources: ResourcesView,
    pub tags: Vec<String>,
}

impl From<&Requirements> for RequirementsView {
    fn from(r: &Requirements) -> Self {
        Self {
            flags: r.flags.names(),
            isolation: r.isolation.name().to_owned(),
            resources: (&r.resources).into(),
            tags: r.tags.iter().map(|t| t.to_string()).collect(),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct NodeView {
    #[serde(rename = "type")]
    pub type_name: String,
    pub version: String,
    pub description: String,
    pub origin: Origin,
    pub inputs: Vec<PortView>,
    pub outputs: Vec<PortView>,
    pub settings_schema: serde_json::Value,
    pub defaults: serde_json::Value,
    pub tags: Vec<String>,
    pub requirements: RequirementsView,
    pub deterministic: bool,
    pub in_process: bool,
}

impl From<&NodeEntry> for NodeView {
    fn from(e: &NodeEntry) -> Self {
        Self {
            type_name: e.type_name().to_owned(),
            version: e.version().to_owned(),
            description: e.spec.description().to_string(),
            origin: e.origin.clone(),
            inputs: e.inputs().iter().map(Into::into).collect(),
            outputs: e.outputs().iter().map(Into::into).collect(),
            settings_schema: e.schema(),
            defaults: e.defaults().clone(),
            tags: e.spec.tags().iter().map(|t| t.to_string()).collect(),
            requirements: e.requirements().into(),
            deterministic: e.spec.deterministic(),
            in_process: e.spec.compute().is_some(),
        }
    }
}
