//! Subcommands. Each loads what it needs through [`setup`].

pub mod bench;
pub mod cache;
pub mod history;
pub mod inspect;
pub mod metrics;
pub mod new;
pub mod observers;
pub mod progress;
pub mod recording;
pub mod run;
pub mod shell;
pub mod task;
pub mod verify;
pub mod worker;

use crate::{Failure, GlobalArgs};
use backplane_host::{
    Host,
    config::{Config, ConfigError, ConfigSearch},
    diagnostic::Diagnostic,
};

/// The config `--config`/`BACKPLANE_CONFIG` name, else the one found from
/// the current directory upward, else the XDG config file, else the
/// built-in default (see [`ConfigSearch`]); with `BACKPLANE_*` overrides applied.
pub fn load_config(global: &GlobalArgs) -> Result<Config, Failure> {
    let search = ConfigSearch::new(global.config.as_deref(), None);
    let config = Config::discover(&search, global.max_file_size).map_err(config_failure)?;
    config.check().map_err(config_failure)?;
    Ok(config)
}

pub fn config_failure(e: ConfigError) -> Failure {
    match e {
        ConfigError::Read { .. } => Failure::Environment(e.to_string()),
        other => Failure::Invalid(other.to_string()),
    }
}

/// Loads plugins from `--plugin-dir`s, the config's `plugin_dirs`,
/// `BACKPLANE_PLUGIN_PATH` and the executable's directory. A `--plugin-dir`
/// that is not a directory is a mistake worth stopping for: its plugins would
/// silently be missing.
pub fn load_host(global: &GlobalArgs, config: &Config) -> Result<Host, Failure> {
    load_into(Host::new(), global, config)
}

/// Loads the plugins of `--plugin-dir`, the config and the executable's directory into `host`.
pub fn load_into(mut host: Host, global: &GlobalArgs, config: &Config) -> Result<Host, Failure> {
    for dir in &global.plugin_dirs {
        if !dir.is_dir() {
            let what = if dir.exists() { "is not a directory" } else { "does not exist" };
            return Err(Failure::Invalid(format!(
                "error: --plugin-dir {} {what}\n  help: pass a directory that holds plugin libraries (*.{})",
                dir.display(),
                std::env::consts::DLL_EXTENSION
            )));
        }
    }
    let mut dirs = global.plugin_dirs.clone();
    dirs.extend(config.plugin_dirs.iter().cloned());
    host.load_plugins(&dirs, true);
    Ok(host)
}

/// Loads plugins and creates backend instances; conflicts are fatal.
pub fn setup(global: &GlobalArgs) -> Result<Host, Failure> {
    setup_with_diagnostics(global, None).map(|(host, _)| host).map_err(|(failure, _)| failure)
}

/// [`setup`] for a command on `workflow` (its config may sit beside it),
/// also giving the config (for its routes and policies) and the problems
/// as diagnostics (for `--json`).
pub fn setup_with_diagnostics(
    global: &GlobalArgs,
    workflow: Option<&std::path::Path>,
) -> Result<(Host, Config), (Failure, Vec<Diagnostic>)> {
    // Problems in the file are reported together with instantiation's.
    let search = ConfigSearch::new(global.config.as_deref(), workflow);
    let config =
        Config::discover(&search, global.max_file_size).map_err(|e| config_failure_with_diagnostics(e, global))?;
    let mut host = load_host(global, &config).map_err(|failure| {
        let diagnostic = unlocated("--plugin-dir", failure.message());
        (failure, vec![diagnostic])
    })?;
    if !host.conflicts.is_empty() {
        let text: Vec<String> = host.conflicts.iter().map(|c| format!("error: {c}")).collect();
        let diagnostics = host.conflicts.iter().map(|c| unlocated("plugins", &c.to_string())).collect();
        return Err((Failure::Invalid(text.join("\n")), diagnostics));
    }
    config.instantiate(&mut host.backends).map_err(|e| config_failure_with_diagnostics(e, global))?;
    Ok((host, config))
}

/// A problem with no file position, from text that may carry `error:` and
/// `help:` lines.
fn unlocated(source: &str, text: &str) -> Diagnostic {
    let text = text.trim_start_matches("error: ");
    match text.split_once("\n  help: ") {
        Some((message, help)) => Diagnostic::unlocated(source, message).with_help(help),
        None => Diagnostic::unlocated(source, text),
    }
}

fn config_failure_with_diagnostics(e: ConfigError, global: &GlobalArgs) -> (Failure, Vec<Diagnostic>) {
    let diagnostics = match &e {
        ConfigError::Invalid(d) => d.0.clone(),
        ConfigError::Read { path, .. } => vec![Diagnostic::unlocated(path.clone(), e.to_string())],
        other => {
            let source = global.config.as_ref().map_or("the built-in config".into(), |p| p.display().to_string());
            vec![unlocated(&source, &other.to_string())]
        }
    };
    (config_failure(e), diagnostics)
}

/// Where [`out`] writes when `--json` reserved stdout (see [`reserve_stdout_for_json`]).
static JSON_STDOUT: std::sync::OnceLock<std::fs::File> = std::sync::OnceLock::new();

/// Under `--json`, stdout must carry exactly one JSON document. Sets the real
/// stdout aside for it and points descriptor 1 at stderr, so nothing else
/// (a plugin's `println!`, a child process inheriting stdout) can corrupt it.
pub fn reserve_stdout_for_json() {
    use std::os::fd::FromRawFd;
    // SAFETY: plain descriptor calls; the duplicate is owned by the File.
    unsafe {
        let saved = libc::fcntl(1, libc::F_DUPFD_CLOEXEC, 3);
        if saved >= 0 && libc::dup2(2, 1) >= 0 {
            let _ = JSON_STDOUT.set(std::fs::File::from_raw_fd(saved));
        }
    }
}

pub fn print_json<T: serde::Serialize>(value: &T) -> Result<(), Failure> {
    let text = serde_json::to_string_pretty(value).map_err(|e| Failure::Environment(e.to_string()))?;
    out(format_args!("{text}"));
    Ok(())
}

/// Writes a line to stdout. A closed pipe (`backplane nodes | head`) ends the
/// process quietly. SIGPIPE stays ignored (Rust's default) because plugin
/// code writes to pipes too, and must get an error rather than kill the host.
pub fn out(line: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let written = match JSON_STDOUT.get() {
        Some(mut reserved) => writeln!(reserved, "{line}"),
        None => writeln!(std::io::stdout().lock(), "{line}"),
    };
    if let Err(e) = written {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error: cannot write to stdout: {e}");
        std::process::exit(3);
    }
}

/// `println!` that survives a closed stdout; see [`out`].
macro_rules! say {
    ($($arg:tt)*) => { $crate::cli::out(format_args!($($arg)*)) };
}
pub(crate) use say;
