//! Starting and stopping the Python driver process: the one owner of every
//! Ray object ref. The script ships inside this plugin and is written next
//! to the driver's socket at start.

use crate::protocol::{FromDriver, NodeInfo, read_message};
use backplane_plugin_api::log_debug;
use std::{
    collections::VecDeque,
    io::{BufRead, BufReader, Read},
    os::unix::{net::UnixStream, process::CommandExt},
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex, atomic::AtomicU32},
    time::Duration,
};

/// The driver script (Python), shipped inside the plugin.
const DRIVER_SOURCE: &str = include_str!("../driver/backplane_ray_driver.py");
/// What the driver prints once its socket listens.
const LISTENING: &str = "BACKPLANE_RAY_DRIVER_LISTENING";
/// Lines of the driver's stderr kept for error messages.
const STDERR_LINES: usize = 40;

/// Health checks and gRPC keepalives of about a second: with Ray's defaults a
/// partitioned node hangs its tasks for minutes.
pub const RAY_HEALTH_SETTINGS: &[(&str, &str)] = &[
    ("RAY_health_check_initial_delay_ms", "1000"),
    ("RAY_health_check_period_ms", "1000"),
    ("RAY_health_check_timeout_ms", "1000"),
    ("RAY_health_check_failure_threshold", "2"),
    ("RAY_grpc_keepalive_time_ms", "1000"),
    ("RAY_grpc_keepalive_timeout_ms", "1000"),
    ("RAY_grpc_client_keepalive_time_ms", "1000"),
    ("RAY_grpc_client_keepalive_timeout_ms", "1000"),
];

#[derive(Debug, Clone)]
pub struct DriverSettings {
    pub python: PathBuf,
    pub address: String,
    pub max_retries: u32,
    pub num_cpus: Option<u32>,
    pub resources: std::collections::BTreeMap<String, f64>,
    pub auth_token: Option<String>,
    /// JSON for the node runner: where Ray workers find plugins.
    pub runner_config: String,
    pub node_runner: PathBuf,
    pub start_timeout: Duration,
    pub prefix: Vec<String>,
    pub node_ip_address: Option<String>,
    pub inline_threshold: u64,
    /// JSON object of extra `ray.init` arguments (empty: none).
    pub init_options: String,
}

impl DriverSettings {
    pub fn is_local(&self) -> bool {
        self.address == "local"
    }
}

/// A running driver, connected.
pub struct Driver {
    child: Child,
    dir: PathBuf,
    pub stream: UnixStream,
    pub ray_version: String,
    pub nodes: Vec<NodeInfo>,
    stderr: Arc<Mutex<VecDeque<String>>>,
}

fn random_token() -> String {
    let mut bytes = [0u8; 32];
    if let Ok(mut urandom) = std::fs::File::open("/dev/urandom") {
        let _ = urandom.read_exact(&mut bytes);
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn forward_lines(
    stream: impl Read + Send + 'static,
    tail: Option<Arc<Mutex<VecDeque<String>>>>,
    listening: Option<crossbeam_channel::Sender<()>>,
) {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            if let Some(tx) = &listening
                && line.starts_with(LISTENING)
            {
                let _ = tx.send(());
                continue;
            }
            log_debug!("ray driver: {line}");
            if let Some(tail) = &tail {
                let mut tail = tail.lock().unwrap_or_else(|e| e.into_inner());
                if tail.len() == STDERR_LINES {
                    tail.pop_front();
                }
                tail.push_back(line);
            }
        }
    });
}

