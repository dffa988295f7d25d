//! A validated, routed workflow: what runs where, with edges resolved to indices.
//!
//! Built from a [`Workflow`](crate::workflow::Workflow) against the registries
//! by [`build`]; every problem (unknown type, port or backend, bad settings,
//! missing inputs, cycles, nodes no backend can run) is reported at once with
//! its location. The plan is compact (about 150 bytes per node plus its
//! strings) because it is built for million-node DAGs.

mod build;
mod route;

pub use build::build;

use crate::{
    config::RouteRule,
    diagnostic::{Diagnostics, SourceFile},
    output_targets::{self, OutputRules},
    registry::{BackendRegistry, NodeRegistry},
    workflow::{Invocation, Partial, Workflow, params::ParamValue, select},
};

/// Parses and plans a workflow file in one go with the command line's
/// parameters and selection, reporting the problems of every pass together.
/// A partial run checks the whole workflow, then plans only what runs.
pub fn plan_source(
    source: SourceFile,
    invocation: &Invocation,
    nodes: &NodeRegistry,
    backends: &BackendRegistry,
    rules: &[RouteRule],
    output_rules: OutputRules,
) -> Result<Plan, Diagnostics> {
    let (workflow, mut diagnostics) = Workflow::parse_lenient_with(source, &invocation.params);
    let Some(mut workflow) = workflow else { return Err(Diagnostics::sorted(diagnostics)) };
    diagnostics.extend(output_targets::check_targets(&workflow, output_rules));
    let keep = if invocation.selection.is_empty() {
        None
    } else {
        match select::selected(&workflow, &invocation.selection) {
            Ok(keep) => Some(keep),
            Err(problems) => {
                diagnostics.extend(problems);
                None
            }
        }
    };
    let mut plan = match build(&workflow, nodes, backends, rules, output_rules) {
        Ok(plan) if diagnostics.is_empty() => plan,
        Ok(_) => return Err(Diagnostics::sorted(diagnostics)),
        Err(more) => {
            diagnostics.extend(more.0);
            return Err(Diagnostics::sorted(diagnostics));
        }
    };
    if let Some(keep) = keep {
        let partial = workflow.retain(&keep, &invocation.selection);
        plan = build(&workflow, nodes, backends, rules, output_rules)?;
        plan.partial = Some(partial);
    }
    plan.params = workflow.params;
    Ok(plan)
}
pub use route::{RouteReason, RouteRequest, Router, alternative, merged_requirements};

use crate::registry::BackendInstance;
use backplane_plugin_api::{
    ComputeFn, Requirements, Resources,
    abi_stable::std_types::{ROption, RString, Tuple2},
};
use serde::Serialize;
use std::{path::PathBuf, sync::Arc};

/// A node type used by the plan.
pub struct PlannedType {
    pub name: &'static str,
    pub version: &'static str,
    pub outputs: &'static [backplane_plugin_api::PortSpec],
    pub compute: ROption<ComputeFn>,
    pub requirements: &'static Requirements,
    /// Same settings and inputs, same outputs: results may be cached.
    pub deterministic: bool,
    /// The plugin it came from.
    pub plugin: String,
}

/// `PlannedNode::rule` of a node no route rule matched.
pub const NO_RULE: u16 = u16::MAX;

/// Where an output port's payload goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// Input slot `slot` of node `node`.
    Node { node: u32, slot: u32 },
    /// The workflow output with this index.
    Output(u32),
    /// Node `node` runs once per item of the stream, its slot `slot` holding the item.
    Items { node: u32, slot: u32 },
}

#[derive(Debug, Clone, Copy)]
pub struct Consumer {
    /// The producer's output port.
    pub port: &'static str,
    pub target: Target,
}

/// One input edge, in declaration order (the order payloads are delivered).
#[derive(Debug, Clone, Copy)]
pub struct PlannedInput {
    /// The consumer's input port.
    pub port: &'static str,
    pub from: u32,
    pub from_port: &'static str,
    /// An `each` edge's credit window; 0 for a plain edge.
    pub window: u32,
}

impl PlannedInput {
    /// The node runs once per item arriving on this edge.
    pub fn is_each(&self) -> bool {
        self.window > 0
    }
}

pub struct PlannedNode {
    pub id: String,
    pub type_index: u32,
    pub backend: u32,
    pub route: RouteReason,
    /// The matching route rule's index, or [`NO_RULE`].
    pub rule: u16,
    /// Placed explicitly: fails rather than moving when its instance is down.
    pub pinned: bool,
    /// Canonical JSON (sorted keys, defaults merged in).
    pub settings: String,
    pub inputs: Vec<PlannedInput>,
    pub consumers: Vec<Consumer>,
    pub timeout_ms: u64,
    /// What few nodes have; `None` for the rest.
    pub extras: Option<Box<NodeExtras>>,
}

