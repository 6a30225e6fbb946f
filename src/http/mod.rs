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
pub mod handlers;
pub mod metrics;
pub mod problem;
pub mod relay;
pub mod request_id;
pub mod revocations;
pub mod route;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, ALLOW, CONNECTION, CONTENT_TYPE, RETRY_AFTER};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{Either, Full};

use crate::clock::Clock;
use crate::day::rfc3339;
use crate::key_files::HashKey;
use crate::keyring::{Keyring, SigningKeys};
use crate::partner::{Partner, Scope};
use crate::store::Store;

use admission::{Admission, AdmissionLimits, Refusal, Slot};
use api::SnapshotRef;
use directory::{Directory, PartnerEntry, Pools};
use handlers::{Context, Handler, Services};
pub use metrics::HttpMetrics;
use metrics::{RequestCounters, UNKNOWN_PARTNER};
use problem::{Problem, ProblemKind};
pub use route::Route;
use route::{Answer, Work};

/// On every answer to a partner whose certificate ends within
/// `server.partner_certificate_warning_days`: when it ends (RFC 3339).
pub const CERTIFICATE_EXPIRES: &str = "permitgate-certificate-expires";
/// A rate-limited partner's quota and what is left of it, on every answer.
pub const RATE_LIMIT_POLICY: &str = "ratelimit-policy";
pub const RATE_LIMIT: &str = "ratelimit";

/// Answers: JSON held in memory, or a replication object streamed from disk.
pub type Body = Either<Full<Bytes>, relay::ObjectBody>;

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_body_bytes: usize,
    pub max_batch_items: usize,
    /// Readiness fails once the held manifest has been expired this long; `None` keeps
    /// serving stale data as ready (answers still say `"stale": true`).
    pub unready_when_stale_for: Option<std::time::Duration>,
    /// A body not complete this long after the head was read gets 408 body-timeout.
    pub body_read_timeout: std::time::Duration,
    /// A partner whose certificate ends within this is told so on every answer.
    pub certificate_warning: time::Duration,
    pub admission: AdmissionLimits,
}

/// Keys for the signed objects: receipts this gateway signs, and the published keyring
/// (receipt, temporary-permit and snapshot keys) it verifies tokens with and serves.
pub struct Credentials {
    pub receipt_keys: SigningKeys,
    pub keyring: Keyring,
    pub temp_permit_skew: time::Duration,
    /// The partner CA, where this gateway renews partners' certificates.
    pub renewals: Option<crate::partner_ca::Renewals>,
}

/// Who is on the other end of a connection: the partner id its certificate claimed, read
/// once per connection and looked up in the current [`Directory`] per request.
#[derive(Debug, Clone, Default)]
pub struct Caller {
    claimed: Option<Arc<str>>,
    certificate: crate::tls::IssuedAs,
    /// notAfter of its certificate, Unix seconds.
    not_after: i64,
}

impl Caller {
    pub fn new(leaf: Option<crate::tls::Leaf>) -> Caller {
        match leaf {
            Some(l) => Caller {
                claimed: l.partner_id.map(Arc::from),
                certificate: l.issued_as,
                not_after: l.not_after,
            },
            None => Caller::default(),
        }
    }
}

pub struct App {
    store: Arc<Store>,
    clock: Arc<dyn Clock>,
    limits: Limits,
    partners: ArcSwap<Directory>,
    /// What partners share: request slots, relay places, connections after the handshake.
    pools: Pools,
    /// The part of the connections of certificates that name no configured partner.
    unknown_connections: Arc<crate::shares::Holder>,
    metrics: HttpMetrics,
    unknown_counters: Arc<RequestCounters>,
    relay: Option<relay::RelaySource>,
    admission: Admission,
    services: ArcSwap<Services>,
    /// Where heavy checks are answered (src/work.rs).
    work: crate::work::WorkQueue,
    audit: Option<crate::audit::AuditLog>,
    request_ids: request_id::Generator,
    /// Sheds while the async workers run behind (CPU-bound overload).
    lag: Option<Arc<crate::overload::LagMonitor>>,
}

