//! Backplane tags and labels as Ray custom resources.
//!
//! Ray places tasks by resources alone. An operator who gives the Ray nodes
//! with, say, a licence server the custom resource `licence` maps the
//! Backplane tag `licensed` to it: the instance then offers that tag while a
//! live Ray node has the resource (so routing can send such nodes here), and
//! each task of a node requiring the tag asks Ray for the resource, so Ray
//! runs it only where the resource is.

use crate::config::ResourceMapping;
use backplane_plugin_api::extensions::Placement;
use std::collections::BTreeMap;

/// What a bare resource name asks for: enough to steer placement, too
/// little to limit how many such tasks a Ray node runs at once.
pub const TOKEN_AMOUNT: f64 = 0.001;

/// The smallest amount Ray accepts (it keeps four decimals).
const SMALLEST_AMOUNT: f64 = 0.0001;

#[derive(Debug, Clone, PartialEq)]
struct Request {
    resource: String,
    amount: f64,
}

/// The configured mappings of one instance.
#[derive(Debug, Default)]
pub struct PlacementResources {
    tags: BTreeMap<String, Request>,
    /// Keyed by (label key, label value).
    labels: BTreeMap<(String, String), Request>,
}

impl PlacementResources {
    /// From `tag_resources` and `label_resources`, or what is wrong with them.
    pub fn new(
        tags: &BTreeMap<String, ResourceMapping>,
        labels: &BTreeMap<String, ResourceMapping>,
    ) -> Result<Self, String> {
        let request = |setting: &str, key: &str, mapping: &ResourceMapping| {
            let (resource, amount) = match mapping {
                ResourceMapping::Name(resource) => (resource, TOKEN_AMOUNT),
                ResourceMapping::Amount { resource, amount } => (resource, *amount),
            };
            if resource.is_empty() {
                return Err(format!("`{setting}.\"{key}\"` names no resource"));
            }
            if !(amount >= SMALLEST_AMOUNT && amount.is_finite()) {
                return Err(format!("`{setting}.\"{key}\"`: the amount must be at least {SMALLEST_AMOUNT}"));
            }
            Ok(Request { resource: resource.clone(), amount })
        };
        let mut mapped = Self::default();
        for (tag, mapping) in tags {
            mapped.tags.insert(tag.clone(), request("tag_resources", tag, mapping)?);
        }
        for (label, mapping) in labels {
            let Some((key, value)) = label.split_once('=') else {
                return Err(format!(
                    "`label_resources.\"{label}\"`: write the label as \"key=value\", e.g. \"zone=eu\""
                ));
            };
            mapped.labels.insert((key.to_owned(), value.to_owned()), request("label_resources", label, mapping)?);
        }
        Ok(mapped)
    }

    /// The tags this instance offers while the cluster's largest amounts of
    /// its custom resources are `capacity`.
    pub fn offered_tags(&self, capacity: &BTreeMap<String, f64>) -> Vec<String> {
        self.tags.iter().filter(|(_, r)| available(r, capacity)).map(|(tag, _)| tag.clone()).collect()
    }

    /// Mappings no live Ray node can satisfy, as warnings to log.
    pub fn unavailable(&self, capacity: &BTreeMap<String, f64>) -> Vec<String> {
        let tags = self.tags.iter().map(|(tag, r)| (format!("tag `{tag}`"), r));
        let labels = self.labels.iter().map(|((k, v), r)| (format!("label `{k}={v}`"), r));
        tags.chain(labels)
            .filter(|(_, r)| !available(r, capacity))
            .map(|(what, r)| format!("{what} maps to {}, which no live Ray node has", describe(r)))
            .collect()
    }

    /// Adds what `placement` asks for to a task's custom resources (keeping
    /// the larger amount where the node already asks for the resource), or
    /// says which tag or label no live Ray node can satisfy.
    pub fn add_requests(
        &self,
        placement: &Placement,
        capacity: &BTreeMap<String, f64>,
        custom: &mut BTreeMap<String, f64>,
    ) -> Result<(), String> {
        let tags = placement.tags.iter().filter_map(|tag| Some((format!("tag `{tag}`"), self.tags.get(tag)?)));
        let labels = placement
            .labels
            .iter()
            .filter_map(|(k, v)| Some((format!("label `{k}={v}`"), self.labels.get(&(k.clone(), v.clone()))?)));
        for (what, request) in tags.chain(labels) {
            if !available(request, capacity) {
                return Err(format!("its {what} maps to {}, which no live Ray node has", describe(request)));
            }
            let amount = custom.entry(request.resource.clone()).or_insert(0.0);
            *amount = amount.max(request.amount);
        }
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.tags.is_empty() && self.labels.is_empty()
    }
}

