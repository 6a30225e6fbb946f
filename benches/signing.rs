//! Signed objects per operation, next to their floor: raw ed25519-dalek signing and
//! verification of a message of the same length. What is left over is our encoding
//! (body layout, binding hash, base45) and the keyring lookup.

use criterion::{criterion_group, criterion_main, Criterion};
use ed25519_dalek::{Signer, SigningKey, Verifier};
use std::hint::black_box;
use time::macros::datetime;

use permitgate::checks::{DocState, DocumentPair, LinkAnswer, LinkResult};
use permitgate::day::Day;
use permitgate::document::{ResidencePermitNo, TravelPermitNo};
use permitgate::keyring::{KeyUse, Keyring, PublicKey, Validity};
use permitgate::snapshot::RecordStatus;
use permitgate::{receipt, temp_permit};

fn bench(c: &mut Criterion) {
    let key = SigningKey::from_bytes(&[7; 32]);
    let keys = |u| {
        Keyring::new(vec![PublicKey::new(
            u,
            key.verifying_key(),
            Validity::default(),
        )])
    };
    let (receipt_keys, permit_keys) = (keys(KeyUse::Receipt), keys(KeyUse::TempPermit));
    let at = datetime!(2026-11-25 08:00 UTC);
    let pair = DocumentPair::new(
        TravelPermitNo::parse("H12345678").expect("tp"),
        ResidencePermitNo::parse("810000199001011230").expect("rp"),
    )
    .expect("pair");
    let state = Some(DocState {
        status: RecordStatus::Valid,
        valid_until: Day(22_000),
    });
    let answer = LinkAnswer {
        result: LinkResult::Linked,
        travel_permit: state,
        residence_permit: state,
    };
    // As the demo's bank asks: its display names are signed in too.
    let names = permitgate::partner::DisplayName {
        zh: Some("演示银行（非真实机构）".into()),
        en: Some("Demo Bank (not a real bank)".into()),
    };
    let what = receipt::Issue {
        partner: "bank",
        partner_name: &names,
        snapshot_version: 42,
        checked_at: at,
        holder_name: None,
    };
    let (receipt_text, _) = receipt::issue(what, &pair, &answer, &key);
    let tp = TravelPermitNo::parse("H12345678").expect("tp");
    let (token, _) = temp_permit::issue(&tp, "CHAN Tai Man", temp_permit::Reason::Lost, at, &key)
        .expect("issue");
    // The floor: a message as long as what a format-3 receipt signs: context (22 bytes) +
    // 61 fixed + partner id 1+4 + no holder name 1 + region 1 + the demo bank's names
    // 1+33 and 1+27.
    let message = [0x5Au8; 22 + 61 + 5 + 1 + 1 + 34 + 28];
    let signature = key.sign(&message);

    let mut g = c.benchmark_group("signing");
    g.bench_function("baseline/ed25519_sign", |b| {
        b.iter(|| key.sign(black_box(&message)))
    });
    g.bench_function("receipt/issue", |b| {
        b.iter(|| receipt::issue(what, black_box(&pair), &answer, &key))
    });
    g.bench_function("baseline/ed25519_verify", |b| {
        b.iter(|| key.verifying_key().verify(black_box(&message), &signature))
    });
    g.bench_function("receipt/verify", |b| {
        b.iter(|| receipt::verify(black_box(&receipt_text), &receipt_keys))
    });
    g.bench_function("temp_permit/verify", |b| {
        b.iter(|| {
            temp_permit::verify(
                black_box(&token),
                &permit_keys,
                at,
                temp_permit::DEFAULT_CLOCK_SKEW,
                |_| false,
            )
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