/// The per-node settings most nodes lack, boxed together so a plain node
/// pays one pointer for all of them.
#[derive(Debug, Default)]
pub struct NodeExtras {
    pub resources: Resources,
    /// The node's own `retry` (else its route rule's), overriding the config's.
    pub retry: Option<crate::policy::RetryOverride>,
    /// The [`Placement`](backplane_plugin_api::extensions::Placement) task
    /// extension, for a node that requires tags or has labels.
    pub placement: Option<Tuple2<RString, RString>>,
    /// The workflow's `cache = true|false`, overriding the type's `deterministic`.
    pub cache: Option<bool>,
}

impl NodeExtras {
    /// `None` when there is nothing to keep.
    pub fn boxed(self) -> Option<Box<Self>> {
        let empty =
            self.resources.is_empty() && self.retry.is_none() && self.placement.is_none() && self.cache.is_none();
        (!empty).then(|| Box::new(self))
    }
}

impl PlannedNode {
    pub fn resources(&self) -> Option<&Resources> {
        self.extras.as_ref().map(|e| &e.resources)
    }
    pub fn retry(&self) -> Option<&crate::policy::RetryOverride> {
        self.extras.as_ref().and_then(|e| e.retry.as_ref())
    }
    pub fn placement(&self) -> Option<&Tuple2<RString, RString>> {
        self.extras.as_ref().and_then(|e| e.placement.as_ref())
    }
    pub fn cache_override(&self) -> Option<bool> {
        self.extras.as_ref().and_then(|e| e.cache)
    }
}

#[derive(Debug, Clone)]
pub struct PlannedOutput {
    /// `node.port`, as the workflow names it.
    pub source: String,
    pub from: u32,
    pub port: &'static str,
    pub target: crate::workflow::OutputTarget,
}

impl PlannedOutput {
    /// `count.counts -> out/counts.tsv`, for messages.
    pub fn describe(&self) -> String {
        match &self.target {
            crate::workflow::OutputTarget::Stdout => format!("{} -> stdout", self.source),
            crate::workflow::OutputTarget::File(path) => format!("{} -> {}", self.source, path.display()),
        }
    }
}

pub struct Plan {
    pub name: String,
    pub working_dir: PathBuf,
    pub types: Vec<PlannedType>,
    pub nodes: Vec<PlannedNode>,
    pub outputs: Vec<PlannedOutput>,
    /// Every backend instance in config order, then instances derived by
    /// route rules; `PlannedNode::backend` indexes this.
    pub instances: Vec<Arc<BackendInstance>>,
    /// What each route rule requires, by rule index.
    pub rule_requirements: Vec<Requirements>,
    /// The parameters the workflow was planned with.
    pub params: Vec<ParamValue>,
    /// Set when `--select`/`--until` left nodes out.
    pub partial: Option<Partial>,
}

/// One row of `backplane plan`.
#[derive(Debug, Clone, Serialize)]
pub struct RouteRow {
    pub node: String,
    #[serde(rename = "type")]
    pub type_name: String,
    pub backend: String,
    pub reason: String,
}

impl Plan {
    /// Whether `node`'s results may be cached: its `cache = ...`, else its type's `deterministic`.
    pub fn cacheable(&self, node: usize) -> bool {
        let planned = &self.nodes[node];
        planned.cache_override().unwrap_or(self.types[planned.type_index as usize].deterministic)
    }

    /// The slot of `node`'s `each` input, if it runs once per item.
    pub fn each_slot(&self, node: usize) -> Option<usize> {
        self.nodes[node].inputs.iter().position(PlannedInput::is_each)
    }

    /// A node's requirements: its type's plus its route rule's.
    pub fn requirements(&self, node: usize) -> Requirements {
        let planned = &self.nodes[node];
        let rule = self.rule_requirements.get(planned.rule as usize);
        merged_requirements(self.types[planned.type_index as usize].requirements, rule)
    }

    /// Sends every node to `instance` instead of where it was routed, for
    /// benchmarks that measure one instance created apart from the config.
    pub fn run_everything_on(&mut self, instance: Arc<BackendInstance>) {
        for node in &mut self.nodes {
            node.backend = 0;
        }
        self.instances = vec![instance];
    }

    pub fn routing_table(&self) -> Vec<RouteRow> {
        self.nodes
            .iter()
            .map(|n| RouteRow {
                node: n.id.clone(),
                type_name: self.types[n.type_index as usize].name.to_owned(),
                backend: self.instances[n.backend as usize].name.clone(),
                reason: n.route.to_string(),
            })
            .collect()
    }
}
