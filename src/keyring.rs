//! The platform's published public keys, and the receipt signing keys a gateway holds.
//!
//! A [`Keyring`] is what `GET /v1/keys` serves and what offline verifiers load from a
//! file (KEYS.json): every public key with its id, its use (receipt signing, temporary
//! permit issuing, snapshot publishing) and its validity window. A key only vouches for
//! objects signed inside its window, so a retired key cannot sign new receipts that
//! verifiers would accept.
//!
//! Rotation without downtime: configure the new key next to the old one. The newest valid
//! key (latest `not_before`) signs; the older ones stay published and keep verifying what
//! they signed.

use std::path::{Path, PathBuf};

use ed25519_dalek::{SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::key_files::{verifying_key_id, KeyId};

#[derive(Debug, thiserror::Error)]
pub enum KeyringError {
    #[error("cannot read keys file {}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("keys file is not valid: {0}")]
    Format(String),
}

/// What a key signs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyUse {
    Receipt,
    TempPermit,
    Snapshot,
}

impl KeyUse {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyUse::Receipt => "receipt",
            KeyUse::TempPermit => "temp_permit",
            KeyUse::Snapshot => "snapshot",
        }
    }
}

/// When a key may sign. Open ends are unbounded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Validity {
    pub not_before: Option<OffsetDateTime>,
    pub not_after: Option<OffsetDateTime>,
}

impl Validity {
    pub fn contains(&self, t: OffsetDateTime) -> bool {
        self.not_before.is_none_or(|nb| t >= nb) && self.not_after.is_none_or(|na| t <= na)
    }
}

#[derive(Debug, Clone)]
pub struct PublicKey {
    pub id: KeyId,
    pub key_use: KeyUse,
    pub key: VerifyingKey,
    pub validity: Validity,
}

impl PublicKey {
    pub fn new(key_use: KeyUse, key: VerifyingKey, validity: Validity) -> PublicKey {
        PublicKey {
            id: verifying_key_id(&key),
            key_use,
            key,
            validity,
        }
    }
}

/// Why no key vouches for a signed object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyLookup {
    /// No key of this use has the id.
    Unknown,
    /// The key exists but was not valid when the object says it was signed.
    OutsideValidity,
}

/// Who signs, in both languages of the paper document and the verifier page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Authority {
    pub zh: String,
    pub en: String,
}

/// The keys, and who publishes them: the authority's name and the address of its verifier
/// page (where a receipt's QR code leads). Both optional: older keys files have neither.
#[derive(Debug, Clone, Default)]
pub struct Keyring {
    keys: Vec<PublicKey>,
    pub authority: Option<Authority>,
    pub verify_url: Option<String>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeysFile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    authority: Option<Authority>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    verify_url: Option<String>,
    keys: Vec<KeyEntry>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyEntry {
    id: String,
    #[serde(rename = "use")]
    key_use: KeyUse,
    algorithm: String,
    /// The raw 32-byte Ed25519 public key, hex.
    public_key: String,
    #[serde(with = "time::serde::rfc3339::option", default)]
    not_before: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option", default)]
    not_after: Option<OffsetDateTime>,
}

const ALGORITHM: &str = "Ed25519";

impl Keyring {
    pub fn new(keys: Vec<PublicKey>) -> Keyring {
        Keyring {
            keys,
            ..Keyring::default()
        }
    }

    pub fn keys(&self) -> &[PublicKey] {
        &self.keys
    }

    /// The key of `key_use` with `id`, if it was valid at `signed_at`.
    pub fn find(
        &self,
        key_use: KeyUse,
        id: KeyId,
        signed_at: OffsetDateTime,
    ) -> Result<&VerifyingKey, KeyLookup> {
        let mut found = false;
        for k in self
            .keys
            .iter()
            .filter(|k| k.key_use == key_use && k.id == id)
        {
            if k.validity.contains(signed_at) {
                return Ok(&k.key);
            }
            found = true;
        }
        Err(if found {
            KeyLookup::OutsideValidity
        } else {
            KeyLookup::Unknown
        })
    }

    /// The JSON form served at `GET /v1/keys` and read by offline verifiers.
    pub fn to_json(&self) -> Vec<u8> {
        let file = KeysFile {
            authority: self.authority.clone(),
            verify_url: self.verify_url.clone(),
            keys: self
                .keys
                .iter()
                .map(|k| KeyEntry {
                    id: k.id.to_string(),
                    key_use: k.key_use,
                    algorithm: ALGORITHM.to_owned(),
                    public_key: hex::encode(k.key.as_bytes()),
                    not_before: k.validity.not_before,
                    not_after: k.validity.not_after,
                })
                .collect(),
        };
        serde_json::to_vec_pretty(&file).unwrap_or_default()
    }

