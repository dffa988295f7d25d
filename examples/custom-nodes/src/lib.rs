//! `backplane-example-nodes`: a third-party node library showing how to write
//! node types against `backplane-plugin-api` alone.
//!
//! # Core concepts
//!
//! - Each node type is a unit struct implementing [`NodeType`]; the
//!   [`export_plugin!`](backplane_plugin_api::export_plugin) call at the bottom
//!   is all it takes to make them loadable.
//! - Settings schemas are written by hand with `json!`, so this crate needs no
//!   schema generator. They reject unknown keys, so a typo in a workflow fails
//!   validation instead of being ignored.
//! - A setting a node cannot work without (`times`) has no published default:
//!   it is left out of the serialized defaults and listed as `required`.
//! - Text ports carry UTF-8, one record per line, every output line ending in
//!   `\n` like the `std` library's.
//! - A stream output (`example.words`) hands on items while the node
//!   computes; consumers that read it as a plain input get all its items at
//!   once (here: the words, one per line).

use backplane_plugin_api::{
    payload::JSON,
    prelude::*,
    serde_json::{self, json},
};
use serde::{Deserialize, Serialize};

/// The version every node type in this library reports.
const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The single `text` port used as input and output by the text nodes.
fn text_port() -> Vec<PortSpec> {
    vec![PortSpec::text("text")]
}

/// `example.rot13`: the classic letter rotation; applying it twice gives the input back.
pub struct Rot13;

impl NodeType for Rot13 {
    const TYPE_NAME: &'static str = "example.rot13";
    const VERSION: &'static str = VERSION;
    const DESCRIPTION: &'static str = "Rotates ASCII letters by 13 places; other characters pass through";
    type Settings = NoSettings;

    fn inputs() -> Vec<PortSpec> {
        text_port()
    }
    fn outputs() -> Vec<PortSpec> {
        text_port()
    }
    fn tags() -> Vec<&'static str> {
        vec!["text"]
    }

    fn compute(_: NoSettings, mut inputs: Inputs, _: &Context<'_>) -> Result<Vec<Payload>, NodeError> {
        let rotate = |c: char| match c {
            'a'..='z' => (((c as u8 - b'a' + 13) % 26) + b'a') as char,
            'A'..='Z' => (((c as u8 - b'A' + 13) % 26) + b'A') as char,
            _ => c,
        };
        Ok(vec![Payload::text("text", inputs.text("text")?.chars().map(rotate).collect())])
    }
}

/// `example.reverse_lines`: the lines in reverse order (`tac`).
pub struct ReverseLines;

impl NodeType for ReverseLines {
    const TYPE_NAME: &'static str = "example.reverse_lines";
    const VERSION: &'static str = VERSION;
    const DESCRIPTION: &'static str = "Outputs the input's lines in reverse order";
    type Settings = NoSettings;

    fn inputs() -> Vec<PortSpec> {
        text_port()
    }
    fn outputs() -> Vec<PortSpec> {
        text_port()
    }
    fn tags() -> Vec<&'static str> {
        vec!["text"]
    }

    fn compute(_: NoSettings, mut inputs: Inputs, _: &Context<'_>) -> Result<Vec<Payload>, NodeError> {
        let text = inputs.text("text")?;
        let reversed: String = text.lines().rev().flat_map(|line| [line, "\n"]).collect();
        Ok(vec![Payload::text("text", reversed)])
    }
}

/// `example.number_stats`: count, min, max and mean of one number per line.
pub struct NumberStats;

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NumberStatsSettings {
    /// Ignore lines that are not numbers instead of failing.
    pub skip_invalid: bool,
}

/// The `stats` output; a struct rather than `json!` to keep the fields in this order.
#[derive(Serialize)]
struct Stats {
    count: usize,
    min: Option<f64>,
    max: Option<f64>,
    mean: Option<f64>,
}

impl NodeType for NumberStats {
    const TYPE_NAME: &'static str = "example.number_stats";
    const VERSION: &'static str = VERSION;
    const DESCRIPTION: &'static str = "Computes count, min, max and mean of one number per line (blank lines ignored)";
    type Settings = NumberStatsSettings;

