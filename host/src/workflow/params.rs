//! Workflow parameters: `[params]` declares them, `-p name=value` and
//! `--params-file` set them, and `${params.name}` puts them into settings,
//! labels, resources and output paths.
//!
//! ```toml
//! [params]
//! glob = { type = "string", default = "docs/*.txt", description = "the files to count" }
//! top = 10                         # shorthand: the default, its type inferred
//! sample = { type = "string" }     # no default: the run must set it
//!
//! [[node]]
//! settings = { glob = "${params.glob}", n = "${params.top}" }   # n stays an integer
//! ```
//!
//! A value that is exactly one `${params.x}` takes the parameter's type; one
//! inside longer text is interpolated. `$${params.x}` is a literal
//! `${params.x}`. Other `${...}` (a shell's `${HOME}`) are left alone.
//! Parameters reach the cache key only through the values they change.

use crate::{
    diagnostic::{Diagnostic, SourceFile},
    spanned_toml::{Reader, TableView, suggest},
};
use serde::Serialize;
use std::{ops::Range, path::PathBuf};
use toml::{Spanned, de::DeValue};

/// Longest parameter value accepted from a flag or a file, in bytes.
pub const MAX_PARAM_BYTES: usize = 64 * 1024;

const PREFIX: &str = "${params.";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ParamType {
    String,
    Integer,
    Float,
    Boolean,
}

impl ParamType {
    const NAMES: &[&str] = &["string", "integer", "float", "boolean"];

    fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "string" => Self::String,
            "integer" => Self::Integer,
            "float" => Self::Float,
            "boolean" => Self::Boolean,
            _ => return None,
        })
    }

    fn article(self) -> &'static str {
        ["a string", "an integer", "a float", "a boolean"][self as usize]
    }

    /// A value of this type from text on the command line.
    fn parse_text(self, text: &str) -> Option<serde_json::Value> {
        Some(match self {
            Self::String => text.into(),
            Self::Integer => text.trim().replace('_', "").parse::<i64>().ok()?.into(),
            Self::Float => serde_json::Number::from_f64(text.trim().parse::<f64>().ok()?)?.into(),
            Self::Boolean => match text.trim() {
                "true" => true.into(),
                "false" => false.into(),
                _ => return None,
            },
        })
    }

    /// A TOML value of this type (an integer is also a float).
    fn read_toml(self, value: &DeValue<'_>) -> Option<serde_json::Value> {
        match (self, value) {
            (Self::String, DeValue::String(s)) => Some(s.to_string().into()),
            (Self::Integer, DeValue::Integer(i)) => i64::from_str_radix(i.as_str(), i.radix()).ok().map(Into::into),
            (Self::Float, DeValue::Integer(_) | DeValue::Float(_)) => {
                serde_json::Number::from_f64(crate::spanned_toml::number_of(value)?).map(Into::into)
            }
            (Self::Boolean, DeValue::Boolean(b)) => Some((*b).into()),
            _ => None,
        }
    }

    /// The type a default written alone implies.
    fn of_toml(value: &DeValue<'_>) -> Option<Self> {
        Some(match value {
            DeValue::String(_) => Self::String,
            DeValue::Integer(_) => Self::Integer,
            DeValue::Float(_) => Self::Float,
            DeValue::Boolean(_) => Self::Boolean,
            _ => return None,
        })
    }
}

/// One entry of `[params]`.
#[derive(Debug, Clone)]
pub struct ParamDecl {
    pub name: String,
    pub ty: ParamType,
    pub default: Option<serde_json::Value>,
    pub description: String,
    pub span: Range<usize>,
}

/// Where a parameter's value came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "at")]
pub enum ParamSource {
    Default,
    /// A `--params-file`.
    File(PathBuf),
    /// `-p name=value`.
    Flag,
}

impl std::fmt::Display for ParamSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Default => f.write_str("default"),
            Self::File(path) => write!(f, "{}", path.display()),
            Self::Flag => f.write_str("-p"),
        }
    }
}

/// A parameter's value for this run.
#[derive(Debug, Clone, Serialize)]
pub struct ParamValue {
    pub name: String,
    #[serde(rename = "type")]
    pub ty: ParamType,
    pub value: serde_json::Value,
    pub source: ParamSource,
}

/// What the command line sets: `-p` flags (as typed, `name=value`) and
/// `--params-file`s, read in order; later ones win, flags over files.
#[derive(Debug, Clone, Default)]
pub struct ParamInputs {
    pub flags: Vec<String>,
    pub files: Vec<SourceFile>,
}

/// The values of one run, looked up while the workflow is read.
#[derive(Debug, Clone, Default)]
pub struct Params {
    pub values: Vec<ParamValue>,
    /// Declared names (also those left unset), for suggestions.
    declared: Vec<String>,
}

