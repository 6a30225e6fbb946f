//! A revocation list as the changes from one a gate already holds: the permits revoked
//! since, the ones that expired out of it, and the new list's head and signature. The
//! gateway that serves it holds no signing key and needs none: the gate rebuilds the
//! whole new list from its own and the delta, and checks the origin's signature on that,
//! as on any list. Served as an RFC 3229 delta (`A-IM: pgrl-delta`, `226 IM Used`).
//!
//! Layout (integers little-endian):
//!
//! | size | field |
//! |---|---|
//! | 4 | `PGRD` |
//! | 1 | format version: 1 |
//! | 32 | BLAKE3 of the list it applies to (the base) |
//! | 24 | the new list's key id, issued_at and data version, as in the list |
//! | 4 | r, the number of permits no longer listed |
//! | 8 × r | their ids, sorted |
//! | 4 | a, the number of permits newly listed |
//! | 12 × a | id and expires_at, sorted by id |
//! | 64 | the new list's signature |

use super::{array, ENTRY_LEN, HEAD_LEN, MAGIC, SIGNATURE_LEN, VERSION};

/// The delta format's name in `A-IM` and `IM`.
pub const DELTA_FORMAT: &str = "pgrl-delta";

const DELTA_MAGIC: &[u8; 4] = b"PGRD";
/// Key id, issued_at and data version: the list's head after magic and version, before
/// the count.
const FIELDS: std::ops::Range<usize> = 5..29;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeltaError {
    #[error("is not a revocation list delta: {0}")]
    Malformed(&'static str),
    #[error("applies to another list than the one held (ask for the whole list)")]
    OtherBase,
}

type Entry = ([u8; 8], u32);

/// The entries of a list's bytes, unchecked (both lists were checked when taken in).
fn entries(list: &[u8]) -> Option<Vec<Entry>> {
    let body = list.get(HEAD_LEN..list.len().checked_sub(SIGNATURE_LEN)?)?;
    (body.len() % ENTRY_LEN == 0).then(|| {
        body.chunks_exact(ENTRY_LEN)
            .map(|e| (array(e, 0), u32::from_le_bytes(array(e, 8))))
            .collect()
    })
}

/// The delta from list `base` to list `new` (both as verified lists' bytes); `None` when
/// either is not a list.
pub fn delta(base: &[u8], new: &[u8]) -> Option<Vec<u8>> {
    let (old, next) = (entries(base)?, entries(new)?);
    let (mut removed, mut added) = (Vec::new(), Vec::new());
    let (mut i, mut j) = (0, 0);
    while i < old.len() || j < next.len() {
        match (old.get(i), next.get(j)) {
            (Some(a), Some(b)) if a == b => {
                i += 1;
                j += 1;
            }
            (Some(a), Some(b)) if a.0 < b.0 => {
                removed.push(a.0);
                i += 1;
            }
            (Some(a), Some(b)) if a.0 == b.0 => {
                // Same permit, another expiry: out, and in again.
                removed.push(a.0);
                added.push(*b);
                i += 1;
                j += 1;
            }
            (Some(_), Some(b)) | (None, Some(b)) => {
                added.push(*b);
                j += 1;
            }
            (Some(a), None) => {
                removed.push(a.0);
                i += 1;
            }
            (None, None) => break,
        }
    }
    let mut out =
        Vec::with_capacity(4 + 1 + 32 + 24 + 8 + removed.len() * 8 + added.len() * 12 + 64);
    out.extend_from_slice(DELTA_MAGIC);
    out.push(VERSION);
    out.extend_from_slice(blake3::hash(base).as_bytes());
    out.extend_from_slice(new.get(FIELDS)?);
    out.extend_from_slice(&u32::try_from(removed.len()).ok()?.to_le_bytes());
    for id in &removed {
        out.extend_from_slice(id);
    }
    out.extend_from_slice(&u32::try_from(added.len()).ok()?.to_le_bytes());
    for (id, expires) in &added {
        out.extend_from_slice(id);
        out.extend_from_slice(&expires.to_le_bytes());
    }
    out.extend_from_slice(new.get(new.len() - SIGNATURE_LEN..)?);
    Some(out)
}

/// The list `delta` makes of `base`: its bytes, still to be read (and its signature
/// checked) with [`super::read`] like any list.
pub fn apply_delta(base: &[u8], delta: &[u8]) -> Result<Vec<u8>, DeltaError> {
    let malformed = DeltaError::Malformed;
    let mut at = 0;
    let mut take = |n: usize| {
        let piece = delta
            .get(at..at + n)
            .ok_or(malformed("it ends too early"))?;
        at += n;
        Ok::<_, DeltaError>(piece)
    };
    if take(4)? != DELTA_MAGIC {
        return Err(malformed("it does not start with PGRD"));
    }
    if take(1)? != [VERSION] {
        return Err(malformed("its format version is not 1"));
    }
    if take(32)? != blake3::hash(base).as_bytes() {
        return Err(DeltaError::OtherBase);
    }
    let fields = take(FIELDS.len())?.to_vec();
    let count = |b: &[u8]| u32::from_le_bytes(array(b, 0)) as usize;
    let r = count(take(4)?);
    let removed: Vec<[u8; 8]> = take(
        r.checked_mul(8)
            .ok_or(malformed("its counts are out of range"))?,
    )?
    .chunks_exact(8)
    .map(|c| array(c, 0))
    .collect();
    let a = count(take(4)?);
    let added: Vec<Entry> = take(
        a.checked_mul(ENTRY_LEN)
            .ok_or(malformed("its counts are out of range"))?,
    )?
    .chunks_exact(ENTRY_LEN)
    .map(|e| (array(e, 0), u32::from_le_bytes(array(e, 8))))
    .collect();
    let signature = take(SIGNATURE_LEN)?.to_vec();
    if at != delta.len() {
        return Err(malformed("it has bytes after its signature"));
    }
    let held = entries(base).ok_or(DeltaError::OtherBase)?;
    // All three are sorted by id (a delta that is not makes a list whose signature fails):
    // one merge.
    let mut next: Vec<Entry> = Vec::with_capacity(held.len() + added.len());
    let (mut gone, mut new) = (removed.iter().peekable(), added.into_iter().peekable());
    for entry in held {
        while gone.next_if(|id| **id < entry.0).is_some() {}
        if gone.next_if(|id| **id == entry.0).is_some() {
            continue;
        }
        while let Some(a) = new.next_if(|a| a.0 < entry.0) {
            next.push(a);
        }
        next.push(entry);
    }
    next.extend(new);
    let mut out = Vec::with_capacity(HEAD_LEN + next.len() * ENTRY_LEN + SIGNATURE_LEN);
    out.extend_from_slice(MAGIC);
    out.push(VERSION);
    out.extend_from_slice(&fields);
    let n = u32::try_from(next.len()).map_err(|_| malformed("its counts are out of range"))?;
    out.extend_from_slice(&n.to_le_bytes());
    for (id, expires) in &next {
        out.extend_from_slice(id);
        out.extend_from_slice(&expires.to_le_bytes());
    }
    out.extend_from_slice(&signature);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key_files::generate_signing_key;
    use crate::keyring::{KeyUse, Keyring, PublicKey, Validity};
    use crate::revocation_list::{build, read};
    use crate::temp_permit::PermitId;
    use time::macros::datetime;
    use time::Duration;

    #[test]
    fn a_gate_rebuilds_the_signed_list_from_its_own_and_a_delta() {
        let key = generate_signing_key();
        let ring = Keyring::new(vec![PublicKey::new(
            KeyUse::TempPermit,
            key.verifying_key(),
            Validity::default(),
        )]);
        let now = datetime!(2026-12-05 04:00 UTC);
        let id = |n: u8| PermitId([n; 8]);
        let soon = now + Duration::days(2);
        let base = build(
            (1..=50).map(|n| (id(n), soon + Duration::hours(n.into()))),
            now,
            7,
            &key,
        );
        // Later: permits 1-11 expired out of it, 200-204 revoked since.
        let later = now + Duration::days(3) + Duration::hours(11);
        let new = build(
            (1..=50)
                .chain(200..=204)
                .map(|n| (id(n), soon + Duration::hours(n.into()))),
            later,
            9,
            &key,
        );
        let d = delta(&base, &new).expect("delta");
        assert!(d.len() < new.len() / 2, "{} against {}", d.len(), new.len());
        let rebuilt = apply_delta(&base, &d).expect("applies");
        assert_eq!(rebuilt, new);
        let list = read(&rebuilt, &ring).expect("the origin's signature holds");
        assert_eq!(list.data_version, 9);
        assert!(list.contains(id(204)) && !list.contains(id(5)));

        // Onto another list, or changed on the way: never a list that verifies.
        assert_eq!(apply_delta(&new, &d), Err(DeltaError::OtherBase));
        let mut changed = d.clone();
        let last_added = d.len() - 64 - 12;
        changed[last_added] ^= 1;
        let forged = apply_delta(&base, &changed).expect("applies");
        assert!(read(&forged, &ring).is_err());
        for cut in [0, 3, 40, d.len() - 1] {
            assert!(matches!(
                apply_delta(&base, &d[..cut]),
                Err(DeltaError::Malformed(_))
            ));
        }
    }
}
