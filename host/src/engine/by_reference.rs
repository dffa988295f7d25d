//! Outputs kept where they were produced.
//!
//! A backend with the `by-reference` capability (Ray's object store) can
//! keep a node's outputs and hand back references instead of bytes. The
//! engine asks for that only when every consumer of the node runs on the
//! same instance: a reference means nothing elsewhere, and workflow outputs
//! need bytes. The request travels in a task extension, so it needs no
//! change to the ABI.

use super::Run;
use crate::plan::Target;
use backplane_plugin_api::{
    CapabilityFlags, Payload,
    abi_stable::std_types::{RString, RVec, Tuple2},
};
use std::collections::BTreeMap;

/// The task extension asking for outputs by reference. Its value is JSON:
/// `{"outputs": [every output port], "consumers": {port: consuming nodes}}`,
/// so the backend knows when the last consumer has read an output.
pub const OUTPUTS_BY_REFERENCE: &str = "backplane.outputs_by_reference";

/// Which instances keep outputs by reference.
pub fn capable_instances(run_instances: &[std::sync::Arc<crate::registry::BackendInstance>]) -> Vec<bool> {
    run_instances.iter().map(|i| i.capabilities().flags.contains(CapabilityFlags::BY_REFERENCE)).collect()
}

impl Run<'_> {
    /// The extensions of `node`'s next task on `backend`: the by-reference
    /// request when all its consumers run there too.
    pub(super) fn task_extensions(&self, node: usize, backend: usize) -> RVec<Tuple2<RString, RString>> {
        if !self.by_reference[backend] {
            return RVec::new();
        }
        let planned = &self.plan.nodes[node];
        let mut consumers: BTreeMap<&str, u32> = BTreeMap::new();
        for consumer in &planned.consumers {
            match consumer.target {
                Target::Node { node: target, .. } if self.assigned[target as usize] as usize == backend => {
                    *consumers.entry(consumer.port).or_default() += 1;
                }
                _ => return RVec::new(),
            }
        }
        if consumers.is_empty() {
            return RVec::new();
        }
        let outputs: Vec<&str> =
            self.plan.types[planned.type_index as usize].outputs.iter().map(|p| p.name.as_str()).collect();
        let value = serde_json::json!({ "outputs": outputs, "consumers": consumers });
        RVec::from(vec![Tuple2(RString::from(OUTPUTS_BY_REFERENCE), RString::from(value.to_string()))])
    }
}

/// A reference can only be read by the backend that holds it: delivering one
/// elsewhere (a consumer rerouted mid-run) is an error, never silent empty data.
pub fn check_delivery(payload: &Payload, from: &str, to: &str) -> Result<(), String> {
    if payload.object_ref.is_empty() || from == to {
        return Ok(());
    }
    Err(format!(
        "output `{}` stayed on backend `{from}` as a reference, but its consumer now runs on `{to}`",
        payload.port
    ))
}
