//! Backend factories and the named instances created from them.

use super::{Origin, RegistryError, matching::unmet_requirements};
use backplane_plugin_api::{BackendBox, BackendFactoryRef, Capabilities, CapabilityFlags, Requirements, Resources};
use std::sync::Arc;

pub struct FactoryEntry {
    pub factory: BackendFactoryRef,
    pub origin: Origin,
}

impl FactoryEntry {
    pub fn name(&self) -> &'static str {
        self.factory.name().as_str()
    }
}

/// What an instance is created from.
#[derive(Debug, Clone)]
pub struct InstanceSettings {
    pub name: String,
    pub factory: String,
    /// The factory's own settings.
    pub config: serde_json::Value,
    /// Tasks the engine keeps submitted to the instance at once.
    pub max_in_flight: Option<usize>,
    /// Tags the operator adds to what the backend reports.
    pub tags: Vec<String>,
    /// What the operator declares the instance offers in total; each
    /// resource stated (non-zero) replaces what the backend reports.
    pub capacity: Resources,
    /// For instances derived by a route's `backend_options`: the instance they
    /// were derived from.
    pub derived_from: Option<String>,
}

/// A configured, running backend. Immutable once created: different options
/// mean a different instance.
pub struct BackendInstance {
    /// The instance name from the config (`[backends.<name>]`).
    pub name: String,
    /// The factory (`type`) it was created from.
    pub factory: String,
    pub config: serde_json::Value,
    /// Tasks the engine keeps submitted to this instance at once.
    pub max_in_flight: usize,
    pub tags: Vec<String>,
    /// What the operator declared (see [`InstanceSettings::capacity`]).
    pub capacity: Resources,
    pub derived_from: Option<String>,
    pub backend: BackendBox,
    /// Its plugin was built against plugin-api 1.3 or later (see [`Origin::can_stream`]).
    pub can_stream: bool,
}

impl BackendInstance {
    /// The backend's live capabilities plus the operator's tags, with the
    /// resources the operator declared in place of the reported ones.
    pub fn capabilities(&self) -> Capabilities {
        let mut capabilities = self.backend.capabilities();
        if !self.can_stream {
            capabilities.flags = CapabilityFlags(capabilities.flags.0 & !CapabilityFlags::STREAMING.0);
        }
        for tag in &self.tags {
            if !capabilities.tags.iter().any(|t| t == tag.as_str()) {
                capabilities.tags.push(tag.as_str().into());
            }
        }
        let (offered, declared) = (&mut capabilities.capacity, &self.capacity);
        if declared.cpus > 0.0 {
            offered.cpus = declared.cpus;
        }
        if declared.memory_bytes > 0 {
            offered.memory_bytes = declared.memory_bytes;
        }
        if declared.gpus > 0.0 {
            offered.gpus = declared.gpus;
        }
        for custom in declared.custom.iter() {
            match offered.custom.iter_mut().find(|c| c.0 == custom.0) {
                Some(reported) => reported.1 = custom.1,
                None => offered.custom.push(custom.clone()),
            }
        }
        capabilities
    }
}

impl Drop for BackendInstance {
    fn drop(&mut self) {
        self.backend.shutdown();
    }
}

#[derive(Default)]
pub struct BackendRegistry {
    factories: Vec<FactoryEntry>,
    instances: Vec<Arc<BackendInstance>>,
    default: Option<String>,
    /// Types a loaded plugin offered but that were left out, with why.
    rejected: Vec<(String, String)>,
}

/// Default in-flight limit per instance: enough to keep a thread pool busy
/// without holding every ready node's task at once.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 4096;

impl BackendRegistry {
    /// Adds a factory from a plugin or from Rust code
    /// (`backplane_plugin_api::backend_factory::<MyBackend>()`).
    pub fn register_factory(&mut self, factory: BackendFactoryRef, origin: Origin) -> Result<(), RegistryError> {
        let name = factory.name().as_str();
        if let Some(existing) = self.factory(name) {
            return Err(RegistryError::Duplicate {
                what: "backend type",
                name: name.to_owned(),
                first: Box::new(existing.origin.clone()),
                second: Box::new(origin),
            });
        }
        self.factories.push(FactoryEntry { factory, origin });
        Ok(())
    }

    /// Remembers a backend type that was left out (its schema is unusable),
    /// so a config using it is told why instead of "unknown type".
    pub fn note_rejected(&mut self, name: &str, reason: String) {
        self.rejected.push((name.to_owned(), reason));
    }

