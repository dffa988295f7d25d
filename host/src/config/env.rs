//! Where the config file is, and `BACKPLANE_*` environment overrides.
//!
//! - `BACKPLANE_CONFIG`: the config file (also `--config`).
//! - `BACKPLANE_DEFAULT_BACKEND`: replaces `default_backend`.
//! - `BACKPLANE_PLUGIN_PATH`: extra plugin directories (read by the loader).
//! - `BACKPLANE_BACKENDS__<INSTANCE>__<KEY>=<value>`: sets one setting of a
//!   configured instance. `<INSTANCE>` and `<KEY>` match case-insensitively,
//!   with `_` standing for `-`; `<value>` is read as a TOML value (`8`,
//!   `true`, `["a", "b"]`) and as a plain string when it is not one.

use super::Config;
use crate::diagnostic::Diagnostic;
use std::path::PathBuf;
use toml::de::DeValue;

pub const CONFIG_ENV: &str = "BACKPLANE_CONFIG";
pub const DEFAULT_BACKEND_ENV: &str = "BACKPLANE_DEFAULT_BACKEND";
const INSTANCE_PREFIX: &str = "BACKPLANE_BACKENDS__";

/// The config file to use when neither `--config` nor `BACKPLANE_CONFIG`
/// names one: `$XDG_CONFIG_HOME/backplane/backplane.toml` (or
/// `~/.config/backplane/backplane.toml`) when it exists.
pub fn default_config_path() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".config")))?;
    let path = base.join("backplane/backplane.toml");
    path.is_file().then_some(path)
}

fn normalize(name: &str) -> String {
    name.to_ascii_lowercase().replace('-', "_")
}

fn parse_value(text: &str) -> serde_json::Value {
    let doc = format!("v = {text}");
    if let Ok(table) = toml::de::DeTable::parse(&doc)
        && let Some(value) = table.get_ref().get("v")
        && !matches!(value.get_ref(), DeValue::Table(_))
        && let Ok(json) = crate::spanned_toml::to_json(value, &mut String::new(), &mut Vec::new())
    {
        return json;
    }
    serde_json::Value::String(text.to_owned())
}

fn env_diagnostic(variable: &str, message: String, help: String) -> Diagnostic {
    Diagnostic::unlocated(format!("environment variable {variable}"), message).with_help(help)
}

impl Config {
    /// Applies overrides from `vars` (normally `std::env::vars()`).
    pub fn apply_env(&mut self, vars: impl IntoIterator<Item = (String, String)>) -> Result<(), Vec<Diagnostic>> {
        let mut problems = Vec::new();
        for (name, value) in vars {
            if name == DEFAULT_BACKEND_ENV {
                self.default_backend = Some(toml::Spanned::new(0..0, value));
                self.default_from_env = true;
                continue;
            }
            let Some(rest) = name.strip_prefix(INSTANCE_PREFIX) else { continue };
            let Some((instance, key)) = rest.split_once("__").filter(|(i, k)| !i.is_empty() && !k.is_empty()) else {
                problems.push(env_diagnostic(
                    &name,
                    "malformed backend override".into(),
                    format!("write {INSTANCE_PREFIX}<INSTANCE>__<SETTING>=<value>"),
                ));
                continue;
            };
            let Some(decl) = self.backends.iter_mut().find(|b| normalize(&b.name) == normalize(instance)) else {
                let names: Vec<&str> = self.backends.iter().map(|b| b.name.as_str()).collect();
                problems.push(env_diagnostic(
                    &name,
                    format!("no backend instance matches `{instance}`"),
                    format!("configured instances: {}", names.join(", ")),
                ));
                continue;
            };
            let key = key.to_ascii_lowercase();
            let value = parse_value(&value);
            match key.as_str() {
                "type" => problems.push(env_diagnostic(
                    &name,
                    "the type of an instance cannot be overridden".into(),
                    "define another instance in the config file instead".into(),
                )),
                "tags" => match value.as_array().map(|a| a.iter().map(|t| t.as_str().map(str::to_owned)).collect()) {
                    Some(Some(tags)) => decl.tags = tags,
                    _ => problems.push(env_diagnostic(
                        &name,
                        "`tags` must be an array of strings".into(),
                        "e.g. '[\"gpu\", \"cuda12\"]'".into(),
                    )),
                },
                "capacity" => problems.push(env_diagnostic(
                    &name,
                    "an instance's `capacity` cannot be set from the environment".into(),
                    "set `capacity = { ... }` in the instance's table of the config file".into(),
                )),
                "max_in_flight" => match value.as_u64() {
                    Some(n) if n > 0 => decl.max_in_flight = Some(n as usize),
                    _ => problems.push(env_diagnostic(
                        &name,
                        "`max_in_flight` must be a positive integer".into(),
                        "e.g. 1024".into(),
                    )),
                },
                _ => {
                    // Settings keys are matched as written, with `_` for `-`.
                    let existing = decl
                        .settings
                        .as_object()
                        .and_then(|o| o.keys().find(|k| normalize(k) == key).cloned())
                        .unwrap_or(key);
                    if let Some(settings) = decl.settings.as_object_mut() {
                        settings.insert(existing.clone(), value);
                    }
                    decl.env_overrides.push((existing, name.clone()));
                }
            }
        }
        if problems.is_empty() { Ok(()) } else { Err(problems) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnostic::SourceFile;

    fn config() -> Config {
        Config::parse(SourceFile::new(
            "b.toml",
            "[backends.gpu-pool]\ntype = \"local\"\nthreads = 2\n[backends.local]\ntype = \"local\"\n".into(),
        ))
        .unwrap()
    }

    fn vars(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn instance_settings_and_default_are_overridden() {
        let mut c = config();
        c.apply_env(vars(&[
            ("BACKPLANE_BACKENDS__GPU_POOL__THREADS", "8"),
            ("BACKPLANE_BACKENDS__LOCAL__MAX_IN_FLIGHT", "16"),
            ("BACKPLANE_DEFAULT_BACKEND", "gpu-pool"),
            ("UNRELATED", "x"),
        ]))
        .unwrap();
        assert_eq!(c.backends[0].settings["threads"], 8);
        assert_eq!(c.backends[1].max_in_flight, Some(16));
        assert_eq!(c.default_backend.unwrap().get_ref(), "gpu-pool");
    }

    #[test]
    fn values_that_are_not_toml_are_strings() {
        assert_eq!(parse_value("true"), serde_json::json!(true));
        assert_eq!(parse_value("[1, 2]"), serde_json::json!([1, 2]));
        assert_eq!(parse_value("hello world"), serde_json::json!("hello world"));
    }

    #[test]
    fn unknown_instances_and_malformed_names_are_errors() {
        let mut c = config();
        let problems = c
            .apply_env(vars(&[("BACKPLANE_BACKENDS__NOPE__THREADS", "1"), ("BACKPLANE_BACKENDS__LOCAL", "1")]))
            .unwrap_err();
        assert_eq!(problems.len(), 2);
        assert!(problems[0].message.contains("no backend instance matches `NOPE`"));
        assert!(problems[1].message.contains("malformed"));
    }
}
