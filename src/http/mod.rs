//! HTTP: routing, scopes, body limits, JSON in and out, problem documents.
//!
//! [`App::handle`] is the whole request path for one partner request: Host rule → route →
//! method → certificate, partner and scope → content type → rate → (replication: a place
//! on the relay budget) → queue delay → readiness → a slot within the partner's share
//! (src/http/admission.rs) → body, bounded in size and time (src/http/body.rs) → parse →
//! check → serialise → audit record. It knows the partner from the connection (resolved
//! once per TLS session by the server) and never touches sockets itself.

pub mod admission;
pub mod api;
pub mod body;
pub mod directory;
pub mod problem;
pub mod relay;
pub mod request_id;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, ALLOW, CONNECTION, CONTENT_TYPE, HOST, RETRY_AFTER};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{Either, Full};
use prometheus::{Histogram, IntCounter};
use time::OffsetDateTime;

use crate::checks::{self, DocumentPair, HashedPair, LinkAnswer};
use crate::clock::Clock;
use crate::day::{rfc3339, Day};
use crate::document::{DocumentNo, ResidencePermitNo, TravelPermitNo};
use crate::keyring::{Keyring, SigningKeys};
use crate::keys::HashKey;
use crate::metrics::{Metrics, RequestCounters, RequestLabels, UNKNOWN_PARTNER};
use crate::partner::{Partner, Scope};
use crate::snapshot::DocKey;
use crate::store::{Store, View};
use crate::{receipt, temp_permit};

use admission::{Admission, AdmissionLimits, Refusal, Slot};
use api::*;
use directory::{Directory, Entry};
use problem::{Problem, ProblemKind};

/// Answers: JSON held in memory, or a replication object streamed from disk.
pub type Body = Either<Full<Bytes>, relay::ObjectBody>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    LinkCheck,
    LinkCheckBatch,
    DocumentStatus,
    TempPermitVerify,
    Keys,
    Healthz,
    Readyz,
    ReplicationManifest,
    ReplicationObject,
    Unknown,
}

impl Route {
    pub const ALL: [Route; 10] = [
        Route::LinkCheck,
        Route::LinkCheckBatch,
        Route::DocumentStatus,
        Route::TempPermitVerify,
        Route::Keys,
        Route::Healthz,
        Route::Readyz,
        Route::ReplicationManifest,
        Route::ReplicationObject,
        Route::Unknown,
    ];

    pub fn of(path: &str) -> Route {
        match path {
            "/v1/link-checks" => Route::LinkCheck,
            "/v1/link-checks:batch" => Route::LinkCheckBatch,
            "/v1/document-status" => Route::DocumentStatus,
            "/v1/temporary-permits/verify" => Route::TempPermitVerify,
            "/v1/keys" => Route::Keys,
            "/healthz" => Route::Healthz,
            "/readyz" => Route::Readyz,
            "/v1/replication/manifest" | "/v1/replication/manifest.json" => {
                Route::ReplicationManifest
            }
            p if p.starts_with("/v1/replication/objects/") => Route::ReplicationObject,
            _ => Route::Unknown,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Route::LinkCheck => "link_check",
            Route::LinkCheckBatch => "link_check_batch",
            Route::DocumentStatus => "document_status",
            Route::TempPermitVerify => "temp_permit_verify",
            Route::Keys => "keys",
            Route::Healthz => "healthz",
            Route::Readyz => "readyz",
            Route::ReplicationManifest => "replication_manifest",
            Route::ReplicationObject => "replication_object",
            Route::Unknown => "unknown",
        }
    }

    fn method(self) -> Option<Method> {
        match self {
            Route::LinkCheck
            | Route::LinkCheckBatch
            | Route::DocumentStatus
            | Route::TempPermitVerify => Some(Method::POST),
            Route::Keys
            | Route::Healthz
            | Route::Readyz
            | Route::ReplicationManifest
            | Route::ReplicationObject => Some(Method::GET),
            Route::Unknown => None,
        }
    }

