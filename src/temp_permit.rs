//! 7-day temporary electronic permits: the token, issuing it, and verifying it.
//!
//! A resident who lost, damaged or forgot the travel permit gets a token signed by the
//! authority's temporary-permit key, shown as a QR code. Gates verify it offline against
//! the published keys (signature, time window) or online through the gateway, which also
//! knows revocations: those arrive as records of the snapshot and its deltas, keyed by
//! [`PermitId::doc_key`]. The format is specified in docs/temporary-permit.md.
//!
//! Invariants: `expires_at` is after `issued_at` and at most 7 days after it (seven days,
//! or less where the travel permit itself expires sooner: src/issuance.rs; anything else is
//! malformed); nothing from a token whose signature did not verify is ever shown as its
//! content.

use std::fmt;

use ed25519_dalek::SigningKey;
use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

use crate::day::rfc3339;
use crate::document::{Region, TravelPermitNo};
use crate::key_files::{HashKey, KeyId};
use crate::keyring::{KeyUse, Keyring};
use crate::person_name::{self, NameError};
use crate::sealed::{self, push_short_str, Kind};
use crate::snapshot::DocKey;

pub const KIND: Kind = Kind {
    prefix: "PGT1:",
    context: b"permitgate temporary permit v1\0",
    version: 1,
};

/// How long a temporary permit is valid at most: seven days from issue.
pub const VALIDITY: Duration = Duration::days(7);
/// Default tolerance for gate clocks that run early or late.
pub const DEFAULT_CLOCK_SKEW: Duration = Duration::minutes(5);
/// Random identifier of one temporary permit, printed as 16 hex characters.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PermitId(pub [u8; 8]);

impl PermitId {
    pub fn generate() -> PermitId {
        PermitId(rand::random())
    }

    pub fn parse(s: &str) -> Option<PermitId> {
        let mut id = [0u8; 8];
        hex::decode_to_slice(s.trim(), &mut id).ok()?;
        Some(PermitId(id))
    }

    /// The id of the permit issued for `caller`'s request under `idempotency_key`: a keyed
    /// hash, so that a retried request names the same permit, and nobody without the
    /// hashing key can guess ids.
    pub fn for_request(hash_key: &HashKey, caller: &str, idempotency_key: &str) -> PermitId {
        let k = DocKey::of(
            hash_key,
            &format!("temporary-permit-request:{caller}\n{idempotency_key}"),
        );
        let mut id = [0u8; 8];
        id.copy_from_slice(&k.0[..8]);
        PermitId(id)
    }

    /// The snapshot key of this permit's record (issuance or revocation). The text hashed
    /// cannot be a document number, so the two kinds of key never collide.
    pub fn doc_key(&self, hash_key: &HashKey) -> DocKey {
        DocKey::of(hash_key, &format!("temporary-permit:{self}"))
    }
}

impl fmt::Display for PermitId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for PermitId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PermitId({self})")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, strum::IntoStaticStr)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum Reason {
    Lost,
    Damaged,
    Forgotten,
}

impl Reason {
    fn to_u8(self) -> u8 {
        match self {
            Reason::Lost => 1,
            Reason::Damaged => 2,
            Reason::Forgotten => 3,
        }
    }

    fn from_u8(v: u8) -> Option<Reason> {
        Some(match v {
            1 => Reason::Lost,
            2 => Reason::Damaged,
            3 => Reason::Forgotten,
            _ => return None,
        })
    }
}

/// The content of a token whose signature verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TempPermit {
    pub key_id: KeyId,
    pub permit_id: PermitId,
    pub travel_permit: TravelPermitNo,
    pub holder_name: String,
    pub issued_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
    pub reason: Reason,
}

