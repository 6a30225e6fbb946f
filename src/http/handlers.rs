//! One plain function per check route: a parsed body and a [`Context`] in, the encoded
//! answer or a [`Problem`] out. Nothing here knows about sockets, admission or metrics
//! labels; [`super::App::handle`] calls these once a request has been let in and its
//! body read.

use prometheus::IntCounter;
use time::OffsetDateTime;

use super::api::*;
use super::body;
use super::problem::{Problem, ProblemKind};
use crate::checks::{self, DocumentPair, HashedPair, LinkAnswer};
use crate::day::Day;
use crate::document::{DocumentNo, ResidencePermitNo, TravelPermitNo};
use crate::key_files::HashKey;
use crate::keyring::{Keyring, SigningKeys};
use crate::partner::{Partner, Scope};
use crate::snapshot::DocKey;
use crate::store::View;
use crate::{receipt, temp_permit};

/// A check route's function.
pub type Handler = fn(&mut Context<'_, '_>, &[u8]) -> Result<Vec<u8>, Problem>;

/// What the check routes share: keys, limits, counters. Replaced whole when a reload
/// brings new keys (`App::set_keys`); a request keeps the one it started with.
#[derive(Clone)]
pub struct Services {
    pub hash_key: HashKey,
    pub receipt_keys: SigningKeys,
    /// The published keyring: temporary-permit tokens are verified against it.
    pub keyring: Keyring,
    pub temp_permit_skew: time::Duration,
    pub max_batch_items: usize,
    /// One per [`temp_permit::TokenStatus`], in its order.
    pub temp_permit_counters: Vec<IntCounter>,
    pub receipts_signed: IntCounter,
    /// Renewal of partners' certificates; `None`: this gateway renews none.
    pub renewals: Option<std::sync::Arc<crate::partner_ca::Renewals>>,
    /// `GET /v1/keys`: `keyring`, encoded once.
    pub keys_json: bytes::Bytes,
}

/// What one check is answered from: the partner, the data served and its reference, the
/// time, and the audit sink that collects the keyed hashes of the numbers it looked at.
pub struct Context<'a, 'v> {
    pub services: &'a Services,
    pub partner: &'a Partner,
    pub view: &'a View<'v>,
    pub now: OffsetDateTime,
    pub checked_at: &'a str,
    pub snapshot: SnapshotRef<'a>,
    pub audit: &'a mut crate::audit::Documents,
    /// What the request costs, in checks: one per check answered, one more per receipt
    /// signed (a signature costs about what a whole request does). Charged to the
    /// partner's rate limit; starts at 1.
    pub cost: u64,
}

/// `POST /v1/link-checks`
pub fn link_check(cx: &mut Context<'_, '_>, body: &[u8]) -> Result<Vec<u8>, Problem> {
    let req: LinkCheckRequest = body::object(body, "")?;
    let input = link_input(&req, None)?;
    cx.cost = 1 + u64::from(input.receipt);
    let hashed = input.pair.hashed(&cx.services.hash_key);
    cx.audit.extend(hashed.keys());
    checks::prefetch(cx.view, std::iter::once(&hashed));
    let item = link_answer(cx, &input, &hashed, None)?;
    encode(&LinkCheckResponse {
        item,
        snapshot: cx.snapshot,
        checked_at: cx.checked_at,
    })
}

