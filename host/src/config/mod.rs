//! `backplane.toml`: where plugins are, which backend instances exist, the
//! default, and routing rules.
//!
//! Passes: TOML text -> spanned document -> [`Config`] (every key checked,
//! all problems reported at once) -> environment overrides ([`env`]) ->
//! instances created in the [`BackendRegistry`] after each instance's
//! settings pass its factory's schema. Routing rules ([`routes`]) are used by
//! the planner.
//!
//! ```toml
//! plugin_dirs = ["plugins"]      # relative to this file
//! default_backend = "local"
//! allow_outside_workflow_dir = false  # may relative output paths climb out with `..`?
//!
//! [backends.local]
//! type = "local"                 # the backend factory
//! max_in_flight = 4096           # host-side: tasks submitted at once
//! tags = ["ssd"]                 # host-side: tags the operator adds to the instance
//! capacity = { memory = "8GiB" }  # host-side: what it offers in total, replacing what it reports
//! threads = 4                    # everything else goes to the factory
//!
//! [[route]]
//! match = { type = "std.shell" }
//! backend = "local"
//! ```

pub mod cache;
mod discovery;
pub mod env;
pub mod routes;

pub use discovery::{CONFIG_FILE_NAME, ConfigOrigin, ConfigSearch};

pub use crate::policy::RunPolicy;

pub use routes::RouteRule;

use crate::{
    diagnostic::{DEFAULT_MAX_FILE_BYTES, Diagnostic, Diagnostics, SourceFile},
    registry::InstanceSettings,
    registry::{BackendRegistry, RegistryError, config_problems},
    spanned_toml::{Reader, TableView, pointer_index, span_for_pointer, suggest, to_json},
};
use backplane_plugin_api::Resources;
pub use cache::CacheConfig;
use std::{
    ops::Range,
    path::{Path, PathBuf},
};
use toml::{Spanned, de::DeValue};

/// Most tasks one instance may have submitted at once.
const MAX_IN_FLIGHT: u64 = 10_000_000;

/// Keys of `[backends.<name>]` the host reads itself; the rest go to the factory.
const HOST_INSTANCE_KEYS: &[&str] = &["type", "max_in_flight", "tags", "capacity"];

#[derive(Debug, Clone)]
pub struct BackendDecl {
    pub name: String,
    pub span: Range<usize>,
    pub factory: Spanned<String>,
    pub max_in_flight: Option<usize>,
    /// Tags the operator adds to what the backend reports.
    pub tags: Vec<String>,
    /// What the operator declares the instance offers in total (each resource
    /// stated replaces what the backend reports).
    pub capacity: Resources,
    pub settings: serde_json::Value,
    setting_spans: Vec<(String, Range<usize>)>,
    /// Settings set from the environment: (top-level key, variable name).
    env_overrides: Vec<(String, String)>,
}

