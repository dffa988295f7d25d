//! Finds plugin dylibs on the plugin path and loads them through abi_stable.
//!
//! Every file is loaded on its own: one bad file is reported and skipped,
//! never stopping the others. Libraries are never unloaded (abi_stable leaks
//! them; closing one after a check crashes the next load). Each file's ELF
//! headers are checked first ([`file_check`]), so a truncated file is an
//! error instead of a SIGBUS.

mod file_check;

use crate::log_bridge::HostLogSink;
use abi_stable::{
    StableAbi,
    abi_stability::abi_checking::{CheckingGlobals, check_layout_compatibility_with_globals},
    library::{LibHeader, LibraryError, lib_header_from_path},
    sabi_trait::TD_Opaque,
};
use backplane_plugin_api::{
    BackendFactoryRef, INTERFACE_VERSION, NodeSpecRef, PluginModRef,
    log::{LogLevel, LogSink_TO},
};
use std::{
    collections::HashSet,
    fmt,
    path::{Path, PathBuf},
};

/// The environment variable listing extra plugin directories (`:`-separated).
pub const PLUGIN_PATH_ENV: &str = "BACKPLANE_PLUGIN_PATH";

/// Where to look, in order: config `plugin_dirs`, `BACKPLANE_PLUGIN_PATH`,
/// then the directory of the running executable.
pub fn search_path(config_dirs: &[PathBuf], include_exe_dir: bool) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = config_dirs.to_vec();
    if let Some(env) = std::env::var_os(PLUGIN_PATH_ENV) {
        dirs.extend(std::env::split_paths(&env).filter(|p| !p.as_os_str().is_empty()));
    }
    if include_exe_dir && let Some(dir) = std::env::current_exe().ok().and_then(|e| e.parent().map(Path::to_path_buf)) {
        dirs.push(dir);
    }
    let mut seen = HashSet::new();
    dirs.retain(|d| seen.insert(d.canonicalize().unwrap_or_else(|_| d.clone())));
    dirs
}

/// Dynamic libraries directly inside `dirs`, sorted per directory, each once.
pub fn discover(dirs: &[PathBuf]) -> Vec<PathBuf> {
    let mut seen = HashSet::new();
    let mut found = Vec::new();
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(dir) else { continue };
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == std::env::consts::DLL_EXTENSION))
            .collect();
        files.sort();
        for file in files {
            if seen.insert(file.canonicalize().unwrap_or_else(|_| file.clone())) {
                found.push(file);
            }
        }
    }
    found
}

/// A plugin that loaded, with what it exports.
pub struct LoadedPlugin {
    pub path: PathBuf,
    pub name: String,
    pub version: String,
    /// The `plugin-api` version it was built against.
    pub interface_version: String,
    pub backends: Vec<BackendFactoryRef>,
    pub nodes: Vec<NodeSpecRef>,
}

/// Why one file did not load.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LoadErrorKind {
    /// Not a Backplane plugin: not a loadable library, or no root module.
    NotAPlugin { reason: String },
    /// A shared library shorter than its headers say, or with corrupt headers
    /// (a half-copied or truncated file); it was not mapped.
    Damaged { reason: String },
    /// Built against a `plugin-api` whose types differ from the host's.
    AbiMismatch { plugin_interface: String, details: Vec<String> },
    /// Built against an incompatible `plugin-api` major version.
    IncompatibleVersion { plugin_interface: String },
    /// The plugin's own initialisation failed or panicked.
    InitFailed { message: String },
    /// Built with `panic = "abort"`: a panic in it would kill the host.
    PanicAborts,
    /// One backend or node type of a loaded plugin was left out: its schema is
    /// not a JSON Schema. The plugin's other types loaded.
    InvalidSchema { what: String, schema: &'static str, problem: String },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct LoadError {
    pub path: PathBuf,
    pub kind: LoadErrorKind,
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = self.path.display();
        match &self.kind {
            LoadErrorKind::NotAPlugin { reason } => write!(f, "{path}: not a Backplane plugin ({reason})"),
            LoadErrorKind::Damaged { reason } => write!(
                f,
                "{path}: damaged or truncated plugin file, not loaded ({reason})\n  \
                 help: copy or rebuild the file again; a half-written copy looks like this"
            ),
            LoadErrorKind::AbiMismatch { plugin_interface, details } => {
                write!(
                    f,
                    "{path}: incompatible plugin ABI: built against plugin-api {plugin_interface}, \
                     this host uses plugin-api {INTERFACE_VERSION}, and their types differ"
                )?;
                for line in details {
                    write!(f, "\n    {line}")?;
                }
                write!(
                    f,
                    "\n  help: rebuild the plugin against plugin-api {INTERFACE_VERSION} (run with -vv for the full layout report)"
                )
            }
            LoadErrorKind::IncompatibleVersion { plugin_interface } => write!(
                f,
                "{path}: built against plugin-api {plugin_interface}, which this host (plugin-api {INTERFACE_VERSION}) cannot load\n  \
                 help: rebuild the plugin against plugin-api {INTERFACE_VERSION}"
            ),
            LoadErrorKind::InitFailed { message } => write!(f, "{path}: plugin failed to initialise: {message}"),
            LoadErrorKind::InvalidSchema { what, schema, problem } => write!(
                f,
                "{path}: {what} not loaded: its {schema} {problem}\n  \
                 help: fix the schema in the plugin; `backplane verify {path}` checks it"
            ),
            LoadErrorKind::PanicAborts => write!(
                f,
                "{path}: built with panic = \"abort\", so any panic in it would kill the host\n  \
                 help: rebuild it with panic = \"unwind\" (the default) in its Cargo profile"
            ),
        }
    }
}

