//! Workflow files: a DAG of nodes written in TOML.
//!
//! ```toml
//! [workflow]
//! name = "word-frequencies"
//!
//! [[node]]
//! id = "read"
//! type = "std.read_files"
//! settings = { glob = "docs/*.txt" }
//!
//! [[node]]
//! id = "count"
//! type = "std.word_count"
//! inputs = { text = "read.text" }      # an array for ports taking several edges
//! backend = "local"                    # optional: pin to a backend instance
//! labels = { team = "nlp" }
//! resources = { cpus = 1, memory = "512MiB", gpus = 0, custom = { licence = 1 } }
//! timeout_secs = 30
//! cache = false                        # optional: override the type's `deterministic`
//!
//! [[output]]
//! from = "count.counts"
//! to = "out/frequencies.tsv"           # relative to this file; "-" is stdout
//! ```
//!
//! `[params]` declares parameters that `${params.name}` puts into settings,
//! labels, resources and output paths ([`params`]).
//!
//! This module checks the file's shape (keys, types, edge syntax) and reports
//! every problem at once; [`crate::plan`] checks it against the registries.

pub mod params;
pub mod select;

use crate::{
    diagnostic::{DEFAULT_MAX_FILE_BYTES, Diagnostic, Diagnostics, SourceFile},
    spanned_toml::{Reader, TableView, number_of, to_json},
};
pub use params::{ParamInputs, Params};
pub use select::{Partial, Selection};

/// What a command line adds to a workflow file: parameter values and which
/// nodes to run.
#[derive(Debug, Clone, Default)]
pub struct Invocation {
    pub params: ParamInputs,
    pub selection: Selection,
}
use backplane_plugin_api::{
    Resources,
    abi_stable::std_types::{RString, Tuple2},
};
use std::{
    ops::Range,
    path::{Path, PathBuf},
};
use toml::{Spanned, de::DeValue};

/// `node.port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortRef {
    pub node: String,
    pub port: String,
}

#[derive(Debug, Clone)]
pub struct InputDecl {
    pub port: String,
    pub port_span: Range<usize>,
    pub sources: Vec<Spanned<PortRef>>,
    /// `{ each = "node.port" }`: the node runs once per item of that stream.
    pub each: Option<EachDecl>,
}

/// A per-item edge: `inputs = { text = { each = "split.items", window = 64 } }`.
#[derive(Debug, Clone, Copy)]
pub struct EachDecl {
    /// How many items the producer may be ahead of this consumer.
    pub window: u32,
}

/// How many items a producer may be ahead of an `each` consumer, unless the edge says.
pub const DEFAULT_WINDOW: u32 = 1024;

/// The largest credit window an `each` edge may ask for.
pub const MAX_WINDOW: u64 = 1 << 20;

