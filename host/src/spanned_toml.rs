//! Reading TOML with every key's and value's location, reporting all
//! problems (wrong types, missing and unknown keys) instead of the first.
//!
//! Config and workflow files are small, so we walk `toml`'s spanned document
//! tree by hand rather than through serde: serde stops at the first error.

use crate::diagnostic::{Diagnostic, SourceFile};
use std::ops::Range;
use toml::{
    Spanned,
    de::{DeArray, DeTable, DeValue},
};

/// Collects diagnostics while reading one file.
pub struct Reader<'f> {
    pub file: &'f SourceFile,
    pub diagnostics: Vec<Diagnostic>,
}

impl<'f> Reader<'f> {
    pub fn new(file: &'f SourceFile) -> Self {
        Self { file, diagnostics: Vec::new() }
    }

    pub fn error(&mut self, span: Range<usize>, message: impl Into<String>) {
        self.diagnostics.push(self.file.diagnostic(span, message));
    }

    pub fn error_help(&mut self, span: Range<usize>, message: impl Into<String>, help: impl Into<String>) {
        self.diagnostics.push(self.file.diagnostic(span, message).with_help(help));
    }

    /// Parses the whole document; a syntax error is reported and yields `None`.
    pub fn parse(&mut self) -> Option<Spanned<DeTable<'f>>> {
        if let Some(at) = too_deep(&self.file.text, MAX_NESTING) {
            self.error_help(
                at..at,
                format!("arrays and inline tables are nested more than {MAX_NESTING} deep"),
                "flatten the value; no workflow or config needs this depth",
            );
            return None;
        }
        match DeTable::parse(&self.file.text) {
            Ok(table) => Some(table),
            Err(e) => {
                let span = e.span().unwrap_or(0..0);
                self.error(span, format!("invalid TOML: {}", e.message().trim_end()));
                None
            }
        }
    }
}

/// Deepest nesting of arrays and inline tables accepted. Checked on the
/// text before parsing: the parser's tree for 40 MB of `[` takes gigabytes.
pub const MAX_NESTING: usize = 64;

/// The offset of the first `[` or `{` opening a value deeper than `limit`,
/// skipping strings and comments. Table headers (`[a]`, `[[a]]`) open at most
/// two levels and close on their line, so they never reach a sane limit.
fn too_deep(text: &str, limit: usize) -> Option<usize> {
    let bytes = text.as_bytes();
    let (mut depth, mut i) = (0usize, 0);
    while i < bytes.len() {
        match bytes[i] {
            b'[' | b'{' => {
                depth += 1;
                if depth > limit {
                    return Some(i);
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            b'#' => i = memchr_or_end(bytes, i, b'\n'),
            quote @ (b'"' | b'\'') => i = string_end(bytes, i, quote),
            _ => {}
        }
        i += 1;
    }
    None
}

fn memchr_or_end(bytes: &[u8], from: usize, byte: u8) -> usize {
    bytes[from..].iter().position(|&b| b == byte).map_or(bytes.len(), |p| from + p)
}

/// The index of the last byte of the string starting at `start` (a quote).
fn string_end(bytes: &[u8], start: usize, quote: u8) -> usize {
    let triple = bytes.get(start..start + 3).is_some_and(|q| q.iter().all(|&b| b == quote));
    let mut i = start + if triple { 3 } else { 1 };
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if quote == b'"' => i += 1,
            b'\n' if !triple => return i,
            b if b == quote && !triple => return i,
            b if b == quote && bytes.get(i..i + 3).is_some_and(|q| q.iter().all(|&b| b == quote)) => {
                // Up to two quotes may end the content itself: three quotes, `a`, five quotes is `a""`.
                let run = bytes[i..].iter().take(5).take_while(|&&b| b == quote).count();
                return i + run - 1;
            }
            _ => {}
        }
        i += 1;
    }
    bytes.len()
}

/// A table being read: remembers which keys were used so the rest can be
/// reported as unknown.
pub struct TableView<'a, 'i> {
    pub table: &'a DeTable<'i>,
    pub span: Range<usize>,
    /// How messages name this table: "node `count`", "[backends.local]".
    pub what: String,
    used: Vec<&'a str>,
}

