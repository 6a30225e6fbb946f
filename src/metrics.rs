//! Prometheus metrics, registered once at start in a registry of their own.
//!
//! Request paths never format label values: they index tables of handles resolved when the
//! partner table is built ([`RequestCounters`]) or at start ([`Metrics::route_duration`]).
//! Partner ids are the only label values that come from configuration; none come from
//! requests, so label cardinality is bounded by the config.

use prometheus::{
    Encoder, Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec,
    IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::audit::AuditMetrics;
use crate::store::{CacheCounters, State, StateInfo};

/// Label value for requests whose partner is not (or not yet) known.
pub const UNKNOWN_PARTNER: &str = "unknown";

pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    duration: HistogramVec,
    handshake_failures: IntCounterVec,
    cache_lookups: IntCounterVec,
    snapshot_version: IntGauge,
    snapshot_documents: IntGauge,
    snapshot_published: Gauge,
    temp_permit_verifications: IntCounterVec,
    receipts_signed: IntCounter,
    connections_open: IntGauge,
    connections_rejected: IntCounter,
    certificate_expiry: GaugeVec,
    reloads: IntCounterVec,
    scheduling_lag: Gauge,
    refused: IntCounterVec,
    pub audit: AuditMetrics,
    pub replication: ReplicationMetrics,
}

/// Replication handles; labels are fixed sets known here.
#[derive(Clone)]
pub struct ReplicationMetrics {
    polls: IntCounterVec,
    failures: IntCounterVec,
    pub last_success: Gauge,
    pub snapshot_age: Gauge,
    pub stale: IntGauge,
    pub overlay_entries: IntGauge,
    pub delta_apply: Histogram,
}

impl ReplicationMetrics {
    pub fn poll(&self, result: &str) {
        self.polls.with_label_values(&[result]).inc();
    }

    pub fn failure(&self, reason: &str) {
        self.failures.with_label_values(&[reason]).inc();
    }

    /// Creates the failure series of `reasons` at 0 (the follower's reasons, named by the
    /// follower), so that rate() and alerts see them before the first failure.
    pub fn init_failures<'a>(&self, reasons: impl IntoIterator<Item = &'a str>) {
        for r in reasons {
            self.failures.with_label_values(&[r]);
        }
    }
}

/// The label values of `permitgate_requests_total`'s route and outcome dimensions, in
/// the order their indices refer to.
pub struct RequestLabels {
    pub routes: Vec<&'static str>,
    pub outcomes: Vec<String>,
}

/// `permitgate_requests_total` handles for one partner, indexed `[route][outcome]`. A
/// series is created on its first use (labels formatted once, then one atomic load per
/// request), so a partner has only the series it has used.
pub struct RequestCounters {
    family: IntCounterVec,
    partner: String,
    labels: std::sync::Arc<RequestLabels>,
    counters: Vec<std::sync::OnceLock<IntCounter>>,
}

impl RequestCounters {
    #[inline]
    pub fn get(&self, route: usize, outcome: usize) -> Option<&IntCounter> {
        let width = self.labels.outcomes.len();
        if outcome >= width {
            return None;
        }
        let cell = self.counters.get(route * width + outcome)?;
        Some(cell.get_or_init(|| {
            let route = self.labels.routes.get(route).copied().unwrap_or_default();
            let outcome = self.labels.outcomes[outcome].as_str();
            self.family
                .with_label_values(&[self.partner.as_str(), route, outcome])
        }))
    }
}