/// The `Error:` lines of abi_stable's layout report with their expected and
/// found values, and where in the interface the difference is; the report
/// itself runs to hundreds of lines.
pub fn summarize_layout_error(report: &str) -> Vec<String> {
    let lines: Vec<&str> = report.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    let value_after = |i: usize, label: &str| -> Option<&str> {
        let at = lines[i..].iter().take(8).position(|l| *l == label)?;
        lines.get(i + at + 1).copied().filter(|v| !v.contains(':'))
    };
    let mut summary = Vec::new();
    // "field_name:x" then "type:T" says field x has type T; a chain of those is the path.
    let mut path: Vec<String> = Vec::new();
    let mut current_type: Option<&str> = None;
    for (i, line) in lines.iter().enumerate() {
        if let Some(message) = line.strip_prefix("Error:") {
            let mut entry = format!("Error: {}", message.trim());
            if let (Some(expected), Some(found)) = (value_after(i, "Expected:"), value_after(i, "Found:")) {
                entry.push_str(&format!(": expected {expected}, found {found}"));
            }
            if !summary.contains(&entry) {
                summary.push(entry);
            }
        } else if let Some(field) = line.strip_prefix("field_name:") {
            let named = field.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
                && !field.starts_with("field_")
                && field != "buffer";
            if let (true, Some(parent)) = (named, current_type) {
                path.push(format!("{parent}.{field}"));
            }
        } else if let Some(ty) = line.strip_prefix("type:") {
            current_type = Some(ty.trim());
        }
    }
    if summary.is_empty() {
        summary.extend(lines.iter().take(3).map(|l| (*l).to_owned()));
    }
    summary.truncate(8);
    if !path.is_empty() {
        let start = path.len().saturating_sub(3);
        summary.push(format!("where: {}", path[start..].join(" -> ")));
    }
    summary
}

fn classify(path: &Path, error: LibraryError, plugin_interface: Option<String>) -> LoadError {
    let plugin_interface = plugin_interface.unwrap_or_else(|| "unknown".into());
    let kind = match error {
        LibraryError::OpenError { err, .. } => {
            LoadErrorKind::NotAPlugin { reason: format!("cannot open library: {err}") }
        }
        LibraryError::GetSymbolError { .. } => {
            LoadErrorKind::NotAPlugin { reason: "it exports no abi_stable root module".into() }
        }
        LibraryError::InvalidAbiHeader(_) | LibraryError::InvalidCAbi { .. } => {
            LoadErrorKind::NotAPlugin { reason: "it was built with an incompatible abi_stable or compiler ABI".into() }
        }
        LibraryError::AbiInstability(report) => {
            let report = report.to_string();
            tracing::debug!(path = %path.display(), "full ABI layout report:\n{report}");
            LoadErrorKind::AbiMismatch { plugin_interface, details: summarize_layout_error(&report) }
        }
        LibraryError::IncompatibleVersionNumber { .. } | LibraryError::ParseVersionError(_) => {
            LoadErrorKind::IncompatibleVersion { plugin_interface }
        }
        LibraryError::RootModule { err, .. } => LoadErrorKind::InitFailed { message: err.to_string() },
        other => LoadErrorKind::InitFailed { message: other.to_string() },
    };
    LoadError { path: path.to_owned(), kind }
}

fn host_log_level() -> LogLevel {
    use tracing::level_filters::LevelFilter;
    match LevelFilter::current() {
        LevelFilter::OFF => LogLevel::OFF,
        LevelFilter::ERROR => LogLevel::ERROR,
        LevelFilter::WARN => LogLevel::WARN,
        LevelFilter::INFO => LogLevel::INFO,
        LevelFilter::DEBUG => LogLevel::DEBUG,
        _ => LogLevel::TRACE,
    }
}

/// A plugin built against an older 1.x `plugin-api` fails abi_stable's check,
/// which only accepts libraries at least as new as the host. Checking the
/// other way round (is the plugin's layout a prefix of ours?) with private
/// checking globals accepts exactly those; prefix types and default method
/// bodies then supply what the plugin lacks.
fn load_older_plugin(header: &'static LibHeader) -> Option<PluginModRef> {
    let plugin_layout = header.layout()?;
    let host_layout = <PluginModRef as StableAbi>::LAYOUT;
    check_layout_compatibility_with_globals(plugin_layout, host_layout, &CheckingGlobals::new()).ok()?;
    // SAFETY: the plugin's root module layout was just checked to be
    // compatible with (a prefix of) the host's.
    unsafe { header.init_root_module_with_unchecked_layout::<PluginModRef>() }.ok()
}

