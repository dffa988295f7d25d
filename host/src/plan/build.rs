//! Workflow + registries -> [`Plan`], reporting every problem at once.

use super::{
    Consumer, NO_RULE, NodeExtras, Plan, PlannedInput, PlannedNode, PlannedOutput, PlannedType, Target,
    route::{RouteRequest, Router, merged_requirements},
};
use crate::{
    config::RouteRule,
    diagnostic::{Diagnostic, Diagnostics},
    output_targets::OutputRules,
    registry::{BackendRegistry, NodeEntry, NodeRegistry},
    spanned_toml::{pointer_index, span_for_pointer, suggest},
    workflow::{NodeDecl, PortRef, Workflow},
};
use backplane_plugin_api::{
    CheckContext, Requirements, SettingsProblem,
    abi_stable::std_types::{RString, Tuple2},
    extensions::{Placement, TaskExtension},
};
use std::collections::HashMap;
use toml::Spanned;

struct Builder<'w> {
    workflow: &'w Workflow,
    diagnostics: Vec<Diagnostic>,
}

impl Builder<'_> {
    fn error(&mut self, span: std::ops::Range<usize>, message: String) -> &mut Diagnostic {
        self.diagnostics.push(self.workflow.source.diagnostic(span, message));
        self.diagnostics.last_mut().expect("just pushed")
    }
}

fn port_names(ports: &[backplane_plugin_api::PortSpec]) -> String {
    if ports.is_empty() {
        "none".into()
    } else {
        ports.iter().map(|p| format!("`{}`", p.name)).collect::<Vec<_>>().join(", ")
    }
}

/// Validates `workflow` against the registries and routes every node
/// (`rules` are the config's `[[route]]` rules). Passes, each reporting all
/// it finds: ids, types, settings, edges, outputs, cycles, named backends,
/// routing.
pub fn build(
    workflow: &Workflow,
    nodes: &NodeRegistry,
    backends: &BackendRegistry,
    rules: &[RouteRule],
    output_rules: OutputRules,
) -> Result<Plan, Diagnostics> {
    let mut b = Builder { workflow, diagnostics: Vec::new() };
    let index = b.index_ids();
    let entries = b.resolve_types(nodes);
    let mut settings = b.check_settings(&entries, output_rules);
    let (mut inputs, mut consumers) = b.connect_inputs(&entries, &index);
    let outputs = b.connect_outputs(&entries, &index, &mut consumers);
    b.check_cycles(&inputs);
    b.check_items_can_flow(&inputs);
    let unknown_backend = b.check_named_backends(backends);
    let mut router = Router::new(backends, rules);
    let mut types: Vec<PlannedType> = Vec::new();
    let mut type_index: HashMap<&str, u32> = HashMap::new();
    let mut planned = Vec::with_capacity(workflow.nodes.len());
    for (i, node) in workflow.nodes.iter().enumerate() {
        let Some(entry) = entries[i] else { continue };
        if unknown_backend[i] {
            continue;
        }
        let request = RouteRequest {
            node_id: node.id.get_ref(),
            node_type: entry.type_name(),
            explicit: node.backend.as_ref().map(|b| b.get_ref().as_str()),
            labels: &node.labels,
            requirements: entry.requirements(),
            resources: &node.resources,
        };
        match router.route(&request, backends) {
            Ok(decision) => {
                let t = *type_index.entry(entry.type_name()).or_insert_with(|| {
                    types.push(PlannedType {
                        name: entry.type_name(),
                        version: entry.version(),
                        outputs: entry.outputs(),
                        compute: entry.spec.compute(),
                        requirements: entry.requirements(),
                        deterministic: entry.spec.deterministic(),
                        plugin: entry.origin.plugin.clone(),
                    });
                    types.len() as u32 - 1
                });
                planned.push(PlannedNode {
                    id: node.id.get_ref().clone(),
                    type_index: t,
                    backend: decision.instance as u32,
                    route: decision.reason,
                    rule: decision.rule.map_or(NO_RULE, |r| r as u16),
                    pinned: decision.pinned,
                    settings: std::mem::take(&mut settings[i]),
                    inputs: std::mem::take(&mut inputs[i]),
                    consumers: std::mem::take(&mut consumers[i]),
                    // The node's own timeout, else its route rule's.
                    timeout_ms: match (node.timeout_ms, decision.rule) {
                        (0, Some(rule)) => rules[rule].timeout_ms,
                        (own, _) => own,
                    },
                    extras: NodeExtras {
                        resources: node.resources.clone(),
                        // The node's own retry policy, else its route rule's.
                        retry: node.retry.or_else(|| decision.rule.and_then(|r| rules[r].retry)),
                        placement: placement(entry.requirements(), decision.rule.map(|r| &rules[r].require), node),
                        cache: node.cache,
                    }
                    .boxed(),
                });
            }
            Err(reasons) => route_error(&mut b, node, entry, reasons),
        }
    }

    if b.diagnostics.is_empty() {
        Ok(Plan {
            name: workflow.name.clone(),
            working_dir: workflow.working_dir.clone(),
            types,
            nodes: planned,
            outputs,
            instances: router.into_instances(),
            rule_requirements: rules.iter().map(|r| r.require.clone()).collect(),
            params: Vec::new(),
            partial: None,
        })
    } else {
        Err(Diagnostics::sorted(b.diagnostics))
    }
}