    fn inputs() -> Vec<PortSpec> {
        vec![PortSpec::text("text").describe("one number per line")]
    }
    fn outputs() -> Vec<PortSpec> {
        vec![PortSpec::new("stats", JSON).describe("JSON object: count, min, max, mean (null without numbers)")]
    }
    fn settings_schema() -> serde_json::Value {
        json!({
            "type": "object",
            "properties": { "skip_invalid": { "type": "boolean", "default": false, "description": "ignore lines that are not numbers" } },
            "additionalProperties": false
        })
    }
    fn tags() -> Vec<&'static str> {
        vec!["numbers"]
    }

    fn compute(s: Self::Settings, mut inputs: Inputs, _: &Context<'_>) -> Result<Vec<Payload>, NodeError> {
        let text = inputs.text("text")?;
        let mut numbers = Vec::new();
        for (i, line) in text.lines().enumerate().filter(|(_, line)| !line.trim().is_empty()) {
            // NaN and infinities parse as f64 but have no JSON form, so they count as invalid.
            match line.trim().parse::<f64>().ok().filter(|n| n.is_finite()) {
                Some(n) => numbers.push(n),
                None if s.skip_invalid => {}
                None => return Err(NodeError::new(format!("line {}: `{}` is not a number", i + 1, line.trim()))),
            }
        }
        let stats = Stats {
            count: numbers.len(),
            min: numbers.iter().copied().reduce(f64::min),
            max: numbers.iter().copied().reduce(f64::max),
            mean: (!numbers.is_empty()).then(|| numbers.iter().sum::<f64>() / numbers.len() as f64),
        };
        let json = serde_json::to_string(&stats).map_err(|e| NodeError::new(e.to_string()))?;
        Ok(vec![Payload::bytes("stats", JSON, format!("{json}\n").into_bytes())])
    }
}

/// `example.repeat`: the input text `times` times over.
pub struct Repeat;

/// The bounds of `times`: the schema enforces them at validation, `compute`
/// again for callers that skip validation, since the output grows with it.
const TIMES: std::ops::RangeInclusive<u32> = 1..=1000;

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepeatSettings {
    /// How many copies to output. Required: skipped when serializing the
    /// defaults so that none is published.
    #[serde(skip_serializing_if = "is_unset")]
    pub times: u32,
}

fn is_unset(times: &u32) -> bool {
    *times == 0
}

impl NodeType for Repeat {
    const TYPE_NAME: &'static str = "example.repeat";
    const VERSION: &'static str = VERSION;
    const DESCRIPTION: &'static str = "Outputs its input text repeated `times` times";
    type Settings = RepeatSettings;

    fn inputs() -> Vec<PortSpec> {
        text_port()
    }
    fn outputs() -> Vec<PortSpec> {
        text_port()
    }
    fn settings_schema() -> serde_json::Value {
        json!({
            "type": "object",
            "properties": {
                "times": { "type": "integer", "minimum": TIMES.start(), "maximum": TIMES.end(), "description": "number of copies" }
            },
            "required": ["times"],
            "additionalProperties": false
        })
    }
    fn tags() -> Vec<&'static str> {
        vec!["text"]
    }

    fn compute(s: Self::Settings, mut inputs: Inputs, _: &Context<'_>) -> Result<Vec<Payload>, NodeError> {
        if !TIMES.contains(&s.times) {
            return Err(NodeError::new(format!("`times` must be in {TIMES:?}, got {}", s.times)));
        }
        Ok(vec![Payload::text("text", inputs.text("text")?.repeat(s.times as usize))])
    }
}

/// `example.words`: a streaming producer, one item per word of its input.
pub struct Words;

impl NodeType for Words {
    const TYPE_NAME: &'static str = "example.words";
    const VERSION: &'static str = VERSION;
    const DESCRIPTION: &'static str = "Streams each word of the input as an item of its own (`word\\n`)";
    type Settings = NoSettings;

    fn inputs() -> Vec<PortSpec> {
        text_port()
    }
    fn outputs() -> Vec<PortSpec> {
        // A stream: routed only to backends with the `streaming` capability.
        vec![PortSpec::text("words").stream()]
    }

    fn compute(_: NoSettings, mut inputs: Inputs, ctx: &Context<'_>) -> Result<Vec<Payload>, NodeError> {
        for word in inputs.text("text")?.split_whitespace() {
            // May wait while consumers are behind; an error means stop: return it.
            ctx.emit("words", Payload::text("words", format!("{word}\n")))?;
        }
        Ok(Vec::new()) // no final value: consumers get the items, accumulated
    }
}

