//! `backplane run-task`: runs one task read from stdin and writes its result
//! to stdout (see `backplane_plugin_api::wire`). Backends that isolate each
//! task in a child process start this.

use super::load_into;
use crate::{Failure, GlobalArgs};
use backplane_host::{Host, config::Config, task_runner};
use backplane_plugin_api::wire::{TaskMessage, write_result};
use std::{fs::File, io::BufWriter, os::fd::FromRawFd};

pub fn run_task(global: &GlobalArgs) -> Result<(), Failure> {
    // Keep the protocol stream to ourselves: whatever node code prints to
    // stdout goes to stderr instead.
    // The saved descriptor is close-on-exec, so commands a node starts never
    // hold the result pipe open.
    // SAFETY: plain descriptor duplication on descriptors we own, before any
    // other thread exists.
    let protocol = unsafe {
        let saved = libc::fcntl(1, libc::F_DUPFD_CLOEXEC, 0);
        if saved < 0 || libc::dup2(2, 1) < 0 {
            return Err(Failure::Environment("cannot redirect stdout".into()));
        }
        File::from_raw_fd(saved)
    };
    let message = TaskMessage::read_from(&mut std::io::stdin().lock())
        .map_err(|e| Failure::Environment(format!("cannot read the task from stdin: {e}")))?;
    let host = load_into(Host::for_tasks(), global, &Config::default())?;
    let result = task_runner::run_task(&host, message, &|| false, None);
    write_result(&mut BufWriter::new(protocol), &result)
        .map_err(|e| Failure::Environment(format!("cannot write the result: {e}")))
}
