//! Reading and writing files relative to the workflow's directory.

use crate::{ANY, VERSION, schema, text_port, unset};
use backplane_plugin_api::{payload::JSON, prelude::*};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::{
    fs,
    path::{Path, PathBuf},
};

/// `std.read_files`: the contents of every file a glob matches, as one text.
pub struct ReadFiles;

#[derive(Debug, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReadFilesSettings {
    /// Files to read, e.g. `data/*.txt`; relative to the workflow's directory.
    #[serde(skip_serializing_if = "unset")]
    pub glob: String,
}

impl NodeType for ReadFiles {
    const TYPE_NAME: &'static str = "std.read_files";
    const VERSION: &'static str = VERSION;
    const DESCRIPTION: &'static str =
        "Reads every file matching a glob, in sorted path order, into one text (each file ends with a newline)";
    type Settings = ReadFilesSettings;

    fn outputs() -> Vec<PortSpec> {
        vec![
            text_port("text", "the files' contents, concatenated"),
            PortSpec::new("files", FILE_MANIFEST).describe("the files read, with their BLAKE3 (for provenance)"),
        ]
    }
    fn settings_schema() -> serde_json::Value {
        schema::<Self::Settings>()
    }
    fn tags() -> Vec<&'static str> {
        vec!["io"]
    }
    // Files change between runs; caching their old contents would be wrong.
    fn deterministic() -> bool {
        false
    }

    fn check_settings(s: &Self::Settings, _: &CheckContext) -> Vec<SettingsProblem> {
        if s.glob.is_empty() {
            return vec![
                SettingsProblem::at("glob", "`glob` is empty").help("set it to a pattern such as `data/*.txt`"),
            ];
        }
        match glob::Pattern::new(&s.glob) {
            Ok(_) => Vec::new(),
            Err(e) => vec![SettingsProblem::at("glob", format!("invalid glob `{}`: {e}", s.glob))],
        }
    }

    fn compute(settings: Self::Settings, _: Inputs, ctx: &Context<'_>) -> Result<Vec<Payload>, NodeError> {
        // Hosts built against plugin-api 1.0 never ran the check.
        if let Some(problem) = Self::check_settings(&settings, &CheckContext::default()).into_iter().next() {
            return Err(problem.into_node_error());
        }
        let paths = matched_files(&settings.glob, ctx)?;
        let mut text = String::new();
        let mut read = Vec::with_capacity(paths.len());
        for path in paths {
            let content = fs::read_to_string(&path)
                .map_err(|e| NodeError::new(format!("cannot read {}: {e}", path.display())))?;
            text.push_str(&content);
            if !content.is_empty() && !content.ends_with('\n') {
                text.push('\n');
            }
            let absolute = std::path::absolute(&path).unwrap_or(path);
            read.push((absolute, blake3::hash(content.as_bytes()).to_hex().to_string(), content.len() as u64));
        }
        let manifest =
            Payload::file_manifest("files", read.iter().map(|(p, h, n)| (FileOp::Read, p.as_path(), h.as_str(), *n)));
        Ok(vec![Payload::text("text", text), manifest])
    }
}

/// The regular files `glob` matches, relative to the workflow's directory,
/// in sorted path order; an error when it matches none.
fn matched_files(glob: &str, ctx: &Context<'_>) -> Result<Vec<PathBuf>, NodeError> {
    // Escape the directory so characters like `[` in it match literally.
    let pattern = if Path::new(glob).is_absolute() {
        glob.to_owned()
    } else {
        let dir = glob::Pattern::escape(&ctx.working_dir().to_string_lossy());
        format!("{}/{glob}", dir.trim_end_matches('/'))
    };
    let entries = glob::glob(&pattern).map_err(|e| NodeError::new(format!("invalid glob `{glob}`: {e}")))?;
    let mut paths = Vec::new();
    for entry in entries {
        let path = entry?;
        if path.is_file() {
            paths.push(path);
        }
    }
    if paths.is_empty() {
        return Err(NodeError::new(format!(
            "glob `{glob}` matched no files under {}; check the pattern and that the files exist",
            ctx.working_dir().display()
        )));
    }
    paths.sort();
    Ok(paths)
}

/// `std.files`: one stream item per file a glob matches, in sorted path
/// order: `{"path": ..., "text": ...}` on `files` (the path relative to the
/// workflow's directory when the file is inside it), and the text alone on
/// `texts`, for per-file work on text (`each = "files.texts"`).
pub struct Files;