#[derive(Debug, Clone, Default)]
pub struct Config {
    /// The file it came from; `None` for the built-in default.
    pub source: Option<SourceFile>,
    /// Why that file (see [`ConfigSearch`]).
    pub origin: ConfigOrigin,
    pub plugin_dirs: Vec<PathBuf>,
    pub default_backend: Option<Spanned<String>>,
    default_from_env: bool,
    pub backends: Vec<BackendDecl>,
    pub routes: Vec<RouteRule>,
    /// `[policy]`: how runs react to failures and interrupts.
    pub policy: RunPolicy,
    /// Relative output and `std.write_file` paths may leave the workflow's
    /// directory with `..` (absolute paths always may).
    pub allow_outside_workflow_dir: bool,
    /// `[cache]`: the result cache.
    pub cache: CacheConfig,
    /// Problems found while reading, reported together with the ones
    /// [`Config::instantiate`] finds (so a user sees them all at once).
    deferred: Vec<Diagnostic>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {}: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{0}")]
    Invalid(Diagnostics),
    #[error("{0}")]
    Registry(#[from] RegistryError),
}

/// For a key the backend's schema does not know: the closest key it or the
/// host knows, and both lists (the host reads `type`, `tags`... itself).
fn unknown_setting_help(entry: &backplane_loader::registry::FactoryEntry, key: &str) -> Option<String> {
    let schema: serde_json::Value = serde_json::from_str(entry.factory.config_schema().as_str()).ok()?;
    let properties = schema.get("properties").and_then(|p| p.as_object());
    let known: Vec<&str> = properties.map(|p| p.keys().map(String::as_str).collect()).unwrap_or_default();
    if known.contains(&key) || HOST_INSTANCE_KEYS.contains(&key) {
        return None;
    }
    let all: Vec<&str> = known.iter().chain(HOST_INSTANCE_KEYS).copied().collect();
    let lists = format!(
        "settings of `{}`: {}; keys of every instance: {}",
        entry.name(),
        if known.is_empty() { "none".to_owned() } else { known.join(", ") },
        HOST_INSTANCE_KEYS.join(", ")
    );
    Some(match suggest(key, &all) {
        Some(near) => format!("did you mean `{near}`? {lists}"),
        None => lists,
    })
}

fn read_source(path: &Path, max_bytes: u64) -> Result<SourceFile, ConfigError> {
    crate::diagnostic::read_source(
        path,
        max_bytes,
        |path, source| ConfigError::Read { path, source },
        ConfigError::Invalid,
    )
}

impl Config {
    /// Reads and checks a config file, failing on any problem.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        Self::parse(read_source(path, DEFAULT_MAX_FILE_BYTES)?).map_err(ConfigError::Invalid)
    }

    /// Checks a config, failing on any problem.
    pub fn parse(source: SourceFile) -> Result<Self, Diagnostics> {
        let mut config = Self::parse_lenient(source);
        match std::mem::take(&mut config.deferred) {
            problems if problems.is_empty() => Ok(config),
            problems => Err(Diagnostics::sorted(problems)),
        }
    }

