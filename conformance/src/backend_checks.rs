//! Checks of one backend factory and the instances it creates.

use crate::{
    Check, Status,
    probe::{self, Outcome, Probe, reference},
};
use backplane_plugin_api::{
    BackendBox, BackendFactoryRef, CapabilityFlags, HealthStatus, NodeSpecRef, Payload, PluginError_NE, describe,
};
use std::{
    sync::{Arc, mpsc},
    time::{Duration, Instant},
};

/// What the suite runs against.
pub struct BackendSuite<'a> {
    pub factory: BackendFactoryRef,
    /// A configuration the backend must accept.
    pub config: serde_json::Value,
    /// Node specs the suite may use, looked up by type name (the standard
    /// library: `std.noop`, `std.sleep`, `std.fail`, `std.panic`, ...).
    pub nodes: &'a [NodeSpecRef],
    /// How long one task may take before it counts as a hang.
    pub timeout: Duration,
}

fn node(nodes: &[NodeSpecRef], name: &str) -> Option<NodeSpecRef> {
    nodes.iter().copied().find(|n| n.type_name().as_str() == name)
}

fn kind_of(error: &PluginError_NE) -> &'static str {
    describe(error)
}

fn create(suite: &BackendSuite<'_>, config: &serde_json::Value) -> Result<BackendBox, PluginError_NE> {
    (suite.factory.create())(config.to_string().as_str().into()).into_result()
}

/// A configuration the factory's own schema rejects.
fn invalid_config(schema: &serde_json::Value) -> serde_json::Value {
    if schema.get("additionalProperties") == Some(&serde_json::Value::Bool(false)) {
        serde_json::json!({ "__conformance_unknown_setting__": true })
    } else {
        serde_json::json!("a config must be an object, not a string")
    }
}

/// The `config-schema` check; returns the schema as JSON (`null` if it is not JSON).
#[cfg(feature = "schema-checks")]
fn config_schema_check(suite: &BackendSuite<'_>, checks: &mut Checks<'_>) -> serde_json::Value {
    let compiled = backplane_loader::registry::schema::compile(suite.factory.config_schema().as_str());
    checks.push(match &compiled {
        Ok((validator, _)) if validator.is_valid(&suite.config) => {
            Check::pass("config-schema", "the config schema is valid and accepts the test config")
        }
        Ok(_) => {
            Check::fail("config-schema", format!("the factory's schema rejects the config under test {}", suite.config))
        }
        Err(e) => Check::fail("config-schema", format!("the factory's config schema {e}")),
    });
    compiled.map(|(_, schema)| schema).unwrap_or_default()
}

/// Without `schema-checks` there is no `config-schema` check (`backplane
/// verify` and the host's loader make it); the schema is only read.
#[cfg(not(feature = "schema-checks"))]
fn config_schema_check(suite: &BackendSuite<'_>, _: &mut Checks<'_>) -> serde_json::Value {
    serde_json::from_str(suite.factory.config_schema().as_str()).unwrap_or_default()
}

/// Checks as they are made, handed to a callback as well (progress).
struct Checks<'f> {
    made: Vec<Check>,
    on_check: &'f mut dyn FnMut(&Check),
}

impl Checks<'_> {
    fn push(&mut self, check: Check) {
        (self.on_check)(&check);
        self.made.push(check);
    }
    fn extend(&mut self, checks: impl IntoIterator<Item = Check>) {
        for check in checks {
            self.push(check);
        }
    }
}

/// Runs every backend check. Never panics on plugin misbehaviour.
pub fn check_backend(suite: &BackendSuite<'_>) -> Vec<Check> {
    check_backend_with(suite, &mut |_| {})
}

/// [`check_backend`], calling `on_check` with each check as soon as it is
/// made (`backplane verify` prints them as they come).
pub fn check_backend_with(suite: &BackendSuite<'_>, on_check: &mut dyn FnMut(&Check)) -> Vec<Check> {
    let mut checks = Checks { made: Vec::new(), on_check };
    run_backend_checks(suite, &mut checks);
    checks.made
}

