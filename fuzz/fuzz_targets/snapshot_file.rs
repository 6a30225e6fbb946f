//! Snapshot and delta files: the whole file is parsed and indexed before its signature is
//! checked at the end, so arbitrary bytes reach every decoder. Seeds: a real snapshot and
//! delta (fuzz/seeds.sh).
#![no_main]

use libfuzzer_sys::fuzz_target;
use permitgate::snapshot::{Delta, Snapshot};

fuzz_target!(|data: &[u8]| {
    let key = ed25519_dalek::SigningKey::from_bytes(&[9; 32]).verifying_key();
    let _ = Snapshot::from_bytes(data.to_vec(), &[key], None);
    let _ = Delta::from_bytes(data.to_vec(), &[key], None);
});
