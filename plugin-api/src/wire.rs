//! A task and its result as bytes, for backends that run nodes in another
//! process (a child per task, a remote worker).
//!
//! Frame: a 4-byte magic, a length-prefixed JSON header, then each payload as
//! length-prefixed port, content type and data. Payload bytes are written as
//! they are (no base64), so large inputs stream through a pipe at memory speed.
//!
//! A result frame may be followed by a [`TaskReport`] (since 1.2): when the
//! task began to run and what its node logged. Readers from before stop at
//! the end of the frame and never see it.

use crate::{
    backend::NodeTask,
    error::{PluginError, PluginError_NE},
    payload::Payload,
};
use serde::{Deserialize, Serialize};
use std::io::{self, Read, Write};

const TASK_MAGIC: &[u8; 4] = b"BPT1";
const RESULT_MAGIC: &[u8; 4] = b"BPR1";
const REPORT_MAGIC: &[u8; 4] = b"BPT2";
/// Largest report read (a task log is at most 64 KiB; JSON escapes grow it).
const MAX_REPORT: u64 = 1 << 20;
/// Refuse absurd lengths from a corrupt or hostile stream.
const MAX_HEADER: u64 = 64 << 20;

/// Everything a process needs to run one node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskMessage {
    pub task_id: u64,
    pub attempt: u32,
    pub node_id: String,
    pub node_type: String,
    pub node_version: String,
    pub settings: String,
    pub working_dir: String,
    pub timeout_ms: u64,
    #[serde(skip)]
    pub inputs: Vec<Payload>,
}

impl TaskMessage {
    /// The self-contained part of a task (the in-process compute pointer stays behind).
    pub fn from_task(task: NodeTask) -> Self {
        Self {
            task_id: task.task_id,
            attempt: task.attempt,
            node_id: task.node_id.into(),
            node_type: task.node_type.into(),
            node_version: task.node_version.into(),
            settings: task.settings.into(),
            working_dir: task.working_dir.into(),
            timeout_ms: task.timeout_ms,
            inputs: task.inputs.into_vec(),
        }
    }

    pub fn write_to(&self, out: &mut impl Write) -> io::Result<()> {
        write_frame(out, TASK_MAGIC, self, &self.inputs)
    }

    pub fn read_from(input: &mut impl Read) -> io::Result<Self> {
        let (mut message, payloads): (Self, _) = read_frame(input, TASK_MAGIC)?;
        message.inputs = payloads;
        Ok(message)
    }
}

#[derive(Serialize, Deserialize)]
struct ResultHeader {
    ok: bool,
    kind: String,
    message: String,
}

/// Writes a node's result.
pub fn write_result(out: &mut impl Write, result: &Result<Vec<Payload>, PluginError_NE>) -> io::Result<()> {
    match result {
        Ok(outputs) => write_frame(
            out,
            RESULT_MAGIC,
            &ResultHeader { ok: true, kind: String::new(), message: String::new() },
            outputs,
        ),
        Err(e) => {
            let (kind, message) = match e.as_enum() {
                Ok(known) => (known.kind_name().to_owned(), error_message(known)),
                Err(_) => ("unknown".to_owned(), e.to_string()),
            };
            write_frame(out, RESULT_MAGIC, &ResultHeader { ok: false, kind, message }, &[])
        }
    }
}

/// Reads a node's result.
pub fn read_result(input: &mut impl Read) -> io::Result<Result<Vec<Payload>, PluginError_NE>> {
    let (header, payloads): (ResultHeader, _) = read_frame(input, RESULT_MAGIC)?;
    if header.ok {
        return Ok(Ok(payloads));
    }
    let m = header.message;
    Ok(Err(match header.kind.as_str() {
        "panicked" => PluginError::panicked(m),
        "invalid-config" => PluginError::invalid_config(m),
        "infrastructure" => PluginError::infrastructure(m),
        "cancelled" => PluginError::cancelled(),
        "timed-out" => PluginError::timed_out(m),
        "unsupported" => PluginError::unsupported(m),
        _ => PluginError::node_failed(m),
    }))
}

