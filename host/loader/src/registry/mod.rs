//! What the loaded plugins (and Rust code embedding the host) offer.

mod backends;
mod matching;
mod nodes;
pub mod schema;

pub use backends::{
    BackendInstance, BackendRegistry, DEFAULT_MAX_IN_FLIGHT, FactoryEntry, InstanceSettings, config_problems,
};
pub use matching::unmet_requirements;
pub use nodes::{NodeEntry, NodeRegistry};

use serde::Serialize;
use std::{fmt, path::PathBuf};

/// Where a registered factory or node type came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Origin {
    pub plugin: String,
    /// The dylib, or `None` when registered from Rust code.
    pub path: Option<PathBuf>,
    /// The plugin-api it was built against; `None` for this host's own.
    pub interface_version: Option<String>,
}

impl Origin {
    pub fn code(name: &str) -> Self {
        Self { plugin: name.to_owned(), path: None, interface_version: None }
    }

    /// Whether its contexts and sinks know `emit` (plugin-api 1.3): only
    /// then does a `streaming` capability it reports mean items arrive
    /// (the flag is older than the method).
    pub fn can_stream(&self) -> bool {
        let Some(version) = &self.interface_version else { return true };
        let mut parts = version.split('.').map(|p| p.parse::<u64>().unwrap_or(0));
        let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
        (major, minor) >= (1, 3)
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.path {
            Some(path) => write!(f, "{}", path.display()),
            None => write!(f, "`{}` (registered in code)", self.plugin),
        }
    }
}

#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    #[error(
        "{what} `{name}` is defined twice: by {first} and by {second}\n  help: remove one of the two plugins from the plugin path"
    )]
    Duplicate { what: &'static str, name: String, first: Box<Origin>, second: Box<Origin> },
    #[error("unknown backend type `{name}`; available: {}", known.join(", "))]
    UnknownFactory { name: String, known: Vec<String> },
    #[error("backend instance `{0}` is defined twice")]
    DuplicateInstance(String),
    #[error("invalid configuration for backend instance `{instance}` (type `{factory}`):\n{}", problems.join("\n"))]
    InvalidConfig { instance: String, factory: String, problems: Vec<String> },
    #[error("cannot create backend instance `{instance}` (type `{factory}`): {message}")]
    CreateFailed { instance: String, factory: String, message: String },
}
