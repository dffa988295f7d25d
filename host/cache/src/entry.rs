//! A cache entry and its bytes.
//!
//! An entry records a node's outputs: small ones inline, larger ones by the
//! BLAKE3 of their bytes (a blob in `cas/`). In a segment each entry is a
//! record `u32 length, body, BLAKE3(body)`, the body starting with the key;
//! a record whose checksum does not match is never believed.

use crate::key::{Digest, Key};

/// Outputs up to this size live inside the entry; larger ones are blobs.
pub const INLINE_MAX: usize = 8 << 10;
/// Longest record body a reader accepts (a corrupt length must not allocate gigabytes).
pub const MAX_RECORD: usize = 64 << 20;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The run that computed it.
    pub run_id: String,
    /// Seconds since the Unix epoch, when it was computed.
    pub created: u64,
    pub node_type: String,
    pub outputs: Vec<StoredOutput>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredOutput {
    pub port: String,
    pub content_type: String,
    /// Plain BLAKE3 of the bytes: the blob's name.
    pub data_hash: Digest,
    pub size: u64,
    /// The bytes, when at most [`INLINE_MAX`].
    pub inline: Option<Vec<u8>>,
    pub extensions: Vec<(String, String)>,
}

impl Entry {
    /// Bytes of blobs this entry names (its inline outputs excluded).
    pub fn blob_bytes(&self) -> u64 {
        self.outputs.iter().filter(|o| o.inline.is_none()).map(|o| o.size).sum()
    }
}

/// One output as a writer has it at hand: nothing copied.
pub struct OutputRef<'a> {
    pub port: &'a str,
    pub content_type: &'a str,
    /// Plain BLAKE3 of `data`.
    pub data_hash: Digest,
    pub data: &'a [u8],
    pub extensions: Vec<(&'a str, &'a str)>,
}

/// What the encoder reads of an output, whether it is at hand
/// ([`OutputRef`]) or was read back from a segment ([`StoredOutput`]).
trait Encodable {
    fn port(&self) -> &str;
    fn content_type(&self) -> &str;
    fn data_hash(&self) -> &Digest;
    fn size(&self) -> u64;
    /// The bytes when they go inside the record; `None` for a blob.
    fn inline(&self) -> Option<&[u8]>;
    fn extensions(&self) -> impl Iterator<Item = (&str, &str)>;
}

impl Encodable for OutputRef<'_> {
    fn port(&self) -> &str {
        self.port
    }
    fn content_type(&self) -> &str {
        self.content_type
    }
    fn data_hash(&self) -> &Digest {
        &self.data_hash
    }
    fn size(&self) -> u64 {
        self.data.len() as u64
    }
    fn inline(&self) -> Option<&[u8]> {
        (self.data.len() <= INLINE_MAX).then_some(self.data)
    }
    fn extensions(&self) -> impl Iterator<Item = (&str, &str)> {
        self.extensions.iter().copied()
    }
}

