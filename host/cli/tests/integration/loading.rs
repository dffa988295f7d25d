//! Plugin discovery and loading through the real binary.

use crate::fixtures::{AbiSkew, backplane, dylib, skewed_plugin, stderr_of, stdout_of};
use serde_json::Value;

/// `plugins --json` with `extra_dir`, which must exit 0 (`Clean`) or 2 (`Problems`).
fn plugins_json(extra_dir: Option<&std::path::Path>, expected: Expect) -> Value {
    let mut cmd = backplane();
    cmd.args(["plugins", "--json"]);
    if let Some(dir) = extra_dir {
        cmd.arg("--plugin-dir").arg(dir);
    }
    let output = cmd.output().unwrap();
    let json: Value = serde_json::from_slice(&output.stdout).unwrap();
    let problems = json["errors"].as_array().unwrap().len() + json["conflicts"].as_array().unwrap().len();
    let (code, any) = match expected {
        Expect::Clean => (0, false),
        Expect::Problems => (2, true),
    };
    assert_eq!((output.status.code(), problems > 0), (Some(code), any), "{json:#}\n{}", stderr_of(&output));
    json
}

/// What `plugins` should find on the path.
#[derive(Clone, Copy)]
enum Expect {
    Clean,
    Problems,
}

fn names(json: &Value, key: &str) -> Vec<String> {
    json["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p[key].as_array().unwrap().iter().map(|n| n.as_str().unwrap().to_owned()))
        .collect()
}

#[test]
fn lists_local_backend_and_standard_nodes_from_dylibs() {
    let json = plugins_json(None, Expect::Clean);
    assert!(names(&json, "backends").contains(&"local".to_owned()));
    let nodes = names(&json, "nodes");
    for expected in ["std.read_files", "std.word_count", "std.shell", "std.hash", "std.noop"] {
        assert!(nodes.contains(&expected.to_owned()), "{expected} missing from {nodes:?}");
    }
    let local = json["plugins"].as_array().unwrap().iter().find(|p| p["name"] == "backplane-local").unwrap();
    assert_eq!(local["interface_version"], backplane_plugin_api::INTERFACE_VERSION);
    assert!(local["path"].as_str().unwrap().ends_with(&format!(".{}", std::env::consts::DLL_EXTENSION)));
}

#[test]
fn a_file_that_is_not_a_plugin_is_reported_and_the_rest_still_load() {
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join(format!("libjunk.{}", std::env::consts::DLL_EXTENSION));
    std::fs::write(&junk, b"\x7fELF but not really").unwrap();
    // A real shared library that is not a Backplane plugin.
    let libc = ["/lib/x86_64-linux-gnu/libm.so.6", "/usr/lib/x86_64-linux-gnu/libm.so.6"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists());
    if let Some(libc) = libc {
        std::fs::copy(libc, dir.path().join("libmaths.so")).unwrap();
    }
    let json = plugins_json(Some(dir.path()), Expect::Problems);
    let errors: Vec<&str> = json["errors"].as_array().unwrap().iter().map(|e| e.as_str().unwrap()).collect();
    assert!(errors.iter().any(|e| e.contains("libjunk") && e.contains("not a Backplane plugin")), "{errors:?}");
    if libc.is_some() {
        assert!(
            errors.iter().any(|e| e.contains("libmaths") && e.contains("exports no abi_stable root module")),
            "{errors:?}"
        );
    }
    assert!(names(&json, "backends").contains(&"local".to_owned()));
}

#[test]
fn a_plugin_built_against_a_changed_interface_is_rejected_briefly() {
    let skewed = skewed_plugin(AbiSkew::ChangedFieldType);
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(&skewed, dir.path().join(skewed.file_name().unwrap())).unwrap();
    let json = plugins_json(Some(dir.path()), Expect::Problems);
    let errors: Vec<&str> = json["errors"].as_array().unwrap().iter().map(|e| e.as_str().unwrap()).collect();
    let error = errors.iter().find(|e| e.contains("abi_fixture_changed_field")).expect("the skewed plugin is reported");
    assert!(error.contains("incompatible plugin ABI"), "{error}");
    assert!(error.contains("Error:"), "the layout error lines are shown: {error}");
    assert!(error.contains("u32") && error.contains("u64"), "expected/found types are shown: {error}");
    assert!(
        error.contains(&format!("rebuild the plugin against plugin-api {}", backplane_plugin_api::INTERFACE_VERSION)),
        "{error}"
    );
    assert!(error.lines().count() <= 20, "the message stays short:\n{error}");
    // Nothing from it registered, everything else still loaded.
    assert!(!names(&json, "nodes").contains(&"fixture.abi_echo".to_owned()));
    assert!(names(&json, "backends").contains(&"local".to_owned()));
}

#[test]
fn a_plugin_built_against_another_major_interface_is_rejected() {
    let skewed = skewed_plugin(AbiSkew::NextMajor);
    let output = backplane().arg("plugins").arg("--plugin-dir").arg(skewed.parent().unwrap()).output().unwrap();
    assert_eq!(output.status.code(), Some(2), "a refused plugin makes `plugins` fail");
    let stdout = stdout_of(&output);
    assert!(
        stdout.contains(&format!(
            "built against plugin-api 2.0.0, which this host (plugin-api {}) cannot load",
            backplane_plugin_api::INTERFACE_VERSION
        )),
        "{stdout}"
    );
    assert!(stdout.contains("backplane-local"), "other plugins still load: {stdout}");
}

#[test]
fn a_plugin_built_with_panic_abort_is_refused() {
    let skewed = skewed_plugin(AbiSkew::PanicAbort);
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(&skewed, dir.path().join(skewed.file_name().unwrap())).unwrap();
    let json = plugins_json(Some(dir.path()), Expect::Problems);
    let errors: Vec<&str> = json["errors"].as_array().unwrap().iter().map(|e| e.as_str().unwrap()).collect();
    let error = errors.iter().find(|e| e.contains("abi_fixture_panic_abort")).expect("the abort plugin is reported");
    assert!(
        error.contains("built with panic = \"abort\"") && error.contains("rebuild it with panic = \"unwind\""),
        "{error}"
    );
    assert!(!names(&json, "nodes").contains(&"fixture.abi_echo".to_owned()));
}

#[test]
fn two_plugins_defining_the_same_node_type_are_an_error_naming_both_files() {
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join(format!("libstd_nodes_copy.{}", std::env::consts::DLL_EXTENSION));
    std::fs::copy(dylib("backplane_std_nodes"), &copy).unwrap();
    let original = dylib("backplane_std_nodes");

    let json = plugins_json(Some(dir.path()), Expect::Problems);
    let conflicts: Vec<&str> = json["conflicts"].as_array().unwrap().iter().map(|e| e.as_str().unwrap()).collect();
    let conflict = conflicts.iter().find(|c| c.contains("node type `std.noop`")).expect("duplicate reported");
    assert!(conflict.contains(&copy.display().to_string()), "{conflict}");
    assert!(conflict.contains(&original.display().to_string()), "{conflict}");

    // A run refuses to start with conflicting plugins.
    let wf = crate::fixtures::workflow_dir("[[node]]\nid = \"a\"\ntype = \"std.noop\"\n");
    let output = on_workflow("run", &wf.path().join("workflow.toml"), dir.path());
    assert_eq!(output.status.code(), Some(2));
    let stderr = stderr_of(&output);
    assert!(stderr.contains("is defined twice") && stderr.contains(&copy.display().to_string()), "{stderr}");
}

/// A real plugin cut short, as a half-finished copy leaves it.
fn truncated_copy(dir: &std::path::Path, len: usize) -> std::path::PathBuf {
    let bytes = std::fs::read(dylib("backplane_std_nodes")).unwrap();
    assert!(bytes.len() > len, "the std nodes plugin is {} bytes", bytes.len());
    let path = dir.join(format!("libcut_{len}.{}", std::env::consts::DLL_EXTENSION));
    std::fs::write(&path, &bytes[..len]).unwrap();
    path
}

#[test]
fn a_truncated_plugin_is_reported_as_damaged_and_every_command_still_works() {
    let dir = tempfile::tempdir().unwrap();
    let sizes = [4096, 64 * 1024, 1024 * 1024, 2 * 1024 * 1024];
    for len in sizes {
        truncated_copy(dir.path(), len);
    }
    let json = plugins_json(Some(dir.path()), Expect::Problems);
    let errors: Vec<&str> = json["errors"].as_array().unwrap().iter().map(|e| e.as_str().unwrap()).collect();
    for len in sizes {
        let name = format!("libcut_{len}.");
        let error = errors.iter().find(|e| e.contains(&name)).unwrap_or_else(|| panic!("{name} reported: {errors:?}"));
        assert!(error.contains("damaged or truncated plugin file"), "{error}");
    }
    assert!(names(&json, "nodes").contains(&"std.noop".to_owned()), "the other plugins still load");

    let wf = crate::fixtures::workflow_dir("[[node]]\nid = \"a\"\ntype = \"std.noop\"\n");
    for command in ["validate", "plan", "run"] {
        let output = on_workflow(command, &wf.path().join("workflow.toml"), dir.path());
        assert_eq!(output.status.code(), Some(0), "{command}: {}", stderr_of(&output));
        assert!(stderr_of(&output).contains("damaged or truncated plugin file"), "{command} warns");
    }
}

#[test]
fn a_plugin_dir_that_does_not_exist_is_an_error() {
    let missing = tempfile::tempdir().unwrap().path().join("nope");
    let output = backplane().arg("plugins").arg("--plugin-dir").arg(&missing).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = stderr_of(&output);
    assert!(stderr.contains(&format!("--plugin-dir {} does not exist", missing.display())), "{stderr}");
}

#[test]
fn an_unknown_node_type_names_the_refused_plugin_file_that_exports_it() {
    let skewed = skewed_plugin(AbiSkew::ChangedFieldType);
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join(skewed.file_name().unwrap());
    std::fs::copy(&skewed, &copy).unwrap();
    let wf = crate::fixtures::workflow_dir("[[node]]\nid = \"a\"\ntype = \"fixture.abi_echo\"\n");
    let output = on_workflow("validate", &wf.path().join("workflow.toml"), dir.path());
    assert_eq!(output.status.code(), Some(2));
    let stderr = stderr_of(&output);
    assert!(stderr.contains("unknown node type `fixture.abi_echo`"), "{stderr}");
    assert!(
        stderr
            .contains(&format!("help: a plugin file that mentions `fixture.abi_echo` was refused: {}", copy.display())),
        "{stderr}"
    );
    assert!(stderr.contains("incompatible plugin ABI"), "{stderr}");
}

/// `backplane <command> <workflow> --plugin-dir <plugin_dir>`.
fn on_workflow(command: &str, workflow: &std::path::Path, plugin_dir: &std::path::Path) -> std::process::Output {
    backplane().arg(command).arg(workflow).arg("--plugin-dir").arg(plugin_dir).output().unwrap()
}

#[test]
fn a_type_whose_schema_is_not_json_schema_is_left_out_at_load_and_named() {
    let faulty = dylib("backplane_test_faulty");
    let mut cmd = backplane();
    let output = cmd.args(["plugins", "--json"]).env("BACKPLANE_TEST_BAD_SCHEMAS", "1").output().unwrap();
    assert_eq!(output.status.code(), Some(2), "{}", stderr_of(&output));
    let json: Value = serde_json::from_slice(&output.stdout).unwrap();
    let errors: Vec<String> =
        json["errors"].as_array().unwrap().iter().map(|e| e.as_str().unwrap().to_owned()).collect();
    let count = |what: &str| errors.iter().filter(|e| e.contains(what)).count();
    let sloppy = "backend type `sloppy` not loaded: its config schema is not valid JSON Schema at `/type`";
    assert_eq!(count(sloppy), 1, "{errors:#?}");
    let node = "node type `test.bad_schema` not loaded: its settings schema is not valid JSON Schema at `/properties`";
    assert_eq!(count(node), 1, "{errors:#?}");
    assert!(errors.iter().all(|e| e.starts_with(&faulty.display().to_string())), "{errors:#?}");
    // The rest of the plugin loaded.
    assert!(names(&json, "backends").contains(&"faulty".to_owned()));
    assert!(!names(&json, "backends").contains(&"sloppy".to_owned()));
    assert!(!names(&json, "nodes").contains(&"test.bad_schema".to_owned()));

    // A workflow using the type is told why it is missing, not "a typo".
    let wf = crate::fixtures::workflow_dir("[[node]]\nid = \"a\"\ntype = \"test.bad_schema\"\n");
    let output = backplane()
        .arg("validate")
        .arg(wf.path().join("workflow.toml"))
        .env("BACKPLANE_TEST_BAD_SCHEMAS", "1")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = stderr_of(&output);
    assert!(stderr.contains("unknown node type `test.bad_schema`"), "{stderr}");
    assert!(
        stderr.contains("help: ") && stderr.contains("not loaded: its settings schema is not valid JSON Schema"),
        "{stderr}"
    );

    // Without the variable the same plugin loads whole.
    let json = plugins_json(None, Expect::Clean);
    assert!(names(&json, "nodes").contains(&"test.bad_schema".to_owned()));
}