/// What an [`App`] is made of; the composition root (src/server) fills it in.
pub struct Parts<'a> {
    pub store: Arc<Store>,
    pub hash_key: HashKey,
    pub clock: Arc<dyn Clock>,
    pub limits: Limits,
    pub partners: &'a [Partner],
    /// The certificates the CRLs in use revoke.
    pub revoked: HashSet<crate::tls::IssuedAs>,
    pub metrics: &'a HttpMetrics,
    /// The repository served to followers, when this gateway relays.
    pub relay: Option<relay::RelaySource>,
    pub credentials: Credentials,
    pub audit: Option<crate::audit::AuditLog>,
    /// Queue-delay shedding's measure, when `max_queue_delay_ms` is set.
    pub lag: Option<Arc<crate::overload::LagMonitor>>,
}

/// What a request is, decided once from its head ([`App::decide`]); [`App::handle`]
/// matches it once.
enum Decision<'a> {
    /// Liveness or readiness (`ready`): never shed, never audited.
    Probe { ready: bool },
    /// Refused from its head; its audit place, unless it is load shedding (no record).
    Refused {
        problem: Problem,
        audit: Option<crate::audit::Slot<'a>>,
    },
    /// Let in, its audit place reserved before any work (a receipt is never signed for
    /// an answer the audit trail has no room for).
    Admitted {
        work: Admitted<'a>,
        audit: Option<crate::audit::Slot<'a>>,
    },
}

/// What a request may go on to once it has been let in, with what it holds.
enum Admitted<'a> {
    /// A partner check: its partner and its slot; the body is read next.
    Check {
        entry: &'a Arc<PartnerEntry>,
        slot: Slot,
        handler: Handler,
        heavy: bool,
    },
    Keys,
    Revocations,
    Whoami(&'a Arc<PartnerEntry>),
    RelayManifest(Slot),
    RelayObject(Slot),
}

/// Load shedding: counted, never recorded in the audit trail.
fn is_shed(p: &Problem) -> bool {
    matches!(p.kind, ProblemKind::Overloaded | ProblemKind::RateLimited)
}

