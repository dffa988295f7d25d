//! Small utility nodes: constants, hashing, pass-through, and nodes that
//! fail, panic or sleep on purpose to exercise the host.

use crate::{ANY, VERSION, schema, text_port};
use backplane_plugin_api::prelude::*;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};

/// `std.hash`: the BLAKE3 digest of its input.
pub struct Hash;

#[derive(Debug, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct HashSettings {}

impl NodeType for Hash {
    const TYPE_NAME: &'static str = "std.hash";
    const VERSION: &'static str = VERSION;
    const DESCRIPTION: &'static str = "Outputs the BLAKE3 digest of its input as a hex line";
    type Settings = HashSettings;

    fn inputs() -> Vec<PortSpec> {
        vec![PortSpec::new("data", ANY).describe("the bytes to hash, of any content type")]
    }
    fn outputs() -> Vec<PortSpec> {
        vec![text_port("digest", "64 lowercase hex digits and a newline")]
    }
    fn settings_schema() -> serde_json::Value {
        schema::<Self::Settings>()
    }
    fn tags() -> Vec<&'static str> {
        vec!["data"]
    }

    fn compute(_: Self::Settings, mut inputs: Inputs, _: &Context<'_>) -> Result<Vec<Payload>, NodeError> {
        let data = inputs.require("data")?.data;
        Ok(vec![Payload::text("digest", format!("{}\n", blake3::hash(&data).to_hex()))])
    }
}

/// `std.const`: a fixed text, for seeding workflows and tests.
pub struct Const;

#[derive(Debug, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ConstSettings {
    /// The text to output, as is.
    pub text: String,
}

impl NodeType for Const {
    const TYPE_NAME: &'static str = "std.const";
    const VERSION: &'static str = VERSION;
    const DESCRIPTION: &'static str = "Outputs the text given in its settings";
    type Settings = ConstSettings;

    fn outputs() -> Vec<PortSpec> {
        vec![text_port("text", "the `text` setting")]
    }
    fn settings_schema() -> serde_json::Value {
        schema::<Self::Settings>()
    }
    fn tags() -> Vec<&'static str> {
        vec!["text"]
    }

    fn compute(s: Self::Settings, _: Inputs, _: &Context<'_>) -> Result<Vec<Payload>, NodeError> {
        Ok(vec![Payload::text("text", s.text)])
    }
}

/// The `in` → `out` ports of pass-through nodes.
fn passthrough_ports() -> (Vec<PortSpec>, Vec<PortSpec>) {
    (
        vec![PortSpec::new("in", ANY).optional().describe("passed through unchanged")],
        vec![PortSpec::new("out", ANY).describe("the input, or empty text without one")],
    )
}

/// Moves `in` to `out` without copying its bytes.
fn pass_through(mut inputs: Inputs) -> Vec<Payload> {
    let payload = match inputs.take("in") {
        Some(mut payload) => {
            payload.port = "out".into();
            payload
        }
        None => Payload::text("out", String::new()),
    };
    vec![payload]
}

/// `std.noop`: passes its input through; a cheap node for benchmarking the
/// host's per-node overhead.
pub struct Noop;

#[derive(Debug, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct NoopSettings {}

impl NodeType for Noop {
    const TYPE_NAME: &'static str = "std.noop";
    const VERSION: &'static str = VERSION;
    const DESCRIPTION: &'static str = "Passes its input through unchanged (empty text without one)";
    type Settings = NoopSettings;

    fn inputs() -> Vec<PortSpec> {
        passthrough_ports().0
    }
    fn outputs() -> Vec<PortSpec> {
        passthrough_ports().1
    }
    fn settings_schema() -> serde_json::Value {
        schema::<Self::Settings>()
    }
    fn tags() -> Vec<&'static str> {
        vec!["util"]
    }

    fn compute(_: Self::Settings, inputs: Inputs, _: &Context<'_>) -> Result<Vec<Payload>, NodeError> {
        Ok(pass_through(inputs))
    }
}

/// `std.sleep`: waits, then passes its input through; for exercising
/// scheduling, deadlines and cancellation.
pub struct Sleep;

