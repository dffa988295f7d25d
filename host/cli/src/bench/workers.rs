//! `backplane bench --workers`: the worker backend over loopback NATS with
//! two real `backplane worker` processes, beside the local backend and a raw
//! JetStream work queue measured in the same run.

use super::{synthetic_plan_on, time_plan};
use async_nats::jetstream::{self, consumer::pull, stream};
use backplane_host::{Host, registry::InstanceSettings};
use backplane_worker_protocol::{NatsAuth, connect};
use futures_util::StreamExt;
use serde::Serialize;
use std::{
    fmt::Write,
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

pub struct WorkerBenchSettings {
    pub tasks: usize,
    pub chain: usize,
    pub workers: usize,
    pub concurrency: usize,
    pub repeat: usize,
    pub nats_server: Option<PathBuf>,
    pub plugin_dirs: Vec<PathBuf>,
}

#[derive(Debug, Clone, Serialize)]
pub struct WorkerBenchResults {
    pub cpus: usize,
    pub nats_server: String,
    pub workers: usize,
    pub concurrency: usize,
    pub tasks: usize,
    pub worker_tasks_per_sec: f64,
    pub local_tasks_per_sec: f64,
    /// Publish + pull + ack on a bare work-queue stream, two consumers.
    pub raw_jetstream_per_sec: f64,
    pub worker_to_raw: f64,
    pub chain: usize,
    pub worker_round_trip_us: f64,
    pub local_round_trip_us: f64,
    /// Per-item (`each`) `std.noop` tasks on the workers, `tasks` items streamed by `std.split` on `local`.
    pub worker_items_per_sec: f64,
}

const USER: &str = "bench";
const PASSWORD: &str = "bench-password";

/// A throwaway `nats-server` and workers, killed on drop.
struct Cluster {
    binary: PathBuf,
    dir: PathBuf,
    url: String,
    server: Child,
    workers: Vec<Child>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for child in self.workers.iter_mut().chain(std::iter::once(&mut self.server)) {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn start_cluster(settings: &WorkerBenchSettings) -> Result<Cluster, String> {
    let binary = backplane_worker_protocol::find_nats_server(settings.nats_server.as_deref())?;
    let port =
        std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map_err(|e| e.to_string())?.port();
    let dir = std::env::temp_dir().join(format!("backplane-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let config = dir.join("nats.conf");
    std::fs::write(
        &config,
        format!(
            "listen: 127.0.0.1:{port}\njetstream {{ store_dir: \"{}\" }}\nauthorization {{ user: {USER}, password: {PASSWORD} }}\n",
            dir.join("store").display()
        ),
    )
    .map_err(|e| e.to_string())?;
    let server = Command::new(&binary)
        .arg("-c")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", binary.display()))?;
    let mut cluster = Cluster { binary, dir, url: format!("nats://127.0.0.1:{port}"), server, workers: Vec::new() };
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if start.elapsed() > Duration::from_secs(10) {
            return Err("nats-server did not start listening within 10s".into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    for i in 0..settings.workers {
        let mut command = Command::new(&exe);
        command
            .args(["worker", "--nats", &cluster.url, "--user", USER, "--pool", "bench"])
            .args(["--worker-id", &format!("bench-{i}"), "--concurrency", &settings.concurrency.to_string()])
            .env("BACKPLANE_NATS_PASSWORD", PASSWORD)
            .env("BACKPLANE_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        for dir in &settings.plugin_dirs {
            command.arg("--plugin-dir").arg(dir);
        }
        cluster.workers.push(command.spawn().map_err(|e| format!("cannot start a worker: {e}"))?);
    }
    Ok(cluster)
}

pub fn run(host: &Host, settings: &WorkerBenchSettings) -> Result<WorkerBenchResults, String> {
    let cluster = start_cluster(settings)?;
    let workers = host
        .backends
        .create_detached(InstanceSettings {
            name: "bench-workers".into(),
            factory: "worker".into(),
            config: serde_json::json!({ "nats": cluster.url, "user": USER, "password": PASSWORD, "pool": "bench" }),
            max_in_flight: None,
            tags: Vec::new(),
            capacity: Default::default(),
            derived_from: None,
        })
        .map_err(|e| e.to_string())?;
    let slots = (settings.workers * settings.concurrency) as u32;
    let start = Instant::now();
    while workers.capabilities().max_concurrency < slots {
        if start.elapsed() > Duration::from_secs(30) {
            return Err(format!("the {} workers did not all announce themselves within 30s", settings.workers));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let local = host
        .backends
        .create_detached(InstanceSettings {
            name: "bench-local".into(),
            factory: "local".into(),
            config: serde_json::json!({}),
            max_in_flight: None,
            tags: Vec::new(),
            capacity: Default::default(),
            derived_from: None,
        })
        .map_err(|e| e.to_string())?;

    let wide_on = |instance| -> Result<f64, String> {
        let plan = synthetic_plan_on(host, instance, settings.tasks, false)?;
        Ok(settings.tasks as f64 / time_plan(&plan, settings.repeat)?)
    };
    let chain_on = |instance| -> Result<f64, String> {
        let plan = synthetic_plan_on(host, instance, settings.chain, true)?;
        Ok(time_plan(&plan, settings.repeat)? / settings.chain as f64 * 1e6)
    };
    let worker_rate = wide_on(workers.clone())?;
    let local_rate = wide_on(local.clone())?;
    let worker_rt = chain_on(workers.clone())?;
    let local_rt = chain_on(local.clone())?;
    let raw = raw_jetstream(&cluster.url, settings.tasks, settings.repeat)?;
    let items_rate = {
        let mut plan = super::streams::plan_fanout(host, settings.tasks, true)?;
        plan.instances = vec![local.clone(), workers.clone()];
        for (i, node) in plan.nodes.iter_mut().enumerate() {
            node.backend = u32::from(i == 2); // the per-item node on the workers, the rest on `local`
        }
        settings.tasks as f64 / time_plan(&plan, settings.repeat)?
    };
    workers.backend.shutdown();
    local.backend.shutdown();
    let version = Command::new(&cluster.binary)
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    Ok(WorkerBenchResults {
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        nats_server: version,
        workers: settings.workers,
        concurrency: settings.concurrency,
        tasks: settings.tasks,
        worker_tasks_per_sec: worker_rate,
        local_tasks_per_sec: local_rate,
        raw_jetstream_per_sec: raw,
        worker_to_raw: worker_rate / raw,
        chain: settings.chain,
        worker_round_trip_us: worker_rt,
        local_round_trip_us: local_rt,
        worker_items_per_sec: items_rate,
    })
}

/// Messages per second through a bare work-queue stream: `n` published
/// (acknowledgements awaited together), pulled by two consumers that
/// acknowledge each one. Best of `repeat`.
fn raw_jetstream(url: &str, n: usize, repeat: usize) -> Result<f64, String> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(async {
        let auth = NatsAuth { user: Some(USER.into()), password: Some(PASSWORD.into()), ..NatsAuth::default() };
        let client = connect(&[url.to_owned()], &auth, "backplane bench", Duration::from_secs(5))
            .await
            .map_err(|e| e.to_string())?;
        let js = jetstream::new(client);
        let mut best = 0.0f64;
        for round in 0..repeat {
            let name = format!("BENCH_RAW_{round}");
            let subject = format!("bench.raw.{round}");
            let stream = js
                .create_stream(stream::Config {
                    name: name.clone(),
                    subjects: vec![subject.clone()],
                    retention: stream::RetentionPolicy::WorkQueue,
                    storage: stream::StorageType::File,
                    ..Default::default()
                })
                .await
                .map_err(|e| e.to_string())?;
            let consumer: jetstream::consumer::PullConsumer = stream
                .create_consumer(pull::Config {
                    durable_name: Some("raw".into()),
                    ack_policy: jetstream::consumer::AckPolicy::Explicit,
                    max_ack_pending: 20_000,
                    ..Default::default()
                })
                .await
                .map_err(|e| e.to_string())?;
            let received = Arc::new(AtomicUsize::new(0));
            let start = Instant::now();
            let consumers: Vec<_> = (0..2)
                .map(|_| {
                    let (consumer, received) = (consumer.clone(), received.clone());
                    tokio::spawn(async move {
                        while received.load(Ordering::Acquire) < n {
                            let Ok(mut batch) =
                                consumer.batch().max_messages(256).expires(Duration::from_millis(200)).messages().await
                            else {
                                continue;
                            };
                            while let Some(Ok(message)) = batch.next().await {
                                let _ = message.ack().await;
                                received.fetch_add(1, Ordering::AcqRel);
                            }
                        }
                    })
                })
                .collect();
            let mut acks = futures_util::stream::FuturesUnordered::new();
            for i in 0..n {
                let ack = js.publish(subject.clone(), format!("{i}").into()).await.map_err(|e| e.to_string())?;
                acks.push(ack.into_future());
                while acks.len() >= 4096 {
                    acks.next().await;
                }
            }
            while acks.next().await.is_some() {}
            for consumer in consumers {
                let _ = consumer.await;
            }
            best = best.max(n as f64 / start.elapsed().as_secs_f64());
            let _ = js.delete_stream(&name).await;
        }
        Ok(best)
    })
}

impl super::BenchReport for WorkerBenchResults {
    fn to_markdown(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "Machine: {} CPUs; {}; {} `backplane worker` processes with {} slots each, on loopback\n",
            self.cpus, self.nats_server, self.workers, self.concurrency
        );
        let _ = writeln!(s, "| measurement | result | target |\n|---|---|---|");
        let _ = writeln!(
            s,
            "| {} independent `std.noop` tasks on `worker` | {:.0} tasks/s | >= 20,000 tasks/s |",
            self.tasks, self.worker_tasks_per_sec
        );
        let _ = writeln!(s, "| the same on `local` | {:.0} tasks/s | |", self.local_tasks_per_sec);
        let _ = writeln!(
            s,
            "| {} per-item (`each`) `std.noop` tasks on the workers, streamed from `local` | {:.0} items/s | >= 10,000 items/s |",
            self.tasks, self.worker_items_per_sec
        );
        let _ = writeln!(
            s,
            "| raw JetStream work queue: publish, 2 consumers pull and ack | {:.0} msgs/s | |",
            self.raw_jetstream_per_sec
        );
        let _ = writeln!(s, "| `worker` / raw JetStream | {:.2}x | >= 0.40x |", self.worker_to_raw);
        let _ = writeln!(
            s,
            "| chain of {} dependent tasks on `worker`: round trip | {:.0} us/task | |",
            self.chain, self.worker_round_trip_us
        );
        let _ = writeln!(s, "| the same on `local` | {:.2} us/task | |", self.local_round_trip_us);
        s
    }
}