fn error_message(error: &PluginError) -> String {
    match error {
        PluginError::NodeFailed { message }
        | PluginError::Panicked { message }
        | PluginError::InvalidConfig { message }
        | PluginError::Infrastructure { message }
        | PluginError::TimedOut { message }
        | PluginError::Unsupported { message } => message.to_string(),
        PluginError::Cancelled => String::new(),
    }
}

fn write_bytes(out: &mut impl Write, bytes: &[u8]) -> io::Result<()> {
    out.write_all(&(bytes.len() as u64).to_le_bytes())?;
    out.write_all(bytes)
}

fn read_bytes(input: &mut impl Read, limit: u64) -> io::Result<Vec<u8>> {
    let mut len = [0u8; 8];
    input.read_exact(&mut len)?;
    let len = u64::from_le_bytes(len);
    if len > limit {
        return Err(io::Error::new(io::ErrorKind::InvalidData, format!("frame field of {len} bytes exceeds {limit}")));
    }
    let mut bytes = Vec::new();
    input.take(len).read_to_end(&mut bytes)?;
    if bytes.len() as u64 != len {
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "truncated frame"));
    }
    Ok(bytes)
}

fn write_frame<H: Serialize>(
    out: &mut impl Write,
    magic: &[u8; 4],
    header: &H,
    payloads: &[Payload],
) -> io::Result<()> {
    out.write_all(magic)?;
    write_bytes(out, &serde_json::to_vec(header).map_err(io::Error::other)?)?;
    out.write_all(&(payloads.len() as u64).to_le_bytes())?;
    for p in payloads {
        write_bytes(out, p.port.as_bytes())?;
        write_bytes(out, p.content_type.as_bytes())?;
        write_bytes(out, &p.data)?;
        write_bytes(out, p.object_ref.as_bytes())?;
    }
    out.flush()
}

fn read_frame<H: for<'de> Deserialize<'de>>(input: &mut impl Read, magic: &[u8; 4]) -> io::Result<(H, Vec<Payload>)> {
    let mut found = [0u8; 4];
    input.read_exact(&mut found)?;
    if &found != magic {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "not a Backplane task frame (bad magic)"));
    }
    let header = serde_json::from_slice(&read_bytes(input, MAX_HEADER)?).map_err(io::Error::other)?;
    let mut count = [0u8; 8];
    input.read_exact(&mut count)?;
    let count = u64::from_le_bytes(count);
    let text = |bytes: Vec<u8>| String::from_utf8(bytes).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e));
    let mut payloads = Vec::new();
    for _ in 0..count {
        let port = text(read_bytes(input, MAX_HEADER)?)?;
        let content_type = text(read_bytes(input, MAX_HEADER)?)?;
        let data = read_bytes(input, u64::MAX)?;
        let object_ref = text(read_bytes(input, MAX_HEADER)?)?;
        payloads.push(Payload {
            port: port.into(),
            content_type: content_type.into(),
            data: data.into(),
            object_ref: object_ref.into(),
            ..Payload::default()
        });
    }
    Ok((header, payloads))
}

/// What a process that ran a task tells besides its result.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TaskReport {
    /// When the task began to run, in microseconds since the Unix epoch (0: unknown).
    pub started_unix_us: u64,
    /// What its node logged: level and line, bounded as [`TaskLog`](crate::TaskLog) bounds it.
    pub logs: Vec<(u8, String)>,
}

