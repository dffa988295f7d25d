//! `ray`: runs nodes on a real Ray cluster, through a Python driver process
//! this plugin starts and supervises.
//!
//! # Core concepts
//!
//! - One driver per instance, owning every Ray object ref. It is spoken to
//!   over a Unix socket with framed msgpack ([`protocol`]); a writer thread
//!   batches frames, a supervisor thread reads results.
//! - On Ray workers, a generic Ray task calls the node runner cdylib through
//!   ctypes; it loads node plugins with the host's own loader.
//! - `address = "local"` starts a private single-node Ray for the instance
//!   (with a fresh auth token) and stops it with the instance.
//! - If the driver dies, in-flight tasks fail with an infrastructure error
//!   and the supervisor starts a new driver.

mod config;
mod driver;
mod link;
mod placement;
mod protocol;
mod references;

use backplane_plugin_api::{
    Health,
    extensions::{OutputsByReference, Placement, TaskExtension},
    log_info, log_warn,
    prelude::*,
    wire::TaskReport,
};
use config::RayConfig;
use crossbeam_channel::Receiver;
use driver::{Driver, DriverSettings};
use link::Link;
use placement::PlacementResources;
use protocol::{ContextOut, FromDriver, InputOut, ResourcesOut, ToDriver};
use references::{REF_PREFIX, ReferenceBook};
use std::{
    collections::{BTreeMap, HashMap},
    ffi::CStr,
    io::{BufWriter, Write},
    path::PathBuf,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::Duration,
};

/// A submitted task: its sink, and how many nodes read each output when
/// its outputs stay in Ray.
struct Pending {
    sink: CompletionSinkBox,
    consumers: Option<BTreeMap<String, u32>>,
}

struct Shared {
    settings: DriverSettings,
    task_timeout_ms: u64,
    placement: PlacementResources,
    pending: Mutex<HashMap<u64, Pending>>,
    references: Mutex<ReferenceBook>,
    /// Frames for the current driver, and tasks waiting for a new one.
    /// Locked before `pending` where both are.
    link: Mutex<Link>,
    capabilities: Mutex<Capabilities>,
    closed: AtomicBool,
}

impl Shared {
    fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
        m.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn fail_all(&self, error: impl Fn() -> PluginError_NE) {
        let pending: Vec<Pending> = Self::lock(&self.pending).drain().map(|(_, p)| p).collect();
        for p in pending {
            p.sink.complete(RResult::RErr(error()));
        }
    }

    /// Fails tasks that never reached a driver.
    fn fail(&self, tasks: Vec<u64>, error: impl Fn() -> PluginError_NE) {
        for task_id in tasks {
            Self::lock(&self.references).finished(task_id, false);
            // Taken out first, so the sink completes with no lock held.
            let pending = Self::lock(&self.pending).remove(&task_id);
            if let Some(p) = pending {
                p.sink.complete(RResult::RErr(error()));
            }
        }
    }
}

pub struct RayBackend {
    shared: Arc<Shared>,
    supervisor: Mutex<Option<JoinHandle<()>>>,
    /// The current driver's socket, for the shutdown message.
    driver_stream: Arc<Mutex<Option<std::os::unix::net::UnixStream>>>,
}

/// This plugin's own file, to find the node runner next to it.
fn own_directory() -> Option<PathBuf> {
    // SAFETY: dladdr only reads the loader's tables for an address in this image.
    let mut info: libc::Dl_info = unsafe { std::mem::zeroed() };
    let found = unsafe { libc::dladdr(own_directory as *const libc::c_void, &mut info) };
    if found == 0 || info.dli_fname.is_null() {
        return None;
    }
    let path = unsafe { CStr::from_ptr(info.dli_fname) }.to_str().ok()?;
    let path = PathBuf::from(path).canonicalize().ok()?;
    Some(path.parent()?.to_path_buf())
}