/// Loads one plugin file.
pub fn load(path: &Path) -> Result<LoadedPlugin, LoadError> {
    file_check::check(path).map_err(|problem| LoadError {
        path: path.to_owned(),
        kind: match problem {
            file_check::FileProblem::NotALibrary(reason) => LoadErrorKind::NotAPlugin { reason },
            file_check::FileProblem::Damaged(reason) => LoadErrorKind::Damaged { reason },
        },
    })?;
    let header = lib_header_from_path(path).map_err(|e| classify(path, e, None))?;
    let plugin_interface = header.version_strings().version.to_string();
    // Not `RootModule::load_from_file`: it caches one module per type and
    // would hand back the first plugin for every later file.
    let module = match header.init_root_module::<PluginModRef>() {
        Ok(module) => module,
        Err(LibraryError::AbiInstability(report)) => match load_older_plugin(header) {
            Some(module) => {
                tracing::debug!(path = %path.display(), "built against the older plugin-api {plugin_interface}; what it lacks reads as defaults");
                module
            }
            None => return Err(classify(path, LibraryError::AbiInstability(report), Some(plugin_interface))),
        },
        Err(e) => return Err(classify(path, e, Some(plugin_interface))),
    };
    if !module.panic_unwinds() {
        return Err(LoadError { path: path.to_owned(), kind: LoadErrorKind::PanicAborts });
    }
    let name = module.name().to_string();
    (module.install_log_sink())(LogSink_TO::from_value(HostLogSink::new(&name), TD_Opaque), host_log_level());
    let init_failed = |what: &str, e: backplane_plugin_api::PluginError_NE| LoadError {
        path: path.to_owned(),
        kind: LoadErrorKind::InitFailed { message: format!("listing its {what} failed: {e}") },
    };
    let backends = (module.backend_factories())().into_result().map_err(|e| init_failed("backends", e))?;
    let nodes = (module.node_specs())().into_result().map_err(|e| init_failed("node types", e))?;
    Ok(LoadedPlugin {
        path: path.to_owned(),
        name,
        version: module.version().to_string(),
        interface_version: module.interface_version().to_string(),
        backends: backends.into_vec(),
        nodes: nodes.into_vec(),
    })
}

/// Loads every file, keeping successes and failures apart.
pub fn load_all(files: &[PathBuf]) -> (Vec<LoadedPlugin>, Vec<LoadError>) {
    let mut loaded = Vec::new();
    let mut errors = Vec::new();
    for file in files {
        match load(file) {
            Ok(plugin) => {
                tracing::debug!(path = %file.display(), plugin = %plugin.name, "loaded plugin");
                loaded.push(plugin);
            }
            Err(e) => errors.push(e),
        }
    }
    (loaded, errors)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_report_is_reduced_to_errors_values_and_path() {
        let report = "\
Error:incompatible type size
Expected:
    104
Found:
    112
1 error(s)inside:
    <other>

    field_name:0
    type:PluginMod
    field_name:backend_factories
    type:AFunctionPointer
    field_name:__returns
    type:RResult
    field_name:0
    type:BackendFactory
    field_name:capabilities
    type:&'a  Capabilities
    field_name:0
    type:Capabilities
    field_name:max_concurrency
    type:u64
Layout of expected type:
    type:u32
Error:mismatched type
Expected:
    u32
Found:
    u64
";
        assert_eq!(
            summarize_layout_error(report),
            vec![
                "Error: incompatible type size: expected 104, found 112",
                "Error: mismatched type: expected u32, found u64",
                "where: PluginMod.backend_factories -> BackendFactory.capabilities -> Capabilities.max_concurrency",
            ]
        );
    }

    #[test]
    fn discover_finds_only_dylibs_once() {
        let dir = tempfile::tempdir().unwrap();
        let lib = dir.path().join(format!("libx.{}", std::env::consts::DLL_EXTENSION));
        std::fs::write(&lib, b"not really").unwrap();
        std::fs::write(dir.path().join("notes.txt"), b"").unwrap();
        let found = discover(&[dir.path().to_owned(), dir.path().to_owned()]);
        assert_eq!(found, vec![lib]);
    }

    #[test]
    fn garbage_file_is_not_a_plugin() {
        let dir = tempfile::tempdir().unwrap();
        let lib = dir.path().join(format!("libjunk.{}", std::env::consts::DLL_EXTENSION));
        std::fs::write(&lib, b"definitely not an ELF file").unwrap();
        let err = load(&lib).err().expect("garbage must not load");
        assert!(matches!(err.kind, LoadErrorKind::NotAPlugin { .. }), "{err}");
        assert!(err.to_string().contains("not a Backplane plugin"), "{err}");
    }
}