fn run_backend_checks(suite: &BackendSuite<'_>, checks: &mut Checks<'_>) {
    let schema = config_schema_check(suite, checks);

    let invalid = invalid_config(&schema);
    checks.push(match create(suite, &invalid) {
        Err(e) if kind_of(&e) == "panicked" => {
            Check::fail("create-invalid", format!("create panicked on an invalid config: {e}"))
        }
        Err(e) => Check::pass("create-invalid", format!("rejected {invalid}: {e}")),
        Ok(backend) => {
            backend.shutdown();
            Check::fail(
                "create-invalid",
                format!("accepted {invalid}, which its own schema forbids; reject invalid configs with an error"),
            )
        }
    });

    let backend = match create(suite, &suite.config) {
        Ok(backend) => {
            checks.push(Check::pass("create-valid", format!("created with {}", suite.config)));
            backend
        }
        Err(e) => {
            checks.push(Check::fail("create-valid", format!("rejected {}: {e}", suite.config)));
            return;
        }
    };

    let static_caps = suite.factory.capabilities();
    let live = backend.capabilities();
    checks.push(if live.isolation != static_caps.isolation {
        Check::fail(
            "capabilities",
            format!(
                "live isolation {} differs from the factory's {}",
                live.isolation.name(),
                static_caps.isolation.name()
            ),
        )
    } else if !static_caps.flags.contains(live.flags) {
        // The factory's capabilities are what its instances may offer; an
        // instance claiming more would be routed work its type never declared.
        Check::fail(
            "capabilities",
            format!("live flags {:?} go beyond the factory's {:?}", live.flags.names(), static_caps.flags.names()),
        )
    } else if live.flags.contains(CapabilityFlags::PARALLEL) && live.max_concurrency == 1 {
        Check::fail("capabilities", "claims `parallel` with a concurrency of 1")
    } else {
        Check::pass("capabilities", format!("flags {:?}, isolation {}", live.flags.names(), live.isolation.name()))
    });

    let health = backend.health();
    checks.push(if health.status == HealthStatus::UP {
        Check::pass("health", "up after create")
    } else if health.status == HealthStatus::DEGRADED {
        Check::pass("health", format!("degraded after create (still takes work): {}", health.message))
    } else {
        Check::fail("health", format!("{} after create: {}", health.status.name(), health.message))
    });

    let backend = Arc::new(backend);
    let prompt = submit_returns_promptly(suite, &backend);
    // A backend that works inside `submit` would hold the suite up for
    // minutes in the checks that run long tasks; those are skipped.
    let blocks = prompt.status == Status::Fail;
    checks.push(prompt);
    task_checks(suite, &backend, blocks, checks);
    backend.shutdown();
    drop(backend);

    checks.push(if blocks {
        Check::skip("shutdown-in-flight", "skipped: submit blocks")
    } else {
        shutdown_with_work_in_flight(suite)
    });
}

/// How long `submit` may take: it must only queue the task.
const SUBMIT_LIMIT: Duration = Duration::from_millis(500);

/// `submit` of a one-second task must return at once; the host calls it from
/// its scheduler and every node waits behind a blocking backend.
fn submit_returns_promptly(suite: &BackendSuite<'_>, backend: &Arc<BackendBox>) -> Check {
    let Some(sleep) = node(suite.nodes, "std.sleep") else {
        return Check::skip("submit-returns", "std.sleep was not given to the suite");
    };
    let (returned_tx, returned) = mpsc::channel();
    let (done_tx, done) = mpsc::channel();
    let backend = Arc::clone(backend);
    let working_dir = std::env::temp_dir().to_string_lossy().into_owned();
    // On its own thread, so a submit that never returns cannot stall the suite.
    std::thread::spawn(move || {
        let started = Instant::now();
        let task = probe::task(u64::MAX, sleep, serde_json::json!({ "ms": 1000 }), vec![], &working_dir);
        backend.submit(task, probe::sink(u64::MAX, done_tx));
        let _ = returned_tx.send(started.elapsed());
    });
    match returned.recv_timeout(SUBMIT_LIMIT) {
        Ok(took) => {
            // Let the 1 s task end before the next checks, but never wait
            // long: a backend that completes nothing is told by `parity`.
            let _ = done.recv_timeout(suite.timeout.min(Duration::from_secs(3)));
            Check::pass("submit-returns", format!("submit returned in {took:?} while its 1 s task ran"))
        }
        Err(_) => Check::fail(
            "submit-returns",
            format!(
                "submit of a 1 s task did not return within {SUBMIT_LIMIT:?}: queue the task and run it on threads the backend owns"
            ),
        ),
    }
}

