//! Choosing a backend instance for each node, with the reason.
//!
//! Order:
//! 1. the node's explicit `backend`;
//! 2. the first matching `[[route]]` rule: it names an instance, or adds
//!    requirements for step 3 (and may set `backend_options`, which derive a
//!    new instance for the matching nodes only);
//! 3. capability and resource matching: the default instance when it meets
//!    the node's needs, otherwise the first capable instance in config order,
//!    spreading nodes over interchangeable replicas (same type and
//!    capabilities) by the fewest nodes routed so far;
//! 4. the default instance.
//!
//! Unhealthy instances are skipped. A node nobody can run gets one line per
//! instance saying what it lacks.

use crate::{
    config::RouteRule,
    registry::{BackendInstance, BackendRegistry, InstanceSettings, unmet_requirements},
};
use backplane_plugin_api::{Capabilities, HealthStatus, Requirements, Resources};
use std::{fmt, sync::Arc};

#[derive(Debug, Clone, PartialEq)]
pub enum RouteReason {
    /// `backend = "..."` on the node.
    Explicit,
    /// A route rule named the instance.
    Rule { rule: String },
    /// The default instance meets the node's needs (perhaps added by a rule).
    Default { rule: Option<String> },
    /// The default cannot run it (or is down); this instance can.
    Capability { rule: Option<String>, skipped: Vec<String> },
}

impl fmt::Display for RouteReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let via = |rule: &Option<String>| rule.as_ref().map_or_else(String::new, |r| format!("{r} requirements; "));
        match self {
            Self::Explicit => f.write_str("explicit `backend` on the node"),
            Self::Rule { rule } => f.write_str(rule),
            Self::Default { rule } => write!(f, "{}default backend", via(rule)),
            Self::Capability { rule, skipped } => {
                write!(f, "{}capability match", via(rule))?;
                if !skipped.is_empty() {
                    write!(f, " (skipped {})", skipped.join("; "))?;
                }
                Ok(())
            }
        }
    }
}

/// What the planner knows about a node when routing it.
pub struct RouteRequest<'a> {
    pub node_id: &'a str,
    pub node_type: &'a str,
    pub explicit: Option<&'a str>,
    pub labels: &'a [(String, String)],
    /// From the node type's spec.
    pub requirements: &'a Requirements,
    pub resources: &'a Resources,
}

pub struct Decision {
    /// Index into [`Router::instances`].
    pub instance: usize,
    pub reason: RouteReason,
    /// Index of the matching rule.
    pub rule: Option<usize>,
    /// Explicitly placed (node `backend`, rule `backend` or `backend_options`):
    /// never moved elsewhere when the instance goes down.
    pub pinned: bool,
}

/// Requirements of a node: its type's plus those a rule adds.
pub fn merged_requirements(spec: &Requirements, rule: Option<&Requirements>) -> Requirements {
    let mut merged = spec.clone();
    if let Some(rule) = rule {
        merged.flags = merged.flags | rule.flags;
        merged.isolation = merged.isolation.max(rule.isolation);
        for tag in rule.tags.iter() {
            if !merged.tags.contains(tag) {
                merged.tags.push(tag.clone());
            }
        }
    }
    merged
}

/// Routes the nodes of one plan. Capabilities and health are read once, so
/// every node of a plan sees the same picture.
pub struct Router<'a> {
    instances: Vec<Arc<BackendInstance>>,
    capabilities: Vec<Capabilities>,
    /// `Some(reason)` for instances that are down.
    down: Vec<Option<String>>,
    default: Option<usize>,
    rules: &'a [RouteRule],
    /// Nodes routed to each instance so far (for spreading over replicas).
    routed: Vec<usize>,
    /// (base instance, rule index) -> derived instance index.
    derived: Vec<((usize, usize), usize)>,
}

impl<'a> Router<'a> {
    pub fn new(registry: &BackendRegistry, rules: &'a [RouteRule]) -> Self {
        let instances: Vec<_> = registry.instances().to_vec();
        let capabilities = instances.iter().map(|i| i.capabilities()).collect();
        let down = instances
            .iter()
            .map(|i| {
                let health = i.backend.health();
                (health.status == HealthStatus::DOWN).then(|| format!("unhealthy ({})", health.message))
            })
            .collect();
        let default = registry.default_instance().and_then(|d| instances.iter().position(|i| Arc::ptr_eq(i, d)));
        let routed = vec![0; instances.len()];
        Self { instances, capabilities, down, default, rules, routed, derived: Vec::new() }
    }

    pub fn instances(&self) -> &[Arc<BackendInstance>] {
        &self.instances
    }

    pub fn into_instances(self) -> Vec<Arc<BackendInstance>> {
        self.instances
    }

    fn index_of(&self, name: &str) -> Option<usize> {
        self.instances.iter().position(|i| i.name == name && i.derived_from.is_none())
    }

    /// What `instance` lacks for the node, as "name: reasons".
    fn problems(&self, instance: usize, requirements: &Requirements, resources: &Resources) -> Option<String> {
        let name = &self.instances[instance].name;
        instance_problem(name, self.down[instance].as_deref(), || &self.capabilities[instance], requirements, resources)
    }

    /// Routes one node.
    pub fn route(&mut self, request: &RouteRequest<'_>, registry: &BackendRegistry) -> Result<Decision, Vec<String>> {
        let decision = self.choose(request)?;
        let decision = self.apply_options(decision, registry)?;
        self.routed[decision.instance] += 1;
        Ok(decision)
    }

    fn pinned_to(
        &self,
        name: &str,
        requirements: &Requirements,
        resources: &Resources,
        reason: RouteReason,
        rule: Option<usize>,
    ) -> Result<Decision, Vec<String>> {
        let Some(instance) = self.index_of(name) else {
            return Err(vec![format!("no backend instance named `{name}`")]);
        };
        match self.problems(instance, requirements, resources) {
            Some(problem) => Err(vec![problem]),
            None => Ok(Decision { instance, reason, rule, pinned: true }),
        }
    }

