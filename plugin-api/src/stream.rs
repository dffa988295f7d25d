//! Streaming outputs (added in 1.3).
//!
//! A node type declares an output port with [`PortSpec::stream`]; while it
//! computes, it hands on items one at a time with
//! [`Context::emit`](crate::node::Context::emit), and it may also return a
//! final value on any port. In-process backends pass each item to the
//! task's sink ([`CompletionSink::emit`](crate::CompletionSink::emit));
//! hosts and backends before 1.3 refuse with an `unsupported` error, which
//! the node sees as the error of its `emit`.
//!
//! A consumer that reads a stream port as an ordinary input gets its
//! *accumulated value* ([`accumulate`]): a JSON array of the items when the
//! port carries JSON, the items' bytes one after another otherwise (text
//! chunks give the text back). A final value the node returned on the
//! stream port itself takes the accumulated value's place.
//!
//! [`PortSpec::stream`]: crate::node::PortSpec::stream

use crate::payload::{self, Payload};

/// The [`PortSpec`](crate::PortSpec) extension key that marks a stream output.
pub const STREAM_KEY: &str = "stream";

/// Why a context cannot take items: it belongs to a backend that does not stream.
pub const CANNOT_STREAM: &str = "this backend cannot run streaming outputs (it was built against plugin-api \
     before 1.3, or runs tasks where items cannot reach the host); route the node to a backend with the \
     `streaming` capability, such as `local`";

/// Why a sink cannot take items: the host predates streaming.
pub const HOST_CANNOT_STREAM: &str =
    "this host was built against plugin-api before 1.3 and cannot take streamed items; upgrade backplane";

/// Whether a content type is JSON (its items accumulate into an array).
pub fn is_json(content_type: &str) -> bool {
    content_type.split(';').next().is_some_and(|base| base.trim().eq_ignore_ascii_case(payload::JSON))
}

/// The accumulated value of a stream port's `items`, in order, as one
/// payload on `port` with the port's `content_type`: a JSON array of the
/// items for JSON, their bytes one after another for anything else.
/// (Items that are not JSON on a JSON port are left out; [`Accumulator`]
/// refuses them one by one instead.)
pub fn accumulate<'a>(port: &str, content_type: &str, items: impl Iterator<Item = &'a Payload>) -> Payload {
    let mut value = Accumulator::new(content_type);
    for item in items {
        let _ = value.push(&item.data);
    }
    value.finish(port, content_type)
}

/// Builds a stream's accumulated value item by item, in one buffer: what
/// the items cost is their bytes, not one payload each.
#[derive(Debug, Default)]
pub struct Accumulator {
    json: bool,
    data: Vec<u8>,
    items: usize,
}

impl Accumulator {
    /// An empty value for a port of `content_type`.
    pub fn new(content_type: &str) -> Self {
        let json = is_json(content_type);
        Self { json, data: if json { b"[".to_vec() } else { Vec::new() }, items: 0 }
    }

    /// Appends one item. On a JSON port the item must be one JSON value, or
    /// the array would not parse.
    pub fn push(&mut self, item: &[u8]) -> Result<(), String> {
        if self.json {
            serde_json::from_slice::<serde::de::IgnoredAny>(item)
                .map_err(|e| format!("item {} is not one JSON value ({e})", self.items + 1))?;
            if self.items > 0 {
                self.data.push(b',');
            }
        }
        self.data.extend_from_slice(item);
        self.items += 1;
        Ok(())
    }

    /// Items pushed so far.
    pub fn items(&self) -> usize {
        self.items
    }

    /// The accumulated value as a payload on `port`.
    pub fn finish(mut self, port: &str, content_type: &str) -> Payload {
        if self.json {
            self.data.push(b']');
        }
        Payload::bytes(port, content_type, self.data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_items_give_the_text_back_and_json_items_an_array() {
        let text = [Payload::text("lines", "a\n".into()), Payload::text("lines", "b\n".into())];
        let value = accumulate("lines", payload::TEXT, text.iter());
        assert_eq!((value.port.as_str(), value.as_text().unwrap()), ("lines", "a\nb\n"));

        let json = [
            Payload::bytes("files", payload::JSON, b"{\"a\":1}".to_vec()),
            Payload::bytes("files", payload::JSON, b"2".to_vec()),
        ];
        assert_eq!(
            accumulate("files", "application/json; charset=utf-8", json.iter()).as_text().unwrap(),
            "[{\"a\":1},2]"
        );
        assert_eq!(accumulate("files", payload::JSON, [].iter()).as_text().unwrap(), "[]");
        assert_eq!(accumulate("lines", payload::TEXT, [].iter()).data.len(), 0);
    }

    #[test]
    fn a_json_stream_refuses_an_item_that_is_not_one_json_value() {
        let mut value = Accumulator::new(payload::JSON);
        assert!(value.push(b"{\"a\": 1}").is_ok());
        assert_eq!(value.push(b"").unwrap_err().split(' ').take(2).collect::<Vec<_>>(), ["item", "2"]);
        assert!(value.push(b"1 2").unwrap_err().contains("is not one JSON value"));
        assert!(value.push(b"[3]").is_ok());
        assert_eq!(value.items(), 2);
        assert_eq!(value.finish("p", payload::JSON).as_text().unwrap(), "[{\"a\": 1},[3]]");
    }

    #[test]
    fn a_stream_port_says_so() {
        let port = crate::PortSpec::text("lines").stream();
        assert!(port.is_stream());
        assert!(!crate::PortSpec::text("text").is_stream());
    }
}
