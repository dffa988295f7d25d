//! Line-oriented text transforms.

use crate::{VERSION, lines_payload, schema, text_port, unset};
use backplane_plugin_api::prelude::*;
use regex::Regex;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;

fn text_in() -> Vec<PortSpec> {
    vec![text_port("text", "input text, one record per line")]
}

fn text_out() -> Vec<PortSpec> {
    vec![text_port("text", "output text, one record per line")]
}

/// A `pattern` setting that does not compile, as a validate-time problem.
fn check_pattern(pattern: &str) -> Vec<SettingsProblem> {
    match compile(pattern) {
        Ok(_) => Vec::new(),
        Err(e) => vec![SettingsProblem::at("pattern", e.to_string())],
    }
}

/// Compiles a `pattern` setting, naming it in the error.
fn compile(pattern: &str) -> Result<Regex, NodeError> {
    if pattern.is_empty() {
        return Err(NodeError::new("`pattern` is empty: set it to a regular expression"));
    }
    Regex::new(pattern).map_err(|e| NodeError::new(format!("invalid regex `{pattern}`: {e}")))
}

/// `std.lines`: normalises lines (trim, drop empty, lowercase).
pub struct Lines;

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct LinesSettings {
    /// Strip leading and trailing whitespace from each line.
    pub trim: bool,
    /// Drop lines that are empty (after trimming).
    pub skip_empty: bool,
    /// Lowercase each line.
    pub lowercase: bool,
}

impl Default for LinesSettings {
    fn default() -> Self {
        Self { trim: true, skip_empty: true, lowercase: false }
    }
}

impl NodeType for Lines {
    const TYPE_NAME: &'static str = "std.lines";
    const VERSION: &'static str = VERSION;
    const DESCRIPTION: &'static str = "Normalises lines: trims whitespace, drops empty lines, optionally lowercases";
    type Settings = LinesSettings;

    fn inputs() -> Vec<PortSpec> {
        text_in()
    }
    fn outputs() -> Vec<PortSpec> {
        text_out()
    }
    fn settings_schema() -> serde_json::Value {
        schema::<Self::Settings>()
    }
    fn tags() -> Vec<&'static str> {
        vec!["text"]
    }

    fn compute(s: Self::Settings, mut inputs: Inputs, _: &Context<'_>) -> Result<Vec<Payload>, NodeError> {
        let text = inputs.text("text")?;
        let lines = text
            .lines()
            .map(|line| if s.trim { line.trim() } else { line })
            .filter(|line| !(s.skip_empty && line.is_empty()))
            .map(|line| if s.lowercase { line.to_lowercase() } else { line.to_owned() });
        Ok(vec![lines_payload("text", lines)])
    }
}

/// `std.chunk`: one of `count` nearly-equal contiguous slices of the lines,
/// for a static fan-out (one node per `index`).
pub struct Chunk;

#[derive(Debug, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ChunkSettings {
    /// Which chunk to output, from 0 to `count - 1`.
    #[serde(skip_serializing_if = "unset")]
    pub index: usize,
    /// How many chunks the lines are split into.
    #[serde(skip_serializing_if = "unset")]
    #[schemars(range(min = 1))]
    pub count: usize,
}

impl NodeType for Chunk {
    const TYPE_NAME: &'static str = "std.chunk";
    const VERSION: &'static str = VERSION;
    const DESCRIPTION: &'static str =
        "Outputs chunk `index` of the input's lines split into `count` contiguous, nearly equal chunks";
    type Settings = ChunkSettings;

    fn inputs() -> Vec<PortSpec> {
        text_in()
    }
    fn outputs() -> Vec<PortSpec> {
        text_out()
    }
    fn settings_schema() -> serde_json::Value {
        schema::<Self::Settings>()
    }
    fn tags() -> Vec<&'static str> {
        vec!["text"]
    }

    fn check_settings(s: &Self::Settings, _: &CheckContext) -> Vec<SettingsProblem> {
        if s.count > 0 && s.index >= s.count {
            let last = s.count - 1;
            vec![
                SettingsProblem::at("index", format!("`index` {} is out of range for `count` {}", s.index, s.count))
                    .help(format!("chunks are numbered from 0 to {last}")),
            ]
        } else {
            Vec::new()
        }
    }

    fn compute(s: Self::Settings, mut inputs: Inputs, _: &Context<'_>) -> Result<Vec<Payload>, NodeError> {
        if s.count == 0 {
            return Err(NodeError::new("`count` must be at least 1"));
        }
        // Hosts built against plugin-api 1.0 never ran the check.
        if let Some(problem) = Self::check_settings(&s, &CheckContext::default()).into_iter().next() {
            return Err(problem.into_node_error());
        }
        let ChunkSettings { index, count } = s;
        let text = inputs.text("text")?;
        let lines: Vec<&str> = text.lines().collect();
        // Boundaries at i*n/count give chunk sizes that differ by at most one.
        let bound = |i: usize| i * lines.len() / count;
        Ok(vec![lines_payload("text", &lines[bound(index)..bound(index + 1)])])
    }
}