/// `POST /v1/link-checks:batch`
pub fn link_check_batch(cx: &mut Context<'_, '_>, body: &[u8]) -> Result<Vec<u8>, Problem> {
    let req: BatchRequest<'_> = body::object(body, "")?;
    let max = cx.services.max_batch_items;
    if req.checks.len() > max {
        return Err(Problem::new(
            ProblemKind::BatchTooLarge,
            format!("{} checks; at most {max} per batch", req.checks.len()),
        )
        .with_field("checks")
        .with_rule("max_items"));
    }
    // Parse and hash every item and start all their index reads before checking any: the
    // items' cache misses overlap.
    let inputs: Vec<Result<(LinkInput, HashedPair), Problem>> = req
        .checks
        .iter()
        .enumerate()
        .map(|(i, raw)| {
            let input =
                body::object::<LinkCheckRequest>(raw.get().as_bytes(), &item_prefix(Some(i)))
                    .and_then(|r| link_input(&r, Some(i)))?;
            let hashed = input.pair.hashed(&cx.services.hash_key);
            Ok((input, hashed))
        })
        .collect();
    cx.cost = (req.checks.len() + inputs.iter().flatten().filter(|(i, _)| i.receipt).count()).max(1)
        as u64;
    cx.audit
        .extend(inputs.iter().flatten().flat_map(|(_, h)| h.keys()));
    checks::prefetch(cx.view, inputs.iter().flatten().map(|(_, h)| h));
    let results: Vec<BatchItem> = inputs
        .into_iter()
        .enumerate()
        .map(|(i, parsed)| {
            parsed
                .and_then(|(input, hashed)| link_answer(cx, &input, &hashed, Some(i)))
                .map_or_else(|error| BatchItem::Error { error }, BatchItem::Answer)
        })
        .collect();
    // About 130 bytes an answer: one allocation instead of a doubling series.
    let mut out = Vec::with_capacity(160 * results.len() + 160);
    serde_json::to_writer(
        &mut out,
        &BatchResponse {
            results,
            snapshot: cx.snapshot,
            checked_at: cx.checked_at,
        },
    )
    .map_err(encoding_failed)?;
    Ok(out)
}

/// `POST /v1/document-status`
pub fn document_status(cx: &mut Context<'_, '_>, body: &[u8]) -> Result<Vec<u8>, Problem> {
    let req: DocumentStatusRequest = body::object(body, "")?;
    let number =
        DocumentNo::parse(&req.number).map_err(|e| Problem::invalid_number("number", e))?;
    let key = DocKey::of(&cx.services.hash_key, number.canonical());
    cx.audit.push(key.0);
    let answer = checks::document_status(cx.view, &key, &number, Day::of(cx.now));
    encode(&DocumentStatusResponse::new(
        answer,
        cx.snapshot,
        cx.checked_at,
    ))
}

/// `POST /v1/temporary-permits/verify`
pub fn temp_permit_verify(cx: &mut Context<'_, '_>, body: &[u8]) -> Result<Vec<u8>, Problem> {
    let req: TempPermitRequest = body::object(body, "")?;
    // A signature to verify: about a request's worth of CPU more.
    cx.cost = 2;
    let (view, services) = (cx.view, cx.services);
    let hash_key = &services.hash_key;
    let v = temp_permit::verify(
        &req.token,
        &services.keyring,
        cx.now,
        services.temp_permit_skew,
        |id| checks::temp_permit_revoked(view, hash_key, id),
    );
    let mut travel_permit_status = None;
    if let Some(p) = &v.permit {
        let travel = DocKey::of(hash_key, p.travel_permit.canonical());
        cx.audit.push(p.permit_id.doc_key(hash_key).0);
        cx.audit.push(travel.0);
        let number = DocumentNo::Travel(p.travel_permit.clone());
        travel_permit_status = checks::document_status(view, &travel, &number, Day::of(cx.now))
            .state
            .map(|s| s.status);
    }
    if let Some(c) = services.temp_permit_counters.get(v.status as usize) {
        c.inc();
    }
    encode(&TempPermitResponse {
        verification: (&v).into(),
        valid_for: v
            .permit
            .is_some()
            .then_some(&crate::issuance::VALID_FOR[..]),
        travel_permit_status,
        snapshot: cx.snapshot,
        checked_at: cx.checked_at,
    })
}