/// Standard nodes with settings and inputs that exercise them, for parity.
fn samples() -> Vec<(&'static str, serde_json::Value, Vec<Payload>)> {
    let text = "the quick brown fox\njumps over the lazy dog\nthe end\n";
    vec![
        ("std.const", serde_json::json!({ "text": "hello" }), vec![]),
        ("std.noop", serde_json::json!({}), vec![Payload::text("in", "pass me through".into())]),
        ("std.tokenize", serde_json::json!({}), vec![Payload::text("text", text.into())]),
        ("std.word_count", serde_json::json!({}), vec![Payload::text("text", text.into())]),
        ("std.sort", serde_json::json!({ "reverse": true }), vec![Payload::text("text", text.into())]),
        (
            "std.hash",
            serde_json::json!({}),
            vec![Payload::bytes("data", "application/octet-stream", (0..=255).collect())],
        ),
    ]
}

/// The checks after `parity`, in order; when the suite stops early, those
/// not yet run are reported as skipped with the reason.
const LATER_TASK_CHECKS: [&str; 7] = [
    "concurrent",
    "node-failure",
    "node-panic",
    "alive-after-panic",
    "large-payload",
    "cancel-running",
    "cancel-queued",
];

fn task_checks(suite: &BackendSuite<'_>, backend: &BackendBox, submit_blocks: bool, out: &mut Checks<'_>) {
    let mut probe = Probe::new(backend);
    let checks = task_checks_until_stopped(suite, &mut probe, submit_blocks, out);
    if let Err(why) = checks {
        let done: Vec<&str> = out.made.iter().map(|c| c.name).collect();
        for name in LATER_TASK_CHECKS.into_iter().filter(|n| !done.contains(n)) {
            out.push(Check::skip(name, why.clone()));
        }
    }
    out.extend(probe.stray_check());
}

