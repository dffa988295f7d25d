//! Which config file a command uses, in this order (the first that names or
//! finds a file wins):
//!
//! 1. `--config FILE`;
//! 2. `BACKPLANE_CONFIG`;
//! 3. `backplane.toml` beside the workflow;
//! 4. `backplane.toml` in the current directory or the nearest ancestor
//!    that has one (as Cargo finds `Cargo.toml`);
//! 5. `$XDG_CONFIG_HOME/backplane/backplane.toml` (or `~/.config/...`);
//! 6. the built-in default: one `local` instance.
//!
//! Commands that act on a workflow say which one they used, and why. A
//! config names plugin directories, so loading one runs code: a file found
//! (not named) is used only when it belongs to this user (or root) and no
//! one else may write it; another is skipped with a warning.

use serde::Serialize;
use std::{
    fmt,
    path::{Path, PathBuf},
};

/// The file name searched for beside the workflow and upward from the current directory.
pub const CONFIG_FILE_NAME: &str = "backplane.toml";

/// Why a config file was chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ConfigOrigin {
    /// `--config`.
    Flag,
    /// `BACKPLANE_CONFIG`.
    Env,
    /// `backplane.toml` beside the workflow.
    BesideWorkflow,
    /// `backplane.toml` in the current directory or an ancestor.
    Ancestor,
    /// The XDG config directory.
    Xdg,
    /// No file: the built-in default.
    #[default]
    BuiltIn,
}

impl fmt::Display for ConfigOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ConfigOrigin::Flag => "from --config",
            ConfigOrigin::Env => "from BACKPLANE_CONFIG",
            ConfigOrigin::BesideWorkflow => "beside the workflow",
            ConfigOrigin::Ancestor => "found upward from the current directory",
            ConfigOrigin::Xdg => "the user config",
            ConfigOrigin::BuiltIn => "built in: one `local` instance",
        })
    }
}

/// What a command knows when it looks for its config.
#[derive(Debug, Clone, Default)]
pub struct ConfigSearch {
    /// `--config` or `BACKPLANE_CONFIG` (clap reads both into one value).
    pub explicit: Option<PathBuf>,
    /// Whether `explicit` came from `BACKPLANE_CONFIG` rather than the flag.
    pub explicit_from_env: bool,
    /// The workflow file the command acts on, if any.
    pub workflow: Option<PathBuf>,
    /// Where the upward search starts (the current directory).
    pub start: Option<PathBuf>,
}

impl ConfigSearch {
    /// A search for `explicit` (as clap read it), from the current directory.
    pub fn new(explicit: Option<&Path>, workflow: Option<&Path>) -> Self {
        let from_env = std::env::var_os(super::env::CONFIG_ENV);
        let explicit_from_env = explicit.is_some_and(|e| from_env.as_deref() == Some(e.as_os_str()));
        Self {
            explicit: explicit.map(Path::to_path_buf),
            explicit_from_env,
            workflow: workflow.map(Path::to_path_buf),
            start: std::env::current_dir().ok(),
        }
    }

    /// The file to read and why, or `None` for the built-in default.
    pub fn find(&self) -> Option<(PathBuf, ConfigOrigin)> {
        if let Some(path) = &self.explicit {
            let origin = if self.explicit_from_env { ConfigOrigin::Env } else { ConfigOrigin::Flag };
            return Some((path.clone(), origin));
        }
        // `-` (stdin) has no directory to look beside.
        if let Some(workflow) = self.workflow.as_deref().filter(|w| w.as_os_str() != "-") {
            let beside = match workflow.parent().filter(|d| !d.as_os_str().is_empty()) {
                Some(dir) => dir.join(CONFIG_FILE_NAME),
                None => PathBuf::from(CONFIG_FILE_NAME),
            };
            if trusted(&beside) {
                return Some((beside, ConfigOrigin::BesideWorkflow));
            }
        }
        if let Some(start) = &self.start {
            for dir in start.ancestors() {
                let candidate = dir.join(CONFIG_FILE_NAME);
                if trusted(&candidate) {
                    return Some((candidate, ConfigOrigin::Ancestor));
                }
            }
        }
        super::env::default_config_path().filter(|path| trusted(path)).map(|path| (path, ConfigOrigin::Xdg))
    }
}

