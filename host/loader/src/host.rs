//! The plugins of this process: loaded, their factories and node types
//! registered. Backend instances are created from the config by the host
//! library (`Config::instantiate`).

use crate::{
    loader::{self, LoadError, LoadErrorKind},
    registry::{BackendRegistry, NodeRegistry, Origin, RegistryError, schema},
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
    /// Set for processes that only execute tasks a checking host sent them.
    skip_schema_checks: bool,
}

impl Host {
    pub fn new() -> Self {
        Self::default()
    }

    /// A host for a process that only runs tasks (`backplane run-task`, the
    /// Ray node runner): it leaves out the load-time schema checks, which
    /// the host that planned the tasks made, and which would add most of a
    /// process start to every task.
    pub fn for_tasks() -> Self {
        Self { skip_schema_checks: true, ..Self::default() }
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
            let origin = Origin {
                plugin: plugin.name.clone(),
                path: Some(plugin.path.clone()),
                interface_version: Some(plugin.interface_version.clone()),
            };
            let mut info = PluginInfo {
                path: plugin.path.clone(),
                name: plugin.name.clone(),
                version: plugin.version.clone(),
                interface_version: plugin.interface_version.clone(),
                backends: Vec::new(),
                nodes: Vec::new(),
            };
            for factory in plugin.backends {
                if self.register_backend_factory(factory, origin.clone()) {
                    info.backends.push(factory.name().to_string());
                }
            }
            for spec in plugin.nodes {
                if self.register_node_type(spec, origin.clone()) {
                    info.nodes.push(spec.type_name().to_string());
                }
            }
            self.plugins.push(info);
        }
    }

    /// Registers a backend written in Rust, without a dylib. A factory whose
    /// config schema is not a JSON Schema is left out and reported; a
    /// duplicate is a conflict. False when it was left out for its schema.
    pub fn register_backend_factory(&mut self, factory: BackendFactoryRef, origin: Origin) -> bool {
        let name = factory.name().as_str();
        if let Some(problem) = self.schema_problem(factory.config_schema().as_str()) {
            let error = self.invalid_schema(&origin, format!("backend type `{name}`"), "config schema", problem);
            self.backends.note_rejected(name, error);
            return false;
        }
        if let Err(e) = self.backends.register_factory(factory, origin) {
            self.conflicts.push(e);
        }
        true
    }

    /// Registers a node type written in Rust, without a dylib. A type whose
    /// settings schema is not a JSON Schema is left out and reported; a
    /// duplicate is a conflict. False when it was left out for its schema.
    pub fn register_node_type(&mut self, spec: NodeSpecRef, origin: Origin) -> bool {
        let name = spec.type_name().as_str();
        if let Some(problem) = self.schema_problem(spec.settings_schema().as_str()) {
            let error = self.invalid_schema(&origin, format!("node type `{name}`"), "settings schema", problem);
            self.nodes.note_rejected(name, error);
            return false;
        }
        if let Err(e) = self.nodes.register(spec, origin) {
            self.conflicts.push(e);
        }
        true
    }

    fn schema_problem(&self, schema_text: &str) -> Option<String> {
        if self.skip_schema_checks { None } else { schema::parse(schema_text).err() }
    }

    /// Records a type left out for its schema as a load error of its file;
    /// returns the error's first line, for "unknown type" messages.
    fn invalid_schema(&mut self, origin: &Origin, what: String, schema: &'static str, problem: String) -> String {
        let path = origin.path.clone().unwrap_or_else(|| PathBuf::from(&origin.plugin));
        let error = LoadError { path, kind: LoadErrorKind::InvalidSchema { what, schema, problem } };
        tracing::warn!("{error}");
        let first_line = error.to_string().lines().next().unwrap_or_default().to_owned();
        self.load_errors.push(error);
        first_line
    }
}
