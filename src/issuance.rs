//! The temporary-permit issuance policy: who may be given one, and until when.
//!
//! A 7-day temporary electronic permit is issued only to the holder of a published travel
//! permit that is still usable, for the reason its record shows: `lost` or `damaged` when
//! the permit is recorded so, `forgotten` when it is valid (revoked, replaced and expired
//! permits get none). It ends seven days after issue or when the travel permit itself
//! expires, whichever is sooner, and a holder gets at most [`MONTHLY_LIMIT`] in a calendar
//! month, counted from the issuance records of the published data, which carry the holder's
//! person id. Days and months are Beijing's (UTC+8): the authority's month begins at 00:00
//! Beijing time (16:00 UTC the day before), and a travel permit valid through a day is
//! valid to that day's end in Beijing. It serves domestic rail and air travel, not border
//! crossing ([`VALID_FOR`]). The origin (src/origin) applies this policy under one writer.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::day::Day;
use crate::document::DocumentKind;
use crate::snapshot::{DocKey, Record, RecordStatus, NO_RENEWAL};
use crate::temp_permit::{Reason, VALIDITY};

/// Temporary permits one holder may be issued in a calendar month.
pub const MONTHLY_LIMIT: usize = 2;

/// What a temporary permit may be used for.
pub const VALID_FOR: [&str; 2] = ["rail", "air"];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("the travel permit is not in the published data")]
    NotPublished,
    #[error("the travel permit is {} on record: no temporary permit is issued for it", .0.label())]
    Unusable(RecordStatus),
    #[error("reason {} needs the travel permit recorded as {}; it is {}", <&str>::from(*.reason), .needs.label(), .status.label())]
    Reason {
        reason: Reason,
        needs: RecordStatus,
        status: RecordStatus,
    },
    #[error("the holder was issued {issued} temporary permits in {month}; at most {MONTHLY_LIMIT} a calendar month")]
    MonthlyLimit { issued: usize, month: String },
}

impl Refusal {
    /// The refusal in Chinese, for the officer at the desk (the English is its `Display`),
    /// with the terms of src/terms.rs.
    pub fn zh(&self) -> String {
        use crate::terms::{reason, record_status};
        match self {
            Refusal::NotPublished => "公布的数据中没有这份通行证".to_owned(),
            Refusal::Unusable(s) => {
                format!("该通行证记录为{}，不予签发临时通行证", record_status(*s))
            }
            Refusal::Reason {
                reason: r,
                needs,
                status,
            } => format!(
                "原因“{}”需要通行证记录为{}，实为{}",
                reason(*r),
                record_status(*needs),
                record_status(*status)
            ),
            Refusal::MonthlyLimit { issued, month } => format!(
                "持证人在{month}已获签发{issued}份临时通行证，每个自然月至多{MONTHLY_LIMIT}份"
            ),
        }
    }
}

/// Who made one of the authority's writes: the calling system (from its certificate),
/// its office, and the officer at the desk (or the system itself, for the resident-facing
/// application).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Actor {
    pub caller: String,
    pub office: String,
    pub officer: String,
}

/// The officer (or system) a call names, as recorded: trimmed, 1-64 characters, no
/// control characters; `None` breaks that rule.
pub fn officer_name(text: &str) -> Option<String> {
    let t = text.trim();
    let ok = (1..=64).contains(&t.chars().count()) && !t.chars().any(char::is_control);
    ok.then(|| t.to_owned())
}

/// One of the authority's own writes as the chain of publications records it
/// (src/publish/claim.rs): what was done, when, by whom. Documents appear as keyed hashes
/// (hex of [`DocKey`]) and masked numbers only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum JournalEntry {
    Issue {
        /// The permit id (16 hex characters), as printed for officers.
        permit: String,
        /// The holder's travel permit's key.
        holder: String,
        travel_permit_masked: String,
        /// Keyed hash of what was asked (number, name, reason): a retry under the same
        /// idempotency key must ask the same.
        request: String,
        reason: Reason,
        #[serde(with = "time::serde::rfc3339")]
        issued_at: OffsetDateTime,
        #[serde(with = "time::serde::rfc3339")]
        expires_at: OffsetDateTime,
        by: Actor,
    },
    Revoke {
        permit: String,
        #[serde(with = "time::serde::rfc3339")]
        at: OffsetDateTime,
        by: Actor,
    },
}

/// When a permit issued at `issued_at` for this travel permit ends: seven days later, or at
/// the end (in Beijing) of the travel permit's last valid day if that is sooner.
pub fn expiry(issued_at: OffsetDateTime, travel_permit: &Record) -> OffsetDateTime {
    let end_of_last_day = Day(travel_permit.valid_until.saturating_add(1)).start_in_beijing();
    (issued_at + VALIDITY).min(end_of_last_day)
}

