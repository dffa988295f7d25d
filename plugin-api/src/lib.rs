//! The stable ABI between the Backplane host and its plugins: the only crate a
//! third-party backend or node library depends on.
//!
//! # Core concepts
//!
//! - A plugin is a `cdylib` that exports one [`PluginModRef`] root module with
//!   [`export_plugin!`]. Through it the plugin offers any number of
//!   [`BackendFactoryRef`]s (ways to create a [`BackendBox`]) and
//!   [`NodeSpecRef`]s (node types with ports, settings schema and a compute fn).
//! - The host owns scheduling. It hands a backend a [`NodeTask`] together with a
//!   host-implemented [`CompletionSinkBox`]; the backend runs the task on
//!   threads or a runtime it owns and completes the sink exactly once, from any
//!   thread. A sink that is dropped without completing reads as an error.
//! - Everything the plugin exports lives for the rest of the process: libraries
//!   are never unloaded, so factories and node specs are leaked `'static` data.
//! - Panics never cross the boundary: the helpers in this crate run every entry
//!   point inside [`guard()`], turning a panic into [`PluginError::Panicked`].
//!
//! # Evolution
//!
//! The root module, factories and node specs are prefix types; `Backend`,
//! `CompletionSink`, `ComputeContext` and `LogSink` are `sabi_trait` objects;
//! errors are a non-exhaustive enum; flag sets are bit newtypes. New fields,
//! methods, variants and bits are appended in minor versions, each with a
//! default, so 1.x plugins and 1.x hosts keep loading each other.
//!
//! Write plugins with the plain Rust traits [`NodeType`] and [`BackendPlugin`]
//! and the [`export_plugin!`] macro; the ABI types are filled in for you.

#![allow(non_local_definitions)] // abi_stable derives emit impls inside consts

pub mod backend;
pub mod error;
pub mod extensions;
pub mod guard;
pub mod log;
pub mod module;
pub mod node;
pub mod payload;
pub mod pool;
pub mod resources;
pub mod stream;
pub mod task_log;
pub mod testing;
pub mod wire;

pub use abi_stable;
pub use serde_json;

pub use backend::{
    Backend, Backend_TO, BackendBox, BackendFactory, BackendFactoryRef, BackendPlugin, CompletionSink,
    CompletionSink_TO, CompletionSinkBox, GuardedBackend, NodeTask, TaskIo, backend_factory, run_compute,
    run_compute_logged, run_compute_with,
};
pub use error::{PluginError, PluginError_NE, PluginResult, describe};
pub use guard::{guard, panic_message};
pub use module::{INTERFACE_VERSION, PluginMod, PluginModRef};
pub use node::{
    CheckContext, ComputeContext, ComputeContext_TO, ComputeFn, ComputeRequest, Inputs, NoSettings, NodeError,
    NodeSpec, NodeSpecRef, NodeType, PortSpec, SettingsCheckFn, SettingsProblem, TaskContext, node_spec,
};
pub use payload::{FILE_MANIFEST, FileOp, Payload};
pub use resources::{
    Capabilities, CapabilityFlags, Health, HealthStatus, Isolation, Requirements, Resources, parse_size,
};
pub use task_log::TaskLog;

/// Re-exported ABI-stable std types plugin code uses most.
pub mod prelude {
    pub use crate::abi_stable::std_types::{RBox, RResult, RStr, RString, RVec, Tuple2};
    pub use crate::node::Context;
    pub use crate::payload::{FILE_MANIFEST, FileOp};
    pub use crate::{
        BackendPlugin, Capabilities, CapabilityFlags, CheckContext, CompletionSinkBox, Health, Inputs, Isolation,
        NoSettings, NodeError, NodeTask, NodeType, Payload, PluginError, PluginError_NE, PortSpec, Requirements,
        Resources, SettingsProblem, TaskContext,
    };
}