    /// The config as far as it could be read, with its problems deferred to
    /// [`Config::check`] or [`Config::instantiate`].
    pub fn parse_lenient(source: SourceFile) -> Self {
        let mut r = Reader::new(&source);
        let Some(doc) = r.parse() else {
            let deferred = std::mem::take(&mut r.diagnostics);
            drop(r);
            return Self { source: Some(source), deferred, ..Self::default() };
        };
        let base = source.path.parent().map(Path::to_path_buf).unwrap_or_default();
        let mut top = TableView::new(doc.get_ref(), doc.span(), "the config");
        let mut config = Config::default();

        if let Some(dirs) = top.array(&mut r, "plugin_dirs") {
            for dir in dirs.iter() {
                match dir.get_ref() {
                    DeValue::String(s) => config.plugin_dirs.push(base.join(s.as_ref())),
                    _ => r.error(dir.span(), "`plugin_dirs` entries must be strings (directories)"),
                }
            }
        }
        config.default_backend = top.string(&mut r, "default_backend");
        if let Some(allow) = top.boolean(&mut r, "allow_outside_workflow_dir") {
            config.allow_outside_workflow_dir = allow.into_inner();
        }
        if let Some(backends) = top.table(&mut r, "backends", "[backends]") {
            for (name, _, value) in backends.entries() {
                let DeValue::Table(table) = value.get_ref() else {
                    r.error(value.span(), format!("`backends.{name}` must be a table"));
                    continue;
                };
                let mut view = TableView::new(table, value.span(), format!("[backends.{name}]"));
                let factory = view.required_string(&mut r, "type");
                let max_in_flight = match view.unsigned(&mut r, "max_in_flight") {
                    Some(n) if *n.get_ref() == 0 || *n.get_ref() > MAX_IN_FLIGHT => {
                        r.error(n.span(), format!("`max_in_flight` must be from 1 to {MAX_IN_FLIGHT}"));
                        None
                    }
                    n => n.map(|n| n.into_inner() as usize),
                };
                let mut tags = Vec::new();
                if let Some(list) = view.array(&mut r, "tags") {
                    for tag in list.iter() {
                        match tag.get_ref() {
                            DeValue::String(t) => tags.push(t.to_string()),
                            _ => r.error(tag.span(), "`tags` must be strings"),
                        }
                    }
                }
                let capacity = match view.table(&mut r, "capacity", format!("the capacity of [backends.{name}]")) {
                    Some(table) => crate::workflow::parse_resources(&mut r, table, &crate::workflow::Params::default()),
                    None => Resources::default(),
                };
                let mut settings = serde_json::Map::new();
                let mut setting_spans = Vec::new();
                for (key, _, item) in view.entries() {
                    if HOST_INSTANCE_KEYS.contains(&key) {
                        continue;
                    }
                    let mut pointer = String::new();
                    crate::spanned_toml::push_pointer_key(&mut pointer, key);
                    match to_json(item, &mut pointer, &mut setting_spans) {
                        Ok(json) => {
                            settings.insert(key.to_owned(), json);
                        }
                        Err((span, message)) => r.error(span, message),
                    }
                }
                if let Some(factory) = factory {
                    config.backends.push(BackendDecl {
                        name: name.to_owned(),
                        span: value.span(),
                        factory,
                        max_in_flight,
                        tags,
                        capacity,
                        settings: serde_json::Value::Object(settings),
                        setting_spans,
                        env_overrides: Vec::new(),
                    });
                }
            }
        }
        if let Some(policy) = top.table(&mut r, "policy", "[policy]") {
            config.policy = crate::policy::parse_policy(&mut r, policy);
        }
        if let Some(cache) = top.table(&mut r, "cache", "[cache]") {
            config.cache = cache::parse(&mut r, cache, &base);
        }
        if let Some(rules) = top.array(&mut r, "route") {
            for (i, item) in rules.iter().enumerate() {
                match item.get_ref() {
                    DeValue::Table(t) => {
                        let view = TableView::new(t, item.span(), format!("route #{}", i + 1));
                        if let Some(rule) = routes::parse_rule(&mut r, view, i + 1) {
                            config.routes.push(rule);
                        }
                    }
                    _ => r.error(item.span(), "each `route` entry must be a table ([[route]])"),
                }
            }
        }
        top.finish(
            &mut r,
            &["plugin_dirs", "default_backend", "allow_outside_workflow_dir", "backends", "route", "policy", "cache"],
        );

        // Without [backends.*] tables the only instance is the implicit `local`.
        let names: Vec<&str> = if config.backends.is_empty() {
            vec!["local"]
        } else {
            config.backends.iter().map(|b| b.name.as_str()).collect()
        };
        for rule in &config.routes {
            if let Some(backend) = &rule.backend
                && !names.contains(&backend.get_ref().as_str())
            {
                let help = match suggest(backend.get_ref(), &names) {
                    Some(near) => format!("did you mean `{near}`? configured instances: {}", names.join(", ")),
                    None => format!("configured instances: {}", names.join(", ")),
                };
                r.error_help(
                    backend.span(),
                    format!(
                        "route #{} sends nodes to `{}`, which is not a configured backend instance",
                        rule.number,
                        backend.get_ref()
                    ),
                    help,
                );
            }
        }

        if let Some(default) = &config.default_backend
            && !config.backends.is_empty()
            && !config.backends.iter().any(|b| b.name == *default.get_ref())
        {
            let names: Vec<&str> = config.backends.iter().map(|b| b.name.as_str()).collect();
            r.error_help(
                default.span(),
                format!("`default_backend` names `{}`, which is not a configured backend instance", default.get_ref()),
                format!("configured instances: {}", names.join(", ")),
            );
        }
        config.deferred = std::mem::take(&mut r.diagnostics);
        drop(r);
        config.source = Some(source);
        config
    }