pub fn type_name(value: &DeValue<'_>) -> &'static str {
    match value {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a float",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a datetime",
        DeValue::Array(_) => "an array",
        DeValue::Table(_) => "a table",
    }
}

impl<'a, 'i> TableView<'a, 'i> {
    pub fn new(table: &'a DeTable<'i>, span: Range<usize>, what: impl Into<String>) -> Self {
        Self { table, span, what: what.into(), used: Vec::new() }
    }

    /// The value under `key`, marking it used.
    pub fn get(&mut self, key: &'a str) -> Option<&'a Spanned<DeValue<'i>>> {
        self.used.push(key);
        self.table.get(key)
    }

    fn wrong_type(&self, r: &mut Reader<'_>, key: &str, value: &Spanned<DeValue<'_>>, expected: &str) {
        r.error(
            value.span(),
            format!("`{key}` in {} must be {expected}, found {}", self.what, type_name(value.get_ref())),
        );
    }

    pub fn string(&mut self, r: &mut Reader<'_>, key: &'a str) -> Option<Spanned<String>> {
        let value = self.get(key)?;
        match value.get_ref() {
            DeValue::String(s) => Some(Spanned::new(value.span(), s.to_string())),
            _ => {
                self.wrong_type(r, key, value, "a string");
                None
            }
        }
    }

    pub fn required_string(&mut self, r: &mut Reader<'_>, key: &'a str) -> Option<Spanned<String>> {
        if self.table.get(key).is_none() {
            r.error(self.span.clone(), format!("{} is missing `{key}`", self.what));
            self.used.push(key);
            return None;
        }
        self.string(r, key)
    }

    /// A non-negative integer.
    pub fn unsigned(&mut self, r: &mut Reader<'_>, key: &'a str) -> Option<Spanned<u64>> {
        let value = self.get(key)?;
        match value.get_ref() {
            DeValue::Integer(i) => match u64::from_str_radix(i.as_str(), i.radix()) {
                Ok(n) => Some(Spanned::new(value.span(), n)),
                Err(_) => {
                    r.error(value.span(), format!("`{key}` in {} must be a non-negative integer", self.what));
                    None
                }
            },
            _ => {
                self.wrong_type(r, key, value, "a non-negative integer");
                None
            }
        }
    }

    pub fn boolean(&mut self, r: &mut Reader<'_>, key: &'a str) -> Option<Spanned<bool>> {
        let value = self.get(key)?;
        match value.get_ref() {
            DeValue::Boolean(b) => Some(Spanned::new(value.span(), *b)),
            _ => {
                self.wrong_type(r, key, value, "true or false");
                None
            }
        }
    }

    /// A number (integer or float).
    pub fn number(&mut self, r: &mut Reader<'_>, key: &'a str) -> Option<Spanned<f64>> {
        let value = self.get(key)?;
        match number_of(value.get_ref()) {
            Some(n) => Some(Spanned::new(value.span(), n)),
            None => {
                self.wrong_type(r, key, value, "a number");
                None
            }
        }
    }

    pub fn table(&mut self, r: &mut Reader<'_>, key: &'a str, what: impl Into<String>) -> Option<TableView<'a, 'i>> {
        let value = self.get(key)?;
        match value.get_ref() {
            DeValue::Table(t) => Some(TableView::new(t, value.span(), what)),
            _ => {
                self.wrong_type(r, key, value, "a table");
                None
            }
        }
    }

    pub fn array(&mut self, r: &mut Reader<'_>, key: &'a str) -> Option<&'a DeArray<'i>> {
        let value = self.get(key)?;
        match value.get_ref() {
            DeValue::Array(a) => Some(a),
            _ => {
                self.wrong_type(r, key, value, "an array");
                None
            }
        }
    }

    /// Keys in table order with their spans.
    pub fn entries(&self) -> impl Iterator<Item = (&'a str, Range<usize>, &'a Spanned<DeValue<'i>>)> {
        self.table.iter().map(|(k, v)| (k.get_ref().as_ref(), k.span(), v))
    }

    /// Reports every key that was never read.
    pub fn finish(self, r: &mut Reader<'_>, expected: &[&str]) {
        for (key, span, _) in self.entries() {
            if !self.used.contains(&key) {
                let help = match suggest(key, expected) {
                    Some(near) => format!("did you mean `{near}`? expected one of: {}", expected.join(", ")),
                    None => format!("expected one of: {}", expected.join(", ")),
                };
                r.error_help(span, format!("unknown key `{key}` in {}", self.what), help);
            }
        }
    }
}

pub fn number_of(value: &DeValue<'_>) -> Option<f64> {
    match value {
        DeValue::Integer(i) => i64::from_str_radix(i.as_str(), i.radix()).ok().map(|n| n as f64),
        DeValue::Float(f) => f.as_str().replace('_', "").parse().ok(),
        _ => None,
    }
}

/// The closest candidate to a misspelt name, if one is close: similar by
/// Jaro-Winkler, or one edit (a transposition counts as one) away, which
/// catches the typos of short names that Jaro-Winkler scores low (`tpo`).
pub fn suggest<'c>(name: &str, candidates: &[&'c str]) -> Option<&'c str> {
    candidates
        .iter()
        .map(|c| {
            let score = strsim::jaro_winkler(name, c);
            (if score <= 0.8 && strsim::osa_distance(name, c) == 1 { 0.81 } else { score }, *c)
        })
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

