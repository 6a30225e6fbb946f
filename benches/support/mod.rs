//! Shared fixtures for the benches: synthetic snapshots of any size.
#![allow(dead_code)]

use permitgate::document::{DocumentKind, Region};
use permitgate::key_files::HashKey;
use permitgate::snapshot::{testing, DocKey, Record, RecordStatus, Repo, NO_RENEWAL};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// `n` records with uniformly random keys (keyed hashes are uniform), two per person.
pub fn records(n: usize, seed: u64) -> Vec<Record> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n)
        .map(|i| Record {
            key: DocKey(rng.random()),
            person: (i / 2) as u64,
            valid_until: 20_000 + (i % 3000) as u32,
            status: RecordStatus::Valid,
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

/// A signed snapshot file image of `records`, and the keys to load it with.
pub fn snapshot_bytes(
    records: Vec<Record>,
) -> (Vec<u8>, Vec<ed25519_dalek::VerifyingKey>, HashKey) {
    testing::signed_image(records, 1)
}

pub fn repo(records: Vec<Record>) -> Repo {
    testing::repo(records, 1)
}