impl NodeType for Files {
    const TYPE_NAME: &'static str = "std.files";
    const VERSION: &'static str = VERSION;
    const DESCRIPTION: &'static str = "Streams one item per file matching a glob, in sorted path order: a JSON object with its `path` and `text`, and the text alone";
    type Settings = ReadFilesSettings;

    fn outputs() -> Vec<PortSpec> {
        vec![
            PortSpec::new("files", JSON)
                .describe("one {path, text} object per file; accumulated: a JSON array of them")
                .stream(),
            text_port("texts", "each file's text, one item per file; accumulated: the texts one after another")
                .stream(),
            PortSpec::new("manifest", FILE_MANIFEST).describe("the files read, with their BLAKE3 (for provenance)"),
        ]
    }
    fn settings_schema() -> serde_json::Value {
        schema::<Self::Settings>()
    }
    fn tags() -> Vec<&'static str> {
        vec!["io", "stream"]
    }
    fn deterministic() -> bool {
        false
    }
    fn check_settings(s: &Self::Settings, context: &CheckContext) -> Vec<SettingsProblem> {
        ReadFiles::check_settings(s, context)
    }

    fn compute(settings: Self::Settings, _: Inputs, ctx: &Context<'_>) -> Result<Vec<Payload>, NodeError> {
        if let Some(problem) = Self::check_settings(&settings, &CheckContext::default()).into_iter().next() {
            return Err(problem.into_node_error());
        }
        let mut read = Vec::new();
        for path in matched_files(&settings.glob, ctx)? {
            let text = fs::read_to_string(&path)
                .map_err(|e| NodeError::new(format!("cannot read {}: {e}", path.display())))?;
            let absolute = std::path::absolute(&path).unwrap_or(path);
            let shown = absolute.strip_prefix(ctx.working_dir()).unwrap_or(&absolute);
            let item = serde_json::json!({ "path": shown.to_string_lossy(), "text": text });
            ctx.emit("files", Payload::bytes("files", JSON, item.to_string().into_bytes()))?;
            ctx.emit("texts", Payload::text("texts", text.clone()))?;
            read.push((absolute, blake3::hash(text.as_bytes()).to_hex().to_string(), text.len() as u64));
        }
        let manifest = Payload::file_manifest(
            "manifest",
            read.iter().map(|(p, h, n)| (FileOp::Read, p.as_path(), h.as_str(), *n)),
        );
        Ok(vec![manifest])
    }
}

/// `std.write_file`: writes its input to a file and outputs the file's path.
pub struct WriteFile;

#[derive(Debug, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WriteFileSettings {
    /// The file to write, relative to the workflow's directory. An existing
    /// regular file is replaced atomically; a link or special file is refused.
    #[serde(skip_serializing_if = "unset")]
    pub path: String,
}

impl NodeType for WriteFile {
    const TYPE_NAME: &'static str = "std.write_file";
    const VERSION: &'static str = VERSION;
    const DESCRIPTION: &'static str = "Writes its input's bytes to a file, creating parent directories";
    type Settings = WriteFileSettings;

