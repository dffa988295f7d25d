//! Data moving between nodes.

use abi_stable::{
    StableAbi,
    std_types::{RString, RVec, Tuple2},
};

/// One value on one port.
///
/// Bytes stay in an `RVec<u8>` end to end, so moving a payload from plugin to
/// host to the next plugin never copies the data.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Default)]
pub struct Payload {
    /// The output port that produced it, or the input port it is delivered to.
    pub port: RString,
    /// A MIME type such as `text/plain; charset=utf-8`.
    pub content_type: RString,
    /// The bytes, when the value travels inline.
    pub data: RVec<u8>,
    /// A backend-owned object reference when the value stays where it was
    /// produced (an object store); empty for inline values.
    pub object_ref: RString,
    /// Key/value attributes added in later 1.x versions (empty: no allocation).
    pub extensions: RVec<Tuple2<RString, RString>>,
}

pub const TEXT: &str = "text/plain; charset=utf-8";
pub const OCTETS: &str = "application/octet-stream";
pub const JSON: &str = "application/json";
/// A file manifest: one line per file a node read or wrote,
/// `read|wrote<TAB>BLAKE3 hex<TAB>bytes<TAB>absolute path`. The host records
/// the files of any output with this content type in the run's provenance
/// (whatever backend ran the node), so `backplane provenance` can trace an
/// output back to the files it was made from and say whether they changed.
pub const FILE_MANIFEST: &str = "text/vnd.backplane.file-manifest; charset=utf-8";

/// Whether a [`FILE_MANIFEST`] line says the file was read or written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileOp {
    Read,
    Wrote,
}

impl Payload {
    pub fn bytes(port: &str, content_type: &str, data: Vec<u8>) -> Self {
        Self { port: port.into(), content_type: content_type.into(), data: data.into(), ..Self::default() }
    }

    pub fn text(port: &str, text: String) -> Self {
        Self::bytes(port, TEXT, text.into_bytes())
    }

    /// A [`FILE_MANIFEST`] payload of `(op, path, BLAKE3 hex of the file's
    /// bytes, their length)`.
    pub fn file_manifest<'a>(
        port: &str,
        files: impl IntoIterator<Item = (FileOp, &'a std::path::Path, &'a str, u64)>,
    ) -> Self {
        let mut text = String::new();
        for (op, path, hash, bytes) in files {
            let op = match op {
                FileOp::Read => "read",
                FileOp::Wrote => "wrote",
            };
            text.push_str(&format!("{op}\t{hash}\t{bytes}\t{}\n", path.display()));
        }
        Self::bytes(port, FILE_MANIFEST, text.into_bytes())
    }

    /// The data as UTF-8 text.
    pub fn as_text(&self) -> Result<&str, std::str::Utf8Error> {
        std::str::from_utf8(&self.data)
    }
}