/// Whether a permit may be issued now, given the holder's travel permit record and how many
/// were issued to the same person in `issued_at`'s calendar month; returns its expiry.
pub fn decide(
    reason: Reason,
    travel_permit: Option<&Record>,
    issued_at: OffsetDateTime,
    issued_this_month: usize,
) -> Result<OffsetDateTime, Refusal> {
    let record = travel_permit.ok_or(Refusal::NotPublished)?;
    let status = record.status_on(Day::in_beijing(issued_at));
    if matches!(
        status,
        RecordStatus::Revoked | RecordStatus::Replaced | RecordStatus::Expired
    ) {
        return Err(Refusal::Unusable(status));
    }
    let needs = match reason {
        Reason::Lost => RecordStatus::Lost,
        Reason::Damaged => RecordStatus::Damaged,
        Reason::Forgotten => RecordStatus::Valid,
    };
    if status != needs {
        return Err(Refusal::Reason {
            reason,
            needs,
            status,
        });
    }
    if issued_this_month >= MONTHLY_LIMIT {
        return Err(Refusal::MonthlyLimit {
            issued: issued_this_month,
            month: Day::in_beijing(issued_at).month(),
        });
    }
    Ok(expiry(issued_at, record))
}

/// The day (Beijing) an issuance record says its permit was issued: its last day minus the
/// days it ran, which publish stores in the record's `renewal` byte
/// (docs/snapshot-format.md); records of older publications, without it, ran the full
/// seven days.
pub fn issue_day(record: &Record) -> Day {
    let ran = match record.renewal {
        NO_RENEWAL => VALIDITY.whole_days() as u32,
        days => u32::from(days),
    };
    Day(record.valid_until.saturating_sub(ran))
}

/// The record of a permit issued to `holder`'s travel permit, keyed `key`: linked to the
/// holder's person, ending on the day (Beijing) it expires, and keeping the days it ran
/// (events written before `issued_at` existed: none, read as seven).
pub fn issuance_record(
    key: DocKey,
    holder: &Record,
    issued_at: Option<OffsetDateTime>,
    expires_at: OffsetDateTime,
) -> Record {
    Record {
        key,
        person: holder.person,
        valid_until: Day::in_beijing(expires_at).0,
        status: RecordStatus::Valid,
        kind: DocumentKind::TemporaryPermit,
        region: holder.region,
        renewal: issued_at.map_or(NO_RENEWAL, |at| ran_days(at, expires_at)),
    }
}

/// The `renewal` byte of an issuance record: Beijing days from issue to expiry (at most 7).
fn ran_days(issued_at: OffsetDateTime, expires_at: OffsetDateTime) -> u8 {
    let days = Day::in_beijing(expires_at)
        .0
        .saturating_sub(Day::in_beijing(issued_at).0);
    u8::try_from(days.min(VALIDITY.whole_days() as u32)).unwrap_or(7)
}