impl App {
    pub fn new(parts: Parts<'_>) -> std::io::Result<App> {
        let Parts {
            store,
            hash_key,
            clock,
            limits,
            partners,
            revoked,
            metrics,
            relay,
            credentials,
            audit,
            lag,
        } = parts;
        let work = crate::work::WorkQueue::start("permitgate-work", || {
            crate::priority::set_priority(crate::priority::NICE_10)
        })?;
        let admission = Admission::new(limits.admission, metrics.refused.clone());
        let (slots, relay_places) = admission.pools();
        let pools = Pools {
            slots: slots.clone(),
            relay: relay_places.clone(),
            connections: crate::shares::Pool::new(limits.admission.max_connections),
        };
        Ok(App {
            store,
            clock,
            limits,
            partners: ArcSwap::from_pointee(Directory::build(
                partners, revoked, metrics, &pools, None,
            )),
            unknown_connections: pools.connections.holder(1),
            pools,
            unknown_counters: Arc::new(metrics.request_counters(UNKNOWN_PARTNER)),
            relay,
            admission,
            work,
            services: ArcSwap::from_pointee(Services {
                keys_json: Bytes::from(credentials.keyring.to_json()),
                hash_key,
                receipt_keys: credentials.receipt_keys,
                keyring: credentials.keyring,
                temp_permit_skew: credentials.temp_permit_skew,
                max_batch_items: limits.max_batch_items,
                temp_permit_counters: metrics.temp_permit_verifications.clone(),
                receipts_signed: metrics.receipts_signed.clone(),
                renewals: credentials.renewals.map(Arc::new),
            }),
            metrics: metrics.clone(),
            audit,
            request_ids: request_id::Generator::default(),
            lag,
        })
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

    /// Puts new receipt signing keys and a new published keyring in use (a reload):
    /// receipts signed from now on are signed by the newest valid key, tokens are verified
    /// and `GET /v1/keys` answered with the new keyring.
    pub fn set_keys(
        &self,
        receipt_keys: SigningKeys,
        keyring: Keyring,
        temp_permit_skew: time::Duration,
    ) {
        let mut services = Services::clone(&self.services.load());
        services.keys_json = Bytes::from(keyring.to_json());
        services.receipt_keys = receipt_keys;
        services.keyring = keyring;
        services.temp_permit_skew = temp_permit_skew;
        self.services.store(Arc::new(services));
    }

    /// Replaces the partner table (a reload); requests already admitted finish under the
    /// table they started with.
    pub fn set_partners(&self, partners: &[Partner], revoked: HashSet<crate::tls::IssuedAs>) {
        let old = self.partners.load();
        self.partners.store(Arc::new(Directory::build(
            partners,
            revoked,
            &self.metrics,
            &self.pools,
            Some(&old),
        )));
    }

    /// The whole request path of one request. `queued`: how long it waited before it was
    /// read, where known.
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
        let body_deadline = tokio::time::Instant::from_std(start) + self.limits.body_read_timeout;
        let route = Route::of(req.uri().path());
        let version = req.version();
        let request_id = match req.headers().get(request_id::HEADER) {
            Some(v) if request_id::acceptable(v) => v.clone(),
            _ => self.request_ids.next(),
        };
        let directory = self.partners.load();
        let entry = caller.claimed.as_deref().and_then(|id| directory.get(id));
        let revoked = directory.is_revoked(&caller.certificate);
        let mut documents = crate::audit::Documents::new();
        let (answer, audit) = match self.decide(caller, entry, revoked, route, &req, queued) {
            Decision::Probe { ready } => (self.probe(ready), None),
            Decision::Refused { problem, audit } => {
                body::discard(req, body_deadline).await;
                (Err(problem), audit)
            }
            Decision::Admitted { work, audit } => {
                let answer = self
                    .answer(work, caller, req, body_deadline, &mut documents)
                    .await;
                // Shed after admission (a stopping gateway): no record, as at the door.
                let audit = audit.filter(|_| !matches!(&answer, Err(p) if is_shed(p)));
                (answer, audit)
            }
        };
        let (mut response, outcome, body_unread) = match answer {
            Ok(r) => (r, None, false),
            Err(p) => (problem_response(&p, route), Some(p.kind), p.body_unread),
        };
        if let Some(kind) = outcome {
            // Ids and labels only: request bodies (numbers) never reach the logs.
            let id = request_id.to_str().unwrap_or_default();
            let partner = caller.claimed.as_deref().unwrap_or("-");
            // tracing's levels are compile-time: one macro call per level, same fields.
            macro_rules! log {
                ($level:ident, $message:literal) => {
                    tracing::$level!(
                        request_id = id,
                        partner,
                        route = route.label(),
                        outcome = kind.slug(),
                        $message
                    )
                };
            }
            if kind == ProblemKind::Internal {
                log!(warn, "request failed");
            } else {
                log!(debug, "request refused");
            }
            // The body was not read to its end: the connection cannot carry another
            // request (HTTP/2 resets just the stream).
            if body_unread && version == http::Version::HTTP_11 {
                response
                    .headers_mut()
                    .insert(CONNECTION, HeaderValue::from_static("close"));
            }
        }
        let counters = entry.map_or(&self.unknown_counters, |e| &e.counters);
        let outcome_index = outcome.map_or(0, |k| k.index() + 1);
        if let Some(c) = counters.get(route.index(), outcome_index) {
            c.inc();
        }
        if let Some(slot) = audit {
            let recorded = slot.record(crate::audit::Answered {
                time_ns: self.clock.now().unix_timestamp_nanos(),
                request_id: request_id.clone(),
                partner: caller.claimed.clone(),
                route: route.label(),
                outcome: outcome.map_or("ok", ProblemKind::slug),
                documents,
            });
            // The answer leaves only once its record is written (src/audit/mod.rs).
            if !recorded.written().await {
                response = problem_response(
                    &Problem::new(
                        ProblemKind::Overloaded,
                        "the audit trail is closed (the gateway is stopping); try another gateway",
                    ),
                    route,
                );
            }
        }
        response
            .headers_mut()
            .insert(HeaderName::from_static(request_id::HEADER), request_id);
        if let Some(expires) = entry.and_then(|_| self.certificate_ends_soon(caller)) {
            response
                .headers_mut()
                .insert(HeaderName::from_static(CERTIFICATE_EXPIRES), expires);
        }
        if let Some(bucket) = entry.and_then(|e| e.bucket.as_deref()) {
            self.rate_limit_headers(bucket, response.headers_mut());
        }
        if let Some(h) = self.metrics.durations.get(route.index()) {
            h.observe(start.elapsed().as_secs_f64());
        }
        response
    }