impl<'w> Builder<'w> {
    fn decls(&self) -> &'w [NodeDecl] {
        &self.workflow.nodes
    }

    fn all_ids(&self) -> Vec<&'w str> {
        self.decls().iter().map(|n| n.id.get_ref().as_str()).collect()
    }

    /// Node ids, each once.
    fn index_ids(&mut self) -> HashMap<&'w str, usize> {
        let decls = self.decls();
        let mut index: HashMap<&str, usize> = HashMap::with_capacity(decls.len());
        for (i, node) in decls.iter().enumerate() {
            if let Some(&first) = index.get(node.id.get_ref().as_str()) {
                let (line, _) = self.workflow.source.location(decls[first].id.span().start);
                self.error(node.id.span(), format!("duplicate node id `{}`", node.id.get_ref())).help =
                    Some(format!("the first node with this id is on line {line}"));
            } else {
                index.insert(node.id.get_ref(), i);
            }
        }
        index
    }

    /// Each node's type in the registry (`None`: unknown, reported).
    fn resolve_types<'r>(&mut self, nodes: &'r NodeRegistry) -> Vec<Option<&'r NodeEntry>> {
        let known_types = nodes.names();
        self.decls()
        .iter()
        .map(|node| {
            let entry = nodes.get(node.type_name.get_ref());
            if entry.is_none() {
                let name = node.type_name.get_ref();
                // A close loaded type is the likelier story (a typo); else a
                // refused file that mentions the name.
                let help = match (nodes.rejected(name), suggest(name, &known_types)) {
                    (Some(why), _) => format!("{why}; `backplane plugins` shows the whole reason"),
                    (None, Some(near)) => {
                        format!("did you mean `{near}`? `backplane nodes` lists the loaded node types")
                    }
                    (None, None) => match nodes.refused_files_mentioning(name).first() {
                        Some((_, reason)) => format!(
                            "a plugin file that mentions `{name}` was refused: {reason}; `backplane plugins` shows the whole reason"
                        ),
                        None => "`backplane nodes` lists the loaded node types; is the plugin on the plugin path?".into(),
                    },
                };
                self.error(node.type_name.span(), format!("unknown node type `{name}` (node `{}`)", node.id.get_ref()))
                    .help = Some(help);
            }
            entry
        })
        .collect()
    }

    /// Each node's canonical settings, checked by the schema and by its type.
    fn check_settings(&mut self, entries: &[Option<&NodeEntry>], output_rules: OutputRules) -> Vec<String> {
        let workflow = self.workflow;
        let mut settings = Vec::with_capacity(self.decls().len());
        let check_context = serde_json::to_string(&CheckContext {
            workflow_dir: workflow.working_dir.clone(),
            allow_outside_workflow_dir: output_rules.allow_outside_workflow_dir,
        })
        .unwrap_or_default();
        // What each type's check found, by settings text: many nodes share settings.
        let mut checked: HashMap<&str, HashMap<String, Vec<SettingsProblem>>> = HashMap::new();
        for (node, entry) in self.decls().iter().zip(entries) {
            let Some(entry) = entry else {
                settings.push(String::new());
                continue;
            };
            let merged = entry.merged_settings(node.settings.as_ref());
            let mut text = serde_json::to_string(&merged).unwrap_or_default();
            // serde_json starts at 128 bytes; a plan keeps one text per node.
            text.shrink_to_fit();
            let schema_help = || format!("`backplane nodes {}` shows its settings schema", entry.type_name());
            let mut problems: Vec<SettingsProblem> = entry
                .settings_problems(&merged)
                .into_iter()
                .map(|(pointer, message)| SettingsProblem { pointer, message, help: None })
                .collect();
            if problems.is_empty() {
                // The type's own check sees only schema-valid settings, each
                // distinct text once (no copy of the text when it was seen).
                let seen = checked.entry(entry.type_name()).or_default();
                problems = match seen.get(text.as_str()) {
                    Some(found) => found.clone(),
                    None => seen.entry(text.clone()).or_insert(entry.check_settings(&text, &check_context)).clone(),
                };
            }
            let index = if problems.is_empty() { Default::default() } else { pointer_index(&node.settings_spans) };
            for SettingsProblem { pointer, message, help } in problems {
                let fallback = node.settings_span.clone().unwrap_or_else(|| node.span.clone());
                let span = span_for_pointer(&index, &pointer, fallback);
                let at = if pointer.is_empty() { String::new() } else { format!(" at `{pointer}`") };
                self.error(
                    span,
                    format!("invalid settings for node `{}` ({}){at}: {message}", node.id.get_ref(), entry.type_name()),
                )
                .help = Some(help.unwrap_or_else(schema_help));
            }
            settings.push(text);
        }

        settings
    }

    /// Input edges and, for each node, who consumes its outputs.
    fn connect_inputs(
        &mut self,
        entries: &[Option<&NodeEntry>],
        index: &HashMap<&'w str, usize>,
    ) -> (Vec<Vec<PlannedInput>>, Vec<Vec<Consumer>>) {
        let all_ids = self.all_ids();
        let mut inputs: Vec<Vec<PlannedInput>> = vec![Vec::new(); self.decls().len()];
        let mut consumers: Vec<Vec<Consumer>> = vec![Vec::new(); self.decls().len()];
        for (i, node) in self.decls().iter().enumerate() {
            let Some(entry) = entries[i] else { continue };
            for input in &node.inputs {
                let Some(port) = entry.inputs().iter().find(|p| p.name == input.port.as_str()) else {
                    self.error(
                        input.port_span.clone(),
                        format!(
                            "node `{}` ({}) has no input port `{}`",
                            node.id.get_ref(),
                            entry.type_name(),
                            input.port
                        ),
                    )
                    .help = Some(format!("its input ports: {}", port_names(entry.inputs())));
                    continue;
                };
                if input.sources.len() > 1 && !port.multiple {
                    self.error(
                        input.sources[1].span(),
                        format!(
                            "input `{}` of node `{}` takes one edge, found {}",
                            input.port,
                            node.id.get_ref(),
                            input.sources.len()
                        ),
                    );
                }
                for source in &input.sources {
                    let from = source.get_ref();
                    let Some(&from_index) = index.get(from.node.as_str()) else {
                        let help = suggest(&from.node, &all_ids).map(|n| format!("did you mean `{n}`?"));
                        self.error(
                            source.span(),
                            format!(
                                "input `{}` of node `{}` refers to unknown node `{}`",
                                input.port,
                                node.id.get_ref(),
                                from.node
                            ),
                        )
                        .help = help;
                        continue;
                    };
                    let Some(from_entry) = entries[from_index] else { continue };
                    let Some(from_port) = from_entry.outputs().iter().find(|p| p.name == from.port.as_str()) else {
                        self.error(
                            source.span(),
                            format!(
                                "node `{}` ({}) has no output port `{}`",
                                from.node,
                                from_entry.type_name(),
                                from.port
                            ),
                        )
                        .help = Some(format!("its output ports: {}", port_names(from_entry.outputs())));
                        continue;
                    };
                    let fed = consumers[from_index]
                        .iter()
                        .any(|c| c.port == from_port.name.as_str() && matches!(c.target, Target::Items { .. }));
                    if input.each.is_some() && !self.check_each(node, source, from_index, from_entry, from_port, fed) {
                        continue;
                    }
                    let slot = inputs[i].len() as u32;
                    let window = input.each.map_or(0, |each| each.window);
                    inputs[i].push(PlannedInput {
                        port: port.name.as_str(),
                        from: from_index as u32,
                        from_port: from_port.name.as_str(),
                        window,
                    });
                    let target = match window {
                        0 => Target::Node { node: i as u32, slot },
                        _ => Target::Items { node: i as u32, slot },
                    };
                    consumers[from_index].push(Consumer { port: from_port.name.as_str(), target });
                }
            }
            let mut each = node.inputs.iter().filter(|input| input.each.is_some());
            if let (Some(first), Some(second)) = (each.next(), each.next()) {
                self.error(
                    second.port_span.clone(),
                    format!(
                        "node `{}` has two `each` inputs, `{}` and `{}`: a node runs once per item of one stream",
                        node.id.get_ref(),
                        first.port,
                        second.port
                    ),
                )
                .help = Some("keep `each` on one input; gather the other stream by reading it without `each`".into());
            }
            for port in entry.inputs().iter().filter(|p| p.required) {
                if !node.inputs.iter().any(|i| i.port == port.name.as_str()) {
                    self.error(
                        node.id.span(),
                        format!(
                            "node `{}` ({}) is missing its required input `{}`",
                            node.id.get_ref(),
                            entry.type_name(),
                            port.name
                        ),
                    )
                    .help = Some(format!("add `inputs = {{ {} = \"<node>.<port>\" }}`", port.name));
                }
            }
        }

        (inputs, consumers)
    }

    /// The workflow's outputs, added to their producers' consumers.
    fn connect_outputs(
        &mut self,
        entries: &[Option<&NodeEntry>],
        index: &HashMap<&'w str, usize>,
        consumers: &mut [Vec<Consumer>],
    ) -> Vec<PlannedOutput> {
        let all_ids = self.all_ids();
        let workflow = self.workflow;
        let mut outputs = Vec::new();
        for output in &workflow.outputs {
            let from = output.from.get_ref();
            let Some(&from_index) = index.get(from.node.as_str()) else {
                let help = suggest(&from.node, &all_ids).map(|n| format!("did you mean `{n}`?"));
                self.error(output.from.span(), format!("output refers to unknown node `{}`", from.node)).help = help;
                continue;
            };
            let Some(entry) = entries[from_index] else { continue };
            let Some(port) = entry.outputs().iter().find(|p| p.name == from.port.as_str()) else {
                self.error(
                    output.from.span(),
                    format!("node `{}` ({}) has no output port `{}`", from.node, entry.type_name(), from.port),
                )
                .help = Some(format!("its output ports: {}", port_names(entry.outputs())));
                continue;
            };
            let output_index = outputs.len() as u32;
            consumers[from_index].push(Consumer { port: port.name.as_str(), target: Target::Output(output_index) });
            outputs.push(PlannedOutput {
                source: format!("{}.{}", from.node, from.port),
                from: from_index as u32,
                port: port.name.as_str(),
                target: output.to.get_ref().clone(),
            });
        }

        outputs
    }

    /// Whether an `each` edge from `from_port` of node `from_index` may be:
    /// from a stream, or from the output of another per-item node (its
    /// results, item by item), which then feeds no other `each` input
    /// (`fed`: one already reads it).
    fn check_each(
        &mut self,
        node: &NodeDecl,
        source: &Spanned<PortRef>,
        from_index: usize,
        from_entry: &NodeEntry,
        from_port: &backplane_plugin_api::PortSpec,
        fed: bool,
    ) -> bool {
        let from = source.get_ref();
        let per_item = self.decls()[from_index].inputs.iter().any(|input| input.each.is_some());
        if per_item {
            if fed {
                self.error(
                    source.span(),
                    format!(
                        "node `{}` runs once per result of `{}.{}`, which another `each` input already reads",
                        node.id.get_ref(),
                        from.node,
                        from.port
                    ),
                )
                .help = Some(format!(
                    "a per-item node's results feed one `each` chain; read `{}.{}` without `each` to get them all",
                    from.node, from.port
                ));
                return false;
            }
            return true;
        }
        if !from_port.is_stream() {
            let streams: Vec<&str> =
                from_entry.outputs().iter().filter(|p| p.is_stream()).map(|p| p.name.as_str()).collect();
            let help = match streams.as_slice() {
                [] => format!(
                    "`{}` streams no output; read `{}.{}` without `each`, or split it first (`std.split`)",
                    from_entry.type_name(),
                    from.node,
                    from.port
                ),
                _ => format!("the streams of `{}`: {}", from_entry.type_name(), streams.join(", ")),
            };
            self.error(
                source.span(),
                format!(
                    "node `{}` runs once per item of `{}.{}`, which is not a stream",
                    node.id.get_ref(),
                    from.node,
                    from.port
                ),
            )
            .help = Some(help);
            return false;
        }
        true
    }

    /// A per-item node's ordinary inputs must not wait for its stream: the
    /// producer (or a per-item node of its chain) waits for the items it
    /// already sent to be taken, so an input that needs it to finish first
    /// would never arrive.
    fn check_items_can_flow(&mut self, inputs: &[Vec<PlannedInput>]) {
        for (node, node_inputs) in inputs.iter().enumerate() {
            let Some(each) = node_inputs.iter().find(|i| i.is_each()) else { continue };
            // The stream's chain: the producer, and further up while it runs per item itself.
            let mut chain = vec![each.from as usize];
            while let Some(up) = inputs[*chain.last().expect("not empty")].iter().find(|i| i.is_each()) {
                if chain.contains(&(up.from as usize)) {
                    break; // a cycle, reported on its own
                }
                chain.push(up.from as usize);
            }
            for input in node_inputs.iter().filter(|i| !i.is_each()) {
                let Some(waits_for) = ancestor_or_self(inputs, input.from as usize, &chain) else { continue };
                let decls = self.decls();
                let (id, from) = (decls[node].id.get_ref(), decls[input.from as usize].id.get_ref());
                let stream = decls[each.from as usize].id.get_ref();
                let span = decls[node]
                    .inputs
                    .iter()
                    .find(|i| i.port == input.port)
                    .map_or_else(|| decls[node].id.span(), |i| i.port_span.clone());
                let message = format!(
                    "node `{id}` runs per item of `{stream}`, but its input `{}` (from `{from}`) waits for `{}` to finish, \
                     which waits for `{id}` to take its items",
                    input.port,
                    decls[waits_for].id.get_ref()
                );
                self.error(span, message).help = Some(format!(
                    "give `{id}` inputs that do not depend on `{stream}`, or read the whole stream in a node after `{id}`"
                ));
            }
        }
    }

    fn check_cycles(&mut self, inputs: &[Vec<PlannedInput>]) {
        let decls = self.decls();
        if let Some(cycle) = find_cycle(inputs) {
            let ids: Vec<&str> = cycle.iter().map(|&i| decls[i].id.get_ref().as_str()).collect();
            let first = cycle[0];
            self.error(
                decls[first].id.span(),
                format!("the workflow has a cycle: {} -> {}", ids.join(" -> "), ids[0]),
            )
            .help = Some("a workflow must be a DAG: remove one of these edges".into());
        }
    }

    /// Nodes naming a backend instance that is not configured (reported).
    fn check_named_backends(&mut self, backends: &BackendRegistry) -> Vec<bool> {
        let instance_names: Vec<&str> = backends.instances().iter().map(|i| i.name.as_str()).collect();
        let mut unknown_backend = vec![false; self.decls().len()];
        for (i, node) in self.decls().iter().enumerate() {
            let Some(name) = &node.backend else { continue };
            if backends.instance(name.get_ref()).is_none() {
                unknown_backend[i] = true;
                let help = match suggest(name.get_ref(), &instance_names) {
                    Some(near) => format!("did you mean `{near}`? configured instances: {}", instance_names.join(", ")),
                    None => {
                        format!("configured instances: {} (`backplane backends` lists them)", instance_names.join(", "))
                    }
                };
                self.error(
                    name.span(),
                    format!("node `{}` names backend `{}`, which is not configured", node.id.get_ref(), name.get_ref()),
                )
                .help = Some(help);
            }
        }

        unknown_backend
    }
}

