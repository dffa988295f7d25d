//! What the `worker` backend plugin (in the host) and the `backplane worker`
//! service agree on, so neither can drift from the other.
//!
//! # Core concepts
//!
//! - **Tasks** are published to the JetStream work-queue stream [`TASKS_STREAM`]
//!   on `bp.tasks.<pool>`; every worker of a pool pulls from one durable
//!   consumer, so each task goes to one worker at a time and comes back if
//!   that worker dies before acknowledging it.
//! - **Results** go to the stream [`RESULTS_STREAM`] on `bp.results.<host>`,
//!   one subject per backend instance. A worker acknowledges a task only
//!   after the stream has stored its result.
//! - Message bodies are the `backplane_plugin_api::wire` frames; routing
//!   metadata travels in [`headers`].
//! - **Presence**: each worker keeps a [`WorkerAnnouncement`] fresh in the
//!   key-value bucket [`PRESENCE_BUCKET`]; entries of dead workers expire.
//! - **Large payloads** go through the object store [`PAYLOAD_BUCKET`] and
//!   travel as references ([`objects`]).

mod connect;
pub mod headers;
pub mod objects;
mod presence;
mod setup;

pub use connect::{ConnectError, NatsAuth, connect};
pub use presence::{WorkerAnnouncement, WorkerCounters};
pub use setup::{
    PoolConsumerSettings, SetupError, ensure_pool_consumer, ensure_streams, payload_store, presence_bucket,
};

/// Work-queue stream holding tasks not yet acknowledged by a worker.
pub const TASKS_STREAM: &str = "BACKPLANE_TASKS";
/// Stream holding results until the host that asked reads them.
pub const RESULTS_STREAM: &str = "BACKPLANE_RESULTS";
/// Key-value bucket of live workers, keyed `<pool>.<worker id>`.
pub const PRESENCE_BUCKET: &str = "backplane_workers";
/// Object store for payloads too large to travel inside a message.
pub const PAYLOAD_BUCKET: &str = "backplane_payloads";

/// How often a worker refreshes its presence entry.
pub const PRESENCE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);
/// A worker not heard from for this long is gone (three missed refreshes).
pub const PRESENCE_TTL: std::time::Duration = std::time::Duration::from_secs(3);

/// Subject tasks for `pool` are published on.
pub fn task_subject(pool: &str) -> String {
    format!("bp.tasks.{pool}")
}

/// Subject results for the backend instance `host_id` are published on.
pub fn result_subject(host_id: &str) -> String {
    format!("bp.results.{host_id}")
}

/// Core-NATS subject on which cancellations for `pool` are broadcast.
pub fn cancel_subject(pool: &str) -> String {
    format!("bp.cancel.{pool}")
}

/// The durable consumer all workers of `pool` share.
pub fn pool_consumer(pool: &str) -> String {
    format!("pool-{pool}")
}

/// Pools become subject tokens and consumer names: keep them to a safe alphabet.
pub fn check_pool_name(pool: &str) -> Result<(), String> {
    if !pool.is_empty() && pool.len() <= 64 && pool.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        Ok(())
    } else {
        Err(format!("pool name `{pool}` must be 1-64 characters of letters, digits, `-` and `_`"))
    }
}

/// The `nats-server` binary: `given`, else found on `PATH` or in Debian's
/// `/usr/sbin` (not on a normal user's `PATH`).
pub fn find_nats_server(given: Option<&std::path::Path>) -> Result<std::path::PathBuf, String> {
    if let Some(path) = given {
        return Ok(path.to_owned());
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|p| p.join("nats-server"))
        .chain([std::path::PathBuf::from("/usr/sbin/nats-server"), std::path::PathBuf::from("/usr/bin/nats-server")])
        .find(|p| p.is_file())
        .ok_or_else(|| "nats-server not found: install it (`apt-get install nats-server`) or pass --nats-server".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_names_are_subject_tokens() {
        assert!(check_pool_name("gpu-a100_2").is_ok());
        for bad in ["", "a.b", "a*", "a>", "with space", &"x".repeat(65)] {
            assert!(check_pool_name(bad).is_err(), "{bad:?} accepted");
        }
    }
}
