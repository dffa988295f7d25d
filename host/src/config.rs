//! `backplane.toml`: where plugins are, which backend instances exist, the default.
//!
//! Passes: TOML text -> spanned document -> [`Config`] (every key checked,
//! all problems reported at once) -> instances created in the
//! [`BackendRegistry`] after each instance's settings pass its factory's schema.
//!
//! ```toml
//! plugin_dirs = ["plugins"]      # relative to this file
//! default_backend = "local"
//!
//! [backends.local]
//! type = "local"                 # the backend factory
//! max_in_flight = 4096           # host-side: tasks submitted at once
//! threads = 4                    # everything else goes to the factory
//! ```

use crate::{
    diagnostic::{Diagnostic, Diagnostics, SourceFile},
    registry::{BackendRegistry, RegistryError, config_problems},
    spanned_toml::{Reader, TableView, span_for_pointer, suggest, to_json},
};
use std::{
    ops::Range,
    path::{Path, PathBuf},
};
use toml::{Spanned, de::DeValue};

/// Keys of `[backends.<name>]` the host reads itself; the rest go to the factory.
const HOST_INSTANCE_KEYS: &[&str] = &["type", "max_in_flight"];

#[derive(Debug, Clone)]
pub struct BackendDecl {
    pub name: String,
    pub span: Range<usize>,
    pub factory: Spanned<String>,
    pub max_in_flight: Option<usize>,
    pub settings: serde_json::Value,
    setting_spans: Vec<(String, Range<usize>)>,
}

#[derive(Debug, Clone, Default)]
pub struct Config {
    /// The file it came from; `None` for the built-in default.
    pub source: Option<SourceFile>,
    pub plugin_dirs: Vec<PathBuf>,
    pub default_backend: Option<Spanned<String>>,
    pub backends: Vec<BackendDecl>,
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

impl Config {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
        Self::parse(SourceFile::new(path, text)).map_err(ConfigError::Invalid)
    }

    pub fn parse(source: SourceFile) -> Result<Self, Diagnostics> {
        let mut r = Reader::new(&source);
        let Some(doc) = r.parse() else { return Err(Diagnostics(r.diagnostics)) };
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
        if let Some(backends) = top.table(&mut r, "backends", "[backends]") {
            for (name, _, value) in backends.entries() {
                let DeValue::Table(table) = value.get_ref() else {
                    r.error(value.span(), format!("`backends.{name}` must be a table"));
                    continue;
                };
                let mut view = TableView::new(table, value.span(), format!("[backends.{name}]"));
                let factory = view.required_string(&mut r, "type");
                let max_in_flight = view.unsigned(&mut r, "max_in_flight").map(|n| n.into_inner() as usize);
                let mut settings = serde_json::Map::new();
                let mut setting_spans = Vec::new();
                for (key, _, item) in view.entries() {
                    if HOST_INSTANCE_KEYS.contains(&key) {
                        continue;
                    }
                    let mut pointer = format!("/{key}");
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
                        settings: serde_json::Value::Object(settings),
                        setting_spans,
                    });
                }
            }
        }
        top.finish(&mut r, &["plugin_dirs", "default_backend", "backends"]);

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
        if r.diagnostics.is_empty() {
            drop(r);
            config.source = Some(source);
            Ok(config)
        } else {
            Err(Diagnostics(r.diagnostics))
        }
    }

    /// Creates every configured instance (or one `local` instance when none is
    /// configured) and sets the default. Problems point into the file.
    pub fn instantiate(&self, registry: &mut BackendRegistry) -> Result<(), ConfigError> {
        if self.backends.is_empty() {
            registry.create("local", "local", serde_json::json!({}), None)?;
            registry.set_default(self.default_backend.as_ref().map_or("local", |d| d.get_ref()));
            return Ok(());
        }
        let mut diagnostics = Vec::new();
        let locate = |span: Range<usize>, message: String| -> Diagnostic {
            match &self.source {
                Some(source) => source.diagnostic(span, message),
                None => Diagnostic { file: "<built-in config>".into(), line: 0, column: 0, message, help: None },
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
                d.help = Some(match suggest(factory_name, &known) {
                    Some(near) => format!("did you mean `{near}`? loaded backend types: {}", known.join(", ")),
                    None => format!("loaded backend types: {} (is the plugin on the plugin path?)", known.join(", ")),
                });
                diagnostics.push(d);
                continue;
            };
            let problems = config_problems(entry, &decl.settings);
            if !problems.is_empty() {
                for (pointer, message) in problems {
                    let span = span_for_pointer(&decl.setting_spans, &pointer, decl.span.clone());
                    diagnostics.push(locate(span, format!("backend instance `{}`: {message}", decl.name)));
                }
                continue;
            }
            if let Err(e) = registry.create(&decl.name, factory_name, decl.settings.clone(), decl.max_in_flight) {
                diagnostics.push(locate(decl.span.clone(), e.to_string()));
            }
        }
        if !diagnostics.is_empty() {
            return Err(ConfigError::Invalid(Diagnostics(diagnostics)));
        }
        if let Some(default) = &self.default_backend {
            registry.set_default(default.get_ref());
        }
        Ok(())
    }
}
