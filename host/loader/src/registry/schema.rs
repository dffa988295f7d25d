//! Checking settings against a plugin's JSON Schema, with messages that say
//! which key is wrong.

use jsonschema::error::ValidationErrorKind;

/// A compiled schema and its JSON, or why it is unusable; the error
/// completes "the schema …", as [`parse`]'s does.
pub fn compile(schema_text: &str) -> Result<(jsonschema::Validator, serde_json::Value), String> {
    let schema = parse(schema_text)?;
    let validator = jsonschema::validator_for(&schema).map_err(|e| format!("is not valid JSON Schema: {e}"))?;
    Ok((validator, schema))
}

/// The schema as JSON if it is a JSON Schema document: JSON, an object or a
/// boolean, and valid against its meta-schema. The error completes "the
/// schema …". Cheap enough for every factory and node type at load time:
/// the meta-schema validator is built once per process, and no schema of a
/// plugin is compiled until something is checked against it.
pub fn parse(schema_text: &str) -> Result<serde_json::Value, String> {
    let schema: serde_json::Value =
        serde_json::from_str(schema_text).map_err(|e| format!("is not JSON ({e}): {}", excerpt(schema_text)))?;
    if !(schema.is_object() || schema.is_boolean()) {
        return Err(format!("is {}, not a JSON Schema (an object or a boolean)", excerpt(schema_text)));
    }
    match jsonschema::meta::try_validate(&schema) {
        Ok(Ok(())) => Ok(schema),
        Ok(Err(e)) => {
            let at = e.instance_path.to_string();
            let at = if at.is_empty() { String::new() } else { format!(" at `{at}`") };
            Err(format!("is not valid JSON Schema{at}: {e}"))
        }
        Err(e) => Err(format!("names a meta-schema this host does not know (`$schema`): {e}")),
    }
}

/// The start of a schema text for a message: bounded, on one line.
fn excerpt(text: &str) -> String {
    const MAX: usize = 60;
    let line: String = text.chars().take(MAX).map(|c| if c.is_control() { ' ' } else { c }).collect();
    let more = if text.chars().count() > MAX { "…" } else { "" };
    format!("`{}{more}`", line.trim())
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
    fn a_schema_must_be_json_an_object_or_boolean_and_valid_json_schema() {
        assert!(parse(r#"{"type":"object","additionalProperties":false}"#).is_ok());
        assert!(parse("true").is_ok());
        let not_json = parse("type: object").unwrap_err();
        assert!(not_json.starts_with("is not JSON (") && not_json.ends_with("`type: object`"), "{not_json}");
        assert_eq!(parse("[1, 2]").unwrap_err(), "is `[1, 2]`, not a JSON Schema (an object or a boolean)");
        let bad_type = parse(r#"{"type":"objekt"}"#).unwrap_err();
        assert!(bad_type.starts_with("is not valid JSON Schema at `/type`:"), "{bad_type}");
        let bad_properties = parse(r#"{"properties": 5}"#).unwrap_err();
        assert!(bad_properties.contains("at `/properties`"), "{bad_properties}");
        assert!(parse(r#"{"$schema":"https://example.invalid/nope"}"#).unwrap_err().contains("meta-schema"));
        assert!(parse(&"x".repeat(10_000)).unwrap_err().len() < 200, "the excerpt is bounded");
    }

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
