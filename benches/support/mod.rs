//! Shared fixtures for the benches: synthetic snapshots of any size.
#![allow(dead_code)]

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use time::OffsetDateTime;

use permitgate::document::{DocumentKind, Region};
use permitgate::keys::{generate_signing_key, HashKey};
use permitgate::snapshot::{
    encode, DocKey, Manifest, ManifestSnapshot, Record, Repo, SignedManifest, Snapshot,
    SnapshotMeta, Status, MANIFEST_TYPE, NO_RENEWAL,
};

/// `n` records with uniformly random keys (keyed hashes are uniform), two per person.
pub fn records(n: usize, seed: u64) -> Vec<Record> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n)
        .map(|i| Record {
            key: DocKey(rng.random()),
            person: (i / 2) as u64,
            valid_until: 20_000 + (i % 3000) as u32,
            status: Status::Valid,
            kind: if i % 2 == 0 {
                DocumentKind::TravelPermit
            } else {
                DocumentKind::ResidencePermit
            },
            region: Region::HongKong,
            renewal: NO_RENEWAL,
        })
        .collect()
}

/// A signed snapshot file image of `records`, and the trusted key list to load it with.
pub fn snapshot_bytes(
    records: Vec<Record>,
) -> (Vec<u8>, Vec<ed25519_dalek::VerifyingKey>, HashKey) {
    let sk = generate_signing_key();
    let hk = HashKey::generate();
    let bytes = encode(
        records,
        SnapshotMeta {
            version: 1,
            published_at: 1_790_000_000,
            hash_key_id: hk.id(),
        },
        &sk,
    )
    .expect("encode");
    (bytes, vec![sk.verifying_key()], hk)
}

pub fn repo(records: Vec<Record>) -> Repo {
    let (bytes, trusted, hk) = snapshot_bytes(records);
    let snapshot = Snapshot::from_bytes(bytes, &trusted, Some(&hk)).expect("load");
    let now = OffsetDateTime::now_utc();
    Repo {
        manifest: SignedManifest {
            manifest: Manifest {
                kind: MANIFEST_TYPE.into(),
                format: 1,
                version: 1,
                published_at: now,
                expires_at: now + time::Duration::days(1),
                snapshot: ManifestSnapshot {
                    hash: snapshot.content_hash().to_hex().to_string(),
                    size: 0,
                    version: 1,
                    documents: snapshot.len() as u64,
                },
            },
            key_id: snapshot.header().signing_key_id,
        },
        snapshot,
    }
}