    /// The partner's rate limit and what is left of it, as RateLimit-Policy and RateLimit
    /// (draft-ietf-httpapi-ratelimit-headers): a client paces itself before a 429.
    fn rate_limit_headers(&self, bucket: &crate::rate_limit::TokenBucket, h: &mut http::HeaderMap) {
        let now = u64::try_from(self.clock.now().unix_timestamp_nanos()).unwrap_or(0);
        let (quota, window) = bucket.policy();
        let (left, full_in) = bucket.state(now);
        let value = |text: String| HeaderValue::try_from(text).ok();
        if let Some(v) = value(format!("\"partner\";q={quota};w={window}")) {
            h.insert(HeaderName::from_static(RATE_LIMIT_POLICY), v);
        }
        if let Some(v) = value(format!("\"partner\";r={left};t={full_in}")) {
            h.insert(HeaderName::from_static(RATE_LIMIT), v);
        }
    }

    /// When the caller's certificate ends, if that is within the warning window.
    fn certificate_ends_soon(&self, caller: &Caller) -> Option<HeaderValue> {
        let warning = self.limits.certificate_warning;
        let now = self.clock.now().unix_timestamp();
        if warning.is_zero() || caller.not_after - now > warning.whole_seconds() {
            return None;
        }
        let at = time::OffsetDateTime::from_unix_timestamp(caller.not_after).ok()?;
        let text = at
            .format(&time::format_description::well_known::Rfc3339)
            .ok()?;
        HeaderValue::from_str(&text).ok()
    }

    /// `GET /v1/partner`.
    fn partner_answer(&self, entry: &PartnerEntry, caller: &Caller) -> Response<Body> {
        let p = &entry.partner;
        let expires_at = time::OffsetDateTime::from_unix_timestamp(caller.not_after)
            .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
        let answer = api::PartnerAnswer {
            id: &p.id,
            scopes: p.scopes.iter().collect(),
            rate_limit: p.rate_limit.map(|r| api::RateLimitAnswer {
                per_second: r.per_second,
                burst: r.burst,
            }),
            certificate: api::HeldCertificate {
                serial: crate::tls::serial_text(&caller.certificate.1),
                expires_at,
                days_left: (expires_at - self.clock.now()).whole_days(),
            },
        };
        match serde_json::to_vec(&answer) {
            Ok(body) => json_response(StatusCode::OK, body),
            Err(_) => problem_response(
                &Problem::new(ProblemKind::Internal, "the answer could not be encoded"),
                Route::Partner,
            ),
        }
    }

    fn probe(&self, ready: bool) -> Result<Response<Body>, Problem> {
        if ready {
            return self.readyz();
        }
        Ok(json_response(
            StatusCode::OK,
            br#"{"status":"alive"}"#.to_vec(),
        ))
    }