/// Issuance records of `person` in the calendar month (Beijing) of `at`, among `records`.
pub fn issued_in_month<'a>(
    records: impl IntoIterator<Item = &'a Record>,
    person: u64,
    at: OffsetDateTime,
) -> usize {
    let month = Day::in_beijing(at).month();
    records
        .into_iter()
        .filter(|r| r.kind == DocumentKind::TemporaryPermit && r.person == person)
        .filter(|r| issue_day(r).month() == month)
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::document::Region;
    use time::macros::datetime;

    fn permit(status: RecordStatus, valid_until: &str) -> Record {
        Record {
            key: DocKey([1; 16]),
            person: 42,
            valid_until: Day::parse(valid_until).expect("day").0,
            status,
            kind: DocumentKind::TravelPermit,
            region: Region::HongKong,
            renewal: NO_RENEWAL,
        }
    }

    const AT: OffsetDateTime = datetime!(2026-03-10 09:30 UTC);

    #[test]
    fn reasons_need_their_status_and_unusable_permits_get_none() {
        let valid = permit(RecordStatus::Valid, "2030-01-01");
        let lost = permit(RecordStatus::Lost, "2030-01-01");
        let damaged = permit(RecordStatus::Damaged, "2030-01-01");
        assert_eq!(
            decide(Reason::Forgotten, Some(&valid), AT, 0),
            Ok(AT + VALIDITY)
        );
        assert_eq!(decide(Reason::Lost, Some(&lost), AT, 0), Ok(AT + VALIDITY));
        assert_eq!(
            decide(Reason::Damaged, Some(&damaged), AT, 1),
            Ok(AT + VALIDITY)
        );
        for (reason, record) in [
            (Reason::Lost, &valid),
            (Reason::Damaged, &lost),
            (Reason::Forgotten, &damaged),
        ] {
            assert!(
                matches!(
                    decide(reason, Some(record), AT, 0),
                    Err(Refusal::Reason { .. })
                ),
                "{reason:?} for {:?}",
                record.status
            );
        }
        assert_eq!(
            decide(Reason::Lost, None, AT, 0),
            Err(Refusal::NotPublished)
        );
        for status in [
            RecordStatus::Revoked,
            RecordStatus::Replaced,
            RecordStatus::Expired,
        ] {
            assert_eq!(
                decide(Reason::Lost, Some(&permit(status, "2030-01-01")), AT, 0),
                Err(Refusal::Unusable(status))
            );
        }
        // Recorded valid, but its last day has passed.
        assert_eq!(
            decide(
                Reason::Forgotten,
                Some(&permit(RecordStatus::Valid, "2026-03-09")),
                AT,
                0
            ),
            Err(Refusal::Unusable(RecordStatus::Expired))
        );
    }

    #[test]
    fn never_beyond_the_travel_permits_own_expiry() {
        // Valid through 2026-03-12: the permit ends at that day's end in Beijing
        // (16:00 UTC), not seven days on.
        let soon = permit(RecordStatus::Valid, "2026-03-12");
        assert_eq!(
            decide(Reason::Forgotten, Some(&soon), AT, 0),
            Ok(datetime!(2026-03-12 16:00 UTC))
        );
        // Its last day is today: until midnight in Beijing.
        let today = permit(RecordStatus::Valid, "2026-03-10");
        assert_eq!(
            decide(Reason::Forgotten, Some(&today), AT, 0),
            Ok(datetime!(2026-03-10 16:00 UTC))
        );
        // At 17:00 UTC on its last day it is already the next day in Beijing: expired.
        assert_eq!(
            decide(
                Reason::Forgotten,
                Some(&today),
                datetime!(2026-03-10 17:00 UTC),
                0
            ),
            Err(Refusal::Unusable(RecordStatus::Expired))
        );
    }

    #[test]
    fn two_a_calendar_month() {
        let valid = permit(RecordStatus::Valid, "2030-01-01");
        assert!(matches!(
            decide(Reason::Forgotten, Some(&valid), AT, 2),
            Err(Refusal::MonthlyLimit { issued: 2, ref month }) if month == "2026-03"
        ));
        // Issuance records as publish writes them.
        let issued = |at: OffsetDateTime, until: OffsetDateTime, person: u64| {
            issuance_record(
                DocKey([2; 16]),
                &Record { person, ..valid },
                Some(at),
                until,
            )
        };
        let mar30 = datetime!(2026-03-30 13:00 UTC);
        let records = [
            issued(mar30, mar30 + VALIDITY, 42),
            issued(
                datetime!(2026-03-31 10:00 UTC),
                datetime!(2026-04-02 00:00 UTC),
                42,
            ),
            issued(
                datetime!(2026-03-31 10:00 UTC),
                datetime!(2026-04-07 10:00 UTC),
                7,
            ),
            // Older publications: no days-ran byte, so seven days before expiry.
            Record {
                renewal: NO_RENEWAL,
                ..issued(
                    datetime!(2026-02-27 10:00 UTC),
                    datetime!(2026-03-06 10:00 UTC),
                    42,
                )
            },
        ];
        assert_eq!(issue_day(&records[0]), Day::of(mar30));
        // 15:59 UTC on 31 March is 23:59 in Beijing: still March.
        assert_eq!(
            issued_in_month(&records, 42, datetime!(2026-03-31 15:59 UTC)),
            2
        );
        assert!(matches!(
            decide(Reason::Forgotten, Some(&valid), datetime!(2026-03-31 15:59:59 UTC), 2),
            Err(Refusal::MonthlyLimit { ref month, .. }) if month == "2026-03"
        ));
        // 16:00 UTC is 00:00 on 1 April in Beijing: a new month starts the count again
        // (in UTC it is still March); another person's permits never count.
        assert_eq!(
            issued_in_month(&records, 42, datetime!(2026-03-31 16:00 UTC)),
            0
        );
        assert!(decide(
            Reason::Forgotten,
            Some(&valid),
            datetime!(2026-03-31 16:00 UTC),
            0
        )
        .is_ok());
        assert_eq!(issued_in_month(&records, 7, AT), 1);
        assert_eq!(
            issued_in_month(&records, 42, datetime!(2026-02-28 00:00 UTC)),
            1
        );
    }
}
