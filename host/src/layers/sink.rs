//! The host's completion sink: a backend's way back into the engine's channel.

use super::credits::Credits;
use backplane_plugin_api::{
    CompletionSink, CompletionSink_TO, CompletionSinkBox, Payload, PluginError, PluginError_NE, PluginResult, PortSpec,
    TaskLog,
    abi_stable::{
        sabi_trait::TD_Opaque,
        std_types::{RStr, RVec},
    },
    log::LogLevel,
    stream,
    task_log::LogLine,
};
use std::{
    cell::{Cell, RefCell},
    sync::Arc,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};
use tokio::sync::mpsc::UnboundedSender;

/// What a task's sink sends the engine: items while it runs, then its completion.
pub enum Message {
    Completion(Completion),
    Item(StreamItem),
}

impl From<Completion> for Message {
    fn from(completion: Completion) -> Self {
        Self::Completion(completion)
    }
}

/// One item a task emitted on a stream that per-item consumers read. A
/// task's items reach the engine in order, and before its completion.
pub struct StreamItem {
    pub node: u32,
    pub task_id: u64,
    /// The index of the stream among the node type's outputs.
    pub output: u32,
    pub payload: Payload,
}

/// A stream output whose items go to the engine as they come.
pub struct Feed {
    /// The index of the stream among the node type's outputs.
    pub output: u32,
    /// One window per `each` edge: an item is sent once every edge has room.
    pub credits: Vec<Arc<Credits>>,
    /// Also accumulate the items, for consumers that read the whole stream.
    pub accumulate: bool,
}

/// What a backend reported for one task.
pub struct Completion {
    pub node: u32,
    /// Which attempt this is the result of.
    pub task_id: u64,
    pub result: Result<RVec<Payload>, PluginError_NE>,
    /// The backend lost the task (no result at all): a layer gave up on it,
    /// or the sink was dropped. Always the infrastructure's failure.
    pub lost: bool,
    /// When the backend said the task began to run (backends before 1.2,
    /// and layers that answer for a task, say nothing).
    pub started: Option<Instant>,
    /// What the task's node logged, bounded as [`TaskLog`] bounds it.
    pub logs: Vec<LogLine>,
}

impl Completion {
    /// A completion the host makes up for a task (a timeout, a lost sink).
    pub fn synthetic(node: u32, task_id: u64, result: Result<RVec<Payload>, PluginError_NE>, lost: bool) -> Self {
        Self { node, task_id, result, lost, started: None, logs: Vec::new() }
    }
}

/// Sends the result to the engine's channel. Dropped without `complete`
/// (a buggy or crashed backend), it sends an infrastructure error instead,
/// so the run never waits for a task nobody will finish.
struct EngineSink {
    node: u32,
    task_id: u64,
    channel: UnboundedSender<Message>,
    completed: bool,
    started: Cell<Option<Instant>>,
    log: TaskLog,
    /// The node type's outputs: which of them are streams.
    outputs: &'static [PortSpec],
    /// By output index: the accumulated value of each stream output so far.
    streams: RefCell<Vec<Option<stream::Accumulator>>>,
    /// The streams per-item consumers read.
    feeds: Vec<Feed>,
}

impl CompletionSink for EngineSink {
    fn complete(mut self, result: PluginResult<RVec<Payload>>) {
        self.completed = true;
        let result = result.into_result().map(|outputs| self.with_accumulated_streams(outputs));
        // The engine may have stopped listening (run over); nothing to do then.
        let _ = self.channel.send(Message::Completion(Completion {
            node: self.node,
            task_id: self.task_id,
            result,
            lost: false,
            started: self.started.get(),
            logs: if self.log.is_empty() { Vec::new() } else { self.log.take() },
        }));
    }

    // Added in plugin-api 1.2.
    fn started(&self, at_unix_us: u64) {
        self.note_start(at_unix_us);
    }
    fn log(&self, level: LogLevel, message: RStr<'_>) {
        self.log.push(level, message.as_str());
    }
    // Added in plugin-api 1.3.
    fn emit(&self, item: Payload) -> PluginResult<()> {
        let index = self.outputs.iter().position(|port| port.name == item.port);
        let Some((index, port)) = index.map(|i| (i, &self.outputs[i])).filter(|(_, port)| port.is_stream()) else {
            return PluginResult::RErr(PluginError::node_failed(format!(
                "the node emitted an item on `{}`, which its type does not declare as a stream output (streams: {})",
                item.port,
                self.stream_names()
            )));
        };
        let Some(feed) = self.feeds.iter().find(|feed| feed.output as usize == index) else {
            return self.accumulate(index, port, &item);
        };
        for credits in &feed.credits {
            if credits.take().is_err() {
                return PluginResult::RErr(PluginError::cancelled());
            }
        }
        if feed.accumulate
            && let PluginResult::RErr(error) = self.accumulate(index, port, &item)
        {
            return PluginResult::RErr(error);
        }
        let item = StreamItem { node: self.node, task_id: self.task_id, output: index as u32, payload: item };
        // The engine may have stopped listening (run over); the task ends on its own.
        let _ = self.channel.send(Message::Item(item));
        PluginResult::ROk(())
    }
}

