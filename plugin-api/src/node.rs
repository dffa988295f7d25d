//! Node types: ports, settings, requirements and the compute function.

use crate::{
    error::{PluginError, PluginError_NE, PluginResult},
    guard::guard,
    log::LogLevel,
    payload::Payload,
    resources::Requirements,
};
use abi_stable::{
    RRef, StableAbi,
    prefix_type::PrefixTypeTrait,
    sabi_trait,
    sabi_trait::TD_Opaque,
    std_types::{ROption, RSlice, RSome, RStr, RString, RVec, Tuple2},
};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use std::{
    fmt,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

/// One input or output port of a node type.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq)]
pub struct PortSpec {
    pub name: RString,
    pub content_type: RString,
    pub description: RString,
    /// An input that must be connected (ignored for outputs).
    pub required: bool,
    /// An input that accepts several edges, delivered in the order written.
    pub multiple: bool,
    /// Key/value attributes added in later 1.x versions.
    pub extensions: RVec<Tuple2<RString, RString>>,
}

impl PortSpec {
    /// A required, single-edge port.
    pub fn new(name: &str, content_type: &str) -> Self {
        Self {
            name: name.into(),
            content_type: content_type.into(),
            description: RString::new(),
            required: true,
            multiple: false,
            extensions: RVec::new(),
        }
    }
    pub fn text(name: &str) -> Self {
        Self::new(name, crate::payload::TEXT)
    }
    pub fn optional(mut self) -> Self {
        self.required = false;
        self
    }
    pub fn multiple(mut self) -> Self {
        self.multiple = true;
        self
    }
    pub fn describe(mut self, description: &str) -> Self {
        self.description = description.into();
        self
    }
    /// An output that emits items one at a time while the node computes
    /// (1.3, see [`crate::stream`]); routed only to backends with the
    /// `streaming` capability.
    pub fn stream(mut self) -> Self {
        self.extensions.push(Tuple2(crate::stream::STREAM_KEY.into(), "true".into()));
        self
    }
    /// Whether the port was declared with [`PortSpec::stream`].
    pub fn is_stream(&self) -> bool {
        self.extensions.iter().any(|Tuple2(key, value)| key == crate::stream::STREAM_KEY && value == "true")
    }
}

/// What a running node may ask about its task; implemented by whoever runs it.
#[sabi_trait]
pub trait ComputeContext: Sync {
    fn node_id(&self) -> RStr<'_>;
    fn attempt(&self) -> u32;
    /// The workflow's directory; relative paths in settings resolve against it.
    fn working_dir(&self) -> RStr<'_>;
    fn is_cancelled(&self) -> bool;
    /// Milliseconds left before the deadline, `u64::MAX` without one.
    #[sabi(last_prefix_field)]
    fn remaining_ms(&self) -> u64;
    /// Added in 1.2: keeps one line the node logged with its task (the
    /// `log_*!` macros land here too while the node computes, see
    /// [`crate::log`]). Contexts before 1.2 drop it.
    fn log(&self, level: LogLevel, message: RStr<'_>) {
        let _ = (level, message);
    }
    /// Added in 1.3: hands on one item of a stream output (`item.port` names
    /// it), waiting while the stream's consumers are a window behind. An
    /// error means stop: the consumers are gone or the task was cancelled.
    /// Contexts before 1.3 cannot stream.
    fn emit(&self, item: Payload) -> PluginResult<()> {
        let _ = item;
        Err(PluginError::unsupported(crate::stream::CANNOT_STREAM)).into()
    }
}

/// The arguments of one compute call.
#[repr(C)]
#[derive(StableAbi)]
pub struct ComputeRequest<'a> {
    /// Canonical JSON of the node's settings (defaults merged in).
    pub settings: RStr<'a>,
    pub inputs: RVec<Payload>,
    pub context: ComputeContext_TO<'a, RRef<'a, ()>>,
}

/// A node type's in-process compute function.
#[repr(transparent)]
#[derive(StableAbi, Clone, Copy)]
pub struct ComputeFn(pub extern "C" fn(ComputeRequest<'_>) -> PluginResult<RVec<Payload>>);

impl fmt::Debug for ComputeFn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ComputeFn")
    }
}

