//! Verifying and applying a delta of 1,000 status changes onto states of 1M, 10M and 100M
//! documents: the cost must not grow with the number of documents (the delta lands in the
//! overlay; the snapshot is not touched). The baseline is verifying the same delta alone.
//!
//! `PG_BENCH_SIZES` (comma-separated) overrides the sizes; 100M needs about 8 GB of memory
//! and 3.2 GB of temporary disk.

#[path = "support/mod.rs"]
mod support;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use time::OffsetDateTime;

use permitgate::key_files::generate_signing_key;
use permitgate::snapshot::{encode_delta, Delta, RecordStatus, SnapshotMeta};
use permitgate::store::{CacheConfig, CacheCounters, State, StateInfo};

const CHANGES: usize = 1_000;

fn sizes() -> Vec<usize> {
    std::env::var("PG_BENCH_SIZES")
        .ok()
        .map(|s| s.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![1_000_000, 10_000_000, 100_000_000])
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("delta_apply");
    g.sample_size(20);
    for n in sizes() {
        let mut records = support::records(n, 5);
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("snapshot");
        let (_, snapshot_keys, hk) = support::write_snapshot(&path, &mut records);
        // 1,000 documents spread over the whole key space, reported lost.
        let step = n / CHANGES;
        let changes: Vec<_> = (0..CHANGES)
            .map(|i| {
                let mut r = records[i * step];
                r.status = RecordStatus::Lost;
                (r.key, Some(r))
            })
            .collect();
        drop(records);
        let sk = generate_signing_key();
        let trusted = [sk.verifying_key()];
        let delta = encode_delta(
            changes,
            1,
            SnapshotMeta {
                version: 2,
                published_at: 1_790_000_001,
                hash_key_id: hk.id(),
            },
            &sk,
        )
        .expect("delta");
        let state = State::new(
            support::repo_from_file(&path, &snapshot_keys, &hk),
            &CacheConfig::default(),
            CacheCounters::detached(),
        )
        .expect("state");
        let mut version = 1u64;
        g.bench_function(format!("{n}/baseline_verify"), |b| {
            b.iter_batched(
                || delta.clone(),
                |bytes| Delta::from_bytes(bytes, &trusted, Some(&hk)).expect("verify"),
                BatchSize::SmallInput,
            )
        });
        g.bench_function(format!("{n}/verify+apply"), |b| {
            b.iter_batched(
                || delta.clone(),
                |bytes| {
                    let d = Delta::from_bytes(bytes, &trusted, Some(&hk)).expect("verify");
                    version += 1;
                    let mut meta = d.header().meta;
                    meta.version = version;
                    let info = StateInfo::of(&meta, OffsetDateTime::now_utc());
                    state.apply(info, d.entries()).expect("apply");
                },
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
