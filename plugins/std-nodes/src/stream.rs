//! Streaming producers: node types whose output is a stream of items.

use crate::{VERSION, schema, text_port};
use backplane_plugin_api::prelude::*;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// `std.split`: the input text as a stream of items, a few lines (or at
/// most so many bytes) each. Every item keeps its line endings, so the
/// stream's accumulated value is the input text again.
pub struct Split;

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct SplitSettings {
    /// Lines per item.
    #[schemars(range(min = 1))]
    pub lines: usize,
    /// At most this many bytes per item instead (0: split by `lines`). An
    /// item ends early at a line end when one falls in its last quarter.
    pub bytes: usize,
}

impl Default for SplitSettings {
    fn default() -> Self {
        Self { lines: 1, bytes: 0 }
    }
}

impl NodeType for Split {
    const TYPE_NAME: &'static str = "std.split";
    const VERSION: &'static str = VERSION;
    const DESCRIPTION: &'static str =
        "Streams the input text as items of `lines` lines (or at most `bytes` bytes) each, in order";
    type Settings = SplitSettings;

    fn inputs() -> Vec<PortSpec> {
        vec![text_port("text", "the text to split")]
    }
    fn outputs() -> Vec<PortSpec> {
        vec![text_port("items", "one item per `lines` lines or `bytes` bytes; accumulated: the input text").stream()]
    }
    fn settings_schema() -> serde_json::Value {
        schema::<Self::Settings>()
    }
    fn tags() -> Vec<&'static str> {
        vec!["text", "stream"]
    }

    fn compute(s: Self::Settings, mut inputs: Inputs, ctx: &Context<'_>) -> Result<Vec<Payload>, NodeError> {
        let text = inputs.text("text")?;
        for item in items(&text, &s) {
            ctx.emit("items", Payload::text("items", item.to_owned()))?;
        }
        Ok(Vec::new())
    }
}

/// The items of `text`: consecutive slices that together are `text`.
fn items<'t>(text: &'t str, s: &SplitSettings) -> Box<dyn Iterator<Item = &'t str> + 't> {
    if s.bytes > 0 {
        let max = s.bytes;
        let mut rest = text;
        Box::new(std::iter::from_fn(move || {
            if rest.is_empty() {
                return None;
            }
            let mut end = rest.len().min(max);
            if end < rest.len() {
                while !rest.is_char_boundary(end) {
                    end -= 1;
                }
                // A character wider than `bytes`: take it whole.
                if end == 0 {
                    end = rest.char_indices().nth(1).map_or(rest.len(), |(i, _)| i);
                }
                // A line end in the last quarter ends the item there.
                if let Some(nl) = rest[..end].rfind('\n').filter(|&nl| nl + 1 >= end - end / 4) {
                    end = nl + 1;
                }
            }
            let (item, tail) = rest.split_at(end);
            rest = tail;
            Some(item)
        }))
    } else {
        let per_item = s.lines.max(1);
        let mut rest = text;
        Box::new(std::iter::from_fn(move || {
            if rest.is_empty() {
                return None;
            }
            let end = rest.match_indices('\n').nth(per_item - 1).map_or(rest.len(), |(i, _)| i + 1);
            let (item, tail) = rest.split_at(end);
            rest = tail;
            Some(item)
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(text: &str, lines: usize, bytes: usize) -> Vec<&str> {
        items(text, &SplitSettings { lines, bytes }).collect()
    }

    #[test]
    fn items_are_slices_that_give_the_text_back() {
        assert_eq!(split("a\nb\nc", 1, 0), ["a\n", "b\n", "c"]);
        assert_eq!(split("a\nb\nc\n", 2, 0), ["a\nb\n", "c\n"]);
        assert_eq!(split("", 1, 0), Vec::<&str>::new());
        assert_eq!(split("abcdefgh", 1, 3), ["abc", "def", "gh"]);
        // A line end in the last quarter ends the item there.
        assert_eq!(split("abcdefg\nhij", 1, 8), ["abcdefg\n", "hij"]);
        // Never inside a character, and a character wider than `bytes` whole.
        assert_eq!(split("ééé", 1, 3), ["é", "é", "é"]);
        assert_eq!(split("€x", 1, 1), ["€", "x"]);
        for (lines, bytes) in [(1, 0), (3, 0), (1, 5), (1, 64)] {
            let text = "one two\nthree\n\nfour ü five\nsix";
            assert_eq!(split(text, lines, bytes).concat(), text);
        }
    }
}
