//! Node types by name, with their compiled settings schemas.

use super::{Origin, RegistryError};
use backplane_plugin_api::{CapabilityFlags, NodeSpecRef, PortSpec, Requirements, SettingsProblem};
use std::{collections::HashMap, path::PathBuf, sync::OnceLock};

pub struct NodeEntry {
    pub spec: NodeSpecRef,
    pub origin: Origin,
    defaults: serde_json::Value,
    requirements: &'static Requirements,
    validator: OnceLock<Result<(jsonschema::Validator, serde_json::Value), String>>,
}

impl NodeEntry {
    fn new(spec: NodeSpecRef, origin: Origin) -> Self {
        let defaults = serde_json::from_str(spec.default_settings().as_str())
            .ok()
            .filter(serde_json::Value::is_object)
            .unwrap_or_else(|| serde_json::json!({}));
        let requirements = effective_requirements(spec);
        Self { spec, origin, defaults, requirements, validator: OnceLock::new() }
    }

    /// What a backend needs to run this type: what it declares, plus the
    /// `streaming` capability when it has a stream output.
    pub fn requirements(&self) -> &'static Requirements {
        self.requirements
    }

    pub fn type_name(&self) -> &'static str {
        self.spec.type_name().as_str()
    }
    pub fn version(&self) -> &'static str {
        self.spec.version().as_str()
    }
    pub fn inputs(&self) -> &'static [PortSpec] {
        self.spec.inputs().as_slice()
    }
    pub fn outputs(&self) -> &'static [PortSpec] {
        self.spec.outputs().as_slice()
    }
    pub fn defaults(&self) -> &serde_json::Value {
        &self.defaults
    }
    pub fn schema(&self) -> serde_json::Value {
        serde_json::from_str(self.spec.settings_schema().as_str()).unwrap_or(serde_json::Value::Null)
    }

    /// Defaults overlaid with the node's own settings (top-level keys).
    pub fn merged_settings(&self, settings: Option<&serde_json::Value>) -> serde_json::Value {
        let mut merged = self.defaults.clone();
        if let (Some(serde_json::Value::Object(own)), serde_json::Value::Object(out)) = (settings, &mut merged) {
            for (k, v) in own {
                out.insert(k.clone(), v.clone());
            }
        }
        merged
    }

    /// What the type's own settings check (plugin-api 1.1) finds in settings
    /// that passed the schema. A check that fails or panics is one problem
    /// naming the node type; types from 1.0 plugins have no check.
    pub fn check_settings(&self, settings_json: &str, context_json: &str) -> Vec<SettingsProblem> {
        // One line on purpose: the evolution tests build a 1.0 host by replacing it.
        let Some(check) = self.spec.check_settings().into_option() else { return Vec::new() };
        let broken = |why: String| {
            let message = format!("the settings check of `{}` {why}", self.type_name());
            vec![SettingsProblem { pointer: String::new(), message, help: None }]
        };
        match (check.0)(settings_json.into(), context_json.into()).into_result() {
            Err(e) => broken(format!("failed: {e}")),
            Ok(json) => serde_json::from_str(json.as_str())
                .unwrap_or_else(|e| broken(format!("returned something that is not a list of problems: {e}"))),
        }
    }

    /// Schema violations as (JSON pointer, message).
    pub fn settings_problems(&self, settings: &serde_json::Value) -> Vec<(String, String)> {
        match self.validator.get_or_init(|| super::schema::compile(self.spec.settings_schema().as_str())) {
            Ok((validator, schema)) => super::schema::problems(validator, schema, settings),
            Err(e) => vec![(String::new(), format!("the plugin's schema {e}"))],
        }
    }
}

#[derive(Default)]
pub struct NodeRegistry {
    entries: Vec<NodeEntry>,
    by_name: HashMap<&'static str, usize>,
    /// Plugin files that were refused, with why: an unknown node type may be theirs.
    refused: Vec<(PathBuf, String)>,
    /// Which refused files mention a name, by name (see `refused_files_mentioning`).
    mentions: std::sync::Mutex<HashMap<String, Vec<usize>>>,
    /// Types a loaded plugin offered but that were left out, with why.
    rejected: HashMap<String, String>,
}

