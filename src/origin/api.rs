//! The authority API: issue, revoke, look up and list temporary permits. Each route says
//! the scope it needs once; each handler is a function from the caller and the body to an
//! answer or a [`Failure`], which becomes a problem document (RFC 9457) in one place.
//! Every call is audited (the caller, its office and the officer; keyed hashes of the
//! documents) before its answer leaves. No answer and no record holds a full number.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use http::{header, HeaderMap, Method, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use serde::Deserialize;
use serde_json::{json, Value};
use time::OffsetDateTime;

use super::ledger::{Filter, Ledger, Permit};
use super::writer::{IssueRequest, Issued, Origin, OriginError, Revoked};
use crate::audit::{Answered, AuditLog, Documents};
use crate::clock::Clock;
use crate::config::{AuthorityScope, Caller};
use crate::day::{rfc3339, Day};
use crate::document::TravelPermitNo;
use crate::http::problem::Problem;
use crate::issuance::{Actor, Refusal};
use crate::key_files::HashKey;
use crate::snapshot::{DocKey, RecordStatus};
use crate::temp_permit::{PermitId, Reason};

/// Largest request body: a name of 100 bytes and a few short fields, with room.
const MAX_BODY_BYTES: usize = 16 * 1024;
/// Most permits one list answer holds.
const MAX_LISTED: usize = 1000;
const PREFIX: &str = "/v1/authority/temporary-permits";

pub struct Api {
    pub origin: Origin,
    pub callers: HashMap<String, Caller>,
    pub hash_key: HashKey,
    pub clock: Arc<dyn Clock>,
    pub audit: Option<AuditLog>,
    pub metrics: super::OriginMetrics,
}

/// Why a call was not done; the one place these become HTTP answers is [`Failure::response`].
#[derive(Debug)]
pub enum Failure {
    UnknownCaller,
    ScopeMissing(AuthorityScope),
    NotFound,
    MethodNotAllowed,
    BodyTooLarge,
    /// JSON that does not parse or has the wrong shape (the gateway's own classification).
    Json(Problem),
    Invalid {
        field: &'static str,
        rule: &'static str,
        detail: String,
    },
    IdempotencyKey,
    Origin(OriginError),
    AuditFull,
}

impl Failure {
    fn parts(&self) -> (StatusCode, &'static str, &'static str) {
        use Failure::*;
        match self {
            UnknownCaller => (
                StatusCode::FORBIDDEN,
                "unknown-caller",
                "Client certificate is not a configured authority caller",
            ),
            ScopeMissing(_) => (
                StatusCode::FORBIDDEN,
                "scope-missing",
                "Caller lacks the scope this endpoint needs",
            ),
            NotFound => (StatusCode::NOT_FOUND, "not-found", "No such endpoint"),
            MethodNotAllowed => (
                StatusCode::METHOD_NOT_ALLOWED,
                "method-not-allowed",
                "Method not allowed on this endpoint",
            ),
            BodyTooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "body-too-large",
                "Request body is too large",
            ),
            Json(p) => (
                StatusCode::from_u16(p.status).unwrap_or(StatusCode::BAD_REQUEST),
                p.kind.slug(),
                p.title,
            ),
            Invalid { .. } => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid-field",
                "A field breaks a rule",
            ),
            IdempotencyKey => (
                StatusCode::BAD_REQUEST,
                "idempotency-key",
                "An issuance needs an Idempotency-Key header",
            ),
            Origin(OriginError::Refused(_)) => (
                StatusCode::CONFLICT,
                "issuance-refused",
                "The issuance policy refuses this temporary permit",
            ),
            Origin(OriginError::KeyReused) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency-key-reused",
                "The Idempotency-Key was used for a different request",
            ),
            Origin(OriginError::UnknownPermit) => (
                StatusCode::NOT_FOUND,
                "permit-not-found",
                "No temporary permit has this id",
            ),
            Origin(OriginError::Time | OriginError::IssuedAt { .. }) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid-field",
                "A field breaks a rule",
            ),
            Origin(OriginError::Publish(_) | OriginError::Stopped) | AuditFull => (
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "The origin cannot write or record now; send the same request again",
            ),
        }
    }

    /// The slug: the `type`'s last part and the audit record's outcome.
    pub fn slug(&self) -> &'static str {
        self.parts().1
    }

    fn detail(&self) -> (String, Option<&str>, Option<&str>) {
        match self {
            Failure::ScopeMissing(s) => (format!("this endpoint needs the scope {}", scope_name(*s)), None, None),
            Failure::Json(p) => (p.detail.clone(), p.field.as_deref(), p.rule),
            Failure::Invalid {
                field,
                rule,
                detail,
            } => (format!("{field}: {detail}"), Some(field), Some(rule)),
            Failure::IdempotencyKey => (
                "send an Idempotency-Key header of 1-64 characters (A-Z a-z 0-9 - _ . :); a retry with the same key gets the same permit".into(),
                Some("Idempotency-Key"),
                Some("idempotency-key"),
            ),
            Failure::Origin(OriginError::Refused(r)) => {
                (format!("no temporary permit issued: {r}"), None, Some(refusal_rule(r)))
            }
            Failure::Origin(OriginError::Time) => (
                "issued_at: the permit would end before it begins".into(),
                Some("issued_at"),
                Some("range"),
            ),
            Failure::Origin(e @ OriginError::IssuedAt { .. }) => {
                (e.to_string(), Some("issued_at"), Some("near-now"))
            }
            Failure::Origin(OriginError::Publish(_) | OriginError::Stopped) | Failure::AuditFull => (
                "send the same request again: a write already made is answered as it was (the same permit, or already revoked)".into(),
                None,
                None,
            ),
            other => (other.parts().2.to_owned() + ".", None, None),
        }
    }

    fn response(&self) -> Response<Full<Bytes>> {
        let (status, slug, title) = self.parts();
        let (detail, field, rule) = self.detail();
        let mut body = json!({
            "type": format!("urn:permitgate:problem:{slug}"),
            "title": title,
            "status": status.as_u16(),
            "detail": detail,
        });
        if let Some(f) = field {
            body["field"] = json!(f);
        }
        if let Some(r) = rule {
            body["rule"] = json!(r);
        }
        let mut r = answer(status, &body);
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static("application/problem+json"),
        );
        if status == StatusCode::SERVICE_UNAVAILABLE {
            r.headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
        }
        r
    }
}

