//! Checks of one node type's spec, on its own.

use crate::Check;
use backplane_plugin_api::{NodeSpecRef, describe, testing::call_spec};

/// Metadata, schema and defaults, and that compute returns (never crashes)
/// when called with its defaults and no inputs.
pub fn check_node_type(spec: NodeSpecRef) -> Vec<Check> {
    let name = spec.type_name().as_str();
    let mut checks = Vec::new();

    let mut problems = Vec::new();
    if !name.contains('.') || name.starts_with('.') || name.ends_with('.') {
        problems.push(format!("type name `{name}` needs a namespace, like `acme.{name}`"));
    }
    if spec.version().as_str().split('.').count() != 3
        || spec.version().as_str().split('.').any(|p| p.parse::<u64>().is_err())
    {
        problems.push(format!("version `{}` is not MAJOR.MINOR.PATCH", spec.version()));
    }
    for (what, ports) in [("input", spec.inputs()), ("output", spec.outputs())] {
        let mut names: Vec<&str> = ports.iter().map(|p| p.name.as_str()).collect();
        if names.iter().any(|n| n.is_empty()) {
            problems.push(format!("an {what} port has an empty name"));
        }
        names.sort_unstable();
        if names.windows(2).any(|w| w[0] == w[1]) {
            problems.push(format!("{what} port names repeat"));
        }
    }
    checks.push(if problems.is_empty() {
        Check::pass("metadata", format!("{} {}", name, spec.version()))
    } else {
        Check::fail("metadata", problems.join("; "))
    });

    let defaults: serde_json::Value =
        serde_json::from_str(spec.default_settings().as_str()).unwrap_or(serde_json::Value::Null);
    #[cfg(feature = "schema-checks")]
    checks.push(settings_schema_check(spec, &defaults));

    checks.push(match call_spec(spec, &defaults, Vec::new()) {
        None => Check::skip("compute", "no in-process compute function"),
        Some(Ok(_)) => Check::pass("compute", "returns outputs with default settings and no inputs"),
        Some(Err(e)) if describe(&e) == "panicked" && spec.tags().iter().any(|t| t.as_str() == "test") => {
            Check::pass("compute", format!("panics on purpose (a `test` node); the panic was contained: {e}"))
        }
        Some(Err(e)) if describe(&e) == "panicked" => Check::fail(
            "compute",
            format!("panicked with default settings and no inputs ({e}); return an error instead"),
        ),
        Some(Err(e)) => Check::pass("compute", format!("returns an error with default settings and no inputs: {e}")),
    });
    checks
}

/// The schema is valid JSON Schema and the defaults satisfy it.
#[cfg(feature = "schema-checks")]
fn settings_schema_check(spec: NodeSpecRef, defaults: &serde_json::Value) -> Check {
    match backplane_loader::registry::schema::compile(spec.settings_schema().as_str()) {
        Err(e) => Check::fail("settings-schema", format!("the settings schema {e}")),
        Ok(_) if !defaults.is_object() => {
            Check::fail("settings-schema", format!("default settings must be a JSON object, found {defaults}"))
        }
        Ok((validator, _)) => {
            // Defaults may leave required settings out, but what they set must be valid.
            let wrong: Vec<String> = validator
                .iter_errors(defaults)
                .filter(|e| !matches!(e.kind, jsonschema::error::ValidationErrorKind::Required { .. }))
                .map(|e| format!("{}: {e}", e.instance_path))
                .collect();
            if wrong.is_empty() {
                Check::pass("settings-schema", "valid schema; the defaults satisfy it")
            } else {
                Check::fail("settings-schema", format!("the default settings violate the schema: {}", wrong.join("; ")))
            }
        }
    }
}