/// Appends `/key` to a JSON pointer, escaped (RFC 6901: `~` as `~0`, `/` as `~1`).
pub fn push_pointer_key(pointer: &mut String, key: &str) {
    pointer.push('/');
    pointer.push_str(&key.replace('~', "~0").replace('/', "~1"));
}

/// The top-level key a JSON pointer starts with, unescaped (`""` for the root).
pub fn pointer_top_key(pointer: &str) -> String {
    let first = pointer.strip_prefix('/').unwrap_or(pointer).split('/').next().unwrap_or_default();
    first.replace("~1", "/").replace("~0", "~")
}

/// A TOML value as JSON, plus the span of every nested value by JSON pointer
/// (so schema errors found later point into the file).
pub fn to_json(
    value: &Spanned<DeValue<'_>>,
    pointer: &mut String,
    spans: &mut Vec<(String, Range<usize>)>,
) -> Result<serde_json::Value, (Range<usize>, String)> {
    spans.push((pointer.clone(), value.span()));
    Ok(match value.get_ref() {
        DeValue::String(s) => serde_json::Value::String(s.to_string()),
        DeValue::Integer(i) => match i64::from_str_radix(i.as_str(), i.radix()) {
            Ok(n) => n.into(),
            Err(_) => return Err((value.span(), "integer out of range".into())),
        },
        DeValue::Float(f) => {
            let n: f64 = f.as_str().replace('_', "").parse().map_err(|_| (value.span(), "invalid float".to_owned()))?;
            serde_json::Number::from_f64(n)
                .map(serde_json::Value::Number)
                .ok_or_else(|| (value.span(), "nan and inf are not allowed here".to_owned()))?
        }
        DeValue::Boolean(b) => (*b).into(),
        DeValue::Datetime(d) => d.to_string().into(),
        DeValue::Array(items) => {
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                let len = pointer.len();
                pointer.push_str(&format!("/{i}"));
                out.push(to_json(item, pointer, spans)?);
                pointer.truncate(len);
            }
            serde_json::Value::Array(out)
        }
        DeValue::Table(table) => {
            let mut out = serde_json::Map::new();
            for (key, item) in table.iter() {
                let key = key.get_ref().as_ref();
                let len = pointer.len();
                push_pointer_key(pointer, key);
                out.insert(key.to_owned(), to_json(item, pointer, spans)?);
                pointer.truncate(len);
            }
            serde_json::Value::Object(out)
        }
    })
}

/// Spans by JSON pointer, for looking many up (one per schema error).
pub fn pointer_index(spans: &[(String, Range<usize>)]) -> std::collections::HashMap<&str, Range<usize>> {
    spans.iter().map(|(pointer, span)| (pointer.as_str(), span.clone())).collect()
}

/// The span recorded for the longest prefix of `pointer`.
pub fn span_for_pointer(
    index: &std::collections::HashMap<&str, Range<usize>>,
    pointer: &str,
    fallback: Range<usize>,
) -> Range<usize> {
    let mut pointer = pointer;
    loop {
        if let Some(span) = index.get(pointer) {
            return span.clone();
        }
        match pointer.rfind('/') {
            Some(i) => pointer = &pointer[..i],
            None => return fallback,
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn pointer_keys_are_escaped_and_read_back() {
        let mut pointer = String::new();
        super::push_pointer_key(&mut pointer, "a/b~c");
        super::push_pointer_key(&mut pointer, "d");
        assert_eq!(pointer, "/a~1b~0c/d");
        assert_eq!(super::pointer_top_key(&pointer), "a/b~c");
        assert_eq!(super::pointer_top_key(""), "");
    }

    use super::*;

    #[test]
    fn nesting_is_measured_outside_strings_and_comments() {
        assert_eq!(too_deep("a = [[1]]", 2), None);
        assert_eq!(too_deep("a = [[[1]]]", 2), Some(6));
        assert_eq!(too_deep("a = \"[[[[\" # [[[[\nb = '{{{{'\nc = \"\"\"[[[\n[[[\"\"\"", 1), None);
        assert_eq!(too_deep("a = \"\\\"[[[\"", 1), None);
        // Multi-line strings may end with one or two quotes of content.
        assert_eq!(too_deep("a = [\"\"\"x\"\"\"\"]\nb = [\"\"\"y\"\"\"\"\"]\nc = [1]", 1), None);
        assert_eq!(too_deep("a = ['''x'''']\nb = ['''y''''']", 1), None);
        assert_eq!(too_deep("a = [\"\"\"x\"\"\"\", [[1]]]", 2), Some(16), "nothing hides behind the closing quotes");
        assert_eq!(too_deep("[[node]]\nid = { x = [1] }", 2), None);
        assert_eq!(too_deep(&"[".repeat(40_000_000), MAX_NESTING), Some(MAX_NESTING));
    }
}
