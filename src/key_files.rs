//! Key material on disk: the publisher's Ed25519 keys and the identifier hashing key.
//!
//! Formats are the ones other tools read: Ed25519 keys are PKCS#8 / SPKI PEM (openssl can
//! inspect them); the hashing key is 32 random bytes as 64 hex characters. A key id is the
//! first 8 bytes of the BLAKE3 hash of the public key (or, for the hashing key, of a key
//! derived from it, so the id reveals nothing usable about the key).

use std::path::{Path, PathBuf};

use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use ed25519_dalek::{SigningKey, VerifyingKey};

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read key file {}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write key file {}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("key file {path} is not {expected}")]
    Format {
        path: PathBuf,
        expected: &'static str,
    },
}

/// Short, stable identifier of a key, printed as 16 hex characters.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyId(pub [u8; 8]);

impl std::fmt::Display for KeyId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl std::fmt::Debug for KeyId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KeyId({self})")
    }
}

pub fn verifying_key_id(key: &VerifyingKey) -> KeyId {
    let h = blake3::hash(key.as_bytes());
    let mut id = [0u8; 8];
    id.copy_from_slice(&h.as_bytes()[..8]);
    KeyId(id)
}

/// Key for the keyed hash of document numbers. Never leaves publishers and gateways.
#[derive(Clone)]
pub struct HashKey([u8; 32]);

impl std::fmt::Debug for HashKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HashKey(id {})", self.id())
    }
}

impl HashKey {
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        HashKey(bytes)
    }

    pub fn generate() -> Self {
        HashKey(rand::random())
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Written into snapshots so a gateway with a different hashing key refuses the snapshot
    /// instead of answering "not found" to every query.
    pub fn id(&self) -> KeyId {
        let derived = blake3::derive_key("permitgate 2026-11 hash key id", &self.0);
        let mut id = [0u8; 8];
        id.copy_from_slice(&derived[..8]);
        KeyId(id)
    }

    pub fn load(path: &Path) -> Result<Self, KeyError> {
        let text = read_text(path)?;
        let mut key = [0u8; 32];
        hex::decode_to_slice(text.trim(), &mut key).map_err(|_| KeyError::Format {
            path: path.to_owned(),
            expected: "64 hex characters (a 32-byte hashing key)",
        })?;
        Ok(HashKey(key))
    }

    pub fn save(&self, path: &Path) -> Result<(), KeyError> {
        write_secret(path, format!("{}\n", hex::encode(self.0)).as_bytes())
    }
}

pub fn generate_signing_key() -> SigningKey {
    SigningKey::from_bytes(&rand::random())
}

pub fn load_signing_key(path: &Path) -> Result<SigningKey, KeyError> {
    SigningKey::from_pkcs8_pem(&read_text(path)?).map_err(|_| KeyError::Format {
        path: path.to_owned(),
        expected: "an Ed25519 private key in PKCS#8 PEM",
    })
}

pub fn load_verifying_key(path: &Path) -> Result<VerifyingKey, KeyError> {
    VerifyingKey::from_public_key_pem(&read_text(path)?).map_err(|_| KeyError::Format {
        path: path.to_owned(),
        expected: "an Ed25519 public key in SPKI PEM",
    })
}

pub fn save_signing_key(key: &SigningKey, path: &Path) -> Result<(), KeyError> {
    let pem = key
        .to_pkcs8_pem(Default::default())
        .map_err(|_| KeyError::Format {
            path: path.to_owned(),
            expected: "encodable as PKCS#8",
        })?;
    write_secret(path, pem.as_bytes())
}

pub fn save_verifying_key(key: &VerifyingKey, path: &Path) -> Result<(), KeyError> {
    let pem = key
        .to_public_key_pem(Default::default())
        .map_err(|_| KeyError::Format {
            path: path.to_owned(),
            expected: "encodable as SPKI",
        })?;
    std::fs::write(path, pem).map_err(|source| KeyError::Write {
        path: path.to_owned(),
        source,
    })
}

fn read_text(path: &Path) -> Result<String, KeyError> {
    std::fs::read_to_string(path).map_err(|source| KeyError::Read {
        path: path.to_owned(),
        source,
    })
}

/// Private keys are created readable by their owner only.
pub fn write_secret(path: &Path, bytes: &[u8]) -> Result<(), KeyError> {
    use std::io::Write;
    let err = |source| KeyError::Write {
        path: path.to_owned(),
        source,
    };
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path).map_err(err)?;
    f.write_all(bytes).map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_through_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sk = generate_signing_key();
        save_signing_key(&sk, &dir.path().join("p.key")).expect("save");
        save_verifying_key(&sk.verifying_key(), &dir.path().join("p.pub")).expect("save");
        let sk2 = load_signing_key(&dir.path().join("p.key")).expect("load");
        let vk2 = load_verifying_key(&dir.path().join("p.pub")).expect("load");
        assert_eq!(sk.to_bytes(), sk2.to_bytes());
        assert_eq!(
            verifying_key_id(&vk2),
            verifying_key_id(&sk.verifying_key())
        );

        let hk = HashKey::generate();
        hk.save(&dir.path().join("h.key")).expect("save");
        let hk2 = HashKey::load(&dir.path().join("h.key")).expect("load");
        assert_eq!(hk.as_bytes(), hk2.as_bytes());
        assert_ne!(hk.id(), HashKey::generate().id());
    }

    #[test]
    fn wrong_formats_are_refused_with_the_path() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("bad");
        std::fs::write(&p, "not a key").expect("write");
        let e = HashKey::load(&p).expect_err("must fail");
        assert!(e.to_string().contains("64 hex"), "{e}");
        assert!(load_signing_key(&p).is_err());
        assert!(load_verifying_key(&p).is_err());
    }
}
