//! `backplane bench --ray`: trivial nodes through the `ray` backend on a
//! private local Ray, next to the same number of trivial tasks submitted with
//! Ray's own Python API, in the same command.

use super::{synthetic_plan_on, time_plan};
use backplane_host::{Host, registry::InstanceSettings};
use serde::Serialize;
use std::{fmt::Write, path::PathBuf, process::Command};

/// The direct-Ray baseline script.
const DIRECT_RAY: &str = include_str!("direct_ray.py");

pub struct RayBenchSettings {
    pub tasks: usize,
    pub repeat: usize,
    pub cpus: u32,
    pub python: PathBuf,
}

#[derive(Debug, Clone, Serialize)]
pub struct RayBenchResults {
    pub cpus: u32,
    pub ray_version: String,
    pub tasks: usize,
    pub backplane_tasks_per_sec: f64,
    pub direct_ray_tasks_per_sec: f64,
    /// Backplane's time over direct Ray's for the same tasks.
    pub slowdown: f64,
}

fn direct_ray(settings: &RayBenchSettings) -> Result<f64, String> {
    let dir = std::env::temp_dir().join(format!("backplane-raybench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let script = dir.join("direct_ray.py");
    std::fs::write(&script, DIRECT_RAY).map_err(|e| e.to_string())?;
    let token: String = (0..32).map(|i| format!("{:02x}", (std::process::id() as usize * 31 + i * 7) % 256)).collect();
    let output = Command::new(&settings.python)
        .arg(&script)
        .args([settings.tasks.to_string(), settings.repeat.to_string(), settings.cpus.to_string()])
        .env("RAY_AUTH_MODE", "token")
        .env("RAY_AUTH_TOKEN", token)
        .env("RAY_USAGE_STATS_ENABLED", "0")
        .output()
        .map_err(|e| format!("cannot run {}: {e}", settings.python.display()))?;
    let _ = std::fs::remove_dir_all(&dir);
    let stdout = String::from_utf8_lossy(&output.stdout);
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("RESULT ").and_then(|r| r.trim().parse().ok()))
        .ok_or_else(|| format!("the direct Ray baseline failed: {}", String::from_utf8_lossy(&output.stderr)))
}

pub fn run(host: &Host, settings: &RayBenchSettings) -> Result<RayBenchResults, String> {
    let instance = host
        .backends
        .create_detached(InstanceSettings {
            name: "bench-ray".into(),
            factory: "ray".into(),
            config: serde_json::json!({ "python": settings.python, "num_cpus": settings.cpus }),
            max_in_flight: Some(settings.tasks),
            tags: Vec::new(),
            capacity: Default::default(),
            derived_from: None,
        })
        .map_err(|e| e.to_string())?;
    // Warm-up, as the baseline does: Ray starts its workers lazily.
    time_plan(&synthetic_plan_on(host, instance.clone(), 500, false)?, 1)?;
    let plan = synthetic_plan_on(host, instance.clone(), settings.tasks, false)?;
    let backplane = settings.tasks as f64 / time_plan(&plan, settings.repeat)?;
    drop(plan);
    instance.backend.shutdown();
    drop(instance);
    let direct = direct_ray(settings)?;
    let version = Command::new(&settings.python)
        .args(["-c", "import ray; print(ray.__version__)"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    Ok(RayBenchResults {
        cpus: settings.cpus,
        ray_version: version,
        tasks: settings.tasks,
        backplane_tasks_per_sec: backplane,
        direct_ray_tasks_per_sec: direct,
        slowdown: direct / backplane,
    })
}

impl super::BenchReport for RayBenchResults {
    fn to_markdown(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "Ray {} on a private local instance with {} CPUs\n", self.ray_version, self.cpus);
        let _ = writeln!(s, "| measurement | result | target |\n|---|---|---|");
        let _ = writeln!(
            s,
            "| {} independent `std.noop` nodes through Backplane on Ray | {:.0} tasks/s | |",
            self.tasks, self.backplane_tasks_per_sec
        );
        let _ = writeln!(
            s,
            "| {} trivial tasks with Ray's Python API, same machine | {:.0} tasks/s | |",
            self.tasks, self.direct_ray_tasks_per_sec
        );
        let _ = writeln!(s, "| Backplane time / direct Ray time | {:.2}x | <= 1.5x |", self.slowdown);
        s
    }
}
