//! Partial runs: `--select GLOB` (repeatable) runs the matching nodes and
//! what they need; `--until NODE` runs one node and its ancestors. Outputs
//! of nodes that do not run are not written, and [`Partial`] says which.

use super::Workflow;
use crate::{diagnostic::Diagnostic, spanned_toml::suggest};
use serde::Serialize;
use std::collections::HashMap;

/// What the command line asked to run; empty: everything.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// `--select` globs over node ids.
    pub select: Vec<String>,
    /// `--until`: a node id.
    pub until: Option<String>,
}

impl Selection {
    pub fn is_empty(&self) -> bool {
        self.select.is_empty() && self.until.is_none()
    }

    /// How the flags read, for messages and records: `--select 'count*' --until report`.
    pub fn describe(&self) -> String {
        let mut parts: Vec<String> = self.select.iter().map(|g| format!("--select {g}")).collect();
        parts.extend(self.until.iter().map(|n| format!("--until {n}")));
        parts.join(" ")
    }
}

/// Most node ids a partial run lists by name (the rest are counted).
const MAX_LISTED: usize = 20;

/// What a partial run leaves out.
#[derive(Debug, Clone, Serialize)]
pub struct Partial {
    /// The flags, as [`Selection::describe`] writes them.
    pub selection: String,
    /// Nodes in the workflow.
    pub nodes: usize,
    /// Nodes that run.
    pub selected: usize,
    /// Up to 20 ids of nodes that do not run, in workflow order.
    pub not_run: Vec<String>,
    /// `[[output]]`s not written because their node does not run: `from` and `to` as written.
    pub not_written: Vec<NotWritten>,
}

#[derive(Debug, Clone, Serialize)]
pub struct NotWritten {
    pub from: String,
    pub to: String,
}

