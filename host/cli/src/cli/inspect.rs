//! `backplane plugins`, `backends`, `nodes`.

use super::say;
use super::{load_config, load_host, print_json, setup};
use crate::{Failure, GlobalArgs};
use backplane_host::describe::{FactoryView, InstanceView, NodeView};
use clap::Args;

#[derive(Args)]
pub struct JsonArg {
    /// Machine-readable output.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct NodesArgs {
    /// Show only this node type, with its settings schema.
    node_type: Option<String>,
    #[arg(long)]
    json: bool,
}

pub fn plugins(global: &GlobalArgs, args: JsonArg) -> Result<(), Failure> {
    let config = load_config(global)?;
    let host = load_host(global, &config)?;
    let errors: Vec<String> = host.load_errors.iter().map(ToString::to_string).collect();
    let conflicts: Vec<String> = host.conflicts.iter().map(ToString::to_string).collect();
    // A refused file or a conflict is a problem to fix, also for scripts: exit 2.
    let outcome = if errors.is_empty() && conflicts.is_empty() { Ok(()) } else { Err(Failure::Invalid(String::new())) };
    if args.json {
        print_json(&serde_json::json!({ "plugins": host.plugins, "errors": errors, "conflicts": conflicts }))?;
        return outcome;
    }
    for p in &host.plugins {
        say!("{} {} (plugin-api {})  {}", p.name, p.version, p.interface_version, p.path.display());
        if !p.backends.is_empty() {
            say!("    backends: {}", p.backends.join(", "));
        }
        if !p.nodes.is_empty() {
            say!("    nodes: {}", p.nodes.join(", "));
        }
    }
    if host.plugins.is_empty() {
        say!(
            "no plugins found (searched --plugin-dir, config plugin_dirs, BACKPLANE_PLUGIN_PATH and the executable's directory)"
        );
    }
    for e in errors.iter().chain(&conflicts) {
        say!("error: {e}");
    }
    outcome
}

pub fn backends(global: &GlobalArgs, args: JsonArg) -> Result<(), Failure> {
    let host = setup(global)?;
    let default = host.backends.default_instance().map(|d| d.name.clone());
    let factories: Vec<FactoryView> = host.backends.list_available().iter().map(Into::into).collect();
    let instances: Vec<InstanceView> =
        host.backends.instances().iter().map(|i| InstanceView::new(i, Some(&i.name) == default.as_ref())).collect();
    if args.json {
        return print_json(&serde_json::json!({ "types": factories, "instances": instances }));
    }
    say!("backend types:");
    for f in &factories {
        say!("  {} {} — {}\n      {}\n      from {}", f.name, f.version, f.description, f.capabilities, f.origin);
    }
    say!("instances:");
    for i in &instances {
        let default = if i.is_default { " (default)" } else { "" };
        let message = if i.health_message.is_empty() { String::new() } else { format!(" ({})", i.health_message) };
        say!("  {}{default}: type {}, health {}{message}\n      {}", i.name, i.factory, i.health, i.capabilities);
    }
    Ok(())
}

pub fn nodes(global: &GlobalArgs, args: NodesArgs) -> Result<(), Failure> {
    let config = load_config(global)?;
    let host = load_host(global, &config)?;
    let mut views: Vec<NodeView> = host.nodes.sorted().into_iter().map(Into::into).collect();
    if let Some(wanted) = &args.node_type {
        let names: Vec<&str> = host.nodes.names();
        if !names.contains(&wanted.as_str()) {
            let help = match backplane_host::suggest(wanted, &names) {
                Some(near) => format!("did you mean `{near}`? `backplane nodes` lists the loaded node types"),
                None => "`backplane nodes` lists the loaded node types".to_owned(),
            };
            return Err(Failure::Invalid(format!("error: no node type `{wanted}` is loaded\n  help: {help}")));
        }
        views.retain(|v| &v.type_name == wanted);
    }
    if args.json {
        return print_json(&views);
    }
    for v in &views {
        say!("{} {} — {}", v.type_name, v.version, v.description);
        let ports = |ports: &[backplane_host::describe::PortView]| {
            ports
                .iter()
                .map(|p| {
                    let mut s = p.name.clone();
                    if p.multiple {
                        s.push_str("[]");
                    }
                    if p.stream {
                        s.push_str(" (stream)");
                    }
                    if !p.required {
                        s.push('?');
                    }
                    s
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        say!("    inputs: {}  outputs: {}", ports(&v.inputs), ports(&v.outputs));
        say!("    defaults: {}", v.defaults);
        let required = required_settings(&v.settings_schema);
        if !required.is_empty() {
            say!("    required settings (no default): {}", required.join(", "));
        }
        if args.node_type.is_some() {
            say!("    settings schema: {}", serde_json::to_string_pretty(&v.settings_schema).unwrap_or_default());
        }
    }
    Ok(())
}

/// The settings a schema lists as `required`: they have no default, so a
/// workflow must set them.
fn required_settings(schema: &serde_json::Value) -> Vec<&str> {
    schema
        .get("required")
        .and_then(|r| r.as_array())
        .map_or_else(Vec::new, |r| r.iter().filter_map(|k| k.as_str()).collect())
}