#[derive(Debug, Clone)]
pub struct NodeDecl {
    pub span: Range<usize>,
    pub id: Spanned<String>,
    pub type_name: Spanned<String>,
    pub settings: Option<serde_json::Value>,
    pub settings_span: Option<Range<usize>>,
    /// Span of every value inside `settings`, by JSON pointer.
    pub settings_spans: Vec<(String, Range<usize>)>,
    pub inputs: Vec<InputDecl>,
    pub backend: Option<Spanned<String>>,
    pub labels: Vec<(String, String)>,
    pub resources: Resources,
    pub resources_span: Option<Range<usize>>,
    pub timeout_ms: u64,
    /// `retry = { ... }`: overrides the config's `[policy.retry]`.
    pub retry: Option<crate::policy::RetryOverride>,
    /// `cache = true|false`: overrides the node type's `deterministic`.
    pub cache: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutputTarget {
    Stdout,
    File(PathBuf),
}

#[derive(Debug, Clone)]
pub struct OutputDecl {
    pub from: Spanned<PortRef>,
    /// Where it goes, resolved against the workflow's directory.
    pub to: Spanned<OutputTarget>,
    /// `to` as written (relative or absolute).
    pub to_text: String,
}

#[derive(Debug, Clone)]
pub struct Workflow {
    pub source: SourceFile,
    pub name: String,
    pub description: String,
    /// Relative paths in the workflow resolve against this directory.
    pub working_dir: PathBuf,
    pub nodes: Vec<NodeDecl>,
    pub outputs: Vec<OutputDecl>,
    /// This run's parameter values, in declaration order.
    pub params: Vec<params::ParamValue>,
}

#[derive(Debug, thiserror::Error)]
pub enum WorkflowError {
    #[error("cannot read workflow file {}: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{0}")]
    Invalid(Diagnostics),
}

impl WorkflowError {
    /// The problems as diagnostics (an unreadable file as one without a position).
    pub fn diagnostics(&self) -> Vec<Diagnostic> {
        match self {
            WorkflowError::Read { path, .. } => vec![Diagnostic::unlocated(path.clone(), self.to_string())],
            WorkflowError::Invalid(d) => d.0.clone(),
        }
    }
}

/// What messages call a workflow read from stdin.
pub const STDIN_NAME: &str = "<stdin>";

/// Reads a workflow file for parsing: at most `max_bytes`, UTF-8.
/// `-` reads stdin instead (named [`STDIN_NAME`] in messages; its relative
/// paths resolve against the current directory).
pub fn read_source(path: &Path, max_bytes: u64) -> Result<SourceFile, WorkflowError> {
    if path.as_os_str() == "-" {
        use std::io::Read;
        let mut bytes = Vec::new();
        std::io::stdin()
            .lock()
            .take(max_bytes.saturating_add(1))
            .read_to_end(&mut bytes)
            .map_err(|source| WorkflowError::Read { path: STDIN_NAME.into(), source })?;
        return SourceFile::from_bytes(STDIN_NAME, bytes, max_bytes).map_err(|e| match e {
            crate::diagnostic::ReadError::Io { path, source } => WorkflowError::Read { path, source },
            crate::diagnostic::ReadError::Invalid(d) => WorkflowError::Invalid(Diagnostics::sorted(vec![d])),
        });
    }
    crate::diagnostic::read_source(
        path,
        max_bytes,
        |path, source| WorkflowError::Read { path, source },
        WorkflowError::Invalid,
    )
}

/// A year: longer "timeouts" are mistakes, and would overflow deadlines.
const MAX_TIMEOUT_SECS: f64 = 31_536_000.0;

/// `timeout_secs` of a node or a route rule, in milliseconds (0: none).
pub(crate) fn timeout_ms(r: &mut Reader<'_>, view: &mut TableView<'_, '_>) -> u64 {
    match view.number(r, "timeout_secs") {
        Some(t) if t.get_ref().is_finite() && *t.get_ref() > 0.0 && *t.get_ref() <= MAX_TIMEOUT_SECS => {
            (t.into_inner() * 1000.0).ceil() as u64
        }
        Some(t) => {
            r.error_help(
                t.span(),
                "invalid `timeout_secs`",
                "use a number of seconds greater than 0 and at most 31536000 (a year)",
            );
            0
        }
        None => 0,
    }
}

const NODE_KEYS: &[&str] =
    &["id", "type", "settings", "inputs", "backend", "labels", "resources", "timeout_secs", "retry", "cache"];

/// Longest label key or value, and custom resource name.
const MAX_LABEL_LEN: usize = 128;

/// Label keys and resource names also name Ray resources and appear in
/// `key=value` mappings, so they stay plain.
fn valid_label_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= MAX_LABEL_LEN
        && key.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/'))
}

fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn parse_port_ref(text: &str) -> Option<PortRef> {
    let (node, port) = text.split_once('.')?;
    (valid_id(node) && !port.is_empty()).then(|| PortRef { node: node.to_owned(), port: port.to_owned() })
}

/// `"512MiB"`, `"2GB"`, `"1024"` or an integer, in bytes.
pub fn parse_memory(text: &str) -> Option<u64> {
    backplane_plugin_api::parse_size(text)
}

impl Workflow {
    pub fn load(path: &Path) -> Result<Self, WorkflowError> {
        Self::parse(read_source(path, DEFAULT_MAX_FILE_BYTES)?).map_err(WorkflowError::Invalid)
    }

    /// The workflow, failing on any problem.
    pub fn parse(source: SourceFile) -> Result<Self, Diagnostics> {
        match Self::parse_lenient(source) {
            (Some(workflow), diagnostics) if diagnostics.is_empty() => Ok(workflow),
            (_, diagnostics) => Err(Diagnostics::sorted(diagnostics)),
        }
    }

