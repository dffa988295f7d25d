//! `docs/plugin-guide.md` followed verbatim: its sections 1 to 4 become one
//! shell script that creates both plugins in a temporary home outside the
//! workspace, builds them, runs the workflows, `verify` and `cargo test`.
//!
//! A code block is executed when it is a `sh` block, or a file the sentence
//! before it tells the reader to write ("**`src/lib.rs`**: replace its
//! contents with", "Save this as `workflow.toml`", "Append this to `~/…`").
//! Other blocks are illustrations or shown output. The one block not run as
//! written is the prerequisites' `cargo build --release` of Backplane itself:
//! the test uses the binary and plugins of this build instead, which is what
//! that block's `export` lines point at.

use crate::fixtures::{bin_dir, ensure_plugins_built, without_test_cargo_env, workspace_root};
use std::{fmt::Write as _, path::Path, process::Command};

/// One fenced block: its language tag, its text and the paragraph before it.
struct Block {
    lang: String,
    text: String,
    intro: String,
    line: usize,
}

/// A fence being read: its tag, the paragraph before it, its indentation, its lines.
struct OpenFence {
    lang: String,
    intro: String,
    indent: usize,
    lines: Vec<String>,
}

/// The fenced blocks of `markdown` up to `## 5.`, outermost fences only.
fn blocks(markdown: &str) -> Vec<Block> {
    let mut blocks = Vec::new();
    let (mut paragraph, mut open): (Vec<&str>, Option<OpenFence>) = (Vec::new(), None);
    // The last paragraph stays the intro across the blank line before a fence.
    let mut paragraph_ended = false;
    for (number, line) in markdown.lines().enumerate() {
        if line.starts_with("## 5.") {
            break;
        }
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        match &mut open {
            Some(fence) if trimmed.starts_with("```") && indent == fence.indent => {
                let OpenFence { lang, intro, lines, .. } = open.take().unwrap();
                let text = lines.iter().map(|l| format!("{l}\n")).collect();
                blocks.push(Block { lang, text, intro, line: number });
                paragraph.clear();
            }
            Some(fence) => fence.lines.push(line.get(fence.indent..).unwrap_or("").to_owned()),
            None if trimmed.starts_with("```") => {
                let lang = trimmed.trim_start_matches('`').trim().to_owned();
                open = Some(OpenFence { lang, intro: paragraph.join(" "), indent, lines: Vec::new() });
            }
            None if trimmed.is_empty() => paragraph_ended = true,
            None => {
                if std::mem::take(&mut paragraph_ended) {
                    paragraph.clear();
                }
                paragraph.push(trimmed);
            }
        }
    }
    blocks
}

/// What the paragraph before a block tells the reader to do with it.
enum Action {
    Run,
    Write(String),
    Append(String),
    Show,
}

/// The first backticked text after `phrase` in `intro`.
fn path_after<'a>(intro: &'a str, phrase: &str) -> Option<&'a str> {
    let rest = &intro[intro.to_lowercase().find(&phrase.to_lowercase())? + phrase.len()..];
    let start = rest.find('`')? + 1;
    Some(&rest[start..start + rest[start..].find('`')?])
}

fn action(block: &Block) -> Action {
    if block.lang == "sh" {
        return Action::Run;
    }
    if let Some(path) =
        block.intro.strip_prefix("**`").and_then(|rest| rest.split_once("`**: replace its contents with"))
    {
        return Action::Write(path.0.to_owned());
    }
    if let Some(path) = path_after(&block.intro, "Append this to") {
        return Action::Append(path.to_owned());
    }
    for phrase in ["save this as", "save this workflow as"] {
        if let Some(path) = path_after(&block.intro, phrase) {
            return Action::Write(path.to_owned());
        }
    }
    Action::Show
}

/// `~/x` as the script's `"$HOME"/x`, anything else quoted as it is.
fn shell_path(path: &str) -> String {
    match path.strip_prefix("~/") {
        Some(rest) => format!("\"$HOME\"/'{rest}'"),
        None => format!("'{path}'"),
    }
}

/// The status and name of each `PASS`/`FAIL`/`SKIP` line of a `verify` report.
fn verdicts(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            let status = words.next()?;
            let name = words.next()?;
            ["PASS", "FAIL", "SKIP"].contains(&status).then(|| (status.to_owned(), name.to_owned()))
        })
        .collect()
}

