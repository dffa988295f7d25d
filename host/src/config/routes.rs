//! `[[route]]` rules: which nodes go where, checked in order, first match wins.
//!
//! ```toml
//! [[route]]
//! match = { type = "std.shell", id = "fetch-*", labels = { team = "nlp" } }  # all given must match (globs)
//! backend = "big"                                  # send matching nodes to this instance, or
//! require = { tags = ["gpu"], flags = ["remote"], isolation = "process" }  # let capabilities decide
//! backend_options = { threads = 1 }                # derive an instance with these settings
//! retry = { infrastructure_attempts = 5 }           # retry policy for these nodes
//! ```

use crate::spanned_toml::{Reader, TableView};
use backplane_plugin_api::{CapabilityFlags, Isolation, Requirements, abi_stable::std_types::RString};
use globset::{Glob, GlobMatcher};
use std::ops::Range;
use toml::{Spanned, de::DeValue};

/// A glob with the text it was written as.
#[derive(Debug, Clone)]
pub struct Pattern {
    pub text: String,
    matcher: GlobMatcher,
}

/// Longest `match` glob accepted, in bytes. Node types, ids and label values
/// are short; a huge glob only makes a huge regex (globset panics compiling
/// one of ~400,000 characters).
pub const MAX_GLOB_LEN: usize = 1024;
/// Most wildcards (`*`, `?`, `[`, `{`) in one glob, bounding the regex's size.
pub const MAX_GLOB_WILDCARDS: usize = 64;

impl Pattern {
    pub fn new(text: &str) -> Result<Self, String> {
        if text.len() > MAX_GLOB_LEN {
            return Err(format!("it is {} bytes long; globs may have at most {MAX_GLOB_LEN}", text.len()));
        }
        let wildcards = text.bytes().filter(|b| matches!(b, b'*' | b'?' | b'[' | b'{')).count();
        if wildcards > MAX_GLOB_WILDCARDS {
            return Err(format!("it has {wildcards} wildcards; globs may have at most {MAX_GLOB_WILDCARDS}"));
        }
        let glob = Glob::new(text).map_err(|e| e.kind().to_string())?;
        // Bounded above, but a regex engine's limit must still not become a panic.
        let matcher = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| glob.compile_matcher()))
            .map_err(|_| "it is too complex to compile; simplify it".to_owned())?;
        Ok(Self { text: text.to_owned(), matcher })
    }
    pub fn is_match(&self, value: &str) -> bool {
        self.matcher.is_match(value)
    }
}

#[derive(Debug, Clone)]
pub struct RouteRule {
    /// 1-based position among the rules, for messages.
    pub number: usize,
    /// Line of the rule in the config file.
    pub line: usize,
    pub node_type: Option<Pattern>,
    pub node_id: Option<Pattern>,
    pub labels: Vec<(String, Pattern)>,
    pub backend: Option<Spanned<String>>,
    pub require: Requirements,
    pub backend_options: Option<serde_json::Value>,
    /// Where each of `backend_options`' values is, by JSON pointer (`""` is the table).
    pub backend_options_spans: Vec<(String, Range<usize>)>,
    /// `retry = { ... }` for the matching nodes (a node's own `retry` wins).
    pub retry: Option<crate::policy::RetryOverride>,
    /// `timeout_secs` for the matching nodes, in ms (0: none; a node's own wins).
    pub timeout_ms: u64,
    pub span: Range<usize>,
}

impl RouteRule {
    pub fn matches(&self, node_type: &str, node_id: &str, labels: &[(String, String)]) -> bool {
        self.node_type.as_ref().is_none_or(|p| p.is_match(node_type))
            && self.node_id.as_ref().is_none_or(|p| p.is_match(node_id))
            && self.labels.iter().all(|(key, p)| labels.iter().any(|(k, v)| k == key && p.is_match(v)))
    }

    /// How the rule reads in `backplane plan`: `route #2 (type = "std.*")`.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(p) = &self.node_type {
            parts.push(format!("type = \"{}\"", p.text));
        }
        if let Some(p) = &self.node_id {
            parts.push(format!("id = \"{}\"", p.text));
        }
        for (k, p) in &self.labels {
            parts.push(format!("labels.{k} = \"{}\"", p.text));
        }
        if parts.is_empty() {
            parts.push("every node".into());
        }
        format!("route #{} ({})", self.number, parts.join(", "))
    }
}

fn pattern(r: &mut Reader<'_>, value: &Spanned<DeValue<'_>>, what: &str) -> Option<Pattern> {
    let DeValue::String(text) = value.get_ref() else {
        r.error(value.span(), format!("{what} must be a glob string"));
        return None;
    };
    match Pattern::new(text) {
        Ok(p) => Some(p),
        Err(e) => {
            let shown: String = text.chars().take(40).collect();
            let shown = if shown.len() < text.len() { format!("{shown}…") } else { shown };
            r.error(value.span(), format!("invalid glob `{shown}` in {what}: {e}"));
            None
        }
    }
}