/// `POST /v1/receipts/verify`
pub fn receipt_verify(cx: &mut Context<'_, '_>, body: &[u8]) -> Result<Vec<u8>, Problem> {
    let req: ReceiptVerifyRequest = body::object(body, "")?;
    // A signature to verify: about a request's worth of CPU more.
    cx.cost = 2;
    let pair = match (&req.travel_permit, &req.residence_permit) {
        (Some(tp), Some(rp)) => Some(document_pair(tp, rp, None)?),
        (None, None) => None,
        (Some(_), None) | (None, Some(_)) => {
            let missing = if req.travel_permit.is_none() {
                "travel_permit"
            } else {
                "residence_permit"
            };
            return Err(Problem::new(
                ProblemKind::MissingField,
                "travel_permit and residence_permit go together",
            )
            .with_field(missing));
        }
    };
    let hashed = pair.as_ref().map(|p| p.hashed(&cx.services.hash_key));
    if let Some(h) = &hashed {
        cx.audit.extend(h.keys());
    }
    let verified = receipt::verify(&req.receipt, &cx.services.keyring);
    let refers = match (&verified, &pair) {
        (Ok(r), Some(p)) => Some(r.refers_to(p)),
        _ => None,
    };
    let now = match (refers, &hashed) {
        (Some(true), Some(h)) => Some(LinkItem::from(checks::link_check(
            cx.view,
            h,
            Day::of(cx.now),
        ))),
        _ => None,
    };
    encode(&ReceiptVerifyResponse {
        status: verified.as_ref().map_or_else(|e| e.status(), |_| "genuine"),
        numbers: match refers {
            Some(true) => "match",
            Some(false) => "mismatch",
            None => "not_checked",
        },
        receipt: verified.as_ref().ok().map(receipt::ReceiptView::from),
        now,
        snapshot: cx.snapshot,
        checked_at: cx.checked_at,
    })
}

/// Answers one parsed link check (item `item` of a batch, or the single one).
fn link_answer(
    cx: &Context<'_, '_>,
    input: &LinkInput,
    hashed: &HashedPair,
    item: Option<usize>,
) -> Result<LinkItem, Problem> {
    let answer = checks::link_check(cx.view, hashed, Day::of(cx.now));
    let mut out = LinkItem::from(answer);
    if input.receipt {
        out.receipt = Some(receipt(cx, input, &answer, item)?);
    }
    Ok(out)
}

/// Signs the receipt of one link check; only when asked for (one Ed25519
/// signature: docs/benchmarks.md).
fn receipt(
    cx: &Context<'_, '_>,
    input: &LinkInput,
    answer: &LinkAnswer,
    item: Option<usize>,
) -> Result<ReceiptOut, Problem> {
    let LinkInput {
        pair, holder_name, ..
    } = input;
    let partner = cx.partner;
    if !partner.scopes.contains(Scope::Receipt) {
        return Err(Problem::new(
            ProblemKind::ScopeMissing,
            format!("partner {} lacks scope receipt", partner.id),
        )
        .with_field(field_name(item, "receipt")));
    }
    let keys = &cx.services.receipt_keys;
    let key = keys.current(cx.now).ok_or_else(|| {
        Problem::new(
            ProblemKind::ReceiptsUnavailable,
            if keys.is_empty() {
                "this gateway has no receipt signing key configured"
            } else {
                "no configured receipt signing key is valid now"
            },
        )
    })?;
    let what = receipt::Issue {
        partner: &partner.id,
        partner_name: &partner.display_name,
        snapshot_version: cx.view.info().version,
        checked_at: cx.now,
        holder_name: holder_name.as_deref(),
    };
    let (encoded, r) = receipt::issue(what, pair, answer, key);
    cx.services.receipts_signed.inc();
    Ok(ReceiptOut {
        id: r.id.to_string(),
        key_id: r.key_id.to_string(),
        url: (cx.services.keyring.verify_url.as_deref()).map(|u| receipt::verify_link(u, &encoded)),
        encoded,
    })
}

fn encode(answer: &impl serde::Serialize) -> Result<Vec<u8>, Problem> {
    serde_json::to_vec(answer).map_err(encoding_failed)
}

fn encoding_failed(e: serde_json::Error) -> Problem {
    Problem::new(ProblemKind::Internal, format!("encoding the answer: {e}"))
}