impl Params {
    fn get(&self, name: &str) -> Option<&serde_json::Value> {
        self.values.iter().find(|p| p.name == name).map(|p| &p.value)
    }

    /// Reads `[params]` and applies `inputs`; every problem goes to `r`
    /// (flags' and files' problems too, under their own names).
    pub(crate) fn read(r: &mut Reader<'_>, table: Option<TableView<'_, '_>>, inputs: &ParamInputs) -> Self {
        // Names whose declarations are broken still count as declared: their
        // uses are not errors of their own.
        let declared: Vec<String> = table.as_ref().map_or_else(Vec::new, |t| {
            t.entries().map(|(name, _, _)| name.to_owned()).filter(|n| valid_name(n)).collect()
        });
        let decls = table.map(|t| declarations(r, t)).unwrap_or_default();
        let mut set: Vec<Option<(serde_json::Value, ParamSource)>> =
            decls.iter().map(|d| d.default.clone().map(|v| (v, ParamSource::Default))).collect();
        let names: Vec<&str> = declared.iter().map(String::as_str).collect();
        for file in &inputs.files {
            read_file(r, file, &decls, &names, &mut set);
        }
        for flag in &inputs.flags {
            let shown = format!("-p {flag}");
            let Some((name, text)) = flag.split_once('=') else {
                r.diagnostics.push(
                    Diagnostic::unlocated(&shown, "a parameter is set as `name=value`")
                        .with_help("write e.g. `-p top=10`"),
                );
                continue;
            };
            let name = name.trim();
            let Some(i) = decls.iter().position(|d| d.name == name) else {
                r.diagnostics.push(
                    Diagnostic::unlocated(&shown, format!("the workflow declares no parameter `{name}`"))
                        .with_help(undeclared_help(name, &names)),
                );
                continue;
            };
            let ty = decls[i].ty;
            match ty.parse_text(text).filter(|_| text.len() <= MAX_PARAM_BYTES) {
                Some(value) => set[i] = Some((value, ParamSource::Flag)),
                None => r.diagnostics.push(
                    Diagnostic::unlocated(&shown, format!("parameter `{name}` takes {}", ty.article()))
                        .with_help(format!("write e.g. `-p {name}={}`", example(ty))),
                ),
            }
        }
        let mut values = Vec::with_capacity(decls.len());
        for (decl, value) in decls.into_iter().zip(set) {
            match value {
                Some((value, source)) => values.push(ParamValue { name: decl.name, ty: decl.ty, value, source }),
                None => r.error_help(
                    decl.span,
                    format!("parameter `{}` has no default and this run does not set it", decl.name),
                    format!("set it with `-p {}=VALUE` or in a `--params-file`, or give it a default", decl.name),
                ),
            }
        }
        Self { values, declared }
    }