impl TempPermit {
    pub fn region(&self) -> Region {
        self.travel_permit.region()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IssueError {
    #[error("name {0}")]
    Name(#[from] NameError),
    #[error("issued_at: out of range, or the permit would end before it begins")]
    Time,
}

/// Signs a new temporary permit valid for seven days; returns the token text and what it
/// says. [`crate::issuance`] decides whether one may be issued, and until when.
pub fn issue(
    travel_permit: &TravelPermitNo,
    name: &str,
    reason: Reason,
    issued_at: OffsetDateTime,
    key: &SigningKey,
) -> Result<(String, TempPermit), IssueError> {
    issue_as(
        PermitId::generate(),
        travel_permit,
        name,
        reason,
        issued_at,
        None,
        key,
    )
}

/// [`issue`] with a given permit id, ending at `until` when that is sooner than seven days
/// (the travel permit's own expiry). Ed25519 signatures are deterministic: the same id and
/// content give the same token, which is how the origin answers a retried request.
pub fn issue_as(
    permit_id: PermitId,
    travel_permit: &TravelPermitNo,
    name: &str,
    reason: Reason,
    issued_at: OffsetDateTime,
    until: Option<OffsetDateTime>,
    key: &SigningKey,
) -> Result<(String, TempPermit), IssueError> {
    let name = person_name::normalize(name)?;
    let issued_at = issued_at
        .replace_nanosecond(0)
        .map_err(|_| IssueError::Time)?;
    let week = issued_at.checked_add(VALIDITY).ok_or(IssueError::Time)?;
    let expires_at = match until {
        Some(u) => u
            .replace_nanosecond(0)
            .map_err(|_| IssueError::Time)?
            .min(week),
        None => week,
    };
    if expires_at <= issued_at {
        return Err(IssueError::Time);
    }
    let permit = TempPermit {
        key_id: crate::key_files::verifying_key_id(&key.verifying_key()),
        permit_id,
        travel_permit: travel_permit.clone(),
        holder_name: name,
        issued_at,
        expires_at,
        reason,
    };
    Ok((encode(&permit, key), permit))
}

fn encode(p: &TempPermit, key: &SigningKey) -> String {
    let mut body = sealed::body_head(&KIND, key);
    body.extend_from_slice(&p.permit_id.0);
    body.push(p.region().to_u8());
    body.push(p.reason.to_u8());
    body.extend_from_slice(&p.issued_at.unix_timestamp().to_le_bytes());
    body.extend_from_slice(&p.expires_at.unix_timestamp().to_le_bytes());
    push_short_str(&mut body, p.travel_permit.canonical());
    push_short_str(&mut body, &p.holder_name);
    sealed::seal(&KIND, body, key)
}

/// Reads the fields of an opened token; `None` if any is out of shape.
fn decode(opened: &sealed::Opened) -> Option<TempPermit> {
    let mut f = opened.fields();
    let permit_id = PermitId(f.bytes()?);
    let region = Region::from_u8(f.u8()?)?;
    let reason = Reason::from_u8(f.u8()?)?;
    let issued_at = OffsetDateTime::from_unix_timestamp(f.u64()? as i64).ok()?;
    let expires_at = OffsetDateTime::from_unix_timestamp(f.u64()? as i64).ok()?;
    let number = f.short_str()?;
    let holder_name = f.short_str()?.to_owned();
    let travel_permit = TravelPermitNo::parse(number).ok()?;
    let well_formed = f.is_done()
        && expires_at > issued_at
        && expires_at - issued_at <= VALIDITY
        && travel_permit.canonical() == number
        && travel_permit.region() == region
        && person_name::is_signed_form(&holder_name);
    well_formed.then_some(TempPermit {
        key_id: opened.key_id(),
        permit_id,
        travel_permit,
        holder_name,
        issued_at,
        expires_at,
        reason,
    })
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, strum::VariantArray, strum::IntoStaticStr,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum TokenStatus {
    Valid,
    Expired,
    NotYetValid,
    Revoked,
    BadSignature,
    UnknownKey,
    Malformed,
}

impl TokenStatus {
    /// Metric label and the answer's `status`.
    pub fn label(self) -> &'static str {
        self.into()
    }
}

/// The outcome of verifying a token. `permit` is set only when the signature verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verification {
    pub status: TokenStatus,
    pub permit: Option<TempPermit>,
}

/// Verifies `token` at `now`. Valid from `issued_at − skew` until just before
/// `expires_at + skew`. `is_revoked` is asked only about genuine permits; offline
/// verifiers, who cannot know revocations, pass `|_| false`.
pub fn verify(
    token: &str,
    keys: &Keyring,
    now: OffsetDateTime,
    skew: Duration,
    is_revoked: impl FnOnce(PermitId) -> bool,
) -> Verification {
    let fail = |status| Verification {
        status,
        permit: None,
    };
    let Ok(opened) = sealed::open(&KIND, token) else {
        return fail(TokenStatus::Malformed);
    };
    let Some(permit) = decode(&opened) else {
        return fail(TokenStatus::Malformed);
    };
    let Ok(key) = keys.find(KeyUse::TempPermit, permit.key_id, permit.issued_at) else {
        return fail(TokenStatus::UnknownKey);
    };
    if !opened.verify(key) {
        return fail(TokenStatus::BadSignature);
    }
    let status = if is_revoked(permit.permit_id) {
        TokenStatus::Revoked
    } else if now < permit.issued_at - skew {
        TokenStatus::NotYetValid
    } else if now >= permit.expires_at + skew {
        TokenStatus::Expired
    } else {
        TokenStatus::Valid
    };
    Verification {
        status,
        permit: Some(permit),
    }
}

/// The answer's JSON form, shared by `POST /v1/temporary-permits/verify` and the offline
/// `temp-permit verify`. The travel permit number is masked.
#[derive(Debug, Serialize)]
pub struct VerificationView {
    pub status: TokenStatus,
    pub permit_id: Option<String>,
    pub holder: Option<HolderView>,
    pub reason: Option<Reason>,
    pub valid_from: Option<String>,
    pub valid_until: Option<String>,
    pub key_id: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct HolderView {
    pub name: String,
    pub travel_permit: String,
    pub region: Region,
}

impl From<&Verification> for VerificationView {
    fn from(v: &Verification) -> Self {
        let p = v.permit.as_ref();
        VerificationView {
            status: v.status,
            permit_id: p.map(|p| p.permit_id.to_string()),
            holder: p.map(|p| HolderView {
                name: p.holder_name.clone(),
                travel_permit: p.travel_permit.masked(),
                region: p.region(),
            }),
            reason: p.map(|p| p.reason),
            valid_from: p.map(|p| rfc3339(p.issued_at)),
            valid_until: p.map(|p| rfc3339(p.expires_at)),
            key_id: p.map(|p| p.key_id.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    /// An officer may type the reason in Chinese, as the paper prints it.
    #[test]
    fn reasons_are_read_in_either_language() {
        for r in [
            super::Reason::Lost,
            super::Reason::Damaged,
            super::Reason::Forgotten,
        ] {
            assert_eq!(<&str>::from(r).parse::<super::Reason>(), Ok(r));
            assert_eq!(crate::terms::reason(r).parse::<super::Reason>(), Ok(r));
        }
        let e = "stolen".parse::<super::Reason>().expect_err("not a reason");
        assert!(e.contains("遗失") && e.contains("lost"), "{e}");
    }

    use super::*;
    use crate::keyring::{PublicKey, Validity};
    use time::macros::datetime;

    const T0: OffsetDateTime = datetime!(2026-11-25 08:00 UTC);

    fn key() -> SigningKey {
        SigningKey::from_bytes(&[0x42; 32])
    }

    fn ring(keys: &[&SigningKey]) -> Keyring {
        Keyring::new(
            keys.iter()
                .map(|k| PublicKey::new(KeyUse::TempPermit, k.verifying_key(), Validity::default()))
                .collect(),
        )
    }

    fn token() -> (String, TempPermit) {
        let tp = TravelPermitNo::parse("H12345678").expect("valid");
        issue(&tp, "CHAN Tai Man 陳大文", Reason::Lost, T0, &key()).expect("issues")
    }

    fn status_at(token: &str, keys: &Keyring, now: OffsetDateTime) -> TokenStatus {
        verify(token, keys, now, DEFAULT_CLOCK_SKEW, |_| false).status
    }

    #[test]
    fn round_trip() {
        let (text, issued) = token();
        assert!(text.starts_with("PGT1:"));
        let v = verify(&text, &ring(&[&key()]), T0, DEFAULT_CLOCK_SKEW, |_| false);
        assert_eq!(v.status, TokenStatus::Valid);
        assert_eq!(v.permit.as_ref(), Some(&issued));
        assert_eq!(issued.expires_at, datetime!(2026-12-02 08:00 UTC));
        assert_eq!(issued.region(), Region::HongKong);
        let view = VerificationView::from(&v);
        let holder = view.holder.expect("holder");
        assert_eq!(holder.travel_permit, "H1234****");
        assert_eq!(holder.name, "CHAN Tai Man 陳大文");
    }

    #[test]
    fn window_is_seven_days_with_skew_on_both_ends() {
        let (text, _) = token();
        let keys = ring(&[&key()]);
        let skew = DEFAULT_CLOCK_SKEW;
        let end = T0 + VALIDITY;
        let s = Duration::seconds(1);
        assert_eq!(
            status_at(&text, &keys, T0 - skew - s),
            TokenStatus::NotYetValid
        );
        assert_eq!(status_at(&text, &keys, T0 - skew), TokenStatus::Valid);
        assert_eq!(
            status_at(&text, &keys, end),
            TokenStatus::Valid,
            "skew covers the end"
        );
        assert_eq!(status_at(&text, &keys, end + skew - s), TokenStatus::Valid);
        assert_eq!(status_at(&text, &keys, end + skew), TokenStatus::Expired);
        let strict = verify(&text, &keys, end, Duration::ZERO, |_| false).status;
        assert_eq!(
            strict,
            TokenStatus::Expired,
            "at exactly 7 days without skew"
        );
    }

    #[test]
    fn revoked_only_for_genuine_permits() {
        let (text, issued) = token();
        let mut asked = None;
        let v = verify(&text, &ring(&[&key()]), T0, DEFAULT_CLOCK_SKEW, |id| {
            asked = Some(id);
            true
        });
        assert_eq!(v.status, TokenStatus::Revoked);
        assert_eq!(asked, Some(issued.permit_id));
        let v = verify(&text, &ring(&[]), T0, DEFAULT_CLOCK_SKEW, |_| true);
        assert_eq!(v.status, TokenStatus::UnknownKey);
        assert_eq!(v.permit, None, "unverified content is never shown");
    }

    #[test]
    fn non_canonical_spellings_are_refused() {
        let (text, _) = token();
        let keys = ring(&[&key()]);
        let tails = crate::sealed::non_canonical_tails(&text, KIND.prefix);
        // A final pair has seven other spellings; a final triple has some only when its
        // value leaves room below 45^3.
        if (text.len() - KIND.prefix.len()) % 3 == 2 {
            assert_eq!(tails.len(), 7);
        }
        for t in tails {
            assert_eq!(status_at(&t, &keys, T0), TokenStatus::Malformed, "{t}");
        }
        assert_eq!(status_at(&text, &keys, T0), TokenStatus::Valid);
    }

    #[test]
    fn every_flipped_bit_is_refused() {
        let (text, _) = token();
        let keys = ring(&[&key()]);
        let raw = base45::decode(&text[KIND.prefix.len()..]).expect("base45");
        let mut seen = std::collections::HashSet::new();
        for i in 0..raw.len() * 8 {
            let mut bad = raw.clone();
            bad[i / 8] ^= 1 << (i % 8);
            let forged = format!("{}{}", KIND.prefix, base45::encode(&bad));
            let s = status_at(&forged, &keys, T0);
            assert_ne!(s, TokenStatus::Valid, "bit {i}");
            seen.insert(s);
        }
        for s in [
            TokenStatus::Malformed,
            TokenStatus::UnknownKey,
            TokenStatus::BadSignature,
        ] {
            assert!(seen.contains(&s), "{s:?} never seen: {seen:?}");
        }
    }

    #[test]
    fn malformed_tokens() {
        let (text, _) = token();
        let keys = ring(&[&key()]);
        for bad in [
            "",
            "PGT1:",
            &text[..text.len() - 6],
            &text[..40],
            &text.replacen("PGT1:", "PGR1:", 1),
            &text.to_lowercase(),
            &"PGT1:0".repeat(400),
        ] {
            assert_eq!(
                status_at(bad, &keys, T0),
                TokenStatus::Malformed,
                "{bad:.20}"
            );
        }
    }

    #[test]
    fn a_token_from_another_key_is_unknown_and_rotation_keeps_old_tokens() {
        let (text, _) = token();
        let other = SigningKey::from_bytes(&[7; 32]);
        assert_eq!(
            status_at(&text, &ring(&[&other]), T0),
            TokenStatus::UnknownKey
        );
        assert_eq!(
            status_at(&text, &ring(&[&other, &key()]), T0),
            TokenStatus::Valid
        );
    }

    #[test]
    fn a_permit_may_end_sooner_than_seven_days_but_never_later() {
        let k = key();
        let keys = ring(&[&k]);
        let tp = TravelPermitNo::parse("H12345678").expect("valid");
        let until = T0 + Duration::days(2);
        let (text, p) = issue_as(
            PermitId::generate(),
            &tp,
            "A",
            Reason::Forgotten,
            T0,
            Some(until),
            &k,
        )
        .expect("issue");
        assert_eq!(p.expires_at, until);
        let s = Duration::seconds(1);
        let at = |t| verify(&text, &keys, t, Duration::ZERO, |_| false).status;
        assert_eq!(at(until - s), TokenStatus::Valid);
        assert_eq!(at(until), TokenStatus::Expired);
        // A later `until` is cut to seven days; one before issue is refused.
        let (_, p) = issue_as(
            PermitId::generate(),
            &tp,
            "A",
            Reason::Forgotten,
            T0,
            Some(T0 + Duration::days(9)),
            &k,
        )
        .expect("issue");
        assert_eq!(p.expires_at, T0 + VALIDITY);
        assert_eq!(
            issue_as(
                PermitId::generate(),
                &tp,
                "A",
                Reason::Forgotten,
                T0,
                Some(T0),
                &k
            )
            .err(),
            Some(IssueError::Time)
        );
        // Signed with a validity the rule forbids: malformed, whatever the signature says.
        for expires_at in [T0 + VALIDITY + s, T0, T0 - s] {
            let forged = encode(
                &TempPermit {
                    expires_at,
                    ..p.clone()
                },
                &k,
            );
            assert_eq!(
                verify(&forged, &keys, T0, Duration::ZERO, |_| false).status,
                TokenStatus::Malformed,
                "{expires_at}"
            );
        }
    }

    /// The vector of docs/temporary-permit.md, checked there with Python's `base45` and
    /// `cryptography` packages.
    #[test]
    fn test_vector() {
        let mut seed = [0u8; 32];
        for (i, b) in seed.iter_mut().enumerate() {
            *b = i as u8;
        }
        let key = SigningKey::from_bytes(&seed);
        let permit = TempPermit {
            key_id: crate::key_files::verifying_key_id(&key.verifying_key()),
            permit_id: PermitId(0x0123_4567_89ab_cdef_u64.to_be_bytes()),
            travel_permit: TravelPermitNo::parse("H12345678").expect("valid"),
            holder_name: "CHAN Tai Man".into(),
            issued_at: T0,
            expires_at: T0 + VALIDITY,
            reason: Reason::Lost,
        };
        assert_eq!(encode(&permit, &key), VECTOR);
        assert_eq!(permit.key_id.to_string(), "98ba85304ac639f0");
        let hash_key = HashKey::from_bytes(seed);
        assert_eq!(
            hex::encode(permit.permit_id.doc_key(&hash_key).0),
            "7568234c98526e45395305354ed2ef8d"
        );
        let v = verify(VECTOR, &ring(&[&key]), T0, DEFAULT_CLOCK_SKEW, |_| false);
        assert_eq!(
            (v.status, v.permit),
            (TokenStatus::Valid, Some(permit.clone()))
        );
        // The same permit for a travel permit valid through 2026-11-26: it ends then.
        let capped = TempPermit {
            expires_at: datetime!(2026-11-27 00:00 UTC),
            ..permit
        };
        assert_eq!(encode(&capped, &key), VECTOR_CAPPED);
        let v = verify(
            VECTOR_CAPPED,
            &ring(&[&key]),
            T0,
            DEFAULT_CLOCK_SKEW,
            |_| false,
        );
        assert_eq!((v.status, v.permit), (TokenStatus::Valid, Some(capped)));
    }

    const VECTOR_CAPPED: &str = "PGT1:3904QNW46U2PGFUTK404DGWLU9UO80Z$IWND000000/CPWND000900V59QF60R6J%6%37YM8NB8-347ECY34CECWNUBB2SS5B4H7+5 DDI%6OI8DA7PHA359Y58O4KRWQ401MIGRPBUUI6NMF:1Y/7.BL BH9$P.3OZC1$$7QPUJO71Q1EGT 98";
    const VECTOR: &str = "PGT1:3904QNW46U2PGFUTK404DGWLU9UO80Z$IWND000000SDQWND000900V59QF60R6J%6%37YM8NB8-347ECY34CECWV1GB4753VWK54E FLTG2*$JILK7*N+16WNTH.Q.UM06U:+LMRKE+UR+L:BS2/J2M496EH7KF38UVDH6FE.GA7NC*CT75GZD";

    use crate::person_name::MAX_NAME_BYTES;

    #[test]
    fn names_are_checked() {
        let tp = TravelPermitNo::parse("12345678").expect("taiwan");
        for bad in ["", "   ", "a\nb", &"x".repeat(101)] {
            assert!(matches!(
                issue(&tp, bad, Reason::Forgotten, T0, &key()).err(),
                Some(IssueError::Name(_))
            ));
        }
        // A token whose signed name breaks the rule is malformed, as the format says.
        let (_, mut long) = issue(&tp, "Lin", Reason::Forgotten, T0, &key()).expect("issue");
        long.holder_name = "L".repeat(MAX_NAME_BYTES + 1);
        let text = encode(&long, &key());
        assert_eq!(
            status_at(&text, &ring(&[&key()]), T0),
            TokenStatus::Malformed
        );
        let (_, p) = issue(&tp, " Lin ", Reason::Forgotten, T0, &key()).expect("trimmed");
        assert_eq!(
            (p.holder_name.as_str(), p.region()),
            ("Lin", Region::Taiwan)
        );
    }
}