/// The placement extension of a node that requires tags or has labels.
fn placement(spec: &Requirements, rule: Option<&Requirements>, node: &NodeDecl) -> Option<Tuple2<RString, RString>> {
    let placement = Placement {
        tags: merged_requirements(spec, rule).tags.iter().map(|t| t.to_string()).collect(),
        labels: node.labels.iter().cloned().collect(),
    };
    (!placement.is_empty()).then(|| placement.to_extension())
}

fn route_error(b: &mut Builder<'_>, node: &NodeDecl, entry: &NodeEntry, reasons: Vec<String>) {
    let span = node.backend.as_ref().map_or_else(|| node.id.span(), |b| b.span());
    let mut message = format!("no backend can run node `{}` ({})", node.id.get_ref(), entry.type_name());
    for reason in reasons {
        message.push_str("\n    ");
        message.push_str(&reason);
    }
    let streams: Vec<&str> = entry.outputs().iter().filter(|p| p.is_stream()).map(|p| p.name.as_str()).collect();
    let help = if streams.is_empty() {
        "configure a backend instance that offers what the node needs, or change the node's `backend`/`resources`"
            .to_owned()
    } else {
        format!(
            "`{}` streams its output `{}`, so it runs only where items can reach the host as they come: \
             on a backend with the `streaming` capability (`local` has it); configure one or change the node's `backend`",
            entry.type_name(),
            streams.join("`, `")
        )
    };
    b.error(span, message).help = Some(help);
}