    fn choose(&self, request: &RouteRequest<'_>) -> Result<Decision, Vec<String>> {
        if let Some(name) = request.explicit {
            return self.pinned_to(name, request.requirements, request.resources, RouteReason::Explicit, None);
        }
        let rule_index = self.rules.iter().position(|r| r.matches(request.node_type, request.node_id, request.labels));
        let rule = rule_index.map(|i| &self.rules[i]);
        let requirements = merged_requirements(request.requirements, rule.map(|r| &r.require));
        if let Some(rule) = rule
            && let Some(backend) = &rule.backend
        {
            let reason = RouteReason::Rule { rule: rule.describe() };
            return self.pinned_to(backend.get_ref(), &requirements, request.resources, reason, rule_index);
        }
        let rule_name = rule.map(RouteRule::describe);
        let candidates: Vec<usize> = (0..self.instances.len())
            .filter(|&i| self.instances[i].derived_from.is_none())
            .filter(|&i| self.problems(i, &requirements, request.resources).is_none())
            .collect();
        if let Some(default) = self.default.filter(|d| candidates.contains(d)) {
            return Ok(Decision {
                instance: default,
                reason: RouteReason::Default { rule: rule_name },
                rule: rule_index,
                pinned: false,
            });
        }
        let Some(&first) = candidates.first() else {
            let mut reasons: Vec<String> = (0..self.instances.len())
                .filter(|&i| self.instances[i].derived_from.is_none())
                .filter_map(|i| self.problems(i, &requirements, request.resources))
                .collect();
            if reasons.is_empty() {
                reasons.push("no backend instances are configured".into());
            }
            return Err(reasons);
        };
        // Interchangeable replicas of the first candidate share its nodes.
        let same = |i: usize| {
            self.instances[i].factory == self.instances[first].factory
                && self.capabilities[i] == self.capabilities[first]
        };
        let instance = candidates.iter().copied().filter(|&i| same(i)).min_by_key(|&i| self.routed[i]).unwrap_or(first);
        // Every instance that could not take it, the default first.
        let others =
            (0..self.instances.len()).filter(|&i| Some(i) != self.default && self.instances[i].derived_from.is_none());
        let skipped = self
            .default
            .into_iter()
            .chain(others)
            .filter_map(|i| self.problems(i, &requirements, request.resources))
            .collect();
        Ok(Decision {
            instance,
            reason: RouteReason::Capability { rule: rule_name, skipped },
            rule: rule_index,
            pinned: false,
        })
    }

    /// A rule's `backend_options` send its nodes to an instance derived from
    /// the chosen one; the shared instance itself is never changed.
    fn apply_options(&mut self, decision: Decision, registry: &BackendRegistry) -> Result<Decision, Vec<String>> {
        let Some(rule_index) = decision.rule else { return Ok(decision) };
        let rule = &self.rules[rule_index];
        let Some(options) = &rule.backend_options else { return Ok(decision) };
        let key = (decision.instance, rule_index);
        if let Some(&(_, derived)) = self.derived.iter().find(|(k, _)| *k == key) {
            return Ok(Decision { instance: derived, pinned: true, ..decision });
        }
        let base = &self.instances[decision.instance];
        let mut config = base.config.clone();
        if let (Some(config), Some(options)) = (config.as_object_mut(), options.as_object()) {
            for (k, v) in options {
                config.insert(k.clone(), v.clone());
            }
        }
        let settings = InstanceSettings {
            name: format!("{}+route{}", base.name, rule.number),
            factory: base.factory.clone(),
            config,
            max_in_flight: Some(base.max_in_flight),
            tags: base.tags.clone(),
            capacity: base.capacity.clone(),
            derived_from: Some(base.name.clone()),
        };
        let created = registry.create_detached(settings).map_err(|e| {
            vec![format!("{}: `backend_options` of {} (config line {}): {e}", base.name, rule.describe(), rule.line)]
        })?;
        self.capabilities.push(created.capabilities());
        self.down.push(None);
        self.routed.push(0);
        self.instances.push(created);
        let derived = self.instances.len() - 1;
        self.derived.push((key, derived));
        Ok(Decision { instance: derived, pinned: true, ..decision })
    }
}

/// "name: what it lacks" for an instance that cannot run a node, `None` when
/// it can. `capabilities` is only read when the instance is up.
fn instance_problem<C: std::borrow::Borrow<Capabilities>>(
    name: &str,
    down: Option<&str>,
    capabilities: impl FnOnce() -> C,
    requirements: &Requirements,
    resources: &Resources,
) -> Option<String> {
    if let Some(down) = down {
        return Some(format!("{name}: {down}"));
    }
    let missing = unmet_requirements(capabilities().borrow(), requirements, resources);
    (!missing.is_empty()).then(|| format!("{name}: {}", missing.join(", ")))
}

/// For a node whose instance went down mid-run: the first healthy instance in
/// config order that meets its needs, or what each instance lacks.
pub fn alternative(
    instances: &[Arc<BackendInstance>],
    down: &[Option<String>],
    requirements: &Requirements,
    resources: &Resources,
) -> Result<usize, Vec<String>> {
    let mut reasons = Vec::new();
    for (i, instance) in instances.iter().enumerate() {
        if instance.derived_from.is_some() {
            continue;
        }
        match instance_problem(&instance.name, down[i].as_deref(), || instance.capabilities(), requirements, resources)
        {
            None => return Ok(i),
            Some(reason) => reasons.push(reason),
        }
    }
    Err(reasons)
}
