//! Request and response bodies of the partner API, as the wire sees them.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::checks::{DocState, LinkAnswer, LinkResult, StatusAnswer};
use crate::day::Day;
use crate::document::{DocumentKind, Region};
use crate::snapshot::RecordStatus;
use crate::temp_permit::VerificationView;

use super::problem::Problem;

/// Numbers borrow from the body when they carry no JSON escapes: no allocation per item.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkCheckRequest<'a> {
    #[serde(borrow)]
    pub travel_permit: Cow<'a, str>,
    #[serde(borrow)]
    pub residence_permit: Cow<'a, str>,
    /// Ask for a signed receipt (scope `receipt`).
    #[serde(default)]
    pub receipt: bool,
    /// The holder's name, to be printed on (and signed into) the receipt.
    #[serde(default, borrow)]
    pub holder_name: Option<Cow<'a, str>>,
}

/// Items stay raw so that one bad item gets its own error instead of failing the batch.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchRequest<'a> {
    #[serde(borrow)]
    pub checks: Vec<&'a RawValue>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DocumentStatusRequest {
    pub number: String,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct SnapshotRef<'a> {
    pub version: u64,
    pub published_at: &'a str,
    /// Present (true) only when the held manifest has expired: the data may be outdated.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub stale: bool,
}

/// A document's part of an answer; both fields are null when it was not found.
#[derive(Debug, Serialize)]
pub struct DocView {
    pub status: Option<RecordStatus>,
    pub valid_until: Option<Day>,
}

impl From<Option<DocState>> for DocView {
    fn from(s: Option<DocState>) -> Self {
        DocView {
            status: s.map(|s| s.status),
            valid_until: s.map(|s| s.valid_until),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct LinkItem {
    pub result: LinkResult,
    pub travel_permit: DocView,
    pub residence_permit: DocView,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub receipt: Option<ReceiptOut>,
}

impl From<LinkAnswer> for LinkItem {
    fn from(a: LinkAnswer) -> Self {
        LinkItem {
            result: a.result,
            travel_permit: a.travel_permit.into(),
            residence_permit: a.residence_permit.into(),
            receipt: None,
        }
    }
}

/// A signed receipt as returned with a link check; `encoded` is the receipt itself
/// (docs/receipts.md), the other two repeat what it says for convenience.
#[derive(Debug, Serialize)]
pub struct ReceiptOut {
    pub id: String,
    pub key_id: String,
    pub encoded: String,
    /// The verifier page's link with the receipt (`[receipts] verify_url`), for a QR code.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

/// `POST /v1/receipts/verify`: a receipt, and optionally the two numbers it should be
/// about (both or neither).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReceiptVerifyRequest<'a> {
    #[serde(borrow)]
    pub receipt: Cow<'a, str>,
    #[serde(default, borrow)]
    pub travel_permit: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub residence_permit: Option<Cow<'a, str>>,
}

/// Whether a receipt is genuine, whether it is about the numbers given, what it said, and
/// what a link check of those numbers says now.
#[derive(Debug, Serialize)]
pub struct ReceiptVerifyResponse<'a> {
    /// `genuine`, or why not: `malformed`, `unknown_key`, `key_not_valid`, `bad_signature`.
    pub status: &'static str,
    /// `match`, `mismatch`, or `not_checked` (no numbers given, or not genuine).
    pub numbers: &'static str,
    /// What the receipt says; `null` unless genuine.
    pub receipt: Option<crate::receipt::ReceiptView>,
    /// A link check of the numbers now; `null` unless genuine and about these numbers.
    pub now: Option<LinkItem>,
    pub snapshot: SnapshotRef<'a>,
    pub checked_at: &'a str,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TempPermitRequest {
    pub token: String,
}

#[derive(Debug, Serialize)]
pub struct TempPermitResponse<'a> {
    #[serde(flatten)]
    pub verification: VerificationView,
    /// What the permit may be used for (domestic rail and air travel), when its signature
    /// verified; `null` otherwise.
    pub valid_for: Option<&'static [&'static str]>,
    /// The underlying travel permit's status now (`null`: not on record, or no permit).
    pub travel_permit_status: Option<RecordStatus>,
    pub snapshot: SnapshotRef<'a>,
    pub checked_at: &'a str,
}

#[derive(Debug, Serialize)]
pub struct LinkCheckResponse<'a> {
    #[serde(flatten)]
    pub item: LinkItem,
    pub snapshot: SnapshotRef<'a>,
    pub checked_at: &'a str,
}

#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum BatchItem {
    Answer(LinkItem),
    Error { error: Problem },
}

#[derive(Debug, Serialize)]
pub struct BatchResponse<'a> {
    pub results: Vec<BatchItem>,
    pub snapshot: SnapshotRef<'a>,
    pub checked_at: &'a str,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Found {
    Found,
    NotFound,
}

#[derive(Debug, Serialize)]
pub struct DocumentStatusResponse<'a> {
    pub result: Found,
    pub document_type: DocumentKind,
    pub region: Region,
    pub status: Option<RecordStatus>,
    pub valid_until: Option<Day>,
    pub snapshot: SnapshotRef<'a>,
    pub checked_at: &'a str,
}

impl<'a> DocumentStatusResponse<'a> {
    pub fn new(a: StatusAnswer, snapshot: SnapshotRef<'a>, checked_at: &'a str) -> Self {
        DocumentStatusResponse {
            result: if a.state.is_some() {
                Found::Found
            } else {
                Found::NotFound
            },
            document_type: a.kind,
            region: a.region,
            status: a.state.map(|s| s.status),
            valid_until: a.state.map(|s| s.valid_until),
            snapshot,
            checked_at,
        }
    }
}

/// `GET /v1/partner`: who the gateway takes the caller for, and until when.
#[derive(Debug, Serialize)]
pub struct PartnerAnswer<'a> {
    pub id: &'a str,
    pub scopes: Vec<crate::partner::Scope>,
    pub rate_limit: Option<RateLimitAnswer>,
    pub certificate: HeldCertificate,
}

#[derive(Debug, Serialize)]
pub struct RateLimitAnswer {
    pub per_second: f64,
    pub burst: u32,
}

#[derive(Debug, Serialize)]
pub struct HeldCertificate {
    /// Hex, as `openssl x509 -serial` prints it.
    pub serial: String,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: time::OffsetDateTime,
    /// Whole days left (negative once expired, which a handshake would refuse).
    pub days_left: i64,
}

/// `POST /v1/partner/certificate`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertificateRequest {
    /// PEM, `-----BEGIN CERTIFICATE REQUEST-----`.
    pub csr: String,
}

#[derive(Debug, Serialize)]
pub struct CertificateAnswer<'a> {
    /// PEM.
    pub certificate: &'a str,
    pub serial: &'a str,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: time::OffsetDateTime,
}
