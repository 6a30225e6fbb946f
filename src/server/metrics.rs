//! Prometheus metrics, in a registry of their own. Each component registers its own
//! families (`register(&Registry) -> Self`, next to the code that counts) and keeps
//! pre-resolved handles; [`Metrics`] only assembles them and exports the text.
//!
//! Request paths never format label values: they index tables of handles resolved when the
//! partner table is built or at start. Partner ids are the only label values that come
//! from configuration; none come from requests, so label cardinality is bounded by the
//! config.

use prometheus::{Encoder, Gauge, IntGaugeVec, Opts, Registry, TextEncoder};

use super::{ListenerMetrics, ReloadMetrics};
use crate::audit::AuditMetrics;
use crate::http::HttpMetrics;
use crate::metrics::register;
use crate::replication::ReplicationMetrics;
use crate::store::{CacheCounters, ServedMetrics};

pub struct Metrics {
    registry: Registry,
    pub http: HttpMetrics,
    pub listener: ListenerMetrics,
    pub reload: ReloadMetrics,
    pub served: ServedMetrics,
    pub cache: CacheCounters,
    pub audit: AuditMetrics,
    pub replication: ReplicationMetrics,
    /// How late the lag monitor's timer last woke (src/overload.rs).
    pub scheduling_lag: Gauge,
}

/// Registers one metric (or family) and returns its handle.
impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let build_info = register(
            &registry,
            IntGaugeVec::new(
                Opts::new("permitgate_build_info", "Build of the running gateway."),
                &["version"],
            ),
        );
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        Metrics {
            http: HttpMetrics::register(&registry),
            listener: ListenerMetrics::register(&registry),
            reload: ReloadMetrics::register(&registry),
            served: ServedMetrics::register(&registry),
            cache: CacheCounters::register(&registry),
            audit: AuditMetrics::register(&registry),
            replication: ReplicationMetrics::register(&registry),
            scheduling_lag: crate::overload::LagMonitor::register(&registry),
            registry,
        }
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
        let c = m.http.request_counters("bank");
        let link_check = crate::http::Route::LinkCheck.index();
        c.get(link_check, 0).expect("handle").inc();
        assert!(c.get(0, usize::MAX).is_none() && c.get(usize::MAX, 0).is_none());
        m.http.durations[link_check].observe(0.001);
        m.listener
            .handshake_failures
            .get(crate::tls::HandshakeFailure::UnknownCa as usize)
            .expect("handle")
            .inc();
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
        let requests: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("permitgate_requests_total{"))
            .collect();
        assert_eq!(requests.len(), 1, "{requests:?}");
    }
}