    fn scope(self) -> Option<Scope> {
        match self {
            Route::LinkCheck | Route::LinkCheckBatch => Some(Scope::LinkCheck),
            Route::DocumentStatus => Some(Scope::DocumentStatus),
            Route::TempPermitVerify => Some(Scope::TempPermit),
            Route::ReplicationManifest | Route::ReplicationObject => Some(Scope::Replicate),
            Route::Keys | Route::Healthz | Route::Readyz | Route::Unknown => None,
        }
    }
}

/// The label values of `permitgate_requests_total`: every route, and `ok` then one per
/// problem kind (indexed by `ProblemKind::index() + 1`).
fn request_labels() -> Arc<RequestLabels> {
    Arc::new(RequestLabels {
        routes: Route::ALL.iter().map(|r| r.label()).collect(),
        outcomes: std::iter::once("ok".to_owned())
            .chain(ProblemKind::ALL.iter().map(|k| k.label()))
            .collect(),
    })
}

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_body_bytes: usize,
    pub max_batch_items: usize,
    /// Readiness fails once the held manifest has been expired this long; `None` keeps
    /// serving stale data as ready (answers still say `"stale": true`).
    pub unready_when_stale_for: Option<std::time::Duration>,
    /// A body not complete this long after the head was read gets 408 body-timeout.
    pub body_read_timeout: std::time::Duration,
    pub admission: AdmissionLimits,
}

/// Keys for the signed objects: receipts this gateway signs, and the published keyring
/// (receipt, temporary-permit and snapshot keys) it verifies tokens with and serves.
pub struct Credentials {
    pub receipt_keys: SigningKeys,
    pub keyring: Keyring,
    pub temp_permit_skew: time::Duration,
}

/// Who is on the other end of a connection: the partner id its certificate claimed, read
/// once per connection and looked up in the current [`Directory`] per request.
#[derive(Debug, Clone, Default)]
pub struct Caller {
    claimed: Option<Arc<str>>,
    serial: Vec<u8>,
}

impl Caller {
    pub fn new(leaf: Option<crate::tls::Leaf>) -> Caller {
        match leaf {
            Some(l) => Caller {
                claimed: l.partner_id.map(Arc::from),
                serial: l.serial,
            },
            None => Caller::default(),
        }
    }
}

pub struct App {
    store: Arc<Store>,
    hash_key: HashKey,
    clock: Arc<dyn Clock>,
    limits: Limits,
    partners: ArcSwap<Directory>,
    labels: Arc<RequestLabels>,
    unknown_counters: Arc<RequestCounters>,
    durations: Vec<Histogram>,
    relay: Option<relay::RelaySource>,
    admission: Admission,
    credentials: Credentials,
    /// `GET /v1/keys`, encoded once.
    keys_json: Bytes,
    temp_permit_counters: Vec<IntCounter>,
    receipts_signed: IntCounter,
    audit: Option<crate::audit::AuditLog>,
    request_ids: request_id::Generator,
    /// Sheds while the async workers run behind (CPU-bound overload).
    lag: Option<Arc<crate::overload::LagMonitor>>,
}

/// What a request may go on to once it has been let in.
enum Admitted<'a> {
    /// A partner check: its partner and its slot; the body is read next.
    Check(&'a Partner, Slot<'a>),
    Keys,
    Relay(tokio::sync::OwnedSemaphorePermit),
}