#[derive(Debug, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct SleepSettings {
    /// How long to sleep, in milliseconds.
    pub ms: u64,
}

impl NodeType for Sleep {
    const TYPE_NAME: &'static str = "std.sleep";
    const VERSION: &'static str = VERSION;
    const DESCRIPTION: &'static str =
        "Sleeps `ms` milliseconds (stopping early when cancelled), then passes its input through";
    type Settings = SleepSettings;

    fn inputs() -> Vec<PortSpec> {
        passthrough_ports().0
    }
    fn outputs() -> Vec<PortSpec> {
        passthrough_ports().1
    }
    fn settings_schema() -> serde_json::Value {
        schema::<Self::Settings>()
    }
    fn tags() -> Vec<&'static str> {
        vec!["test"]
    }
    fn deterministic() -> bool {
        false
    }

    fn compute(s: Self::Settings, inputs: Inputs, ctx: &Context<'_>) -> Result<Vec<Payload>, NodeError> {
        let end = Instant::now() + Duration::from_millis(s.ms);
        // Short slices so a cancelled task gives its thread back promptly.
        loop {
            if ctx.is_cancelled() {
                return Err(NodeError::with(PluginError::cancelled()));
            }
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(pass_through(inputs));
            }
            std::thread::sleep(left.min(Duration::from_millis(10)));
        }
    }
}

/// `std.fail`: always fails, for testing failure handling.
pub struct Fail;

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct FailSettings {
    /// The failure message.
    pub message: String,
}

impl Default for FailSettings {
    fn default() -> Self {
        Self { message: "failed on purpose".into() }
    }
}

impl NodeType for Fail {
    const TYPE_NAME: &'static str = "std.fail";
    const VERSION: &'static str = VERSION;
    const DESCRIPTION: &'static str = "Always fails with `message`; for testing failure handling";
    type Settings = FailSettings;

    fn inputs() -> Vec<PortSpec> {
        vec![PortSpec::new("in", ANY).optional().describe("ignored; lets the failure depend on other nodes")]
    }
    fn outputs() -> Vec<PortSpec> {
        vec![PortSpec::new("out", ANY).describe("never produced; lets other nodes depend on the failure")]
    }
    fn settings_schema() -> serde_json::Value {
        schema::<Self::Settings>()
    }
    fn tags() -> Vec<&'static str> {
        vec!["test"]
    }

    fn compute(s: Self::Settings, _: Inputs, _: &Context<'_>) -> Result<Vec<Payload>, NodeError> {
        Err(NodeError::new(s.message))
    }
}

/// `std.panic`: always panics, for testing that the host survives plugin panics.
pub struct Panic;

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct PanicSettings {
    /// The panic message.
    pub message: String,
}

impl Default for PanicSettings {
    fn default() -> Self {
        Self { message: "panicked on purpose".into() }
    }
}

impl NodeType for Panic {
    const TYPE_NAME: &'static str = "std.panic";
    const VERSION: &'static str = VERSION;
    const DESCRIPTION: &'static str = "Always panics with `message`; for testing that panics are contained";
    type Settings = PanicSettings;