impl TaskReport {
    /// Microseconds since the Unix epoch, now.
    pub fn now_us() -> u64 {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64)
    }

    /// A report of a task that started at `started_unix_us` and logged what `log` kept.
    pub fn of(started_unix_us: u64, log: &crate::TaskLog) -> Self {
        Self { started_unix_us, logs: log.take().into_iter().map(|l| (l.level.0, l.message)).collect() }
    }

    /// Writes it after a result frame.
    pub fn write_to(&self, out: &mut impl Write) -> io::Result<()> {
        out.write_all(REPORT_MAGIC)?;
        write_bytes(out, &serde_json::to_vec(self).map_err(io::Error::other)?)
    }

    /// The report after a result frame, if `rest` (what follows the frame)
    /// holds one; `None` from runners before 1.2, and for damaged bytes.
    pub fn read_from(rest: &mut impl Read) -> Option<Self> {
        let mut magic = [0; 4];
        rest.read_exact(&mut magic).ok()?;
        if &magic != REPORT_MAGIC {
            return None;
        }
        serde_json::from_slice(&read_bytes(rest, MAX_REPORT).ok()?).ok()
    }

    /// Hands it to the host through `sink`, before `sink.complete`.
    pub fn forward(&self, sink: &crate::CompletionSinkBox) {
        if self.started_unix_us > 0 {
            sink.started(self.started_unix_us);
        }
        for (level, message) in &self.logs {
            sink.log(crate::log::LogLevel(*level), message.as_str().into());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_round_trips() {
        let message = TaskMessage {
            task_id: 7,
            attempt: 2,
            node_id: "n".into(),
            node_type: "std.noop".into(),
            node_version: "1.0.0".into(),
            settings: "{}".into(),
            working_dir: "/tmp".into(),
            timeout_ms: 5,
            inputs: vec![Payload::text("in", "hello".into()), Payload::bytes("in", "x/y", vec![0, 255])],
        };
        let mut bytes = Vec::new();
        message.write_to(&mut bytes).unwrap();
        assert_eq!(TaskMessage::read_from(&mut bytes.as_slice()).unwrap(), message);
    }

    #[test]
    fn results_round_trip_including_error_kinds() {
        for result in [
            Ok(vec![Payload::text("out", "x".into())]),
            Err(PluginError::panicked("boom")),
            Err(PluginError::cancelled()),
            Err(PluginError::node_failed("exit 3")),
        ] {
            let mut bytes = Vec::new();
            write_result(&mut bytes, &result).unwrap();
            assert_eq!(read_result(&mut bytes.as_slice()).unwrap(), result);
        }
    }

    #[test]
    fn a_report_follows_a_result_and_older_readers_stop_before_it() {
        let report = TaskReport { started_unix_us: 42, logs: vec![(3, "said \"hi\"\nand more".into())] };
        let mut frame = Vec::new();
        write_result(&mut frame, &Ok(vec![Payload::text("out", "x".into())])).unwrap();
        report.write_to(&mut frame).unwrap();
        let mut rest = &frame[..];
        let result = read_result(&mut rest).unwrap().unwrap();
        assert_eq!(result[0].data.as_slice(), b"x");
        assert_eq!(TaskReport::read_from(&mut rest), Some(report));
        // A result without one (from a runner before 1.2), or with garbage after it.
        let mut plain = Vec::new();
        write_result(&mut plain, &Ok(Vec::new())).unwrap();
        let mut rest = &plain[..];
        read_result(&mut rest).unwrap().unwrap();
        assert_eq!(TaskReport::read_from(&mut rest), None);
        assert_eq!(TaskReport::read_from(&mut &b"BPT2\xff\xff\xff\xff\xff\xff\xff\xff"[..]), None);
    }

    #[test]
    fn garbage_and_truncation_are_errors_not_panics() {
        assert!(TaskMessage::read_from(&mut &b"nope"[..]).is_err());
        let mut bytes = Vec::new();
        write_result(&mut bytes, &Ok(vec![Payload::text("out", "abcdef".into())])).unwrap();
        bytes.truncate(bytes.len() - 3);
        assert!(read_result(&mut bytes.as_slice()).is_err());
    }
}