#[test]
fn the_plugin_guide_works_as_written() {
    ensure_plugins_built();
    let guide = std::fs::read_to_string(workspace_root().join("docs/plugin-guide.md")).unwrap();
    let blocks = blocks(&guide);
    let home = tempfile::tempdir().unwrap();
    let outputs = home.path().join(".guide-outputs");
    std::fs::create_dir(&outputs).unwrap();

    // (index of a run block, the output block shown after it)
    let mut shown_after = Vec::new();
    let mut script = String::from("set -euo pipefail\nset -x\n");
    let mut ran_prerequisites = false;
    for (index, block) in blocks.iter().enumerate() {
        match action(block) {
            Action::Run if block.text.contains("cargo build --release") => {
                // The prerequisites, with this build standing in for the release build.
                let bin = bin_dir();
                let std_nodes = bin.join(format!("libbackplane_std_nodes.{}", std::env::consts::DLL_EXTENSION));
                let _ = writeln!(script, "export BACKPLANE_REPO='{}'", workspace_root().display());
                let _ = writeln!(script, "export PATH='{}':\"$PATH\"", bin.display());
                let _ = writeln!(script, "export BACKPLANE_STD_NODES='{}'", std_nodes.display());
                let _ = writeln!(script, "backplane plugins > '{}/{index}.out'", outputs.display());
                ran_prerequisites = true;
            }
            Action::Run => {
                let _ = writeln!(
                    script,
                    "# guide line {}\n{{\n{}}} > '{}/{index}.out'",
                    block.line,
                    block.text,
                    outputs.display()
                );
                if blocks.get(index + 1).is_some_and(|next| next.lang.is_empty()) {
                    shown_after.push((index, &blocks[index + 1]));
                }
            }
            Action::Write(path) | Action::Append(path) => {
                let redirect = if matches!(action(block), Action::Append(_)) { ">>" } else { ">" };
                let path = shell_path(&path);
                let _ = writeln!(
                    script,
                    "# guide line {}\nmkdir -p \"$(dirname {path})\"\ncat {redirect} {path} <<'GUIDE_BLOCK_END'\n{}GUIDE_BLOCK_END",
                    block.line, block.text
                );
            }
            Action::Show => {}
        }
    }
    assert!(ran_prerequisites, "the guide has no prerequisites block that builds Backplane");
    let writes = |path: &str| script.matches(&format!("cat > {path} <<")).count();
    assert!(
        writes("'src/lib.rs'") == 2 && writes("\"$HOME\"/'backplane-plugins/acme-pool/tests/conformance.rs'") == 1,
        "the guide no longer writes both plugins and the conformance test:\n{script}"
    );

    let mut command = Command::new("bash");
    command.arg("-c").arg(&script).current_dir(home.path()).env("HOME", home.path());
    // The toolchain stays where it is although HOME moves.
    let real_home = std::env::var_os("HOME").unwrap_or_default();
    for (name, default) in [("CARGO_HOME", ".cargo"), ("RUSTUP_HOME", ".rustup")] {
        let value = std::env::var_os(name).unwrap_or_else(|| Path::new(&real_home).join(default).into_os_string());
        command.env(name, value);
    }
    // Everything the plugins need is in the registry cache after the workspace build.
    command.env("CARGO_NET_OFFLINE", "true").env("CARGO_BUILD_JOBS", "2").env_remove("CARGO_TARGET_DIR");
    without_test_cargo_env(&mut command);
    let output = command.output().unwrap();
    let trace = String::from_utf8_lossy(&output.stderr);
    let tail: String =
        trace.lines().rev().take(80).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n");
    assert!(output.status.success(), "the guide's commands failed; the last of what they printed:\n{tail}");

    // What the guide shows after a command is what the command printed.
    let mut compared = 0;
    for (index, shown) in shown_after {
        let actual = std::fs::read_to_string(outputs.join(format!("{index}.out"))).unwrap();
        let command = &blocks[index].text;
        if command.contains(" verify ") {
            assert_eq!(
                verdicts(&actual),
                verdicts(&shown.text),
                "`{}` (guide line {})",
                command.trim(),
                blocks[index].line
            );
            compared += 1;
        } else if command.contains(" run ") {
            // The run's stdout holds the workflow's output; the summary the guide shows with it is stderr.
            let shown_lines: Vec<&str> = shown.text.lines().collect();
            let mut rest = shown_lines.iter();
            for line in actual.lines().filter(|l| !l.is_empty()) {
                assert!(
                    rest.any(|s| s == &line),
                    "`{}` (guide line {}) printed `{line}`, which the guide does not show in that order:\n{actual}",
                    command.trim(),
                    blocks[index].line
                );
            }
            compared += 1;
        }
    }
    assert!(compared >= 4, "only {compared} outputs of `run` and `verify` were compared with the guide");
}

#[test]
fn the_guide_reader_sees_every_kind_of_block() {
    let markdown = "intro\n\n**`src/lib.rs`**: replace its contents with:\n\n```rust\nfn a() {}\n```\n\nSave this workflow as `w.toml`:\n\n```toml\nx = 1\n```\n\n- list\n\n  ```\n  shown\n  ```\n\nAppend this to\n`~/p/lib.rs`:\n\n```rust\n// more\n```\n\n```sh\necho hi\n```\n\n## 5. Later\n\n```sh\nnot reached\n```\n";
    let blocks = blocks(markdown);
    let kinds: Vec<String> = blocks
        .iter()
        .map(|b| match action(b) {
            Action::Run => format!("run {}", b.text.trim()),
            Action::Write(path) => format!("write {path}"),
            Action::Append(path) => format!("append {path}"),
            Action::Show => format!("show {}", b.text.trim()),
        })
        .collect();
    assert_eq!(kinds, ["write src/lib.rs", "write w.toml", "show shown", "append ~/p/lib.rs", "run echo hi"]);
    assert_eq!(shell_path("~/a b/c"), "\"$HOME\"/'a b/c'");
}
