//! `std`: Backplane's standard node library.
//!
//! # Core concepts
//!
//! - Every node type is a unit struct implementing [`NodeType`] with its own
//!   settings struct. Settings reject unknown keys, and their JSON Schema comes
//!   from the struct itself, so the schema and the parser cannot disagree.
//! - Settings a node cannot work without (`glob`, `pattern`, `command`...) have
//!   no serde default. They are required in the schema and left out of the
//!   published defaults, so a workflow that forgets them fails validation
//!   instead of running with an empty value.
//! - Text travels as `text/plain; charset=utf-8`, one record per line, every
//!   line ending in `\n`. Counts are text lines of `word\tcount`, sorted by
//!   count (highest first) and then by word.
//! - Ports typed `*/*` take or give any content type; `std.shell` tells text
//!   from bytes at run time.
//! - Relative paths resolve against the workflow's directory, which is also
//!   the working directory of `std.shell` commands.
//! - Nodes that touch the outside world or the clock (`std.shell`,
//!   `std.sleep`) are not deterministic, so the host never caches them; long
//!   waits poll for cancellation.
//!
//! [`NodeType`]: backplane_plugin_api::NodeType

pub mod counts;
pub mod io;
pub mod misc;
pub mod shell;
pub mod stream;
pub mod text;

use backplane_plugin_api::{Payload, PortSpec};

/// The content type of ports that take (or give) any content type.
pub const ANY: &str = "*/*";

/// The version every node type in this library reports.
const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The JSON Schema of a settings struct.
fn schema<S: schemars::JsonSchema>() -> serde_json::Value {
    schemars::schema_for!(S).to_value()
}

/// `skip_serializing_if` for required settings: settings are serialized only
/// to publish defaults, and a required setting has none.
fn unset<T: Default + PartialEq>(value: &T) -> bool {
    *value == T::default()
}

/// A `text` port.
fn text_port(name: &str, description: &str) -> PortSpec {
    PortSpec::text(name).describe(description)
}

/// `lines` as text, each line ending in `\n`.
fn lines_payload<S: AsRef<str>>(port: &str, lines: impl IntoIterator<Item = S>) -> Payload {
    let mut text = String::new();
    for line in lines {
        text.push_str(line.as_ref());
        text.push('\n');
    }
    Payload::text(port, text)
}

backplane_plugin_api::export_plugin! {
    backends: [],
    nodes: [
        io::ReadFiles,
        io::Files,
        io::WriteFile,
        text::Lines,
        stream::Split,
        text::Chunk,
        text::RegexFilter,
        text::RegexReplace,
        text::Tokenize,
        text::Concat,
        text::Sort,
        text::Head,
        counts::WordCount,
        counts::MergeCounts,
        counts::LineCount,
        misc::Hash,
        shell::Shell,
        misc::Const,
        misc::Noop,
        misc::Sleep,
        misc::Fail,
        misc::Panic,
    ],
}

#[cfg(test)]
mod tests {
    use serde_json::Value;
    use std::collections::HashSet;

    #[test]
    fn every_node_publishes_a_strict_schema_and_defaults_without_required_settings() {
        let specs = super::__backplane_node_specs().unwrap().into_vec();
        assert_eq!(specs.len(), 22);
        let mut names = HashSet::new();
        for spec in specs {
            let name = spec.type_name().as_str();
            assert!(name.starts_with("std.") && names.insert(name), "bad or duplicate name {name}");
            assert!(!spec.description().is_empty(), "{name} has no description");
            assert!(!spec.tags().is_empty(), "{name} has no tags");
            let schema: Value = serde_json::from_str(spec.settings_schema().as_str()).unwrap();
            assert_eq!(schema["additionalProperties"], false, "{name} accepts unknown settings");
            let defaults: Value = serde_json::from_str(spec.default_settings().as_str()).unwrap();
            let defaults = defaults.as_object().unwrap();
            for required in schema["required"].as_array().into_iter().flatten() {
                let key = required.as_str().unwrap();
                assert!(!defaults.contains_key(key), "{name} publishes a default for required `{key}`");
            }
            for key in defaults.keys() {
                assert!(schema["properties"].get(key).is_some(), "{name} default `{key}` not in schema");
            }
        }
    }
}
