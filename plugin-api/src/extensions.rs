//! Task extensions the host sets on a [`NodeTask`], and how
//! a backend reads them.
//!
//! Extensions are key/value strings (values are JSON), so the host can tell a
//! backend more in a later 1.x version without changing the ABI. A backend
//! that does not know a key ignores it.

use crate::NodeTask;
use abi_stable::std_types::{RString, Tuple2};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use std::collections::BTreeMap;

/// A task extension with a JSON value.
pub trait TaskExtension: Serialize + DeserializeOwned {
    const KEY: &'static str;

    /// The extension on `task`, if it has it. An unreadable value is an
    /// error: the host and the plugin disagree about its shape.
    fn of(task: &NodeTask) -> Result<Option<Self>, String> {
        let Some(value) = task.extensions.iter().find(|t| t.0 == Self::KEY) else { return Ok(None) };
        serde_json::from_str(&value.1).map(Some).map_err(|e| format!("task extension `{}`: {e}", Self::KEY))
    }

    /// This value as a task extension.
    fn to_extension(&self) -> Tuple2<RString, RString> {
        let value = serde_json::to_string(self).expect("extension values serialize to JSON");
        Tuple2(Self::KEY.into(), value.into())
    }
}

/// Set for a `by-reference` backend when every consumer of the node runs on
/// the same instance: keep the outputs and return references.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutputsByReference {
    /// Every output port of the node type.
    pub outputs: Vec<String>,
    /// How many nodes read each port, so the backend knows when the last
    /// consumer is done with an output.
    pub consumers: BTreeMap<String, u32>,
}

impl TaskExtension for OutputsByReference {
    const KEY: &'static str = "backplane.outputs_by_reference";
}

/// Where a node wants to run, beyond its resources: the tags it requires (its
/// type's and its route rule's) and the workflow's labels on it. Set only for
/// nodes that have either; backends that can steer placement (a cluster's
/// node attributes) read it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Placement {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

impl TaskExtension for Placement {
    const KEY: &'static str = "backplane.placement";
}

impl Placement {
    pub fn is_empty(&self) -> bool {
        self.tags.is_empty() && self.labels.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_extension_round_trips_through_a_task_and_a_missing_one_is_none() {
        let placement = Placement { tags: vec!["gpu".into()], labels: BTreeMap::from([("zone".into(), "eu".into())]) };
        let mut task = NodeTask::default();
        assert_eq!(Placement::of(&task), Ok(None));
        task.extensions.push(Tuple2("other".into(), "x".into()));
        task.extensions.push(placement.to_extension());
        assert_eq!(task.extensions[1].1.as_str(), r#"{"tags":["gpu"],"labels":{"zone":"eu"}}"#);
        assert_eq!(Placement::of(&task), Ok(Some(placement)));
        assert_eq!(OutputsByReference::of(&task), Ok(None));
    }

    #[test]
    fn an_unreadable_value_is_an_error_naming_the_extension() {
        let mut task = NodeTask::default();
        task.extensions.push(Tuple2(Placement::KEY.into(), "{\"tags\": 3}".into()));
        let error = Placement::of(&task).unwrap_err();
        assert!(error.starts_with("task extension `backplane.placement`: invalid type"), "{error}");
    }
}

/// Set on a task whose stream items feed per-item consumers (`each` edges).
/// Its `emit` may wait until its consumers catch up (the edge's credit
/// window), so a pool should run it beside its threads, not in one of them:
/// a producer waiting for consumers that wait for its thread never finishes.
/// [`TaskPool`](crate::pool::TaskPool) does.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FeedsItems {
    /// The stream outputs whose items consumers wait for.
    pub ports: Vec<String>,
}

impl TaskExtension for FeedsItems {
    const KEY: &'static str = "backplane.feeds_items";
}
