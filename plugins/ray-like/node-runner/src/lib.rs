//! The node runner: a C ABI that the ray-like driver's generic Ray task
//! calls through ctypes to run one Backplane node inside a Ray worker.
//!
//! # Core concepts
//!
//! - Plugins load with the host's own loader and ABI checks
//!   (`backplane_loader::Host`), once per Ray worker process, from the plugin
//!   directories given to `backplane_init`.
//! - Requests and responses are msgpack maps with named fields; input bytes
//!   are borrowed `(pointer, length)` pairs, never copied into the request.
//! - No panic crosses this boundary: every entry point catches them and a
//!   node's panic becomes an error response. A real crash (abort) kills only
//!   the Ray worker, which Ray retries.
//!
//! The library also exports an empty plugin module, so the host's loader,
//! which reads every dylib on the plugin path, accepts it quietly.

use backplane_loader::{Host, task_runner};
use backplane_plugin_api::{Payload, PluginError, TaskLog, describe, wire::TaskMessage};
use serde::{Deserialize, Serialize};
use std::{
    panic::{AssertUnwindSafe, catch_unwind},
    path::PathBuf,
    sync::OnceLock,
};

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RunnerConfig {
    plugin_dirs: Vec<PathBuf>,
}

#[derive(Deserialize)]
struct InputDesc {
    port: String,
    content_type: String,
}

/// Task details the Ray task does not need, passed through by the driver.
#[derive(Default, Deserialize)]
#[serde(default)]
struct TaskContext {
    node_id: String,
    node_version: String,
    working_dir: String,
    timeout_ms: u64,
}

#[derive(Deserialize)]
struct Request {
    task_id: u64,
    node_type: String,
    settings: String,
    inputs: Vec<InputDesc>,
    #[serde(default)]
    attempt: u32,
    #[serde(default)]
    context: TaskContext,
}

#[derive(Serialize)]
struct Output {
    port: String,
    content_type: String,
    #[serde(with = "serde_bytes")]
    data: Vec<u8>,
}

#[derive(Serialize)]
struct Response {
    ok: bool,
    error_kind: String,
    message: String,
    outputs: Vec<Output>,
    /// What the node logged: level and line (bounded as the task log bounds it).
    logs: Vec<(u8, String)>,
}

static HOST: OnceLock<Host> = OnceLock::new();

fn host(config: &[u8]) -> Result<&'static Host, String> {
    if let Some(host) = HOST.get() {
        return Ok(host);
    }
    let config: RunnerConfig = if config.iter().all(u8::is_ascii_whitespace) {
        RunnerConfig::default()
    } else {
        serde_json::from_slice(config).map_err(|e| format!("invalid node runner config: {e}"))?
    };
    let mut host = Host::for_tasks();
    host.load_plugins(&config.plugin_dirs, false);
    if !host.conflicts.is_empty() {
        let conflicts: Vec<String> = host.conflicts.iter().map(ToString::to_string).collect();
        return Err(conflicts.join("; "));
    }
    Ok(HOST.get_or_init(|| host))
}

/// Hands `bytes` to the caller, who frees them with [`backplane_free`].
///
/// # Safety
/// `out` and `out_len` must be valid for writes.
unsafe fn give(bytes: Vec<u8>, out: *mut *mut u8, out_len: *mut usize) {
    let boxed = bytes.into_boxed_slice();
    // SAFETY: the caller passes writable pointers (checked non-null by callers).
    unsafe {
        *out_len = boxed.len();
        *out = Box::into_raw(boxed).cast::<u8>();
    }
}

/// Loads the plugins (once per process). Returns 0, or 1 with a message.
///
/// # Safety
/// `cfg` points to `cfg_len` readable bytes (or is null with length 0);
/// `err` and `err_len` are writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn backplane_init(cfg: *const u8, cfg_len: usize, err: *mut *mut u8, err_len: *mut usize) -> i32 {
    let config = if cfg.is_null() { &[][..] } else { unsafe { std::slice::from_raw_parts(cfg, cfg_len) } };
    let result = catch_unwind(|| host(config).map(|_| ())).unwrap_or_else(|_| Err("the node runner panicked".into()));
    match result {
        Ok(()) => 0,
        Err(message) => {
            if !err.is_null() && !err_len.is_null() {
                unsafe { give(message.into_bytes(), err, err_len) };
            }
            1
        }
    }
}

