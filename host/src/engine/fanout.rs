//! Per-item fan-out: a node with an `each` input runs once per item of a
//! stream, each item its own task (a *unit*), routed, retried and failed
//! like any node; the results are gathered in item order into the node's
//! outputs.
//!
//! # Core concepts
//!
//! - Units `0..n` are the plan's nodes; an item's unit is appended after
//!   them and its index reused once the item is gathered, so the engine's
//!   per-unit state grows with the credit window, not the stream.
//! - The per-item node itself never runs: it is *armed* when its ordinary
//!   inputs have arrived (each item's task gets them besides its item) and
//!   succeeds once its producer finished and every item is gathered.
//! - A producer's items reach the engine on the completion channel, before
//!   its completion: when the completion comes, the item count is known.
//! - Credits ([`Credits`]) bound how far the producer runs ahead: one is
//!   returned per item gathered, in order, so items in flight and results
//!   waiting for an earlier item both stay within the window.
//! - A new attempt of the producer starts the stream over: the earlier
//!   attempt's credits are closed and its items' results are dropped.
//! - A per-item node that fails or is skipped *drains* its stream: items
//!   still coming are dropped and their credits returned at once, so the
//!   producer (which other consumers may need) runs to its end.
//! - Chains: an `each` input may read another per-item node's output. Each
//!   result, once gathered in order, is handed on as the next node's item,
//!   and the producer's credit comes back only at the chain's end, so one
//!   window bounds the whole chain.

use super::run::{IDS_PER_NODE, NEXT_TASK_ID, Run, State};
use crate::{
    layers::{Credits, Feed, StreamItem},
    observe::{AttemptStatus, RunEvent},
    plan::Target,
};
use backplane_plugin_api::{
    Payload,
    abi_stable::std_types::{RString, RVec, Tuple2},
    extensions::{FeedsItems, TaskExtension},
    stream::Accumulator,
};
use std::{
    collections::BTreeMap,
    sync::{Arc, atomic::Ordering},
    time::Instant,
};

/// The stream state of one per-item node.
pub(super) struct FanOut {
    /// The per-item node.
    pub(super) node: u32,
    /// Its `each` input slot.
    slot: u32,
    /// The producer and the index of its stream among its type's outputs.
    pub(super) producer: u32,
    output: u32,
    window: u32,
    /// Bumped by each attempt of the producer; an older item's result is dropped.
    epoch: u32,
    credits: Option<Arc<Credits>>,
    /// The node's ordinary inputs have arrived.
    armed: bool,
    /// Units whose item came before the node was armed.
    unarmed: Vec<u32>,
    /// Items of this epoch so far; the next item's index.
    received: u64,
    /// The producer succeeded: `received` is the stream's length.
    closed: bool,
    /// The per-item node reading this node's results item by item (chains), and
    /// the output it reads.
    next: Option<(u32, u32)>,
    /// Items gathered, in order: the next item to gather.
    gathered: u64,
    /// Results that wait for an earlier item.
    waiting: BTreeMap<u64, RVec<Payload>>,
    /// By output index of the node's type: the gathered value, for ports someone reads.
    values: Vec<Option<(Accumulator, RString)>>,
    /// Failed or skipped: items are dropped, their credits returned at once.
    draining: bool,
    /// Items are looked up in the cache by their content, and stored.
    pub(super) cached: bool,
    /// The node's first item task was dispatched (its `Dispatched` event is sent).
    dispatched: bool,
}

/// A unit that runs one item.
pub(super) struct ItemUnit {
    pub(super) fanout: u32,
    /// The item's index in its stream.
    pub(super) seq: u64,
    epoch: u32,
    /// Task id of this unit's attempt 0.
    pub(super) first_task_id: u64,
    /// Its cache key, once looked up.
    pub(super) key: Option<backplane_cache::Key>,
}

impl FanOut {
    fn new(run: &Run<'_>, node: u32, slot: u32) -> Self {
        let plan = run.plan;
        let input = plan.nodes[node as usize].inputs[slot as usize];
        let producer = &plan.nodes[input.from as usize];
        let outputs = plan.types[producer.type_index as usize].outputs;
        let output = outputs.iter().position(|p| p.name == input.from_port).expect("planned edges name real ports");
        let planned = &plan.nodes[node as usize];
        let ports = plan.types[planned.type_index as usize].outputs;
        let read =
            |port: &str| planned.consumers.iter().any(|c| c.port == port && !matches!(c.target, Target::Items { .. }));
        Self {
            node,
            slot,
            producer: input.from,
            output: output as u32,
            window: input.window,
            epoch: 0,
            credits: None,
            armed: false,
            unarmed: Vec::new(),
            received: 0,
            closed: false,
            next: None,
            gathered: 0,
            waiting: BTreeMap::new(),
            values: ports
                .iter()
                .map(|p| read(p.name.as_str()).then(|| (Accumulator::default(), RString::new())))
                .collect(),
            draining: false,
            cached: run.options.cache.is_some() && plan.cacheable(node as usize),
            dispatched: false,
        }
    }

