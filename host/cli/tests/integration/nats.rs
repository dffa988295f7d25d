//! Real `nats-server` and `backplane worker` processes for the worker
//! backend's tests: a JetStream server with a user and password on a free
//! loopback port, and workers that can be stopped gently or with `kill -9`.

use crate::fixtures::{bin_dir, ensure_plugins_built, free_port};
use std::{
    io::{BufRead, BufReader},
    net::TcpStream,
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

pub const USER: &str = "backplane";
pub const PASSWORD: &str = "test-secret";

fn nats_server_binary() -> PathBuf {
    backplane_worker_protocol::find_nats_server(None).unwrap_or_else(|e| panic!("{e} (.ci/run installs it)"))
}

/// Polls `ready` every 20 ms until it holds or `within` passes.
pub fn wait_until(within: Duration, what: &str, mut ready: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ready() {
        assert!(start.elapsed() < within, "timed out after {within:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A `nats-server -js` with password authentication and its data on disk,
/// so a restart on the same port keeps the streams.
pub struct NatsServer {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl NatsServer {
    pub fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut server = Self { port: free_port(), dir, child: None };
        server.restart();
        server
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Starts the server (again), on the same port and store.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "already running");
        let config = self.dir.path().join("nats.conf");
        std::fs::write(
            &config,
            format!(
                "listen: 127.0.0.1:{}\njetstream {{ store_dir: \"{}\" }}\n\
                 authorization {{ user: {USER}, password: {PASSWORD} }}\n",
                self.port,
                self.dir.path().join("store").display()
            ),
        )
        .unwrap();
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.dir.path().join("nats.log")).unwrap();
        let child = Command::new(nats_server_binary())
            .arg("-c")
            .arg(&config)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("nats-server starts");
        self.child = Some(child);
        let port = self.port;
        wait_until(Duration::from_secs(10), "nats-server to listen", || {
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
    }

    /// Stops the server abruptly (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// A `[backends.<name>]` table for this server with the right credentials.
    pub fn backend_table(&self, name: &str, extra: &str) -> String {
        format!(
            "[backends.{name}]\ntype = \"worker\"\nnats = \"{}\"\nuser = \"{USER}\"\npassword = \"{PASSWORD}\"\n{extra}\n",
            self.url()
        )
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A real `backplane worker` whose stdout (its log) is collected.
pub struct WorkerProcess {
    pub id: String,
    child: Child,
    log: Arc<Mutex<String>>,
}

impl WorkerProcess {
    /// Starts a worker of `pool` with the server's credentials and waits
    /// until it serves.
    pub fn start(nats: &NatsServer, id: &str, pool: &str, extra: &[&str]) -> Self {
        let worker = Self::spawn(nats, id, pool, extra, &[("BACKPLANE_NATS_PASSWORD", PASSWORD)], true);
        worker.wait_for_log("serving pool", Duration::from_secs(20));
        worker
    }

    /// Starts a worker process as given, without waiting for anything.
    pub fn spawn(
        nats: &NatsServer,
        id: &str,
        pool: &str,
        extra: &[&str],
        env: &[(&str, &str)],
        with_user: bool,
    ) -> Self {
        ensure_plugins_built();
        let mut command = Command::new(bin_dir().join("backplane"));
        command
            .args(["worker", "--nats", &nats.url(), "--pool", pool, "--worker-id", id])
            .args(extra)
            .env_remove("BACKPLANE_PLUGIN_PATH")
            .env_remove("BACKPLANE_NATS_PASSWORD")
            .env_remove("BACKPLANE_NATS_TOKEN")
            .env("BACKPLANE_LOG", "info,backplane_worker_service=debug")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if with_user {
            command.args(["--user", USER]);
        }
        for (k, v) in env {
            command.env(k, v);
        }
        let mut child = command.spawn().expect("backplane worker starts");
        let log = Arc::new(Mutex::new(String::new()));
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let log = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    let mut log = log.lock().unwrap();
                    log.push_str(&line);
                    log.push('\n');
                }
            });
        }
        Self { id: id.to_owned(), child, log }
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    pub fn wait_for_log(&self, needle: &str, within: Duration) {
        let start = Instant::now();
        while !self.log().contains(needle) {
            assert!(
                start.elapsed() < within,
                "worker {} did not log `{needle}` within {within:?}; its log:\n{}",
                self.id,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Tasks this worker started (its debug log lines).
    pub fn tasks_started(&self) -> usize {
        self.log().matches("running task").count()
    }

    pub fn kill_9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then waits for the exit; returns the exit code.
    pub fn terminate(&mut self) -> Option<i32> {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        self.wait(Duration::from_secs(30))
    }

    pub fn wait(&mut self, within: Duration) -> Option<i32> {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                // Let the reader threads catch the last lines.
                std::thread::sleep(Duration::from_millis(100));
                return status.code();
            }
            assert!(start.elapsed() < within, "worker {} did not exit within {within:?}", self.id);
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
