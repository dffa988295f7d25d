//! `[backends.<name>] type = "worker"` settings.

use backplane_worker_protocol::{NatsAuth, PoolConsumerSettings, check_pool_name};
use schemars::JsonSchema;
use serde::Deserialize;
use std::time::Duration;

/// One NATS URL or several (the client fails over between them).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum Urls {
    One(String),
    Many(#[schemars(length(min = 1))] Vec<String>),
}

/// Upper bounds catch typos (and deadlines that would overflow).
const DAY: f64 = 86_400.0;
const YEAR: f64 = 31_536_000.0;

/// Settings of a `worker` backend instance (its JSON Schema is derived from
/// this type). Unknown keys are refused by [`Strict`]: serde cannot deny them
/// next to a flattened table.
#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(extend("additionalProperties" = false))]
pub struct WorkerConfig {
    /// NATS server URL(s), e.g. "nats://127.0.0.1:4222".
    pub nats: Urls,
    #[serde(flatten)]
    pub auth: NatsAuth,
    /// Worker pool to send tasks to.
    #[serde(default = "default_pool")]
    #[schemars(regex(pattern = r"^[A-Za-z0-9_-]{1,64}$"))]
    pub pool: String,
    /// Fail a task not finished this long after it was submitted (0: no limit).
    #[serde(default)]
    #[schemars(range(min = 0.0, max = YEAR))]
    pub task_timeout_secs: f64,
    /// Deliveries of one task (its first run plus redeliveries after a worker
    /// died or stopped) before it fails with an infrastructure error.
    #[serde(default = "default_max_deliveries")]
    #[schemars(range(min = 1, max = 100))]
    pub max_deliveries: u32,
    /// A task whose worker went silent goes to another worker after this long.
    #[serde(default = "default_redelivery_after")]
    #[schemars(range(min = 0.0, max = DAY))]
    pub redelivery_after_secs: f64,
    /// Delay before a released task is offered again, by delivery number
    /// (the last entry repeats).
    #[serde(default = "default_backoff")]
    #[schemars(length(max = 100), inner(range(min = 0.0, max = DAY)))]
    pub redelivery_backoff_secs: Vec<f64>,
    /// Fail a task when no live worker of the pool can run its node type for this long.
    #[serde(default = "default_no_worker_timeout")]
    #[schemars(range(min = 0.0, max = DAY))]
    pub no_worker_timeout_secs: f64,
    /// Payloads larger than this travel through the object store.
    #[serde(default = "default_inline_limit")]
    #[schemars(range(min = 1024, max = 8_388_608))]
    pub inline_limit_bytes: u64,
    /// First connection timeout.
    #[serde(default = "default_connect_timeout")]
    #[schemars(range(min = 0.0, max = 3600.0))]
    pub connect_timeout_secs: f64,
}

fn default_pool() -> String {
    "default".into()
}
fn default_max_deliveries() -> u32 {
    3
}
fn default_redelivery_after() -> f64 {
    30.0
}
fn default_backoff() -> Vec<f64> {
    vec![0.5, 2.0, 10.0]
}
fn default_no_worker_timeout() -> f64 {
    30.0
}
fn default_inline_limit() -> u64 {
    512 * 1024
}
fn default_connect_timeout() -> f64 {
    5.0
}

pub fn schema() -> serde_json::Value {
    schemars::schema_for!(WorkerConfig).to_value()
}

/// A config deserialized only when every key is one its schema lists.
pub struct Strict<T>(pub T);

impl<'de, T: serde::de::DeserializeOwned + JsonSchema> Deserialize<'de> for Strict<T> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let map = serde_json::Map::<String, serde_json::Value>::deserialize(deserializer)?;
        let schema = schemars::schema_for!(T).to_value();
        let known: Vec<&str> =
            schema["properties"].as_object().map(|p| p.keys().map(String::as_str).collect()).unwrap_or_default();
        if let Some(unknown) = map.keys().find(|k| !known.contains(&k.as_str())) {
            return Err(D::Error::custom(format!("unknown field `{unknown}`, expected one of {}", known.join(", "))));
        }
        serde_json::from_value(serde_json::Value::Object(map)).map(Strict).map_err(D::Error::custom)
    }
}

