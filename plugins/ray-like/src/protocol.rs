//! Messages between the plugin and its Python driver over a Unix socket:
//! a big-endian `u32` length, then a msgpack map with named fields and a
//! `type` tag (`driver/backplane_ray_driver.py` is the other side).

use serde::{Deserialize, Serialize};
use std::{
    collections::{BTreeMap, HashMap},
    io::{self, Read, Write},
};

/// Frames larger than this are refused (a corrupt stream, not a payload).
const MAX_FRAME: u32 = 1 << 30;

/// An input: its bytes, or the id of a Ray object the driver holds.
#[derive(Serialize)]
pub struct InputOut<'a> {
    pub port: &'a str,
    pub content_type: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<&'a serde_bytes::Bytes>,
    #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
    pub reference: Option<&'a str>,
}

#[derive(Serialize, Default)]
pub struct ResourcesOut {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub num_cpus: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub num_gpus: Option<f64>,
    pub custom: BTreeMap<String, f64>,
}

/// Task details the driver forwards untouched to the node runner.
#[derive(Serialize)]
pub struct ContextOut<'a> {
    pub node_id: &'a str,
    pub node_version: &'a str,
    pub working_dir: &'a str,
    pub timeout_ms: u64,
    /// The host's attempt (Ray's own retries of it keep the number).
    pub attempt: u32,
}

// Built and encoded at once, never stored: boxing `Submit` would only add an allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ToDriver<'a> {
    Submit {
        task_id: u64,
        #[serde(rename = "fn")]
        function: &'static str,
        node_type: &'a str,
        settings: &'a str,
        inputs: Vec<InputOut<'a>>,
        /// Every output port, with `by_ref`: large outputs stay in Ray.
        #[serde(skip_serializing_if = "Option::is_none")]
        outputs: Option<Vec<String>>,
        by_ref: bool,
        resources: ResourcesOut,
        max_retries: u32,
        timeout_ms: u64,
        context: ContextOut<'a>,
    },
    Cancel {
        task_id: u64,
        force: bool,
    },
    /// Objects no consumer needs any more.
    Release {
        refs: Vec<String>,
    },
    Shutdown {},
}

#[derive(Debug, Deserialize, Default)]
pub struct NodeInfo {
    #[serde(default)]
    pub alive: bool,
    #[serde(default)]
    pub resources: HashMap<String, f64>,
}

#[derive(Debug, Deserialize)]
pub struct OutputIn {
    pub port: String,
    #[serde(default)]
    pub content_type: String,
    #[serde(default, with = "serde_bytes")]
    pub data: Option<Vec<u8>>,
    #[serde(default, rename = "ref")]
    pub reference: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum FromDriver {
    Hello {
        #[serde(default)]
        ray_version: String,
        #[serde(default)]
        driver_pid: u32,
        #[serde(default)]
        mode: String,
        #[serde(default)]
        nodes: Vec<NodeInfo>,
    },
    Fatal {
        message: String,
    },
    Result {
        task_id: u64,
        ok: bool,
        #[serde(default)]
        outputs: Vec<OutputIn>,
        #[serde(default)]
        error_kind: String,
        #[serde(default)]
        message: String,
        /// When the Ray task began to run (microseconds since the Unix epoch; 0: not said).
        #[serde(default)]
        started_unix_us: u64,
        /// What the node logged: level and line.
        #[serde(default)]
        logs: Vec<(u8, String)>,
    },
    Bye {},
    #[serde(other)]
    Other,
}

pub fn encode(message: &ToDriver<'_>) -> Result<Vec<u8>, String> {
    let body = rmp_serde::to_vec_named(message).map_err(|e| e.to_string())?;
    let len = u32::try_from(body.len()).ok().filter(|l| *l <= MAX_FRAME).ok_or("message too large for a frame")?;
    let mut frame = Vec::with_capacity(4 + body.len());
    frame.extend_from_slice(&len.to_be_bytes());
    frame.extend_from_slice(&body);
    Ok(frame)
}

pub fn write_frame(out: &mut impl Write, frame: &[u8]) -> io::Result<()> {
    out.write_all(frame)
}

/// Reads one message; `Ok(None)` at a clean end of stream.
pub fn read_message(input: &mut impl Read) -> io::Result<Option<FromDriver>> {
    let mut len = [0u8; 4];
    match input.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_be_bytes(len);
    if len > MAX_FRAME {
        return Err(io::Error::new(io::ErrorKind::InvalidData, format!("frame of {len} bytes")));
    }
    let mut body = vec![0u8; len as usize];
    input.read_exact(&mut body)?;
    rmp_serde::from_slice(&body).map(Some).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_result_frame_decodes_with_bytes_and_refs() {
        #[derive(Serialize)]
        struct Out<'a> {
            port: &'a str,
            content_type: &'a str,
            data: &'a serde_bytes::Bytes,
        }
        #[derive(Serialize)]
        struct Res<'a> {
            #[serde(rename = "type")]
            kind: &'a str,
            task_id: u64,
            ok: bool,
            outputs: Vec<Out<'a>>,
            error_kind: &'a str,
            message: &'a str,
            extra_field: u8,
        }
        let body = rmp_serde::to_vec_named(&Res {
            kind: "result",
            task_id: 7,
            ok: true,
            outputs: vec![Out { port: "out", content_type: "text/plain", data: serde_bytes::Bytes::new(b"hi") }],
            error_kind: "",
            message: "",
            extra_field: 1,
        })
        .unwrap();
        let mut frame = (body.len() as u32).to_be_bytes().to_vec();
        frame.extend(body);
        let Some(FromDriver::Result { task_id, ok, outputs, .. }) = read_message(&mut frame.as_slice()).unwrap() else {
            panic!("not a result")
        };
        assert_eq!((task_id, ok), (7, true));
        assert_eq!(outputs[0].data.as_deref(), Some(&b"hi"[..]));
        assert!(read_message(&mut &[][..]).unwrap().is_none());
    }

    #[test]
    fn unknown_message_types_are_tolerated() {
        let body = rmp_serde::to_vec_named(&serde_json::json!({ "type": "pong", "req_id": 1 })).unwrap();
        let mut frame = (body.len() as u32).to_be_bytes().to_vec();
        frame.extend(body);
        assert!(matches!(read_message(&mut frame.as_slice()).unwrap(), Some(FromDriver::Other)));
    }
}
