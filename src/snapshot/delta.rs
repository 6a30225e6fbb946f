//! A delta: the changes of one publication, onto the data version named in its header.
//! Same file format as a snapshot (see docs/snapshot-format.md), own magic and signature
//! context, and removals allowed.

use std::path::Path;

use ed25519_dalek::VerifyingKey;

use super::header::FileKind;
use super::{DocKey, Record, Snapshot, SnapshotError, SnapshotHeader};
use crate::key_files::HashKey;

#[derive(Debug)]
pub struct Delta {
    inner: Snapshot,
}

impl Delta {
    pub fn load(
        path: &Path,
        trusted: &[VerifyingKey],
        hash_key: Option<&HashKey>,
    ) -> Result<Delta, SnapshotError> {
        Snapshot::load_kind(path, FileKind::Delta, None, trusted, hash_key, None)
            .map(|inner| Delta { inner })
    }

    /// A verified file of kind [`FileKind::Delta`].
    pub(super) fn from_file(inner: Snapshot) -> Delta {
        Delta { inner }
    }

    pub fn from_bytes(
        data: Vec<u8>,
        trusted: &[VerifyingKey],
        hash_key: Option<&HashKey>,
    ) -> Result<Delta, SnapshotError> {
        Snapshot::from_bytes_kind(data, FileKind::Delta, None, trusted, hash_key)
            .map(|inner| Delta { inner })
    }

    pub fn header(&self) -> &SnapshotHeader {
        self.inner.header()
    }

    /// The data version this delta applies onto.
    pub fn from_version(&self) -> u64 {
        self.inner.header().from_version
    }

    /// The data version after it.
    pub fn version(&self) -> u64 {
        self.inner.header().meta.version
    }

    /// The file image, as verified.
    pub fn bytes(&self) -> &[u8] {
        self.inner.bytes()
    }

    pub fn content_hash(&self) -> blake3::Hash {
        self.inner.content_hash()
    }

    pub fn len(&self) -> usize {
        self.inner.len()
    }

    pub fn is_empty(&self) -> bool {
        self.inner.is_empty()
    }

    /// Changes in key order; `None` removes the document.
    pub fn entries(&self) -> impl Iterator<Item = (DocKey, Option<Record>)> + '_ {
        self.inner.entries()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::document::{DocumentKind, Region};
    use crate::key_files::generate_signing_key;
    use crate::snapshot::{encode, encode_delta, RecordStatus, SnapshotMeta, NO_RENEWAL};

    fn rec(k: u8) -> Record {
        Record {
            key: DocKey([k; 16]),
            person: 9,
            valid_until: 20_000,
            status: RecordStatus::Lost,
            kind: DocumentKind::ResidencePermit,
            region: Region::Taiwan,
            renewal: NO_RENEWAL,
        }
    }

    #[test]
    fn round_trip_with_removals_and_kind_separation() {
        let sk = generate_signing_key();
        let hk = HashKey::generate();
        let meta = SnapshotMeta {
            version: 8,
            published_at: 1_790_000_000,
            hash_key_id: hk.id(),
        };
        let entries = vec![(DocKey([2; 16]), None), (DocKey([1; 16]), Some(rec(1)))];
        let bytes = encode_delta(entries, 7, meta, &sk).expect("encode");
        let trusted = [sk.verifying_key()];
        let d = Delta::from_bytes(bytes.clone(), &trusted, Some(&hk)).expect("load");
        assert_eq!((d.from_version(), d.version(), d.len()), (7, 8, 2));
        let got: Vec<_> = d.entries().collect();
        assert_eq!(
            got,
            vec![(DocKey([1; 16]), Some(rec(1))), (DocKey([2; 16]), None)]
        );

        // A delta is not a snapshot, and a snapshot is not a delta.
        assert!(matches!(
            Snapshot::from_bytes(bytes.clone(), &trusted, Some(&hk)),
            Err(SnapshotError::WrongKind {
                found: FileKind::Delta,
                expected: FileKind::Snapshot,
                ..
            })
        ));
        let snap = encode(vec![rec(1)], meta, &sk).expect("snapshot");
        assert!(matches!(
            Delta::from_bytes(snap, &trusted, Some(&hk)),
            Err(SnapshotError::WrongKind {
                found: FileKind::Snapshot,
                expected: FileKind::Delta,
                ..
            })
        ));
        // Relabelling the magic breaks the signature (different context).
        let mut relabelled = bytes;
        relabelled[..8].copy_from_slice(b"PGSNAP1\n");
        relabelled[64..72].fill(0);
        assert!(Snapshot::from_bytes(relabelled, &trusted, Some(&hk)).is_err());
        // Removals are only for deltas.
        let mut bad_snapshot = encode(vec![rec(1)], meta, &sk).expect("snapshot");
        bad_snapshot[96 + 16..96 + 32].fill(0);
        assert!(Snapshot::from_bytes(bad_snapshot, &trusted, Some(&hk)).is_err());
        assert!(
            encode_delta(vec![], 8, meta, &sk).is_err(),
            "version must move forward"
        );
    }
}