    /// The workflow as far as it could be read (`None` only for invalid
    /// TOML) plus every problem found, so later passes can add theirs and
    /// the user sees all of them at once.
    pub fn parse_lenient(source: SourceFile) -> (Option<Self>, Vec<Diagnostic>) {
        Self::parse_lenient_with(source, &ParamInputs::default())
    }

    /// [`Self::parse_lenient`] with parameters set from the command line.
    pub fn parse_lenient_with(source: SourceFile, inputs: &ParamInputs) -> (Option<Self>, Vec<Diagnostic>) {
        let mut r = Reader::new(&source);
        let Some(doc) = r.parse() else { return (None, r.diagnostics) };
        let mut top = TableView::new(doc.get_ref(), doc.span(), "the workflow");
        let params_table = top.table(&mut r, "params", "[params]");
        let params = Params::read(&mut r, params_table, inputs);
        let stem = source.path.file_stem().map_or_else(|| "workflow".into(), |s| s.to_string_lossy().into_owned());
        let (mut name, mut description) = (stem, String::new());
        if let Some(mut meta) = top.table(&mut r, "workflow", "[workflow]") {
            if let Some(n) = meta.string(&mut r, "name") {
                name = n.into_inner();
            }
            if let Some(d) = meta.string(&mut r, "description") {
                description = d.into_inner();
            }
            meta.finish(&mut r, &["name", "description"]);
        }
        let mut nodes = Vec::new();
        if let Some(array) = top.array(&mut r, "node") {
            for (i, item) in array.iter().enumerate() {
                match item.get_ref() {
                    DeValue::Table(t) => {
                        if let Some(node) =
                            parse_node(&mut r, TableView::new(t, item.span(), format!("[[node]] #{}", i + 1)), &params)
                        {
                            nodes.push(node);
                        }
                    }
                    _ => r.error(item.span(), "each `node` entry must be a table ([[node]])"),
                }
            }
        }
        let base = match source.path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let mut outputs = Vec::new();
        if let Some(array) = top.array(&mut r, "output") {
            for (i, item) in array.iter().enumerate() {
                let DeValue::Table(t) = item.get_ref() else {
                    r.error(item.span(), "each `output` entry must be a table ([[output]])");
                    continue;
                };
                let mut view = TableView::new(t, item.span(), format!("[[output]] #{}", i + 1));
                let from = view.required_string(&mut r, "from");
                let to = view.required_string(&mut r, "to");
                view.finish(&mut r, &["from", "to"]);
                let (Some(from), Some(to)) = (from, to) else { continue };
                let Some(port_ref) = parse_port_ref(from.get_ref()) else {
                    r.error_help(
                        from.span(),
                        format!("`{}` is not a `node.port` reference", from.get_ref()),
                        "write e.g. `count.counts`",
                    );
                    continue;
                };
                let to_text = params.string(&mut r, to.span(), to.get_ref());
                let target = match to_text.as_str() {
                    "" => {
                        r.error_help(
                            to.span(),
                            "the output's `to` is empty",
                            "write a file path relative to the workflow, e.g. `out/result.txt`, or `-` for stdout",
                        );
                        continue;
                    }
                    "-" => OutputTarget::Stdout,
                    path => OutputTarget::File(base.join(path)),
                };
                outputs.push(OutputDecl {
                    from: Spanned::new(from.span(), port_ref),
                    to: Spanned::new(to.span(), target),
                    to_text,
                });
            }
        }
        top.finish(&mut r, &["workflow", "params", "node", "output"]);
        if nodes.is_empty() && r.diagnostics.is_empty() {
            r.error_help(0..0, "the workflow has no nodes", "add a [[node]] table with `id` and `type`");
        }
        let diagnostics = std::mem::take(&mut r.diagnostics);
        drop(r);
        let working_dir = base.canonicalize().unwrap_or(base);
        let params = params.values;
        (Some(Self { source, name, description, working_dir, nodes, outputs, params }), diagnostics)
    }
}