/// Everything the host knows about a node type.
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = NodeSpecRef)))]
pub struct NodeSpec {
    /// Globally unique, dotted: `std.word_count`.
    pub type_name: RStr<'static>,
    pub version: RStr<'static>,
    pub description: RStr<'static>,
    pub inputs: RSlice<'static, PortSpec>,
    pub outputs: RSlice<'static, PortSpec>,
    /// JSON Schema of the settings object.
    pub settings_schema: RStr<'static>,
    /// JSON object of default settings.
    pub default_settings: RStr<'static>,
    /// Classification: `text`, `io`, `test`...
    pub tags: RSlice<'static, RStr<'static>>,
    pub requirements: &'static Requirements,
    /// Same inputs and settings give the same outputs (cacheable).
    pub deterministic: bool,
    #[sabi(last_prefix_field)]
    pub compute: ROption<ComputeFn>,
    /// Added in 1.1: checks settings beyond the JSON Schema when a workflow
    /// is validated (a regex that must compile, an index below a count).
    /// `RNone` from plugins built against 1.0.
    #[sabi(missing_field(default))]
    pub check_settings: ROption<SettingsCheckFn>,
}

/// A node type's settings check (1.1): given the canonical settings JSON
/// (defaults merged, already valid against the schema) and a JSON
/// [`CheckContext`], returns a JSON array of [`SettingsProblem`]s. Both sides
/// are JSON so either can grow fields without an ABI change.
#[repr(transparent)]
#[derive(StableAbi, Clone, Copy)]
pub struct SettingsCheckFn(pub extern "C" fn(settings: RStr<'_>, context: RStr<'_>) -> PluginResult<RString>);

impl fmt::Debug for SettingsCheckFn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SettingsCheckFn")
    }
}

/// What a settings check knows about the workflow it is checked for.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CheckContext {
    /// The workflow's directory; relative paths in settings resolve against it.
    pub workflow_dir: PathBuf,
    /// The config allows relative paths that climb out of `workflow_dir`.
    pub allow_outside_workflow_dir: bool,
}

impl CheckContext {
    /// Whether `path`, written relative to the workflow, climbs out of its
    /// directory with `..` when that is not allowed.
    pub fn escapes(&self, path: &str) -> bool {
        let path = Path::new(path);
        if self.allow_outside_workflow_dir || path.is_absolute() {
            return false;
        }
        let mut depth = 0i64;
        for part in path.components() {
            match part {
                std::path::Component::ParentDir => depth -= 1,
                std::path::Component::Normal(_) => depth += 1,
                _ => {}
            }
            if depth < 0 {
                return true;
            }
        }
        false
    }
}

/// One problem a settings check found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SettingsProblem {
    /// JSON pointer to the offending setting (`/pattern`), `""` for the whole object.
    pub pointer: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub help: Option<String>,
}

impl SettingsProblem {
    /// A problem with the setting `key` (a top-level key).
    pub fn at(key: &str, message: impl Into<String>) -> Self {
        Self { pointer: format!("/{key}"), message: message.into(), help: None }
    }
    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    /// The problem as a node failure (`message: help`), for `compute` to
    /// refuse what `check_settings` refuses when a host did not ask first.
    pub fn into_node_error(self) -> NodeError {
        match self.help {
            Some(help) => NodeError::new(format!("{}: {help}", self.message)),
            None => NodeError::new(self.message),
        }
    }
}

/// A simple [`ComputeContext`] that backends running tasks in process can use.
pub struct TaskContext<'a> {
    pub node_id: &'a str,
    pub attempt: u32,
    pub working_dir: &'a str,
    pub deadline: Option<Instant>,
    pub cancelled: &'a (dyn Fn() -> bool + Sync),
}

impl ComputeContext for TaskContext<'_> {
    fn node_id(&self) -> RStr<'_> {
        self.node_id.into()
    }
    fn attempt(&self) -> u32 {
        self.attempt
    }
    fn working_dir(&self) -> RStr<'_> {
        self.working_dir.into()
    }
    fn is_cancelled(&self) -> bool {
        (self.cancelled)()
    }
    fn remaining_ms(&self) -> u64 {
        self.deadline.map_or(u64::MAX, |d| d.saturating_duration_since(Instant::now()).as_millis() as u64)
    }
}