    fn inputs() -> Vec<PortSpec> {
        vec![PortSpec::new("in", ANY).optional().describe("ignored; lets the panic depend on other nodes")]
    }
    fn outputs() -> Vec<PortSpec> {
        vec![PortSpec::new("out", ANY).describe("never produced; lets other nodes depend on the panic")]
    }
    fn settings_schema() -> serde_json::Value {
        schema::<Self::Settings>()
    }
    fn tags() -> Vec<&'static str> {
        vec!["test"]
    }

    fn compute(s: Self::Settings, _: Inputs, _: &Context<'_>) -> Result<Vec<Payload>, NodeError> {
        panic!("{}", s.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use backplane_plugin_api::{
        ComputeFn, ComputeRequest, NodeSpecRef, PluginError_NE, TaskContext, node_spec, testing::call_node,
    };
    use serde_json::json;
    use std::sync::atomic::{AtomicBool, Ordering};

    #[test]
    fn hash_outputs_blake3_hex_line() {
        let out = call_node::<Hash>(json!({}), vec![Payload::text("data", "abc".into())], "/").unwrap();
        assert_eq!(out[0].port.as_str(), "digest");
        assert_eq!(out[0].as_text().unwrap(), "6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85\n");
    }

    #[test]
    fn hash_without_input_names_the_port() {
        let err = call_node::<Hash>(json!({}), vec![], "/").unwrap_err();
        assert_eq!(err.to_string(), "input port `data` received no data");
    }

    #[test]
    fn const_outputs_its_text() {
        let out = call_node::<Const>(json!({ "text": "hello\nworld" }), vec![], "/").unwrap();
        assert_eq!((out[0].port.as_str(), out[0].as_text().unwrap()), ("text", "hello\nworld"));
        let err = call_node::<Const>(json!({ "text": 5 }), vec![], "/").unwrap_err();
        assert!(err.to_string().contains("invalid type: integer `5`, expected a string"), "{err}");
    }

    #[test]
    fn noop_moves_input_to_out_and_defaults_to_empty_text() {
        let input = Payload::bytes("in", "application/x-thing", vec![1, 2, 3]);
        let out = call_node::<Noop>(json!({}), vec![input], "/").unwrap();
        assert_eq!(out, [Payload::bytes("out", "application/x-thing", vec![1, 2, 3])]);
        let out = call_node::<Noop>(json!({}), vec![], "/").unwrap();
        assert_eq!(out, [Payload::text("out", String::new())]);
        let err = call_node::<Noop>(json!({ "x": 1 }), vec![], "/").unwrap_err();
        assert!(err.to_string().contains("unknown field `x`"), "{err}");
    }

    #[test]
    fn sleep_waits_then_passes_through() {
        let started = Instant::now();
        let out = call_node::<Sleep>(json!({ "ms": 30 }), vec![Payload::text("in", "x".into())], "/").unwrap();
        assert!(started.elapsed() >= Duration::from_millis(30));
        assert_eq!(out, [Payload::text("out", "x".into())]);
    }

    /// Runs `spec` with a context whose cancel flag `cancel` may set.
    fn call_cancellable(spec: NodeSpecRef, settings: &str, cancel: &AtomicBool) -> Result<(), PluginError_NE> {
        let ComputeFn(compute) = spec.compute().into_option().unwrap();
        let cancelled = || cancel.load(Ordering::SeqCst);
        let ctx = TaskContext { node_id: "t", attempt: 1, working_dir: "/", deadline: None, cancelled: &cancelled };
        let request = ComputeRequest { settings: settings.into(), inputs: Vec::new().into(), context: ctx.as_abi() };
        compute(request).into_result().map(drop)
    }

    #[test]
    fn sleep_stops_promptly_when_cancelled() {
        let cancel = AtomicBool::new(false);
        let started = Instant::now();
        let result = std::thread::scope(|scope| {
            scope.spawn(|| {
                std::thread::sleep(Duration::from_millis(50));
                cancel.store(true, Ordering::SeqCst);
            });
            call_cancellable(node_spec::<Sleep>(), r#"{"ms":60000}"#, &cancel)
        });
        assert_eq!(result.unwrap_err().as_enum().unwrap(), &PluginError::Cancelled);
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn fail_returns_a_node_failure_with_its_message() {
        let err = call_node::<Fail>(json!({}), vec![], "/").unwrap_err();
        assert_eq!(err.as_enum().unwrap(), &PluginError::NodeFailed { message: "failed on purpose".into() });
        let err = call_node::<Fail>(json!({ "message": "boom" }), vec![], "/").unwrap_err();
        assert_eq!(err.to_string(), "boom");
    }

    #[test]
    fn panic_is_caught_as_panicked_with_its_message() {
        let err = call_node::<Panic>(json!({ "message": "kaboom 42" }), vec![], "/").unwrap_err();
        assert_eq!(err.as_enum().unwrap(), &PluginError::Panicked { message: "kaboom 42".into() });
        let err = call_node::<Panic>(json!({}), vec![], "/").unwrap_err();
        assert_eq!(err.as_enum().unwrap(), &PluginError::Panicked { message: "panicked on purpose".into() });
    }
}
