//! What SREs watch of the origin: calls by route and outcome, publications and their time,
//! batches overtaken by another origin, the revocation list; plus the audit trail's own
//! metrics. Served by the origin's ops listener (`[origin] metrics_listen`).

use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry};

use crate::metrics::register;

#[derive(Clone)]
pub struct OriginMetrics {
    pub registry: Registry,
    /// By route and outcome (the audit record's).
    pub calls: IntCounterVec,
    pub publications: IntCounter,
    pub publish_seconds: Histogram,
    /// Writes in one publication.
    pub batch_writes: Histogram,
    /// Batches decided again because another publisher claimed their version first.
    pub overtaken: IntCounter,
    pub revocation_list_permits: IntGauge,
    /// Unix time the list was last written.
    pub revocation_list_written: IntGauge,
    pub audit: crate::audit::AuditMetrics,
}

impl OriginMetrics {
    pub fn new() -> OriginMetrics {
        let registry = Registry::new();
        let r = &registry;
        OriginMetrics {
            calls: register(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "permitgate_origin_calls_total",
                        "Authority API calls answered, by route and outcome.",
                    ),
                    &["route", "outcome"],
                ),
            ),
            publications: register(
                r,
                IntCounter::new(
                    "permitgate_origin_publications_total",
                    "Versions the origin published (each a batch of writes).",
                ),
            ),
            publish_seconds: register(
                r,
                Histogram::with_opts(
                    HistogramOpts::new(
                        "permitgate_origin_publish_duration_seconds",
                        "From deciding a batch to its version claimed and installed.",
                    )
                    .buckets(vec![
                        0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                    ]),
                ),
            ),
            batch_writes: register(
                r,
                Histogram::with_opts(
                    HistogramOpts::new(
                        "permitgate_origin_batch_writes",
                        "Issuances and revocations published in one version.",
                    )
                    .buckets(vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0]),
                ),
            ),
            overtaken: register(
                r,
                IntCounter::new(
                    "permitgate_origin_overtaken_total",
                    "Batches decided again: another publisher claimed their version first.",
                ),
            ),
            revocation_list_permits: register(
                r,
                IntGauge::new(
                    "permitgate_origin_revocation_list_permits",
                    "Permits on the revocation list last written.",
                ),
            ),
            revocation_list_written: register(
                r,
                IntGauge::new(
                    "permitgate_origin_revocation_list_written_timestamp_seconds",
                    "When the revocation list was last written (Unix seconds).",
                ),
            ),
            audit: crate::audit::AuditMetrics::register(r),
            registry,
        }
    }

    /// The Prometheus text of every metric.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        // Encoding into a Vec cannot fail.
        let _ = prometheus::Encoder::encode(
            &prometheus::TextEncoder::new(),
            &self.registry.gather(),
            &mut out,
        );
        out
    }
}

impl Default for OriginMetrics {
    fn default() -> Self {
        OriginMetrics::new()
    }
}
