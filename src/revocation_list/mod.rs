//! The revocation list of temporary permits: what an offline gate (or the verifier page)
//! needs to refuse a revoked permit without asking a gateway, as the EU DCC revocation
//! lists do. The origin writes it after every publication (src/origin): signed by the
//! temporary-permit issuing key under a signature context of its own (a list can never be
//! passed off as a permit, nor a permit as a list), compact (12 bytes a permit), holding
//! only permits that have not yet expired, and the time it was issued, so that a verifier
//! says how old it is and refuses one older than it accepts.
//!
//! Layout (integers little-endian):
//!
//! | size | field |
//! |---|---|
//! | 4 | `PGRL` |
//! | 1 | format version: 1 |
//! | 8 | issuing key id (as in a token) |
//! | 8 | issued_at, Unix seconds (i64) |
//! | 8 | the data version it was made from (u64) |
//! | 4 | n, the number of permits (u32) |
//! | 12 × n | permit id (8) and expires_at (u32 Unix seconds), sorted by id, no repeats |
//! | 64 | Ed25519 over `"permitgate temporary permit revocations v1\0"` ‖ everything before |

mod delta;
mod served;

pub use delta::{apply_delta, delta, DeltaError, DELTA_FORMAT};
pub use served::{Current, Served};

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier};
use time::{Duration, OffsetDateTime};

use crate::key_files::{verifying_key_id, KeyId};
use crate::keyring::{KeyUse, Keyring};
use crate::temp_permit::PermitId;

/// Where the origin writes the list, in the repository's directory.
pub const FILE: &str = "temp-permit-revocations.bin";

const MAGIC: &[u8; 4] = b"PGRL";
const VERSION: u8 = 1;
const CONTEXT: &[u8] = b"permitgate temporary permit revocations v1\0";
const HEAD_LEN: usize = 4 + 1 + 8 + 8 + 8 + 4;
const ENTRY_LEN: usize = 12;
const SIGNATURE_LEN: usize = 64;
/// The largest list a gateway takes in (about 1.4 million revoked permits).
pub const MAX_LIST_BYTES: u64 = 16 * 1024 * 1024;
/// A revoked permit stays listed this long after it expires: verifiers tolerate clock
/// skew (300 s by default), and a day covers any sane setting.
pub const KEPT_AFTER_EXPIRY: Duration = Duration::days(1);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ListError {
    #[error("is not a revocation list: {0}")]
    Malformed(&'static str),
    #[error(
        "is signed by a key that is not a published temporary-permit key valid when it was issued"
    )]
    UnknownKey,
    #[error("has a signature that does not verify")]
    BadSignature,
}

/// A revocation list whose signature verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevocationList {
    pub key_id: KeyId,
    pub issued_at: OffsetDateTime,
    pub data_version: u64,
    /// Sorted by id.
    entries: Vec<([u8; 8], u32)>,
}

/// The list of `revoked` (permit id, expiry) as of `now`, made from data `version`,
/// signed with `key`. Permits expired more than [`KEPT_AFTER_EXPIRY`] ago are left out.
pub fn build(
    revoked: impl IntoIterator<Item = (PermitId, OffsetDateTime)>,
    now: OffsetDateTime,
    data_version: u64,
    key: &SigningKey,
) -> Vec<u8> {
    let mut entries: Vec<([u8; 8], u32)> = revoked
        .into_iter()
        .filter(|(_, expires)| *expires + KEPT_AFTER_EXPIRY > now)
        .map(|(id, expires)| {
            let secs = u32::try_from(expires.unix_timestamp().max(0)).unwrap_or(u32::MAX);
            (id.0, secs)
        })
        .collect();
    entries.sort_unstable();
    entries.dedup_by_key(|e| e.0);
    let mut out = Vec::with_capacity(HEAD_LEN + entries.len() * ENTRY_LEN + SIGNATURE_LEN);
    out.extend_from_slice(MAGIC);
    out.push(VERSION);
    out.extend_from_slice(&verifying_key_id(&key.verifying_key()).0);
    out.extend_from_slice(&now.unix_timestamp().to_le_bytes());
    out.extend_from_slice(&data_version.to_le_bytes());
    out.extend_from_slice(&(entries.len() as u32).to_le_bytes());
    for (id, expires) in &entries {
        out.extend_from_slice(id);
        out.extend_from_slice(&expires.to_le_bytes());
    }
    let signature = key.sign(&signed_message(&out));
    out.extend_from_slice(&signature.to_bytes());
    out
}

/// The data version the list in the file at `path` claims, read from its head alone and
/// not checked otherwise (the origin never replaces a list with one made from older data).
pub fn data_version_in(path: &std::path::Path) -> Option<u64> {
    use std::io::Read;
    let mut head = [0u8; HEAD_LEN];
    std::fs::File::open(path).ok()?.read_exact(&mut head).ok()?;
    data_version_of(&head)
}

/// A list's name in HTTP: its BLAKE3, quoted as an entity tag.
pub fn etag(bytes: &[u8]) -> String {
    format!("\"{}\"", blake3::hash(bytes).to_hex())
}

/// The data version a list's bytes claim (unchecked, like [`data_version_in`]).
pub fn data_version_of(bytes: &[u8]) -> Option<u64> {
    (bytes.len() >= HEAD_LEN && &bytes[..4] == MAGIC).then(|| u64::from_le_bytes(array(bytes, 21)))
}