    /// Returns the credit of one item, if it belongs to the current epoch.
    fn give_back(&self, epoch: u32) {
        if epoch == self.epoch
            && let Some(credits) = &self.credits
        {
            credits.give(1);
        }
    }
}

impl Run<'_> {
    /// The fan-out state of every per-item node, and the producers they read.
    pub(super) fn plan_fanouts(&mut self) {
        for node in 0..self.plan.nodes.len() {
            if let Some(slot) = self.plan.each_slot(node) {
                let fanout = FanOut::new(self, node as u32, slot as u32);
                let index = self.fanouts.len() as u32;
                self.fanout_of.insert(node as u32, index);
                self.feeding.entry(fanout.producer).or_default().push(index);
                self.fanouts.push(fanout);
            }
        }
        // A chain link: a per-item node whose producer runs per item too.
        for index in 0..self.fanouts.len() {
            let (producer, output) = (self.fanouts[index].producer, self.fanouts[index].output);
            if let Some(&from) = self.fanout_of.get(&producer) {
                self.fanouts[from as usize].next = Some((index as u32, output));
            }
        }
    }

    /// The plan node a unit runs.
    #[inline]
    pub(super) fn node_of(&self, unit: usize) -> usize {
        match unit.checked_sub(self.plan.nodes.len()) {
            None => unit,
            Some(item) => self.fanouts[self.items[item].fanout as usize].node as usize,
        }
    }

    /// The item unit `unit` is, if it is one.
    pub(super) fn item_of(&self, unit: usize) -> Option<&ItemUnit> {
        self.items.get(unit.checked_sub(self.plan.nodes.len())?)
    }

    /// The task's `node_id`: the node's, with the item's index for an item.
    pub(super) fn task_node_id(&self, unit: usize) -> RString {
        let id = &self.plan.nodes[self.node_of(unit)].id;
        match self.item_of(unit) {
            None => id.as_str().into(),
            Some(item) => format!("{id}[{}]", item.seq).into(),
        }
    }

    /// For a producer's new attempt: a fresh window per per-item consumer
    /// (an earlier attempt's stream is dropped) and the sink's feeds.
    pub(super) fn open_feeds(&mut self, producer: u32) -> (Vec<Feed>, Option<Tuple2<RString, RString>>) {
        let Some(fanouts) = self.feeding.get(&producer).cloned() else { return (Vec::new(), None) };
        let planned = &self.plan.nodes[producer as usize];
        let outputs = self.plan.types[planned.type_index as usize].outputs;
        let mut feeds: Vec<Feed> = Vec::new();
        for f in fanouts {
            let credits = Arc::new(Credits::new(self.fanouts[f as usize].window));
            // The stream starts over along the whole chain, under one window.
            let mut link = Some(f);
            while let Some(l) = link {
                self.restart(l as usize, credits.clone());
                link = self.fanouts[l as usize].next.map(|(next, _)| next);
            }
            let output = self.fanouts[f as usize].output;
            match feeds.iter_mut().find(|feed| feed.output == output) {
                Some(feed) => feed.credits.push(credits),
                None => feeds.push(Feed { output, credits: vec![credits], accumulate: false }),
            }
        }
        // Whoever reads the whole stream still gets its accumulated value.
        for feed in &mut feeds {
            let port = outputs[feed.output as usize].name.as_str();
            feed.accumulate =
                planned.consumers.iter().any(|c| c.port == port && !matches!(c.target, Target::Items { .. }));
        }
        let ports = feeds.iter().map(|feed| outputs[feed.output as usize].name.to_string()).collect();
        (feeds, Some(FeedsItems { ports }.to_extension()))
    }

    /// A new attempt of the producer: the stream starts over under `credits`.
    fn restart(&mut self, f: usize, credits: Arc<Credits>) {
        let fanout = &mut self.fanouts[f];
        if let Some(old) = fanout.credits.replace(credits) {
            old.close();
        }
        fanout.epoch += 1;
        fanout.received = 0;
        fanout.gathered = 0;
        fanout.closed = false;
        fanout.waiting.clear();
        for value in fanout.values.iter_mut().flatten() {
            *value = (Accumulator::default(), RString::new());
        }
        // Units of the earlier attempt still waiting to be armed never run.
        for unit in std::mem::take(&mut fanout.unarmed) {
            self.free_unit(unit);
        }
    }

    /// An item from a producer's task: a new unit for each per-item consumer.
    pub(super) fn stream_item(&mut self, item: StreamItem) {
        let producer = item.node as usize;
        let current =
            self.state[producer] == State::Running && item.task_id == self.task_id(producer, self.attempt[producer]);
        let Some(fanouts) = self.feeding.get(&item.node) else { return };
        if !current {
            return; // an abandoned attempt: its window is closed
        }
        // Usually one reader; the payload is cloned only for all but the last.
        let readers = fanouts.iter().filter(|&&f| self.fanouts[f as usize].output == item.output).count();
        let mut payload = Some(item.payload);
        let mut seen = 0;
        for i in 0..fanouts.len() {
            let f = self.feeding[&item.node][i];
            let fanout = &self.fanouts[f as usize];
            if fanout.output != item.output {
                continue;
            }
            seen += 1;
            if fanout.draining || self.stop.is_some() {
                fanout.give_back(fanout.epoch);
                continue;
            }
            let item = if seen == readers { payload.take() } else { payload.clone() };
            if let Some(item) = item {
                self.new_item_unit(f, item);
            }
        }
    }

    fn new_item_unit(&mut self, f: u32, mut item: Payload) {
        let fanout = &mut self.fanouts[f as usize];
        let (node, slot, seq, epoch) = (fanout.node as usize, fanout.slot as usize, fanout.received, fanout.epoch);
        fanout.received += 1;
        self.item_tasks += 1;
        let first_task_id = NEXT_TASK_ID.fetch_add(IDS_PER_NODE, Ordering::Relaxed);
        let unit = ItemUnit { fanout: f, seq, epoch, first_task_id, key: None };
        let backend = self.assigned[node];
        let index = match self.free_units.pop() {
            Some(index) => {
                let u = index as usize;
                self.items[u - self.plan.nodes.len()] = unit;
                self.attempt[u] = 0;
                self.state[u] = State::Waiting;
                self.assigned[u] = backend;
                index
            }
            None => {
                self.items.push(unit);
                self.attempt.push(0);
                self.state.push(State::Waiting);
                self.assigned.push(backend);
                self.dispatched.push(0.0);
                self.slots.push(Vec::new());
                self.remaining.push(0);
                (self.state.len() - 1) as u32
            }
        };
        item.port = RString::from(self.plan.nodes[node].inputs[slot].port);
        let mut slots = self.slots[node].clone();
        slots.resize_with(self.plan.nodes[node].inputs.len(), || None);
        slots[slot] = Some(item);
        if self.fanouts[f as usize].armed {
            self.slots[index as usize] = slots;
            self.make_ready(index);
        } else {
            // The ordinary inputs are not all here: keep the item, fill them in when they are.
            self.slots[index as usize] = slots;
            self.fanouts[f as usize].unarmed.push(index);
        }
    }

    /// Answers an item from the cache, when it has the result: `true` then,
    /// and the unit is not queued.
    pub(super) fn item_ready(&mut self, unit: u32) -> bool {
        let u = unit as usize;
        let Some(item) = self.item_of(u) else { return false };
        if self.attempt[u] > 0 || item.key.is_some() || !self.fanouts[item.fanout as usize].cached {
            return false;
        }
        let Some(outputs) = self.look_up_item(u) else { return false };
        self.item_cache_hits += 1;
        self.state[u] = State::Running;
        self.item_succeeded(u, outputs);
        true
    }

    /// The per-item node's ordinary inputs have all arrived.
    pub(super) fn arm(&mut self, node: u32) {
        let f = self.fanout_of[&node] as usize;
        self.fanouts[f].armed = true;
        self.state[node as usize] = State::Running;
        let instance = self.assigned[node as usize];
        self.emit(|at| RunEvent::Queued { node, instance, at });
        let slot = self.fanouts[f].slot as usize;
        for unit in std::mem::take(&mut self.fanouts[f].unarmed) {
            let u = unit as usize;
            let item = self.slots[u][slot].take();
            let mut slots = self.slots[node as usize].clone();
            slots.resize_with(self.plan.nodes[node as usize].inputs.len(), || None);
            slots[slot] = item;
            self.slots[u] = slots;
            self.make_ready(unit);
        }
        self.maybe_gathered(f);
    }

    /// The first item task of a per-item node went out: the node counts as dispatched.
    pub(super) fn item_dispatched(&mut self, unit: usize, now: Instant) {
        let Some(item) = self.item_of(unit) else { return };
        let f = item.fanout as usize;
        if std::mem::replace(&mut self.fanouts[f].dispatched, true) {
            return;
        }
        let node = self.fanouts[f].node;
        self.attempt[node as usize] = 1;
        let at = now.saturating_duration_since(self.started);
        if let Some(ledger) = &mut self.ledger {
            ledger.submitted[node as usize] = at.as_secs_f64();
        }
        let instance = self.assigned[unit];
        self.emit(|_| RunEvent::Dispatched { node, instance, attempt: 1, at, bytes_in: 0 });
    }

    /// An item's task succeeded: gather its outputs in item order.
    pub(super) fn item_succeeded(&mut self, unit: usize, outputs: RVec<Payload>) {
        let item = self.item_of(unit).expect("an item unit");
        let (f, seq, epoch) = (item.fanout as usize, item.seq, item.epoch);
        self.free_unit(unit as u32);
        let fanout = &mut self.fanouts[f];
        if fanout.draining || epoch != fanout.epoch {
            fanout.give_back(epoch);
            return;
        }
        let node = fanout.node as usize;
        if let Some(missing) = self.missing_output(node, &outputs, true) {
            let message = format!("item {seq}: the node produced no `{missing}` output, which its consumers need");
            return self.fail_per_item(f, crate::policy::FailureKind::NodeFailed, message);
        }
        let fanout = &mut self.fanouts[f];
        if seq != fanout.gathered {
            fanout.waiting.insert(seq, outputs);
            return;
        }
        let mut next = Some(outputs);
        while let Some(outputs) = next {
            let handed_on = self.gather(f, &outputs).and_then(|()| self.hand_on(f, outputs));
            let handed_on = match handed_on {
                Ok(handed_on) => handed_on,
                Err(why) => return self.fail_per_item(f, crate::policy::FailureKind::NodeFailed, why),
            };
            let fanout = &mut self.fanouts[f];
            fanout.gathered += 1;
            if !handed_on {
                fanout.give_back(fanout.epoch);
            }
            next = fanout.waiting.remove(&fanout.gathered);
        }
        self.maybe_gathered(f);
    }

    /// Hands one gathered result on to the next per-item node of a chain, as
    /// its item (which keeps the item's credit); `false` when there is none.
    fn hand_on(&mut self, f: usize, mut outputs: RVec<Payload>) -> Result<bool, String> {
        let Some((next, output)) = self.fanouts[f].next else { return Ok(false) };
        if self.fanouts[next as usize].draining {
            return Ok(false);
        }
        let node = self.fanouts[f].node as usize;
        let port = &self.plan.types[self.plan.nodes[node].type_index as usize].outputs[output as usize].name;
        let Some(at) = outputs.iter().position(|p| p.port == *port) else {
            let reader = &self.plan.nodes[self.fanouts[next as usize].node as usize].id;
            return Err(format!(
                "item {}: the node produced no `{port}` output, which `{reader}` runs on per item",
                self.fanouts[f].gathered
            ));
        };
        let item = outputs.remove(at);
        self.new_item_unit(next, item);
        Ok(true)
    }

    /// Appends one item's outputs to the node's gathered values.
    fn gather(&mut self, f: usize, outputs: &RVec<Payload>) -> Result<(), String> {
        let node = self.fanouts[f].node as usize;
        let ports = self.plan.types[self.plan.nodes[node].type_index as usize].outputs;
        let fanout = &mut self.fanouts[f];
        for payload in outputs.iter() {
            let Some(index) = ports.iter().position(|p| p.name == payload.port) else { continue };
            let Some((value, content_type)) = &mut fanout.values[index] else { continue };
            if content_type.is_empty() {
                *value = Accumulator::new(&payload.content_type);
                *content_type = payload.content_type.clone();
            }
            value
                .push(&payload.data)
                .map_err(|why| format!("item {}: output `{}`: {why}", fanout.gathered, payload.port))?;
        }
        Ok(())
    }

    /// The producer succeeded: its stream has ended.
    pub(super) fn stream_closed(&mut self, node: u32) {
        let f = self.fanout_of[&node] as usize;
        self.fanouts[f].closed = true;
        self.maybe_gathered(f);
    }

    /// Completes the per-item node once its stream ended and every item is gathered.
    fn maybe_gathered(&mut self, f: usize) {
        let fanout = &self.fanouts[f];
        if !fanout.armed || !fanout.closed || fanout.draining || fanout.gathered < fanout.received {
            return;
        }
        let node = fanout.node as usize;
        if self.state[node] != State::Running {
            return;
        }
        let ports = self.plan.types[self.plan.nodes[node].type_index as usize].outputs;
        let values = std::mem::take(&mut self.fanouts[f].values);
        let outputs: RVec<Payload> = values
            .into_iter()
            .zip(ports)
            .filter_map(|(value, port)| {
                let (value, content_type) = value?;
                let content_type = if content_type.is_empty() { port.content_type.clone() } else { content_type };
                Some(value.finish(&port.name, &content_type))
            })
            .collect();
        self.fanouts[f].closed = false;
        if !self.fanouts[f].dispatched {
            self.fanouts[f].dispatched = true;
            self.attempt[node] = 1;
            let (n, instance) = (node as u32, self.assigned[node]);
            self.emit(|at| RunEvent::Dispatched { node: n, instance, attempt: 1, at, bytes_in: 0 });
        }
        let now = Instant::now();
        let at = now.saturating_duration_since(self.started);
        if let Some(ledger) = &mut self.ledger {
            ledger.finished[node] = at.as_secs_f64();
        }
        let bytes_out = outputs.iter().map(|p| p.data.len() as u64).sum();
        let (n, instance) = (node as u32, self.assigned[node]);
        self.emit(|_| RunEvent::Finished {
            node: n,
            instance,
            attempt: 1,
            at,
            status: AttemptStatus::Succeeded,
            bytes_out,
            error: None,
        });
        self.record_outputs(node, &outputs);
        match self.deliver(node, outputs, self.stop.is_none()) {
            Ok(()) => {
                self.state[node] = State::Succeeded;
                self.succeeded += 1;
            }
            Err(message) => self.fail(node, crate::policy::FailureKind::NodeFailed, message),
        }
    }

    /// An item failed for good: so does its node, per the failure policy.
    pub(super) fn item_failed(&mut self, unit: usize, kind: crate::policy::FailureKind, message: String) {
        let item = self.item_of(unit).expect("an item unit");
        let (f, seq, epoch) = (item.fanout as usize, item.seq, item.epoch);
        self.free_unit(unit as u32);
        let fanout = &self.fanouts[f];
        if fanout.draining || epoch != fanout.epoch {
            fanout.give_back(epoch);
            return;
        }
        fanout.give_back(epoch);
        self.fail_per_item(f, kind, format!("item {seq}: {message}"));
    }

    fn fail_per_item(&mut self, f: usize, kind: crate::policy::FailureKind, message: String) {
        let node = self.fanouts[f].node as usize;
        self.drain(f);
        let (n, instance, attempt) = (node as u32, self.assigned[node], self.attempt[node].max(1));
        let at = self.clock.saturating_duration_since(self.started);
        let error = Some(message.clone().into_boxed_str());
        let status = AttemptStatus::Failed { kind, lost: false };
        self.emit(|_| RunEvent::Finished { node: n, instance, attempt, at, status, bytes_out: 0, error });
        self.fail(node, kind, message);
    }

    /// The node will not use its stream: drop what comes and return the credits.
    pub(super) fn drain(&mut self, f: usize) {
        let fanout = &mut self.fanouts[f];
        if std::mem::replace(&mut fanout.draining, true) {
            return;
        }
        if let Some(credits) = &fanout.credits {
            credits.give(fanout.waiting.len() as u64);
        }
        fanout.waiting.clear();
        for unit in std::mem::take(&mut fanout.unarmed) {
            let epoch = self.fanouts[f].epoch;
            self.fanouts[f].give_back(epoch);
            self.free_unit(unit);
        }
    }

    /// Drains the stream of `node`, if it runs per item.
    pub(super) fn drain_node(&mut self, node: usize) {
        if let Some(&f) = self.fanout_of.get(&(node as u32)) {
            self.drain(f as usize);
        }
    }

    /// An attempt of `producer` failed: its windows close, so an attempt
    /// still running (abandoned at its deadline) stops at its next `emit`
    /// instead of waiting for credits forever.
    pub(super) fn close_feeds(&mut self, producer: usize) {
        let Some(fanouts) = self.feeding.get(&(producer as u32)) else { return };
        for &f in fanouts {
            if let Some(credits) = &self.fanouts[f as usize].credits {
                credits.close();
            }
        }
    }

    /// Wakes every producer waiting for credits: the run stops.
    pub(super) fn close_windows(&mut self) {
        for fanout in &self.fanouts {
            if let Some(credits) = &fanout.credits {
                credits.close();
            }
        }
    }

    fn free_unit(&mut self, unit: u32) {
        let u = unit as usize;
        self.slots[u] = Vec::new();
        self.state[u] = State::Succeeded;
        self.free_units.push(unit);
    }
}