/// Runs the task checks; `Err(why)` when they stopped early because the
/// backend answers nothing usable, so the rest would only repeat the failure.
fn task_checks_until_stopped(
    suite: &BackendSuite<'_>,
    probe: &mut Probe<'_>,
    submit_blocks: bool,
    checks: &mut Checks<'_>,
) -> Result<(), String> {
    let t = suite.timeout;
    let stop = |probe: &Probe<'_>| probe.stop_reason(t).map_or(Ok(()), Err);

    // Round trip and parity with the in-process reference, for each sample.
    let available: Vec<_> =
        samples().into_iter().filter_map(|(name, s, i)| node(suite.nodes, name).map(|n| (n, s, i))).collect();
    if available.is_empty() {
        checks.push(Check::skip("parity", "none of the standard node types were given to the suite"));
    } else {
        // All samples at once: one wait, however many of them never come back.
        let submitted: Vec<_> = available
            .iter()
            .map(|(spec, settings, inputs)| {
                let expected = reference(*spec, settings, inputs.clone());
                (probe.submit(*spec, settings.clone(), inputs.clone()), *spec, expected)
            })
            .collect();
        let (mut got, _) = probe.collect_partial(submitted.len(), t);
        let mut problems = Vec::new();
        for (id, spec, expected) in submitted {
            match got.iter().position(|(done, _)| *done == id).map(|i| got.swap_remove(i).1) {
                Some(Outcome::Completed(result)) if result == expected => {}
                Some(Outcome::Completed(Ok(outputs))) => {
                    problems.push(format!("{}: got {outputs:?}, expected {expected:?}", spec.type_name()))
                }
                Some(other) => problems.push(format!("{}: {}", spec.type_name(), other.describe())),
                None => problems.push(format!("{}: no result within {t:?} (a hang)", spec.type_name())),
            }
        }
        checks.push(if problems.is_empty() {
            Check::pass(
                "parity",
                format!("{} node types gave results identical to running them in process", available.len()),
            )
        } else {
            Check::fail("parity", problems.join("; "))
        });
    }

    stop(probe)?;
    let Some(noop) = node(suite.nodes, "std.noop") else {
        checks.push(Check::skip("tasks", "std.noop was not given to the suite; task checks skipped"));
        return Ok(());
    };

    // Many tasks at once, each completed exactly once.
    const MANY: usize = 500;
    let started = Instant::now();
    for i in 0..MANY {
        probe.submit(noop, serde_json::json!({}), vec![Payload::text("in", i.to_string())]);
    }
    checks.push(match probe.collect(MANY, t) {
        Ok(done) => {
            let dropped = done.iter().filter(|(_, o)| matches!(o, Outcome::Dropped(_))).count();
            let failed = done.iter().filter(|(_, o)| matches!(o, Outcome::Completed(Err(_)))).count();
            let mut ids: Vec<u64> = done.iter().map(|(id, _)| *id).collect();
            ids.sort_unstable();
            ids.dedup();
            let extra = probe.extra(Duration::from_millis(50));
            if dropped + failed > 0 || ids.len() != MANY || extra > 0 {
                Check::fail("concurrent", format!("{MANY} tasks: {dropped} sinks dropped, {failed} failed, {} distinct completions, {extra} extra", ids.len()))
            } else {
                Check::pass("concurrent", format!("{MANY} concurrent tasks completed exactly once in {:?}", started.elapsed()))
            }
        }
        Err(e) => Check::fail("concurrent", e),
    });
    stop(probe)?;

    checks.push(expect_error(
        probe,
        suite,
        "std.fail",
        serde_json::json!({ "message": "conformance failure" }),
        "node-failure",
        "node-failed",
        "conformance failure",
    ));
    checks.push(expect_error(
        probe,
        suite,
        "std.panic",
        serde_json::json!({ "message": "conformance panic" }),
        "node-panic",
        "panicked",
        "conformance panic",
    ));
    stop(probe)?;
    // Still alive after a panicking node?
    probe.submit(noop, serde_json::json!({}), vec![]);
    checks.push(match probe.one(t) {
        Ok((_, Outcome::Completed(Ok(_)))) => Check::pass("alive-after-panic", "runs tasks after a node panicked"),
        Ok((_, other)) => Check::fail("alive-after-panic", format!("after a node panicked: {}", other.describe())),
        Err(e) => Check::fail("alive-after-panic", e),
    });

    // 64 MiB through and back, byte for byte.
    let big: Vec<u8> = (0..64u32 << 20).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
    probe.submit(noop, serde_json::json!({}), vec![Payload::bytes("in", "application/octet-stream", big.clone())]);
    checks.push(match probe.one(t) {
        Ok((_, Outcome::Completed(Ok(out))))
            if out.iter().any(|p| p.port == "out" && p.data.as_slice() == big.as_slice()) =>
        {
            Check::pass("large-payload", "64 MiB came back identical")
        }
        Ok((_, Outcome::Completed(Ok(out)))) => {
            Check::fail("large-payload", format!("64 MiB came back changed ({} outputs)", out.len()))
        }
        Ok((_, other)) => Check::fail("large-payload", other.describe()),
        Err(e) => Check::fail("large-payload", e),
    });

    stop(probe)?;
    if submit_blocks {
        checks.push(Check::skip("cancel", "skipped: submit blocks"));
    } else {
        checks.extend(cancel_checks(probe, suite));
    }
    Ok(())
}

fn expect_error(
    probe: &mut Probe<'_>,
    suite: &BackendSuite<'_>,
    name: &str,
    settings: serde_json::Value,
    check: &'static str,
    kind: &str,
    message: &str,
) -> Check {
    let Some(spec) = node(suite.nodes, name) else {
        return Check::skip(check, format!("{name} was not given to the suite"));
    };
    probe.submit(spec, settings, vec![]);
    match probe.one(suite.timeout) {
        Ok((_, Outcome::Completed(Err(e)))) if kind_of(&e) == kind && e.to_string().contains(message) => {
            Check::pass(check, format!("reported as {kind}: {e}"))
        }
        Ok((_, Outcome::Completed(Err(e)))) => {
            Check::fail(check, format!("expected a {kind} error carrying `{message}`, got {} `{e}`", kind_of(&e)))
        }
        Ok((_, Outcome::Completed(Ok(_)))) => Check::fail(check, format!("{name} succeeded")),
        Ok((_, dropped @ Outcome::Dropped(_))) => Check::fail(check, dropped.describe()),
        Err(e) => Check::fail(check, e),
    }
}

