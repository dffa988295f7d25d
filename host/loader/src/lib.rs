//! Backplane's plugin loader: finds plugin dylibs, checks their ABI before
//! trusting them, and fills the registries with their backend factories and
//! node types. It is all that a process running node code needs (the Ray
//! node runner, the worker service, the conformance kit): no config, no
//! planner, no NATS, no command line.
//!
//! # Core concepts
//!
//! - [`Host`] owns the registries for the whole process: [`loader`] fills
//!   them from plugin dylibs (never unloaded, as abi_stable requires), and
//!   Rust code can add factories and node types directly.
//! - [`registry::BackendRegistry`] holds factories and the named instances
//!   created from them; an instance is immutable and shared by every run.
//! - [`registry::NodeRegistry`] holds one spec per node type; a duplicate is
//!   an error naming both files.
//! - [`describe`] turns registry entries into what `backplane plugins`,
//!   `backends` and `nodes` print; [`task_runner`] runs one task in process.
//!
//! Layers, lowest first; a module imports only from its own layer or lower
//! ones, which `tests/layering.rs` checks:
//! 1. `log_bridge` — plugin log lines into the host's `tracing`
//! 2. `loader` — files checked and opened, ABI checked
//! 3. `registry` — factories, instances, node types
//! 4. `describe`, `host` — what the commands print; the process's plugins
//! 5. `task_runner` — one task run in this process

//!
//! Layers 3 to 5 (and `jsonschema`, most of the crate's build) are the
//! default feature `registry`; without it the crate is layers 1 and 2, what a
//! plugin's own tests need to load a plugin file (the conformance kit
//! without its `schema-checks`).

#[cfg(feature = "registry")]
pub mod describe;
#[cfg(feature = "registry")]
mod host;
pub mod loader;
mod log_bridge;
pub use log_bridge::take_last_error;
#[cfg(feature = "registry")]
pub mod registry;
#[cfg(feature = "registry")]
pub mod task_runner;

#[cfg(feature = "registry")]
pub use host::{Host, PluginInfo};