impl EngineSink {
    /// Appends `item` to the accumulated value of output `index`.
    fn accumulate(&self, index: usize, port: &PortSpec, item: &Payload) -> PluginResult<()> {
        let mut streams = self.streams.borrow_mut();
        if streams.len() <= index {
            streams.resize_with(index + 1, || None);
        }
        let value = streams[index].get_or_insert_with(|| stream::Accumulator::new(&port.content_type));
        match value.push(&item.data) {
            Ok(()) => PluginResult::ROk(()),
            Err(why) => PluginResult::RErr(PluginError::node_failed(format!("stream `{}`: {why}", port.name))),
        }
    }

    /// `outputs` plus, for each stream output the node did not return a
    /// final value on, the accumulated value of its items.
    fn with_accumulated_streams(&self, mut outputs: RVec<Payload>) -> RVec<Payload> {
        let mut streams = self.streams.take();
        for (index, port) in self.outputs.iter().enumerate().filter(|(_, port)| port.is_stream()) {
            if outputs.iter().any(|p| p.port == port.name) {
                continue;
            }
            let value = streams.get_mut(index).and_then(Option::take);
            let value = value.unwrap_or_else(|| stream::Accumulator::new(&port.content_type));
            outputs.push(value.finish(&port.name, &port.content_type));
        }
        outputs
    }

    fn stream_names(&self) -> String {
        let names: Vec<&str> = self.outputs.iter().filter(|p| p.is_stream()).map(|p| p.name.as_str()).collect();
        if names.is_empty() { "none".to_owned() } else { names.join(", ") }
    }

    fn note_start(&self, at_unix_us: u64) {
        if self.started.get().is_none() {
            self.started.set(Some(instant_of(at_unix_us)));
        }
    }
}

/// The instant of a wall-clock time another process reported (0: now); one
/// in the future (a skewed clock) reads as now.
fn instant_of(at_unix_us: u64) -> Instant {
    let now = Instant::now();
    if at_unix_us == 0 {
        return now;
    }
    let at = UNIX_EPOCH + Duration::from_micros(at_unix_us);
    match SystemTime::now().duration_since(at) {
        Ok(ago) => now.checked_sub(ago).unwrap_or(now),
        Err(_) => now,
    }
}

impl Drop for EngineSink {
    fn drop(&mut self) {
        if !self.completed {
            let _ = self.channel.send(
                Completion::synthetic(
                    self.node,
                    self.task_id,
                    Err(PluginError::infrastructure(
                        "the backend dropped the task's completion sink without reporting a result",
                    )),
                    true,
                )
                .into(),
            );
        }
    }
}

/// The sink of task `task_id` (an attempt of `node`, whose type has
/// `outputs`); the items of the streams in `feeds` go to the engine.
pub fn completion_sink(
    node: u32,
    task_id: u64,
    outputs: &'static [PortSpec],
    feeds: Vec<Feed>,
    channel: UnboundedSender<Message>,
) -> CompletionSinkBox {
    let sink = EngineSink {
        node,
        task_id,
        channel,
        completed: false,
        started: Cell::new(None),
        log: TaskLog::new(),
        outputs,
        streams: RefCell::new(Vec::new()),
        feeds,
    };
    CompletionSink_TO::from_value(sink, TD_Opaque)
}

#[cfg(test)]
mod tests {
    use super::*;
    use backplane_plugin_api::{abi_stable::std_types::RResult, describe, payload};

    fn completion(received: &mut tokio::sync::mpsc::UnboundedReceiver<Message>) -> Completion {
        match received.try_recv().expect("a message") {
            Message::Completion(completion) => completion,
            Message::Item(item) => panic!("an item on `{}` where a completion was due", item.payload.port),
        }
    }

