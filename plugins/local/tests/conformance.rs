//! The `local` backend through the conformance suite, with the standard
//! node library loaded from its dylib.

use backplane_conformance::{BackendSuite, Status, check_backend, load_node_specs};
use backplane_local::LocalBackend;
use backplane_plugin_api::backend_factory;
use std::{path::PathBuf, time::Duration};

/// target/<profile>, where the workspace's dylibs are.
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    exe.parent().and_then(|deps| deps.parent()).expect("target/<profile>/deps/<test>").to_path_buf()
}

#[test]
fn local_backend_passes_the_conformance_suite() {
    let status = std::process::Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["build", "-p", "backplane-std-nodes"])
        .status()
        .expect("cargo runs");
    assert!(status.success(), "building the std-nodes plugin failed");
    let std_nodes = target_dir().join(format!("libbackplane_std_nodes.{}", std::env::consts::DLL_EXTENSION));
    let nodes = load_node_specs(&std_nodes).expect("the std-nodes plugin loads");

    let checks = check_backend(&BackendSuite {
        factory: backend_factory::<LocalBackend>(),
        config: serde_json::json!({ "threads": 2 }),
        nodes: &nodes,
        timeout: Duration::from_secs(60),
    });
    let report: Vec<String> = checks.iter().map(|c| format!("{:?} {}: {}", c.status, c.name, c.detail)).collect();
    assert!(checks.iter().all(|c| c.status == Status::Pass), "{}", report.join("\n"));
    // Every check ran: none skipped for lack of node types.
    for name in [
        "parity",
        "concurrent",
        "node-failure",
        "node-panic",
        "large-payload",
        "cancel-running",
        "cancel-queued",
        "shutdown-in-flight",
    ] {
        assert!(checks.iter().any(|c| c.name == name), "check {name} missing:\n{}", report.join("\n"));
    }
}