/// Which nodes of `workflow` run under `selection`, by index, or the flags'
/// problems (a glob matching nothing, an unknown node).
pub fn selected(workflow: &Workflow, selection: &Selection) -> Result<Vec<bool>, Vec<Diagnostic>> {
    let ids: Vec<&str> = workflow.nodes.iter().map(|n| n.id.get_ref().as_str()).collect();
    let mut roots = vec![false; ids.len()];
    let mut problems = Vec::new();
    for pattern in &selection.select {
        let flag = format!("--select {pattern}");
        match globset::Glob::new(pattern) {
            Ok(glob) => {
                let matcher = glob.compile_matcher();
                let mut any = false;
                for (i, id) in ids.iter().enumerate() {
                    if matcher.is_match(id) {
                        roots[i] = true;
                        any = true;
                    }
                }
                if !any {
                    problems.push(Diagnostic::unlocated(flag, "matches no node").with_help(known(pattern, &ids)));
                }
            }
            Err(e) => problems.push(
                Diagnostic::unlocated(flag, format!("not a glob: {}", e.kind()))
                    .with_help("use `*`, `?` and `[...]` over node ids, e.g. `--select 'count*'`"),
            ),
        }
    }
    if let Some(node) = &selection.until {
        match ids.iter().position(|id| id == node) {
            Some(i) => roots[i] = true,
            None => problems.push(
                Diagnostic::unlocated(format!("--until {node}"), format!("the workflow has no node `{node}`"))
                    .with_help(known(node, &ids)),
            ),
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    // Ancestors: walk input edges back from the roots.
    let index: HashMap<&str, usize> = ids.iter().enumerate().rev().map(|(i, id)| (*id, i)).collect();
    let mut keep = roots;
    let mut stack: Vec<usize> = (0..keep.len()).filter(|&i| keep[i]).collect();
    while let Some(i) = stack.pop() {
        for source in workflow.nodes[i].inputs.iter().flat_map(|input| &input.sources) {
            if let Some(&from) = index.get(source.get_ref().node.as_str())
                && !keep[from]
            {
                keep[from] = true;
                stack.push(from);
            }
        }
    }
    Ok(keep)
}

fn known(name: &str, ids: &[&str]) -> String {
    let listed: Vec<&str> = ids.iter().take(MAX_LISTED).copied().collect();
    let more = if ids.len() > MAX_LISTED { format!(" and {} more", ids.len() - MAX_LISTED) } else { String::new() };
    match suggest(name, ids) {
        Some(near) => format!("did you mean `{near}`? nodes: {}{more}", listed.join(", ")),
        None => format!("nodes: {}{more}", listed.join(", ")),
    }
}

impl Workflow {
    /// Keeps only the nodes `keep` marks, and the outputs they produce.
    pub fn retain(&mut self, keep: &[bool], selection: &Selection) -> Partial {
        let nodes = self.nodes.len();
        let mut not_run = Vec::new();
        let mut i = 0;
        self.nodes.retain(|n| {
            let kept = keep[i];
            i += 1;
            if !kept && not_run.len() < MAX_LISTED {
                not_run.push(n.id.get_ref().clone());
            }
            kept
        });
        let running: std::collections::HashSet<&str> = self.nodes.iter().map(|n| n.id.get_ref().as_str()).collect();
        let mut not_written = Vec::new();
        self.outputs.retain(|o| {
            let from = o.from.get_ref();
            let kept = running.contains(from.node.as_str());
            if !kept {
                not_written.push(NotWritten { from: format!("{}.{}", from.node, from.port), to: o.to_text.clone() });
            }
            kept
        });
        Partial { selection: selection.describe(), nodes, selected: self.nodes.len(), not_run, not_written }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnostic::SourceFile;

    const DIAMOND: &str = r#"
[[node]]
id = "a"
type = "t"
[[node]]
id = "b"
type = "t"
inputs = { x = "a.out" }
[[node]]
id = "c"
type = "t"
inputs = { x = "a.out" }
[[node]]
id = "d"
type = "t"
inputs = { x = ["b.out", "c.out"] }
[[output]]
from = "b.out"
to = "b.txt"
[[output]]
from = "d.out"
to = "d.txt"
"#;

    fn diamond() -> Workflow {
        Workflow::parse(SourceFile::new("w.toml", DIAMOND.into())).unwrap()
    }

    #[test]
    fn until_keeps_a_node_and_its_ancestors() {
        let mut w = diamond();
        let selection = Selection { until: Some("b".into()), ..Selection::default() };
        let keep = selected(&w, &selection).unwrap();
        assert_eq!(keep, [true, true, false, false]);
        let partial = w.retain(&keep, &selection);
        assert_eq!(w.nodes.iter().map(|n| n.id.get_ref().as_str()).collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!((partial.nodes, partial.selected, partial.not_run.clone()), (4, 2, vec!["c".into(), "d".into()]));
        assert_eq!(partial.not_written.len(), 1);
        assert_eq!((partial.not_written[0].from.as_str(), partial.not_written[0].to.as_str()), ("d.out", "d.txt"));
        assert_eq!(w.outputs.len(), 1);
    }

    #[test]
    fn select_globs_union_their_ancestors() {
        let w = diamond();
        let selection = Selection { select: vec!["[bc]".into()], until: None };
        assert_eq!(selected(&w, &selection).unwrap(), [true, true, true, false]);
        let selection = Selection { select: vec!["d".into()], until: None };
        assert_eq!(selected(&w, &selection).unwrap(), [true; 4]);
    }

    #[test]
    fn a_glob_matching_nothing_or_an_unknown_node_is_an_error() {
        let w = diamond();
        let selection = Selection { select: vec!["x*".into()], until: Some("dd".into()) };
        let problems = selected(&w, &selection).unwrap_err();
        let text: Vec<String> = problems.iter().map(ToString::to_string).collect();
        assert_eq!(text.len(), 2, "{text:?}");
        assert!(text[0].starts_with("--select x*: error: matches no node"), "{}", text[0]);
        assert!(text[1].contains("did you mean `d`?"), "{}", text[1]);
    }
}
