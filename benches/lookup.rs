//! Store lookups (hit, miss; cache on and off; uniform and Zipf keys) at 1M and 10M
//! documents, next to a std HashMap lookup of the same keys in the same run.
//!
//! `PG_BENCH_SIZES=1000000` limits the sizes (the 10M fixtures take ~1 GiB and ~30 s);
//! `PG_BENCH_SIZES=100000000` measures 100M documents (about 14 GB of memory, cache off
//! only).

#[path = "support/mod.rs"]
mod support;

use std::collections::HashMap;
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Zipf};

use permitgate::snapshot::{DocKey, Record};
use permitgate::store::{CacheConfig, CacheCounters, State};

const QUERIES: usize = 1 << 20;

fn sizes() -> Vec<usize> {
    std::env::var("PG_BENCH_SIZES")
        .ok()
        .map(|s| s.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![1_000_000, 10_000_000])
}

fn query_keys(records: &[Record], zipf: bool, seed: u64) -> Vec<DocKey> {
    let mut rng = StdRng::seed_from_u64(seed);
    if zipf {
        // s = 1.0: a few documents (frequent travellers' permits) dominate.
        let z = Zipf::new(records.len() as f64, 1.0).expect("zipf");
        (0..QUERIES)
            .map(|_| records[(z.sample(&mut rng) as usize - 1).min(records.len() - 1)].key)
            .collect()
    } else {
        (0..QUERIES)
            .map(|_| records[rng.random_range(0..records.len())].key)
            .collect()
    }
}

fn bench(c: &mut Criterion) {
    for n in sizes() {
        let mut records = support::records(n, 42);
        let uniform = query_keys(&records, false, 1);
        let zipf = query_keys(&records, true, 2);
        let misses: Vec<DocKey> = {
            let mut rng = StdRng::seed_from_u64(3);
            (0..QUERIES).map(|_| DocKey(rng.random())).collect()
        };
        // The snapshot streamed to a file and loaded, as a gateway loads it: at 100M a
        // second in-memory image would not fit beside the HashMap.
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("snapshot");
        let (_, trusted, hk) = support::write_snapshot(&path, &mut records);
        let state = |cache: CacheConfig| {
            State::new(
                support::repo_from_file(&path, &trusted, &hk),
                &cache,
                CacheCounters::detached(),
            )
            .expect("state")
        };
        let off = state(CacheConfig::default());
        // The cache's own copy of the index is past this machine's memory at 100M.
        let on = (n <= 10_000_000).then(|| {
            state(CacheConfig {
                enabled: true,
                max_entries: 1_000_000,
            })
        });
        let map: HashMap<DocKey, Record> = records.iter().map(|r| (r.key, *r)).collect();
        drop(records);

        // One view per state, as one request holds one for all its lookups.
        let (off, on) = (off.view(), on.as_ref().map(State::view));
        let mut g = c.benchmark_group(format!("lookup/{n}"));
        for (dist, keys) in [("uniform", &uniform), ("zipf", &zipf)] {
            let mut i = 0usize;
            g.bench_function(format!("baseline_hashmap/hit/{dist}"), |b| {
                b.iter(|| {
                    i = (i + 1) & (QUERIES - 1);
                    black_box(map.get(&keys[i]).copied())
                })
            });
            let mut i = 0usize;
            g.bench_function(format!("store_cache_off/hit/{dist}"), |b| {
                b.iter(|| {
                    i = (i + 1) & (QUERIES - 1);
                    black_box(off.get(&keys[i]))
                })
            });
            if let Some(on) = &on {
                let mut i = 0usize;
                g.bench_function(format!("store_cache_on/hit/{dist}"), |b| {
                    b.iter(|| {
                        i = (i + 1) & (QUERIES - 1);
                        black_box(on.get(&keys[i]))
                    })
                });
            }
        }
        let mut i = 0usize;
        g.bench_function("baseline_hashmap/miss", |b| {
            b.iter(|| {
                i = (i + 1) & (QUERIES - 1);
                black_box(map.get(&misses[i]).copied())
            })
        });
        let mut i = 0usize;
        g.bench_function("store_cache_off/miss", |b| {
            b.iter(|| {
                i = (i + 1) & (QUERIES - 1);
                black_box(off.get(&misses[i]))
            })
        });
        if let Some(on) = &on {
            let mut i = 0usize;
            g.bench_function("store_cache_on/miss", |b| {
                b.iter(|| {
                    i = (i + 1) & (QUERIES - 1);
                    black_box(on.get(&misses[i]))
                })
            });
        }
        g.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(std::time::Duration::from_secs(1))
        .measurement_time(std::time::Duration::from_secs(3));
    targets = bench
}
criterion_main!(benches);