/// `std.regex_filter`: keeps (or drops) the lines a regex matches.
pub struct RegexFilter;

#[derive(Debug, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RegexFilterSettings {
    /// A regular expression (Rust `regex` syntax), matched anywhere in a line.
    #[serde(skip_serializing_if = "unset")]
    pub pattern: String,
    /// Keep the lines that do *not* match instead.
    #[serde(default)]
    pub invert: bool,
}

impl NodeType for RegexFilter {
    const TYPE_NAME: &'static str = "std.regex_filter";
    const VERSION: &'static str = VERSION;
    const DESCRIPTION: &'static str = "Keeps the lines matching a regex (or, inverted, the lines not matching)";
    type Settings = RegexFilterSettings;

    fn inputs() -> Vec<PortSpec> {
        text_in()
    }
    fn outputs() -> Vec<PortSpec> {
        text_out()
    }
    fn settings_schema() -> serde_json::Value {
        schema::<Self::Settings>()
    }
    fn tags() -> Vec<&'static str> {
        vec!["text"]
    }

    fn check_settings(s: &Self::Settings, _: &CheckContext) -> Vec<SettingsProblem> {
        check_pattern(&s.pattern)
    }

    fn compute(s: Self::Settings, mut inputs: Inputs, _: &Context<'_>) -> Result<Vec<Payload>, NodeError> {
        let regex = compile(&s.pattern)?;
        let text = inputs.text("text")?;
        Ok(vec![lines_payload("text", text.lines().filter(|line| regex.is_match(line) != s.invert))])
    }
}

/// `std.regex_replace`: replaces every match in the whole text.
pub struct RegexReplace;

#[derive(Debug, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RegexReplaceSettings {
    /// A regular expression (Rust `regex` syntax); matches may span lines.
    #[serde(skip_serializing_if = "unset")]
    pub pattern: String,
    /// The replacement: `$1` or `${name}` insert a capture group, `$$` a `$`; empty deletes.
    #[serde(default)]
    pub replacement: String,
}

impl NodeType for RegexReplace {
    const TYPE_NAME: &'static str = "std.regex_replace";
    const VERSION: &'static str = VERSION;
    const DESCRIPTION: &'static str = "Replaces every match of a regex in the text";
    type Settings = RegexReplaceSettings;

    fn inputs() -> Vec<PortSpec> {
        vec![text_port("text", "input text")]
    }
    fn outputs() -> Vec<PortSpec> {
        vec![text_port("text", "the text with every match replaced")]
    }
    fn settings_schema() -> serde_json::Value {
        schema::<Self::Settings>()
    }
    fn tags() -> Vec<&'static str> {
        vec!["text"]
    }

    fn check_settings(s: &Self::Settings, _: &CheckContext) -> Vec<SettingsProblem> {
        check_pattern(&s.pattern)
    }

    fn compute(s: Self::Settings, mut inputs: Inputs, _: &Context<'_>) -> Result<Vec<Payload>, NodeError> {
        let regex = compile(&s.pattern)?;
        let text = inputs.text("text")?;
        let replaced = regex.replace_all(&text, s.replacement.as_str()).into_owned();
        Ok(vec![Payload::text("text", replaced)])
    }
}

/// `std.tokenize`: splits text into tokens, one per line.
pub struct Tokenize;

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct TokenizeSettings {
    /// A regex matching one token; the default matches words (letters, digits, apostrophes).
    pub pattern: String,
    /// Lowercase each token, so `The` and `the` count as one word.
    pub lowercase: bool,
}

impl Default for TokenizeSettings {
    fn default() -> Self {
        Self { pattern: r"[\p{L}\p{N}']+".into(), lowercase: true }
    }
}

impl NodeType for Tokenize {
    const TYPE_NAME: &'static str = "std.tokenize";
    const VERSION: &'static str = VERSION;
    const DESCRIPTION: &'static str = "Splits text into tokens matching a regex (words by default), one per line";
    type Settings = TokenizeSettings;

