//! A task's own log: the lines a node logs while it computes, kept with its
//! task so the host can show them per node and attempt.
//!
//! It is bounded: the first [`HEAD_BYTES`] and the last [`TAIL_BYTES`] of a
//! task's lines are kept (a line over [`LINE_BYTES`] is cut), and one line
//! says how much was left out between them, so a node that logs without end
//! costs the same memory as one that logs 64 KiB. In-process backends keep
//! one with [`run_compute_logged`](crate::run_compute_logged) and hand it to
//! the host with [`TaskLog::forward`]; the host bounds what it receives the
//! same way.

use crate::{backend::CompletionSinkBox, log::LogLevel};
use std::{collections::VecDeque, sync::Mutex};

/// Bytes kept from the start of a task's log.
pub const HEAD_BYTES: usize = 16 * 1024;
/// Bytes kept from the end of a task's log.
pub const TAIL_BYTES: usize = 48 * 1024;
/// Longest line kept whole; longer ones are cut (on a character boundary).
pub const LINE_BYTES: usize = 8 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    pub level: LogLevel,
    pub message: String,
}

/// The bounded log of one task; safe to share between the threads of a node.
#[derive(Debug, Default)]
pub struct TaskLog(Mutex<Lines>);

#[derive(Debug, Default)]
struct Lines {
    head: Vec<LogLine>,
    head_bytes: usize,
    tail: VecDeque<LogLine>,
    tail_bytes: usize,
    dropped_lines: u64,
    dropped_bytes: u64,
}

impl TaskLog {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&self, level: LogLevel, message: &str) {
        let message = cut(message, LINE_BYTES);
        let mut lines = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let size = message.len() + 1;
        if lines.head_bytes + size <= HEAD_BYTES && lines.tail.is_empty() {
            lines.head_bytes += size;
            lines.head.push(LogLine { level, message });
            return;
        }
        lines.tail_bytes += size;
        lines.tail.push_back(LogLine { level, message });
        while lines.tail_bytes > TAIL_BYTES {
            let Some(old) = lines.tail.pop_front() else { break };
            lines.tail_bytes -= old.message.len() + 1;
            lines.dropped_lines += 1;
            lines.dropped_bytes += old.message.len() as u64 + 1;
        }
    }

    pub fn is_empty(&self) -> bool {
        let lines = self.0.lock().unwrap_or_else(|e| e.into_inner());
        lines.head.is_empty() && lines.tail.is_empty()
    }

    /// Takes what was kept, in order, with a line in place of what was not.
    pub fn take(&self) -> Vec<LogLine> {
        let lines = std::mem::take(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()));
        let mut out = lines.head;
        if lines.dropped_lines > 0 {
            out.push(LogLine {
                level: LogLevel::WARN,
                message: format!(
                    "[{} lines ({} bytes) of this task's log were not kept; the first {} KiB and the last {} KiB are]",
                    lines.dropped_lines,
                    lines.dropped_bytes,
                    HEAD_BYTES / 1024,
                    TAIL_BYTES / 1024
                ),
            });
        }
        out.extend(lines.tail);
        out
    }

    /// Hands what was kept to the host, before `sink.complete`.
    pub fn forward(&self, sink: &CompletionSinkBox) {
        for line in self.take() {
            sink.log(line.level, line.message.as_str().into());
        }
    }
}

/// `text`, cut to at most `max` bytes on a character boundary.
fn cut(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… [line cut at {max} bytes]", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_head_and_the_tail_and_says_what_it_left_out() {
        let log = TaskLog::new();
        let line = "x".repeat(1023);
        for i in 0..200 {
            log.push(LogLevel::INFO, &format!("{i:03}{}", &line[3..]));
        }
        let lines = log.take();
        let kept: usize = lines.iter().map(|l| l.message.len() + 1).sum();
        assert!(kept <= HEAD_BYTES + TAIL_BYTES + 200, "{kept}");
        assert!(lines[0].message.starts_with("000"));
        assert!(lines.last().unwrap().message.starts_with("199"));
        let marker = lines.iter().find(|l| l.message.contains("were not kept")).expect("a marker line");
        assert_eq!(marker.level, LogLevel::WARN);
        // 16 in the head, 48 in the tail: 136 left out.
        assert!(marker.message.starts_with("[136 lines (139264 bytes)"), "{}", marker.message);
        assert!(log.is_empty(), "take empties it");
    }

    #[test]
    fn a_long_line_is_cut_on_a_character_boundary() {
        let log = TaskLog::new();
        log.push(LogLevel::ERROR, &"é".repeat(LINE_BYTES));
        let lines = log.take();
        assert!(lines[0].message.len() < LINE_BYTES + 40);
        assert!(lines[0].message.ends_with(&format!("… [line cut at {LINE_BYTES} bytes]")));
    }
}
