//! Number validation + keyed hashing per item, next to the floor: the keyed hash alone.
//! And the per-answer timestamp and dates, next to formatting them with the `time` crate.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use std::hint::black_box;

use permitgate::document::{ResidencePermitNo, TravelPermitNo};
use permitgate::key_files::HashKey;
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

    let mut g = c.benchmark_group("timestamp");
    let now = time::OffsetDateTime::now_utc();
    g.bench_function("checked_at/day::rfc3339", |b| {
        b.iter(|| permitgate::day::rfc3339(black_box(now)))
    });
    // A date in an answer: `time`'s calendar and the formatting machinery, against
    // `Day::ymd`'s arithmetic.
    let day = permitgate::day::Day(20_600);
    let fmt = time::macros::format_description!("[year]-[month]-[day]");
    g.bench_function("baseline/time_crate_date", |b| {
        b.iter(|| {
            time::Date::from_julian_day(black_box(day).0 as i32 + 2_440_588).map(|d| d.format(&fmt))
        })
    });
    g.bench_function("valid_until/Day::ymd", |b| b.iter(|| black_box(day).ymd()));
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
