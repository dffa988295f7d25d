//! Does a backend offer what a node needs?

use backplane_plugin_api::{Capabilities, Requirements, Resources};

fn fmt_amount(x: f64) -> String {
    if x.fract() == 0.0 { format!("{x:.0}") } else { format!("{x}") }
}

/// Everything `capabilities` lacks for a node with `requirements` and the
/// workflow's `resources`, phrased for the user; empty when it can run it.
/// A capacity of zero means "not stated" and does not limit.
pub fn unmet_requirements(
    capabilities: &Capabilities,
    requirements: &Requirements,
    resources: &Resources,
) -> Vec<String> {
    let mut missing = Vec::new();
    let lacking = backplane_plugin_api::CapabilityFlags(requirements.flags.0 & !capabilities.flags.0);
    for name in lacking.names() {
        missing.push(format!("lacks capability {name}"));
    }
    if capabilities.isolation < requirements.isolation {
        missing.push(format!(
            "needs isolation {} (has {})",
            requirements.isolation.name(),
            capabilities.isolation.name()
        ));
    }
    for tag in requirements.tags.iter() {
        if !capabilities.tags.iter().any(|t| t == tag) {
            missing.push(format!("missing tag {tag}"));
        }
    }
    let cap = &capabilities.capacity;
    for need in [&requirements.resources, resources] {
        if cap.cpus > 0.0 && need.cpus > cap.cpus {
            missing.push(format!("needs {} cpus (has {})", fmt_amount(need.cpus), fmt_amount(cap.cpus)));
        }
        if cap.memory_bytes > 0 && need.memory_bytes > cap.memory_bytes {
            missing.push(format!("needs {} bytes of memory (has {})", need.memory_bytes, cap.memory_bytes));
        }
        if need.gpus > cap.gpus {
            missing.push(format!("needs {} gpus (has {})", fmt_amount(need.gpus), fmt_amount(cap.gpus)));
        }
        for custom in need.custom.iter() {
            let has = cap.custom_amount(&custom.0);
            if custom.1 > has {
                missing.push(format!("needs {} {} (has {})", fmt_amount(custom.1), custom.0, fmt_amount(has)));
            }
        }
    }
    missing.dedup();
    missing
}

#[cfg(test)]
mod tests {
    use super::*;
    use backplane_plugin_api::{
        CapabilityFlags, Isolation,
        abi_stable::std_types::{RString, Tuple2},
    };

    fn caps() -> Capabilities {
        Capabilities {
            flags: CapabilityFlags::PARALLEL,
            isolation: Isolation::NONE,
            max_concurrency: 2,
            capacity: Resources { cpus: 2.0, ..Resources::default() },
            tags: vec![RString::from("local")].into(),
            ..Capabilities::default()
        }
    }

    #[test]
    fn satisfied_requirements_report_nothing() {
        let req = Requirements { tags: vec![RString::from("local")].into(), ..Requirements::default() };
        assert!(unmet_requirements(&caps(), &req, &Resources { cpus: 2.0, ..Resources::default() }).is_empty());
    }

    #[test]
    fn every_shortfall_is_named() {
        let req = Requirements {
            flags: CapabilityFlags::REMOTE,
            isolation: Isolation::PROCESS,
            tags: vec![RString::from("gpu")].into(),
            ..Requirements::default()
        };
        let resources = Resources {
            cpus: 4.0,
            gpus: 1.0,
            custom: vec![Tuple2(RString::from("licence"), 1.0)].into(),
            ..Resources::default()
        };
        assert_eq!(
            unmet_requirements(&caps(), &req, &resources),
            vec![
                "lacks capability remote",
                "needs isolation process (has none)",
                "missing tag gpu",
                "needs 4 cpus (has 2)",
                "needs 1 gpus (has 0)",
                "needs 1 licence (has 0)",
            ]
        );
    }
}
