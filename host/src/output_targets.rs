//! Where a workflow's outputs may go, checked before anything runs.
//!
//! The write itself ([`crate::output`]) refuses links and special files
//! again, since the file system can change between plan and write; these
//! checks make the common mistakes plan-time errors with a location.

use crate::{
    diagnostic::Diagnostic,
    workflow::{OutputTarget, Workflow},
};
use backplane_plugin_api::CheckContext;
use std::{
    collections::HashMap,
    path::{Component, Path, PathBuf},
};

/// What the run allows of output destinations.
#[derive(Debug, Clone, Copy, Default)]
pub struct OutputRules {
    /// The config's `allow_outside_workflow_dir`: relative paths may climb
    /// out of the workflow's directory with `..`.
    pub allow_outside_workflow_dir: bool,
    /// Stdout carries a report (`run --json`), so no output may go to `-`.
    pub stdout_reserved: bool,
}

/// `path` with `.` removed and `..` applied to what precedes it, without
/// touching the file system; a leading `..` that cannot be applied stays.
pub fn normalize_lexically(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            Component::CurDir => {}
            Component::ParentDir if matches!(out.components().next_back(), Some(Component::Normal(_))) => {
                out.pop();
            }
            Component::ParentDir if out.has_root() => {}
            other => out.push(other),
        }
    }
    out
}

/// Every problem with the workflow's output destinations, found before
/// anything runs: two outputs to one file, a destination that is a
/// directory, a link or a special file, a parent that is a file, a relative
/// path leaving the workflow's directory (unless allowed), stdout when it is
/// reserved.
pub fn check_targets(workflow: &Workflow, rules: OutputRules) -> Vec<Diagnostic> {
    let mut diagnostics = Vec::new();
    let mut seen: HashMap<PathBuf, usize> = HashMap::new();
    // The same rule `std.write_file`'s settings check applies to its `path`.
    let escape_check =
        CheckContext { workflow_dir: PathBuf::new(), allow_outside_workflow_dir: rules.allow_outside_workflow_dir };
    for output in &workflow.outputs {
        let span = output.to.span();
        let path = match output.to.get_ref() {
            OutputTarget::Stdout if rules.stdout_reserved => {
                diagnostics.push(
                    workflow
                        .source
                        .diagnostic(
                            span,
                            "an output goes to stdout (`to = \"-\"`), which `--json` reserves for the run report",
                        )
                        .with_help("write the output to a file, or run without `--json`"),
                );
                continue;
            }
            OutputTarget::Stdout => continue,
            OutputTarget::File(path) => path,
        };
        if escape_check.escapes(&output.to_text) {
            diagnostics.push(
                workflow
                    .source
                    .diagnostic(span.clone(), format!("output path `{}` leaves the workflow's directory", output.to_text))
                    .with_help(
                        "write a path inside it, an absolute path, or set `allow_outside_workflow_dir = true` in the config",
                    ),
            );
        }
        let normalized = normalize_lexically(path);
        if let Some(&first) = seen.get(&normalized) {
            let (line, _) = workflow.source.location(first);
            diagnostics.push(
                workflow
                    .source
                    .diagnostic(span.clone(), format!("two outputs write `{}`", output.to_text))
                    .with_help(format!("the other output to this file is on line {line}; give each its own file")),
            );
        } else {
            seen.insert(normalized, span.start);
        }
        // The nearest existing ancestor must be a directory, or the write cannot create the file.
        if let Some(blocker) = path.ancestors().skip(1).find(|a| a.exists()).filter(|a| !a.is_dir()) {
            diagnostics.push(
                workflow
                    .source
                    .diagnostic(
                        span.clone(),
                        format!(
                            "output `{}` cannot be created: {} is not a directory",
                            output.to_text,
                            blocker.display()
                        ),
                    )
                    .with_help("choose a path whose parent directories are directories"),
            );
            continue;
        }
        if let Err(e) = backplane_atomic_file::check_destination(path) {
            diagnostics.push(workflow.source.diagnostic(span.clone(), format!("output `{}`: {e}", output.to_text)));
        }
    }
    diagnostics
}
