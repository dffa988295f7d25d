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
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self { enabled: true, dir: None, salt: String::new(), required: false }
    }
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
    view.finish(r, &["enabled", "dir", "salt", "required"]);
    config
}