backplane_plugin_api::export_plugin! {
    backends: [],
    nodes: [Rot13, ReverseLines, NumberStats, Repeat, Words],
}

#[cfg(test)]
mod tests {
    use super::*;
    use backplane_plugin_api::{PluginError, serde_json::Value, testing::call_node};

    /// Runs `N` on one `text` input and returns its single output as a string.
    fn run<N: NodeType>(settings: Value, text: &str) -> Result<String, PluginError_NE> {
        let outputs = call_node::<N>(settings, vec![Payload::text("text", text.into())], "/")?;
        assert_eq!(outputs.len(), 1);
        Ok(outputs[0].as_text().unwrap().to_owned())
    }

    /// `example.number_stats` on `text`, parsed.
    fn stats(settings: Value, text: &str) -> Result<Value, PluginError_NE> {
        Ok(serde_json::from_str(&run::<NumberStats>(settings, text)?).unwrap())
    }

    #[test]
    fn rot13_rotates_letters_only_and_is_its_own_inverse() {
        assert_eq!(run::<Rot13>(json!({}), "Hello, World! 42").unwrap(), "Uryyb, Jbeyq! 42");
        assert_eq!(run::<Rot13>(json!({}), "Uryyb, Jbeyq! 42").unwrap(), "Hello, World! 42");
    }

    #[test]
    fn rot13_rejects_settings_and_missing_input() {
        assert!(run::<Rot13>(json!({ "shift": 3 }), "x").is_err());
        let missing = call_node::<Rot13>(json!({}), vec![], "/").unwrap_err();
        assert!(missing.to_string().contains("`text`"));
    }

    #[test]
    fn reverse_lines_reverses_and_terminates_every_line() {
        assert_eq!(run::<ReverseLines>(json!({}), "a\nb\nc").unwrap(), "c\nb\na\n");
        assert_eq!(run::<ReverseLines>(json!({}), "").unwrap(), "");
    }

    #[test]
    fn reverse_lines_rejects_non_utf8() {
        let input = Payload::bytes("text", "application/octet-stream", vec![0xff, 0xfe]);
        let error = call_node::<ReverseLines>(json!({}), vec![input], "/").unwrap_err();
        assert!(error.to_string().contains("not UTF-8"));
    }

    #[test]
    fn number_stats_summarises_numbers() {
        assert_eq!(
            stats(json!({}), "1\n 5 \n\n3\n").unwrap(),
            json!({ "count": 3, "min": 1.0, "max": 5.0, "mean": 3.0 })
        );
        assert_eq!(stats(json!({}), "").unwrap(), json!({ "count": 0, "min": null, "max": null, "mean": null }));
    }

    #[test]
    fn number_stats_names_the_bad_line_unless_skipping() {
        let error = stats(json!({}), "1\n\nabc\n2").unwrap_err().into_enum().unwrap();
        assert_eq!(error, PluginError::NodeFailed { message: "line 3: `abc` is not a number".into() });
        assert!(stats(json!({}), "NaN").is_err(), "non-finite numbers have no JSON form");
        let skipped = stats(json!({ "skip_invalid": true }), "1\nabc\n2").unwrap();
        assert_eq!((skipped["count"].as_u64(), skipped["mean"].as_f64()), (Some(2), Some(1.5)));
    }

    #[test]
    fn repeat_repeats() {
        assert_eq!(run::<Repeat>(json!({ "times": 3 }), "ab\n").unwrap(), "ab\nab\nab\n");
    }

    #[test]
    fn repeat_requires_times_in_range() {
        let missing = run::<Repeat>(json!({}), "x").unwrap_err();
        assert!(missing.to_string().contains("missing field `times`"));
        let too_many = run::<Repeat>(json!({ "times": 1001 }), "x").unwrap_err();
        assert!(too_many.to_string().contains("1..=1000"));
    }

    #[test]
    fn published_defaults_omit_required_settings() {
        assert_eq!(serde_json::to_value(RepeatSettings::default()).unwrap(), json!({}));
        assert_eq!(serde_json::to_value(NumberStatsSettings::default()).unwrap(), json!({ "skip_invalid": false }));
    }
}
