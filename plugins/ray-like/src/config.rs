//! `[backends.<name>] type = "ray"` settings.

use serde::Deserialize;
use std::{collections::BTreeMap, path::PathBuf};

#[derive(Debug, Deserialize)]
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
    pub max_retries: u32,
    /// Per-task deadline when the node has none (0: none).
    #[serde(default)]
    pub task_timeout_secs: f64,
    /// CPUs of the private instance (`address = "local"`) [default: all].
    pub num_cpus: Option<u32>,
    /// Custom resources of the private instance, e.g. `{ licence = 2 }`.
    #[serde(default)]
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
    pub inline_threshold_bytes: u64,
    /// Extra `ray.init` keyword arguments, passed through as they are
    /// (e.g. `{ object_store_memory = 500000000, runtime_env = { ... } }`).
    #[serde(default)]
    pub init_options: serde_json::Map<String, serde_json::Value>,
    /// How long the driver may take to connect (a cold Ray start takes seconds).
    #[serde(default = "default_start_timeout")]
    pub start_timeout_secs: f64,
    /// Backplane tags as Ray custom resources: a node requiring the tag asks
    /// Ray for the resource, so it runs on a Ray node that has it.
    #[serde(default)]
    pub tag_resources: BTreeMap<String, ResourceMapping>,
    /// Workflow labels (`"key=value"`) as Ray custom resources, the same way.
    #[serde(default)]
    pub label_resources: BTreeMap<String, ResourceMapping>,
}

/// The Ray custom resource a tag or label stands for.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum ResourceMapping {
    /// Just the name: a token amount that steers placement without limiting
    /// how many such tasks run at once.
    Name(String),
    /// An amount each task holds while it runs (e.g. one of a node's licences).
    Amount { resource: String, amount: f64 },
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
    serde_json::json!({
        "type": "object",
        "properties": {
            "address": { "type": "string", "description": "\"local\" (a private Ray for this instance) or HOST:PORT of a cluster head" },
            "python": { "type": "string", "description": "Python with `ray` installed (a venv's bin/python)" },
            "max_retries": { "type": "integer", "minimum": 0, "maximum": 100, "description": "Ray retries when a worker dies (default 3)" },
            "task_timeout_secs": { "type": "number", "minimum": 0, "maximum": 31_536_000, "description": "per-task deadline when the node has none (0: none)" },
            "num_cpus": { "type": "integer", "minimum": 1, "maximum": 65_536, "description": "CPUs of the private instance" },
            "resources": { "type": "object", "additionalProperties": { "type": "number", "minimum": 0, "maximum": 1e12 }, "description": "custom resources of the private instance" },
            "auth_token": { "type": "string", "description": "RAY_AUTH_TOKEN of an existing cluster" },
            "plugin_dirs": { "type": "array", "items": { "type": "string" }, "description": "extra plugin directories for Ray workers" },
            "node_runner": { "type": "string", "description": "the node runner library (default: next to this plugin)" },
            "driver_prefix": { "type": "array", "items": { "type": "string" }, "description": "command prefix for the driver, e.g. [\"ip\", \"netns\", \"exec\", \"head\"]" },
            "node_ip_address": { "type": "string", "description": "this machine's address as the cluster sees it" },
            "inline_threshold_bytes": { "type": "integer", "minimum": 0, "maximum": 1_073_741_824, "description": "larger outputs stay in Ray's object store when their consumers run on Ray (default 65536)" },
            "init_options": { "type": "object", "description": "extra ray.init keyword arguments, passed through" },
            "start_timeout_secs": { "type": "number", "minimum": 1, "maximum": 3600, "description": "how long the driver may take to start (default 120)" },
            "tag_resources": {
                "type": "object",
                "additionalProperties": { "$ref": "#/$defs/resource" },
                "description": "tag -> Ray custom resource a node requiring the tag asks for"
            },
            "label_resources": {
                "type": "object",
                "propertyNames": { "pattern": "^[^=]+=.*$" },
                "additionalProperties": { "$ref": "#/$defs/resource" },
                "description": "\"key=value\" label -> Ray custom resource a node with the label asks for"
            }
        },
        "$defs": {
            "resource": {
                "oneOf": [
                    { "type": "string", "minLength": 1, "description": "the resource's name; a token amount (0.001) steers placement only" },
                    {
                        "type": "object",
                        "properties": {
                            "resource": { "type": "string", "minLength": 1 },
                            "amount": { "type": "number", "minimum": 0.0001, "maximum": 1e12, "description": "how much of it each task holds" }
                        },
                        "required": ["resource", "amount"],
                        "additionalProperties": false
                    }
                ]
            }
        },
        "additionalProperties": false
    })
}
