//! Why a snapshot, delta or manifest was refused. Every variant is a reason to keep serving
//! what we had (or to refuse to start), never to serve what we were given. Each error says
//! what was refused; its cause, where there is one, is its `source`.

use std::path::PathBuf;

use super::header::FileKind;
use crate::key_files::KeyId;

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("cannot read {}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{object} is truncated or has the wrong size")]
    Size {
        object: String,
        #[source]
        size: SizeError,
    },
    #[error("{object} is not a permitgate snapshot or delta (bad magic or record size)")]
    NotASnapshot { object: String },
    #[error("{object} is a {found}, expected a {expected}")]
    WrongKind {
        object: String,
        found: FileKind,
        expected: FileKind,
    },
    #[error("{kind} is corrupt")]
    Corrupt {
        kind: FileKind,
        #[source]
        cause: Corruption,
    },
    #[error("{what} is signed by key {key_id}, which is not a trusted publisher key")]
    UnknownKey { what: &'static str, key_id: KeyId },
    #[error("{what} signature does not verify")]
    BadSignature { what: &'static str },
    #[error("content hash mismatch: manifest names {expected}, file hashes to {actual}")]
    HashMismatch { expected: String, actual: String },
    #[error("snapshot was hashed with key {snapshot}, this gateway's hashing key is {configured}")]
    HashKeyMismatch { snapshot: KeyId, configured: KeyId },
    #[error("manifest is invalid")]
    Manifest(#[source] ManifestError),
    #[error("delta chain is broken")]
    Chain(#[source] ChainError),
    #[error("object {hash} was not fetched")]
    Missing { hash: String },
    #[error("the manifest's base snapshot was not verified")]
    NoBase,
}

/// How a file's size disagrees with what it should be.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SizeError {
    #[error("shorter than its {0}-byte header")]
    NoHeader(usize),
    #[error("{len} bytes, less than a header and a signature")]
    TooShort { len: usize },
    #[error("larger than this machine's address space")]
    TooLarge,
    #[error("the file shrank while it was read: {read} of {len} bytes")]
    Shrank { read: usize, len: usize },
    #[error("{len} bytes, the header promises {documents} documents")]
    Promised { len: usize, documents: u64 },
    #[error("{found} of {expected} records")]
    Records { found: usize, expected: usize },
}

/// What is wrong inside a file whose size and signature may be fine.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Corruption {
    #[error("reserved header bytes are not zero")]
    ReservedBytes,
    #[error("delta version {version} is not above the version it applies onto ({from_version})")]
    DeltaVersion { version: u64, from_version: u64 },
    #[error("two documents hash to the same key (duplicate number)")]
    DuplicateKey,
    #[error("an entry's key differs from its record's key")]
    EntryKey,
    #[error("more than 2^32 documents")]
    TooManyDocuments,
    #[error("record {0} has invalid fields")]
    InvalidRecord(usize),
    #[error("record {0} is out of order or duplicated")]
    OutOfOrder(usize),
}

/// What is wrong with a manifest, or between a manifest and what it names.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("not a signed manifest")]
    Envelope(#[source] serde_json::Error),
    #[error("the signed part is not a manifest")]
    Fields(#[source] serde_json::Error),
    #[error("cannot encode the manifest")]
    Encode(#[source] serde_json::Error),
    #[error("unsupported manifest type {kind:?} format {format}")]
    Unsupported { kind: String, format: u32 },
    #[error("the manifest carries no signature")]
    Unsigned,
    #[error("object hash {0:?} is not 64 hex characters")]
    ObjectHash(String),
    #[error("manifest and snapshot disagree on version or document count")]
    Disagrees,
}

/// Why deltas do not follow one another.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    #[error("delta {hash} does not apply onto version {version}")]
    DoesNotApply { hash: String, version: u64 },
    #[error("change set version {offered} is not above the held version {held}")]
    Stale { held: u64, offered: u64 },
}