    /// A partner request after admission: refused (its body discarded, so that the
    /// refusal reaches the client intact), or answered; a check's body is read within
    /// the deadline and handed to the route's function.
    async fn answer<B>(
        &self,
        admitted: Admitted<'_>,
        caller: &Caller,
        req: Request<B>,
        body_deadline: tokio::time::Instant,
        documents: &mut crate::audit::Documents,
    ) -> Result<Response<Body>, Problem>
    where
        B: hyper::body::Body<Data = Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        match admitted {
            Admitted::Keys => Ok(json_response(
                StatusCode::OK,
                self.services.load().keys_json.clone(),
            )),
            Admitted::Revocations => revocations::answer(self.store.revocations(), &req),
            Admitted::Whoami(entry) => Ok(self.partner_answer(entry, caller)),
            Admitted::RelayManifest(place) => {
                relay::manifest(self.relay.as_ref(), &req, place).await
            }
            Admitted::RelayObject(place) => {
                relay::object(self.relay.as_ref(), req.uri().path(), place).await
            }
            Admitted::Check {
                entry,
                slot,
                handler,
                heavy,
            } => {
                let partner = &entry.partner;
                let read = body::read(req, self.limits.max_body_bytes, body_deadline);
                let mut read = std::pin::pin!(read);
                // Most bodies are there with their head. One still arriving waits on its
                // client: its slot may then be taken back for a partner below its share.
                let first = std::future::poll_fn(|cx| {
                    std::task::Poll::Ready(std::future::Future::poll(read.as_mut(), cx))
                })
                .await;
                let read = match first {
                    std::task::Poll::Ready(r) => r,
                    std::task::Poll::Pending => {
                        let waiting = slot.preemptible();
                        tokio::select! {
                            r = read.as_mut() => r,
                            _ = waiting.taken_back() => {
                                return Err(self.admission.preempted(&partner.id));
                            }
                        }
                    }
                };
                let body = read.map_err(|e| {
                    if matches!(e, body::BodyError::TimedOut) {
                        self.admission.count(Refusal::BodyTimeout);
                    }
                    e.problem(self.limits.body_read_timeout)
                })?;
                let checked = if heavy {
                    self.check_on_the_work_thread(handler, partner, body)
                        .await?
                } else {
                    let guard = self.store.current();
                    let state = guard.as_ref().ok_or_else(not_ready)?;
                    check(
                        &self.services.load(),
                        state,
                        partner,
                        self.clock.now(),
                        handler,
                        &body,
                    )
                };
                drop(slot);
                *documents = checked.documents;
                // Charged now that it is known; a bucket may run into debt, which the
                // partner's next requests pay.
                if let Some(bucket) = &entry.bucket {
                    let now = u64::try_from(self.clock.now().unix_timestamp_nanos()).unwrap_or(0);
                    bucket.charge(checked.cost.saturating_sub(1), now);
                }
                Ok(json_response(StatusCode::OK, checked.answer?))
            }
        }
    }

    /// A heavy check (a batch), answered on the work thread in its partner's fair turn
    /// (src/work.rs) from the state served when it was read.
    async fn check_on_the_work_thread(
        &self,
        handler: Handler,
        partner: &Partner,
        body: Bytes,
    ) -> Result<Checked, Problem> {
        let state = self
            .store
            .current()
            .as_ref()
            .cloned()
            .ok_or_else(not_ready)?;
        let (services, partner_owned, now) =
            (self.services.load_full(), partner.clone(), self.clock.now());
        // The cost is known once the body is parsed there; its length says roughly.
        let estimate = 1 + body.len() as u64 / 64;
        let id: Arc<str> = Arc::from(partner.id.as_str());
        self.work
            .run(&id, partner.weight, estimate, move || {
                check(&services, &state, &partner_owned, now, handler, &body)
            })
            .await
            .ok_or_else(|| Problem::new(ProblemKind::Overloaded, "the gateway is stopping"))
    }

    /// Everything decided from the head alone, in order: the Host header, route and
    /// method (probes go no further), then for a partner's request its admission
    /// ([`App::admit`]) and its place in the audit trail, reserved before any work: when
    /// the trail is behind, the request is refused (503) before anything is computed.
    fn decide<'a, B>(
        &'a self,
        caller: &Caller,
        entry: Option<&'a Arc<PartnerEntry>>,
        revoked: bool,
        route: Route,
        req: &Request<B>,
        queued: Option<std::time::Duration>,
    ) -> Decision<'a> {
        let spec = route.spec();
        let head = admission::host_header_ok(req).and_then(|()| {
            if req.method() == spec.method || matches!(spec.answer, Answer::None) {
                Ok(())
            } else {
                Err(method_not_allowed(spec.method))
            }
        });
        let admitted = match (head, spec.answer) {
            (Err(problem), Answer::Alive | Answer::Ready) => {
                return Decision::Refused {
                    problem,
                    audit: None,
                }
            }
            (Ok(()), Answer::Alive) => return Decision::Probe { ready: false },
            (Ok(()), Answer::Ready) => return Decision::Probe { ready: true },
            (Err(problem), _) => Err(problem),
            (Ok(()), Answer::None) => Err(Problem::new(
                ProblemKind::NotFound,
                "see README.md for the API",
            )),
            (Ok(()), Answer::Partner(work)) => {
                self.admit(caller, entry, revoked, spec.scope, work, req, queued)
            }
        };
        let audit = match &admitted {
            Err(p) if is_shed(p) => Ok(None),
            _ => self.audit_place(),
        };
        match (admitted, audit) {
            (Ok(work), Ok(audit)) => Decision::Admitted { work, audit },
            (Err(problem), Ok(audit)) => Decision::Refused { problem, audit },
            // What was admitted is let go (its slot released) untouched.
            (_, Err(problem)) => Decision::Refused {
                problem,
                audit: None,
            },
        }
    }

    /// A place in the audit trail's queue for this request's record (none without a
    /// trail), or 503 when the trail is behind.
    fn audit_place(&self) -> Result<Option<crate::audit::Slot<'_>>, Problem> {
        let Some(log) = &self.audit else {
            return Ok(None);
        };
        log.reserve().map(Some).map_err(|_| {
            self.admission.refuse(
                Refusal::AuditBacklog,
                "the audit log is behind; try again shortly".to_owned(),
            )
        })
    }

    /// A partner's request, from its head, in order: certificate, partner, scope, then
    /// (cheapest refusals first) content type, the partner's rate, how long it waited in
    /// its socket or the run queue (src/overload.rs), readiness, and a slot within the
    /// partner's share (src/http/admission.rs). Replication requests take a place on the
    /// relay budget instead of a slot.
    #[allow(clippy::too_many_arguments)]
    fn admit<'a, B>(
        &'a self,
        caller: &Caller,
        entry: Option<&'a Arc<PartnerEntry>>,
        revoked: bool,
        scope: Option<Scope>,
        work: Work,
        req: &Request<B>,
        queued: Option<std::time::Duration>,
    ) -> Result<Admitted<'a>, Problem> {
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
        if let Some(scope) = scope {
            if !partner.scopes.contains(scope) {
                return Err(Problem::new(
                    ProblemKind::ScopeMissing,
                    format!("partner {} lacks scope {}", partner.id, scope.as_str()),
                ));
            }
        }
        if req.method() == Method::POST {
            admission::check_content_type(req)?;
        }
        self.within_rate(entry)?;
        let relay_place = || self.admission.relay_place(&entry.relay, &partner.id);
        let (handler, heavy) = match work {
            Work::RelayManifest => return relay_place().map(Admitted::RelayManifest),
            Work::RelayObject => return relay_place().map(Admitted::RelayObject),
            Work::Keys => return Ok(Admitted::Keys),
            Work::Revocations => return Ok(Admitted::Revocations),
            Work::Whoami => return Ok(Admitted::Whoami(entry)),
            Work::Check { handler, heavy } => (handler, heavy),
        };
        // How long this request (its socket) or any request (the run queue) has waited.
        let lag = self.lag.as_ref().map(|m| m.lag());
        self.admission
            .check_queue_delay(queued.into_iter().chain(lag).max())?;
        if !self.store.is_ready() {
            return Err(not_ready());
        }
        let slot = self.admission.slot(&entry.slots, &partner.id)?;
        Ok(Admitted::Check {
            entry,
            slot,
            handler,
            heavy,
        })
    }

    /// Takes a token from the partner's bucket, if it has a limit.
    fn within_rate(&self, entry: &PartnerEntry) -> Result<(), Problem> {
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

    /// Whether this gateway serves its repository to followers (`/v1/replication/`).
    pub fn relays(&self) -> bool {
        self.relay.is_some()
    }

    /// A connection whose handshake named `caller`: its partner's part of the connections
    /// partners share (certificates naming no configured partner share one part), or why
    /// not.
    pub fn connection_unit(
        &self,
        caller: &Caller,
    ) -> Result<crate::shares::Unit, crate::shares::Refused> {
        let directory = self.partners.load();
        let entry = caller.claimed.as_deref().and_then(|id| directory.get(id));
        if let Some(e) = entry {
            e.seen.0.set(caller.not_after);
            e.seen.1.set(self.clock.now().unix_timestamp());
        }
        let holder = entry.map_or(&self.unknown_connections, |e| &e.connections);
        self.pools.connections.acquire(holder)
    }

    /// Whether this gateway relays and `caller` is a partner that may only replicate (a
    /// following gateway): such connections are served beside the request workers, at
    /// their own priority. Decided once per connection; each request is still authorised
    /// against the directory of its time.
    pub fn replicates_only(&self, caller: &Caller) -> bool {
        self.relays()
            && caller.claimed.as_deref().is_some_and(|id| {
                self.partners
                    .load()
                    .get(id)
                    .is_some_and(|e| e.partner.scopes.is_only(Scope::Replicate))
            })
    }

    /// Whether an HTTP/1.1 request's wait in its socket is worth reading (a getsockopt):
    /// only where `max_queue_delay_ms` is on and the workers may be running behind it.
    pub fn socket_wait_worth_reading(&self) -> bool {
        match (&self.lag, self.admission.max_queue_delay()) {
            (Some(monitor), Some(limit)) => monitor.may_lag(limit),
            _ => false,
        }
    }

    /// Sets the admission gauges to what the pools hold now (at each scrape: the request
    /// path counts nothing for them).
    pub fn observe_admission(&self) {
        let (slots, relay) = self.admission.pools();
        let count = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        self.metrics.slots_in_use.set(count(slots.in_use()));
        self.metrics.relay_places_in_use.set(count(relay.in_use()));
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

/// A check answered: the answer, the keyed hashes it looked at, what it cost.
struct Checked {
    answer: Result<Vec<u8>, Problem>,
    documents: crate::audit::Documents,
    cost: u64,
}

/// Answers a partner check whose body has been read, from `state`: the context every route
/// answers from, then the route's own function. On a request worker, or on the work
/// thread for heavy checks.
fn check(
    services: &Services,
    state: &crate::store::State,
    partner: &Partner,
    now: time::OffsetDateTime,
    handler: Handler,
    body: &[u8],
) -> Checked {
    let view = state.view();
    let stamp = rfc3339(now);
    let mut documents = crate::audit::Documents::new();
    let mut cx = Context {
        services,
        partner,
        now,
        checked_at: stamp.as_str(),
        snapshot: SnapshotRef {
            version: view.info().version,
            published_at: &view.info().published_at_text,
            stale: now > view.info().expires_at,
        },
        view: &view,
        audit: &mut documents,
        cost: 1,
    };
    let answer = handler(&mut cx, body);
    let cost = cx.cost;
    Checked {
        answer,
        documents,
        cost,
    }
}

fn not_ready() -> Problem {
    Problem::new(ProblemKind::NotReady, "the first snapshot is still loading")
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
        let allow = if route.spec().method == Method::GET {
            "GET"
        } else {
            "POST"
        };
        h.insert(ALLOW, HeaderValue::from_static(allow));
    }
    if let Some(secs) = p.retry_after {
        h.insert(RETRY_AFTER, HeaderValue::from(secs));
    }
    r
}
