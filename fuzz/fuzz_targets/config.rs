//! Any bytes as a `backplane.toml`: read (size, UTF-8), parsed with every key
//! checked, routes compiled (globs bounded). Nothing may panic.
#![no_main]

use backplane_fuzz_support::source;
use backplane_host::config::Config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(source) = source("backplane.toml", data) else { return };
    let config = Config::parse_lenient(source);
    if let Err(e) = config.check() {
        let _ = e.to_string();
    }
});
