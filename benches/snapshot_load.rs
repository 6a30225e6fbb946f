//! Loading + verifying a snapshot file, next to reading and hashing the same file with the
//! same hash function (BLAKE3, 1 MiB reads); and resident memory per document.
//!
//! The file is in the page cache (just written), so this measures CPU and memory
//! bandwidth, not the disk. `PG_BENCH_DOCS` overrides the 10M default (100M: about 7 GB
//! of memory and 3.2 GB of temporary disk).

#[path = "support/mod.rs"]
mod support;

use std::io::Read;
use std::path::Path;

use criterion::{criterion_group, criterion_main, Criterion};

use permitgate::snapshot::Snapshot;

fn docs() -> usize {
    std::env::var("PG_BENCH_DOCS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000_000)
}

fn hash_file(path: &Path) -> blake3::Hash {
    let mut f = std::fs::File::open(path).expect("open");
    let len = f.metadata().expect("meta").len() as usize;
    let mut buf = vec![0u8; len];
    let mut hasher = blake3::Hasher::new();
    let mut filled = 0;
    while filled < len {
        let end = (filled + (1 << 20)).min(len);
        let n = f.read(&mut buf[filled..end]).expect("read");
        hasher.update(&buf[filled..filled + n]);
        filled += n;
    }
    hasher.finalize()
}

fn bench(c: &mut Criterion) {
    let n = docs();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("snapshot");
    let (file_len, trusted, hk) = support::write_snapshot(&path, &mut support::records(n, 9));

    // Memory: RSS before and after holding one loaded snapshot.
    let before = support::rss_bytes();
    let snap = Snapshot::load(&path, &trusted, Some(&hk)).expect("load");
    let after = support::rss_bytes();
    println!(
        "memory/{n}: file {file_len} B, snapshot accounts {} B ({:.1} B/doc), RSS grew {} B ({:.1} B/doc)",
        snap.memory_bytes(),
        snap.memory_bytes() as f64 / n as f64,
        after.saturating_sub(before),
        after.saturating_sub(before) as f64 / n as f64
    );
    drop(snap);

    let mut g = c.benchmark_group(format!("snapshot_load/{n}"));
    g.sample_size(10);
    g.bench_function("baseline/read+blake3", |b| b.iter(|| hash_file(&path)));
    g.bench_function("load+verify+index", |b| {
        b.iter(|| Snapshot::load(&path, &trusted, Some(&hk)).expect("load"))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