fn must<T>(r: prometheus::Result<T>) -> T {
    // Metric definitions are constants of this file; a failure is a programming error that
    // the unit test below catches.
    r.unwrap_or_else(|e| panic!("metric definition: {e}"))
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let requests = must(IntCounterVec::new(
            Opts::new(
                "permitgate_requests_total",
                "Requests answered, by partner, route and outcome.",
            ),
            &["partner", "route", "outcome"],
        ));
        let duration = must(HistogramVec::new(
            HistogramOpts::new(
                "permitgate_request_duration_seconds",
                "Time from request head to response head, by route.",
            )
            .buckets(vec![
                0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05,
                0.1, 0.25, 1.0,
            ]),
            &["route"],
        ));
        let refused = must(IntCounterVec::new(
            Opts::new(
                "permitgate_refused_total",
                "Partner requests refused before any work was done for them, by reason (rate_limited, partner_share, concurrency, queue_delay, audit_backlog, relay_waiters, body_timeout).",
            ),
            &["reason"],
        ));
        let handshake_failures = must(IntCounterVec::new(
            Opts::new(
                "permitgate_tls_handshake_failures_total",
                "TLS handshakes that failed, by reason.",
            ),
            &["reason"],
        ));
        let cache_lookups = must(IntCounterVec::new(
            Opts::new(
                "permitgate_cache_lookups_total",
                "Lookups through the record cache.",
            ),
            &["result"],
        ));
        let snapshot_version = must(IntGauge::new(
            "permitgate_snapshot_version",
            "Version of the snapshot being served (0 before the first).",
        ));
        let snapshot_documents = must(IntGauge::new(
            "permitgate_snapshot_documents",
            "Documents in the snapshot being served.",
        ));
        let snapshot_published = must(Gauge::new(
            "permitgate_snapshot_published_timestamp_seconds",
            "Publication time of the snapshot being served.",
        ));
        let build_info = must(IntGaugeVec::new(
            Opts::new("permitgate_build_info", "Build of the running gateway."),
            &["version"],
        ));
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        let temp_permit_verifications = must(IntCounterVec::new(
            Opts::new(
                "permitgate_temp_permit_verifications_total",
                "Temporary permits verified online, by status.",
            ),
            &["status"],
        ));
        let receipts_signed = must(IntCounter::new(
            "permitgate_receipts_signed_total",
            "Verification receipts signed.",
        ));
        must(registry.register(Box::new(temp_permit_verifications.clone())));
        must(registry.register(Box::new(receipts_signed.clone())));
        let connections_open = must(IntGauge::new(
            "permitgate_connections_open",
            "Partner connections open now.",
        ));
        let connections_rejected = must(IntCounter::new(
            "permitgate_connections_rejected_total",
            "Partner connections closed on arrival because max_connections were open.",
        ));
        let certificate_expiry = must(GaugeVec::new(
            Opts::new(
                "permitgate_certificate_expiry_timestamp_seconds",
                "notAfter of the certificates in use (server: the leaf; client_ca: the partner CA).",
            ),
            &["certificate"],
        ));
        let reloads = must(IntCounterVec::new(
            Opts::new(
                "permitgate_reloads_total",
                "Reloads of certificates, CRLs and the partner table (SIGHUP or a changed file), by result; a failed one keeps what was in use.",
            ),
            &["result"],
        ));
        for r in ["ok", "failed"] {
            reloads.with_label_values(&[r]);
        }
        must(registry.register(Box::new(reloads.clone())));
        let scheduling_lag = must(Gauge::new(
            "permitgate_scheduling_lag_seconds",
            "How late a 5 ms timer last woke: the queue delay on the async workers; over server.max_queue_delay_ms, requests are shed.",
        ));
        must(registry.register(Box::new(scheduling_lag.clone())));
        let audit = AuditMetrics {
            written: must(IntCounter::new(
                "permitgate_audit_records_total",
                "Audit records written to the log (before fsync).",
            )),
            dropped: must(IntCounter::new(
                "permitgate_audit_records_dropped_total",
                "Audit records not written: queue full under when_full = \"drop\", or shutting down.",
            )),
            write_errors: must(IntCounter::new(
                "permitgate_audit_write_errors_total",
                "Failed audit writes or fsyncs (writes are retried; requests are shed meanwhile).",
            )),
            queue_depth: must(IntGauge::new(
                "permitgate_audit_queue_depth",
                "Audit records reserved or queued and not yet written.",
            )),
        };
        must(registry.register(Box::new(audit.written.clone())));
        must(registry.register(Box::new(audit.dropped.clone())));
        must(registry.register(Box::new(audit.write_errors.clone())));
        must(registry.register(Box::new(audit.queue_depth.clone())));
        must(registry.register(Box::new(connections_open.clone())));
        must(registry.register(Box::new(connections_rejected.clone())));
        must(registry.register(Box::new(certificate_expiry.clone())));
        for c in [&requests, &handshake_failures, &cache_lookups, &refused] {
            must(registry.register(Box::new(c.clone())));
        }
        must(registry.register(Box::new(duration.clone())));
        must(registry.register(Box::new(snapshot_version.clone())));
        must(registry.register(Box::new(snapshot_documents.clone())));
        must(registry.register(Box::new(snapshot_published.clone())));
        must(registry.register(Box::new(build_info)));
        for r in ["hit", "miss"] {
            cache_lookups.with_label_values(&[r]);
        }
        let replication = ReplicationMetrics {
            polls: must(IntCounterVec::new(
                Opts::new(
                    "permitgate_replication_polls_total",
                    "Polls of the replication source, by result.",
                ),
                &["result"],
            )),
            failures: must(IntCounterVec::new(
                Opts::new(
                    "permitgate_replication_failures_total",
                    "Refused or failed replication attempts, by reason.",
                ),
                &["reason"],
            )),
            last_success: must(Gauge::new(
                "permitgate_replication_last_success_timestamp_seconds",
                "When the source last answered with something usable (or nothing new).",
            )),
            snapshot_age: must(Gauge::new(
                "permitgate_snapshot_age_seconds",
                "Seconds since the data being served was published.",
            )),
            stale: must(IntGauge::new(
                "permitgate_snapshot_stale",
                "1 when the held manifest has expired (freeze attack or dead origin).",
            )),
            overlay_entries: must(IntGauge::new(
                "permitgate_overlay_entries",
                "Documents changed by deltas over the base snapshot.",
            )),
            delta_apply: must(Histogram::with_opts(
                HistogramOpts::new(
                    "permitgate_delta_apply_duration_seconds",
                    "Time to verify and apply one delta.",
                )
                .buckets(vec![
                    0.000_1, 0.000_5, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0,
                ]),
            )),
        };
        // Every series from the start (at 0), so that rate() and alerts see them before
        // the first poll or failure. The values are the follower's (README, Metrics).
        for r in ["not_modified", "applied", "swapped", "refused"] {
            replication.polls.with_label_values(&[r]);
        }
        must(registry.register(Box::new(replication.polls.clone())));
        must(registry.register(Box::new(replication.failures.clone())));
        must(registry.register(Box::new(replication.last_success.clone())));
        must(registry.register(Box::new(replication.snapshot_age.clone())));
        must(registry.register(Box::new(replication.stale.clone())));
        must(registry.register(Box::new(replication.overlay_entries.clone())));
        must(registry.register(Box::new(replication.delta_apply.clone())));
        Metrics {
            registry,
            requests,
            duration,
            handshake_failures,
            cache_lookups,
            snapshot_version,
            snapshot_documents,
            snapshot_published,
            temp_permit_verifications,
            receipts_signed,
            connections_open,
            connections_rejected,
            certificate_expiry,
            reloads,
            scheduling_lag,
            refused,
            audit,
            replication,
        }
    }

    /// One partner's `(route, outcome)` counters, each created on first use.
    pub fn request_counters(
        &self,
        partner: &str,
        labels: std::sync::Arc<RequestLabels>,
    ) -> RequestCounters {
        let cells = labels.routes.len() * labels.outcomes.len();
        RequestCounters {
            family: self.requests.clone(),
            partner: partner.to_owned(),
            labels,
            counters: (0..cells).map(|_| std::sync::OnceLock::new()).collect(),
        }
    }

    pub fn route_duration(&self, route: &str) -> Histogram {
        self.duration.with_label_values(&[route])
    }

    /// One counter per temporary-permit status, in the order of `statuses`.
    pub fn temp_permit_counters(&self, statuses: &[&str]) -> Vec<IntCounter> {
        statuses
            .iter()
            .map(|s| self.temp_permit_verifications.with_label_values(&[s]))
            .collect()
    }

    /// One `permitgate_refused_total` counter per reason, in the order given (all
    /// created at 0).
    pub fn refusals(&self, reasons: &[&str]) -> Vec<IntCounter> {
        reasons
            .iter()
            .map(|r| self.refused.with_label_values(&[r]))
            .collect()
    }

    pub fn receipts_signed(&self) -> IntCounter {
        self.receipts_signed.clone()
    }

    pub fn connections_open(&self) -> IntGauge {
        self.connections_open.clone()
    }

    pub fn connections_rejected(&self) -> IntCounter {
        self.connections_rejected.clone()
    }

    /// Records when a certificate in use expires (`certificate`: `server`, `client_ca`).
    pub fn certificate_expires(&self, certificate: &str, not_after_unix: i64) {
        self.certificate_expiry
            .with_label_values(&[certificate])
            .set(not_after_unix as f64);
    }

    pub fn scheduling_lag(&self) -> Gauge {
        self.scheduling_lag.clone()
    }

    pub fn reloaded(&self, ok: bool) {
        self.reloads
            .with_label_values(&[if ok { "ok" } else { "failed" }])
            .inc();
    }

    pub fn handshake_failure(&self, reason: &str) -> IntCounter {
        self.handshake_failures.with_label_values(&[reason])
    }

    pub fn cache_counters(&self) -> CacheCounters {
        CacheCounters {
            hit: self.cache_lookups.with_label_values(&["hit"]),
            miss: self.cache_lookups.with_label_values(&["miss"]),
        }
    }

    /// What the store serves now: version, documents, publication time and overlay size
    /// (age and staleness are set at every scrape: [`Metrics::served_as_of`]).
    pub fn snapshot_installed(&self, state: &State) {
        let view = state.view();
        let info = view.info();
        self.snapshot_version
            .set(i64::try_from(info.version).unwrap_or(i64::MAX));
        self.snapshot_documents
            .set(i64::try_from(state.snapshot().len()).unwrap_or(i64::MAX));
        self.snapshot_published
            .set(info.published_at.unix_timestamp() as f64);
        self.replication
            .overlay_entries
            .set(i64::try_from(state.overlay_len()).unwrap_or(i64::MAX));
    }

    /// Age and staleness of the data served, as of `now` (set at every scrape, so the age
    /// moves whether or not anything is followed).
    pub fn served_as_of(&self, now: time::OffsetDateTime, info: &StateInfo) {
        let m = &self.replication;
        m.snapshot_age
            .set((now - info.published_at).as_seconds_f64().max(0.0));
        m.stale.set(i64::from(now > info.expires_at));
    }

    /// Prometheus text exposition of everything registered.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 * 1024);
        // Encoding into a Vec cannot fail for I/O reasons; a malformed family would be a
        // bug caught by the test below.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_are_exported_with_conventional_names() {
        let m = Metrics::new();
        let labels = std::sync::Arc::new(RequestLabels {
            routes: vec!["link_check", "keys"],
            outcomes: vec!["ok".to_owned(), "not_found".to_owned()],
        });
        let c = m.request_counters("bank", labels);
        c.get(0, 0).expect("handle").inc();
        assert!(
            c.get(0, 2).is_none() && c.get(2, 0).is_none(),
            "out of range"
        );
        m.route_duration("link_check").observe(0.001);
        m.handshake_failure("unknown_ca").inc();
        let text = String::from_utf8(m.encode()).expect("utf8");
        for needle in [
            "permitgate_requests_total{outcome=\"ok\",partner=\"bank\",route=\"link_check\"} 1",
            "permitgate_request_duration_seconds_bucket{route=\"link_check\",le=\"0.001\"} 1",
            "permitgate_tls_handshake_failures_total{reason=\"unknown_ca\"} 1",
            "permitgate_cache_lookups_total{result=\"hit\"} 0",
            "permitgate_snapshot_version 0",
            "permitgate_snapshot_documents 0",
            "permitgate_snapshot_published_timestamp_seconds 0",
            "permitgate_build_info{version=\"",
            "permitgate_receipts_signed_total 0",
        ] {
            assert!(text.contains(needle), "missing {needle} in\n{text}");
        }
        // Series are created on first use only: none for outcomes never seen.
        assert!(!text.contains("not_found"), "{text}");
        assert!(!text.contains("route=\"keys\""), "{text}");
    }
}
