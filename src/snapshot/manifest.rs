//! The signed manifest: which snapshot is current, how new it is, and until when to trust it.
//!
//! On disk: `{"signed": {...}, "signatures": [{"key_id", "sig"}]}`. Signatures cover the
//! exact bytes of the `signed` value as they appear in the file (kept with `RawValue`), so
//! any verifier can check them without a canonical JSON encoding.

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use time::OffsetDateTime;

use super::{ManifestError, SnapshotError};
use crate::key_files::{verifying_key_id, KeyId};

const SIGNATURE_CONTEXT: &[u8] = b"permitgate manifest v1\0";
pub const MANIFEST_TYPE: &str = "permitgate-manifest";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    #[serde(rename = "type")]
    pub kind: String,
    pub format: u32,
    /// Strictly increasing across publications; a gateway never goes back.
    pub version: u64,
    #[serde(with = "time::serde::rfc3339")]
    pub published_at: OffsetDateTime,
    /// After this the holder flags itself stale (freeze attack or dead origin).
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
    pub snapshot: ManifestSnapshot,
    /// Changes published since the snapshot, in order; each applies onto the data version
    /// the previous one (or the snapshot) left.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deltas: Vec<ManifestDelta>,
}

impl Manifest {
    /// Version of the data after the snapshot and every delta.
    pub fn data_version(&self) -> u64 {
        self.deltas
            .last()
            .map_or(self.snapshot.version, |d| d.version)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestDelta {
    /// BLAKE3 of the delta file, hex; also its object name.
    pub hash: String,
    pub size: u64,
    pub from_version: u64,
    pub version: u64,
    /// Changes in the delta.
    pub entries: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestSnapshot {
    /// BLAKE3 of the snapshot file, hex; also its object name in the repo.
    pub hash: String,
    pub size: u64,
    pub version: u64,
    pub documents: u64,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Envelope<'a> {
    #[serde(borrow)]
    signed: &'a RawValue,
    signatures: Vec<SignatureEntry>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SignatureEntry {
    key_id: String,
    sig: String,
}

/// A manifest whose signature has been checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedManifest {
    pub manifest: Manifest,
    pub key_id: KeyId,
}

impl SignedManifest {
    pub fn sign(manifest: &Manifest, key: &SigningKey) -> Result<Vec<u8>, SnapshotError> {
        let signed = serde_json::to_string_pretty(manifest)
            .map_err(|e| SnapshotError::Manifest(ManifestError::Encode(e)))?;
        let sig = key.sign(&signed_message(signed.as_bytes()));
        let raw = RawValue::from_string(signed)
            .map_err(|e| SnapshotError::Manifest(ManifestError::Encode(e)))?;
        let env = Envelope {
            signed: &raw,
            signatures: vec![SignatureEntry {
                key_id: verifying_key_id(&key.verifying_key()).to_string(),
                sig: hex::encode(sig.to_bytes()),
            }],
        };
        let mut out = serde_json::to_vec_pretty(&env)
            .map_err(|e| SnapshotError::Manifest(ManifestError::Encode(e)))?;
        out.push(b'\n');
        Ok(out)
    }

    /// Accepts the manifest if any signature is a valid one by a trusted key.
    pub fn verify(bytes: &[u8], trusted: &[VerifyingKey]) -> Result<SignedManifest, SnapshotError> {
        let env: Envelope<'_> = serde_json::from_slice(bytes)
            .map_err(|e| SnapshotError::Manifest(ManifestError::Envelope(e)))?;
        let mut unknown = None;
        for entry in &env.signatures {
            let Some(key) = trusted
                .iter()
                .find(|k| verifying_key_id(k).to_string() == entry.key_id)
            else {
                unknown = Some(entry.key_id.clone());
                continue;
            };
            let mut sig = [0u8; 64];
            hex::decode_to_slice(&entry.sig, &mut sig)
                .map_err(|_| SnapshotError::BadSignature { what: "manifest" })?;
            key.verify(
                &signed_message(env.signed.get().as_bytes()),
                &Signature::from_bytes(&sig),
            )
            .map_err(|_| SnapshotError::BadSignature { what: "manifest" })?;
            let manifest: Manifest = serde_json::from_str(env.signed.get())
                .map_err(|e| SnapshotError::Manifest(ManifestError::Fields(e)))?;
            if manifest.kind != MANIFEST_TYPE || manifest.format != 1 {
                return Err(SnapshotError::Manifest(ManifestError::Unsupported {
                    kind: manifest.kind,
                    format: manifest.format,
                }));
            }
            return Ok(SignedManifest {
                manifest,
                key_id: verifying_key_id(key),
            });
        }
        match unknown {
            Some(id) => {
                let mut key_id = [0u8; 8];
                // An id that is not even hex is reported as all zeros.
                let _ = hex::decode_to_slice(&id, &mut key_id);
                Err(SnapshotError::UnknownKey {
                    what: "manifest",
                    key_id: KeyId(key_id),
                })
            }
            None => Err(SnapshotError::Manifest(ManifestError::Unsigned)),
        }
    }
}

/// What a manifest signature signs: a context string, then the `signed` document.
pub fn signed_message(signed: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(SIGNATURE_CONTEXT.len() + signed.len());
    m.extend_from_slice(SIGNATURE_CONTEXT);
    m.extend_from_slice(signed);
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key_files::generate_signing_key;

    fn manifest() -> Manifest {
        Manifest {
            kind: MANIFEST_TYPE.into(),
            format: 1,
            version: 3,
            published_at: OffsetDateTime::from_unix_timestamp(1_790_000_000).expect("ts"),
            expires_at: OffsetDateTime::from_unix_timestamp(1_790_086_400).expect("ts"),
            snapshot: ManifestSnapshot {
                hash: "ab".repeat(32),
                size: 160,
                version: 3,
                documents: 0,
            },
            deltas: Vec::new(),
        }
    }

    #[test]
    fn sign_verify_and_tamper() {
        let sk = generate_signing_key();
        let bytes = SignedManifest::sign(&manifest(), &sk).expect("sign");
        let ok = SignedManifest::verify(&bytes, &[sk.verifying_key()]).expect("verify");
        assert_eq!(ok.manifest, manifest());

        let text = String::from_utf8(bytes.clone()).expect("utf8");
        let tampered = text.replace("\"version\": 3", "\"version\": 4");
        assert_ne!(tampered, text);
        assert!(matches!(
            SignedManifest::verify(tampered.as_bytes(), &[sk.verifying_key()]),
            Err(SnapshotError::BadSignature { .. })
        ));
        let other = generate_signing_key();
        assert!(matches!(
            SignedManifest::verify(&bytes, &[other.verifying_key()]),
            Err(SnapshotError::UnknownKey { .. })
        ));
        assert!(SignedManifest::verify(&bytes[..bytes.len() / 2], &[sk.verifying_key()]).is_err());
    }
}
