//! `backplane new backend|nodes NAME`: a plugin crate that builds, loads and
//! passes `backplane verify` as generated, written outside any workspace.

use crate::Failure;
use clap::{Args, ValueEnum};
use std::{
    fs,
    io::Write,
    path::{Path, PathBuf},
};

#[derive(Clone, Copy, ValueEnum)]
pub enum Kind {
    /// A backend on plugin-api's worker pool.
    Backend,
    /// A node plugin with one node type.
    Nodes,
}

#[derive(Args)]
pub struct NewArgs {
    /// What the plugin offers.
    kind: Kind,
    /// The crate name; also the backend type, or the node types' namespace.
    name: String,
    /// Where to create the crate (default: `./NAME`); it must not exist.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// The `plugin-api` directory to depend on (default: this build's
    /// checkout when it is still there, otherwise the published `1`).
    #[arg(long, value_name = "DIR")]
    plugin_api: Option<PathBuf>,
}

/// Longest crate name accepted.
const MAX_NAME: usize = 64;

/// `NAME` as Cargo accepts it for a package and we accept it as a type name.
fn check_name(name: &str) -> Result<(), String> {
    let first_ok = name.starts_with(|c: char| c.is_ascii_lowercase());
    let rest_ok = name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if first_ok && rest_ok && name.len() <= MAX_NAME && !name.ends_with(['-', '_']) {
        Ok(())
    } else {
        Err(format!(
            "error: `{name}` is not a plugin name\n  help: use lowercase letters, digits, `-` and `_`, starting with a letter, at most {MAX_NAME} characters (e.g. `acme-pool`)"
        ))
    }
}

/// The nearest directory at or above `dir` whose `Cargo.toml` declares a
/// workspace: a crate created below it would join that workspace.
fn enclosing_workspace(dir: &Path) -> Option<PathBuf> {
    dir.ancestors()
        .find(|d| {
            fs::read_to_string(d.join("Cargo.toml")).is_ok_and(|toml| toml.lines().any(|l| l.trim() == "[workspace]"))
        })
        .map(Path::to_path_buf)
}

/// The `backplane-plugin-api` dependency line of the generated `Cargo.toml`.
fn plugin_api_dependency(explicit: Option<&Path>) -> Result<String, String> {
    let checkout = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../plugin-api");
    let dir = match explicit {
        Some(dir) => Some(dir.to_path_buf()),
        None => checkout.join("Cargo.toml").is_file().then_some(checkout),
    };
    let Some(dir) = dir else {
        return Ok("backplane-plugin-api = \"1\"".to_owned());
    };
    let dir = dir.canonicalize().map_err(|e| {
        format!(
            "error: --plugin-api {}: {e}\n  help: pass the `plugin-api` directory of a Backplane checkout",
            dir.display()
        )
    })?;
    if !dir.join("Cargo.toml").is_file() {
        return Err(format!(
            "error: --plugin-api {} holds no Cargo.toml\n  help: pass the `plugin-api` directory of a Backplane checkout",
            dir.display()
        ));
    }
    let path = dir.to_str().ok_or_else(|| format!("error: --plugin-api {} is not UTF-8", dir.display()))?;
    let quoted = serde_json::to_string(path).expect("a string serializes"); // a TOML basic string
    Ok(format!(
        "# Stands in for the published crate: backplane-plugin-api = \"1\"\nbackplane-plugin-api = {{ path = {quoted} }}"
    ))
}

fn fill(template: &str, name: &str, plugin_api: &str) -> String {
    template
        .replace("{{name}}", name)
        .replace("{{namespace}}", &name.replace('-', "_"))
        .replace("{{plugin_api}}", plugin_api)
}

/// Writes `text` to a new file: never over or through something that exists.
fn create_file(path: &Path, text: &str) -> Result<(), String> {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|e| format!("error: cannot create {}: {e}", path.display()))?;
    file.write_all(text.as_bytes()).map_err(|e| format!("error: cannot write {}: {e}", path.display()))
}

pub fn new(args: NewArgs) -> Result<(), Failure> {
    check_name(&args.name).map_err(Failure::Invalid)?;
    let dir = args.dir.clone().unwrap_or_else(|| PathBuf::from(&args.name));
    let parent = std::path::absolute(&dir)
        .map_err(|e| Failure::Invalid(format!("error: {}: {e}", dir.display())))?
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    if let Some(workspace) = enclosing_workspace(&parent) {
        return Err(Failure::Invalid(format!(
            "error: {} is inside the Cargo workspace {}: the plugin would join it and build into its target/\n  help: create it outside, e.g. `backplane new {} {} --dir ~/backplane-plugins/{}`",
            dir.display(),
            workspace.display(),
            match args.kind {
                Kind::Backend => "backend",
                Kind::Nodes => "nodes",
            },
            args.name,
            args.name
        )));
    }
    let plugin_api = plugin_api_dependency(args.plugin_api.as_deref()).map_err(Failure::Invalid)?;
    // `create_dir` fails on anything already there, a link included.
    fs::create_dir(&dir).map_err(|e| {
        Failure::Invalid(format!("error: cannot create {}: {e}\n  help: pick another name or --dir", dir.display()))
    })?;
    fs::create_dir(dir.join("src")).map_err(|e| Failure::Environment(format!("error: {}: {e}", dir.display())))?;
    let lib = match args.kind {
        Kind::Backend => include_str!("templates/backend.rs.tmpl"),
        Kind::Nodes => include_str!("templates/nodes.rs.tmpl"),
    };
    let files = [
        ("Cargo.toml", include_str!("templates/Cargo.toml.tmpl")),
        (".gitignore", include_str!("templates/gitignore.tmpl")),
        ("src/lib.rs", lib),
    ];
    for (file, template) in files {
        create_file(&dir.join(file), &fill(template, &args.name, &plugin_api)).map_err(Failure::Environment)?;
    }
    let so = format!("target/debug/lib{}.{}", args.name.replace('-', "_"), std::env::consts::DLL_EXTENSION);
    println!(
        "created {} ({})",
        dir.display(),
        match args.kind {
            Kind::Backend => format!("backend type `{}`", args.name),
            Kind::Nodes => format!("node type `{}.shout`", args.name.replace('-', "_")),
        }
    );
    println!("next: cd {} && cargo build && backplane verify {so}", dir.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_crate_names_that_make_type_names() {
        for good in ["acme-pool", "a", "acme_nodes2"] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in ["", "Acme", "1acme", "acme-", "acme.pool", "ac me", "../x", &"a".repeat(65)] {
            assert!(check_name(bad).unwrap_err().contains("is not a plugin name"), "{bad}");
        }
    }

    #[test]
    fn templates_are_filled_everywhere() {
        let text = fill(include_str!("templates/nodes.rs.tmpl"), "acme-nodes", "dep");
        assert!(text.contains("\"acme_nodes.shout\"") && !text.contains("{{"), "{text}");
        let toml = fill(include_str!("templates/Cargo.toml.tmpl"), "acme-nodes", "dep = 1");
        assert!(toml.contains("name = \"acme-nodes\"") && toml.contains("\ndep = 1\n"), "{toml}");
    }
}
