//! The Backplane host library: reads the config and workflows, plans which
//! backend instance runs each node, runs the plan through policy layers and
//! writes its outputs. Plugins are loaded by [`backplane_loader`], whose
//! types are re-exported here; the command line is the `backplane` crate.
//!
//! # Core concepts
//!
//! - [`Host`] (from the loader) owns the registries for the whole process.
//! - [`config::Config`] (`backplane.toml`) names backend *instances*; each is
//!   created once from its factory ([`config::Config::instantiate`]) and
//!   shared, immutable, by every run.
//! - A [`workflow::Workflow`] is parsed with locations, then [`plan::build`]
//!   checks it against the registries and routes each node to an instance.
//! - [`engine::execute`] runs a plan on the current tokio runtime, reaching
//!   each instance through its [`layers`] (admission, circuit breaker,
//!   timeout), and returns a [`report`] plus the workflow outputs, which
//!   [`output`] writes.
//! - With a [`cache::ResultCache`], the engine looks cacheable nodes up
//!   before queueing them and stores their results; [`runs`] writes a record
//!   of every run, which explains misses and traces outputs to their sources.
//! - The engine tells [`observe`]rs what happens (queued, dispatched,
//!   started, finished, retried, cache hits…) without waiting for them: the
//!   progress bar, traces, metrics and run records are observers.
//!
//! Layers, lowest first; a module imports only from its own layer or lower
//! ones, which `tests/layering.rs` checks:
//! 1. `diagnostic`, `spanned_toml`, `policy`, `report` — values and parsing
//! 2. `config`, `workflow`, `output_targets` — what the user wrote
//! 3. `plan` — nodes routed to instances
//! 4. `layers`, `cache`, `observe` — policies around one instance, the
//!    result cache, and observers of a run's events
//! 5. `engine`, `output` — running a plan and writing what it produced
//! 6. `runs` — records of runs: miss reasons, provenance

pub mod cache;
pub mod config;
pub mod diagnostic;
pub mod engine;
pub mod layers;
pub mod observe;
pub mod output;
pub mod output_targets;
pub mod plan;
pub mod policy;
pub mod report;
pub mod runs;
mod spanned_toml;
pub mod workflow;

pub use backplane_loader::{Host, PluginInfo, describe, loader, registry, task_runner};
pub use spanned_toml::suggest;