fn cancel_checks(probe: &mut Probe<'_>, suite: &BackendSuite<'_>) -> Vec<Check> {
    let Some(sleep) = node(suite.nodes, "std.sleep") else {
        return vec![Check::skip("cancel", "std.sleep was not given to the suite")];
    };
    let mut checks = Vec::new();
    let t = suite.timeout;
    let is_cancelled = |o: &Outcome| matches!(o, Outcome::Completed(Err(e)) if kind_of(e) == "cancelled");

    // During execution: a long sleep, cancelled once it has started.
    let id = probe.submit(sleep, serde_json::json!({ "ms": 60_000 }), vec![]);
    std::thread::sleep(Duration::from_millis(300));
    let asked = Instant::now();
    probe.backend.cancel(id);
    checks.push(match probe.one(t) {
        Ok((_, o)) if is_cancelled(&o) => {
            Check::pass("cancel-running", format!("a running task stopped {:?} after cancel", asked.elapsed()))
        }
        Ok((_, o)) => Check::fail("cancel-running", format!("a cancelled running task ended with {o:?}")),
        Err(e) => Check::fail("cancel-running", format!("a cancelled running task never completed: {e}")),
    });

    // Before execution: fill every slot, queue one more and cancel it at once.
    let slots = (probe.backend.capabilities().max_concurrency as usize).clamp(1, 64);
    let blockers: Vec<u64> =
        (0..slots).map(|_| probe.submit(sleep, serde_json::json!({ "ms": 2_000 }), vec![])).collect();
    let queued = probe.submit(sleep, serde_json::json!({ "ms": 1 }), vec![]);
    probe.backend.cancel(queued);
    let outcome = probe.collect(slots + 1, t + Duration::from_secs(2));
    checks.push(match outcome {
        Ok(done) => match done.iter().find(|(id, _)| *id == queued) {
            Some((_, o)) if is_cancelled(o) => {
                Check::pass("cancel-queued", "a queued task cancelled before it started reported cancelled")
            }
            Some((_, o)) => {
                Check::fail("cancel-queued", format!("a task cancelled before it started ended with {o:?}"))
            }
            None => Check::fail("cancel-queued", "no completion for the cancelled task"),
        },
        Err(e) => {
            for b in blockers {
                probe.backend.cancel(b);
            }
            Check::fail("cancel-queued", e)
        }
    });
    checks
}

/// How long in-flight tasks may take to end after `shutdown`.
const SHUTDOWN_LIMIT: Duration = Duration::from_secs(10);

/// Shutdown with tasks running must neither hang nor lose a sink silently.
fn shutdown_with_work_in_flight(suite: &BackendSuite<'_>) -> Check {
    let Some(sleep) = node(suite.nodes, "std.sleep") else {
        return Check::skip("shutdown-in-flight", "std.sleep was not given to the suite");
    };
    let backend = match create(suite, &suite.config) {
        Ok(b) => b,
        Err(e) => return Check::fail("shutdown-in-flight", format!("second create failed: {e}")),
    };
    let mut probe = Probe::new(&backend);
    for _ in 0..4 {
        probe.submit(sleep, serde_json::json!({ "ms": 30_000 }), vec![]);
    }
    std::thread::sleep(Duration::from_millis(100));
    let started = Instant::now();
    backend.shutdown();
    let took = started.elapsed();
    // In-flight work must end promptly: cancelled, finished, or its sink dropped.
    let limit = SHUTDOWN_LIMIT.min(suite.timeout);
    let done = probe.collect(4, limit);
    drop(probe);
    drop(backend);
    match done {
        Ok(_) if took > limit => Check::fail("shutdown-in-flight", format!("shutdown took {took:?}")),
        Ok(done) => {
            let ended: Vec<String> = done
                .iter()
                .map(|(_, o)| match o {
                    Outcome::Completed(Ok(_)) => "ok".to_owned(),
                    Outcome::Completed(Err(e)) => kind_of(e).to_owned(),
                    Outcome::Dropped(_) => "dropped".to_owned(),
                })
                .collect();
            Check::pass(
                "shutdown-in-flight",
                format!("shutdown took {took:?}; in-flight tasks ended: {}", ended.join(", ")),
            )
        }
        Err(e) => Check::fail("shutdown-in-flight", format!("after shutdown, {e}")),
    }
}

/// Summary counts.
pub fn tally(checks: &[Check]) -> (usize, usize, usize) {
    let count = |s: Status| checks.iter().filter(|c| c.status == s).count();
    (count(Status::Pass), count(Status::Fail), count(Status::Skip))
}