impl<'a> TaskContext<'a> {
    pub fn as_abi(&'a self) -> ComputeContext_TO<'a, RRef<'a, ()>> {
        ComputeContext_TO::from_ptr(RRef::new(self), TD_Opaque)
    }
}

/// The node-author view of the compute context.
pub struct Context<'a>(ComputeContext_TO<'a, RRef<'a, ()>>);

impl Context<'_> {
    pub fn node_id(&self) -> &str {
        self.0.node_id().as_str()
    }
    pub fn attempt(&self) -> u32 {
        self.0.attempt()
    }
    pub fn working_dir(&self) -> &Path {
        Path::new(self.0.working_dir().as_str())
    }
    /// `path` resolved against the workflow's directory.
    pub fn resolve(&self, path: &str) -> PathBuf {
        self.working_dir().join(path)
    }
    pub fn is_cancelled(&self) -> bool {
        self.0.is_cancelled()
    }
    /// Keeps `message` with this task's log (shown by `backplane logs`);
    /// the `log_*!` macros do the same for levels up to info.
    pub fn log(&self, level: LogLevel, message: &str) {
        self.0.log(level, message.into());
    }
    /// Emits `item` on the stream output `port` (see [`crate::stream`]).
    /// Returns an error when the node should stop: its consumers are gone,
    /// the task was cancelled, or this backend cannot stream.
    pub fn emit(&self, port: &str, mut item: Payload) -> Result<(), NodeError> {
        if item.port != port {
            item.port = port.into();
        }
        self.0.emit(item).into_result().map_err(NodeError::with)
    }
    pub fn remaining(&self) -> Option<Duration> {
        match self.0.remaining_ms() {
            u64::MAX => None,
            ms => Some(Duration::from_millis(ms)),
        }
    }
}

/// Inputs of one call, by port name.
pub struct Inputs(Vec<Payload>);