/// How many permits a list's bytes claim to hold (unchecked, like [`data_version_in`]).
pub fn count_of(bytes: &[u8]) -> Option<u32> {
    (bytes.len() >= HEAD_LEN && &bytes[..4] == MAGIC).then(|| u32::from_le_bytes(array(bytes, 29)))
}

fn signed_message(body: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(CONTEXT.len() + body.len());
    m.extend_from_slice(CONTEXT);
    m.extend_from_slice(body);
    m
}

fn array<const N: usize>(bytes: &[u8], at: usize) -> [u8; N] {
    let mut a = [0u8; N];
    a.copy_from_slice(&bytes[at..at + N]);
    a
}

/// Reads a list and checks its signature against the published temporary-permit keys.
pub fn read(bytes: &[u8], keys: &Keyring) -> Result<RevocationList, ListError> {
    if bytes.len() < HEAD_LEN + SIGNATURE_LEN || &bytes[..4] != MAGIC {
        return Err(ListError::Malformed("it does not start with PGRL"));
    }
    if bytes[4] != VERSION {
        return Err(ListError::Malformed("its format version is not 1"));
    }
    let key_id = KeyId(array(bytes, 5));
    let issued_at = OffsetDateTime::from_unix_timestamp(i64::from_le_bytes(array(bytes, 13)))
        .map_err(|_| ListError::Malformed("its issue time is out of range"))?;
    let data_version = u64::from_le_bytes(array(bytes, 21));
    let count = u32::from_le_bytes(array(bytes, 29)) as usize;
    let body_len = count
        .checked_mul(ENTRY_LEN)
        .and_then(|n| n.checked_add(HEAD_LEN))
        .filter(|n| n + SIGNATURE_LEN == bytes.len())
        .ok_or(ListError::Malformed("its length does not match its count"))?;
    let key = keys
        .find(KeyUse::TempPermit, key_id, issued_at)
        .map_err(|_| ListError::UnknownKey)?;
    let signature = Signature::from_bytes(&array(bytes, body_len));
    key.verify(&signed_message(&bytes[..body_len]), &signature)
        .map_err(|_| ListError::BadSignature)?;
    let entries: Vec<([u8; 8], u32)> = bytes[HEAD_LEN..body_len]
        .chunks_exact(ENTRY_LEN)
        .map(|e| (array(e, 0), u32::from_le_bytes(array(e, 8))))
        .collect();
    if entries.windows(2).any(|w| w[0].0 >= w[1].0) {
        return Err(ListError::Malformed("its permits are not sorted"));
    }
    Ok(RevocationList {
        key_id,
        issued_at,
        data_version,
        entries,
    })
}

impl RevocationList {
    pub fn contains(&self, id: PermitId) -> bool {
        self.entries.binary_search_by_key(&id.0, |e| e.0).is_ok()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// How old the list is at `now`.
    pub fn age(&self, now: OffsetDateTime) -> Duration {
        now - self.issued_at
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key_files::generate_signing_key;
    use crate::keyring::{PublicKey, Validity};
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-12-05 04:00 UTC);

    fn ring(key: &SigningKey, use_: KeyUse) -> Keyring {
        Keyring::new(vec![PublicKey::new(
            use_,
            key.verifying_key(),
            Validity::default(),
        )])
    }

    #[test]
    fn a_list_holds_what_is_revoked_and_not_long_expired() {
        let key = generate_signing_key();
        let (a, b, c) = (PermitId([1; 8]), PermitId([2; 8]), PermitId([3; 8]));
        let bytes = build(
            [
                (b, NOW + Duration::days(3)),
                (a, NOW + Duration::days(7)),
                (c, NOW - Duration::days(2)),
                (a, NOW + Duration::days(7)),
            ],
            NOW,
            41,
            &key,
        );
        assert_eq!(bytes.len(), HEAD_LEN + 2 * ENTRY_LEN + SIGNATURE_LEN);
        let list = read(&bytes, &ring(&key, KeyUse::TempPermit)).expect("reads");
        assert!(list.contains(a) && list.contains(b));
        assert!(!list.contains(c), "expired two days ago: left out");
        assert!(!list.contains(PermitId([9; 8])));
        assert_eq!((list.len(), list.data_version), (2, 41));
        assert_eq!(list.age(NOW + Duration::hours(2)), Duration::hours(2));
    }

    #[test]
    fn a_changed_byte_a_foreign_key_or_a_receipt_key_is_refused() {
        let key = generate_signing_key();
        let bytes = build([(PermitId([1; 8]), NOW + Duration::days(1))], NOW, 1, &key);
        let mut flipped = bytes.clone();
        flipped[HEAD_LEN] ^= 1;
        assert_eq!(
            read(&flipped, &ring(&key, KeyUse::TempPermit)),
            Err(ListError::BadSignature)
        );
        assert_eq!(
            read(&bytes, &ring(&generate_signing_key(), KeyUse::TempPermit)),
            Err(ListError::UnknownKey)
        );
        assert_eq!(
            read(&bytes, &ring(&key, KeyUse::Receipt)),
            Err(ListError::UnknownKey),
            "a key vouches for its own use only"
        );
        for cut in [0, 10, bytes.len() - 1] {
            assert!(matches!(
                read(&bytes[..cut], &ring(&key, KeyUse::TempPermit)),
                Err(ListError::Malformed(_))
            ));
        }
    }
}