    #[test]
    fn fed_items_reach_the_engine_in_order_before_the_completion_and_wait_for_credits() {
        let (sender, mut received) = tokio::sync::mpsc::unbounded_channel();
        let credits = Arc::new(Credits::new(2));
        let feeds = vec![Feed { output: 0, credits: vec![credits.clone()], accumulate: false }];
        let sink = completion_sink(3, 7, ports(), feeds, sender);
        for item in ["a\n", "b\n"] {
            assert!(sink.emit(Payload::text("items", item.into())).is_ok());
        }
        credits.give(1);
        assert!(sink.emit(Payload::text("items", "c\n".into())).is_ok());
        credits.close();
        let error = sink.emit(Payload::text("items", "d\n".into())).into_result().unwrap_err();
        assert_eq!(describe(&error), "cancelled", "a closed window ends the producer");
        sink.complete(RResult::ROk(RVec::new()));
        for expected in ["a\n", "b\n", "c\n"] {
            match received.try_recv().unwrap() {
                Message::Item(item) => assert_eq!(
                    (item.node, item.task_id, item.output, item.payload.as_text().unwrap()),
                    (3, 7, 0, expected)
                ),
                Message::Completion(_) => panic!("the completion came before item {expected:?}"),
            }
        }
        let outputs = completion(&mut received).result.unwrap();
        let items = outputs.iter().find(|p| p.port == "items").unwrap();
        assert_eq!(items.data.len(), 0, "items no one reads whole are not accumulated");
    }

    fn ports() -> &'static [PortSpec] {
        Box::leak(Box::new([PortSpec::text("items").stream(), PortSpec::text("summary")]))
    }

    #[test]
    fn items_arrive_as_the_accumulated_value_unless_the_node_returned_one() {
        let (sender, mut received) = tokio::sync::mpsc::unbounded_channel();
        let sink = completion_sink(3, 7, ports(), Vec::new(), sender.clone());
        for item in ["a\n", "b\n"] {
            assert!(sink.emit(Payload::text("items", item.into())).is_ok());
        }
        sink.complete(RResult::ROk(vec![Payload::text("summary", "2".into())].into()));
        let outputs = completion(&mut received).result.unwrap();
        let text = |port: &str| outputs.iter().find(|p| p.port == port).map(|p| p.as_text().unwrap().to_owned());
        assert_eq!((text("items").as_deref(), text("summary").as_deref()), (Some("a\nb\n"), Some("2")));
        assert_eq!(outputs.iter().find(|p| p.port == "items").unwrap().content_type, payload::TEXT);

        // A final value on the stream port itself wins; no items, an empty value.
        let sink = completion_sink(3, 8, ports(), Vec::new(), sender.clone());
        assert!(sink.emit(Payload::text("items", "dropped\n".into())).is_ok());
        sink.complete(RResult::ROk(vec![Payload::text("items", "final".into())].into()));
        let outputs = completion(&mut received).result.unwrap();
        assert_eq!(outputs.len(), 1);
        assert_eq!(outputs[0].as_text().unwrap(), "final");
        let sink = completion_sink(3, 9, ports(), Vec::new(), sender);
        sink.complete(RResult::ROk(RVec::new()));
        let outputs = completion(&mut received).result.unwrap();
        assert_eq!((outputs[0].port.as_str(), outputs[0].data.len()), ("items", 0));
    }

    #[test]
    fn a_json_stream_refuses_an_item_that_is_not_json() {
        let ports: &'static [PortSpec] = Box::leak(Box::new([PortSpec::new("files", payload::JSON).stream()]));
        let (sender, _received) = tokio::sync::mpsc::unbounded_channel();
        let sink = completion_sink(0, 1, ports, Vec::new(), sender);
        assert!(sink.emit(Payload::bytes("files", payload::JSON, b"{}".to_vec())).is_ok());
        let error = sink.emit(Payload::text("files", "plain".into())).into_result().unwrap_err();
        assert!(error.to_string().starts_with("stream `files`: item 2 is not one JSON value"), "{error}");
    }

    #[test]
    fn an_item_on_a_port_that_is_no_stream_is_refused_naming_the_streams() {
        let (sender, _received) = tokio::sync::mpsc::unbounded_channel();
        let sink = completion_sink(0, 1, ports(), Vec::new(), sender);
        let error = sink.emit(Payload::text("summary", "x".into())).into_result().unwrap_err();
        assert_eq!(
            error.to_string(),
            "the node emitted an item on `summary`, which its type does not declare as a stream output (streams: items)"
        );
    }
}