impl Inputs {
    pub fn new(payloads: Vec<Payload>) -> Self {
        Self(payloads)
    }
    /// The first payload on `port`, if connected.
    pub fn take(&mut self, port: &str) -> Option<Payload> {
        let i = self.0.iter().position(|p| p.port == port)?;
        Some(self.0.remove(i))
    }
    /// The payload on `port`, or a node error naming it.
    pub fn require(&mut self, port: &str) -> Result<Payload, NodeError> {
        self.take(port).ok_or_else(|| NodeError::new(format!("input port `{port}` received no data")))
    }
    /// All payloads on `port`, in edge order.
    pub fn take_all(&mut self, port: &str) -> Vec<Payload> {
        let (hit, rest) = std::mem::take(&mut self.0).into_iter().partition(|p| p.port == port);
        self.0 = rest;
        hit
    }
    /// The payload on `port` as UTF-8 text.
    pub fn text(&mut self, port: &str) -> Result<String, NodeError> {
        let payload = self.require(port)?;
        String::from_utf8(payload.data.into_vec())
            .map_err(|e| NodeError::new(format!("input port `{port}` is not UTF-8 text: {e}")))
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A failure inside a node's compute function. Any `std::error::Error`
/// converts into it, so `?` works on I/O, parse and regex errors.
#[derive(Debug)]
pub struct NodeError(PluginError_NE);

impl NodeError {
    pub fn new(message: impl Into<String>) -> Self {
        Self(PluginError::node_failed(message))
    }
    /// A specific kind, e.g. `PluginError::timed_out(..)`.
    pub fn with(error: PluginError_NE) -> Self {
        Self(error)
    }
    pub fn into_plugin_error(self) -> PluginError_NE {
        self.0
    }
}

impl<E: std::error::Error> From<E> for NodeError {
    fn from(e: E) -> Self {
        let mut message = e.to_string();
        let mut source = e.source();
        while let Some(s) = source {
            message.push_str(": ");
            message.push_str(&s.to_string());
            source = s.source();
        }
        Self::new(message)
    }
}

impl fmt::Display for NodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// Settings of a node type that has none: accepts `{}` and nothing else.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoSettings {}

/// A node type written in plain Rust; [`node_spec`] turns it into a [`NodeSpecRef`].
pub trait NodeType: 'static {
    const TYPE_NAME: &'static str;
    const VERSION: &'static str;
    const DESCRIPTION: &'static str;
    /// Deserialized from the node's settings; `Default` provides the defaults.
    type Settings: DeserializeOwned + Serialize + Default;

    fn inputs() -> Vec<PortSpec> {
        Vec::new()
    }
    fn outputs() -> Vec<PortSpec> {
        Vec::new()
    }
    /// JSON Schema of [`Self::Settings`]; the default accepts only `{}`, matching [`NoSettings`].
    fn settings_schema() -> serde_json::Value {
        serde_json::json!({ "type": "object", "additionalProperties": false })
    }
    fn tags() -> Vec<&'static str> {
        Vec::new()
    }
    fn requirements() -> Requirements {
        Requirements::default()
    }
    fn deterministic() -> bool {
        true
    }
    /// Problems with `settings` beyond what the schema says, found before
    /// anything runs (`backplane validate`). The default finds none.
    fn check_settings(settings: &Self::Settings, context: &CheckContext) -> Vec<SettingsProblem> {
        let _ = (settings, context);
        Vec::new()
    }
    fn compute(settings: Self::Settings, inputs: Inputs, ctx: &Context<'_>) -> Result<Vec<Payload>, NodeError>;
}

extern "C" fn check_adapter<N: NodeType>(settings: RStr<'_>, context: RStr<'_>) -> PluginResult<RString> {
    guard(|| {
        let settings: N::Settings = serde_json::from_str(settings.as_str())
            .map_err(|e| PluginError::invalid_config(format!("settings of `{}`: {e}", N::TYPE_NAME)))?;
        let context: CheckContext = serde_json::from_str(context.as_str()).unwrap_or_default();
        let problems = N::check_settings(&settings, &context);
        serde_json::to_string(&problems).map(RString::from).map_err(|e| PluginError::node_failed(e.to_string()))
    })
    .into()
}

extern "C" fn compute_adapter<N: NodeType>(request: ComputeRequest<'_>) -> PluginResult<RVec<Payload>> {
    guard(|| {
        let settings: N::Settings = if request.settings.is_empty() {
            N::Settings::default()
        } else {
            serde_json::from_str(request.settings.as_str())
                .map_err(|e| PluginError::invalid_config(format!("settings of `{}`: {e}", N::TYPE_NAME)))?
        };
        let ctx = Context(request.context);
        // What the node logs through `log_*!` on this thread is its task's too.
        let keep = |level: LogLevel, message: &str| ctx.0.log(level, message.into());
        match crate::log::capturing(&keep, || N::compute(settings, Inputs(request.inputs.into_vec()), &ctx)) {
            Ok(outputs) => Ok(outputs.into()),
            Err(e) => Err(e.into_plugin_error()),
        }
    })
    .into()
}

/// Builds the ABI description of `N` (leaked: node specs live as long as the process).
pub fn node_spec<N: NodeType>() -> NodeSpecRef {
    let defaults = serde_json::to_string(&N::Settings::default()).unwrap_or_else(|_| "{}".into());
    NodeSpec {
        type_name: RStr::from_str(N::TYPE_NAME),
        version: RStr::from_str(N::VERSION),
        description: RStr::from_str(N::DESCRIPTION),
        inputs: leak_slice(N::inputs()),
        outputs: leak_slice(N::outputs()),
        settings_schema: leak_str(N::settings_schema().to_string()),
        default_settings: leak_str(defaults),
        tags: leak_slice(N::tags().into_iter().map(RStr::from_str).collect()),
        requirements: Box::leak(Box::new(N::requirements())),
        deterministic: N::deterministic(),
        compute: RSome(ComputeFn(compute_adapter::<N>)),
        check_settings: RSome(SettingsCheckFn(check_adapter::<N>)),
    }
    .leak_into_prefix()
}

/// Leaks a string for a `'static` export (exports live as long as the process).
pub fn leak_str(s: String) -> RStr<'static> {
    RStr::from_str(Box::leak(s.into_boxed_str()))
}

/// Leaks a vector for a `'static` export.
pub fn leak_slice<T>(v: Vec<T>) -> RSlice<'static, T> {
    RSlice::from_slice(Box::leak(v.into_boxed_slice()))
}
