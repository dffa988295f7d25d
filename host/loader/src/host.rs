//! The plugins of this process: loaded, their factories and node types
//! registered. Backend instances are created from the config by the host
//! library (`Config::instantiate`).

use crate::{
    loader::{self, LoadError},
    registry::{BackendRegistry, NodeRegistry, Origin, RegistryError},
};
use backplane_plugin_api::{BackendFactoryRef, NodeSpecRef};
use serde::Serialize;
use std::path::PathBuf;

/// A loaded plugin as `backplane plugins` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct PluginInfo {
    pub path: PathBuf,
    pub name: String,
    pub version: String,
    pub interface_version: String,
    pub backends: Vec<String>,
    pub nodes: Vec<String>,
}

/// Everything a run needs before it plans: registries and what went wrong
/// while filling them.
#[derive(Default)]
pub struct Host {
    pub plugins: Vec<PluginInfo>,
    /// Files that did not load; the others still did.
    pub load_errors: Vec<LoadError>,
    /// Conflicts (duplicate backend or node types) — fatal for a run.
    pub conflicts: Vec<RegistryError>,
    pub backends: BackendRegistry,
    pub nodes: NodeRegistry,
}

impl Host {
    pub fn new() -> Self {
        Self::default()
    }

    /// Loads every plugin on the search path built from `config_dirs`,
    /// `BACKPLANE_PLUGIN_PATH` and (if `include_exe_dir`) the executable's directory.
    pub fn load_plugins(&mut self, config_dirs: &[PathBuf], include_exe_dir: bool) {
        let files = loader::discover(&loader::search_path(config_dirs, include_exe_dir));
        self.load_files(&files);
    }

    pub fn load_files(&mut self, files: &[PathBuf]) {
        let (loaded, errors) = loader::load_all(files);
        for e in &errors {
            tracing::warn!("{e}");
            let reason = e.to_string();
            let first_line = reason.lines().next().unwrap_or_default().to_owned();
            self.nodes.note_refused(e.path.clone(), first_line);
        }
        self.load_errors.extend(errors);
        for plugin in loaded {
            let origin = Origin { plugin: plugin.name.clone(), path: Some(plugin.path.clone()) };
            let mut info = PluginInfo {
                path: plugin.path.clone(),
                name: plugin.name.clone(),
                version: plugin.version.clone(),
                interface_version: plugin.interface_version.clone(),
                backends: Vec::new(),
                nodes: Vec::new(),
            };
            for factory in plugin.backends {
                info.backends.push(factory.name().to_string());
                self.register_backend_factory(factory, origin.clone());
            }
            for spec in plugin.nodes {
                info.nodes.push(spec.type_name().to_string());
                self.register_node_type(spec, origin.clone());
            }
            self.plugins.push(info);
        }
    }

    /// Registers a backend written in Rust, without a dylib.
    pub fn register_backend_factory(&mut self, factory: BackendFactoryRef, origin: Origin) {
        if let Err(e) = self.backends.register_factory(factory, origin) {
            self.conflicts.push(e);
        }
    }

    /// Registers a node type written in Rust, without a dylib.
    pub fn register_node_type(&mut self, spec: NodeSpecRef, origin: Origin) {
        if let Err(e) = self.nodes.register(spec, origin) {
            self.conflicts.push(e);
        }
    }
}