fn refusal_rule(r: &Refusal) -> &'static str {
    match r {
        Refusal::NotPublished => "travel-permit-not-published",
        Refusal::Unusable(_) => "travel-permit-unusable",
        Refusal::Reason { .. } => "reason-needs-status",
        Refusal::MonthlyLimit { .. } => "monthly-limit",
    }
}

pub fn scope_name(s: AuthorityScope) -> &'static str {
    match s {
        AuthorityScope::TempPermitIssue => "temp_permit_issue",
        AuthorityScope::TempPermitRevoke => "temp_permit_revoke",
        AuthorityScope::TempPermitRead => "temp_permit_read",
    }
}

fn answer(status: StatusCode, body: &Value) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    r
}

/// Which route a request is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    Issue,
    List,
    Search,
    Lookup,
    Revoke,
}

impl Route {
    fn scope(self) -> AuthorityScope {
        match self {
            Route::Issue => AuthorityScope::TempPermitIssue,
            Route::Revoke => AuthorityScope::TempPermitRevoke,
            Route::List | Route::Search | Route::Lookup => AuthorityScope::TempPermitRead,
        }
    }

    /// The audit record's route.
    fn label(self) -> &'static str {
        match self {
            Route::Issue => "authority_temp_permit_issue",
            Route::List => "authority_temp_permit_list",
            Route::Search => "authority_temp_permit_search",
            Route::Lookup => "authority_temp_permit_lookup",
            Route::Revoke => "authority_temp_permit_revoke",
        }
    }
}

