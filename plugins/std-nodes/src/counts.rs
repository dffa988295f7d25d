//! Word counts: counting, merging partial counts, counting lines.
//!
//! Counts travel as text lines of `word\tcount`, highest count first and ties
//! by word, so the same counts always serialize to the same bytes.

use crate::{VERSION, schema, text_port};
use backplane_plugin_api::prelude::*;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// Serializes `counts` in the canonical order, keeping the `top` entries.
fn counts_payload<W: AsRef<str> + Ord>(counts: impl IntoIterator<Item = (W, u64)>, top: Option<usize>) -> Payload {
    let mut counts: Vec<_> = counts.into_iter().collect();
    counts.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    counts.truncate(top.unwrap_or(usize::MAX));
    let mut text = String::new();
    for (word, count) in counts {
        text.push_str(word.as_ref());
        text.push('\t');
        text.push_str(&count.to_string());
        text.push('\n');
    }
    Payload::text("counts", text)
}

/// `std.word_count`: counts whitespace-separated words.
pub struct WordCount;

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct WordCountSettings {
    /// Keep only the `top` most frequent words; all of them when unset.
    pub top: Option<usize>,
    /// Drop words seen fewer times than this.
    pub min_count: u64,
}

impl Default for WordCountSettings {
    fn default() -> Self {
        Self { top: None, min_count: 1 }
    }
}

impl NodeType for WordCount {
    const TYPE_NAME: &'static str = "std.word_count";
    const VERSION: &'static str = VERSION;
    const DESCRIPTION: &'static str =
        "Counts whitespace-separated words into `word<TAB>count` lines, most frequent first";
    type Settings = WordCountSettings;

    fn inputs() -> Vec<PortSpec> {
        vec![text_port("text", "words separated by whitespace, e.g. from std.tokenize")]
    }
    fn outputs() -> Vec<PortSpec> {
        vec![text_port("counts", "`word<TAB>count` lines, by count descending then word")]
    }
    fn settings_schema() -> serde_json::Value {
        schema::<Self::Settings>()
    }
    fn tags() -> Vec<&'static str> {
        vec!["counts", "text"]
    }

    fn compute(s: Self::Settings, mut inputs: Inputs, _: &Context<'_>) -> Result<Vec<Payload>, NodeError> {
        let text = inputs.text("text")?;
        let mut counts: HashMap<&str, u64> = HashMap::new();
        for word in text.split_whitespace() {
            *counts.entry(word).or_default() += 1;
        }
        counts.retain(|_, count| *count >= s.min_count);
        Ok(vec![counts_payload(counts, s.top)])
    }
}

/// `std.merge_counts`: sums several count tables, e.g. from a fan-out.
pub struct MergeCounts;

#[derive(Debug, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct MergeCountsSettings {
    /// Keep only the `top` most frequent words; all of them when unset.
    pub top: Option<usize>,
}

impl NodeType for MergeCounts {
    const TYPE_NAME: &'static str = "std.merge_counts";
    const VERSION: &'static str = VERSION;
    const DESCRIPTION: &'static str = "Sums several `word<TAB>count` tables into one, most frequent first";
    type Settings = MergeCountsSettings;

    fn inputs() -> Vec<PortSpec> {
        vec![text_port("counts", "`word<TAB>count` tables to add up").multiple()]
    }
    fn outputs() -> Vec<PortSpec> {
        vec![text_port("counts", "the summed `word<TAB>count` lines, by count descending then word")]
    }
    fn settings_schema() -> serde_json::Value {
        schema::<Self::Settings>()
    }
    fn tags() -> Vec<&'static str> {
        vec!["counts"]
    }

    fn compute(s: Self::Settings, mut inputs: Inputs, _: &Context<'_>) -> Result<Vec<Payload>, NodeError> {
        let tables = inputs.take_all("counts");
        let mut counts: HashMap<&str, u64> = HashMap::new();
        for (t, table) in tables.iter().enumerate() {
            let input = t + 1;
            let text =
                table.as_text().map_err(|e| NodeError::new(format!("counts input #{input} is not UTF-8 text: {e}")))?;
            for (l, line) in text.lines().enumerate() {
                let parsed = line.split_once('\t').and_then(|(word, n)| Some((word, n.parse::<u64>().ok()?)));
                let Some((word, n)) = parsed.filter(|(word, _)| !word.is_empty()) else {
                    return Err(NodeError::new(format!(
                        "counts input #{input}, line {}: expected `word<TAB>count` with a whole number, found `{line}`",
                        l + 1
                    )));
                };
                let total = counts.entry(word).or_default();
                *total = total.saturating_add(n);
            }
        }
        Ok(vec![counts_payload(counts, s.top)])
    }
}

