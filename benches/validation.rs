//! Number validation + keyed hashing per item, next to the floor: the keyed hash alone.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use std::hint::black_box;

use permitgate::document::{ResidencePermitNo, TravelPermitNo};
use permitgate::keys::HashKey;
use permitgate::snapshot::DocKey;

fn bench(c: &mut Criterion) {
    let hk = HashKey::generate();
    let mut g = c.benchmark_group("validate_and_hash");
    g.bench_function("travel_permit/parse+hash", |b| {
        b.iter(|| {
            let n = TravelPermitNo::parse(black_box(" h12345678 ")).expect("valid");
            DocKey::of(&hk, n.canonical())
        })
    });
    g.bench_function("residence_permit/parse+hash", |b| {
        b.iter(|| {
            let n = ResidencePermitNo::parse(black_box("810000199001011230")).expect("valid");
            DocKey::of(&hk, n.canonical())
        })
    });
    g.bench_function("residence_permit/full_width+parse+hash", |b| {
        b.iter(|| {
            let n = ResidencePermitNo::parse(black_box("８１００００１９９００１０１１２３０"))
                .expect("valid");
            DocKey::of(&hk, n.canonical())
        })
    });
    // Baseline: the keyed hash of the already-canonical bytes, nothing else.
    g.bench_function("baseline/keyed_blake3_only", |b| {
        b.iter_batched(
            || "810000199001011230",
            |s| DocKey::of(&hk, black_box(s)),
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
