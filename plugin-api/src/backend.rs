//! Backends: factories, live instances, tasks and the completion sink.

// `#[sabi_trait]` expands a by-value `self` method into a no-op pointer cast.
#![allow(clippy::unnecessary_cast)]

use crate::{
    error::{PluginError, PluginError_NE, PluginResult},
    guard::guard,
    log::LogLevel,
    node::{ComputeContext, ComputeContext_TO, ComputeFn, ComputeRequest, TaskContext},
    payload::Payload,
    resources::{Capabilities, Health, Resources},
};
use abi_stable::{
    RRef, StableAbi,
    prefix_type::PrefixTypeTrait,
    sabi_trait,
    sabi_trait::TD_Opaque,
    std_types::{RBox, ROption, RResult, RStr, RString, RVec, Tuple2},
};
use serde::de::DeserializeOwned;
use std::{
    mem::ManuallyDrop,
    time::{Duration, Instant},
};

/// One execution of one node, handed to a backend.
#[repr(C)]
#[derive(StableAbi, Debug, Default)]
pub struct NodeTask {
    /// Unique within a run; the same across retries of a node is *not* assumed.
    pub task_id: u64,
    /// 1 for the first attempt.
    pub attempt: u32,
    pub node_id: RString,
    pub node_type: RString,
    pub node_version: RString,
    /// Canonical JSON of the settings, defaults merged in.
    pub settings: RString,
    pub inputs: RVec<Payload>,
    pub resources: Resources,
    /// 0 = no deadline.
    pub timeout_ms: u64,
    /// The workflow's directory: relative paths resolve against it.
    pub working_dir: RString,
    /// The node type's in-process compute function, when it has one.
    pub compute: ROption<ComputeFn>,
    /// Key/value attributes added in later 1.x versions; see [`crate::extensions`].
    pub extensions: RVec<Tuple2<RString, RString>>,
}

/// Host-implemented; completes one task. Call `complete` exactly once, from
/// any thread. Dropping it uncompleted reports an infrastructure error.
#[sabi_trait]
pub trait CompletionSink: Send {
    #[sabi(last_prefix_field)]
    fn complete(self, result: PluginResult<RVec<Payload>>);
    /// Added in 1.2: the task left the backend's own queue and began to run,
    /// at `at_unix_us` microseconds since the Unix epoch (0: now). Call it at
    /// most once, before `complete`; the host tells time queued in the
    /// backend from time running by it. Hosts before 1.2 ignore it.
    fn started(&self, at_unix_us: u64) {
        let _ = at_unix_us;
    }
    /// Added in 1.2: one line the task's node logged (see [`crate::task_log`]),
    /// forwarded before `complete`; the host keeps it with the node's
    /// attempt. Hosts before 1.2 ignore it.
    fn log(&self, level: LogLevel, message: RStr<'_>) {
        let _ = (level, message);
    }
    /// Added in 1.3: one item the task's node emitted on a stream output
    /// (`item.port` names it), before `complete`. It may wait while the
    /// stream's consumers are a window behind; an error means the task
    /// should stop emitting (its consumers are gone). Hosts before 1.3
    /// cannot take items.
    fn emit(&self, item: Payload) -> PluginResult<()> {
        let _ = item;
        Err(PluginError::unsupported(crate::stream::HOST_CANNOT_STREAM)).into()
    }
}

pub type CompletionSinkBox = CompletionSink_TO<'static, RBox<()>>;

/// A live backend instance. Every method returns promptly: `submit` only
/// queues work, which the backend runs on threads or a runtime it owns.
#[sabi_trait]
pub trait Backend: Send + Sync {
    /// Live capabilities (a pool's capacity changes).
    fn capabilities(&self) -> Capabilities;
    fn submit(&self, task: NodeTask, sink: CompletionSinkBox);
    /// Best effort: a task not yet started completes with `Cancelled`; a running
    /// one sees `is_cancelled()`.
    fn cancel(&self, task_id: u64);
    fn health(&self) -> Health;
    /// Stops accepting work and releases resources; tasks still queued complete
    /// with `Cancelled`.
    #[sabi(last_prefix_field)]
    fn shutdown(&self);
}

pub type BackendBox = Backend_TO<'static, RBox<()>>;