/// What the live Ray nodes offer: the largest node's resources, and the
/// tags whose mapped resource a live node has.
fn capabilities_of(nodes: &[protocol::NodeInfo], placement: &PlacementResources) -> Capabilities {
    let alive: Vec<_> = nodes.iter().filter(|n| n.alive).collect();
    let most = |name: &str| alive.iter().map(|n| n.resources.get(name).copied().unwrap_or(0.0)).fold(0.0, f64::max);
    let mut custom: Vec<(String, f64)> = Vec::new();
    for node in &alive {
        for (name, amount) in &node.resources {
            let builtin = ["CPU", "GPU", "memory", "object_store_memory"].contains(&name.as_str())
                || name.starts_with("node:")
                || name.starts_with("accelerator_type:");
            if builtin {
                continue;
            }
            match custom.iter_mut().find(|(n, _)| n == name) {
                Some((_, most)) => *most = most.max(*amount),
                None => custom.push((name.clone(), *amount)),
            }
        }
    }
    custom.sort_by(|a, b| a.0.cmp(&b.0));
    let mut tags = static_capabilities().tags;
    tags.extend(placement.offered_tags(&custom.iter().cloned().collect()).into_iter().map(RString::from));
    Capabilities {
        max_concurrency: alive.iter().map(|n| n.resources.get("CPU").copied().unwrap_or(0.0)).sum::<f64>() as u32,
        capacity: Resources {
            cpus: most("CPU"),
            memory_bytes: most("memory") as u64,
            gpus: most("GPU"),
            custom: custom.into_iter().map(|(n, a)| Tuple2(n.into(), a)).collect(),
        },
        tags,
        ..static_capabilities()
    }
}

fn static_capabilities() -> Capabilities {
    Capabilities {
        flags: CapabilityFlags::PARALLEL
            | CapabilityFlags::REMOTE
            | CapabilityFlags::DISTRIBUTED
            | CapabilityFlags::BY_REFERENCE,
        isolation: Isolation::PROCESS,
        max_concurrency: 0,
        capacity: Resources::default(),
        tags: RVec::from(vec![RString::from("ray")]),
        extensions: RVec::new(),
    }
}

/// Ray's error kinds as Backplane errors: node failures are not retried by
/// the host; the rest are infrastructure (retried), timeouts and cancels.
fn error_from(kind: &str, message: String) -> PluginError_NE {
    match kind {
        "node" => PluginError::node_failed(message),
        "panic" => PluginError::panicked(message),
        "crashed" => {
            PluginError::node_failed(format!("the Ray worker died running it, after Ray's retries: {message}"))
        }
        "oom" => PluginError::node_failed(format!("out of memory on the Ray node: {message}")),
        "timeout" | "timed-out" => PluginError::timed_out(message),
        "cancelled" => PluginError::cancelled(),
        "infeasible" => PluginError::unsupported(format!("no Ray node can satisfy its resources: {message}")),
        "unsupported" => PluginError::unsupported(message),
        "invalid-config" => PluginError::invalid_config(message),
        _ => PluginError::infrastructure(format!("Ray ({kind}): {message}")),
    }
}

fn on_message(shared: &Shared, message: FromDriver) {
    let FromDriver::Result { task_id, ok, outputs, error_kind, message, started_unix_us, logs } = message else {
        return;
    };
    let Some(Pending { sink, consumers }) = Shared::lock(&shared.pending).remove(&task_id) else { return };
    let result = if ok {
        let mut payloads = Vec::with_capacity(outputs.len());
        let mut book = Shared::lock(&shared.references);
        for output in outputs {
            let mut payload = Payload::bytes(&output.port, &output.content_type, output.data.unwrap_or_default());
            if let Some(object) = output.reference {
                let readers = consumers.as_ref().and_then(|c| c.get(&output.port)).copied().unwrap_or(1);
                book.produced(&object, readers);
                payload.object_ref = format!("{REF_PREFIX}{object}").into();
            }
            payloads.push(payload);
        }
        Ok(RVec::from(payloads))
    } else {
        Err(error_from(&error_kind, message))
    };
    let released = Shared::lock(&shared.references).finished(task_id, result.is_ok());
    if !released.is_empty()
        && let Ok(frame) = protocol::encode(&ToDriver::Release { refs: released })
    {
        Shared::lock(&shared.link).control(frame);
    }
    TaskReport { started_unix_us, logs }.forward(&sink);
    sink.complete(result.into());
}