impl Driver {
    pub fn start(settings: &DriverSettings) -> Result<Driver, String> {
        static STARTS: AtomicU32 = AtomicU32::new(0);
        let n = STARTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // Short: Ray's own socket paths below it must stay under 108 bytes.
        let dir = std::env::temp_dir().join(format!("bpray-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let script = dir.join("backplane_ray_driver.py");
        std::fs::write(&script, DRIVER_SOURCE).map_err(|e| format!("cannot write {}: {e}", script.display()))?;
        let socket = dir.join("driver.sock");
        let mut command = match settings.prefix.split_first() {
            Some((program, args)) => {
                let mut command = Command::new(program);
                command.args(args).arg(&settings.python);
                command
            }
            None => Command::new(&settings.python),
        };
        command
            .arg(&script)
            .arg("--socket")
            .arg(&socket)
            .args(["--address", &settings.address, "--max-retries", &settings.max_retries.to_string()])
            .env("BACKPLANE_RAY_NODE_LIB", &settings.node_runner)
            .env("BACKPLANE_RAY_NODE_LIB_CONFIG", &settings.runner_config)
            .env("RAY_USAGE_STATS_ENABLED", "0")
            .env("RAY_AUTH_MODE", "token")
            .envs(RAY_HEALTH_SETTINGS.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own process group: Ray's helper processes are killed with it.
            .process_group(0);
        if let Some(ip) = &settings.node_ip_address {
            command.args(["--node-ip-address", ip]);
        }
        command.args(["--inline-threshold", &settings.inline_threshold.min(i32::MAX as u64).to_string()]);
        if !settings.init_options.is_empty() {
            command.args(["--init-options", &settings.init_options]);
        }
        if settings.is_local() {
            command.arg("--temp-dir").arg(dir.join("ray"));
            command.env("RAY_AUTH_TOKEN", settings.auth_token.clone().unwrap_or_else(random_token));
            if let Some(cpus) = settings.num_cpus {
                command.args(["--num-cpus", &cpus.to_string()]);
            }
            if !settings.resources.is_empty() {
                let resources = serde_json::to_string(&settings.resources).map_err(|e| e.to_string())?;
                command.args(["--resources", &resources]);
            }
        } else if let Some(token) = &settings.auth_token {
            command.env("RAY_AUTH_TOKEN", token);
        }
        let mut child = command.spawn().map_err(|e| {
            format!(
                "cannot start the Ray driver with `{}`: {e} (set `python` to a venv's bin/python with `ray` installed)",
                settings.python.display()
            )
        })?;
        let stderr = Arc::new(Mutex::new(VecDeque::new()));
        let (listening_tx, listening) = crossbeam_channel::bounded(1);
        forward_lines(child.stdout.take().expect("piped"), None, Some(listening_tx));
        forward_lines(child.stderr.take().expect("piped"), Some(stderr.clone()), None);
        let mut driver = Driver {
            child,
            dir,
            stream: UnixStream::pair().map_err(|e| e.to_string())?.0,
            ray_version: String::new(),
            nodes: Vec::new(),
            stderr,
        };
        if listening.recv_timeout(settings.start_timeout).is_err() {
            let why = driver.exit_reason();
            driver.stop();
            return Err(format!("the Ray driver did not start: {why}"));
        }
        let stream = UnixStream::connect(&socket).map_err(|e| format!("cannot connect to the Ray driver: {e}"))?;
        stream.set_read_timeout(Some(settings.start_timeout)).map_err(|e| e.to_string())?;
        let hello = read_message(&mut &stream);
        let _ = stream.set_read_timeout(None);
        match hello {
            Ok(Some(FromDriver::Hello { ray_version, driver_pid, nodes, mode })) => {
                log_debug!(
                    "ray driver up: Ray {ray_version}, {mode} mode, {} nodes, driver pid {driver_pid}",
                    nodes.len()
                );
                driver.stream = stream;
                driver.ray_version = ray_version;
                driver.nodes = nodes;
                Ok(driver)
            }
            Ok(Some(FromDriver::Fatal { message })) => {
                driver.stop();
                Err(format!("Ray did not start: {message}"))
            }
            other => {
                let why = match other {
                    Err(e) => format!("{e}; {}", driver.exit_reason()),
                    _ => driver.exit_reason(),
                };
                driver.stop();
                Err(format!("the Ray driver did not say hello: {why}"))
            }
        }
    }

    /// Why the driver is gone (or not ready): its exit status and the end of its stderr.
    pub fn exit_reason(&mut self) -> String {
        std::thread::sleep(Duration::from_millis(100));
        let status = match self.child.try_wait() {
            Ok(Some(status)) => format!("it exited ({status})"),
            _ => "it is still running".into(),
        };
        let tail: Vec<String> = self.stderr.lock().unwrap_or_else(|e| e.into_inner()).iter().cloned().collect();
        if tail.is_empty() { status } else { format!("{status}; its stderr ends with:\n{}", tail.join("\n")) }
    }

    /// Kills the driver and everything in its process group (Ray's helpers),
    /// and removes its directory.
    pub fn stop(&mut self) {
        let pgid = self.child.id() as i32;
        // SAFETY: signals a process group we created.
        unsafe { libc::kill(-pgid, libc::SIGKILL) };
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