/// Describes and creates one kind of backend.
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = BackendFactoryRef)))]
pub struct BackendFactory {
    /// The `type` operators write in `backplane.toml`, e.g. `local`.
    pub name: RStr<'static>,
    pub version: RStr<'static>,
    pub description: RStr<'static>,
    /// Static capabilities of any instance.
    pub capabilities: &'static Capabilities,
    /// JSON Schema of the instance configuration.
    pub config_schema: RStr<'static>,
    /// Creates an instance from a JSON configuration object.
    #[sabi(last_prefix_field)]
    pub create: extern "C" fn(config_json: RStr<'_>) -> PluginResult<BackendBox>,
}

/// A backend written in plain Rust; [`backend_factory`] exports it.
pub trait BackendPlugin: Send + Sync + Sized + 'static {
    const NAME: &'static str;
    const VERSION: &'static str;
    const DESCRIPTION: &'static str;
    type Config: DeserializeOwned;

    fn config_schema() -> serde_json::Value {
        serde_json::json!({ "type": "object" })
    }
    fn capabilities() -> Capabilities;
    fn create(config: Self::Config) -> Result<Self, PluginError_NE>;

    fn live_capabilities(&self) -> Capabilities {
        Self::capabilities()
    }
    fn submit(&self, task: NodeTask, sink: CompletionSinkBox);
    fn cancel(&self, _task_id: u64) {}
    fn health(&self) -> Health {
        Health::up()
    }
    fn shutdown(&self) {}
}

/// Implements the ABI trait for a [`BackendPlugin`], catching every panic,
/// including one in the backend's `Drop`.
pub struct GuardedBackend<B>(pub ManuallyDrop<B>);

impl<B> GuardedBackend<B> {
    pub fn new(backend: B) -> Self {
        Self(ManuallyDrop::new(backend))
    }
}

impl<B> Drop for GuardedBackend<B> {
    fn drop(&mut self) {
        // SAFETY: dropped exactly once, here; `self.0` is not used afterwards.
        let dropped = guard(|| {
            unsafe { ManuallyDrop::drop(&mut self.0) };
            Ok(())
        });
        report_panic("drop", dropped);
    }
}

fn report_panic<T>(method: &str, result: Result<T, PluginError_NE>) -> Option<T> {
    match result {
        Ok(v) => Some(v),
        Err(e) => {
            crate::log_error!("backend {method} failed: {e}");
            None
        }
    }
}

impl<B: BackendPlugin> Backend for GuardedBackend<B> {
    fn capabilities(&self) -> Capabilities {
        report_panic("capabilities", guard(|| Ok(self.0.live_capabilities()))).unwrap_or_default()
    }
    fn submit(&self, task: NodeTask, sink: CompletionSinkBox) {
        // A panic drops the sink while unwinding, which the host sees as an error.
        report_panic(
            "submit",
            guard(|| {
                self.0.submit(task, sink);
                Ok(())
            }),
        );
    }
    fn cancel(&self, task_id: u64) {
        report_panic(
            "cancel",
            guard(|| {
                self.0.cancel(task_id);
                Ok(())
            }),
        );
    }
    fn health(&self) -> Health {
        match guard(|| Ok(self.0.health())) {
            Ok(h) => h,
            Err(e) => Health::down(e.to_string()),
        }
    }
    fn shutdown(&self) {
        report_panic(
            "shutdown",
            guard(|| {
                self.0.shutdown();
                Ok(())
            }),
        );
    }
}

extern "C" fn create_adapter<B: BackendPlugin>(config_json: RStr<'_>) -> PluginResult<BackendBox> {
    guard(|| {
        let text = if config_json.is_empty() { "{}" } else { config_json.as_str() };
        let config: B::Config = serde_json::from_str(text)
            .map_err(|e| PluginError::invalid_config(format!("backend `{}`: {e}", B::NAME)))?;
        let backend = B::create(config)?;
        Ok(Backend_TO::from_value(GuardedBackend::new(backend), TD_Opaque))
    })
    .into()
}

