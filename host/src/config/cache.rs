//! `[cache]`: the result cache's settings.

use crate::spanned_toml::{Reader, TableView};
use std::path::PathBuf;

/// `[cache]`: where results are kept and what makes keys differ.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheConfig {
    /// `enabled = false` turns the cache off for every run.
    pub enabled: bool,
    /// `dir`, relative to the config file; default `.backplane/cache`
    /// beside the workflow.
    pub dir: Option<PathBuf>,
    /// `salt`: part of every key, so changing it invalidates everything
    /// (a new toolchain, data outside the workflow's view).
    pub salt: String,
    /// `required = true`: a cache that cannot be used fails the run
    /// instead of running without it.
    pub required: bool,
    /// `[cache.shared]`: a second tier on NATS JetStream.
    pub shared: Option<SharedCacheConfig>,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self { enabled: true, dir: None, salt: String::new(), required: false, shared: None }
    }
}

/// `[cache.shared]`: the NATS servers (the worker backend's, typically), the
/// bucket, and credentials in the worker backend's terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedCacheConfig {
    pub servers: Vec<String>,
    /// Names the key-value bucket of records and the object store of blobs.
    pub bucket: String,
    /// `user`, `password`, `token`, `creds_file`, `tls_*`, `require_tls`,
    /// `insecure`, as JSON for the binary's NATS client.
    pub auth: serde_json::Value,
}

const AUTH_STRINGS: &[&str] = &["user", "password", "token", "creds_file", "tls_ca", "tls_cert", "tls_key"];
const AUTH_FLAGS: &[&str] = &["require_tls", "insecure"];

fn parse_shared(r: &mut Reader<'_>, mut view: TableView<'_, '_>, base: &std::path::Path) -> Option<SharedCacheConfig> {
    let mut servers = Vec::new();
    let span = view.get("nats").map(|v| v.span());
    match view.get("nats").map(|v| v.get_ref()) {
        Some(toml::de::DeValue::String(s)) => servers.push(s.to_string()),
        Some(toml::de::DeValue::Array(items)) => {
            for item in items {
                match item.get_ref() {
                    toml::de::DeValue::String(s) => servers.push(s.to_string()),
                    _ => r.error(item.span(), "`nats` servers must be strings such as \"nats://host:4222\""),
                }
            }
        }
        Some(_) => r.error(span.clone().unwrap_or_default(), "`nats` must be a server address or a list of them"),
        None => r.error_help(
            view.span.clone(),
            "[cache.shared] has no `nats`",
            "name the NATS servers, e.g. nats = \"nats://127.0.0.1:4222\"",
        ),
    }
    let bucket = match view.string(r, "bucket") {
        Some(name)
            if name.get_ref().is_empty()
                || !name.get_ref().chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') =>
        {
            r.error(name.span(), format!("bucket `{}` must be letters, digits, `-` and `_`", name.get_ref()));
            name.into_inner()
        }
        Some(name) => name.into_inner(),
        None => "backplane-cache".to_owned(),
    };
    let mut auth = serde_json::Map::new();
    for key in AUTH_STRINGS {
        if let Some(value) = view.string(r, key) {
            let value = value.into_inner();
            // Files are relative to the config, as `dir` is.
            let value = if key.ends_with("_file") || key.starts_with("tls_") {
                base.join(&value).to_string_lossy().into_owned()
            } else {
                value
            };
            auth.insert((*key).to_owned(), serde_json::Value::String(value));
        }
    }
    for key in AUTH_FLAGS {
        if let Some(value) = view.boolean(r, key) {
            auth.insert((*key).to_owned(), serde_json::Value::Bool(value.into_inner()));
        }
    }
    let known: Vec<&str> = ["nats", "bucket"].iter().chain(AUTH_STRINGS).chain(AUTH_FLAGS).copied().collect();
    view.finish(r, &known);
    (!servers.is_empty()).then_some(SharedCacheConfig { servers, bucket, auth: serde_json::Value::Object(auth) })
}

/// Reads `[cache]`; `base` is the config file's directory.
pub fn parse(r: &mut Reader<'_>, mut view: TableView<'_, '_>, base: &std::path::Path) -> CacheConfig {
    let mut config = CacheConfig::default();
    if let Some(enabled) = view.boolean(r, "enabled") {
        config.enabled = enabled.into_inner();
    }
    if let Some(dir) = view.string(r, "dir") {
        if dir.get_ref().is_empty() {
            r.error_help(
                dir.span(),
                "`dir` is empty",
                "name a directory, or remove the key for `.backplane/cache` beside the workflow",
            );
        } else {
            config.dir = Some(base.join(dir.get_ref()));
        }
    }
    if let Some(salt) = view.string(r, "salt") {
        config.salt = salt.into_inner();
    }
    if let Some(required) = view.boolean(r, "required") {
        config.required = required.into_inner();
    }
    if let Some(shared) = view.table(r, "shared", "[cache.shared]") {
        config.shared = parse_shared(r, shared, base);
    }
    view.finish(r, &["enabled", "dir", "salt", "required", "shared"]);
    config
}