    /// `text` with its parameters put in: the typed value when `text` is
    /// exactly one reference, else a string. `Err` is the message and help.
    pub fn substitute(&self, text: &str) -> Result<Option<serde_json::Value>, (String, String)> {
        if !text.contains(PREFIX) {
            return Ok(None);
        }
        if let Some(name) = text.strip_prefix(PREFIX).and_then(|t| t.strip_suffix('}'))
            && !name.contains('}')
        {
            return self.lookup(name).cloned().map(Some);
        }
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(at) = rest.find(PREFIX) {
            if rest[..at].ends_with('$') {
                // `$${params.x}`: the literal `${params.x}`.
                out.push_str(&rest[..at - 1]);
                out.push_str(PREFIX);
                rest = &rest[at + PREFIX.len()..];
                continue;
            }
            out.push_str(&rest[..at]);
            let after = &rest[at + PREFIX.len()..];
            let Some(end) = after.find('}') else {
                return Err((
                    format!("`{}` is not closed", &rest[at..]),
                    "write `${params.NAME}`, or `$${params.` for the text itself".into(),
                ));
            };
            match self.lookup(&after[..end])? {
                serde_json::Value::String(s) => out.push_str(s),
                other => out.push_str(&other.to_string()),
            }
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        Ok(Some(out.into()))
    }

    fn lookup(&self, name: &str) -> Result<&serde_json::Value, (String, String)> {
        if let Some(value) = self.get(name) {
            return Ok(value);
        }
        if self.declared.iter().any(|d| d == name) {
            // Unset or broken: reported once, at its declaration.
            return Ok(&serde_json::Value::Null);
        }
        let names: Vec<&str> = self.declared.iter().map(String::as_str).collect();
        Err((format!("unknown parameter `{name}`"), undeclared_help(name, &names)))
    }

    /// A string value with parameters put in, reporting problems at `span`.
    pub(crate) fn string(&self, r: &mut Reader<'_>, span: Range<usize>, text: &str) -> String {
        match self.substitute(text) {
            Ok(None) => text.to_owned(),
            Ok(Some(serde_json::Value::String(s))) => s,
            Ok(Some(other)) => other.to_string(),
            Err((message, help)) => {
                r.error_help(span, message, help);
                text.to_owned()
            }
        }
    }

    /// A TOML value with parameters put in when it is a string naming them;
    /// `Some(Null)` when that failed and was reported.
    pub(crate) fn value(&self, r: &mut Reader<'_>, value: &Spanned<DeValue<'_>>) -> Option<serde_json::Value> {
        let DeValue::String(text) = value.get_ref() else { return None };
        match self.substitute(text) {
            Ok(v) => v,
            Err((message, help)) => {
                r.error_help(value.span(), message, help);
                Some(serde_json::Value::Null)
            }
        }
    }

    /// Puts parameters into every string of a settings value; `span_of`
    /// locates a JSON pointer for messages.
    pub(crate) fn settings(
        &self,
        r: &mut Reader<'_>,
        value: &mut serde_json::Value,
        pointer: &mut String,
        span_of: &dyn Fn(&str) -> Range<usize>,
    ) {
        match value {
            serde_json::Value::String(text) => match self.substitute(text) {
                Ok(Some(v)) => *value = v,
                Ok(None) => {}
                Err((message, help)) => r.error_help(span_of(pointer), message, help),
            },
            serde_json::Value::Array(items) => {
                for (i, item) in items.iter_mut().enumerate() {
                    let len = pointer.len();
                    pointer.push_str(&format!("/{i}"));
                    self.settings(r, item, pointer, span_of);
                    pointer.truncate(len);
                }
            }
            serde_json::Value::Object(map) => {
                for (key, item) in map.iter_mut() {
                    let len = pointer.len();
                    crate::spanned_toml::push_pointer_key(pointer, key);
                    self.settings(r, item, pointer, span_of);
                    pointer.truncate(len);
                }
            }
            _ => {}
        }
    }
}

fn example(ty: ParamType) -> &'static str {
    ["text", "10", "0.5", "true"][ty as usize]
}