    fn inputs() -> Vec<PortSpec> {
        vec![text_port("text", "input text")]
    }
    fn outputs() -> Vec<PortSpec> {
        vec![text_port("text", "one token per line")]
    }
    fn settings_schema() -> serde_json::Value {
        schema::<Self::Settings>()
    }
    fn tags() -> Vec<&'static str> {
        vec!["text"]
    }

    fn check_settings(s: &Self::Settings, _: &CheckContext) -> Vec<SettingsProblem> {
        check_pattern(&s.pattern)
    }

    fn compute(s: Self::Settings, mut inputs: Inputs, _: &Context<'_>) -> Result<Vec<Payload>, NodeError> {
        let regex = compile(&s.pattern)?;
        let text = inputs.text("text")?;
        // Lowercase after matching so case-sensitive patterns keep their meaning;
        // skip empty matches, which would come out as blank lines.
        let tokens = regex
            .find_iter(&text)
            .map(|m| m.as_str())
            .filter(|t| !t.is_empty())
            .map(|t| if s.lowercase { Cow::Owned(t.to_lowercase()) } else { Cow::Borrowed(t) });
        Ok(vec![lines_payload("text", tokens)])
    }
}

/// `std.concat`: joins several texts in edge order.
pub struct Concat;

#[derive(Debug, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ConcatSettings {
    /// Inserted between consecutive parts (not after the last).
    pub separator: String,
}

impl NodeType for Concat {
    const TYPE_NAME: &'static str = "std.concat";
    const VERSION: &'static str = VERSION;
    const DESCRIPTION: &'static str = "Joins its input texts, in the order the edges are written, with a separator";
    type Settings = ConcatSettings;

    fn inputs() -> Vec<PortSpec> {
        vec![text_port("parts", "the texts to join, in edge order").multiple()]
    }
    fn outputs() -> Vec<PortSpec> {
        vec![text_port("text", "the joined text")]
    }
    fn settings_schema() -> serde_json::Value {
        schema::<Self::Settings>()
    }
    fn tags() -> Vec<&'static str> {
        vec!["text"]
    }

    fn compute(s: Self::Settings, mut inputs: Inputs, _: &Context<'_>) -> Result<Vec<Payload>, NodeError> {
        let mut text = String::new();
        for (i, part) in inputs.take_all("parts").iter().enumerate() {
            let part = part
                .as_text()
                .map_err(|e| NodeError::new(format!("input `parts` #{} is not UTF-8 text: {e}", i + 1)))?;
            if i > 0 {
                text.push_str(&s.separator);
            }
            text.push_str(part);
        }
        Ok(vec![Payload::text("text", text)])
    }
}

/// `std.sort`: sorts lines as text or as numbers.
pub struct Sort;

#[derive(Debug, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct SortSettings {
    /// Sort in descending order.
    pub reverse: bool,
    /// Compare lines as numbers; every line must then be a number.
    pub numeric: bool,
    /// Drop repeated lines.
    pub unique: bool,
}

impl NodeType for Sort {
    const TYPE_NAME: &'static str = "std.sort";
    const VERSION: &'static str = VERSION;
    const DESCRIPTION: &'static str = "Sorts lines as text or numbers, optionally reversed and without duplicates";
    type Settings = SortSettings;

    fn inputs() -> Vec<PortSpec> {
        text_in()
    }
    fn outputs() -> Vec<PortSpec> {
        text_out()
    }
    fn settings_schema() -> serde_json::Value {
        schema::<Self::Settings>()
    }
    fn tags() -> Vec<&'static str> {
        vec!["text"]
    }

    fn compute(s: Self::Settings, mut inputs: Inputs, _: &Context<'_>) -> Result<Vec<Payload>, NodeError> {
        let text = inputs.text("text")?;
        let mut lines: Vec<&str> = text.lines().collect();
        if s.numeric {
            let mut keyed = lines
                .iter()
                .enumerate()
                .map(|(i, line)| match line.trim().parse::<f64>() {
                    Ok(n) => Ok((n, *line)),
                    Err(_) => Err(NodeError::new(format!(
                        "line {} (`{line}`) is not a number; filter it out first or turn `numeric` off",
                        i + 1
                    ))),
                })
                .collect::<Result<Vec<_>, _>>()?;
            // Ties fall back to text so `1` and `1.0` come out in a stable order.
            keyed.sort_by(|a, b| a.0.total_cmp(&b.0).then_with(|| a.1.cmp(b.1)));
            lines = keyed.into_iter().map(|(_, line)| line).collect();
        } else {
            lines.sort_unstable();
        }
        if s.reverse {
            lines.reverse();
        }
        if s.unique {
            lines.dedup();
        }
        Ok(vec![lines_payload("text", lines)])
    }
}

