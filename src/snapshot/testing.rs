//! Fixtures for tests and benches: a verified [`Repo`] from records, with throwaway keys.
//! Not for production use: the keys are generated and discarded.

use time::OffsetDateTime;

use super::{
    encode, Manifest, ManifestSnapshot, Record, Repo, SignedManifest, Snapshot, SnapshotMeta,
    MANIFEST_TYPE,
};
use crate::key_files::{generate_signing_key, HashKey};

/// A snapshot image of `records` signed by a fresh key, that key, and a fresh hashing key.
pub fn signed_image(
    records: Vec<Record>,
    version: u64,
) -> (Vec<u8>, Vec<ed25519_dalek::VerifyingKey>, HashKey) {
    let sk = generate_signing_key();
    let hk = HashKey::generate();
    let meta = SnapshotMeta {
        version,
        published_at: OffsetDateTime::now_utc().unix_timestamp(),
        hash_key_id: hk.id(),
    };
    let bytes = encode(records, meta, &sk).unwrap_or_else(|e| panic!("fixture records: {e}"));
    (bytes, vec![sk.verifying_key()], hk)
}

/// A loaded repo (manifest version = snapshot version = `version`) holding `records`.
pub fn repo(records: Vec<Record>, version: u64) -> Repo {
    let (bytes, trusted, hk) = signed_image(records, version);
    let snapshot = Snapshot::from_bytes(bytes, &trusted, Some(&hk))
        .unwrap_or_else(|e| panic!("fixture load: {e}"));
    repo_of(snapshot)
}

/// A manifest of `version` naming a base of that version (`hash`, `documents`), no deltas,
/// published now and fresh for a day.
pub fn manifest(version: u64, hash: String, documents: u64) -> Manifest {
    let now = OffsetDateTime::now_utc();
    Manifest {
        kind: MANIFEST_TYPE.into(),
        format: 1,
        version,
        published_at: now,
        expires_at: now + time::Duration::days(1),
        snapshot: ManifestSnapshot {
            hash,
            size: 0,
            version,
            documents,
        },
        deltas: Vec::new(),
    }
}

/// A repo around a loaded snapshot, with a manifest naming it and no deltas.
pub fn repo_of(snapshot: Snapshot) -> Repo {
    let version = snapshot.header().meta.version;
    Repo {
        manifest: SignedManifest {
            manifest: manifest(
                version,
                snapshot.content_hash().to_hex().to_string(),
                snapshot.len() as u64,
            ),
            key_id: snapshot.header().signing_key_id,
        },
        snapshot,
        deltas: Vec::new(),
    }
}