fn undeclared_help(name: &str, names: &[&str]) -> String {
    match (suggest(name, names), names.is_empty()) {
        (_, true) => "declare it in the workflow's `[params]` table, e.g. `[params]` then `top = 10`".into(),
        (Some(near), false) => format!("did you mean `{near}`? the workflow declares: {}", names.join(", ")),
        (None, false) => format!("the workflow declares: {}", names.join(", ")),
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 64 && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn declarations(r: &mut Reader<'_>, table: TableView<'_, '_>) -> Vec<ParamDecl> {
    let mut decls = Vec::new();
    for (name, name_span, value) in table.entries() {
        if !valid_name(name) {
            r.error_help(
                name_span,
                format!("invalid parameter name `{name}`"),
                "names are 1 to 64 letters, digits, `_` and `-`",
            );
            continue;
        }
        let span = name_span.start..value.span().end;
        let decl = match value.get_ref() {
            DeValue::Table(t) => {
                let mut view = TableView::new(t, value.span(), format!("parameter `{name}`"));
                let ty = view.string(r, "type");
                let default = view.get("default");
                let description = view.string(r, "description").map(Spanned::into_inner).unwrap_or_default();
                view.finish(r, &["type", "default", "description"]);
                let ty = match (&ty, default) {
                    (Some(ty), _) => match ParamType::from_name(ty.get_ref()) {
                        Some(t) => t,
                        None => {
                            let near = suggest(ty.get_ref(), ParamType::NAMES)
                                .map_or(String::new(), |n| format!("did you mean `{n}`? "));
                            r.error_help(
                                ty.span(),
                                format!("unknown parameter type `{}`", ty.get_ref()),
                                format!("{near}types are: {}", ParamType::NAMES.join(", ")),
                            );
                            continue;
                        }
                    },
                    (None, Some(d)) => match ParamType::of_toml(d.get_ref()) {
                        Some(t) => t,
                        None => {
                            r.error_help(
                                d.span(),
                                format!("the default of parameter `{name}` is not a string, integer, float or boolean"),
                                "parameters hold one such value",
                            );
                            continue;
                        }
                    },
                    (None, None) => {
                        r.error_help(
                            value.span(),
                            format!("parameter `{name}` has neither a type nor a default"),
                            format!("add `type = \"string\"` (or {}) or a `default`", ParamType::NAMES[1..].join(", ")),
                        );
                        continue;
                    }
                };
                let default = match default {
                    Some(d) => match ty.read_toml(d.get_ref()) {
                        Some(v) => Some(v),
                        None => {
                            r.error(d.span(), format!("the default of parameter `{name}` must be {}", ty.article()));
                            continue;
                        }
                    },
                    None => None,
                };
                ParamDecl { name: name.to_owned(), ty, default, description, span }
            }
            other => match ParamType::of_toml(other).and_then(|ty| Some((ty, ty.read_toml(other)?))) {
                Some((ty, default)) => {
                    ParamDecl { name: name.to_owned(), ty, default: Some(default), description: String::new(), span }
                }
                None => {
                    r.error_help(
                        value.span(),
                        format!("parameter `{name}` must be a default value or a table"),
                        "write e.g. `top = 10` or `top = { type = \"integer\", default = 10, description = \"...\" }`",
                    );
                    continue;
                }
            },
        };
        decls.push(decl);
    }
    decls
}

/// Applies one `--params-file`: a flat table of `name = value`.
fn read_file(
    r: &mut Reader<'_>,
    file: &SourceFile,
    decls: &[ParamDecl],
    names: &[&str],
    set: &mut [Option<(serde_json::Value, ParamSource)>],
) {
    let mut fr = Reader::new(file);
    if let Some(doc) = fr.parse() {
        for (name, name_span, value) in doc.get_ref().iter().map(|(k, v)| (k.get_ref().as_ref(), k.span(), v)) {
            let Some(i) = decls.iter().position(|d| d.name == name) else {
                fr.error_help(
                    name_span,
                    format!("the workflow declares no parameter `{name}`"),
                    undeclared_help(name, names),
                );
                continue;
            };
            let ty = decls[i].ty;
            match ty.read_toml(value.get_ref()) {
                Some(v) if v.as_str().is_none_or(|s| s.len() <= MAX_PARAM_BYTES) => {
                    set[i] = Some((v, ParamSource::File(file.path.clone())));
                }
                Some(_) => fr.error(value.span(), format!("the value of `{name}` is over {MAX_PARAM_BYTES} bytes")),
                None => fr.error_help(
                    value.span(),
                    format!("parameter `{name}` takes {}", ty.article()),
                    format!("write e.g. `{name} = {}`", toml_example(ty)),
                ),
            }
        }
    }
    r.diagnostics.append(&mut fr.diagnostics);
}

fn toml_example(ty: ParamType) -> &'static str {
    ["\"text\"", "10", "0.5", "true"][ty as usize]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(values: &[(&str, serde_json::Value)]) -> Params {
        Params {
            values: values
                .iter()
                .map(|(n, v)| ParamValue {
                    name: (*n).into(),
                    ty: ParamType::String,
                    value: v.clone(),
                    source: ParamSource::Default,
                })
                .collect(),
            declared: values.iter().map(|(n, _)| (*n).to_owned()).collect(),
        }
    }

    #[test]
    fn a_whole_reference_keeps_its_type_and_text_interpolates() {
        let p = params(&[("n", 10.into()), ("glob", "docs/*.txt".into())]);
        assert_eq!(p.substitute("${params.n}").unwrap(), Some(10.into()));
        assert_eq!(p.substitute("top ${params.n} of ${params.glob}").unwrap(), Some("top 10 of docs/*.txt".into()));
        assert_eq!(p.substitute("no params here ${HOME}").unwrap(), None);
        assert_eq!(p.substitute("$${params.n} is ${params.n}").unwrap(), Some("${params.n} is 10".into()));
        assert_eq!(p.substitute("${params.n}${params.n}").unwrap(), Some("1010".into()));
    }

    #[test]
    fn unknown_and_unclosed_references_are_errors() {
        let p = params(&[("top", 10.into())]);
        let (message, help) = p.substitute("${params.tpo}").unwrap_err();
        assert_eq!(message, "unknown parameter `tpo`");
        assert!(help.starts_with("did you mean `top`?"), "{help}");
        let (message, _) = p.substitute("a ${params.top").unwrap_err();
        assert_eq!(message, "`${params.top` is not closed");
    }

    #[test]
    fn command_line_text_is_read_by_type() {
        assert_eq!(ParamType::Integer.parse_text("1_000"), Some(1000.into()));
        assert_eq!(ParamType::Integer.parse_text("1.5"), None);
        assert_eq!(ParamType::Float.parse_text("1.5"), Some(1.5.into()));
        assert_eq!(ParamType::Float.parse_text("nan"), None);
        assert_eq!(ParamType::Boolean.parse_text("yes"), None);
        assert_eq!(ParamType::String.parse_text(" a "), Some(" a ".into()));
    }
}