fn parse_node(r: &mut Reader<'_>, mut view: TableView<'_, '_>, params: &Params) -> Option<NodeDecl> {
    let id = view.required_string(r, "id");
    if let Some(id) = &id {
        view.what = format!("node `{}`", id.get_ref());
        if !valid_id(id.get_ref()) {
            r.error_help(
                id.span(),
                format!("invalid node id `{}`", id.get_ref()),
                "ids use letters, digits, `_` and `-` (a `.` separates node and port in edges)",
            );
        }
    }
    let type_name = view.required_string(r, "type");
    let (mut settings, mut settings_span, mut settings_spans) = (None, None, Vec::new());
    if let Some(value) = view.get("settings") {
        if matches!(value.get_ref(), DeValue::Table(_)) {
            match to_json(value, &mut String::new(), &mut settings_spans) {
                Ok(mut json) => {
                    let index = crate::spanned_toml::pointer_index(&settings_spans);
                    let span_of = |p: &str| crate::spanned_toml::span_for_pointer(&index, p, value.span());
                    params.settings(r, &mut json, &mut String::new(), &span_of);
                    settings = Some(json);
                }
                Err((span, message)) => r.error(span, message),
            }
            settings_span = Some(value.span());
        } else {
            r.error(value.span(), format!("`settings` of {} must be a table", view.what));
        }
    }
    let mut inputs = Vec::new();
    if let Some(table) = view.table(r, "inputs", "inputs") {
        for (port, port_span, value) in table.entries() {
            let mut sources = Vec::new();
            let mut add = |r: &mut Reader<'_>, v: &Spanned<DeValue<'_>>| match v.get_ref() {
                DeValue::String(s) => match parse_port_ref(s) {
                    Some(p) => sources.push(Spanned::new(v.span(), p)),
                    None => r.error_help(
                        v.span(),
                        format!("`{s}` is not a `node.port` reference"),
                        "write e.g. `read.text`",
                    ),
                },
                _ => r.error_help(
                    v.span(),
                    format!("input `{port}` must be a `node.port` string or an array of them"),
                    "or `{ each = \"node.port\" }` to run the node once per item of a stream",
                ),
            };
            let mut each = None;
            match value.get_ref() {
                DeValue::Table(table) => {
                    let mut view = TableView::new(table, value.span(), format!("input `{port}`"));
                    let from = view.required_string(r, "each");
                    let window = view.unsigned(r, "window");
                    view.finish(r, &["each", "window"]);
                    let window = match window {
                        Some(w) if !(1..=MAX_WINDOW).contains(w.get_ref()) => {
                            r.error(w.span(), format!("`window` must be 1 to {MAX_WINDOW} items"));
                            None
                        }
                        Some(w) => Some(*w.get_ref() as u32),
                        None => None,
                    };
                    if let Some(from) = from {
                        add(r, &Spanned::new(from.span(), DeValue::String(from.get_ref().clone().into())));
                        each = Some(EachDecl { window: window.unwrap_or(DEFAULT_WINDOW) });
                    }
                }
                DeValue::Array(items) if items.is_empty() => r.error_help(
                    value.span(),
                    format!("input `{port}` has an empty list of edges"),
                    "connect it (`\"node.port\"`) or remove the key",
                ),
                DeValue::Array(items) => items.iter().for_each(|v| add(r, v)),
                _ => add(r, value),
            }
            inputs.push(InputDecl { port: port.to_owned(), port_span, sources, each });
        }
    }
    let backend = view.string(r, "backend");
    let mut labels = Vec::new();
    if let Some(table) = view.table(r, "labels", "labels") {
        for (key, key_span, value) in table.entries() {
            if !valid_label_key(key) {
                r.error_help(
                    key_span,
                    format!("invalid label key `{key}`"),
                    format!("label keys are 1 to {MAX_LABEL_LEN} letters, digits, `_`, `-`, `.` or `/`"),
                );
                continue;
            }
            match value.get_ref() {
                DeValue::String(s) => {
                    let s = params.string(r, value.span(), s);
                    if s.len() <= MAX_LABEL_LEN && !s.chars().any(char::is_control) {
                        labels.push((key.to_owned(), s));
                    } else {
                        r.error_help(
                            value.span(),
                            format!("invalid value for label `{key}`"),
                            format!("label values are at most {MAX_LABEL_LEN} bytes without control characters"),
                        );
                    }
                }
                _ => r.error(value.span(), format!("label `{key}` must be a string")),
            }
        }
    }
    let resources_span = view.get("resources").map(|v| v.span());
    let resources = match view.table(r, "resources", format!("the resources of {}", view.what)) {
        Some(table) => parse_resources(r, table, params),
        None => Resources::default(),
    };
    let timeout_ms = timeout_ms(r, &mut view);
    let retry =
        view.table(r, "retry", format!("the retry policy of {}", view.what)).map(|t| crate::policy::parse_retry(r, t));
    let cache = view.boolean(r, "cache").map(Spanned::into_inner);
    let span = view.span.clone();
    view.finish(r, NODE_KEYS);
    Some(NodeDecl {
        span,
        id: id?,
        type_name: type_name?,
        settings,
        settings_span,
        settings_spans,
        inputs,
        backend,
        labels,
        resources,
        resources_span,
        timeout_ms,
        retry,
        cache,
    })
}