/// Builds the ABI factory of `B` (leaked: factories live as long as the process).
pub fn backend_factory<B: BackendPlugin>() -> BackendFactoryRef {
    BackendFactory {
        name: RStr::from_str(B::NAME),
        version: RStr::from_str(B::VERSION),
        description: RStr::from_str(B::DESCRIPTION),
        capabilities: Box::leak(Box::new(B::capabilities())),
        config_schema: crate::node::leak_str(B::config_schema().to_string()),
        create: create_adapter::<B>,
    }
    .leak_into_prefix()
}

/// Runs a task's in-process compute function on the current thread: the
/// whole job of an in-process backend's worker. What the node logs is
/// dropped and it cannot stream; [`run_compute_with`] gives it both.
pub fn run_compute(task: NodeTask, cancelled: &(dyn Fn() -> bool + Sync)) -> PluginResult<RVec<Payload>> {
    run_compute_with(task, cancelled, TaskIo::default())
}

/// [`run_compute`], keeping what the node logs in `log` (bounded; forward
/// it with [`TaskLog::forward`](crate::task_log::TaskLog::forward)).
pub fn run_compute_logged(
    task: NodeTask,
    cancelled: &(dyn Fn() -> bool + Sync),
    log: Option<&crate::task_log::TaskLog>,
) -> PluginResult<RVec<Payload>> {
    run_compute_with(task, cancelled, TaskIo { log, emit: None })
}

/// Where a computing node's log lines and streamed items go, besides its
/// result: lent by the backend that runs it.
#[derive(Clone, Copy, Default)]
pub struct TaskIo<'a> {
    /// Keeps what the node logs (dropped when `None`).
    pub log: Option<&'a crate::task_log::TaskLog>,
    /// Takes the items the node emits (1.3), usually by calling the task
    /// sink's `emit`; without it, emitting fails as unsupported.
    pub emit: Option<&'a (dyn Fn(Payload) -> PluginResult<()> + Sync)>,
}

/// [`run_compute`] with `io` for the node's logs and streamed items.
pub fn run_compute_with(
    mut task: NodeTask,
    cancelled: &(dyn Fn() -> bool + Sync),
    io: TaskIo<'_>,
) -> PluginResult<RVec<Payload>> {
    let Some(ComputeFn(compute)) = task.compute.into_option() else {
        return RResult::RErr(PluginError::unsupported(format!(
            "node type `{}` has no in-process compute function",
            task.node_type
        )));
    };
    // `checked_add`: an absurd timeout means "no deadline", not a panic.
    let deadline =
        (task.timeout_ms > 0).then(|| Instant::now().checked_add(Duration::from_millis(task.timeout_ms))).flatten();
    let inputs = std::mem::take(&mut task.inputs);
    let ctx = TaskContext {
        node_id: task.node_id.as_str(),
        attempt: task.attempt,
        working_dir: task.working_dir.as_str(),
        deadline,
        cancelled,
    };
    let settings = task.settings.as_rstr();
    let context = IoContext { task: &ctx, io };
    compute(ComputeRequest { settings, inputs, context: context.as_abi() })
}

/// A [`TaskContext`] whose `log` and `emit` go where [`TaskIo`] says.
struct IoContext<'a> {
    task: &'a TaskContext<'a>,
    io: TaskIo<'a>,
}

impl ComputeContext for IoContext<'_> {
    fn node_id(&self) -> RStr<'_> {
        self.task.node_id()
    }
    fn attempt(&self) -> u32 {
        self.task.attempt()
    }
    fn working_dir(&self) -> RStr<'_> {
        self.task.working_dir()
    }
    fn is_cancelled(&self) -> bool {
        self.task.is_cancelled()
    }
    fn remaining_ms(&self) -> u64 {
        self.task.remaining_ms()
    }
    fn log(&self, level: LogLevel, message: RStr<'_>) {
        if let Some(log) = self.io.log {
            log.push(level, message.as_str());
        }
    }
    fn emit(&self, item: Payload) -> PluginResult<()> {
        match self.io.emit {
            Some(emit) => emit(item),
            None => Err(PluginError::unsupported(crate::stream::CANNOT_STREAM)).into(),
        }
    }
}

impl<'a> IoContext<'a> {
    fn as_abi(&'a self) -> ComputeContext_TO<'a, RRef<'a, ()>> {
        ComputeContext_TO::from_ptr(RRef::new(self), TD_Opaque)
    }
}
