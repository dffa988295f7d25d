//! Why a node missed: its key's components now against the last run's.

use serde::{Deserialize, Serialize};

/// What a node's key was made of, as a run record keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Components {
    #[serde(rename = "type")]
    pub node_type: String,
    pub version: String,
    /// Canonical JSON.
    pub settings: String,
    pub inputs: Vec<InputComponent>,
    /// BLAKE3 of the salt (the salt itself may be a secret).
    pub salt: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputComponent {
    pub port: String,
    /// `node.port` it came from.
    pub from: String,
    /// Content hash (hex).
    pub hash: String,
}

/// Longest value shown in a reason.
const MAX_VALUE: usize = 40;
/// Most changed settings named in one reason.
const MAX_SETTINGS: usize = 3;

/// Why `now` missed, given the components of the same node in the last run
/// of this workflow (`None`: the node is new, or there was no earlier run).
pub fn miss_reason(before: Option<&Components>, now: &Components) -> String {
    let Some(before) = before else { return "new".into() };
    let mut reasons = Vec::new();
    if before.node_type != now.node_type {
        reasons.push(format!("node type {} -> {}", before.node_type, now.node_type));
    } else if before.version != now.version {
        reasons.push(format!("node version {} -> {}", before.version, now.version));
    }
    if before.settings != now.settings {
        reasons.push(settings_change(&before.settings, &now.settings));
    }
    let changed_inputs = input_changes(&before.inputs, &now.inputs);
    reasons.extend(changed_inputs);
    if before.salt != now.salt {
        reasons.push("salt changed".into());
    }
    if reasons.is_empty() {
        // Same components, yet no entry: it was removed (gc, clear) or damaged.
        return "not in the cache (removed or damaged since it was stored)".into();
    }
    reasons.join("; ")
}

fn input_changes(before: &[InputComponent], now: &[InputComponent]) -> Vec<String> {
    let ports = |inputs: &[InputComponent]| {
        let mut p: Vec<String> = inputs.iter().map(|i| i.port.clone()).collect();
        p.dedup();
        p
    };
    let mut out = Vec::new();
    let (was, is) = (ports(before), ports(now));
    for port in &is {
        let old: Vec<&InputComponent> = before.iter().filter(|i| &i.port == port).collect();
        let new: Vec<&InputComponent> = now.iter().filter(|i| &i.port == port).collect();
        if old.is_empty() {
            out.push(format!("input {port} added"));
        } else if old.iter().map(|i| &i.from).ne(new.iter().map(|i| &i.from)) {
            let from: Vec<&str> = new.iter().map(|i| i.from.as_str()).collect();
            out.push(format!("input {port} now comes from {}", from.join(", ")));
        } else if old.iter().map(|i| &i.hash).ne(new.iter().map(|i| &i.hash)) {
            out.push(format!("input {port} changed"));
        }
    }
    for port in was.iter().filter(|p| !is.contains(p)) {
        out.push(format!("input {port} removed"));
    }
    out
}

fn settings_change(before: &str, now: &str) -> String {
    let (Ok(serde_json::Value::Object(old)), Ok(serde_json::Value::Object(new))) =
        (serde_json::from_str(before), serde_json::from_str(now))
    else {
        return "settings changed".into();
    };
    let mut changes = Vec::new();
    let mut keys: Vec<&String> = old.keys().chain(new.keys()).collect();
    keys.sort();
    keys.dedup();
    for key in keys {
        match (old.get(key), new.get(key)) {
            (Some(a), Some(b)) if a != b => changes.push(format!("{key} {} -> {}", short(a), short(b))),
            (None, Some(b)) => changes.push(format!("{key} set to {}", short(b))),
            (Some(_), None) => changes.push(format!("{key} removed")),
            _ => {}
        }
    }
    let more = changes.len().saturating_sub(MAX_SETTINGS);
    changes.truncate(MAX_SETTINGS);
    let mut text = format!("settings changed: {}", changes.join(", "));
    if more > 0 {
        text.push_str(&format!(" and {more} more"));
    }
    text
}

fn short(value: &serde_json::Value) -> String {
    let text = value.to_string();
    if text.chars().count() <= MAX_VALUE {
        return text;
    }
    let cut: String = text.chars().take(MAX_VALUE - 1).collect();
    format!("{cut}…")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn components(settings: &str, hash: &str) -> Components {
        Components {
            node_type: "std.merge_counts".into(),
            version: "1.0.0".into(),
            settings: settings.into(),
            inputs: vec![InputComponent { port: "counts".into(), from: "count-1.counts".into(), hash: hash.into() }],
            salt: "s".into(),
        }
    }

    #[test]
    fn each_change_is_named() {
        let before = components(r#"{"top":20}"#, "aa");
        assert_eq!(miss_reason(None, &before), "new");
        assert_eq!(miss_reason(Some(&before), &components(r#"{"top":30}"#, "aa")), "settings changed: top 20 -> 30");
        assert_eq!(miss_reason(Some(&before), &components(r#"{"top":20}"#, "bb")), "input counts changed");
        let newer = Components { version: "1.1.0".into(), ..before.clone() };
        assert_eq!(miss_reason(Some(&before), &newer), "node version 1.0.0 -> 1.1.0");
        let salted = Components { salt: "t".into(), ..before.clone() };
        assert_eq!(miss_reason(Some(&before), &salted), "salt changed");
        assert_eq!(miss_reason(Some(&before), &before), "not in the cache (removed or damaged since it was stored)");
        let both = components(r#"{"top":30,"min":2}"#, "cc");
        assert_eq!(
            miss_reason(Some(&before), &both),
            "settings changed: min set to 2, top 20 -> 30; input counts changed"
        );
    }

    #[test]
    fn rewired_and_long_values_read_well() {
        let before = components(r#"{"pattern":"a"}"#, "aa");
        let mut now = components(&format!(r#"{{"pattern":"{}"}}"#, "x".repeat(100)), "aa");
        now.inputs[0].from = "other.counts".into();
        let reason = miss_reason(Some(&before), &now);
        assert!(reason.starts_with("settings changed: pattern \"a\" -> \"xxxx"), "{reason}");
        assert!(reason.contains("…; input counts now comes from other.counts"), "{reason}");
    }
}
