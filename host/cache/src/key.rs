//! Cache keys: BLAKE3 over a canonical, length-prefixed encoding.
//!
//! Every field is written as a one-byte tag and a little-endian `u64` length
//! before its bytes, under BLAKE3's key-derivation mode with a context string
//! of its own, so no two different component lists encode alike (`"ab" + "c"`
//! never meets `"a" + "bc"`) and no other BLAKE3 use in Backplane can produce
//! a cache key by accident. What goes in is only what decides a result: the
//! node type and its version, the canonical settings, the content of each
//! input in port order, and the config's salt. Never a path's mtime, a run id,
//! the backend or the time: a result computed anywhere is a hit everywhere.

use std::{fmt, sync::LazyLock};

/// BLAKE3's output.
pub type Digest = [u8; 32];

/// What a payload's content hash is derived under.
const PAYLOAD_CONTEXT: &str = "backplane 2026-12-01 payload content v1";
/// What cache keys are derived under.
const KEY_CONTEXT: &str = "backplane 2026-12-01 cache key v1";

/// Hashers with their context keys derived once (deriving costs a compression per hash).
static PAYLOAD_HASHER: LazyLock<blake3::Hasher> = LazyLock::new(|| blake3::Hasher::new_derive_key(PAYLOAD_CONTEXT));
static KEY_HASHER: LazyLock<blake3::Hasher> = LazyLock::new(|| blake3::Hasher::new_derive_key(KEY_CONTEXT));

/// The identity of one payload: its content type and its bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContentHash(pub Digest);

impl ContentHash {
    /// The hash of `data` typed `content_type`. `data_hash` is the plain
    /// BLAKE3 of the bytes (the name of their blob), so the bytes are read once.
    pub fn of(content_type: &str, data_hash: &Digest) -> Self {
        let mut h = PAYLOAD_HASHER.clone();
        field(&mut h, b'c', content_type.as_bytes());
        field(&mut h, b'd', data_hash);
        ContentHash(*h.finalize().as_bytes())
    }

    /// [`ContentHash::of`] for bytes at hand.
    pub fn of_bytes(content_type: &str, data: &[u8]) -> Self {
        Self::of(content_type, blake3::hash(data).as_bytes())
    }
}

/// Everything a node's result depends on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyComponents<'a> {
    pub node_type: &'a str,
    pub node_version: &'a str,
    /// Canonical JSON: sorted keys, defaults merged in, no spaces.
    pub settings: &'a str,
    /// Each input's port and content: ordered by port name, and within a
    /// port that takes a list, in list order (the order the node sees).
    pub inputs: &'a [(&'a str, ContentHash)],
    pub salt: &'a str,
}

impl KeyComponents<'_> {
    pub fn key(&self) -> Key {
        let mut h = KEY_HASHER.clone();
        field(&mut h, b't', self.node_type.as_bytes());
        field(&mut h, b'v', self.node_version.as_bytes());
        field(&mut h, b's', self.settings.as_bytes());
        h.update(b"i");
        h.update(&(self.inputs.len() as u64).to_le_bytes());
        for (port, content) in self.inputs {
            field(&mut h, b'p', port.as_bytes());
            h.update(&content.0);
        }
        field(&mut h, b'x', self.salt.as_bytes());
        Key(*h.finalize().as_bytes())
    }
}

/// A tag, the length, then the bytes.
fn field(h: &mut blake3::Hasher, tag: u8, bytes: &[u8]) {
    h.update(&[tag]);
    h.update(&(bytes.len() as u64).to_le_bytes());
    h.update(bytes);
}

/// A cache key.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key(pub Digest);

/// Keys are BLAKE3 output, already uniform: a map of them needs no hashing
/// of its own, so [`KeyHasher`] takes their first eight bytes.
#[derive(Default)]
pub struct KeyHasher(u64);

impl std::hash::Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // `Key`'s derived `Hash` writes the array's length, then its 32 bytes.
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 = self.0.rotate_left(5) ^ u64::from_le_bytes(word);
        }
    }
}

/// A map keyed by cache keys.
pub type KeyMap<V> = std::collections::HashMap<Key, V, std::hash::BuildHasherDefault<KeyHasher>>;

/// Lower-case hex of a digest.
pub fn hex(digest: &Digest) -> String {
    let mut s = String::with_capacity(64);
    for b in digest {
        s.push(char::from_digit(u32::from(b >> 4), 16).expect("a nibble"));
        s.push(char::from_digit(u32::from(b & 15), 16).expect("a nibble"));
    }
    s
}

/// A digest from 64 hex digits.
pub fn parse_hex(text: &str) -> Option<Digest> {
    let bytes = text.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in bytes.chunks(2).enumerate() {
        let hi = (pair[0] as char).to_digit(16)?;
        let lo = (pair[1] as char).to_digit(16)?;
        out[i] = (hi * 16 + lo) as u8;
    }
    Some(out)
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex(&self.0))
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key({self})")
    }
}

impl fmt::Display for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex(&self.0))
    }
}

impl fmt::Debug for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ContentHash({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn components<'a>(settings: &'a str, inputs: &'a [(&'a str, ContentHash)]) -> KeyComponents<'a> {
        KeyComponents { node_type: "std.tokenize", node_version: "1.0.0", settings, inputs, salt: "" }
    }

    #[test]
    fn moving_bytes_between_fields_changes_the_key() {
        let base = KeyComponents { node_type: "ab", node_version: "c", settings: "{}", inputs: &[], salt: "" };
        let moved = KeyComponents { node_type: "a", node_version: "bc", ..base.clone() };
        assert_ne!(base.key(), moved.key());
        let into_salt = KeyComponents { settings: "{", salt: "}", ..base.clone() };
        assert_ne!(base.key(), into_salt.key());
    }

    #[test]
    fn every_component_counts_and_input_order_matters() {
        let a = ContentHash::of_bytes("text/plain", b"a");
        let b = ContentHash::of_bytes("text/plain", b"b");
        let ab = [("x", a), ("y", b)];
        let key = components("{}", &ab).key();
        assert_eq!(key, components("{}", &ab).key(), "the same components give the same key");
        assert_ne!(key, components("{}", &[("x", b), ("y", a)]).key());
        assert_ne!(key, components("{}", &[("x", a), ("x", b)]).key(), "the port an input reaches counts");
        assert_ne!(key, components("{}", &[("x", a)]).key());
        assert_ne!(key, components("{\"x\":1}", &ab).key());
        assert_ne!(key, KeyComponents { node_version: "1.0.1", ..components("{}", &ab) }.key());
        assert_ne!(key, KeyComponents { node_type: "std.tokenise", ..components("{}", &ab) }.key());
        assert_ne!(key, KeyComponents { salt: "2", ..components("{}", &ab) }.key());
    }

    #[test]
    fn content_type_is_part_of_a_payloads_identity() {
        assert_ne!(ContentHash::of_bytes("text/plain", b"x"), ContentHash::of_bytes("application/json", b"x"));
        assert_ne!(ContentHash::of_bytes("text/plain", b"x"), ContentHash::of_bytes("text/plai", b"nx"));
        assert_eq!(ContentHash::of_bytes("t", b"x"), ContentHash::of("t", blake3::hash(b"x").as_bytes()));
    }

    #[test]
    fn hex_round_trips_and_refuses_what_is_not_a_digest() {
        let digest = *blake3::hash(b"x").as_bytes();
        assert_eq!(parse_hex(&hex(&digest)), Some(digest));
        assert_eq!(parse_hex("abc"), None);
        assert_eq!(parse_hex(&"g".repeat(64)), None);
    }
}