/// The first of `targets` that is `node` or one of its ancestors.
fn ancestor_or_self(inputs: &[Vec<PlannedInput>], node: usize, targets: &[usize]) -> Option<usize> {
    let mut seen = vec![false; inputs.len()];
    let mut stack = vec![node];
    while let Some(n) = stack.pop() {
        if std::mem::replace(&mut seen[n], true) {
            continue;
        }
        if targets.contains(&n) {
            return Some(n);
        }
        stack.extend(inputs[n].iter().map(|i| i.from as usize));
    }
    None
}

/// Node indices on one cycle, if the graph has any (Kahn's algorithm, then a
/// walk along unfinished predecessors).
fn find_cycle(inputs: &[Vec<PlannedInput>]) -> Option<Vec<usize>> {
    let n = inputs.len();
    let mut dependants: Vec<Vec<usize>> = vec![Vec::new(); n];
    let mut remaining: Vec<usize> = vec![0; n];
    for (i, node_inputs) in inputs.iter().enumerate() {
        for input in node_inputs {
            dependants[input.from as usize].push(i);
            remaining[i] += 1;
        }
    }
    let mut ready: Vec<usize> = (0..n).filter(|&i| remaining[i] == 0).collect();
    let mut done = 0;
    while let Some(i) = ready.pop() {
        done += 1;
        for &d in &dependants[i] {
            remaining[d] -= 1;
            if remaining[d] == 0 {
                ready.push(d);
            }
        }
    }
    if done == n {
        return None;
    }
    // Every unfinished node has an unfinished predecessor: walk back until a node repeats.
    let start = (0..n).find(|&i| remaining[i] > 0)?;
    let mut seen: HashMap<usize, usize> = HashMap::new();
    let mut path = Vec::new();
    let mut current = start;
    while !seen.contains_key(&current) {
        seen.insert(current, path.len());
        path.push(current);
        current = inputs[current].iter().map(|i| i.from as usize).find(|&p| remaining[p] > 0)?;
    }
    let mut cycle = path.split_off(seen[&current]);
    // We walked predecessors; present it in edge direction.
    cycle.reverse();
    let min = cycle.iter().enumerate().min_by_key(|&(_, &i)| i).map(|(p, _)| p).unwrap_or(0);
    cycle.rotate_left(min);
    Some(cycle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn edge(from: u32) -> PlannedInput {
        PlannedInput { port: "in", from, from_port: "out", window: 0 }
    }

    #[test]
    fn dag_has_no_cycle() {
        assert_eq!(find_cycle(&[vec![], vec![edge(0)], vec![edge(0), edge(1)]]), None);
    }

    #[test]
    fn cycle_is_found_in_edge_order() {
        // 0 -> 1 -> 2 -> 0, plus 3 hanging off 2.
        let inputs = vec![vec![edge(2)], vec![edge(0)], vec![edge(1)], vec![edge(2)]];
        assert_eq!(find_cycle(&inputs), Some(vec![0, 1, 2]));
    }
}