/// The route and permit id a method and path name.
fn route<'p>(method: &Method, path: &'p str) -> Result<(Route, Option<&'p str>), Failure> {
    let rest = path
        .strip_prefix(PREFIX)
        .filter(|r| r.is_empty() || r.starts_with('/'))
        .ok_or(Failure::NotFound)?;
    let (route, id, method_ok) = match rest.trim_start_matches('/').split('/').collect::<Vec<_>>()[..]
    {
        [""] => match *method {
            Method::POST => (Route::Issue, None, true),
            Method::GET => (Route::List, None, true),
            _ => (Route::List, None, false),
        },
        ["search"] => (Route::Search, None, method == Method::POST),
        [id] => (Route::Lookup, Some(id), method == Method::GET),
        [id, "revocation"] => (Route::Revoke, Some(id), method == Method::POST),
        _ => return Err(Failure::NotFound),
    };
    if !method_ok {
        return Err(Failure::MethodNotAllowed);
    }
    Ok((route, id))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IssueBody {
    travel_permit: String,
    name: String,
    reason: String,
    officer: String,
    issued_at: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RevokeBody {
    officer: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SearchBody {
    travel_permit: String,
}

/// What a call leaves in the audit trail besides its route and outcome.
#[derive(Default)]
struct Trace {
    officer: Option<String>,
    documents: Documents,
}

impl Api {
    /// Answers one request from the caller a certificate named (`None`: it named none).
    pub async fn handle(
        &self,
        caller: Option<&str>,
        method: &Method,
        path_and_query: (&str, Option<&str>),
        headers: &HeaderMap,
        body: hyper::body::Incoming,
    ) -> Response<Full<Bytes>> {
        // Names the call in the answer (x-request-id) and in its audit record.
        let request_id = header::HeaderValue::from_str(&hex::encode(rand::random::<[u8; 8]>()))
            .unwrap_or(header::HeaderValue::from_static("-"));
        let with_id = |mut r: Response<Full<Bytes>>| {
            r.headers_mut().insert("x-request-id", request_id.clone());
            r
        };
        let slot = match self.audit.as_ref().map(AuditLog::reserve) {
            Some(Err(_)) => return with_id(Failure::AuditFull.response()),
            Some(Ok(slot)) => Some(slot),
            None => None,
        };
        let known = caller.and_then(|c| self.callers.get(c));
        let mut trace = Trace::default();
        let (route_label, result) = match route(method, path_and_query.0) {
            Err(f) => ("authority_unrouted", Err(f)),
            Ok((r, id)) => {
                let result = match known {
                    None => Err(Failure::UnknownCaller),
                    Some(c) if !c.scopes.contains(&r.scope()) => {
                        Err(Failure::ScopeMissing(r.scope()))
                    }
                    Some(c) => {
                        self.call(c, r, id, path_and_query.1, headers, body, &mut trace)
                            .await
                    }
                };
                (r.label(), result)
            }
        };
        let (response, outcome) = match result {
            Ok((status, body, outcome)) => (answer(status, &body), outcome),
            Err(f) => (f.response(), f.slug()),
        };
        self.metrics
            .calls
            .with_label_values(&[route_label, outcome])
            .inc();
        if let Some(slot) = slot {
            let who = match (known, &trace.officer) {
                (Some(c), Some(o)) => format!("{} ({}; officer {o})", c.id, c.office),
                (Some(c), None) => format!("{} ({})", c.id, c.office),
                (None, _) => format!("unknown caller {}", caller.unwrap_or("-")),
            };
            let recorded = slot.record(Answered {
                time_ns: self.clock.now().unix_timestamp_nanos(),
                request_id: request_id.clone(),
                partner: Some(Arc::from(who.as_str())),
                route: route_label,
                outcome,
                documents: trace.documents,
            });
            if !recorded.written().await {
                return with_id(Failure::AuditFull.response());
            }
        }
        with_id(response)
    }

    #[allow(clippy::too_many_arguments)]
    async fn call(
        &self,
        caller: &Caller,
        route: Route,
        id: Option<&str>,
        query: Option<&str>,
        headers: &HeaderMap,
        body: hyper::body::Incoming,
        trace: &mut Trace,
    ) -> Result<(StatusCode, Value, &'static str), Failure> {
        let id = id
            .map(|text| {
                PermitId::parse(text)
                    .filter(|_| text.len() == 16)
                    .ok_or(Failure::Invalid {
                        field: "id",
                        rule: "permit-id",
                        detail: "must be the 16 hex characters printed on the permit".into(),
                    })
            })
            .transpose()?;
        if let Some(id) = id {
            trace.documents.push(id.doc_key(&self.hash_key).0);
        }
        match route {
            Route::Issue => {
                let key = idempotency_key(headers)?;
                let b: IssueBody = read_json(body).await?;
                let req = self.issue_request(caller, b, key, trace)?;
                let issued = self.origin.issue(req).await.map_err(Failure::Origin)?;
                trace
                    .documents
                    .push(issued.permit.permit_id.doc_key(&self.hash_key).0);
                let status = if issued.replayed {
                    StatusCode::OK
                } else {
                    StatusCode::CREATED
                };
                let outcome = if issued.replayed {
                    "replayed"
                } else {
                    "issued"
                };
                Ok((status, issued_view(&issued), outcome))
            }
            Route::Revoke => {
                let b: RevokeBody = read_json(body).await?;
                let officer = officer(&b.officer)?;
                trace.officer = Some(officer.clone());
                let by = actor(caller, officer);
                let id = id.ok_or(Failure::NotFound)?;
                let revoked = self.origin.revoke(id, by).await.map_err(Failure::Origin)?;
                let outcome = if revoked.replayed {
                    "already_revoked"
                } else {
                    "revoked"
                };
                Ok((StatusCode::OK, revoked_view(&revoked), outcome))
            }
            Route::Lookup => {
                let id = id.ok_or(Failure::NotFound)?;
                let hash_key = self.hash_key.clone();
                let now = self.clock.now();
                let found = self
                    .origin
                    .read(move |l| lookup(l, &hash_key, id, now))
                    .await
                    .map_err(Failure::Origin)?;
                found
                    .map(|v| (StatusCode::OK, v, "found"))
                    .ok_or(Failure::Origin(OriginError::UnknownPermit))
            }
            Route::List => {
                let filter = list_filter(query)?;
                Ok((StatusCode::OK, self.list(filter).await?, "listed"))
            }
            Route::Search => {
                let b: SearchBody = read_json(body).await?;
                let tp = travel_permit(&b.travel_permit)?;
                let holder = DocKey::of(&self.hash_key, tp.canonical());
                trace.documents.push(holder.0);
                let filter = Filter {
                    holder: Some(holder),
                    ..Filter::default()
                };
                Ok((StatusCode::OK, self.list(filter).await?, "listed"))
            }
        }
    }

    fn issue_request(
        &self,
        caller: &Caller,
        b: IssueBody,
        idempotency_key: String,
        trace: &mut Trace,
    ) -> Result<IssueRequest, Failure> {
        let officer = officer(&b.officer)?;
        trace.officer = Some(officer.clone());
        let tp = travel_permit(&b.travel_permit)?;
        trace
            .documents
            .push(DocKey::of(&self.hash_key, tp.canonical()).0);
        let name = crate::person_name::normalize(&b.name).map_err(|e| Failure::Invalid {
            field: "name",
            rule: e.rule(),
            detail: e.to_string(),
        })?;
        let reason = b.reason.parse::<Reason>().map_err(|_| Failure::Invalid {
            field: "reason",
            rule: "one-of",
            detail:
                "must be lost, damaged or forgotten (or the Chinese terms 遗失, 损毁, 未随身携带)"
                    .into(),
        })?;
        // How far from now it may be is the writer's rule (the CLI's too).
        let issued_at = match b.issued_at {
            None => self.clock.now(),
            Some(text) => crate::day::parse_rfc3339(&text).ok_or(Failure::Invalid {
                field: "issued_at",
                rule: "rfc3339",
                detail: "must be a time such as 2026-12-05T09:30:00+08:00".into(),
            })?,
        };
        Ok(IssueRequest {
            travel_permit: tp,
            name,
            reason,
            issued_at,
            idempotency_key,
            by: actor(caller, officer),
        })
    }

    async fn list(&self, filter: Filter) -> Result<Value, Failure> {
        let now = self.clock.now();
        let hash_key = self.hash_key.clone();
        self.origin
            .read(move |l| {
                let found = l.list(&filter);
                let permits: Vec<Value> = found
                    .iter()
                    .rev()
                    .take(MAX_LISTED)
                    .map(|p| permit_view(p, status_of(l, &hash_key, p, now)))
                    .collect();
                json!({
                    "permits": permits,
                    "count": found.len(),
                    "truncated": found.len() > MAX_LISTED,
                })
            })
            .await
            .map_err(Failure::Origin)
    }
}

fn actor(caller: &Caller, officer: String) -> Actor {
    Actor {
        caller: caller.id.clone(),
        office: caller.office.clone(),
        officer,
    }
}

fn idempotency_key(headers: &HeaderMap) -> Result<String, Failure> {
    let value = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .ok_or(Failure::IdempotencyKey)?;
    let ok = (1..=64).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b));
    ok.then(|| value.to_owned()).ok_or(Failure::IdempotencyKey)
}

fn officer(text: &str) -> Result<String, Failure> {
    crate::issuance::officer_name(text).ok_or(Failure::Invalid {
        field: "officer",
        rule: "officer",
        detail: "must name the officer (or system) making the call: 1-64 characters, no control characters".into(),
    })
}

fn travel_permit(text: &str) -> Result<TravelPermitNo, Failure> {
    TravelPermitNo::parse(text).map_err(|e| {
        let p = Problem::invalid_number("travel_permit", e);
        Failure::Invalid {
            field: "travel_permit",
            rule: e.rule(),
            detail: p.detail.trim_start_matches("travel_permit: ").to_owned(),
        }
    })
}

async fn read_json<T: serde::de::DeserializeOwned>(
    body: hyper::body::Incoming,
) -> Result<T, Failure> {
    let bytes = Limited::new(body, MAX_BODY_BYTES)
        .collect()
        .await
        .map_err(|_| Failure::BodyTooLarge)?
        .to_bytes();
    serde_json::from_slice(&bytes).map_err(|e| Failure::Json(Problem::from_json(&e, "")))
}

fn list_filter(query: Option<&str>) -> Result<Filter, Failure> {
    let mut filter = Filter::default();
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v = percent_decode(v);
        match k {
            "issued_on" => {
                filter.issued_on = Some(Day::parse(&v).ok_or(Failure::Invalid {
                    field: "issued_on",
                    rule: "date",
                    detail: "must be a date YYYY-MM-DD (a day in Beijing time)".into(),
                })?)
            }
            "office" => filter.office = Some(v),
            _ => {
                return Err(Failure::Invalid {
                    field: "query",
                    rule: "known-parameters",
                    detail: "only issued_on and office filter the list (a holder is searched with POST .../search, so the number stays out of URLs)".into(),
                })
            }
        }
    }
    Ok(filter)
}