/// A link check's numbers, parsed, and whether it asked for a receipt (and with which
/// holder name).
struct LinkInput {
    pair: DocumentPair,
    receipt: bool,
    holder_name: Option<String>,
}

/// `checks[3].` for item 3 of a batch, nothing for a single check. Built only for errors.
fn item_prefix(item: Option<usize>) -> String {
    item.map_or_else(String::new, |i| format!("checks[{i}]."))
}

fn field_name(item: Option<usize>, name: &str) -> String {
    item_prefix(item) + name
}

fn link_input(req: &LinkCheckRequest<'_>, item: Option<usize>) -> Result<LinkInput, Problem> {
    let pair = document_pair(&req.travel_permit, &req.residence_permit, item)?;
    let holder_name = match req.holder_name.as_deref() {
        None => None,
        // The name itself is never repeated: it is personal data.
        Some(_) if !req.receipt => {
            return Err(invalid_name(
                item,
                "only goes with \"receipt\": true (it is printed on the receipt)",
                "requires_receipt",
            ))
        }
        Some(name) => Some(
            crate::person_name::normalize(name)
                .map_err(|e| invalid_name(item, &e.to_string(), e.rule()))?,
        ),
    };
    Ok(LinkInput {
        pair,
        receipt: req.receipt,
        holder_name,
    })
}

fn invalid_name(item: Option<usize>, detail: &str, rule: &'static str) -> Problem {
    Problem::new(
        ProblemKind::InvalidField,
        format!("{}: {detail}", field_name(item, "holder_name")),
    )
    .with_field(field_name(item, "holder_name"))
    .with_rule(rule)
}

/// The two numbers of a link check (item `item` of a batch, or the single one), parsed; a
/// problem names the field and the rule.
fn document_pair(tp: &str, rp: &str, item: Option<usize>) -> Result<DocumentPair, Problem> {
    let invalid = |name: &str, e| Problem::invalid_number(field_name(item, name), e);
    let tp = TravelPermitNo::parse(tp).map_err(|e| invalid("travel_permit", e))?;
    let rp = ResidencePermitNo::parse(rp).map_err(|e| invalid("residence_permit", e))?;
    DocumentPair::new(tp, rp).map_err(|e| invalid("residence_permit", e))
}

/// `POST /v1/partner/certificate`: a new certificate for the calling partner from its CSR
/// (the same rules as enrolment); the one it called with stays valid until its own end.
pub fn partner_certificate(cx: &mut Context<'_, '_>, body: &[u8]) -> Result<Vec<u8>, Problem> {
    use crate::partner_ca::RenewalError;
    let req: CertificateRequest = body::object(body, "")?;
    let Some(renewals) = &cx.services.renewals else {
        return Err(Problem::new(
            ProblemKind::NotFound,
            "this gateway renews no certificates (no [partner_ca]); ask the authority",
        ));
    };
    let (pem, issued) = renewals
        .renew(&cx.partner.id, &req.csr, cx.now)
        .map_err(|e| match e {
            RenewalError::Csr(c) => Problem::new(ProblemKind::CsrRefused, c.to_string())
                .with_field("csr")
                .with_rule("partner_csr"),
            e @ RenewalError::TooOften(_) => Problem::new(ProblemKind::RateLimited, e.to_string()),
            e @ RenewalError::NotEnrolled(_) => Problem::new(ProblemKind::NotFound, e.to_string()),
            RenewalError::Sign(e) => {
                tracing::error!(partner = %cx.partner.id, error = %crate::report::Report(&e), "partner certificate not renewed");
                Problem::new(
                    ProblemKind::Internal,
                    "the partner CA could not sign or record the certificate; the authority is told",
                )
            }
        })?;
    tracing::info!(partner = %cx.partner.id, serial = %issued.serial, "partner certificate renewed");
    encode(&CertificateAnswer {
        certificate: &pem,
        serial: &issued.serial,
        expires_at: issued.not_after,
    })
}