/// Reads a `resources = { cpus, memory, gpus, custom = { ... } }` table: a
/// node's (where `${params.x}` may stand for any amount), or what an
/// operator declares a backend instance offers.
pub(crate) fn parse_resources(r: &mut Reader<'_>, mut table: TableView<'_, '_>, params: &Params) -> Resources {
    let mut resources = Resources::default();
    let table_what = table.what.clone();
    let amount = |r: &mut Reader<'_>, value: Option<&Spanned<DeValue<'_>>>, what: &str| -> Option<f64> {
        let value = value?;
        let n = match params.value(r, value) {
            // Already reported.
            Some(serde_json::Value::Null) => return None,
            Some(json) => json.as_f64(),
            None => match number_of(value.get_ref()) {
                Some(n) => Some(n),
                None => {
                    let found = crate::spanned_toml::type_name(value.get_ref());
                    r.error(value.span(), format!("`{what}` in {table_what} must be a number, found {found}"));
                    return None;
                }
            },
        };
        match n {
            Some(n) if n.is_finite() && n >= 0.0 => Some(n),
            _ => {
                r.error_help(value.span(), format!("invalid `{what}`"), "use a number of at least 0");
                None
            }
        }
    };
    let cpus = table.get("cpus");
    if let Some(cpus) = amount(r, cpus, "cpus") {
        resources.cpus = cpus;
    }
    let gpus = table.get("gpus");
    if let Some(gpus) = amount(r, gpus, "gpus") {
        resources.gpus = gpus;
    }
    if let Some(memory) = table.get("memory") {
        let json = params.value(r, memory);
        let bytes = match (&json, memory.get_ref()) {
            (Some(serde_json::Value::Null), _) => Some(0),
            (Some(serde_json::Value::String(s)), _) => parse_memory(s),
            (Some(json), _) => json.as_f64().filter(|n| *n >= 0.0).map(|n| n as u64),
            (None, DeValue::String(s)) => parse_memory(s),
            (None, other) => number_of(other).filter(|n| *n >= 0.0).map(|n| n as u64),
        };
        match bytes {
            Some(b) => resources.memory_bytes = b,
            None => {
                r.error_help(memory.span(), "invalid `memory`", "use bytes or a size such as \"512MiB\" or \"2GB\"")
            }
        }
    }
    if let Some(custom) = table.table(r, "custom", "custom resources") {
        for (key, key_span, value) in custom.entries() {
            if !valid_label_key(key) {
                r.error_help(
                    key_span,
                    format!("invalid custom resource name `{key}`"),
                    format!("names are 1 to {MAX_LABEL_LEN} letters, digits, `_`, `-`, `.` or `/`"),
                );
                continue;
            }
            let n = match params.value(r, value) {
                Some(serde_json::Value::Null) => continue,
                Some(json) => json.as_f64(),
                None => number_of(value.get_ref()),
            };
            match n {
                Some(n) if n.is_finite() && n >= 0.0 => resources.custom.push(Tuple2(RString::from(key), n)),
                Some(_) => r.error_help(
                    value.span(),
                    format!("invalid amount of custom resource `{key}`"),
                    "use a number of at least 0",
                ),
                None => r.error(value.span(), format!("custom resource `{key}` must be a number")),
            }
        }
    }
    table.finish(r, &["cpus", "memory", "gpus", "custom"]);
    resources
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_sizes() {
        assert_eq!(parse_memory("512MiB"), Some(512 * 1024 * 1024));
        assert_eq!(parse_memory("2GB"), Some(2_000_000_000));
        assert_eq!(parse_memory("100"), Some(100));
        assert_eq!(parse_memory("lots"), None);
    }

    #[test]
    fn port_refs_need_a_dot() {
        assert_eq!(parse_port_ref("a.b"), Some(PortRef { node: "a".into(), port: "b".into() }));
        assert_eq!(parse_port_ref("ab"), None);
        assert_eq!(parse_port_ref(".b"), None);
    }
}