/// `%XX` and `+` decoded; invalid escapes are kept as written.
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => match u8::from_str_radix(&s[i + 1..i + 3], 16) {
                Ok(v) => {
                    out.push(v);
                    i += 3;
                    continue;
                }
                Err(_) => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn lookup(l: &Ledger, hash_key: &HashKey, id: PermitId, now: OffsetDateTime) -> Option<Value> {
    if let Some(p) = l.permit(&id) {
        return Some(permit_view(p, status_of(l, hash_key, p, now)));
    }
    // Issued before the origin kept a journal: only what the published record says.
    let record = l.data().get(&id.doc_key(hash_key))?;
    (record.kind == crate::document::DocumentKind::TemporaryPermit).then(|| {
        json!({
            "permit_id": id.to_string(),
            "status": if record.status == RecordStatus::Revoked { "revoked" } else { "issued" },
            "last_day": Day(record.valid_until),
            "issued_by": Value::Null,
        })
    })
}

fn status_of(l: &Ledger, hash_key: &HashKey, p: &Permit, now: OffsetDateTime) -> &'static str {
    let revoked = p.revoked.is_some()
        || l.data()
            .get(&p.id.doc_key(hash_key))
            .is_some_and(|r| r.status == RecordStatus::Revoked);
    if revoked {
        "revoked"
    } else if now >= p.expires_at {
        "expired"
    } else {
        "valid"
    }
}