impl App {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        store: Arc<Store>,
        hash_key: HashKey,
        clock: Arc<dyn Clock>,
        limits: Limits,
        partners: &[Partner],
        revoked: HashSet<Vec<u8>>,
        metrics: &Metrics,
        relay: Option<relay::RelaySource>,
        credentials: Credentials,
        audit: Option<crate::audit::AuditLog>,
        lag: Option<Arc<crate::overload::LagMonitor>>,
    ) -> App {
        let statuses: Vec<&str> = temp_permit::Status::ALL
            .iter()
            .map(|s| s.as_str())
            .collect();
        let labels = request_labels();
        App {
            store,
            hash_key,
            clock,
            limits,
            partners: ArcSwap::from_pointee(Directory::build(
                partners,
                revoked,
                |id| metrics.request_counters(id, labels.clone()),
                None,
            )),
            unknown_counters: Arc::new(metrics.request_counters(UNKNOWN_PARTNER, labels.clone())),
            labels,
            durations: Route::ALL
                .iter()
                .map(|r| metrics.route_duration(r.label()))
                .collect(),
            relay,
            admission: Admission::new(limits.admission, metrics),
            keys_json: Bytes::from(credentials.keyring.to_json()),
            credentials,
            temp_permit_counters: metrics.temp_permit_counters(&statuses),
            receipts_signed: metrics.receipts_signed(),
            audit,
            request_ids: request_id::Generator::default(),
            lag,
        }
    }

    /// Writes and fsyncs the audit records of everything answered, and stops the writer.
    pub fn close_audit(&self) {
        if let Some(log) = &self.audit {
            log.close();
        }
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// Replaces the partner table (a reload); requests already admitted finish under the
    /// table they started with.
    pub fn set_partners(&self, partners: &[Partner], revoked: HashSet<Vec<u8>>, metrics: &Metrics) {
        let old = self.partners.load();
        self.partners.store(Arc::new(Directory::build(
            partners,
            revoked,
            |id| metrics.request_counters(id, self.labels.clone()),
            Some(&old),
        )));
    }

    /// `queued`: how long the request waited before it was read, where known.
    pub async fn handle<B>(
        &self,
        caller: &Caller,
        req: Request<B>,
        queued: Option<std::time::Duration>,
    ) -> Response<Body>
    where
        B: hyper::body::Body<Data = Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let start = Instant::now();
        let body_deadline = tokio::time::Instant::now() + self.limits.body_read_timeout;
        let route = Route::of(req.uri().path());
        let version = req.version();
        let request_id = match req.headers().get(request_id::HEADER) {
            Some(v) if request_id::acceptable(v) => v.clone(),
            _ => self.request_ids.next(),
        };
        let directory = self.partners.load();
        let entry = caller.claimed.as_deref().and_then(|id| directory.get(id));
        let revoked = directory.is_revoked(&caller.serial);
        let mut documents = Vec::new();
        let answer = match (host_header_ok(&req), route) {
            (Err(p), _) => {
                body::discard(req, body_deadline).await;
                Err(p)
            }
            // Probes are never shed (an overloaded gateway is alive and, if it has data,
            // ready) and never audited.
            (Ok(()), Route::Healthz | Route::Readyz) => self.probe(route, &req),
            (Ok(()), _) => {
                self.serve(
                    caller,
                    entry,
                    revoked,
                    route,
                    req,
                    queued,
                    body_deadline,
                    &mut documents,
                )
                .await
            }
        };
        // Load shedding leaves no record (it is counted); every other answer has one,
        // placed now that there is something to audit.
        let audited = !matches!(route, Route::Healthz | Route::Readyz)
            && !matches!(
                &answer,
                Err(p) if matches!(p.kind, ProblemKind::Overloaded | ProblemKind::RateLimited)
            );
        let (slot, answer) = match (&self.audit, audited) {
            (Some(log), true) => match log.reserve() {
                Ok(slot) => (Some(slot), answer),
                Err(_) => (
                    None,
                    Err(self.admission.refuse(
                        Refusal::AuditBacklog,
                        "the audit log is behind; try again shortly".to_owned(),
                    )),
                ),
            },
            _ => (None, answer),
        };
        let (mut response, outcome) = match answer {
            Ok(r) => (r, None),
            Err(p) => (problem_response(&p, route), Some(p.kind)),
        };
        if let Some(kind) = outcome {
            // Ids and labels only: request bodies (numbers) never reach the logs.
            let id = request_id.to_str().unwrap_or_default();
            let partner = caller.claimed.as_deref().unwrap_or("-");
            if kind == ProblemKind::Internal {
                tracing::warn!(
                    request_id = id,
                    partner,
                    route = route.label(),
                    outcome = kind.slug(),
                    "request failed"
                );
            } else {
                tracing::debug!(
                    request_id = id,
                    partner,
                    route = route.label(),
                    outcome = kind.slug(),
                    "request refused"
                );
            }
            // The body was not read to its end: the connection cannot carry another
            // request (HTTP/2 resets just the stream).
            if kind == ProblemKind::BodyTimeout && version == http::Version::HTTP_11 {
                response
                    .headers_mut()
                    .insert(CONNECTION, HeaderValue::from_static("close"));
            }
        }
        let counters = entry.map_or(&self.unknown_counters, |e| &e.counters);
        let outcome_index = outcome.map_or(0, |k| k.index() + 1);
        if let Some(c) = counters.get(route as usize, outcome_index) {
            c.inc();
        }
        if let Some(slot) = slot {
            slot.record(crate::audit::Entry {
                time_ns: self.clock.now().unix_timestamp_nanos(),
                request_id: request_id.clone(),
                partner: caller.claimed.clone(),
                route: route.label(),
                outcome: outcome.map_or("ok", ProblemKind::slug),
                documents,
            });
        }
        response
            .headers_mut()
            .insert(HeaderName::from_static(request_id::HEADER), request_id);
        if let Some(h) = self.durations.get(route as usize) {
            h.observe(start.elapsed().as_secs_f64());
        }
        response
    }

    fn probe<B>(&self, route: Route, req: &Request<B>) -> Result<Response<Body>, Problem> {
        if req.method() != Method::GET {
            return Err(method_not_allowed(Method::GET));
        }
        if route == Route::Readyz {
            return self.readyz();
        }
        Ok(json_response(
            StatusCode::OK,
            br#"{"status":"alive"}"#.to_vec(),
        ))
    }

    /// A partner request: let in (or refused, its body discarded so the refusal reaches
    /// the client intact), then its body read within the deadline, then answered.
    #[allow(clippy::too_many_arguments)]
    async fn serve<B>(
        &self,
        caller: &Caller,
        entry: Option<&Arc<Entry>>,
        revoked: bool,
        route: Route,
        req: Request<B>,
        queued: Option<std::time::Duration>,
        body_deadline: tokio::time::Instant,
        documents: &mut Vec<[u8; 16]>,
    ) -> Result<Response<Body>, Problem>
    where
        B: hyper::body::Body<Data = Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let admitted = match self.admit(caller, entry, revoked, route, &req, queued) {
            Ok(a) => a,
            Err(p) => {
                body::discard(req, body_deadline).await;
                return Err(p);
            }
        };
        match admitted {
            Admitted::Keys => Ok(json_response(StatusCode::OK, self.keys_json.clone())),
            Admitted::Relay(place) => match route {
                Route::ReplicationManifest => {
                    relay::manifest(self.relay.as_ref(), &req, place).await
                }
                _ => relay::object(self.relay.as_ref(), req.uri().path(), place).await,
            },
            Admitted::Check(partner, slot) => {
                let body = body::read(req, self.limits.max_body_bytes, body_deadline)
                    .await
                    .map_err(|e| {
                        if matches!(e, body::BodyError::TimedOut) {
                            self.admission.count(Refusal::BodyTimeout);
                        }
                        e.problem(self.limits.body_read_timeout)
                    })?;
                let answer = self.check(route, partner, &body, documents);
                drop(slot);
                answer
            }
        }
    }

    /// Everything decided from the head alone, in order: route and method, certificate,
    /// partner, scope, then (cheapest refusals first) content type, the partner's rate,
    /// how long it waited in its socket or the run queue (src/overload.rs), readiness,
    /// and a slot within the partner's share (src/http/admission.rs). Replication
    /// requests take a place on the relay budget instead of a slot.
    fn admit<'a, B>(
        &'a self,
        caller: &Caller,
        entry: Option<&'a Arc<Entry>>,
        revoked: bool,
        route: Route,
        req: &Request<B>,
        queued: Option<std::time::Duration>,
    ) -> Result<Admitted<'a>, Problem> {
        let Some(method) = route.method() else {
            return Err(Problem::new(
                ProblemKind::NotFound,
                "see README.md for the API",
            ));
        };
        if req.method() != method {
            return Err(method_not_allowed(method));
        }
        if revoked {
            return Err(Problem::new(
                ProblemKind::CertificateRevoked,
                "a revocation list loaded since this connection opened lists its certificate",
            ));
        }
        let Some(entry) = entry else {
            return Err(Problem::new(
                ProblemKind::UnknownPartner,
                match &caller.claimed {
                    Some(id) => format!("certificate identity {id:?} is not in the partner table"),
                    None => "certificate carries no partner identity (SAN URI spiffe://partners/<id> or subject CN)".to_owned(),
                },
            ));
        };
        let partner = &entry.partner;
        if let Some(scope) = route.scope() {
            if !partner.scopes.contains(scope) {
                return Err(Problem::new(
                    ProblemKind::ScopeMissing,
                    format!("partner {} lacks scope {}", partner.id, scope.as_str()),
                ));
            }
        }
        if method == Method::POST {
            check_content_type(req)?;
        }
        self.within_rate(entry)?;
        match route {
            Route::ReplicationManifest | Route::ReplicationObject => {
                return self.admission.relay_place().map(Admitted::Relay)
            }
            Route::Keys => return Ok(Admitted::Keys),
            _ => {}
        }
        // How long this request (its socket) or any request (the run queue) has waited.
        let lag = self.lag.as_ref().map(|m| m.lag());
        self.admission
            .check_queue_delay(queued.into_iter().chain(lag).max())?;
        if !self.store.is_ready() {
            return Err(not_ready());
        }
        let slot = self.admission.slot(&entry.slots, &partner.id)?;
        Ok(Admitted::Check(partner, slot))
    }

    /// Takes a token from the partner's bucket, if it has a limit.
    fn within_rate(&self, entry: &Entry) -> Result<(), Problem> {
        let Some(bucket) = entry.bucket.as_ref() else {
            return Ok(());
        };
        let now = self.clock.now().unix_timestamp_nanos();
        let now = u64::try_from(now).unwrap_or(0);
        bucket.take(now).map_err(|wait| {
            let limit = bucket.limit();
            let mut p = self.admission.refuse(
                Refusal::RateLimited,
                format!(
                    "partner {} may send {} requests per second (burst {})",
                    entry.partner.id, limit.per_second, limit.burst
                ),
            );
            // Whole seconds, rounded up: Retry-After has no fractions.
            p.retry_after = Some(wait.as_secs() + u64::from(wait.subsec_nanos() > 0));
            p
        })
    }

    /// Answers a partner check whose body has been read: the context every route
    /// answers from, then the route's own function.
    fn check(
        &self,
        route: Route,
        partner: &Partner,
        body: &[u8],
        documents: &mut Vec<[u8; 16]>,
    ) -> Result<Response<Body>, Problem> {
        let guard = self.store.current();
        let view = guard.as_ref().ok_or_else(not_ready)?.view();
        let now = self.clock.now();
        let stamp = rfc3339(now);
        let mut cx = Context {
            partner,
            now,
            checked_at: stamp.as_str(),
            snapshot: SnapshotRef {
                version: view.info().version,
                published_at: &view.info().published_at_text,
                stale: now > view.info().expires_at,
            },
            view: &view,
            documents,
        };
        let out = match route {
            Route::LinkCheck => self.link_check(&mut cx, body),
            Route::LinkCheckBatch => self.link_check_batch(&mut cx, body),
            Route::DocumentStatus => self.document_status(&mut cx, body),
            Route::TempPermitVerify => self.temp_permit_verify(&mut cx, body),
            Route::Keys
            | Route::Healthz
            | Route::Readyz
            | Route::ReplicationManifest
            | Route::ReplicationObject
            | Route::Unknown => return Err(Problem::new(ProblemKind::NotFound, "no handler")),
        }?;
        Ok(json_response(StatusCode::OK, out))
    }

    /// `POST /v1/link-checks`
    fn link_check(&self, cx: &mut Context<'_, '_>, body: &[u8]) -> Result<Vec<u8>, Problem> {
        let req: LinkCheckRequest = body::object(body, "")?;
        let input = link_input(&req, None)?;
        let hashed = input.pair.hashed(&self.hash_key);
        cx.documents.extend(hashed.keys());
        checks::prefetch(cx.view, std::iter::once(&hashed));
        let item = self.link_answer(cx.view, cx.partner, &input, &hashed, cx.now, None)?;
        encode(&LinkCheckResponse {
            item,
            snapshot: cx.snapshot,
            checked_at: cx.checked_at,
        })
    }

    /// `POST /v1/link-checks:batch`
    fn link_check_batch(&self, cx: &mut Context<'_, '_>, body: &[u8]) -> Result<Vec<u8>, Problem> {
        let req: BatchRequest<'_> = body::object(body, "")?;
        if req.checks.len() > self.limits.max_batch_items {
            let mut p = Problem::new(
                ProblemKind::BatchTooLarge,
                format!(
                    "{} checks; at most {} per batch",
                    req.checks.len(),
                    self.limits.max_batch_items
                ),
            )
            .with_field("checks");
            p.rule = Some("max_items");
            return Err(p);
        }
        // Parse and hash every item and start all their index reads before checking
        // any: the items' cache misses overlap.
        let inputs: Vec<Result<(LinkInput, HashedPair), Problem>> = req
            .checks
            .iter()
            .enumerate()
            .map(|(i, raw)| {
                let input =
                    body::object::<LinkCheckRequest>(raw.get().as_bytes(), &item_prefix(Some(i)))
                        .and_then(|r| link_input(&r, Some(i)))?;
                let hashed = input.pair.hashed(&self.hash_key);
                Ok((input, hashed))
            })
            .collect();
        cx.documents
            .extend(inputs.iter().flatten().flat_map(|(_, h)| h.keys()));
        checks::prefetch(cx.view, inputs.iter().flatten().map(|(_, h)| h));
        let results: Vec<BatchItem> = inputs
            .into_iter()
            .enumerate()
            .map(|(i, parsed)| {
                parsed
                    .and_then(|(input, hashed)| {
                        self.link_answer(cx.view, cx.partner, &input, &hashed, cx.now, Some(i))
                    })
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
    fn document_status(&self, cx: &mut Context<'_, '_>, body: &[u8]) -> Result<Vec<u8>, Problem> {
        let req: DocumentStatusRequest = body::object(body, "")?;
        let number =
            DocumentNo::parse(&req.number).map_err(|e| Problem::invalid_number("number", e))?;
        let key = DocKey::of(&self.hash_key, number.canonical());
        cx.documents.push(key.0);
        let answer = checks::document_status(cx.view, &key, &number, Day::of(cx.now));
        encode(&DocumentStatusResponse::new(
            answer,
            cx.snapshot,
            cx.checked_at,
        ))
    }

    /// `POST /v1/temporary-permits/verify`
    fn temp_permit_verify(
        &self,
        cx: &mut Context<'_, '_>,
        body: &[u8],
    ) -> Result<Vec<u8>, Problem> {
        let req: TempPermitRequest = body::object(body, "")?;
        let view = cx.view;
        let v = temp_permit::verify(
            &req.token,
            &self.credentials.keyring,
            cx.now,
            self.credentials.temp_permit_skew,
            |id| checks::temp_permit_revoked(view, &self.hash_key, id),
        );
        if let Some(p) = &v.permit {
            cx.documents.push(p.permit_id.doc_key(&self.hash_key).0);
            cx.documents
                .push(DocKey::of(&self.hash_key, p.travel_permit.canonical()).0);
        }
        if let Some(c) = self.temp_permit_counters.get(v.status as usize) {
            c.inc();
        }
        encode(&TempPermitResponse {
            verification: (&v).into(),
            snapshot: cx.snapshot,
            checked_at: cx.checked_at,
        })
    }

    /// Answers one parsed link check (item `item` of a batch, or the single one).
    fn link_answer(
        &self,
        view: &View<'_>,
        partner: &Partner,
        input: &LinkInput,
        hashed: &HashedPair,
        now: OffsetDateTime,
        item: Option<usize>,
    ) -> Result<LinkItem, Problem> {
        let answer = checks::link_check(view, hashed, Day::of(now));
        let mut out = LinkItem::from(answer);
        if input.receipt {
            let version = view.info().version;
            let field = |name: &str| field_name(item, name);
            out.receipt =
                Some(self.receipt(partner, &input.pair, &answer, version, now, &field)?);
        }
        Ok(out)
    }

    /// Signs the receipt of one link check; only when asked for (about 13 µs, one Ed25519
    /// signature: docs/benchmarks.md).
    fn receipt(
        &self,
        partner: &Partner,
        pair: &DocumentPair,
        answer: &LinkAnswer,
        snapshot_version: u64,
        now: OffsetDateTime,
        field: &dyn Fn(&str) -> String,
    ) -> Result<ReceiptOut, Problem> {
        if !partner.scopes.contains(Scope::Receipt) {
            return Err(Problem::new(
                ProblemKind::ScopeMissing,
                format!("partner {} lacks scope receipt", partner.id),
            )
            .with_field(field("receipt")));
        }
        let keys = &self.credentials.receipt_keys;
        let key = keys.current(now).ok_or_else(|| {
            Problem::new(
                ProblemKind::ReceiptsUnavailable,
                if keys.is_empty() {
                    "this gateway has no receipt signing key configured"
                } else {
                    "no configured receipt signing key is valid now"
                },
            )
        })?;
        let (encoded, r) = receipt::issue(&partner.id, pair, answer, snapshot_version, now, key);
        self.receipts_signed.inc();
        Ok(ReceiptOut {
            id: r.id.to_string(),
            key_id: r.key_id.to_string(),
            encoded,
        })
    }

    /// Ready: a snapshot is loaded and, under a staleness policy, not stale for too long.
    /// Returns the served version and document count.
    pub fn readiness(&self) -> Result<(u64, usize), Problem> {
        let guard = self.store.current();
        let state = guard.as_ref().ok_or_else(not_ready)?;
        let view = state.view();
        if let Some(grace) = self.limits.unready_when_stale_for {
            let now = self.clock.now();
            if now > view.info().expires_at + grace {
                return Err(Problem::new(
                    ProblemKind::NotReady,
                    "the held manifest expired longer ago than the staleness policy allows",
                ));
            }
        }
        Ok((view.info().version, state.snapshot().len()))
    }

    fn readyz(&self) -> Result<Response<Body>, Problem> {
        let (version, documents) = self.readiness()?;
        let body = format!(
            r#"{{"status":"ready","snapshot":{{"version":{version},"documents":{documents}}}}}"#
        );
        Ok(json_response(StatusCode::OK, body.into_bytes()))
    }
}

/// What every check route answers from: the partner, the data served and its
/// reference, the time, and where the keyed hashes of the numbers go for the audit
/// record.
struct Context<'a, 'v> {
    partner: &'a Partner,
    view: &'a View<'v>,
    now: OffsetDateTime,
    checked_at: &'a str,
    snapshot: SnapshotRef<'a>,
    documents: &'a mut Vec<[u8; 16]>,
}

fn encode(answer: &impl serde::Serialize) -> Result<Vec<u8>, Problem> {
    serde_json::to_vec(answer).map_err(encoding_failed)
}

fn encoding_failed(e: serde_json::Error) -> Problem {
    Problem::new(ProblemKind::Internal, format!("encoding the answer: {e}"))
}

/// A link check's numbers, parsed, and whether it asked for a receipt.
struct LinkInput {
    pair: DocumentPair,
    receipt: bool,
}

/// `checks[3].` for item 3 of a batch, nothing for a single check. Built only for errors.
fn item_prefix(item: Option<usize>) -> String {
    item.map_or_else(String::new, |i| format!("checks[{i}]."))
}

fn field_name(item: Option<usize>, name: &str) -> String {
    item_prefix(item) + name
}

fn link_input(req: &LinkCheckRequest<'_>, item: Option<usize>) -> Result<LinkInput, Problem> {
    let invalid = |name: &str, e| Problem::invalid_number(field_name(item, name), e);
    let tp = TravelPermitNo::parse(&req.travel_permit).map_err(|e| invalid("travel_permit", e))?;
    let rp = ResidencePermitNo::parse(&req.residence_permit)
        .map_err(|e| invalid("residence_permit", e))?;
    let pair = DocumentPair::new(tp, rp).map_err(|e| invalid("residence_permit", e))?;
    Ok(LinkInput {
        pair,
        receipt: req.receipt,
    })
}

fn not_ready() -> Problem {
    Problem::new(ProblemKind::NotReady, "the first snapshot is still loading")
}

fn check_content_type<B>(req: &Request<B>) -> Result<(), Problem> {
    let ok = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"));
    if ok {
        Ok(())
    } else {
        Err(Problem::new(
            ProblemKind::UnsupportedMediaType,
            "send Content-Type: application/json",
        ))
    }
}

/// RFC 9112 §3.2: an HTTP/1.1 request carries exactly one Host header (HTTP/1.0 at most
/// one; HTTP/2 carries `:authority` instead).
fn host_header_ok<B>(req: &Request<B>) -> Result<(), Problem> {
    let hosts = req.headers().get_all(HOST).iter().count();
    let ok = match req.version() {
        http::Version::HTTP_11 => hosts == 1,
        http::Version::HTTP_10 | http::Version::HTTP_09 => hosts <= 1,
        _ => true,
    };
    if ok {
        Ok(())
    } else {
        Err(Problem::new(
            ProblemKind::InvalidHost,
            format!("the request has {hosts} Host headers; HTTP/1.1 needs exactly one"),
        ))
    }
}

fn method_not_allowed(method: Method) -> Problem {
    Problem::new(
        ProblemKind::MethodNotAllowed,
        format!("this endpoint accepts {method} only"),
    )
}

fn json_response(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    let mut r = Response::new(Either::Left(Full::new(body.into())));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

/// The single place a [`Problem`] becomes a response.
pub fn problem_response(p: &Problem, route: Route) -> Response<Body> {
    let body = serde_json::to_vec(p)
        .unwrap_or_else(|_| br#"{"type":"urn:permitgate:problem:internal"}"#.to_vec());
    let mut r = json_response(
        StatusCode::from_u16(p.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        body,
    );
    let h = r.headers_mut();
    h.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    if p.kind == ProblemKind::MethodNotAllowed {
        let allow = route
            .method()
            .map_or("", |m| if m == Method::GET { "GET" } else { "POST" });
        h.insert(ALLOW, HeaderValue::from_static(allow));
    }
    if let Some(secs) = p.retry_after {
        h.insert(RETRY_AFTER, HeaderValue::from(secs));
    }
    r
}