/// `std.line_count`: how many lines the input has.
pub struct LineCount;

#[derive(Debug, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct LineCountSettings {}

impl NodeType for LineCount {
    const TYPE_NAME: &'static str = "std.line_count";
    const VERSION: &'static str = VERSION;
    const DESCRIPTION: &'static str = "Counts the lines of its input (a last line without a newline counts too)";
    type Settings = LineCountSettings;

    fn inputs() -> Vec<PortSpec> {
        vec![text_port("text", "the text whose lines to count")]
    }
    fn outputs() -> Vec<PortSpec> {
        vec![text_port("count", "the number of lines, as one line")]
    }
    fn settings_schema() -> serde_json::Value {
        schema::<Self::Settings>()
    }
    fn tags() -> Vec<&'static str> {
        vec!["counts", "text"]
    }

    fn compute(_: Self::Settings, mut inputs: Inputs, _: &Context<'_>) -> Result<Vec<Payload>, NodeError> {
        // Counting bytes needs no UTF-8 check and agrees with `str::lines`.
        let data = inputs.require("text")?.data;
        let newlines = data.iter().filter(|&&b| b == b'\n').count();
        let unterminated = usize::from(data.last().is_some_and(|&b| b != b'\n'));
        Ok(vec![Payload::text("count", format!("{}\n", newlines + unterminated))])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use backplane_plugin_api::testing::call_node;
    use serde_json::{Value, json};

    fn counts(settings: Value, tables: &[&str]) -> Result<String, String> {
        let inputs = tables.iter().map(|t| Payload::text("counts", (*t).into())).collect();
        let out = call_node::<MergeCounts>(settings, inputs, "/").map_err(|e| e.to_string())?;
        assert_eq!(out[0].port.as_str(), "counts");
        Ok(out[0].as_text().unwrap().to_owned())
    }

    fn word_count(settings: Value, text: &str) -> String {
        let out = call_node::<WordCount>(settings, vec![Payload::text("text", text.into())], "/").unwrap();
        assert_eq!(out[0].port.as_str(), "counts");
        out[0].as_text().unwrap().to_owned()
    }

    #[test]
    fn word_count_sorts_by_count_then_word() {
        let text = "b a c\nb a\n\tb  d";
        assert_eq!(word_count(json!({}), text), "b\t3\na\t2\nc\t1\nd\t1\n");
        assert_eq!(word_count(json!({ "top": 2 }), text), "b\t3\na\t2\n");
        assert_eq!(word_count(json!({ "min_count": 2 }), text), "b\t3\na\t2\n");
        assert_eq!(word_count(json!({}), " \n "), "");
    }

    #[test]
    fn word_count_rejects_unknown_settings() {
        let err =
            call_node::<WordCount>(json!({ "limit": 3 }), vec![Payload::text("text", "a".into())], "/").unwrap_err();
        assert!(err.to_string().contains("unknown field `limit`"), "{err}");
    }

    #[test]
    fn merge_counts_sums_tables_in_canonical_order() {
        let merged = counts(json!({}), &["a\t2\nb\t5\n", "c\t7\na\t4\n", ""]).unwrap();
        assert_eq!(merged, "c\t7\na\t6\nb\t5\n");
        assert_eq!(counts(json!({ "top": 1 }), &["x\t1\ny\t1\n"]).unwrap(), "x\t1\n");
    }

    #[test]
    fn merge_counts_names_the_malformed_line() {
        let err = counts(json!({}), &["a\t1\n", "b\t2\nc 3\n"]).unwrap_err();
        assert_eq!(err, "counts input #2, line 2: expected `word<TAB>count` with a whole number, found `c 3`");
        let err = counts(json!({}), &["a\tmany\n"]).unwrap_err();
        assert!(err.starts_with("counts input #1, line 1:"), "{err}");
    }

    #[test]
    fn line_count_counts_terminated_and_trailing_lines() {
        for (text, expected) in [("", "0\n"), ("a\nb\n", "2\n"), ("a\nb", "2\n"), ("\n\n", "2\n")] {
            let out = call_node::<LineCount>(json!({}), vec![Payload::text("text", text.into())], "/").unwrap();
            assert_eq!(out[0].port.as_str(), "count");
            assert_eq!(out[0].as_text().unwrap(), expected, "for {text:?}");
        }
    }

    #[test]
    fn line_count_without_input_names_the_port() {
        let err = call_node::<LineCount>(json!({}), vec![], "/").unwrap_err();
        assert_eq!(err.to_string(), "input port `text` received no data");
    }
}
