//! The conformance suite for Backplane backends and node types: what a
//! plugin must do to be a good citizen in any 1.x host.
//!
//! # Core concepts
//!
//! - [`check_backend`] creates instances from a [`BackendFactoryRef`](backplane_plugin_api::BackendFactoryRef) and
//!   drives them through the ABI exactly as the host does: submit with a
//!   completion sink, cancel, health, shutdown. It uses the standard node
//!   types (`std.noop`, `std.sleep`, `std.fail`, `std.panic`, ...), whose
//!   specs the caller passes in (from the std-nodes plugin), and compares
//!   every result with the same node run in process (parity with `local`).
//! - [`check_node_type`] checks a node spec on its own: metadata, schema,
//!   defaults, and that compute returns instead of crashing.
//! - Each check yields a [`Check`]: pass, fail (with the reason) or skip.
//!   Nothing here panics on a misbehaving plugin; a hang becomes a failure
//!   after a timeout.
//!
//! Used by `backplane verify` and by every backend's own tests.

mod backend_checks;
mod node_checks;
mod probe;

pub use backend_checks::{BackendSuite, check_backend, check_backend_with, tally};
pub use node_checks::check_node_type;

use serde::Serialize;

/// Outcome of one check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pass,
    Fail,
    Skip,
}

#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub status: Status,
    /// What was observed; for failures, what went wrong and what to fix.
    pub detail: String,
}

impl Check {
    pub fn pass(name: &'static str, detail: impl Into<String>) -> Self {
        Self { name, status: Status::Pass, detail: detail.into() }
    }
    pub fn fail(name: &'static str, detail: impl Into<String>) -> Self {
        Self { name, status: Status::Fail, detail: detail.into() }
    }
    pub fn skip(name: &'static str, detail: impl Into<String>) -> Self {
        Self { name, status: Status::Skip, detail: detail.into() }
    }
}

/// Loads the node specs exported by a plugin dylib (e.g. the std-nodes
/// plugin a backend's tests run the suite with), through the host's loader
/// and so with its file and ABI checks.
pub fn load_node_specs(path: &std::path::Path) -> Result<Vec<backplane_plugin_api::NodeSpecRef>, String> {
    let (loaded, errors) = backplane_loader::loader::load_all(&[path.to_owned()]);
    if let Some(error) = errors.first() {
        return Err(error.to_string());
    }
    Ok(loaded.into_iter().flat_map(|plugin| plugin.nodes).collect())
}
