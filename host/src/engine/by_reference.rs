//! Outputs kept where they were produced.
//!
//! A backend with the `by-reference` capability (Ray's object store) can
//! keep a node's outputs and hand back references instead of bytes. The
//! engine asks for that only when every consumer of the node runs on the
//! same instance: a reference means nothing elsewhere, and workflow outputs
//! need bytes. The request travels in a task extension, so it needs no
//! change to the ABI. With a cache, a node whose result is stored, or whose
//! consumer's key is made of it, always gets bytes back.

use super::run::Run;
use crate::plan::Target;
use backplane_plugin_api::{
    CapabilityFlags, Payload,
    abi_stable::std_types::{RString, Tuple2},
    extensions::{OutputsByReference, TaskExtension},
};
use std::collections::BTreeMap;

/// Which instances keep outputs by reference.
pub fn capable_instances(run_instances: &[std::sync::Arc<crate::registry::BackendInstance>]) -> Vec<bool> {
    run_instances.iter().map(|i| i.capabilities().flags.contains(CapabilityFlags::BY_REFERENCE)).collect()
}

impl Run<'_> {
    /// The by-reference request for `node`'s next task on `backend`, when
    /// the backend keeps outputs and all the node's consumers run there too.
    pub(super) fn by_reference_request(&self, node: usize, backend: usize) -> Option<Tuple2<RString, RString>> {
        if !self.by_reference[backend] || self.needs_bytes(node) {
            return None;
        }
        let planned = &self.plan.nodes[node];
        let mut consumers: BTreeMap<String, u32> = BTreeMap::new();
        for consumer in &planned.consumers {
            match consumer.target {
                Target::Node { node: target, .. } if self.assigned[target as usize] as usize == backend => {
                    *consumers.entry(consumer.port.to_owned()).or_default() += 1;
                }
                _ => return None,
            }
        }
        if consumers.is_empty() {
            return None;
        }
        let outputs = self.plan.types[planned.type_index as usize].outputs.iter().map(|p| p.name.to_string()).collect();
        Some(OutputsByReference { outputs, consumers }.to_extension())
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
