//! The request path's metrics: requests by partner, route and outcome; time per route;
//! refusals by reason; temporary-permit verifications by status; receipts signed. All
//! handles are resolved here or when a partner is added, never per request.

use std::sync::{Arc, OnceLock};

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry,
};
use strum::VariantArray;

use super::admission::Refusal;
use super::problem::ProblemKind;
use super::route::Route;
use crate::metrics::register;
use crate::temp_permit::TokenStatus;

/// Label value for requests whose partner is not (or not yet) known.
pub const UNKNOWN_PARTNER: &str = "unknown";

#[derive(Clone)]
pub struct HttpMetrics {
    requests: IntCounterVec,
    labels: Arc<RequestLabels>,
    /// Indexed by [`Route::index`].
    pub durations: Vec<Histogram>,
    /// Indexed by [`Refusal`], all created at 0.
    pub refused: Vec<IntCounter>,
    /// Indexed by [`TokenStatus`].
    pub temp_permit_verifications: Vec<IntCounter>,
    pub receipts_signed: IntCounter,
    certificate_expiry: IntGaugeVec,
    last_seen: IntGaugeVec,
    /// Request slots and replication places held, read from admission at each scrape.
    pub slots_in_use: IntGauge,
    pub relay_places_in_use: IntGauge,
}

/// The label values of `permitgate_requests_total`'s route and outcome dimensions, in
/// the order their indices refer to: every route, and `ok` then one per problem kind
/// (indexed by `ProblemKind::index() + 1`).
struct RequestLabels {
    routes: Vec<&'static str>,
    outcomes: Vec<String>,
}

/// `permitgate_requests_total` handles for one partner, indexed `[route][outcome]`. A
/// series is created on its first use (labels formatted once, then one atomic load per
/// request), so a partner has only the series it has used.
pub struct RequestCounters {
    family: IntCounterVec,
    partner: String,
    labels: Arc<RequestLabels>,
    counters: Vec<OnceLock<IntCounter>>,
}

impl RequestCounters {
    #[inline]
    pub fn get(&self, route: usize, outcome: usize) -> Option<&IntCounter> {
        let width = self.labels.outcomes.len();
        if outcome >= width {
            return None;
        }
        let cell = self.counters.get(route.checked_mul(width)? + outcome)?;
        Some(cell.get_or_init(|| {
            let route = self.labels.routes.get(route).copied().unwrap_or_default();
            let outcome = self.labels.outcomes[outcome].as_str();
            self.family
                .with_label_values(&[self.partner.as_str(), route, outcome])
        }))
    }
}

impl HttpMetrics {
    pub fn register(registry: &Registry) -> HttpMetrics {
        let requests = register(
            registry,
            IntCounterVec::new(
                Opts::new(
                    "permitgate_requests_total",
                    "Requests answered, by partner, route and outcome.",
                ),
                &["partner", "route", "outcome"],
            ),
        );
        let durations = register(
            registry,
            HistogramVec::new(
                HistogramOpts::new(
                    "permitgate_request_duration_seconds",
                    "Time from request head to response head, by route.",
                )
                .buckets(vec![
                    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05,
                    0.1, 0.25, 1.0,
                ]),
                &["route"],
            ),
        );
        let refused = register(
            registry,
            IntCounterVec::new(
                Opts::new(
                    "permitgate_refused_total",
                    "Partner requests refused before any work was done for them, by reason (rate_limited, partner_share, concurrency, queue_delay, audit_backlog, relay_waiters, body_timeout).",
                ),
                &["reason"],
            ),
        );
        let temp_permits = register(
            registry,
            IntCounterVec::new(
                Opts::new(
                    "permitgate_temp_permit_verifications_total",
                    "Temporary permits verified online, by status.",
                ),
                &["status"],
            ),
        );
        let receipts_signed = register(
            registry,
            IntCounter::new(
                "permitgate_receipts_signed_total",
                "Verification receipts signed.",
            ),
        );
        let certificate_expiry = register(
            registry,
            IntGaugeVec::new(
                Opts::new(
                    "permitgate_partner_certificate_expiry_timestamp_seconds",
                    "notAfter of the client certificate each partner last connected with (0: \
                     none seen since start).",
                ),
                &["partner"],
            ),
        );
        let last_seen = register(
            registry,
            IntGaugeVec::new(
                Opts::new(
                    "permitgate_partner_last_seen_timestamp_seconds",
                    "When each partner last completed a handshake (0: not since start).",
                ),
                &["partner"],
            ),
        );
        let in_use = register(
            registry,
            IntGaugeVec::new(
                Opts::new(
                    "permitgate_admission_in_use",
                    "What admission holds now, by pool: request slots (of \
                     max_concurrent_requests) and replication places (of max_relay_waiters).",
                ),
                &["pool"],
            ),
        );
        HttpMetrics {
            slots_in_use: in_use.with_label_values(&["request_slots"]),
            relay_places_in_use: in_use.with_label_values(&["relay_places"]),
            requests,
            certificate_expiry,
            last_seen,
            labels: Arc::new(RequestLabels {
                routes: Route::VARIANTS.iter().map(|r| r.label()).collect(),
                outcomes: std::iter::once("ok".to_owned())
                    .chain(ProblemKind::VARIANTS.iter().map(|k| k.label()))
                    .collect(),
            }),
            durations: Route::VARIANTS
                .iter()
                .map(|r| durations.with_label_values(&[r.label()]))
                .collect(),
            refused: Refusal::VARIANTS
                .iter()
                .map(|r| refused.with_label_values(&[r.label()]))
                .collect(),
            temp_permit_verifications: TokenStatus::VARIANTS
                .iter()
                .map(|s| temp_permits.with_label_values(&[s.label()]))
                .collect(),
            receipts_signed,
        }
    }

    /// A partner's certificate expiry and last-seen gauges.
    pub fn certificate_gauges(&self, partner: &str) -> (IntGauge, IntGauge) {
        (
            self.certificate_expiry.with_label_values(&[partner]),
            self.last_seen.with_label_values(&[partner]),
        )
    }

    /// One partner's `(route, outcome)` counters, each created on first use.
    pub fn request_counters(&self, partner: &str) -> RequestCounters {
        let cells = self.labels.routes.len() * self.labels.outcomes.len();
        RequestCounters {
            family: self.requests.clone(),
            partner: partner.to_owned(),
            labels: self.labels.clone(),
            counters: (0..cells).map(|_| OnceLock::new()).collect(),
        }
    }
}
