use super::*;
use crate::report::RunReport;
use std::{
    path::PathBuf,
    sync::{Arc, Mutex},
};

fn empty_plan() -> Plan {
    Plan {
        name: "t".into(),
        working_dir: PathBuf::from("/"),
        types: Vec::new(),
        nodes: Vec::new(),
        outputs: Vec::new(),
        instances: Vec::new(),
        rule_requirements: Vec::new(),
        params: Vec::new(),
        partial: None,
    }
}

fn report() -> RunReport {
    RunReport {
        workflow: "t".into(),
        nodes: 0,
        succeeded: 0,
        cached: 0,
        executed: 0,
        failed: 0,
        cancelled: 0,
        not_started: 0,
        abandoned: 0,
        elapsed: Duration::from_millis(5),
        backends: Vec::new(),
        rerouted: Vec::new(),
        skipped: 0,
        retries: 0,
        item_tasks: 0,
        item_cache_hits: 0,
        timeouts: 0,
        breakers: Vec::new(),
        interrupted: false,
        failure: None,
        failures: Vec::new(),
    }
}

/// Notes the nodes of the `Queued` events it sees, and `finish`.
struct Recorder(Arc<Mutex<Vec<String>>>);

impl RunObserver for Recorder {
    fn event(&mut self, _plan: &Plan, event: &RunEvent) {
        if let RunEvent::Queued { node, .. } = event {
            self.0.lock().unwrap().push(node.to_string());
        }
    }
    fn finish(&mut self, _plan: &Plan, report: &RunReport) -> Result<(), String> {
        self.0.lock().unwrap().push(format!("finish {}", report.elapsed.as_millis()));
        Err("could not write".into())
    }
}

/// Panics on its third event.
struct Panicky(usize);

impl RunObserver for Panicky {
    fn event(&mut self, _plan: &Plan, _event: &RunEvent) {
        self.0 += 1;
        assert!(self.0 < 3, "observer bug");
    }
}

#[test]
fn every_event_reaches_every_observer_in_order_across_batches_and_a_panicking_one_is_dropped() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let plan = empty_plan();
    let count = BATCH * 2 + 7;
    let observers: Vec<Box<dyn RunObserver>> = vec![Box::new(Panicky(0)), Box::new(Recorder(seen.clone()))];
    let (report, problems) = observe(
        &plan,
        observers,
        |channel| {
            let mut buffer = EventBuffer::new(channel);
            for node in 0..count as u32 {
                buffer.push(RunEvent::Queued { node, instance: 0, at: Duration::ZERO });
            }
            drop(buffer);
            report()
        },
        |report| report,
    );
    assert_eq!(report.elapsed, Duration::from_millis(5));
    let seen = seen.lock().unwrap();
    let expected: Vec<String> = (0..count).map(|n| n.to_string()).chain(["finish 5".to_owned()]).collect();
    assert_eq!(*seen, expected);
    assert_eq!(problems, ["an observer of the run panicked and was stopped", "could not write"]);
}

fn dispatched(node: u32, instance: u32, at: f64) -> RunEvent {
    RunEvent::Dispatched { node, instance, attempt: 1, at: Duration::from_secs_f64(at), bytes_in: 3 }
}

fn finished(node: u32, instance: u32, at: f64) -> RunEvent {
    RunEvent::Finished {
        node,
        instance,
        attempt: 1,
        at: Duration::from_secs_f64(at),
        status: AttemptStatus::Succeeded,
        bytes_out: 5,
        error: None,
    }
}

#[test]
fn the_timeline_pairs_events_into_attempts_and_packs_overlapping_ones_into_lanes() {
    let mut timeline = Timeline::new();
    let events = [
        RunEvent::RunStarted { at: SystemTime::UNIX_EPOCH, nodes: 4 },
        dispatched(0, 0, 0.0),
        dispatched(1, 0, 0.0),
        RunEvent::Started { node: 1, attempt: 1, at: Duration::from_secs_f64(0.5) },
        finished(0, 0, 1.0),
        dispatched(2, 0, 1.0),
        finished(1, 0, 2.0),
        finished(2, 0, 3.0),
        // Another instance, never finished (abandoned at the end).
        dispatched(3, 1, 0.5),
        RunEvent::RunFinished { at: Duration::from_secs(4) },
    ];
    let ended: Vec<usize> = events.iter().filter_map(|e| timeline.record(e)).collect();
    assert_eq!(ended, [0, 1, 2]);
    let rows = &timeline.attempts;
    assert_eq!(rows[1].run_start(), 0.5, "the backend's word");
    assert_eq!(rows[0].run_start(), 0.0, "no word: from dispatch");
    assert_eq!((rows[2].bytes_in, rows[2].bytes_out), (3, 5));
    assert_eq!(rows[3].status_name(), "abandoned");
    let (lanes, counts) = timeline.lanes(2);
    // Node 2 starts when node 0 ends: it reuses lane 0.
    assert_eq!(lanes, [0, 1, 0, 0]);
    assert_eq!(counts, [2, 1]);
}
