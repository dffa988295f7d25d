//! `backplane new backend|nodes`: the generated crates build outside the
//! workspace, load, and pass `verify` as generated; bad requests are refused.

use crate::fixtures::{backplane, cargo_command, stderr_of, stdout_of, workspace_root};
use serde_json::Value;
use std::path::Path;

/// `cargo <args>` in `dir`, offline (everything is in the registry cache
/// after the workspace build), with `target` as the target directory.
fn cargo(dir: &Path, target: &Path, args: &[&str]) {
    let output = cargo_command()
        .current_dir(dir)
        .args(args)
        .env("CARGO_TARGET_DIR", target)
        .env("CARGO_NET_OFFLINE", "true")
        .env("CARGO_BUILD_JOBS", "2")
        .output()
        .unwrap();
    assert!(output.status.success(), "cargo {args:?} in {} failed:\n{}", dir.display(), stderr_of(&output));
}

#[test]
fn generated_plugins_build_load_and_pass_verify() {
    let home = tempfile::tempdir().unwrap();
    // One target directory for both crates, outside any workspace: only the build is shared.
    let target = home.path().join("target");
    for (kind, name) in [("backend", "acme-gen"), ("nodes", "acme-gen-nodes")] {
        let output = backplane().current_dir(home.path()).args(["new", kind, name]).output().unwrap();
        assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
        assert!(stdout_of(&output).contains(&format!("next: cd {name} && cargo build")), "{}", stdout_of(&output));
        cargo(&home.path().join(name), &target, &["build"]);
    }
    cargo(&home.path().join("acme-gen-nodes"), &target, &["test"]);

    let dylib = |stem: &str| target.join("debug").join(format!("lib{stem}.{}", std::env::consts::DLL_EXTENSION));
    for (stem, subject) in [("acme_gen", "acme-gen"), ("acme_gen_nodes", "acme_gen_nodes.shout")] {
        let output = backplane().arg("verify").arg(dylib(stem)).arg("--json").output().unwrap();
        let report: Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|_| panic!("{}", stderr_of(&output)));
        assert_eq!(output.status.code(), Some(0), "{report:#}");
        let subjects = report["subjects"].as_array().unwrap();
        assert_eq!(subjects.len(), 1, "{report:#}");
        assert_eq!(subjects[0]["name"], subject);
        let checks = subjects[0]["checks"].as_array().unwrap();
        assert!(checks.len() >= 3 && checks.iter().all(|c| c["status"] == "pass"), "{report:#}");
    }

    // The backend runs a workflow as the default instance of a config.
    std::fs::write(
        home.path().join("backplane.toml"),
        "default_backend = \"gen\"\n[backends.gen]\ntype = \"acme-gen\"\nworkers = 3\n",
    )
    .unwrap();
    std::fs::write(
        home.path().join("workflow.toml"),
        "[[node]]\nid = \"t\"\ntype = \"std.const\"\nsettings = { text = \"a\\nb\\n\" }\n\n[[node]]\nid = \"s\"\ntype = \"acme_gen_nodes.shout\"\nsettings = { suffix = \"!\" }\ninputs = { text = \"t.text\" }\n\n[[output]]\nfrom = \"s.text\"\nto = \"-\"\n",
    )
    .unwrap();
    let output = backplane()
        .current_dir(home.path())
        .args([
            "--plugin-dir",
            target.join("debug").to_str().unwrap(),
            "run",
            "workflow.toml",
            "--config",
            "backplane.toml",
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
    assert_eq!(stdout_of(&output), "A!\nB!\n");
    assert!(stderr_of(&output).contains("gen (acme-gen): 2 nodes"), "{}", stderr_of(&output));
}

#[test]
fn new_refuses_bad_names_existing_directories_and_workspaces() {
    let home = tempfile::tempdir().unwrap();
    let refused = |dir: &Path, args: &[&str]| {
        let output = backplane().current_dir(dir).arg("new").args(args).output().unwrap();
        assert_eq!(output.status.code(), Some(2), "{args:?}: {}", stderr_of(&output));
        stderr_of(&output)
    };
    assert!(refused(home.path(), &["nodes", "Acme"]).contains("`Acme` is not a plugin name"));
    std::fs::create_dir(home.path().join("taken")).unwrap();
    assert!(refused(home.path(), &["backend", "taken"]).contains("cannot create taken"));
    // A link where the crate would go is not followed.
    std::os::unix::fs::symlink(home.path().join("elsewhere"), home.path().join("linked")).unwrap();
    assert!(refused(home.path(), &["backend", "linked"]).contains("cannot create linked"));
    assert!(!home.path().join("elsewhere").exists());
    let inside = refused(&workspace_root(), &["nodes", "x", "--dir", "target/new-test-x"]);
    assert!(inside.contains("is inside the Cargo workspace") && inside.contains("help: create it outside"), "{inside}");
    assert!(!workspace_root().join("target/new-test-x").exists());
}
