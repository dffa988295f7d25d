//! Checking settings against a plugin's JSON Schema, with messages that say
//! which key is wrong.

use jsonschema::error::ValidationErrorKind;

/// A compiled settings schema, or why the plugin's schema is unusable.
pub fn compile(schema_text: &str) -> Result<(jsonschema::Validator, serde_json::Value), String> {
    let schema: serde_json::Value =
        serde_json::from_str(schema_text).map_err(|e| format!("the plugin's schema is not valid JSON: {e}"))?;
    let validator = jsonschema::validator_for(&schema).map_err(|e| format!("the plugin's schema is invalid: {e}"))?;
    Ok((validator, schema))
}

/// Violations as (JSON pointer, message). Unknown keys get one entry each,
/// pointing at the key and listing the known ones.
pub fn problems(
    validator: &jsonschema::Validator,
    schema: &serde_json::Value,
    instance: &serde_json::Value,
) -> Vec<(String, String)> {
    validator
        .iter_errors(instance)
        .flat_map(|e| {
            let at = e.instance_path.to_string();
            match &e.kind {
                ValidationErrorKind::AdditionalProperties { unexpected } => {
                    let known: Vec<&str> = schema
                        .pointer(&schema_pointer_for(&at))
                        .and_then(|s| s.get("properties"))
                        .and_then(|p| p.as_object())
                        .map(|p| p.keys().map(String::as_str).collect())
                        .unwrap_or_default();
                    let known = if known.is_empty() { "none".into() } else { known.join(", ") };
                    unexpected
                        .iter()
                        .map(|key| (format!("{at}/{key}"), format!("unknown setting `{key}` (known: {known})")))
                        .collect()
                }
                _ => vec![(at, e.to_string())],
            }
        })
        .collect()
}

/// The schema location describing an object at `instance_pointer`, for the
/// common case of nested `properties` (arrays and combinators fall back to the root).
fn schema_pointer_for(instance_pointer: &str) -> String {
    instance_pointer.split('/').skip(1).map(|segment| format!("/properties/{segment}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_point_at_the_key_and_list_known_ones() {
        let (validator, schema) = compile(
            r#"{"type":"object","properties":{"threads":{"type":"integer","minimum":1}},"additionalProperties":false}"#,
        )
        .unwrap();
        let found = problems(&validator, &schema, &serde_json::json!({ "thread": 2, "threads": 0 }));
        assert!(found.contains(&("/thread".into(), "unknown setting `thread` (known: threads)".into())), "{found:?}");
        assert!(found.iter().any(|(at, msg)| at == "/threads" && msg.contains("minimum")), "{found:?}");
    }
}
