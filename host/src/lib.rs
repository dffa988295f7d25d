//! The Backplane host: loads backend and node-spec plugins through the stable
//! ABI, plans workflows and runs their nodes on the selected backends.
//!
//! # Core concepts
//!
//! - [`Host`] owns the registries for the whole process: [`loader`] fills them
//!   from plugin dylibs (never unloaded), Rust code can add factories and node
//!   types directly.
//! - [`config::Config`] (`backplane.toml`) names backend *instances*; each is
//!   created once from its factory and shared, immutable, by every run.
//! - A [`workflow::Workflow`] is parsed with locations, then [`plan::build`]
//!   checks it against the registries and routes each node to an instance.
//! - [`engine::execute`] runs a plan on the current tokio runtime and returns
//!   a report plus the workflow outputs, which [`output`] writes.
//!
//! The path of a run: config -> loader -> registries -> plan (with
//! [`output_targets`] checked) -> engine -> output.

pub mod bench;
pub mod config;
pub mod describe;
pub mod diagnostic;
pub mod engine;
mod host;
pub mod layers;
pub mod loader;
mod log_bridge;
pub mod output;
pub mod output_targets;
pub mod plan;
pub mod policy;
pub mod registry;
pub mod report;
mod spanned_toml;
pub mod task_runner;
pub mod worker;
pub mod workflow;

pub use host::{Host, PluginInfo};
