//! The crate doc states the layers of this library; this test reads them
//! from `src/lib.rs` and fails when a module imports (`crate::…`) from a
//! layer above its own, or when a module has no layer, so the doc and the
//! code cannot drift apart. It also keeps the roles of the crates apart:
//! the library never depends on the command line, NATS or terminal drawing.
//! The loader crate runs the same file (`host/loader/tests/layering.rs`).

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Module name -> layer number, from lines like
/// ``//! 2. `config`, `workflow` — what the user wrote``.
fn stated_layers(lib: &str) -> BTreeMap<String, usize> {
    let mut layers = BTreeMap::new();
    for line in lib.lines().filter_map(|l| l.strip_prefix("//! ")) {
        let Some((number, rest)) = line.split_once(". ") else { continue };
        let Ok(number) = number.parse::<usize>() else { continue };
        let names = rest.split('—').next().unwrap_or_default();
        for name in names.split(',').map(|n| n.trim().trim_matches('`')).filter(|n| !n.is_empty()) {
            assert!(layers.insert(name.to_owned(), number).is_none(), "`{name}` is in two layers of the crate doc");
        }
    }
    layers
}

/// The top-level modules `lib.rs` declares.
fn declared_modules(lib: &str) -> Vec<String> {
    lib.lines()
        .filter_map(|l| l.trim().strip_prefix("pub mod ").or_else(|| l.trim().strip_prefix("mod ")))
        .map(|rest| rest.trim_end_matches(';').trim().to_owned())
        .collect()
}

/// The code of `text` without `//` comments (doc links are not imports); a
/// `//` inside a string (`"nats://…"`) is not a comment.
fn without_comments(text: &str) -> String {
    let code_part = |line: &str| {
        let (mut in_string, mut escaped, mut previous) = (false, false, ' ');
        for (i, c) in line.char_indices() {
            match c {
                _ if escaped => escaped = false,
                '\\' if in_string => escaped = true,
                '"' => in_string = !in_string,
                '/' if !in_string && previous == '/' => return line[..i - 1].to_owned(),
                _ => {}
            }
            previous = c;
        }
        line.to_owned()
    };
    text.lines().map(code_part).collect::<Vec<_>>().join("\n")
}

/// The top-level modules named after each `crate::` in `code`, with the
/// braces of `use crate::{a::b, c}` expanded.
fn imported_modules(code: &str) -> Vec<String> {
    let ident = |s: &str| s.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect::<String>();
    let mut found = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let (mut depth, mut start) = (0usize, true);
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => start = true,
                    c if start && depth == 0 && !c.is_whitespace() => {
                        found.push(ident(&group[i..]));
                        start = false;
                    }
                    _ => {}
                }
            }
        } else {
            found.push(ident(rest));
        }
    }
    found.retain(|m| !m.is_empty());
    found
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file under `src/` belongs to.
fn module_of(file: &Path) -> String {
    let relative = file.strip_prefix(src()).unwrap();
    let first = relative.components().next().unwrap().as_os_str().to_string_lossy().into_owned();
    first.trim_end_matches(".rs").to_owned()
}

#[test]
fn no_module_imports_from_a_layer_above_its_own() {
    let lib = std::fs::read_to_string(src().join("lib.rs")).unwrap();
    let layers = stated_layers(&lib);
    assert!(layers.len() >= 5, "the crate doc states too few layers: {layers:?}");
    for module in declared_modules(&lib) {
        assert!(layers.contains_key(&module), "module `{module}` has no layer in the crate doc of src/lib.rs");
    }
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let mut violations = Vec::new();
    for file in files.iter().filter(|f| !f.ends_with("lib.rs")) {
        let module = module_of(file);
        let own = layers[&module];
        let code = without_comments(&std::fs::read_to_string(file).unwrap());
        let top_level = file.parent() == Some(src().as_path());
        assert!(
            !(top_level && code.contains("super::") && !code.contains("mod tests")),
            "{}: `super::` in a top-level module reaches the crate root unchecked; name it `crate::…`",
            file.display()
        );
        for imported in imported_modules(&code) {
            match layers.get(&imported) {
                Some(&layer) if layer > own => violations.push(format!(
                    "{}: `{module}` (layer {own}) imports `crate::{imported}` (layer {layer})",
                    file.strip_prefix(src()).unwrap().display()
                )),
                Some(_) => {}
                // Re-exports of the loader (`crate::registry`) sit below everything.
                None => assert!(
                    ["Host", "PluginInfo", "describe", "loader", "registry", "task_runner"]
                        .contains(&imported.as_str()),
                    "{}: `crate::{imported}` is neither a module of a layer nor a loader re-export",
                    file.display()
                ),
            }
        }
    }
    assert!(violations.is_empty(), "imports from a layer above:\n{}", violations.join("\n"));
}

#[test]
fn the_import_reader_sees_grouped_and_nested_imports() {
    let code = "use crate::{\n    config::{Config, X},\n    plan::Plan,\n};\nuse crate::engine::run;\nlet x = crate::policy::RunPolicy::default();";
    assert_eq!(imported_modules(code), ["config", "plan", "engine", "policy"]);
    let commented = "let url = \"nats://a\"; let p = crate::plan::x(); // crate::engine\n/// [`crate::engine`]";
    assert_eq!(imported_modules(&without_comments(commented)), ["plan"]);
    let doc = "//! 1. `a`, `b` — low\n//! 2. `c` — high\n//! Not a layer. 3 things.\n";
    assert_eq!(stated_layers(doc), BTreeMap::from([("a".into(), 1), ("b".into(), 1), ("c".into(), 2)]));
}

#[test]
fn the_library_depends_on_no_command_line_nats_or_terminal_crate() {
    let manifest = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml")).unwrap();
    let dependencies = manifest.split("[dependencies]").nth(1).unwrap().split("\n[").next().unwrap();
    for crate_name in
        ["clap", "indicatif", "async-nats", "tracing-subscriber", "backplane-worker", "backplane-conformance"]
    {
        assert!(
            !dependencies
                .lines()
                .any(|l| l.starts_with(&format!("{crate_name}.")) || l.starts_with(&format!("{crate_name} "))),
            "{} depends on `{crate_name}`: it belongs in the binary crate (host/cli)",
            env!("CARGO_PKG_NAME")
        );
    }
}
