//! Backplane's result cache: what a key is made of, and the local store.
//!
//! # Core concepts
//!
//! - A [`Key`] is BLAKE3 over a canonical, domain-separated encoding of a
//!   node's type, version, settings, input contents and the config's salt
//!   ([`KeyComponents`]): equal keys mean equal work, wherever it ran.
//! - The [`LocalStore`] is a directory shared by any number of processes with
//!   no locks: each writer appends to its own segment, blobs are renamed into
//!   place before the records naming them, and every record and blob is
//!   checked when read, so a crash or a damaged file gives a miss, never a
//!   wrong hit.
//! - [`maintenance`] answers `backplane cache stats|verify|gc|clear`.

pub mod entry;
pub mod key;
pub mod maintenance;
pub mod shared;
pub mod store;

pub use entry::OutputRef;
pub use key::{ContentHash, Digest, Key, KeyComponents};
pub use shared::{SharedLookup, SharedTier};
pub use store::{Hit, HitOutput, LocalStore, Lookup, StoreError, WriteReport, Writer};