/// Writes frames to the driver, flushing when no more are waiting.
fn write_frames(stream: std::os::unix::net::UnixStream, frames: Receiver<Vec<u8>>) {
    let mut out = BufWriter::with_capacity(256 * 1024, stream);
    while let Ok(frame) = frames.recv() {
        if out.write_all(&frame).is_err() {
            return;
        }
        while let Ok(frame) = frames.try_recv() {
            if out.write_all(&frame).is_err() {
                return;
            }
        }
        if out.flush().is_err() {
            return;
        }
    }
}

/// Reads results until the driver goes, then restarts it, until shutdown.
fn supervise(shared: Arc<Shared>, mut driver: Driver, streams: Arc<Mutex<Option<std::os::unix::net::UnixStream>>>) {
    loop {
        let reader = driver.stream.try_clone();
        if let Ok(mut reader) = reader {
            loop {
                match protocol::read_message(&mut reader) {
                    Ok(Some(FromDriver::Bye {})) | Ok(None) => break,
                    Ok(Some(message)) => on_message(&shared, message),
                    Err(e) => {
                        log_warn!("reading from the Ray driver: {e}");
                        break;
                    }
                }
            }
        }
        if shared.closed.load(Ordering::Acquire) {
            driver.stop();
            return;
        }
        let why = driver.exit_reason();
        // Tasks sent to this driver are lost with it; tasks submitted from
        // now on wait for the next one.
        let lost: Vec<Pending> = {
            let mut link = Shared::lock(&shared.link);
            link.lost(why.clone());
            Shared::lock(&shared.pending).drain().map(|(_, p)| p).collect()
        };
        driver.stop();
        log_warn!("the Ray driver stopped ({why}); starting a new one");
        for p in lost {
            p.sink.complete(RResult::RErr(PluginError::infrastructure(format!("the Ray driver stopped: {why}"))));
        }
        loop {
            std::thread::sleep(Duration::from_secs(1));
            if shared.closed.load(Ordering::Acquire) {
                return;
            }
            match Driver::start(&shared.settings) {
                Ok(started) => {
                    driver = started;
                    connect(&shared, &driver, &streams);
                    break;
                }
                Err(e) => {
                    log_warn!("cannot restart the Ray driver: {e}");
                    let mut link = Shared::lock(&shared.link);
                    let expired = link.restart_failed(&e.to_string(), shared.settings.start_timeout);
                    let why = link.problem().unwrap_or_default();
                    drop(link);
                    shared.fail(expired, || PluginError::infrastructure(why.clone()));
                }
            }
        }
    }
}

/// Starts the writer for a freshly started driver and publishes its link.
fn connect(shared: &Shared, driver: &Driver, streams: &Mutex<Option<std::os::unix::net::UnixStream>>) {
    let (frames, receiver) = crossbeam_channel::unbounded();
    if let Ok(stream) = driver.stream.try_clone() {
        std::thread::Builder::new()
            .name("backplane-ray-writer".into())
            .spawn(move || write_frames(stream, receiver))
            .ok();
    }
    let capabilities = capabilities_of(&driver.nodes, &shared.placement);
    for problem in shared.placement.unavailable(&custom_capacity(&capabilities)) {
        log_warn!("ray backend: {problem}; nodes that need it cannot run here");
    }
    *Shared::lock(&shared.capabilities) = capabilities;
    *Shared::lock(streams) = driver.stream.try_clone().ok();
    let replayed = Shared::lock(&shared.link).connected(frames);
    if replayed > 0 {
        log_info!("{replayed} tasks submitted while the Ray driver restarted go to the new one");
    }
}

/// The largest amount of each custom resource on a live Ray node.
fn custom_capacity(capabilities: &Capabilities) -> BTreeMap<String, f64> {
    capabilities.capacity.custom.iter().map(|t| (t.0.to_string(), t.1)).collect()
}

fn seconds(name: &str, value: f64) -> Result<Duration, PluginError_NE> {
    Duration::try_from_secs_f64(value)
        .map_err(|_| PluginError::invalid_config(format!("ray backend: `{name}` must be a non-negative number")))
}

impl BackendPlugin for RayBackend {
    const NAME: &'static str = "ray";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str =
        "Runs nodes on a Ray cluster (or a private local Ray) through a supervised Python driver";
    type Config = RayConfig;

    fn config_schema() -> serde_json::Value {
        config::schema()
    }

    fn capabilities() -> Capabilities {
        static_capabilities()
    }