fn available(request: &Request, capacity: &BTreeMap<String, f64>) -> bool {
    capacity.get(&request.resource).is_some_and(|&most| most >= request.amount)
}

fn describe(request: &Request) -> String {
    if request.amount == TOKEN_AMOUNT {
        format!("Ray resource `{}`", request.resource)
    } else {
        format!("{} of Ray resource `{}`", request.amount, request.resource)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mappings(entries: &[(&str, ResourceMapping)]) -> BTreeMap<String, ResourceMapping> {
        entries.iter().map(|(k, v)| (k.to_string(), v.clone())).collect()
    }

    fn name(resource: &str) -> ResourceMapping {
        ResourceMapping::Name(resource.into())
    }

    fn resources(entries: &[(&str, f64)]) -> BTreeMap<String, f64> {
        entries.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    }

    fn mapped() -> PlacementResources {
        let tags = mappings(&[
            ("licensed", ResourceMapping::Amount { resource: "licence".into(), amount: 1.0 }),
            ("special", name("special")),
        ]);
        let labels = mappings(&[("zone=eu", name("zone_eu"))]);
        PlacementResources::new(&tags, &labels).unwrap()
    }

    #[test]
    fn tags_and_labels_add_their_resources_keeping_the_larger_amount() {
        let capacity = resources(&[("licence", 2.0), ("special", 1.0), ("zone_eu", 1.0)]);
        let placement = Placement {
            tags: vec!["licensed".into(), "special".into(), "unmapped".into()],
            labels: [("zone".to_owned(), "eu".to_owned()), ("team".to_owned(), "nlp".to_owned())].into(),
        };
        let mut custom = resources(&[("licence", 0.5), ("other", 3.0)]);
        mapped().add_requests(&placement, &capacity, &mut custom).unwrap();
        assert_eq!(
            custom,
            resources(&[("licence", 1.0), ("other", 3.0), ("special", TOKEN_AMOUNT), ("zone_eu", TOKEN_AMOUNT)])
        );
    }

    #[test]
    fn only_tags_whose_resource_a_live_node_has_are_offered() {
        let capacity = resources(&[("licence", 0.5), ("special", 1.0)]);
        assert_eq!(mapped().offered_tags(&capacity), ["special"]);
        assert_eq!(
            mapped().unavailable(&capacity),
            [
                "tag `licensed` maps to 1 of Ray resource `licence`, which no live Ray node has",
                "label `zone=eu` maps to Ray resource `zone_eu`, which no live Ray node has"
            ]
        );
    }

    #[test]
    fn a_label_no_live_node_can_satisfy_is_an_error_naming_it() {
        let placement = Placement { tags: Vec::new(), labels: [("zone".to_owned(), "eu".to_owned())].into() };
        let error = mapped().add_requests(&placement, &resources(&[("special", 1.0)]), &mut BTreeMap::new());
        assert_eq!(
            error.unwrap_err(),
            "its label `zone=eu` maps to Ray resource `zone_eu`, which no live Ray node has"
        );
    }

    #[test]
    fn bad_mappings_are_refused_with_the_setting_named() {
        let none = BTreeMap::new();
        let no_value = PlacementResources::new(&none, &mappings(&[("zone", name("zone_eu"))])).unwrap_err();
        assert!(no_value.contains("write the label as \"key=value\""), "{no_value}");
        let tiny = mappings(&[("gpu", ResourceMapping::Amount { resource: "GPU_A".into(), amount: 0.00001 })]);
        let tiny = PlacementResources::new(&tiny, &none).unwrap_err();
        assert_eq!(tiny, "`tag_resources.\"gpu\"`: the amount must be at least 0.0001");
        let empty = PlacementResources::new(&mappings(&[("gpu", name(""))]), &none).unwrap_err();
        assert_eq!(empty, "`tag_resources.\"gpu\"` names no resource");
    }
}
