//! Temporary-permit tokens and receipts: arbitrary text, and arbitrary bodies behind a
//! valid signature (so the field decoding after the signature check is reached too).
#![no_main]

use std::sync::OnceLock;

use ed25519_dalek::SigningKey;
use libfuzzer_sys::fuzz_target;
use permitgate::keyring::{KeyUse, Keyring, PublicKey, Validity};
use permitgate::{receipt, sealed, temp_permit};
use time::{Duration, OffsetDateTime};

fn keys() -> &'static (SigningKey, Keyring) {
    static K: OnceLock<(SigningKey, Keyring)> = OnceLock::new();
    K.get_or_init(|| {
        let sk = SigningKey::from_bytes(&[7; 32]);
        let ring = Keyring::new(vec![
            PublicKey::new(KeyUse::TempPermit, sk.verifying_key(), Validity::default()),
            PublicKey::new(KeyUse::Receipt, sk.verifying_key(), Validity::default()),
        ]);
        (sk, ring)
    })
}

fuzz_target!(|data: &[u8]| {
    let (sk, ring) = keys();
    let now = OffsetDateTime::from_unix_timestamp(1_795_000_000).expect("time");
    if let Ok(text) = std::str::from_utf8(data) {
        let v = temp_permit::verify(text, ring, now, Duration::minutes(5), |_| false);
        assert!(v.permit.is_none() || v.status != temp_permit::TokenStatus::Malformed);
        let _ = receipt::verify(text, ring);
    }
    // The same bytes as a body, signed: decoding must refuse or accept, never panic.
    for kind in [&temp_permit::KIND, &receipt::KIND] {
        let mut body = sealed::body_head(kind, sk);
        body.extend_from_slice(data);
        let token = sealed::seal(kind, body, sk);
        let _ = temp_permit::verify(&token, ring, now, Duration::minutes(5), |_| true);
        let _ = receipt::verify(&token, ring);
    }
});