    pub fn from_json(bytes: &[u8]) -> Result<Keyring, KeyringError> {
        let file: KeysFile =
            serde_json::from_slice(bytes).map_err(|e| KeyringError::Format(e.to_string()))?;
        let keys = file
            .keys
            .into_iter()
            .enumerate()
            .map(|(i, e)| {
                let bad = |rule: &str| KeyringError::Format(format!("keys[{i}]: {rule}"));
                if e.algorithm != ALGORITHM {
                    return Err(bad("algorithm must be Ed25519"));
                }
                let mut raw = [0u8; 32];
                hex::decode_to_slice(&e.public_key, &mut raw)
                    .map_err(|_| bad("public_key must be 64 hex characters"))?;
                let key = VerifyingKey::from_bytes(&raw)
                    .map_err(|_| bad("public_key is not an Ed25519 public key"))?;
                let k = PublicKey::new(
                    e.key_use,
                    key,
                    Validity {
                        not_before: e.not_before,
                        not_after: e.not_after,
                    },
                );
                if k.id.to_string() != e.id {
                    return Err(bad("id does not match the public key"));
                }
                Ok(k)
            })
            .collect::<Result<Vec<_>, _>>()?;
        if let Some(url) = &file.verify_url {
            check_verify_url(url).map_err(|e| KeyringError::Format(format!("verify_url: {e}")))?;
        }
        Ok(Keyring {
            keys,
            authority: file.authority,
            verify_url: file.verify_url,
        })
    }

    pub fn load(path: &Path) -> Result<Keyring, KeyringError> {
        let bytes = std::fs::read(path).map_err(|source| KeyringError::Read {
            path: path.to_owned(),
            source,
        })?;
        Keyring::from_json(&bytes)
    }
}

/// The keyring in use, replaced whole by a reload (new receipt or temporary-permit keys):
/// readers take the one current when they start.
pub type SharedKeyring = std::sync::Arc<arc_swap::ArcSwap<Keyring>>;

/// Private keys of one use held by this process; the newest valid one signs.
#[derive(Clone, Default)]
pub struct SigningKeys {
    keys: Vec<(SigningKey, Validity)>,
}

impl std::fmt::Debug for SigningKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(
                self.keys
                    .iter()
                    .map(|(k, _)| verifying_key_id(&k.verifying_key())),
            )
            .finish()
    }
}

impl SigningKeys {
    pub fn new(keys: Vec<(SigningKey, Validity)>) -> SigningKeys {
        SigningKeys { keys }
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The key to sign with at `now`: of the keys valid then, the one with the latest
    /// `not_before` (an open start counts as earliest; ties go to the one listed last).
    pub fn current(&self, now: OffsetDateTime) -> Option<&SigningKey> {
        self.keys
            .iter()
            .filter(|(_, v)| v.contains(now))
            .max_by_key(|(_, v)| v.not_before)
            .map(|(k, _)| k)
    }

    /// The public halves, for the keyring.
    pub fn public(&self, key_use: KeyUse) -> impl Iterator<Item = PublicKey> + '_ {
        self.keys
            .iter()
            .map(move |(k, v)| PublicKey::new(key_use, k.verifying_key(), *v))
    }
}

/// Why an address cannot be the verifier page a receipt's QR code opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum VerifyUrlError {
    #[error("must start with https:// (http:// only for a loopback host)")]
    Scheme,
    #[error(
        "http:// is only for a loopback host (127.0.0.1, ::1, localhost): the page checks \
         signatures with the browser's WebCrypto, which a phone allows only over HTTPS"
    )]
    PlainHttp,
    #[error("must name a host, without a user name (@)")]
    Host,
    #[error("must be at most 200 characters")]
    TooLong,
    #[error(
        "must not contain spaces, control characters or a fragment (#): the receipt \
         follows it as the fragment"
    )]
    Characters,
}

