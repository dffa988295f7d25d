//! Integration tests of the host against real plugin dylibs and the real
//! `backplane` binary.
//!
//! Modules:
//! - `config_discovery`: which config a command uses (flag, variable, beside the workflow, upward, XDG) and saying so
//! - `authoring`: suggestions, required settings, bad environment overrides, workflows from stdin
//! - `cache`: the result cache and run records: resume, explained misses, provenance, damage, sharing, kill -9
//! - `fixtures`: paths, the binary, plugin builds (including ABI-skewed ones)
//! - `loading`: discovery, ABI and version rejection, duplicates, bad files
//! - `fuzz_regressions`: every input in `fuzz/regressions/` replayed through the real parsers
//! - `guide`: docs/plugin-guide.md followed verbatim, outside the workspace: build, run, verify, cargo test
//! - `hardening`: planted links, special files, kill -9 mid-write, orphans, bad bytes, `--json` on failure
//! - `evolution`: next-minor plugins in this host and this host's plugins in a next-minor host
//! - `runs`: workflows end to end, node failures and panics, misbehaving backends
//! - `diagnostics`: every class of workflow error, snapshot-tested
//! - `library`: the host used as a Rust library with a backend written in Rust
//! - `policies`: real signals to a real run, grace periods, the `continue` policy
//! - `admission`: deadlines count running time, timeouts are the node's, resources are reserved
//! - `routing`: rules, precedence, derived instances, env overrides, rerouting
//! - `verify`: the conformance suite on our plugins, the examples and broken fixtures
//! - `ray`: the ray backend on a private local Ray: parity, panics, crashes, cancellation
//! - `new`: `backplane new` crates built outside the workspace, loaded, verified and run; refusals
//! - `nats`: real `nats-server` and `backplane worker` processes
//! - `shell`: completion scripts loaded into a real bash, man pages for every command
//! - `streams`: streaming outputs on `local`: accumulated values, routing producers to backends that stream
//! - `observe`: the HTML report in headless Chromium, traces, per-node logs, metrics from runs and workers
//! - `workers`: the worker backend end to end: sharing, kill -9, NATS restarts, credentials, large payloads, parity

mod admission;
mod authoring;
mod cache;
mod config_discovery;
mod diagnostics;
mod evolution;
mod fanout;
mod fixtures;
mod fuzz_regressions;
mod guide;
mod hardening;
mod library;
mod loading;
mod nats;
mod new;
mod observe;
mod params;
mod partial_runs;
mod policies;
mod ray;
mod routing;
mod runs;
mod shell;
mod streams;
mod verify;
mod workers;
