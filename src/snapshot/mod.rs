//! The signed snapshot of the authority's records and the manifest that names it.
//!
//! A snapshot is immutable once built: fixed-width [`Record`]s sorted by keyed hash, a
//! header, and an Ed25519 signature (see docs/snapshot-format.md). The manifest is the
//! signed, expiring pointer to the current snapshot by content hash (TUF's timestamp and
//! snapshot roles in one). Nothing here knows about HTTP or the cache.

mod delta;
mod error;
mod files;
mod header;
mod index;
mod ingest;
pub mod manifest;
mod pace;
mod record;
mod repo;
mod stream;
#[doc(hidden)]
pub mod testing;
mod verify;

pub use crate::pace::Pace;
pub use delta::Delta;
pub use error::{ChainError, Corruption, ManifestError, SizeError, SnapshotError};
pub use files::{
    open_object, open_regular, read_bounded, read_manifest, ObjectError, ObjectSink,
    MAX_MANIFEST_BYTES,
};
pub use header::{FileKind, SnapshotHeader, SnapshotMeta, HEADER_LEN, RECORD_LEN, TRAILER_LEN};
pub use index::Snapshot;
pub use manifest::{Manifest, ManifestDelta, ManifestSnapshot, SignedManifest, MANIFEST_TYPE};
pub use record::{DocKey, Record, RecordStatus, NO_RENEWAL};
pub(crate) use repo::check_hash;
pub use repo::{
    load_repo, manifest_tag, object_path, remove_unnamed_objects, sync_dir, temp_path,
    verify_deltas, verify_objects, wanted_objects, write_atomic, DirObjects, Objects, Repo,
    RepoData, Trust, Verified, Wanted, MANIFEST_FILE, OBJECTS_DIR,
};
pub use stream::{encode, encode_delta, scan, FileWriter, HashingWriter};