/// The validated settings an instance runs with.
#[derive(Debug, Clone)]
pub struct Settings {
    pub urls: Vec<String>,
    pub auth: NatsAuth,
    pub pool: String,
    pub task_timeout: Option<Duration>,
    pub max_deliveries: u32,
    pub consumer: PoolConsumerSettings,
    pub backoff: Vec<Duration>,
    pub no_worker_timeout: Duration,
    pub inline_limit: usize,
    pub connect_timeout: Duration,
}

fn seconds(name: &str, value: f64) -> Result<Duration, String> {
    Duration::try_from_secs_f64(value).map_err(|_| format!("`{name}` must be a non-negative number of seconds"))
}

impl WorkerConfig {
    pub fn validate(self) -> Result<Settings, String> {
        let urls = match self.nats {
            Urls::One(url) => vec![url],
            Urls::Many(urls) => urls,
        };
        if urls.is_empty() {
            return Err("`nats` needs at least one server URL".into());
        }
        check_pool_name(&self.pool)?;
        if self.max_deliveries == 0 {
            return Err("`max_deliveries` must be at least 1".into());
        }
        let redelivery_after = seconds("redelivery_after_secs", self.redelivery_after_secs)?;
        if redelivery_after < Duration::from_millis(500) {
            return Err("`redelivery_after_secs` must be at least 0.5".into());
        }
        Ok(Settings {
            urls,
            auth: self.auth,
            pool: self.pool,
            task_timeout: match seconds("task_timeout_secs", self.task_timeout_secs)? {
                d if d.is_zero() => None,
                d => Some(d),
            },
            max_deliveries: self.max_deliveries,
            consumer: PoolConsumerSettings { ack_wait: redelivery_after, ..PoolConsumerSettings::default() },
            backoff: self
                .redelivery_backoff_secs
                .iter()
                .map(|&s| seconds("redelivery_backoff_secs", s))
                .collect::<Result<_, _>>()?,
            no_worker_timeout: seconds("no_worker_timeout_secs", self.no_worker_timeout_secs)?,
            inline_limit: usize::try_from(self.inline_limit_bytes).unwrap_or(usize::MAX),
            connect_timeout: seconds("connect_timeout_secs", self.connect_timeout_secs)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: serde_json::Value) -> Result<Settings, String> {
        serde_json::from_value::<Strict<WorkerConfig>>(json).map_err(|e| e.to_string())?.0.validate()
    }

    #[test]
    fn defaults_and_lists_of_urls() {
        let one = parse(serde_json::json!({ "nats": "nats://a:4222", "token": "t" })).unwrap();
        assert_eq!(one.urls, ["nats://a:4222"]);
        assert_eq!((one.pool.as_str(), one.max_deliveries), ("default", 3));
        assert_eq!(one.consumer.ack_wait, Duration::from_secs(30));
        assert_eq!(one.task_timeout, None);
        let many = parse(serde_json::json!({ "nats": ["nats://a", "nats://b"], "task_timeout_secs": 2.5 })).unwrap();
        assert_eq!(many.urls.len(), 2);
        assert_eq!(many.task_timeout, Some(Duration::from_millis(2500)));
    }

    #[test]
    fn bad_values_are_refused_with_the_key_named() {
        for (json, expected) in [
            (serde_json::json!({ "nats": [] }), "`nats` needs at least one server URL"),
            (serde_json::json!({ "nats": "n", "pool": "a.b" }), "pool name `a.b`"),
            (serde_json::json!({ "nats": "n", "max_deliveries": 0 }), "`max_deliveries` must be at least 1"),
            (serde_json::json!({ "nats": "n", "redelivery_after_secs": 0.1 }), "`redelivery_after_secs`"),
            (serde_json::json!({ "nats": "n", "task_timeout_secs": -1 }), "`task_timeout_secs`"),
            (serde_json::json!({ "nats": "n", "colour": "red" }), "unknown field `colour`"),
        ] {
            let error = parse(json.clone()).unwrap_err();
            assert!(error.contains(expected), "{json}: {error}");
        }
    }
}
