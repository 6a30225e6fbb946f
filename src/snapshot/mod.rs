//! The signed snapshot of the authority's records and the manifest that names it.
//!
//! A snapshot is immutable once built: fixed-width [`Record`]s sorted by keyed hash, a
//! header, and an Ed25519 signature (see docs/snapshot-format.md). The manifest is the
//! signed, expiring pointer to the current snapshot by content hash (TUF's timestamp and
//! snapshot roles in one). Nothing here knows about HTTP or the cache.

mod delta;
mod format;
pub mod manifest;
mod record;
mod repo;
#[doc(hidden)]
pub mod testing;

pub use delta::Delta;
pub use format::{
    encode, encode_delta, FileKind, Snapshot, SnapshotHeader, SnapshotMeta, HEADER_LEN, RECORD_LEN,
    TRAILER_LEN,
};
pub use manifest::{Manifest, ManifestDelta, ManifestSnapshot, SignedManifest, MANIFEST_TYPE};
pub use record::{DocKey, Record, RecordStatus, NO_RENEWAL};
pub(crate) use repo::check_hash;
pub use repo::{
    load_repo, manifest_tag, object_path, remove_unnamed_objects, verify_deltas, verify_objects,
    wanted_objects, write_atomic, DirObjects, Objects, Repo, RepoData, Trust, Verified, Wanted,
    MANIFEST_FILE, OBJECTS_DIR,
};

use std::path::PathBuf;

use crate::key_files::KeyId;

/// Why a snapshot or manifest was refused. Every variant is a reason to keep serving what
/// we had (or to refuse to start), never to serve what we were given.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{what} is truncated or has the wrong size ({detail})")]
    Size { what: &'static str, detail: String },
    #[error("{0} is not a permitgate snapshot (bad magic or record size)")]
    NotASnapshot(String),
    #[error("snapshot is corrupt: {0}")]
    Corrupt(String),
    #[error("{what} is signed by key {key_id}, which is not a trusted publisher key")]
    UnknownKey { what: &'static str, key_id: KeyId },
    #[error("{what} signature does not verify")]
    BadSignature { what: &'static str },
    #[error("content hash mismatch: manifest names {expected}, file hashes to {actual}")]
    HashMismatch { expected: String, actual: String },
    #[error("snapshot was hashed with key {snapshot}, this gateway's hashing key is {configured}")]
    HashKeyMismatch { snapshot: KeyId, configured: KeyId },
    #[error("manifest is invalid: {0}")]
    Manifest(String),
    #[error("delta chain is broken: {0}")]
    Chain(String),
    #[error("object {hash} was not fetched")]
    Missing { hash: String },
    #[error("the manifest's base snapshot was not verified")]
    NoBase,
}