impl Encodable for StoredOutput {
    fn port(&self) -> &str {
        &self.port
    }
    fn content_type(&self) -> &str {
        &self.content_type
    }
    fn data_hash(&self) -> &Digest {
        &self.data_hash
    }
    fn size(&self) -> u64 {
        self.size
    }
    fn inline(&self) -> Option<&[u8]> {
        self.inline.as_deref()
    }
    fn extensions(&self) -> impl Iterator<Item = (&str, &str)> {
        self.extensions.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

/// Appends a record to `out`: length, body, checksum.
fn encode<O: Encodable>(out: &mut Vec<u8>, key: &Key, run_id: &str, created: u64, node_type: &str, outputs: &[O]) {
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&key.0);
    put_str(out, run_id);
    out.extend_from_slice(&created.to_le_bytes());
    put_str(out, node_type);
    out.extend_from_slice(&(outputs.len() as u32).to_le_bytes());
    for o in outputs {
        put_str(out, o.port());
        put_str(out, o.content_type());
        out.extend_from_slice(o.data_hash());
        out.extend_from_slice(&o.size().to_le_bytes());
        match o.inline() {
            Some(data) => {
                out.push(1);
                put_bytes(out, data);
            }
            None => out.push(0),
        }
        let count_at = out.len();
        out.extend_from_slice(&[0; 4]);
        let mut count = 0u32;
        for (k, v) in o.extensions() {
            put_str(out, k);
            put_str(out, v);
            count += 1;
        }
        out[count_at..count_at + 4].copy_from_slice(&count.to_le_bytes());
    }
    let len = (out.len() - start - 4) as u32;
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    let checksum = blake3::hash(&out[start + 4..]);
    out.extend_from_slice(checksum.as_bytes());
}

/// Appends the record for `key` to `out`. Outputs over [`INLINE_MAX`] are
/// named by hash (their blob is written apart).
pub fn encode_record_into(
    out: &mut Vec<u8>,
    key: &Key,
    run_id: &str,
    created: u64,
    node_type: &str,
    outputs: &[OutputRef<'_>],
) {
    encode(out, key, run_id, created, node_type, outputs);
}

/// The record for `key` and `entry`, blobs named as when it was stored.
pub fn encode_record(key: &Key, entry: &Entry) -> Vec<u8> {
    let mut out = Vec::with_capacity(
        96 + entry.outputs.iter().map(|o| 64 + o.inline.as_ref().map_or(0, Vec::len)).sum::<usize>(),
    );
    encode(&mut out, key, &entry.run_id, entry.created, &entry.node_type, &entry.outputs);
    out
}

/// Why a record cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// Fewer bytes than the record needs: a write cut short (a crash), or the end.
    #[error("record cut short")]
    Truncated,
    #[error("record checksum does not match its contents")]
    Checksum,
    #[error("record length {0} is out of range")]
    Length(usize),
    #[error("record contents are malformed: {0}")]
    Malformed(&'static str),
}

/// The next record at the start of `bytes`: its key, the body's range
/// within `bytes`, and the record's whole length. Checks the checksum.
pub fn split_record(bytes: &[u8]) -> Result<(Key, std::ops::Range<usize>, usize), RecordError> {
    let len = u32::from_le_bytes(bytes.get(..4).ok_or(RecordError::Truncated)?.try_into().expect("4 bytes")) as usize;
    if !(32..=MAX_RECORD).contains(&len) {
        return Err(RecordError::Length(len));
    }
    let total = 4 + len + 32;
    let record = bytes.get(..total).ok_or(RecordError::Truncated)?;
    let body = &record[4..4 + len];
    if blake3::hash(body).as_bytes() != &record[4 + len..] {
        return Err(RecordError::Checksum);
    }
    let key = Key(body[..32].try_into().expect("32 bytes"));
    Ok((key, 4..4 + len, total))
}

/// The entry in a record body (as [`split_record`] found it).
pub fn decode_body(body: &[u8]) -> Result<Entry, RecordError> {
    let mut r = Reader { bytes: body, at: 32 };
    let run_id = r.string()?;
    let created = r.u64()?;
    let node_type = r.string()?;
    let count = r.u32()? as usize;
    let mut outputs = Vec::with_capacity(count.min(64));
    for _ in 0..count {
        let port = r.string()?;
        let content_type = r.string()?;
        let data_hash: Digest = r.take(32)?.try_into().expect("32 bytes");
        let size = r.u64()?;
        let inline = match r.take(1)?[0] {
            1 => {
                let data = r.bytes()?.to_vec();
                if data.len() as u64 != size {
                    return Err(RecordError::Malformed("inline data length differs from the recorded size"));
                }
                Some(data)
            }
            0 => None,
            _ => return Err(RecordError::Malformed("unknown output kind")),
        };
        let extensions = (0..r.u32()?).map(|_| Ok((r.string()?, r.string()?))).collect::<Result<_, RecordError>>()?;
        outputs.push(StoredOutput { port, content_type, data_hash, size, inline, extensions });
    }
    if r.at != body.len() {
        return Err(RecordError::Malformed("trailing bytes"));
    }
    Ok(Entry { run_id, created, node_type, outputs })
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_bytes(out, s.as_bytes());
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_le_bytes());
    out.extend_from_slice(b);
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], RecordError> {
        let end = self.at.checked_add(n).ok_or(RecordError::Malformed("length overflows"))?;
        let slice = self.bytes.get(self.at..end).ok_or(RecordError::Malformed("a field runs past the record"))?;
        self.at = end;
        Ok(slice)
    }
    fn u32(&mut self) -> Result<u32, RecordError> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }
    fn u64(&mut self) -> Result<u64, RecordError> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8 bytes")))
    }
    fn bytes(&mut self) -> Result<&'a [u8], RecordError> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    fn string(&mut self) -> Result<String, RecordError> {
        String::from_utf8(self.bytes()?.to_vec()).map_err(|_| RecordError::Malformed("a text field is not UTF-8"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> Entry {
        Entry {
            run_id: "r1".into(),
            created: 7,
            node_type: "std.tokenize".into(),
            outputs: vec![
                StoredOutput {
                    port: "text".into(),
                    content_type: "text/plain".into(),
                    data_hash: *blake3::hash(b"hi").as_bytes(),
                    size: 2,
                    inline: Some(b"hi".to_vec()),
                    extensions: vec![("k".into(), "v".into())],
                },
                StoredOutput {
                    port: "big".into(),
                    content_type: "application/octet-stream".into(),
                    data_hash: [9; 32],
                    size: 1 << 20,
                    inline: None,
                    extensions: vec![],
                },
            ],
        }
    }

    #[test]
    fn a_record_round_trips() {
        let key = Key([3; 32]);
        let record = encode_record(&key, &entry());
        let (found, body, total) = split_record(&record).unwrap();
        assert_eq!((found, total), (key, record.len()));
        assert_eq!(decode_body(&record[body]).unwrap(), entry());
        assert_eq!(entry().blob_bytes(), 1 << 20);
    }

    #[test]
    fn the_borrowed_encoder_writes_what_the_owned_one_does() {
        let data = vec![7u8; INLINE_MAX + 1];
        let outputs = [
            OutputRef {
                port: "text",
                content_type: "text/plain",
                data_hash: *blake3::hash(b"hi").as_bytes(),
                data: b"hi",
                extensions: vec![("k", "v")],
            },
            OutputRef {
                port: "big",
                content_type: "application/octet-stream",
                data_hash: [9; 32],
                data: &data,
                extensions: vec![],
            },
        ];
        let mut out = b"prefix".to_vec();
        encode_record_into(&mut out, &Key([3; 32]), "r1", 7, "std.tokenize", &outputs);
        let mut expected = entry();
        expected.outputs[1].size = data.len() as u64;
        assert_eq!(&out[..6], b"prefix");
        assert_eq!(out[6..], encode_record(&Key([3; 32]), &expected));
    }

    #[test]
    fn a_cut_or_flipped_record_is_refused_at_every_byte() {
        let record = encode_record(&Key([3; 32]), &entry());
        for cut in 0..record.len() {
            assert!(split_record(&record[..cut]).is_err(), "cut at {cut} was accepted");
        }
        for at in 0..record.len() {
            let mut bad = record.clone();
            bad[at] ^= 0x40;
            assert!(split_record(&bad).is_err(), "a flipped byte at {at} was accepted");
        }
    }
}
