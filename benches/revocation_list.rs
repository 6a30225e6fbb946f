//! The temporary permits' revocation list at 100,000 revoked permits: its size (printed),
//! building and signing it (the origin, after every publication), reading and verifying it
//! (a gate or the verifier page), and a lookup; beside their floors: raw ed25519-dalek
//! over a message of the same length, and a HashSet probe. Then a delta (RFC 3229, the
//! gateway's `226`) after 100 revocations and 100 expiries: its size (printed), making it
//! (a gateway, once per new list and recent base) and applying it (a gate), beside
//! reading the whole new list, which a gate does either way.

use std::collections::HashSet;
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use ed25519_dalek::{Signer, SigningKey, Verifier};
use time::macros::datetime;
use time::Duration;

use permitgate::keyring::{KeyUse, Keyring, PublicKey, Validity};
use permitgate::revocation_list;
use permitgate::temp_permit::PermitId;

const REVOKED: u64 = 100_000;

fn bench(c: &mut Criterion) {
    let key = SigningKey::from_bytes(&[7; 32]);
    let keys = Keyring::new(vec![PublicKey::new(
        KeyUse::TempPermit,
        key.verifying_key(),
        Validity::default(),
    )]);
    let now = datetime!(2026-12-05 04:00 UTC);
    // Ids spread like random ones (the origin's are keyed hashes).
    let revoked: Vec<(PermitId, time::OffsetDateTime)> = (0..REVOKED)
        .map(|i| {
            let id = blake3::hash(&i.to_le_bytes());
            let mut b = [0u8; 8];
            b.copy_from_slice(&id.as_bytes()[..8]);
            (PermitId(b), now + Duration::days(3))
        })
        .collect();
    let bytes = revocation_list::build(revoked.iter().copied(), now, 1, &key);
    println!(
        "revocation list of {REVOKED} permits: {} bytes ({:.2} MB, {:.1} bytes a permit)",
        bytes.len(),
        bytes.len() as f64 / 1e6,
        bytes.len() as f64 / REVOKED as f64
    );
    let list = revocation_list::read(&bytes, &keys).expect("reads");
    let probe = revoked[REVOKED as usize / 2].0;
    let set: HashSet<[u8; 8]> = revoked.iter().map(|(id, _)| id.0).collect();
    let signature = key.sign(&bytes);

    let mut g = c.benchmark_group("revocation_list");
    g.sample_size(20);
    g.bench_function("baseline/ed25519_sign_same_length", |b| {
        b.iter(|| key.sign(black_box(&bytes)))
    });
    g.bench_function("build_and_sign_100k", |b| {
        b.iter(|| revocation_list::build(black_box(revoked.iter().copied()), now, 1, &key))
    });
    g.bench_function("baseline/ed25519_verify_same_length", |b| {
        b.iter(|| key.verifying_key().verify(black_box(&bytes), &signature))
    });
    g.bench_function("read_and_verify_100k", |b| {
        b.iter(|| revocation_list::read(black_box(&bytes), &keys))
    });
    g.bench_function("baseline/hashset_probe", |b| {
        b.iter(|| set.contains(black_box(&probe.0)))
    });
    g.bench_function("contains", |b| b.iter(|| list.contains(black_box(probe))));

    // The next list: 100 permits expired out of it, 100 revoked since.
    let next: Vec<(PermitId, time::OffsetDateTime)> = revoked[100..]
        .iter()
        .copied()
        .chain((REVOKED..REVOKED + 100).map(|i| {
            let id = blake3::hash(&i.to_le_bytes());
            let mut b = [0u8; 8];
            b.copy_from_slice(&id.as_bytes()[..8]);
            (PermitId(b), now + Duration::days(7))
        }))
        .collect();
    let later = now + Duration::minutes(1);
    let new_bytes = revocation_list::build(next.iter().copied(), later, 2, &key);
    let delta = revocation_list::delta(&bytes, &new_bytes).expect("delta");
    println!(
        "delta after 100 revocations and 100 expiries: {} bytes ({:.3}% of the list)",
        delta.len(),
        100.0 * delta.len() as f64 / new_bytes.len() as f64
    );
    g.bench_function("delta_make_100k", |b| {
        b.iter(|| revocation_list::delta(black_box(&bytes), black_box(&new_bytes)))
    });
    g.bench_function("delta_apply_100k", |b| {
        b.iter(|| revocation_list::apply_delta(black_box(&bytes), black_box(&delta)))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
