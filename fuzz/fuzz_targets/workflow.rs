//! Any bytes as a workflow file: read (size, UTF-8), parsed, checked against
//! the standard node types (schemas and settings checks) and planned. Nothing
//! may panic, and the diagnostics stay bounded.
#![no_main]

use backplane_fuzz_support::{host, source};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(source) = source("workflow.toml", data) else { return };
    let host = host();
    if let Err(diagnostics) =
        backplane_host::plan::plan_source(source, &host.nodes, &host.backends, &[], Default::default())
    {
        assert!(diagnostics.0.len() <= 2 * backplane_host::diagnostic::MAX_DIAGNOSTICS_PER_FILE + 2);
        let _ = diagnostics.to_string();
    }
});
