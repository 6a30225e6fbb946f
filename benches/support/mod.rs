//! Shared fixtures for the benches: synthetic snapshots of any size.
#![allow(dead_code)]

use std::io::{BufWriter, Write};
use std::path::Path;

use permitgate::document::{DocumentKind, Region};
use permitgate::key_files::{generate_signing_key, verifying_key_id, HashKey};
use permitgate::snapshot::{
    testing, DocKey, FileKind, FileWriter, Record, RecordStatus, Repo, Snapshot, SnapshotHeader,
    SnapshotMeta, NO_RENEWAL,
};
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

/// Writes `records` (sorted here, in place) as a signed snapshot file at `path`, streamed:
/// no second copy in memory, so 100M documents need only the records themselves. Returns
/// the file's length and the keys to load it with. `records` come from [`records`]
/// (two per person).
pub fn write_snapshot(
    path: &Path,
    records: &mut [Record],
) -> (u64, Vec<ed25519_dalek::VerifyingKey>, HashKey) {
    records.sort_unstable_by_key(|r| r.key);
    let (sk, hk) = (generate_signing_key(), HashKey::generate());
    let header = SnapshotHeader {
        kind: FileKind::Snapshot,
        from_version: 0,
        meta: SnapshotMeta {
            version: 1,
            published_at: 1_790_000_000,
            hash_key_id: hk.id(),
        },
        documents: records.len() as u64,
        persons: records.len().div_ceil(2) as u64,
        signing_key_id: verifying_key_id(&sk.verifying_key()),
    };
    let file = std::fs::File::create(path).expect("create");
    let mut w = FileWriter::new(BufWriter::with_capacity(1 << 20, file), &header).expect("header");
    for r in records.iter() {
        w.push(&r.key, Some(r)).expect("record");
    }
    let mut out = w.finish(&sk).expect("signature");
    out.flush().expect("flush");
    let len = std::fs::metadata(path).expect("metadata").len();
    (len, vec![sk.verifying_key()], hk)
}

/// The repo of a snapshot file written by [`write_snapshot`], loaded and verified.
pub fn repo_from_file(path: &Path, trusted: &[ed25519_dalek::VerifyingKey], hk: &HashKey) -> Repo {
    testing::repo_of(Snapshot::load(path, trusted, Some(hk)).expect("load"))
}

/// Resident set size in bytes, from /proc/self/statm (pages × page size).
pub fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}
