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

/// The record for `key` and `entry`: length, body, checksum.
pub fn encode_record(key: &Key, entry: &Entry) -> Vec<u8> {
    let mut body = Vec::with_capacity(
        96 + entry.outputs.iter().map(|o| 64 + o.inline.as_ref().map_or(0, Vec::len)).sum::<usize>(),
    );
    body.extend_from_slice(&key.0);
    put_str(&mut body, &entry.run_id);
    body.extend_from_slice(&entry.created.to_le_bytes());
    put_str(&mut body, &entry.node_type);
    body.extend_from_slice(&(entry.outputs.len() as u32).to_le_bytes());
    for o in &entry.outputs {
        put_str(&mut body, &o.port);
        put_str(&mut body, &o.content_type);
        body.extend_from_slice(&o.data_hash);
        body.extend_from_slice(&o.size.to_le_bytes());
        match &o.inline {
            Some(data) => {
                body.push(1);
                put_bytes(&mut body, data);
            }
            None => body.push(0),
        }
        body.extend_from_slice(&(o.extensions.len() as u32).to_le_bytes());
        for (k, v) in &o.extensions {
            put_str(&mut body, k);
            put_str(&mut body, v);
        }
    }
    let mut record = Vec::with_capacity(body.len() + 36);
    record.extend_from_slice(&(body.len() as u32).to_le_bytes());
    record.extend_from_slice(&body);
    record.extend_from_slice(blake3::hash(&body).as_bytes());
    record
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