    fn create(config: RayConfig) -> Result<Self, PluginError_NE> {
        let here = own_directory();
        let node_runner = match config.node_runner.clone().or_else(|| {
            here.as_ref().map(|d| d.join(format!("libbackplane_ray_node_runner.{}", std::env::consts::DLL_EXTENSION)))
        }) {
            Some(path) if path.is_file() => path,
            Some(path) => {
                return Err(PluginError::invalid_config(format!(
                    "ray backend: the node runner {} does not exist (build `backplane-ray-node-runner`, or set `node_runner`)",
                    path.display()
                )));
            }
            None => {
                return Err(PluginError::invalid_config(
                    "ray backend: cannot locate the node runner; set `node_runner`",
                ));
            }
        };
        let mut plugin_dirs: Vec<PathBuf> = here.into_iter().collect();
        plugin_dirs.extend(config.plugin_dirs.iter().cloned());
        if let Some(path) = std::env::var_os("BACKPLANE_PLUGIN_PATH") {
            plugin_dirs.extend(std::env::split_paths(&path));
        }
        let settings = DriverSettings {
            python: config
                .python
                .clone()
                .or_else(|| std::env::var_os("BACKPLANE_RAY_PYTHON").map(PathBuf::from))
                .unwrap_or_else(|| "python3".into()),
            address: config.address.clone(),
            max_retries: config.max_retries,
            num_cpus: config.num_cpus,
            resources: config.resources.clone(),
            auth_token: config.auth_token.clone().or_else(|| std::env::var("RAY_AUTH_TOKEN").ok()),
            runner_config: serde_json::json!({ "plugin_dirs": plugin_dirs }).to_string(),
            node_runner,
            start_timeout: seconds("start_timeout_secs", config.start_timeout_secs)?,
            prefix: config.driver_prefix.clone(),
            node_ip_address: config.node_ip_address.clone(),
            inline_threshold: config.inline_threshold_bytes,
            init_options: if config.init_options.is_empty() {
                String::new()
            } else {
                serde_json::Value::Object(config.init_options.clone()).to_string()
            },
        };
        let task_timeout_ms = seconds("task_timeout_secs", config.task_timeout_secs)?.as_millis() as u64;
        let placement = PlacementResources::new(&config.tag_resources, &config.label_resources)
            .map_err(|e| PluginError::invalid_config(format!("ray backend: {e}")))?;
        let driver = Driver::start(&settings).map_err(|e| PluginError::infrastructure(format!("ray backend: {e}")))?;
        let shared = Arc::new(Shared {
            settings,
            task_timeout_ms,
            placement,
            pending: Mutex::new(HashMap::new()),
            references: Mutex::new(ReferenceBook::default()),
            link: Mutex::new(Link::starting()),
            capabilities: Mutex::new(static_capabilities()),
            closed: AtomicBool::new(false),
        });
        let streams = Arc::new(Mutex::new(None));
        connect(&shared, &driver, &streams);
        let supervisor = {
            let (shared, streams) = (shared.clone(), streams.clone());
            std::thread::Builder::new()
                .name("backplane-ray-driver".into())
                .spawn(move || supervise(shared, driver, streams))
                .map_err(|e| PluginError::infrastructure(format!("cannot start a thread: {e}")))?
        };
        Ok(Self { shared, supervisor: Mutex::new(Some(supervisor)), driver_stream: streams })
    }

    fn live_capabilities(&self) -> Capabilities {
        Shared::lock(&self.shared.capabilities).clone()
    }

