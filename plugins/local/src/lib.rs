//! `local`: runs nodes in the host's process on a thread pool the plugin owns.
//!
//! # Core concepts
//!
//! - The instance is a [`TaskPool`] of `threads` workers from plugin-api:
//!   `submit` only queues, a worker calls the node's in-process compute
//!   function and completes the sink; cancellation and bounded shutdown are
//!   the pool's.
//! - What this crate adds is the config: threads, and the memory and named
//!   resources the instance offers to tasks that ask for them.

use backplane_plugin_api::{
    abi_stable::std_types::{RString, RVec, Tuple2},
    log_debug,
    pool::{PoolOptions, TaskPool},
    prelude::*,
};
use serde::Deserialize;
use std::collections::BTreeMap;

/// `[backends.<name>] type = "local"` settings.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalConfig {
    /// Worker threads; default: available parallelism. Also the instance's
    /// cpu capacity: tasks that ask for cpus share this many.
    pub threads: Option<usize>,
    /// Memory the instance offers to tasks that ask for some (bytes, or a
    /// size such as "16GiB"); default: not stated, not limited.
    pub memory: Option<Size>,
    /// Named resources the instance offers (`{ licence = 2 }`); tasks that
    /// ask for one share what is declared here.
    #[serde(default)]
    pub custom: BTreeMap<String, f64>,
}

/// A size in bytes, written as a number or with a unit.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Size {
    Bytes(u64),
    Text(String),
}

impl Size {
    fn bytes(&self) -> Result<u64, PluginError_NE> {
        match self {
            Self::Bytes(n) => Ok(*n),
            Self::Text(text) => backplane_plugin_api::parse_size(text).ok_or_else(|| {
                PluginError::invalid_config(format!(
                    "`memory = \"{text}\"` is not a size (e.g. 17179869184 or \"16GiB\")"
                ))
            }),
        }
    }
}

/// What an instance offers besides its threads.
#[derive(Debug, Clone, Default)]
struct Offered {
    memory_bytes: u64,
    custom: Vec<(String, f64)>,
}

pub struct LocalBackend {
    offered: Offered,
    pool: TaskPool,
}

fn capabilities(threads: usize, offered: &Offered) -> Capabilities {
    Capabilities {
        // One thread runs one task at a time: not parallel. Items a node
        // emits go straight to the task's sink: streaming.
        flags: if threads > 1 {
            CapabilityFlags::PARALLEL | CapabilityFlags::IN_PROCESS_COMPUTE | CapabilityFlags::STREAMING
        } else {
            CapabilityFlags::IN_PROCESS_COMPUTE | CapabilityFlags::STREAMING
        },
        isolation: Isolation::NONE,
        max_concurrency: threads as u32,
        capacity: Resources {
            cpus: threads as f64,
            memory_bytes: offered.memory_bytes,
            gpus: 0.0,
            custom: offered.custom.iter().map(|(name, amount)| Tuple2(RString::from(name.as_str()), *amount)).collect(),
        },
        tags: RVec::from(vec![RString::from("local")]),
        extensions: RVec::new(),
    }
}

/// More threads than this is a typo, not a machine: each costs a stack.
const MAX_THREADS: usize = 1024;

fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

impl BackendPlugin for LocalBackend {
    const NAME: &'static str = "local";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str = "Runs nodes in process on a thread pool owned by the plugin";
    type Config = LocalConfig;

    fn config_schema() -> serde_json::Value {
        serde_json::json!({
            "type": "object",
            "properties": {
                "threads": { "type": "integer", "minimum": 1, "maximum": MAX_THREADS, "description": "worker threads (default: available parallelism); also the cpus tasks share" },
                "memory": { "type": ["integer", "string"], "minimum": 0, "description": "memory offered to tasks that ask for some, in bytes or with a unit (\"16GiB\"); default: not limited" },
                "custom": { "type": "object", "additionalProperties": { "type": "number", "minimum": 0 }, "description": "named resources offered, e.g. { licence = 2 }" }
            },
            "additionalProperties": false
        })
    }

    /// What any instance may offer: an instance with one thread is not parallel.
    fn capabilities() -> Capabilities {
        Capabilities {
            flags: CapabilityFlags::PARALLEL | CapabilityFlags::IN_PROCESS_COMPUTE | CapabilityFlags::STREAMING,
            ..capabilities(default_threads(), &Offered::default())
        }
    }

    fn create(config: LocalConfig) -> Result<Self, PluginError_NE> {
        let threads = match config.threads {
            Some(0) => return Err(PluginError::invalid_config("`threads` must be at least 1")),
            Some(n) => n,
            None => default_threads(),
        };
        let mut offered =
            Offered { memory_bytes: config.memory.as_ref().map_or(Ok(0), Size::bytes)?, custom: Vec::new() };
        for (name, amount) in config.custom {
            if !amount.is_finite() || amount < 0.0 {
                return Err(PluginError::invalid_config(format!(
                    "custom resource `{name}` must be a number of at least 0"
                )));
            }
            offered.custom.push((name, amount));
        }
        // Idle threads spin briefly before parking (the pool's default), so
        // neither a wide DAG nor a dependent chain pays a wake-up per node.
        let pool = TaskPool::in_process(PoolOptions::new("backplane-local", threads))?;
        log_debug!("local backend started with {threads} threads");
        Ok(Self { offered, pool })
    }

    fn live_capabilities(&self) -> Capabilities {
        capabilities(self.pool.threads(), &self.offered)
    }

    fn submit(&self, task: NodeTask, sink: CompletionSinkBox) {
        self.pool.submit(task, sink);
    }

    fn cancel(&self, task_id: u64) {
        self.pool.cancel(task_id);
    }

    fn health(&self) -> Health {
        self.pool.health()
    }

    /// Queued tasks complete as cancelled, running ones see `is_cancelled`;
    /// returns within the pool's 2 s grace even if a node ignores it.
    fn shutdown(&self) {
        self.pool.shutdown();
    }
}

backplane_plugin_api::export_plugin! {
    backends: [LocalBackend],
    nodes: [],
}
