//! `[backends.<name>] type = "ray"` settings.

use schemars::JsonSchema;
use serde::Deserialize;
use std::{collections::BTreeMap, path::PathBuf};

/// Settings of a `ray` backend instance (its JSON Schema is derived from this type).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RayConfig {
    /// `"local"`: a private single-node Ray started for this instance and
    /// stopped with it. Otherwise `HOST:PORT` of an existing cluster's head.
    #[serde(default = "default_address")]
    pub address: String,
    /// The venv's Python with `ray` installed [default: `BACKPLANE_RAY_PYTHON`, else `python3`].
    pub python: Option<PathBuf>,
    /// Ray retries of a task whose worker died.
    #[serde(default = "default_max_retries")]
    #[schemars(range(max = 100))]
    pub max_retries: u32,
    /// Per-task deadline when the node has none (0: none).
    #[serde(default)]
    #[schemars(range(min = 0.0, max = 31_536_000.0))]
    pub task_timeout_secs: f64,
    /// CPUs of the private instance (`address = "local"`) [default: all].
    #[schemars(range(min = 1, max = 65_536))]
    pub num_cpus: Option<u32>,
    /// Custom resources of the private instance, e.g. `{ licence = 2 }`.
    #[serde(default)]
    #[schemars(extend("additionalProperties" = { "type": "number", "minimum": 0, "maximum": 1e12 }))]
    pub resources: BTreeMap<String, f64>,
    /// Token of an existing cluster (`RAY_AUTH_TOKEN`); a private instance gets a fresh one.
    pub auth_token: Option<String>,
    /// Extra plugin directories for the node runner on Ray workers.
    #[serde(default)]
    pub plugin_dirs: Vec<PathBuf>,
    /// The node runner library [default: next to this plugin].
    pub node_runner: Option<PathBuf>,
    /// A command the driver runs under, e.g. `["ip", "netns", "exec", "head"]`:
    /// a driver must share a network with a Ray node of the cluster.
    #[serde(default)]
    pub driver_prefix: Vec<String>,
    /// This machine's address as the cluster sees it (passed to `ray.init`).
    pub node_ip_address: Option<String>,
    /// Outputs larger than this stay in Ray's object store when their
    /// consumers run on Ray too.
    #[serde(default = "default_inline_threshold")]
    #[schemars(range(max = 1_073_741_824))]
    pub inline_threshold_bytes: u64,
    /// Extra `ray.init` keyword arguments, passed through as they are
    /// (e.g. `{ object_store_memory = 500000000, runtime_env = { ... } }`).
    #[serde(default)]
    pub init_options: serde_json::Map<String, serde_json::Value>,
    /// How long the driver may take to connect (a cold Ray start takes seconds).
    #[serde(default = "default_start_timeout")]
    #[schemars(range(min = 1.0, max = 3600.0))]
    pub start_timeout_secs: f64,
    /// Backplane tags as Ray custom resources: a node requiring the tag asks
    /// Ray for the resource, so it runs on a Ray node that has it.
    #[serde(default)]
    pub tag_resources: BTreeMap<String, ResourceMapping>,
    /// Workflow labels (`"key=value"`) as Ray custom resources, the same way.
    #[serde(default)]
    #[schemars(extend("propertyNames" = { "pattern": "^[^=]+=.*$" }))]
    pub label_resources: BTreeMap<String, ResourceMapping>,
}

/// The Ray custom resource a tag or label stands for.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(untagged, deny_unknown_fields)]
pub enum ResourceMapping {
    /// Just the name: a token amount that steers placement without limiting
    /// how many such tasks run at once.
    Name(#[schemars(length(min = 1))] String),
    /// An amount each task holds while it runs (e.g. one of a node's licences).
    Amount {
        #[schemars(length(min = 1))]
        resource: String,
        #[schemars(range(min = 0.0001, max = 1e12))]
        amount: f64,
    },
}

fn default_address() -> String {
    "local".into()
}
fn default_max_retries() -> u32 {
    3
}
fn default_inline_threshold() -> u64 {
    64 * 1024
}
fn default_start_timeout() -> f64 {
    120.0
}

pub fn schema() -> serde_json::Value {
    schemars::schema_for!(RayConfig).to_value()
}