    fn inputs() -> Vec<PortSpec> {
        vec![PortSpec::new("data", ANY).describe("the bytes to write, of any content type")]
    }
    fn outputs() -> Vec<PortSpec> {
        vec![
            text_port("path", "the absolute path written, as one line"),
            PortSpec::new("files", FILE_MANIFEST).describe("the file written, with its BLAKE3 (for provenance)"),
        ]
    }
    fn settings_schema() -> serde_json::Value {
        schema::<Self::Settings>()
    }
    fn tags() -> Vec<&'static str> {
        vec!["io"]
    }
    // The file is a side effect: a cached result would not rewrite it.
    fn deterministic() -> bool {
        false
    }

    fn check_settings(s: &Self::Settings, context: &CheckContext) -> Vec<SettingsProblem> {
        if s.path.is_empty() {
            return vec![
                SettingsProblem::at("path", "`path` is empty")
                    .help("set it to the file to write, e.g. `out/result.txt`"),
            ];
        }
        if context.escapes(&s.path) {
            return vec![SettingsProblem::at("path", format!("`{}` leaves the workflow's directory", s.path)).help(
                "write a path inside it, an absolute path, or set `allow_outside_workflow_dir = true` in the config",
            )];
        }
        match backplane_atomic_file::check_destination(&context.workflow_dir.join(&s.path)) {
            Ok(()) => Vec::new(),
            Err(e) => vec![SettingsProblem::at("path", e.to_string())],
        }
    }

    fn compute(settings: Self::Settings, mut inputs: Inputs, ctx: &Context<'_>) -> Result<Vec<Payload>, NodeError> {
        // Hosts built against plugin-api 1.0 never ran the check; where the
        // path may lead was the host's to decide, at validation.
        let context = CheckContext { workflow_dir: ctx.working_dir().to_owned(), allow_outside_workflow_dir: true };
        if let Some(problem) = Self::check_settings(&settings, &context).into_iter().next() {
            return Err(problem.into_node_error());
        }
        let data = inputs.require("data")?.data;
        let path = std::path::absolute(ctx.resolve(&settings.path))?;
        // Atomic: a reader, or a run killed mid-write, sees the old file or the new one.
        backplane_atomic_file::write(&path, &data).map_err(|e| NodeError::new(e.to_string()))?;
        let hash = blake3::hash(&data).to_hex();
        let manifest =
            Payload::file_manifest("files", [(FileOp::Wrote, path.as_path(), hash.as_str(), data.len() as u64)]);
        Ok(vec![Payload::text("path", format!("{}\n", path.display())), manifest])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use backplane_plugin_api::testing::call_node;
    use serde_json::json;

    fn dir_str(dir: &tempfile::TempDir) -> &str {
        dir.path().to_str().unwrap()
    }

    #[test]
    fn read_files_concatenates_matches_in_path_order_with_trailing_newlines() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("data")).unwrap();
        fs::write(dir.path().join("data/b.txt"), "bee").unwrap();
        fs::write(dir.path().join("data/a.txt"), "ay\n").unwrap();
        fs::write(dir.path().join("data/c.md"), "not matched\n").unwrap();
        let out = call_node::<ReadFiles>(json!({ "glob": "data/*.txt" }), vec![], dir_str(&dir)).unwrap();
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].port.as_str(), "text");
        assert_eq!(out[0].content_type.as_str(), "text/plain; charset=utf-8");
        assert_eq!(out[0].as_text().unwrap(), "ay\nbee\n");
        // The manifest names each file read, absolute, with the BLAKE3 of what was read.
        assert_eq!((out[1].port.as_str(), out[1].content_type.as_str()), ("files", FILE_MANIFEST));
        let a = dir.path().join("data/a.txt");
        let b = dir.path().join("data/b.txt");
        let expected = format!(
            "read\t{}\t3\t{}\nread\t{}\t3\t{}\n",
            blake3::hash(b"ay\n").to_hex(),
            a.display(),
            blake3::hash(b"bee").to_hex(),
            b.display()
        );
        assert_eq!(out[1].as_text().unwrap(), expected);
    }

    #[test]
    fn read_files_reports_a_glob_without_matches() {
        let dir = tempfile::tempdir().unwrap();
        let err = call_node::<ReadFiles>(json!({ "glob": "*.nope" }), vec![], dir_str(&dir)).unwrap_err();
        let message = err.to_string();
        assert!(message.contains("glob `*.nope` matched no files under"), "{message}");
        assert!(message.contains(dir_str(&dir)), "{message}");
    }

    #[test]
    fn read_files_requires_glob() {
        let schema = ReadFiles::settings_schema();
        assert_eq!(schema["required"], json!(["glob"]));
        assert_eq!(schema["additionalProperties"], json!(false));
        let err = call_node::<ReadFiles>(json!({}), vec![], "/").unwrap_err();
        assert!(err.to_string().contains("missing field `glob`"), "{err}");
    }

    #[test]
    fn write_file_creates_parents_and_outputs_absolute_path() {
        let dir = tempfile::tempdir().unwrap();
        let data = Payload::bytes("data", "application/octet-stream", vec![0, 159, 146, 150]);
        let out = call_node::<WriteFile>(json!({ "path": "out/deep/x.bin" }), vec![data], dir_str(&dir)).unwrap();
        let written = dir.path().join("out/deep/x.bin");
        assert_eq!(fs::read(&written).unwrap(), [0, 159, 146, 150]);
        assert_eq!(out[0].port.as_str(), "path");
        assert_eq!(out[0].as_text().unwrap(), format!("{}\n", written.display()));
    }

    #[test]
    fn write_file_without_input_names_the_port() {
        let dir = tempfile::tempdir().unwrap();
        let err = call_node::<WriteFile>(json!({ "path": "x" }), vec![], dir_str(&dir)).unwrap_err();
        assert_eq!(err.to_string(), "input port `data` received no data");
        assert!(!dir.path().join("x").exists());
    }
}
