//! One document in a snapshot: 32 bytes, fixed layout, so the index is a flat array.

use crate::day::Day;
use crate::document::{DocumentKind, Region};

/// Keyed hash of a canonical document number (first 16 bytes of keyed BLAKE3). 128 bits
/// keeps the collision chance for 10^8 documents below 10^-22.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DocKey(pub [u8; 16]);

impl DocKey {
    pub fn of(hash_key: &crate::key_files::HashKey, canonical: &str) -> DocKey {
        let h = blake3::keyed_hash(hash_key.as_bytes(), canonical.as_bytes());
        let mut k = [0u8; 16];
        k.copy_from_slice(&h.as_bytes()[..16]);
        DocKey(k)
    }

    /// Person id of an authority person reference: keyed, so a snapshot does not reveal
    /// the authority's references, and stable across publications.
    pub fn person_id(hash_key: &crate::key_files::HashKey, person_ref: &str) -> u64 {
        let mut h = blake3::Hasher::new_keyed(hash_key.as_bytes());
        h.update(b"person\0");
        h.update(person_ref.as_bytes());
        let mut id = [0u8; 8];
        id.copy_from_slice(&h.finalize().as_bytes()[..8]);
        u64::from_le_bytes(id)
    }

    /// The top 64 bits, used to pick the index bucket.
    #[inline]
    pub fn prefix(&self) -> u64 {
        let mut p = [0u8; 8];
        p.copy_from_slice(&self.0[..8]);
        u64::from_be_bytes(p)
    }

    /// Short hex form for logs and audit: identifies a document to whoever holds the hashing
    /// key, nobody else.
    pub fn short_hex(&self) -> String {
        hex::encode(&self.0[..8])
    }
}

impl std::fmt::Debug for DocKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DocKey({})", self.short_hex())
    }
}

/// Status recorded by the authority. `Expired` may also be derived at check time from
/// `valid_until`.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    serde::Serialize,
    serde::Deserialize,
    strum::FromRepr,
    strum::IntoStaticStr,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
#[repr(u8)]
pub enum RecordStatus {
    Valid = 0,
    Lost = 1,
    Damaged = 2,
    Revoked = 3,
    Replaced = 4,
    Expired = 5,
}

impl RecordStatus {
    /// The wire name (`lost`, `replaced`...).
    pub fn label(self) -> &'static str {
        self.into()
    }

    /// The byte in the snapshot format (docs/snapshot-format.md).
    pub fn to_u8(self) -> u8 {
        self as u8
    }

    pub fn from_u8(v: u8) -> Option<RecordStatus> {
        RecordStatus::from_repr(v)
    }
}

/// Sentinel for "the export gave no renewal count".
pub const NO_RENEWAL: u8 = 0xFF;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record {
    pub key: DocKey,
    /// Person id: keyed hash of the authority's person reference, stable across
    /// publications. Two documents are linked iff they share it.
    pub person: u64,
    /// Last valid day, as days since 1970-01-01.
    pub valid_until: u32,
    pub status: RecordStatus,
    pub kind: DocumentKind,
    pub region: Region,
    /// Renewal count of the current card (travel permits), or [`NO_RENEWAL`].
    pub renewal: u8,
}

impl Record {
    pub const LEN: usize = 32;

    /// The recorded status as of `today`: a valid document past its last valid day is
    /// expired (the authority need not publish that).
    pub fn status_on(&self, today: Day) -> RecordStatus {
        match self.status {
            RecordStatus::Valid if self.valid_until < today.0 => RecordStatus::Expired,
            s => s,
        }
    }

    pub fn encode(&self, out: &mut [u8]) {
        out[..16].copy_from_slice(&self.key.0);
        out[16..24].copy_from_slice(&self.person.to_le_bytes());
        out[24..28].copy_from_slice(&self.valid_until.to_le_bytes());
        out[28] = self.status.to_u8();
        out[29] = self.kind.to_u8();
        out[30] = self.region.to_u8();
        out[31] = self.renewal;
    }

    /// Whether the enum bytes of an encoded record (status, kind, region) are valid: the
    /// check a snapshot's records pass at load, next to the codec it guards.
    #[inline]
    pub fn fields_valid(b: &[u8; Record::LEN]) -> bool {
        RecordStatus::from_u8(b[28]).is_some()
            && DocumentKind::from_u8(b[29]).is_some()
            && Region::from_u8(b[30]).is_some()
    }

    /// Decodes a record whose enum bytes were validated at load time; `None` if they are not
    /// valid (only reachable for bytes that skipped [`Record::fields_valid`]).
    #[inline]
    pub fn decode(b: &[u8]) -> Option<Record> {
        let mut key = [0u8; 16];
        key.copy_from_slice(b.get(..16)?);
        Some(Record {
            key: DocKey(key),
            person: u64::from_le_bytes(b.get(16..24)?.try_into().ok()?),
            valid_until: u32::from_le_bytes(b.get(24..28)?.try_into().ok()?),
            status: RecordStatus::from_u8(*b.get(28)?)?,
            kind: DocumentKind::from_u8(*b.get(29)?)?,
            region: Region::from_u8(*b.get(30)?)?,
            renewal: *b.get(31)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Vectors from the Python `blake3` package (docs/snapshot-format.md), not this code.
    #[test]
    fn keyed_hash_vectors() {
        let mut k = [0u8; 32];
        for (i, b) in k.iter_mut().enumerate() {
            *b = i as u8;
        }
        let hk = crate::key_files::HashKey::from_bytes(k);
        for (number, want) in [
            ("H12345678", "95d86d2b749c8864784babb9423f8b0a"),
            ("810000199001011230", "773b6a70e86511467914956bc998fb95"),
            ("01234567", "42b92a5ece06337569f5c058f3e9d28b"),
        ] {
            assert_eq!(hex::encode(DocKey::of(&hk, number).0), want, "{number}");
        }
        assert_eq!(hk.id().to_string(), "dd53d8d3ac435269");
    }

    #[test]
    fn record_round_trip() {
        let r = Record {
            key: DocKey([7; 16]),
            person: 0xDEAD_BEEF_0BAD_F00D,
            valid_until: 20_000,
            status: RecordStatus::Replaced,
            kind: DocumentKind::TravelPermit,
            region: Region::Macao,
            renewal: 3,
        };
        let mut buf = [0u8; Record::LEN];
        r.encode(&mut buf);
        assert_eq!(Record::decode(&buf), Some(r));
        buf[28] = 9;
        assert_eq!(Record::decode(&buf), None);
    }
}