fn run(request: &[u8], inputs: Vec<Vec<u8>>) -> Result<Response, String> {
    let request: Request = rmp_serde::from_slice(request).map_err(|e| format!("malformed request: {e}"))?;
    if request.inputs.len() != inputs.len() {
        return Err(format!("{} input descriptions for {} buffers", request.inputs.len(), inputs.len()));
    }
    let host = host(std::env::var("BACKPLANE_RAY_NODE_LIB_CONFIG").unwrap_or_default().as_bytes())?;
    let message = TaskMessage {
        task_id: request.task_id,
        attempt: request.attempt,
        node_id: request.context.node_id,
        node_type: request.node_type,
        node_version: request.context.node_version,
        settings: request.settings,
        working_dir: request.context.working_dir,
        timeout_ms: request.context.timeout_ms,
        inputs: request
            .inputs
            .into_iter()
            .zip(inputs)
            .map(|(desc, data)| Payload::bytes(&desc.port, &desc.content_type, data))
            .collect(),
    };
    let log = TaskLog::new();
    let result = task_runner::run_task(host, message, &|| false, Some(&log));
    let logs = log.take().into_iter().map(|l| (l.level.0, l.message)).collect();
    Ok(match result {
        Ok(outputs) => Response {
            ok: true,
            error_kind: String::new(),
            message: String::new(),
            outputs: outputs
                .into_iter()
                .map(|p| Output { port: p.port.into(), content_type: p.content_type.into(), data: p.data.into_vec() })
                .collect(),
            logs,
        },
        Err(error) => {
            let kind = match describe(&error) {
                "node-failed" => "node",
                "panicked" => "panic",
                other => other,
            };
            let message = match error.as_enum() {
                Ok(PluginError::NodeFailed { message } | PluginError::Panicked { message }) => message.to_string(),
                _ => error.to_string(),
            };
            Response { ok: false, error_kind: kind.to_owned(), message, outputs: Vec::new(), logs }
        }
    })
}

/// Runs one node. Returns 0 with a msgpack response in `*out`, or 1 with a
/// UTF-8 message when the runner itself failed.
///
/// # Safety
/// `req` points to `req_len` readable bytes; `in_ptrs`/`in_lens` to
/// `n_inputs` pointers and lengths of readable buffers; `out`/`out_len` are
/// writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn backplane_run_task(
    req: *const u8,
    req_len: usize,
    in_ptrs: *const *const u8,
    in_lens: *const usize,
    n_inputs: usize,
    out: *mut *mut u8,
    out_len: *mut usize,
) -> i32 {
    if req.is_null() || out.is_null() || out_len.is_null() || (n_inputs > 0 && (in_ptrs.is_null() || in_lens.is_null()))
    {
        return 2;
    }
    let request = unsafe { std::slice::from_raw_parts(req, req_len) };
    let inputs: Vec<Vec<u8>> = (0..n_inputs)
        .map(|i| unsafe {
            let (ptr, len) = (*in_ptrs.add(i), *in_lens.add(i));
            if ptr.is_null() { Vec::new() } else { std::slice::from_raw_parts(ptr, len).to_vec() }
        })
        .collect();
    let result = catch_unwind(AssertUnwindSafe(|| run(request, inputs)))
        .unwrap_or_else(|_| Err("the node runner panicked".into()));
    match result.and_then(|r| rmp_serde::to_vec_named(&r).map_err(|e| e.to_string())) {
        Ok(bytes) => {
            unsafe { give(bytes, out, out_len) };
            0
        }
        Err(message) => {
            unsafe { give(message.into_bytes(), out, out_len) };
            1
        }
    }
}

/// Frees a buffer this library returned.
///
/// # Safety
/// `ptr`/`len` come from this library's `*out`/`*err` and are freed once.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn backplane_free(ptr: *mut u8, len: usize) {
    if !ptr.is_null() {
        drop(unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(ptr, len)) });
    }
}

backplane_plugin_api::export_plugin! {
    backends: [],
    nodes: [],
}