fn actor_view(a: &Actor) -> Value {
    json!({"caller": a.caller, "office": a.office, "officer": a.officer})
}

fn permit_view(p: &Permit, status: &str) -> Value {
    json!({
        "permit_id": p.id.to_string(),
        "status": status,
        "reason": <&str>::from(p.reason),
        "holder": {"travel_permit": p.travel_permit_masked},
        "valid_from": rfc3339(p.issued_at),
        "valid_until": rfc3339(p.expires_at),
        "issued_on": Day::in_beijing(p.issued_at),
        "issued_by": actor_view(&p.issued_by),
        "revoked": p.revoked.as_ref().map(|(at, by)| json!({"at": rfc3339(*at), "by": actor_view(by)})),
    })
}

fn issued_view(i: &Issued) -> Value {
    let p = &i.permit;
    json!({
        "permit_id": p.permit_id.to_string(),
        "token": i.token,
        "replayed": i.replayed,
        "holder": {
            "name": p.holder_name,
            "travel_permit": p.travel_permit.masked(),
            "region": p.region().as_str(),
        },
        "reason": <&str>::from(p.reason),
        "valid_from": rfc3339(p.issued_at),
        "valid_until": rfc3339(p.expires_at),
        "valid_for": crate::issuance::VALID_FOR,
        "published_version": i.version,
    })
}

fn revoked_view(r: &Revoked) -> Value {
    json!({
        "permit_id": r.id.to_string(),
        "status": "revoked",
        "replayed": r.replayed,
        "revoked": r.at.as_ref().map(|(at, by)| json!({"at": rfc3339(*at), "by": actor_view(by)})),
        "published_version": r.version,
    })
}
