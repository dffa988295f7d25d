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
//! Commands that act on a workflow say which one they used, and why.

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
            if beside.is_file() {
                return Some((beside, ConfigOrigin::BesideWorkflow));
            }
        }
        if let Some(start) = &self.start {
            for dir in start.ancestors() {
                let candidate = dir.join(CONFIG_FILE_NAME);
                if candidate.is_file() {
                    return Some((candidate, ConfigOrigin::Ancestor));
                }
            }
        }
        super::env::default_config_path().map(|path| (path, ConfigOrigin::Xdg))
    }
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
    }
}