    /// The file `search` finds (see [`ConfigSearch`]), else the built-in
    /// default; then environment overrides. Only an unreadable file fails
    /// here; other problems wait for [`Config::check`] or [`Config::instantiate`].
    pub fn discover(search: &ConfigSearch, max_bytes: u64) -> Result<Self, ConfigError> {
        let mut config = match search.find() {
            Some((path, origin)) => Self { origin, ..Self::parse_lenient(read_source(&path, max_bytes)?) },
            None => Self::default(),
        };
        if let Err(problems) = config.apply_env(std::env::vars()) {
            config.deferred.extend(problems);
        }
        Ok(config)
    }

    /// Route rules' `backend_options` that the instance they would derive
    /// from cannot take, found once at load time (not once per matching
    /// node, nor never when no node matches). A rule that names its
    /// `backend` is checked against that instance; one that does not, against
    /// every configured instance, and is a problem only if none takes them.
    fn backend_options_problems(
        &self,
        registry: &BackendRegistry,
        locate: &dyn Fn(Range<usize>, String) -> Diagnostic,
    ) -> Vec<Diagnostic> {
        let mut found = Vec::new();
        for rule in &self.routes {
            let Some(options) = rule.backend_options.as_ref().and_then(|o| o.as_object()) else { continue };
            let named = rule.backend.as_ref().map(|b| b.get_ref());
            let candidates: Vec<&BackendDecl> =
                self.backends.iter().filter(|d| named.is_none_or(|n| *n == d.name)).collect();
            let mut problems = Vec::new();
            for decl in &candidates {
                let Some(entry) = registry.factory(decl.factory.get_ref()) else { continue };
                let mut merged = decl.settings.clone();
                if let Some(merged) = merged.as_object_mut() {
                    merged.extend(options.iter().map(|(k, v)| (k.clone(), v.clone())));
                }
                // Only what the options brought: the instance's own settings are checked above.
                let mine: Vec<(String, String)> = config_problems(entry, &merged)
                    .into_iter()
                    .filter(|(pointer, _)| options.contains_key(&crate::spanned_toml::pointer_top_key(pointer)))
                    .collect();
                if mine.is_empty() {
                    problems.clear();
                    break; // an instance takes them
                }
                problems.extend(mine.into_iter().map(|p| (decl, entry, p)));
            }
            let index = pointer_index(&rule.backend_options_spans);
            for (decl, entry, (pointer, message)) in problems {
                let span = span_for_pointer(&index, &pointer, rule.span.clone());
                let mut d = locate(
                    span,
                    format!(
                        "`backend_options` of route #{} for `{}` ({}): {message}",
                        rule.number,
                        decl.name,
                        entry.name()
                    ),
                );
                let key = crate::spanned_toml::pointer_top_key(&pointer);
                d.help = unknown_setting_help(entry, &key).or_else(|| {
                    Some(
                        "these settings derive an instance from the one the rule routes to; fix them or drop them"
                            .into(),
                    )
                });
                found.push(d);
            }
        }
        found
    }