    /// Why backend type `name` was left out at load, if it was.
    pub fn rejected(&self, name: &str) -> Option<&str> {
        self.rejected.iter().find(|(n, _)| n == name).map(|(_, why)| why.as_str())
    }

    pub fn factory(&self, name: &str) -> Option<&FactoryEntry> {
        self.factories.iter().find(|f| f.name() == name)
    }

    pub fn list_available(&self) -> &[FactoryEntry] {
        &self.factories
    }

    /// Creates and registers the instance `instance` of backend type `factory`
    /// after checking `config` against the factory's schema.
    pub fn create(
        &mut self,
        instance: &str,
        factory: &str,
        config: serde_json::Value,
        max_in_flight: Option<usize>,
    ) -> Result<Arc<BackendInstance>, RegistryError> {
        self.create_instance(InstanceSettings {
            name: instance.into(),
            factory: factory.into(),
            config,
            max_in_flight,
            tags: Vec::new(),
            capacity: Resources::default(),
            derived_from: None,
        })
    }

    /// Creates and registers an instance.
    pub fn create_instance(&mut self, settings: InstanceSettings) -> Result<Arc<BackendInstance>, RegistryError> {
        if self.instance(&settings.name).is_some() {
            return Err(RegistryError::DuplicateInstance(settings.name));
        }
        let created = self.create_detached(settings)?;
        self.instances.push(created.clone());
        Ok(created)
    }

    /// Creates an instance without registering it (route-derived instances
    /// live in the plan that needs them).
    pub fn create_detached(&self, settings: InstanceSettings) -> Result<Arc<BackendInstance>, RegistryError> {
        let InstanceSettings { name: instance, factory, config, max_in_flight, tags, capacity, derived_from } =
            settings;
        let (instance, factory) = (instance.as_str(), factory.as_str());
        let entry = self.factory(factory).ok_or_else(|| RegistryError::UnknownFactory {
            name: factory.to_owned(),
            known: self.factories.iter().map(|f| f.name().to_owned()).collect(),
        })?;
        let problems: Vec<String> = config_problems(entry, &config)
            .into_iter()
            .map(|(at, msg)| if at.is_empty() { msg } else { format!("{at}: {msg}") })
            .collect();
        if !problems.is_empty() {
            return Err(RegistryError::InvalidConfig { instance: instance.into(), factory: factory.into(), problems });
        }
        let backend = (entry.factory.create())(config.to_string().as_str().into()).into_result().map_err(|e| {
            RegistryError::CreateFailed { instance: instance.into(), factory: factory.into(), message: e.to_string() }
        })?;
        Ok(Arc::new(BackendInstance {
            name: instance.to_owned(),
            factory: factory.to_owned(),
            config,
            max_in_flight: max_in_flight.unwrap_or(DEFAULT_MAX_IN_FLIGHT).max(1),
            tags,
            capacity,
            derived_from,
            backend,
            can_stream: entry.origin.can_stream(),
        }))
    }

    pub fn instances(&self) -> &[Arc<BackendInstance>] {
        &self.instances
    }

    pub fn instance(&self, name: &str) -> Option<&Arc<BackendInstance>> {
        self.instances.iter().find(|i| i.name == name)
    }

    pub fn set_default(&mut self, instance: &str) {
        self.default = Some(instance.to_owned());
    }

    /// The default instance: the configured one, else the first created.
    pub fn default_instance(&self) -> Option<&Arc<BackendInstance>> {
        match &self.default {
            Some(name) => self.instance(name),
            None => self.instances.first(),
        }
    }

    /// Every instance with what it lacks for the node (empty = can run it),
    /// in creation (config) order.
    pub fn find(
        &self,
        requirements: &Requirements,
        resources: &Resources,
    ) -> Vec<(&Arc<BackendInstance>, Vec<String>)> {
        self.instances.iter().map(|i| (i, unmet_requirements(&i.capabilities(), requirements, resources))).collect()
    }
}

/// Schema violations of a backend instance's config as (JSON pointer, message).
pub fn config_problems(entry: &FactoryEntry, config: &serde_json::Value) -> Vec<(String, String)> {
    match super::schema::compile(entry.factory.config_schema().as_str()) {
        Ok((validator, schema)) => super::schema::problems(&validator, &schema, config),
        Err(e) => vec![(String::new(), format!("the plugin's schema {e}"))],
    }
}