/// The one rule for a verifier page's address, wherever one is taken (`[receipts]
/// verify_url`, a keys file given to `verify-site` or `receipt render`): a QR code must
/// never carry script (`javascript:`, `data:`) or lead to a page that cannot verify.
pub fn check_verify_url(url: &str) -> Result<(), VerifyUrlError> {
    if url.len() > 200 {
        return Err(VerifyUrlError::TooLong);
    }
    if !url.chars().all(|c| c.is_ascii_graphic() && c != '#') {
        return Err(VerifyUrlError::Characters);
    }
    let (plain, rest) = match (url.strip_prefix("https://"), url.strip_prefix("http://")) {
        (Some(rest), _) => (false, rest),
        (None, Some(rest)) => (true, rest),
        _ => return Err(VerifyUrlError::Scheme),
    };
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    if authority.is_empty() || authority.contains('@') {
        return Err(VerifyUrlError::Host);
    }
    // The host without its port: `[::1]:8080`, `127.0.0.1:8080`, `localhost`.
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => authority.split(':').next().unwrap_or_default(),
    };
    if host.is_empty() {
        return Err(VerifyUrlError::Host);
    }
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if plain && !loopback {
        return Err(VerifyUrlError::PlainHttp);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn key(n: u8) -> SigningKey {
        SigningKey::from_bytes(&[n; 32])
    }

    #[test]
    fn a_verify_url_is_https_or_plain_http_on_loopback_and_never_script() {
        for ok in [
            "https://verify.example.gov/verify/",
            "https://verify.example.gov:8443/v",
            "http://127.0.0.1:8080/verify/",
            "http://[::1]:8080/verify/",
            "http://localhost/verify/",
        ] {
            assert_eq!(check_verify_url(ok), Ok(()), "{ok}");
        }
        for (bad, why) in [
            ("javascript:alert(1)//", VerifyUrlError::Scheme),
            (
                "data:text/html,<script>alert(1)</script>",
                VerifyUrlError::Scheme,
            ),
            ("ftp://verify.example/", VerifyUrlError::Scheme),
            (
                "http://verify.example.gov/verify/",
                VerifyUrlError::PlainHttp,
            ),
            ("http://10.0.0.1/verify/", VerifyUrlError::PlainHttp),
            ("http://127.0.0.1@evil.example/", VerifyUrlError::Host),
            ("https:///verify/", VerifyUrlError::Host),
            ("https://:443/verify/", VerifyUrlError::Host),
            ("https://verify.example/v/#x", VerifyUrlError::Characters),
            ("https://verify.example/a b", VerifyUrlError::Characters),
        ] {
            assert_eq!(check_verify_url(bad), Err(why), "{bad}");
        }
        let long = format!("https://v.example/{}", "a".repeat(200));
        assert_eq!(check_verify_url(&long), Err(VerifyUrlError::TooLong));
    }
    #[test]
    fn json_round_trip_and_lookup_by_validity() {
        let window = Validity {
            not_before: Some(datetime!(2026-01-01 0:00 UTC)),
            not_after: Some(datetime!(2026-12-31 0:00 UTC)),
        };
        let ring = Keyring::new(vec![
            PublicKey::new(KeyUse::Receipt, key(1).verifying_key(), window),
            PublicKey::new(
                KeyUse::Snapshot,
                key(2).verifying_key(),
                Validity::default(),
            ),
        ]);
        let back = Keyring::from_json(&ring.to_json()).expect("parses");
        assert_eq!(back.keys().len(), 2);
        let id = verifying_key_id(&key(1).verifying_key());
        let inside = datetime!(2026-06-01 0:00 UTC);
        assert_eq!(
            back.find(KeyUse::Receipt, id, inside),
            Ok(&key(1).verifying_key())
        );
        assert_eq!(
            back.find(KeyUse::Receipt, id, datetime!(2027-06-01 0:00 UTC)),
            Err(KeyLookup::OutsideValidity)
        );
        assert_eq!(
            back.find(KeyUse::TempPermit, id, inside),
            Err(KeyLookup::Unknown),
            "a key only vouches for its own use"
        );
    }

    #[test]
    fn bad_files_name_the_entry_and_rule() {
        let ring = Keyring::new(vec![PublicKey::new(
            KeyUse::Receipt,
            key(1).verifying_key(),
            Validity::default(),
        )]);
        let text = String::from_utf8(ring.to_json()).expect("utf8");
        let forged = text.replace(
            &verifying_key_id(&key(1).verifying_key()).to_string(),
            "0011223344556677",
        );
        let e = Keyring::from_json(forged.as_bytes()).expect_err("id must match");
        assert!(e.to_string().contains("keys[0]: id"), "{e}");
        let e = Keyring::from_json(text.replace("Ed25519", "RSA").as_bytes()).expect_err("alg");
        assert!(e.to_string().contains("algorithm"), "{e}");
        assert!(Keyring::from_json(b"{\"keys\":[],\"x\":1}").is_err());
    }

    #[test]
    fn the_newest_valid_key_signs() {
        let old = Validity {
            not_before: Some(datetime!(2025-01-01 0:00 UTC)),
            not_after: Some(datetime!(2027-01-01 0:00 UTC)),
        };
        let new = Validity {
            not_before: Some(datetime!(2026-06-01 0:00 UTC)),
            not_after: None,
        };
        let keys = SigningKeys::new(vec![(key(2), new), (key(1), old)]);
        let at = |t| keys.current(t).map(|k| k.to_bytes()[0]);
        assert_eq!(
            at(datetime!(2026-01-01 0:00 UTC)),
            Some(1),
            "new key not valid yet"
        );
        assert_eq!(
            at(datetime!(2026-07-01 0:00 UTC)),
            Some(2),
            "both valid: newest"
        );
        assert_eq!(at(datetime!(2024-07-01 0:00 UTC)), None, "none valid");
    }
}
