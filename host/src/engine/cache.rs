//! The cache as a layer of the engine: a cacheable node that becomes ready
//! is looked up before it is queued; a hit delivers stored outputs without
//! touching a backend, a miss runs and its successful result is stored.

use super::{
    ledger::{CacheStatus, FILE_MANIFEST, MissCause, OffReason, OutputDigest},
    run::{Run, State},
};
use crate::observe::RunEvent;
use backplane_cache::{ContentHash, KeyComponents, Lookup, OutputRef};
use backplane_plugin_api::{Payload, abi_stable::std_types::RVec};

/// A hit's stored outputs as the payloads a node would have returned.
fn payloads(stored: Vec<backplane_cache::HitOutput>) -> RVec<Payload> {
    stored
        .into_iter()
        .map(|o| Payload {
            port: o.port.into(),
            content_type: o.content_type.into(),
            data: o.data.into(),
            object_ref: Default::default(),
            extensions: o.extensions.into_iter().map(|(k, v)| (k.into(), v.into()).into()).collect(),
        })
        .collect()
}

impl Run<'_> {
    /// The cache status each node starts with.
    pub(super) fn initial_cache_status(&self, node: usize) -> CacheStatus {
        if self.options.cache.is_none() {
            return CacheStatus::Off(OffReason::NoCache);
        }
        if self.fanout_of.contains_key(&(node as u32)) || self.feeding.contains_key(&(node as u32)) {
            return CacheStatus::Off(OffReason::Streamed);
        }
        match self.plan.nodes[node].cache_override() {
            Some(false) => CacheStatus::Off(OffReason::Disabled),
            Some(true) => CacheStatus::Pending,
            None if self.plan.types[self.plan.nodes[node].type_index as usize].deterministic => CacheStatus::Pending,
            None => CacheStatus::Off(OffReason::NotDeterministic),
        }
    }

    /// Whether `node` must be looked up before it can be queued.
    pub(super) fn awaits_lookup(&self, node: usize) -> bool {
        self.ledger.as_ref().is_some_and(|l| l.cache.get(node) == Some(&CacheStatus::Pending))
    }

    /// Whether `node`'s outputs must come back as bytes (to be stored, or
    /// to make a consumer's key).
    pub(super) fn needs_bytes(&self, node: usize) -> bool {
        let Some(ledger) = &self.ledger else { return false };
        let cached = |n: usize| !matches!(ledger.cache[n], CacheStatus::Off(_));
        cached(node)
            || self.plan.nodes[node].consumers.iter().any(|c| match c.target {
                crate::plan::Target::Node { node: target, .. } => cached(target as usize),
                crate::plan::Target::Output(_) | crate::plan::Target::Items { .. } => false,
            })
    }

    /// Looks up every node waiting for it, in rounds (a round's keys are
    /// asked together, so a shared tier answers a wide DAG concurrently);
    /// hits deliver at once (which may make more nodes wait), misses are
    /// queued on their instance.
    pub(super) fn look_up_ready(&mut self) {
        let Some(cache) = self.options.cache.clone() else { return };
        while !self.lookups.is_empty() {
            let mut round: Vec<(u32, backplane_cache::Key)> = Vec::with_capacity(self.lookups.len());
            while let Some(node) = self.lookups.pop_front() {
                let n = node as usize;
                if self.state[n] != State::Waiting {
                    continue;
                }
                let Some(key) = self.key_of(n, cache.salt()) else {
                    self.set_cache(n, CacheStatus::Off(OffReason::ByReference));
                    self.make_ready(node);
                    continue;
                };
                self.ledger.as_mut().expect("a cache run keeps a ledger").keys[n] = Some(key);
                if cache.rerun(&self.plan.nodes[n].id) {
                    self.set_cache(n, CacheStatus::Miss(MissCause::Rerun));
                    self.emit(|at| RunEvent::CacheMiss { node, at });
                    self.make_ready(node);
                    continue;
                }
                round.push((node, key));
            }
            let keys: Vec<backplane_cache::Key> = round.iter().map(|r| r.1).collect();
            for ((node, _), found) in round.into_iter().zip(cache.lookup_many(&keys)) {
                self.found(node, found);
            }
        }
    }

    /// Acts on what a lookup of `node` found.
    fn found(&mut self, node: u32, found: Lookup) {
        let n = node as usize;
        match found {
            Lookup::Hit(hit) => {
                let run = self.ledger.as_mut().expect("ledger").hit_run(hit.run_id);
                let outputs = payloads(hit.outputs);
                self.record_outputs(n, &outputs);
                match self.deliver(n, outputs, true) {
                    Ok(()) => {
                        self.state[n] = State::Succeeded;
                        self.succeeded += 1;
                        self.set_cache(n, CacheStatus::Hit { run });
                        self.emit(|at| RunEvent::CacheHit { node, at });
                    }
                    Err(problem) => self.damaged(node, format!("the stored result is unusable: {problem}")),
                }
            }
            Lookup::Absent => {
                self.set_cache(n, CacheStatus::Miss(MissCause::Absent));
                self.emit(|at| RunEvent::CacheMiss { node, at });
                self.make_ready(node);
            }
            Lookup::Corrupt(problem) => self.damaged(node, problem),
        }
    }

    fn damaged(&mut self, node: u32, problem: String) {
        tracing::warn!(node = %self.plan.nodes[node as usize].id, "cache entry not used: {problem}; running the node again");
        let ledger = self.ledger.as_mut().expect("ledger");
        ledger.problems.push(problem);
        let index = ledger.problems.len() as u32 - 1;
        self.set_cache(node as usize, CacheStatus::Miss(MissCause::Damaged(index)));
        self.emit(|at| RunEvent::CacheMiss { node, at });
        self.make_ready(node);
    }

    fn set_cache(&mut self, node: usize, status: CacheStatus) {
        if let Some(ledger) = &mut self.ledger {
            ledger.cache[node] = status;
        }
    }

    /// The key of `node` from its inputs' content, or `None` when an input's
    /// content is unknown (it stayed on a backend as a reference).
    fn key_of(&self, node: usize, salt: &str) -> Option<backplane_cache::Key> {
        let ledger = self.ledger.as_ref()?;
        let planned = &self.plan.nodes[node];
        let mut inputs = Vec::with_capacity(planned.inputs.len());
        for input in &planned.inputs {
            inputs.push((input.port, ledger.output(input.from as usize, input.from_port)?.content));
        }
        // Port order is by name; within a port, list order (a stable sort keeps it).
        inputs.sort_by(|a, b| a.0.cmp(b.0));
        let node_type = &self.plan.types[planned.type_index as usize];
        Some(
            KeyComponents {
                node_type: node_type.name,
                node_version: node_type.version,
                settings: &planned.settings,
                inputs: &inputs,
                salt,
            }
            .key(),
        )
    }

    /// Notes the digests (and any file manifest) of `node`'s outputs.
    pub(super) fn record_outputs(&mut self, node: usize, outputs: &RVec<Payload>) {
        let Some(ledger) = &mut self.ledger else { return };
        let declared = self.plan.types[self.plan.nodes[node].type_index as usize].outputs;
        let mut digests = Vec::with_capacity(outputs.len());
        for payload in outputs.iter().filter(|p| p.object_ref.is_empty()) {
            let Some(port) = declared.iter().find(|d| d.name.as_str() == payload.port.as_str()) else { continue };
            let data = *blake3::hash(&payload.data).as_bytes();
            digests.push(OutputDigest {
                port: port.name.as_str(),
                content: ContentHash::of(&payload.content_type, &data),
                data,
                size: payload.data.len() as u64,
            });
            if payload.content_type.as_str() == FILE_MANIFEST
                && let Ok(text) = std::str::from_utf8(&payload.data)
            {
                ledger.files.insert(node as u32, text.to_owned());
            }
        }
        ledger.outputs[node] = digests.into_boxed_slice();
    }

    /// Looks up a cacheable item's result by its inputs' content (its first
    /// attempt only): `Some(outputs)` on a hit. A miss keeps the key, so the
    /// result is stored when the item succeeds.
    pub(super) fn look_up_item(&mut self, unit: usize) -> Option<RVec<Payload>> {
        let cache = self.options.cache.clone()?;
        let node = self.node_of(unit);
        let planned = &self.plan.nodes[node];
        let mut inputs: Vec<(&str, ContentHash)> = self.slots[unit]
            .iter()
            .zip(&planned.inputs)
            .filter_map(|(payload, input)| {
                let payload = payload.as_ref()?;
                Some((input.port, ContentHash::of(&payload.content_type, blake3::hash(&payload.data).as_bytes())))
            })
            .collect();
        inputs.sort_by(|a, b| a.0.cmp(b.0));
        let node_type = &self.plan.types[planned.type_index as usize];
        let components = KeyComponents {
            node_type: node_type.name,
            node_version: node_type.version,
            settings: &planned.settings,
            inputs: &inputs,
            salt: cache.salt(),
        };
        let key = components.key();
        let rerun = cache.rerun(&planned.id);
        self.items[unit - self.plan.nodes.len()].key = Some(key);
        if rerun {
            return None;
        }
        match cache.lookup_many(&[key]).pop()? {
            Lookup::Hit(hit) => Some(payloads(hit.outputs)),
            Lookup::Absent => None,
            Lookup::Corrupt(problem) => {
                tracing::warn!(node = %self.task_node_id(unit), "cache entry not used: {problem}; running the item again");
                None
            }
        }
    }

    /// Stores the result of an item that missed.
    pub(super) fn store_item(&self, unit: usize, outputs: &RVec<Payload>) {
        let (Some(cache), Some(key)) = (&self.options.cache, self.item_of(unit).and_then(|item| item.key)) else {
            return;
        };
        if outputs.iter().any(|p| !p.object_ref.is_empty()) {
            return;
        }
        let hashes: Vec<[u8; 32]> = outputs.iter().map(|p| *blake3::hash(&p.data).as_bytes()).collect();
        let to_store: Vec<OutputRef<'_>> = outputs
            .iter()
            .zip(&hashes)
            .map(|(p, data_hash)| OutputRef {
                port: p.port.as_str(),
                content_type: p.content_type.as_str(),
                data_hash: *data_hash,
                data: &p.data,
                extensions: p.extensions.iter().map(|t| (t.0.as_str(), t.1.as_str())).collect(),
            })
            .collect();
        let node = self.node_of(unit);
        cache.store(key, self.plan.types[self.plan.nodes[node].type_index as usize].name, &to_store);
    }

    /// Stores the successful result of a node that missed, unless its
    /// consumers could not use it (then the node fails instead).
    pub(super) fn store_result(&self, node: usize, outputs: &RVec<Payload>) {
        let (Some(cache), Some(ledger)) = (&self.options.cache, &self.ledger) else { return };
        let (CacheStatus::Miss(_), Some(key)) = (ledger.cache[node], ledger.keys[node]) else { return };
        if outputs.iter().any(|p| !p.object_ref.is_empty()) || self.missing_output(node, outputs, true).is_some() {
            return;
        }
        let digests = &ledger.outputs[node];
        let to_store: Vec<OutputRef<'_>> = outputs
            .iter()
            .filter_map(|p| {
                let digest = digests.iter().find(|d| d.port == p.port.as_str())?;
                Some(OutputRef {
                    port: digest.port,
                    content_type: p.content_type.as_str(),
                    data_hash: digest.data,
                    data: &p.data,
                    extensions: p.extensions.iter().map(|t| (t.0.as_str(), t.1.as_str())).collect(),
                })
            })
            .collect();
        cache.store(key, self.plan.types[self.plan.nodes[node].type_index as usize].name, &to_store);
    }
}