/// Plugin files larger than this are not searched for a type name.
const MAX_SEARCHED_FILE: u64 = 512 * 1024 * 1024;

impl NodeRegistry {
    pub fn register(&mut self, spec: NodeSpecRef, origin: Origin) -> Result<(), RegistryError> {
        let name = spec.type_name().as_str();
        if let Some(&i) = self.by_name.get(name) {
            return Err(RegistryError::Duplicate {
                what: "node type",
                name: name.to_owned(),
                first: Box::new(self.entries[i].origin.clone()),
                second: Box::new(origin),
            });
        }
        self.by_name.insert(name, self.entries.len());
        self.entries.push(NodeEntry::new(spec, origin));
        Ok(())
    }

    pub fn get(&self, type_name: &str) -> Option<&NodeEntry> {
        self.by_name.get(type_name).map(|&i| &self.entries[i])
    }

    /// All entries sorted by type name.
    pub fn sorted(&self) -> Vec<&NodeEntry> {
        let mut all: Vec<_> = self.entries.iter().collect();
        all.sort_by_key(|e| e.type_name());
        all
    }

    /// Remembers a type that was left out (its schema is unusable), so a
    /// workflow using it is told why instead of "unknown node type".
    pub fn note_rejected(&mut self, type_name: &str, reason: String) {
        self.rejected.insert(type_name.to_owned(), reason);
    }

    /// Why `type_name` was left out at load, if it was.
    pub fn rejected(&self, type_name: &str) -> Option<&str> {
        self.rejected.get(type_name).map(String::as_str)
    }

    /// Remembers a plugin file that did not load, so a node type it would
    /// have provided is reported as such instead of as a typo.
    pub fn note_refused(&mut self, path: PathBuf, reason: String) {
        self.refused.push((path, reason));
    }

    /// Refused plugin files whose bytes contain `type_name` (node type names
    /// are string constants in the library), with the reason each was
    /// refused. Only called for unknown types, so the reads happen on the
    /// error path, once per name. Names are packed among other string
    /// constants, so a match cannot be told from a longer name by its
    /// neighbours; the planner prefers a close loaded type ("did you mean").
    pub fn refused_files_mentioning(&self, type_name: &str) -> Vec<&(PathBuf, String)> {
        if self.refused.is_empty() {
            return Vec::new();
        }
        let mentions = |path: &PathBuf| {
            std::fs::metadata(path).is_ok_and(|m| m.len() <= MAX_SEARCHED_FILE)
                && std::fs::read(path).is_ok_and(|bytes| memchr::memmem::find(&bytes, type_name.as_bytes()).is_some())
        };
        let mut cache = self.mentions.lock().unwrap_or_else(|e| e.into_inner());
        let hits = cache
            .entry(type_name.to_owned())
            .or_insert_with(|| (0..self.refused.len()).filter(|&i| mentions(&self.refused[i].0)).collect());
        hits.iter().map(|&i| &self.refused[i]).collect()
    }

    pub fn names(&self) -> Vec<&'static str> {
        self.sorted().into_iter().map(NodeEntry::type_name).collect()
    }
}

/// `spec`'s requirements, with `streaming` added for a type with a stream
/// output (leaked once per registered type that needs it: specs are `'static`).
fn effective_requirements(spec: NodeSpecRef) -> &'static Requirements {
    let declared = spec.requirements();
    let streams = spec.outputs().iter().any(PortSpec::is_stream);
    if !streams || declared.flags.contains(CapabilityFlags::STREAMING) {
        return declared;
    }
    let mut requirements = declared.clone();
    requirements.flags = requirements.flags | CapabilityFlags::STREAMING;
    Box::leak(Box::new(requirements))
}