    /// Fails with every problem found while reading.
    pub fn check(&self) -> Result<(), ConfigError> {
        if self.deferred.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid(Diagnostics::sorted(self.deferred.clone())))
        }
    }

    /// Where an error about this config points when no file span applies.
    fn describe_source(&self) -> String {
        self.source.as_ref().map_or_else(|| "the built-in config".into(), |s| s.path.display().to_string())
    }

    /// Creates every configured instance (or one `local` instance when none is
    /// configured) and sets the default. Problems point into the file.
    pub fn instantiate(&self, registry: &mut BackendRegistry) -> Result<(), ConfigError> {
        if self.backends.is_empty() {
            self.check()?;
            if let Some(default) = self.default_backend.as_ref().filter(|d| d.get_ref() != "local") {
                return Err(ConfigError::Invalid(Diagnostics::sorted(vec![
                    Diagnostic::unlocated(
                        self.describe_source(),
                        format!("the default backend `{}` is not configured", default.get_ref()),
                    )
                    .with_help("without [backends.*] tables the only instance is `local`"),
                ])));
            }
            registry.create("local", "local", serde_json::json!({}), None)?;
            registry.set_default(self.default_backend.as_ref().map_or("local", |d| d.get_ref()));
            return Ok(());
        }
        let mut diagnostics = self.deferred.clone();
        let locate = |span: Range<usize>, message: String| -> Diagnostic {
            match &self.source {
                Some(source) => source.diagnostic(span, message),
                None => Diagnostic::unlocated(self.describe_source(), message),
            }
        };
        for decl in &self.backends {
            let factory_name = decl.factory.get_ref();
            let Some(entry) = registry.factory(factory_name) else {
                let known: Vec<&str> = registry.list_available().iter().map(|f| f.name()).collect();
                let mut d = locate(
                    decl.factory.span(),
                    format!("backend instance `{}` has unknown type `{factory_name}`", decl.name),
                );
                d.help = Some(match (registry.rejected(factory_name), suggest(factory_name, &known)) {
                    (Some(why), _) => format!("{why}; `backplane plugins` shows the whole reason"),
                    (None, Some(near)) => format!("did you mean `{near}`? loaded backend types: {}", known.join(", ")),
                    (None, None) => {
                        format!("loaded backend types: {} (is the plugin on the plugin path?)", known.join(", "))
                    }
                });
                diagnostics.push(d);
                continue;
            };
            let problems = config_problems(entry, &decl.settings);
            if !problems.is_empty() {
                let index = pointer_index(&decl.setting_spans);
                for (pointer, message) in problems {
                    let key = crate::spanned_toml::pointer_top_key(&pointer);
                    let message = format!("backend instance `{}`: {message}", decl.name);
                    // A value from the environment is the variable's problem, not the file's.
                    let mut d = match decl.env_overrides.iter().find(|(k, _)| *k == key) {
                        Some((_, var)) => Diagnostic::unlocated(format!("environment variable {var}"), message)
                            .with_help("fix its value, or unset it to keep the config file's"),
                        None => locate(span_for_pointer(&index, &pointer, decl.span.clone()), message),
                    };
                    if d.help.is_none() && !key.is_empty() && pointer.matches('/').count() == 1 {
                        d.help = unknown_setting_help(entry, &key);
                    }
                    diagnostics.push(d);
                }
                continue;
            }
            let settings = InstanceSettings {
                name: decl.name.clone(),
                factory: factory_name.clone(),
                config: decl.settings.clone(),
                max_in_flight: decl.max_in_flight,
                tags: decl.tags.clone(),
                capacity: decl.capacity.clone(),
                derived_from: None,
            };
            if let Err(e) = registry.create_instance(settings) {
                diagnostics.push(locate(decl.span.clone(), e.to_string()));
            }
        }
        diagnostics.extend(self.backend_options_problems(registry, &locate));
        if let Some(default) = &self.default_backend
            && self.default_from_env
            && registry.instance(default.get_ref()).is_none()
        {
            diagnostics.push(
                Diagnostic::unlocated(
                    "environment variable BACKPLANE_DEFAULT_BACKEND",
                    format!("`{}` is not a configured backend instance", default.get_ref()),
                )
                .with_help(format!(
                    "configured instances: {}",
                    self.backends.iter().map(|b| b.name.as_str()).collect::<Vec<_>>().join(", ")
                )),
            );
        }
        if !diagnostics.is_empty() {
            return Err(ConfigError::Invalid(Diagnostics::sorted(diagnostics)));
        }
        if let Some(default) = &self.default_backend {
            registry.set_default(default.get_ref());
        }
        Ok(())
    }
}
