//! Running a task in a child process (`--isolation process`): a crashing or
//! runaway node takes down only its child, never the worker.

use backplane_plugin_api::{
    Payload, PluginError, PluginError_NE,
    wire::{TaskMessage, read_result},
};
use std::{
    path::PathBuf,
    process::Stdio,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Where a worker runs its tasks.
#[derive(Debug, Clone)]
pub enum Isolation {
    /// On a thread of the worker's own process (fastest).
    InProcess,
    /// In a child `backplane run-task` per task.
    Process { program: PathBuf, plugin_dirs: Vec<PathBuf> },
}

impl Isolation {
    pub fn name(&self) -> &'static str {
        match self {
            Self::InProcess => "none",
            Self::Process { .. } => "process",
        }
    }
}

/// Lines of the child's stderr kept for an error message.
const STDERR_TAIL: usize = 2048;

/// Runs `task` in a child process; kills it on cancellation or at `deadline`.
pub async fn in_child_process(
    program: PathBuf,
    plugin_dirs: Vec<PathBuf>,
    task: TaskMessage,
    cancelled: Arc<AtomicBool>,
    deadline: Option<tokio::time::Instant>,
) -> Result<Vec<Payload>, PluginError_NE> {
    let mut frame = Vec::new();
    task.write_to(&mut frame).map_err(|e| PluginError::infrastructure(format!("cannot encode the task: {e}")))?;
    let mut command = tokio::process::Command::new(&program);
    command.arg("run-task");
    for dir in &plugin_dirs {
        command.arg("--plugin-dir").arg(dir);
    }
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| PluginError::infrastructure(format!("cannot start {}: {e}", program.display())))?;
    let mut stdin = child.stdin.take().expect("piped");
    let mut stdout = child.stdout.take().expect("piped");
    let mut stderr = child.stderr.take().expect("piped");
    let feed = async move {
        // A child that dies early closes the pipe; its exit status tells why.
        let _ = stdin.write_all(&frame).await;
    };
    let collect = async {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let _ = tokio::join!(stdout.read_to_end(&mut out), stderr.read_to_end(&mut err));
        (out, err)
    };
    let watch_cancel = async {
        while !cancelled.load(Ordering::Acquire) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let expire = async {
        match deadline {
            Some(at) => tokio::time::sleep_until(at).await,
            None => std::future::pending().await,
        }
    };
    let ((out, err), ()) = tokio::select! {
        done = async { tokio::join!(collect, feed) } => done,
        _ = watch_cancel => return Err(PluginError::cancelled()),
        _ = expire => return Err(PluginError::timed_out("the task process ran past its deadline and was killed")),
    };
    let status = child.wait().await.map_err(|e| PluginError::infrastructure(format!("lost the task process: {e}")))?;
    if !out.is_empty()
        && let Ok(result) = read_result(&mut out.as_slice())
    {
        return result;
    }
    let err = String::from_utf8_lossy(&err);
    let tail = &err[err.len().saturating_sub(STDERR_TAIL)..];
    Err(PluginError::node_failed(format!("the task process crashed ({status}); its stderr ends with: {}", tail.trim())))
}