/// `std.head`: the first lines of a text.
pub struct Head;

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct HeadSettings {
    /// How many lines to keep.
    pub lines: usize,
}

impl Default for HeadSettings {
    fn default() -> Self {
        Self { lines: 10 }
    }
}

impl NodeType for Head {
    const TYPE_NAME: &'static str = "std.head";
    const VERSION: &'static str = VERSION;
    const DESCRIPTION: &'static str = "Keeps the first `lines` lines";
    type Settings = HeadSettings;

    fn inputs() -> Vec<PortSpec> {
        text_in()
    }
    fn outputs() -> Vec<PortSpec> {
        text_out()
    }
    fn settings_schema() -> serde_json::Value {
        schema::<Self::Settings>()
    }
    fn tags() -> Vec<&'static str> {
        vec!["text"]
    }

    fn compute(s: Self::Settings, mut inputs: Inputs, _: &Context<'_>) -> Result<Vec<Payload>, NodeError> {
        let text = inputs.text("text")?;
        Ok(vec![lines_payload("text", text.lines().take(s.lines))])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use backplane_plugin_api::testing::call_node;
    use serde_json::{Value, json};

    fn run<N: NodeType>(settings: Value, input: &str) -> Result<String, String> {
        let out =
            call_node::<N>(settings, vec![Payload::text("text", input.into())], "/").map_err(|e| e.to_string())?;
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].content_type.as_str(), "text/plain; charset=utf-8");
        Ok(out[0].as_text().unwrap().to_owned())
    }

    #[test]
    fn lines_trims_skips_empty_and_lowercases() {
        let input = "  Hello \n\n   \nWorld";
        assert_eq!(run::<Lines>(json!({}), input).unwrap(), "Hello\nWorld\n");
        assert_eq!(run::<Lines>(json!({ "lowercase": true }), input).unwrap(), "hello\nworld\n");
        let raw = run::<Lines>(json!({ "trim": false, "skip_empty": false }), input).unwrap();
        assert_eq!(raw, "  Hello \n\n   \nWorld\n");
    }

    #[test]
    fn lines_rejects_non_utf8_and_unknown_settings() {
        let bytes = Payload::bytes("text", "text/plain", vec![0xff, 0xfe]);
        let err = call_node::<Lines>(json!({}), vec![bytes], "/").unwrap_err();
        assert!(err.to_string().contains("input port `text` is not UTF-8 text"), "{err}");
        let err = run::<Lines>(json!({ "trim": true, "strip": true }), "x").unwrap_err();
        assert!(err.contains("unknown field `strip`"), "{err}");
    }

    #[test]
    fn chunk_splits_into_contiguous_nearly_equal_parts() {
        let input: String = (1..=10).map(|i| format!("{i}\n")).collect();
        let chunks: Vec<String> =
            (0..3).map(|index| run::<Chunk>(json!({ "index": index, "count": 3 }), &input).unwrap()).collect();
        assert_eq!(chunks, ["1\n2\n3\n", "4\n5\n6\n", "7\n8\n9\n10\n"]);
        assert_eq!(chunks.concat(), input);
        // More chunks than lines: some are empty, none lose lines.
        let tiny: Vec<String> =
            (0..4).map(|index| run::<Chunk>(json!({ "index": index, "count": 4 }), "a\nb").unwrap()).collect();
        assert_eq!(tiny.concat(), "a\nb\n");
    }

    #[test]
    fn chunk_rejects_bad_index_and_count() {
        let err = run::<Chunk>(json!({ "index": 3, "count": 3 }), "a").unwrap_err();
        assert_eq!(err, "`index` 3 is out of range for `count` 3: chunks are numbered from 0 to 2");
        let err = run::<Chunk>(json!({ "index": 0, "count": 0 }), "a").unwrap_err();
        assert_eq!(err, "`count` must be at least 1");
        assert_eq!(Chunk::settings_schema()["required"], json!(["index", "count"]));
    }

    #[test]
    fn regex_filter_keeps_or_drops_matching_lines() {
        let input = "apple\nbanana\ncherry\navocado\n";
        assert_eq!(run::<RegexFilter>(json!({ "pattern": "^a" }), input).unwrap(), "apple\navocado\n");
        let inverted = run::<RegexFilter>(json!({ "pattern": "^a", "invert": true }), input).unwrap();
        assert_eq!(inverted, "banana\ncherry\n");
    }

    #[test]
    fn regex_filter_names_an_invalid_pattern() {
        let err = run::<RegexFilter>(json!({ "pattern": "a(b" }), "ab").unwrap_err();
        assert!(err.starts_with("invalid regex `a(b`:"), "{err}");
        assert_eq!(RegexFilter::settings_schema()["required"], json!(["pattern"]));
    }

    #[test]
    fn regex_replace_replaces_all_with_captures_across_lines() {
        let settings = json!({ "pattern": r"(\w+)@(\w+)", "replacement": "$2 at $1" });
        assert_eq!(run::<RegexReplace>(settings, "a@b c@d\ne@f").unwrap(), "b at a d at c\nf at e");
        let joined = run::<RegexReplace>(json!({ "pattern": r"\n" }), "a\nb\n").unwrap();
        assert_eq!(joined, "ab");
    }

    #[test]
    fn regex_replace_requires_a_pattern() {
        let err = run::<RegexReplace>(json!({ "replacement": "x" }), "a").unwrap_err();
        assert!(err.contains("missing field `pattern`"), "{err}");
        let err = run::<RegexReplace>(json!({ "pattern": "" }), "a").unwrap_err();
        assert!(err.contains("`pattern` is empty"), "{err}");
    }

    #[test]
    fn tokenize_extracts_lowercased_words() {
        let out = run::<Tokenize>(json!({}), "Don't panic!\n42 Élan, élan.").unwrap();
        assert_eq!(out, "don't\npanic\n42\nélan\nélan\n");
        let capitalised = run::<Tokenize>(json!({ "pattern": r"[A-Z]\w*" }), "Alpha beta Gamma").unwrap();
        assert_eq!(capitalised, "alpha\ngamma\n");
        let kept = run::<Tokenize>(json!({ "pattern": r"\S+", "lowercase": false }), "A b\tC").unwrap();
        assert_eq!(kept, "A\nb\nC\n");
    }

    #[test]
    fn tokenize_names_an_invalid_pattern() {
        let err = run::<Tokenize>(json!({ "pattern": "[" }), "a").unwrap_err();
        assert!(err.starts_with("invalid regex `[`"), "{err}");
    }

    #[test]
    fn concat_joins_parts_in_order_with_separator() {
        let parts = vec![
            Payload::text("parts", "one".into()),
            Payload::text("parts", "two".into()),
            Payload::text("parts", "three".into()),
        ];
        let out = call_node::<Concat>(json!({ "separator": ", " }), parts, "/").unwrap();
        assert_eq!(out[0].as_text().unwrap(), "one, two, three");
    }

    #[test]
    fn concat_names_a_non_utf8_part() {
        let parts = vec![Payload::text("parts", "ok".into()), Payload::bytes("parts", "x", vec![0xc3])];
        let err = call_node::<Concat>(json!({}), parts, "/").unwrap_err();
        assert!(err.to_string().starts_with("input `parts` #2 is not UTF-8 text"), "{err}");
    }

    #[test]
    fn sort_orders_text_numbers_reversed_and_unique() {
        let input = "b\na\nc\na\n";
        assert_eq!(run::<Sort>(json!({}), input).unwrap(), "a\na\nb\nc\n");
        assert_eq!(run::<Sort>(json!({ "reverse": true, "unique": true }), input).unwrap(), "c\nb\na\n");
        let numbers = "10\n9\n-1.5\n100\n9\n";
        assert_eq!(run::<Sort>(json!({ "numeric": true }), numbers).unwrap(), "-1.5\n9\n9\n10\n100\n");
        let down = run::<Sort>(json!({ "numeric": true, "reverse": true, "unique": true }), numbers).unwrap();
        assert_eq!(down, "100\n10\n9\n-1.5\n");
    }

    #[test]
    fn sort_numeric_names_the_bad_line() {
        let err = run::<Sort>(json!({ "numeric": true }), "1\ntwo\n3").unwrap_err();
        assert!(err.starts_with("line 2 (`two`) is not a number"), "{err}");
    }

    #[test]
    fn head_keeps_the_first_lines() {
        let input: String = (1..=20).map(|i| format!("{i}\n")).collect();
        assert_eq!(run::<Head>(json!({}), &input).unwrap().lines().count(), 10);
        assert_eq!(run::<Head>(json!({ "lines": 2 }), &input).unwrap(), "1\n2\n");
        assert_eq!(run::<Head>(json!({ "lines": 5 }), "x\ny").unwrap(), "x\ny\n");
    }

    #[test]
    fn head_rejects_a_negative_count() {
        let err = run::<Head>(json!({ "lines": -1 }), "x").unwrap_err();
        assert!(err.starts_with("invalid configuration: settings of `std.head`"), "{err}");
    }
}