fn strings(r: &mut Reader<'_>, value: &Spanned<DeValue<'_>>, what: &str) -> Vec<String> {
    match value.get_ref() {
        DeValue::Array(items) => items
            .iter()
            .filter_map(|item| match item.get_ref() {
                DeValue::String(s) => Some(s.to_string()),
                _ => {
                    r.error(item.span(), format!("{what} must be strings"));
                    None
                }
            })
            .collect(),
        _ => {
            r.error(value.span(), format!("{what} must be an array of strings"));
            Vec::new()
        }
    }
}

/// Reads one `[[route]]` table.
pub fn parse_rule(r: &mut Reader<'_>, mut view: TableView<'_, '_>, number: usize) -> Option<RouteRule> {
    let line = r.file.location(view.span.start).0;
    let span = view.span.clone();
    let (mut node_type, mut node_id, mut labels) = (None, None, Vec::new());
    match view.table(r, "match", format!("the match of route #{number}")) {
        Some(mut m) => {
            if let Some(v) = m.get("type") {
                node_type = pattern(r, v, "`match.type`");
            }
            if let Some(v) = m.get("id") {
                node_id = pattern(r, v, "`match.id`");
            }
            if let Some(table) = m.table(r, "labels", "`match.labels`") {
                for (key, _, value) in table.entries() {
                    if let Some(p) = pattern(r, value, &format!("`match.labels.{key}`")) {
                        labels.push((key.to_owned(), p));
                    }
                }
            }
            m.finish(r, &["type", "id", "labels"]);
        }
        None => r.error_help(
            span.clone(),
            format!("route #{number} has no `match`"),
            "add e.g. `match = { type = \"std.*\" }` (use `match = {}` to match every node)",
        ),
    }
    let backend = view.string(r, "backend");
    let mut require = Requirements::default();
    if let Some(mut req) = view.table(r, "require", format!("the requirements of route #{number}")) {
        if let Some(v) = req.get("tags") {
            require.tags = strings(r, v, "`require.tags`").into_iter().map(RString::from).collect();
        }
        if let Some(v) = req.get("flags") {
            for flag in strings(r, v, "`require.flags`") {
                match CapabilityFlags::from_name(&flag) {
                    Some(f) => require.flags = require.flags | f,
                    None => {
                        let known: Vec<&str> = CapabilityFlags::NAMES.iter().map(|(n, _)| *n).collect();
                        r.error_help(
                            v.span(),
                            format!("unknown capability `{flag}`"),
                            format!("known: {}", known.join(", ")),
                        );
                    }
                }
            }
        }
        if let Some(isolation) = req.string(r, "isolation") {
            match Isolation::from_name(isolation.get_ref()) {
                Some(i) => require.isolation = i,
                None => r.error_help(
                    isolation.span(),
                    format!("unknown isolation `{}`", isolation.get_ref()),
                    "use none, process or sandbox",
                ),
            }
        }
        req.finish(r, &["tags", "flags", "isolation"]);
    }
    let mut backend_options = None;
    let mut backend_options_spans = Vec::new();
    if let Some(value) = view.get("backend_options") {
        match value.get_ref() {
            DeValue::Table(_) => {
                match crate::spanned_toml::to_json(value, &mut String::new(), &mut backend_options_spans) {
                    Ok(json) => backend_options = Some(json),
                    Err((span, message)) => r.error(span, message),
                }
            }
            _ => r.error(value.span(), "`backend_options` must be a table of backend settings"),
        }
    }
    let retry = view
        .table(r, "retry", format!("the retry policy of route #{number}"))
        .map(|t| crate::policy::parse_retry(r, t));
    // A bad `timeout_secs` is its own error, not also "no action".
    let has_timeout = view.get("timeout_secs").is_some();
    let timeout_ms = crate::workflow::timeout_ms(r, &mut view);
    if backend.is_none()
        && require == Requirements::default()
        && backend_options.is_none()
        && retry.is_none()
        && !has_timeout
    {
        r.error_help(
            span.clone(),
            format!("route #{number} has no action"),
            "add `backend = \"<instance>\"`, `require = { tags = [...] }`, `backend_options = { ... }`, `retry = { ... }` or `timeout_secs = N`",
        );
    }
    view.finish(r, &["match", "backend", "require", "backend_options", "retry", "timeout_secs"]);
    let rule = RouteRule {
        number,
        line,
        node_type,
        node_id,
        labels,
        backend,
        require,
        backend_options,
        backend_options_spans,
        retry,
        timeout_ms,
        span,
    };
    Some(rule)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_or_wild_globs_are_errors_not_panics() {
        assert!(Pattern::new("std.*").unwrap().is_match("std.shell"));
        let long = "a".repeat(400_000);
        assert!(Pattern::new(&long).unwrap_err().contains("at most 1024"));
        let wild = "*".repeat(65);
        assert!(Pattern::new(&wild).unwrap_err().contains("65 wildcards"));
        assert!(Pattern::new("[").unwrap_err().contains("unclosed"), "{}", Pattern::new("[").unwrap_err());
        // A glob at the wildcard bound still compiles and matches.
        let busy = Pattern::new(&"{a,b}*?".repeat(21)).unwrap();
        assert!(busy.is_match(&"ax".repeat(21)) && !busy.is_match("ax"));
    }
}
