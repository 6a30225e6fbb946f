//! The follower's metrics: polls by outcome, refusals by reason, last success, and the
//! time to apply a delta. Every series exists from the start (at 0), so that rate() and
//! alerts see them before the first poll or failure.

use prometheus::{
    Gauge, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
};
use strum::VariantArray;

use super::refusal::RefusalReason;
use crate::metrics::register;

#[derive(Clone)]
pub struct ReplicationMetrics {
    pub(super) not_modified: IntCounter,
    pub(super) applied: IntCounter,
    pub(super) swapped: IntCounter,
    pub(super) refused: IntCounter,
    /// Indexed by [`RefusalReason`].
    failures: Vec<IntCounter>,
    pub(super) last_success: Gauge,
    pub(super) delta_apply: Histogram,
    pub(super) base_swap: Histogram,
    pub(super) list_issued: Gauge,
    pub(super) list_permits: IntGauge,
    pub(super) list_refused: IntCounter,
}

impl ReplicationMetrics {
    pub fn register(registry: &Registry) -> ReplicationMetrics {
        let polls = register(
            registry,
            IntCounterVec::new(
                Opts::new(
                    "permitgate_replication_polls_total",
                    "Polls of the replication source, by result.",
                ),
                &["result"],
            ),
        );
        let failures = register(
            registry,
            IntCounterVec::new(
                Opts::new(
                    "permitgate_replication_failures_total",
                    "Refused or failed replication attempts, by reason.",
                ),
                &["reason"],
            ),
        );
        ReplicationMetrics {
            not_modified: polls.with_label_values(&["not_modified"]),
            applied: polls.with_label_values(&["applied"]),
            swapped: polls.with_label_values(&["swapped"]),
            refused: polls.with_label_values(&["refused"]),
            failures: RefusalReason::VARIANTS
                .iter()
                .map(|r| failures.with_label_values(&[r.label()]))
                .collect(),
            last_success: register(
                registry,
                Gauge::new(
                    "permitgate_replication_last_success_timestamp_seconds",
                    "When the source last answered with something usable (or nothing new).",
                ),
            ),
            delta_apply: register(
                registry,
                Histogram::with_opts(
                    HistogramOpts::new(
                        "permitgate_delta_apply_duration_seconds",
                        "Time to apply one verified delta onto the data served.",
                    )
                    .buckets(vec![
                        0.000_1, 0.000_5, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0,
                    ]),
                ),
            ),
            base_swap: register(
                registry,
                Histogram::with_opts(
                    HistogramOpts::new(
                        "permitgate_base_swap_duration_seconds",
                        "Time to take in a new base: fetch, verify, index, keep and install \
                         (paced while serving).",
                    )
                    .buckets(vec![0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0]),
                ),
            ),
            list_issued: register(
                registry,
                Gauge::new(
                    "permitgate_revocation_list_issued_timestamp_seconds",
                    "When the temporary-permit revocation list served to gates was issued \
                     (0: none yet).",
                ),
            ),
            list_permits: register(
                registry,
                IntGauge::new(
                    "permitgate_revocation_list_permits",
                    "Temporary permits on the revocation list served to gates.",
                ),
            ),
            list_refused: register(
                registry,
                IntCounter::new(
                    "permitgate_revocation_list_refused_total",
                    "Revocation lists fetched and refused (signature, format, size, fetch).",
                ),
            ),
        }
    }

    pub(super) fn failure(&self, reason: RefusalReason) {
        self.refused.inc();
        if let Some(c) = self.failures.get(reason as usize) {
            c.inc();
        }
    }
}
