//! The domain answers: link checks, document status checks, and whether a temporary
//! permit was revoked, over one store [`View`].
//!
//! Everything here is synchronous and allocation-free apart from the answer itself. Inputs
//! are already-parsed document numbers, so nothing here can see bad input.

use serde::Serialize;

use crate::day::Day;
use crate::document::{
    DocumentKind, DocumentNo, NumberError, Region, ResidencePermitNo, TravelPermitNo,
};
use crate::key_files::HashKey;
use crate::snapshot::{DocKey, Record, RecordStatus, NO_RENEWAL};
use crate::store::View;
use crate::temp_permit::PermitId;

/// A travel permit and a residence permit of the same region: the only pairs a link check
/// accepts.
#[derive(Debug, Clone)]
pub struct DocumentPair {
    travel: TravelPermitNo,
    residence: ResidencePermitNo,
}

impl DocumentPair {
    pub fn new(travel: TravelPermitNo, residence: ResidencePermitNo) -> Result<Self, NumberError> {
        if travel.region() != residence.region() {
            return Err(NumberError::RegionMismatch);
        }
        Ok(DocumentPair { travel, residence })
    }

    pub fn travel(&self) -> &TravelPermitNo {
        &self.travel
    }

    pub fn residence(&self) -> &ResidencePermitNo {
        &self.residence
    }

    /// The pair with its two snapshot keys, hashed once for prefetching and checking.
    pub fn hashed(&self, hash_key: &HashKey) -> HashedPair {
        HashedPair {
            travel: DocKey::of(hash_key, self.travel.canonical()),
            travel_renewal: self.travel.renewal(),
            residence_possible: self.travel.residence_permit_possible(),
            residence: DocKey::of(hash_key, self.residence.canonical()),
        }
    }
}

/// What a link check looks up: the two keys, and the card the travel permit names.
#[derive(Debug, Clone, Copy)]
pub struct HashedPair {
    travel: DocKey,
    travel_renewal: Option<u8>,
    /// False for a non-Chinese permanent resident's travel permit (`HA`/`MA`).
    residence_possible: bool,
    residence: DocKey,
}

impl HashedPair {
    /// The two snapshot keys (keyed hashes), travel permit first: what audit records hold.
    pub fn keys(&self) -> [[u8; 16]; 2] {
        [self.travel.0, self.residence.0]
    }
}

/// Starts loading the records link checks of `pairs` read, without waiting for them. A
/// batch prefetches every item before checking any, so the items' cache misses overlap
/// instead of following one another.
pub fn prefetch<'a>(view: &View<'_>, pairs: impl Iterator<Item = &'a HashedPair> + Clone) {
    view.prefetch(pairs.flat_map(|p| [&p.travel, &p.residence]));
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, strum::IntoStaticStr)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum LinkResult {
    Linked,
    NotLinked,
    TravelPermitNotFound,
    ResidencePermitNotFound,
    /// The travel permit is a non-Chinese permanent resident's (`HA`/`MA`): its holder
    /// cannot hold a residence permit, so none belongs with it.
    HolderNotEligible,
}

impl LinkResult {
    /// The wire name (`linked`, `holder_not_eligible`...).
    pub fn label(self) -> &'static str {
        self.into()
    }
}

/// Status of one document as of the check; `None` when it is not in the data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DocState {
    pub status: RecordStatus,
    pub valid_until: Day,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkAnswer {
    pub result: LinkResult,
    pub travel_permit: Option<DocState>,
    pub residence_permit: Option<DocState>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusAnswer {
    pub kind: DocumentKind,
    pub region: Region,
    pub state: Option<DocState>,
}

/// Finds the record and what it means for the card that was asked about.
fn lookup(
    view: &View<'_>,
    key: &DocKey,
    renewal: Option<u8>,
    today: Day,
) -> Option<(Record, DocState)> {
    let rec = view.get(key)?;
    let mut status = rec.status_on(today);
    // The base number names the permit, the renewal count the card: an older card of a
    // renewed permit is replaced, a newer one than we know of does not exist.
    if let (Some(asked), current) = (renewal, rec.renewal) {
        if current != NO_RENEWAL {
            if asked > current {
                return None;
            }
            if asked < current {
                status = RecordStatus::Replaced;
            }
        }
    }
    Some((
        rec,
        DocState {
            status,
            valid_until: Day(rec.valid_until),
        },
    ))
}

/// Does this travel permit belong with this residence permit, as of `today`? When
/// neither document is known the travel permit is reported missing; a known travel permit
/// whose holder cannot hold a residence permit is said so, whatever the residence permit.
pub fn link_check(view: &View<'_>, p: &HashedPair, today: Day) -> LinkAnswer {
    let tp = lookup(view, &p.travel, p.travel_renewal, today);
    let rp = lookup(view, &p.residence, None, today);
    let result = match (&tp, &rp) {
        (None, _) => LinkResult::TravelPermitNotFound,
        (Some(_), _) if !p.residence_possible => LinkResult::HolderNotEligible,
        (Some(_), None) => LinkResult::ResidencePermitNotFound,
        (Some((t, _)), Some((r, _))) if t.person == r.person => LinkResult::Linked,
        (Some(_), Some(_)) => LinkResult::NotLinked,
    };
    LinkAnswer {
        result,
        travel_permit: tp.map(|(_, s)| s),
        residence_permit: rp.map(|(_, s)| s),
    }
}

/// `key` is the number's snapshot key (`DocKey::of(hash_key, number.canonical())`).
pub fn document_status(
    view: &View<'_>,
    key: &DocKey,
    number: &DocumentNo,
    today: Day,
) -> StatusAnswer {
    StatusAnswer {
        kind: number.kind(),
        region: number.region(),
        state: lookup(view, key, number.renewal(), today).map(|(_, s)| s),
    }
}

/// Whether the data holds a revocation of this temporary permit (issued and not revoked,
/// or unknown, is not revoked: the signature vouches for the permit).
pub fn temp_permit_revoked(view: &View<'_>, hash_key: &HashKey, id: PermitId) -> bool {
    view.get(&id.doc_key(hash_key)).is_some_and(|r| {
        r.kind == DocumentKind::TemporaryPermit && r.status == RecordStatus::Revoked
    })
}