/// Whether a config file found at `path` may be used: a regular file (or a
/// link to one) owned by this user or root and writable by no one else.
/// A file that exists but fails that is skipped with a warning.
fn trusted(path: &Path) -> bool {
    let Ok(meta) = std::fs::metadata(path) else { return false };
    if !meta.is_file() {
        return false;
    }
    match untrusted_because(&meta) {
        None => true,
        Some(why) => {
            tracing::warn!("ignoring the config file {}: {why}; pass `--config` to use it anyway", path.display());
            false
        }
    }
}

#[cfg(unix)]
fn untrusted_because(meta: &std::fs::Metadata) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    // SAFETY: a plain system call without arguments; it cannot fail.
    let me = unsafe { libc::geteuid() };
    if meta.uid() != me && meta.uid() != 0 {
        return Some(format!("it belongs to another user (uid {})", meta.uid()));
    }
    if meta.mode() & 0o022 != 0 {
        return Some(format!("others may write it (mode {:o})", meta.mode() & 0o777));
    }
    None
}

#[cfg(not(unix))]
fn untrusted_because(_: &std::fs::Metadata) -> Option<String> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_of_flag_beside_the_workflow_and_upward_wins() {
        let root = tempfile::tempdir().unwrap();
        let project = root.path().join("project");
        let flows = project.join("flows/daily");
        std::fs::create_dir_all(&flows).unwrap();
        std::fs::write(flows.join("workflow.toml"), "").unwrap();
        let search = |explicit: Option<&str>| ConfigSearch {
            explicit: explicit.map(PathBuf::from),
            explicit_from_env: false,
            workflow: Some(flows.join("workflow.toml")),
            start: Some(flows.clone()),
        };
        // Nothing here or above (the temp dir's ancestors have none either).
        let found = search(None).find();
        assert!(found.as_ref().is_none_or(|(_, origin)| *origin == ConfigOrigin::Xdg), "{found:?}");

        std::fs::write(project.join(CONFIG_FILE_NAME), "").unwrap();
        assert_eq!(search(None).find(), Some((project.join(CONFIG_FILE_NAME), ConfigOrigin::Ancestor)));
        std::fs::write(flows.join(CONFIG_FILE_NAME), "").unwrap();
        assert_eq!(search(None).find(), Some((flows.join(CONFIG_FILE_NAME), ConfigOrigin::BesideWorkflow)));
        assert_eq!(search(Some("x.toml")).find(), Some((PathBuf::from("x.toml"), ConfigOrigin::Flag)));
        let from_env = ConfigSearch { explicit_from_env: true, ..search(Some("x.toml")) };
        assert_eq!(from_env.find(), Some((PathBuf::from("x.toml"), ConfigOrigin::Env)));
    }

    #[cfg(unix)]
    #[test]
    fn a_found_config_others_may_write_is_skipped() {
        use std::os::unix::fs::PermissionsExt;
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("shared");
        std::fs::create_dir(&dir).unwrap();
        let up = root.path().join(CONFIG_FILE_NAME);
        std::fs::write(&up, "").unwrap();
        std::fs::set_permissions(&up, std::fs::Permissions::from_mode(0o644)).unwrap();
        let writable = dir.join(CONFIG_FILE_NAME);
        std::fs::write(&writable, "").unwrap();
        std::fs::set_permissions(&writable, std::fs::Permissions::from_mode(0o666)).unwrap();
        let search = ConfigSearch { start: Some(dir.clone()), ..ConfigSearch::default() };
        // The world-writable one beside is passed over for the one above.
        assert_eq!(search.find(), Some((up, ConfigOrigin::Ancestor)));
        // Named explicitly, it is used: the user asked for it.
        let named = ConfigSearch { explicit: Some(writable.clone()), ..search };
        assert_eq!(named.find(), Some((writable, ConfigOrigin::Flag)));
    }
}
