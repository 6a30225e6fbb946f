//! Signed manifests: arbitrary envelopes, and arbitrary `signed` documents behind a valid
//! signature (so the manifest's own checks are reached).
#![no_main]

use ed25519_dalek::{Signer, SigningKey};
use libfuzzer_sys::fuzz_target;
use permitgate::key_files::verifying_key_id;
use permitgate::snapshot::manifest::{signed_message, SignedManifest};

fuzz_target!(|data: &[u8]| {
    let sk = SigningKey::from_bytes(&[5; 32]);
    let trusted = [sk.verifying_key()];
    let _ = SignedManifest::verify(data, &trusted);
    let Ok(signed) = std::str::from_utf8(data) else {
        return;
    };
    if serde_json::from_str::<&serde_json::value::RawValue>(signed).is_err() {
        return;
    }
    let sig = sk.sign(&signed_message(signed.as_bytes()));
    let envelope = format!(
        r#"{{"signed":{signed},"signatures":[{{"key_id":"{}","sig":"{}"}}]}}"#,
        verifying_key_id(&sk.verifying_key()),
        sig.to_bytes().iter().map(|b| format!("{b:02x}")).collect::<String>()
    );
    let _ = SignedManifest::verify(envelope.as_bytes(), &trusted);
});
