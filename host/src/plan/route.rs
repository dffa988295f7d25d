//! Choosing a backend instance for a node.
//!
//! Order: the node's explicit `backend`; the default instance when it can
//! run the node; the first instance in config order that can. A node nobody
//! can run is a plan-time error listing what each instance lacks.

use crate::registry::{BackendInstance, BackendRegistry, unmet_requirements};
use backplane_plugin_api::{Requirements, Resources};
use std::{fmt, sync::Arc};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteReason {
    /// `backend = "..."` on the node.
    Explicit,
    /// The default instance can run it.
    Default,
    /// The default cannot; this was the first capable instance.
    CapabilityMatch,
}

impl fmt::Display for RouteReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Explicit => "explicit `backend` on the node",
            Self::Default => "default backend",
            Self::CapabilityMatch => "first instance with the required capabilities",
        })
    }
}

/// The chosen instance, or one line per instance saying what it lacks.
pub fn route_node(
    registry: &BackendRegistry,
    explicit: Option<&str>,
    requirements: &Requirements,
    resources: &Resources,
) -> Result<(Arc<BackendInstance>, RouteReason), Vec<String>> {
    if let Some(name) = explicit {
        let Some(instance) = registry.instance(name) else {
            return Err(vec![format!("no backend instance named `{name}`")]);
        };
        let missing = unmet_requirements(&instance.capabilities(), requirements, resources);
        return if missing.is_empty() {
            Ok((instance.clone(), RouteReason::Explicit))
        } else {
            Err(vec![format!("{name}: {}", missing.join(", "))])
        };
    }
    let candidates = registry.find(requirements, resources);
    let default = registry.default_instance().map(|d| d.name.as_str());
    if let Some((instance, _)) =
        candidates.iter().find(|(i, missing)| Some(i.name.as_str()) == default && missing.is_empty())
    {
        return Ok(((*instance).clone(), RouteReason::Default));
    }
    if let Some((instance, _)) = candidates.iter().find(|(_, missing)| missing.is_empty()) {
        return Ok(((*instance).clone(), RouteReason::CapabilityMatch));
    }
    if candidates.is_empty() {
        return Err(vec!["no backend instances are configured".into()]);
    }
    Err(candidates.iter().map(|(i, missing)| format!("{}: {}", i.name, missing.join(", "))).collect())
}