    fn submit(&self, task: NodeTask, sink: CompletionSinkBox) {
        let resources = &task.resources;
        let mut custom: BTreeMap<String, f64> = resources.custom.iter().map(|t| (t.0.to_string(), t.1)).collect();
        let by_reference = match (OutputsByReference::of(&task), self.add_placement(&task, &mut custom)) {
            (Ok(by_reference), Ok(())) => by_reference,
            (Err(e), _) => return sink.complete(RResult::RErr(PluginError::infrastructure(e))),
            (_, Err(e)) => return sink.complete(RResult::RErr(e)),
        };
        let mut reads = Vec::new();
        let inputs = task
            .inputs
            .iter()
            .map(|p| match p.object_ref.strip_prefix(REF_PREFIX) {
                Some(object) => {
                    reads.push(object.to_owned());
                    InputOut { port: &p.port, content_type: &p.content_type, data: None, reference: Some(object) }
                }
                None => InputOut {
                    port: &p.port,
                    content_type: &p.content_type,
                    data: Some(serde_bytes::Bytes::new(&p.data)),
                    reference: None,
                },
            })
            .collect();
        let frame = protocol::encode(&ToDriver::Submit {
            task_id: task.task_id,
            function: "generic",
            node_type: &task.node_type,
            settings: &task.settings,
            inputs,
            outputs: by_reference.as_ref().map(|b| b.outputs.clone()),
            by_ref: by_reference.is_some(),
            resources: ResourcesOut {
                num_cpus: (resources.cpus > 0.0).then_some(resources.cpus),
                memory: (resources.memory_bytes > 0).then_some(resources.memory_bytes),
                num_gpus: (resources.gpus > 0.0).then_some(resources.gpus),
                custom,
            },
            max_retries: self.shared.settings.max_retries,
            timeout_ms: if task.timeout_ms > 0 { task.timeout_ms } else { self.shared.task_timeout_ms },
            context: ContextOut {
                node_id: &task.node_id,
                node_version: &task.node_version,
                working_dir: &task.working_dir,
                timeout_ms: task.timeout_ms,
                attempt: task.attempt,
            },
        });
        let frame = match frame {
            Ok(frame) => frame,
            Err(e) => {
                return sink
                    .complete(RResult::RErr(PluginError::infrastructure(format!("cannot encode the task: {e}"))));
            }
        };
        Shared::lock(&self.shared.references).reads(task.task_id, reads);
        let consumers = by_reference.map(|b| b.consumers);
        // Recorded before the frame leaves, so a fast result finds its task.
        let mut link = Shared::lock(&self.shared.link);
        Shared::lock(&self.shared.pending).insert(task.task_id, Pending { sink, consumers });
        if let Err(why) = link.submit(task.task_id, frame) {
            drop(link);
            self.shared.fail(vec![task.task_id], || PluginError::infrastructure(why.clone()));
        }
    }

    fn cancel(&self, task_id: u64) {
        let mut link = Shared::lock(&self.shared.link);
        if link.withdraw(task_id) {
            drop(link);
            self.shared.fail(vec![task_id], PluginError::cancelled);
        } else if let Ok(frame) = protocol::encode(&ToDriver::Cancel { task_id, force: false }) {
            link.control(frame);
        }
    }

    fn health(&self) -> Health {
        let problem = Shared::lock(&self.shared.link).problem();
        match problem {
            Some(why) => Health::degraded(why),
            None => Health {
                message: format!(
                    "{} objects kept in Ray for later nodes",
                    Shared::lock(&self.shared.references).held()
                )
                .into(),
                ..Health::up()
            },
        }
    }

    fn shutdown(&self) {
        if self.shared.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        Shared::lock(&self.shared.link).close();
        self.shared.fail_all(PluginError::cancelled);
        // The driver stops Ray and says bye; the supervisor then stops it.
        if let Some(stream) = Shared::lock(&self.driver_stream).take()
            && let Ok(frame) = protocol::encode(&ToDriver::Shutdown {})
        {
            let _ = protocol::write_frame(&mut &stream, &frame);
            let _ = stream.shutdown(std::net::Shutdown::Write);
        }
        if let Some(supervisor) = Shared::lock(&self.supervisor).take() {
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while !supervisor.is_finished() && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

impl RayBackend {
    /// Adds the custom resources the task's tags and labels map to.
    fn add_placement(&self, task: &NodeTask, custom: &mut BTreeMap<String, f64>) -> Result<(), PluginError_NE> {
        if self.shared.placement.is_empty() {
            return Ok(());
        }
        let Some(placement) = Placement::of(task).map_err(PluginError::infrastructure)? else { return Ok(()) };
        let capacity = custom_capacity(&Shared::lock(&self.shared.capabilities));
        self.shared.placement.add_requests(&placement, &capacity, custom).map_err(PluginError::unsupported)
    }
}

impl Drop for RayBackend {
    fn drop(&mut self) {
        self.shutdown();
    }
}

backplane_plugin_api::export_plugin! {
    backends: [RayBackend],
    nodes: [],
}
