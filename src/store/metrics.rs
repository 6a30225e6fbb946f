//! What is being served, for SREs: version, documents, publication time, overlay size,
//! and (set at every scrape) age, expiry and staleness.

use prometheus::{Gauge, IntGauge, Registry};
use time::OffsetDateTime;

use super::{State, StateInfo};
use crate::metrics::register;

#[derive(Clone)]
pub struct ServedMetrics {
    version: IntGauge,
    documents: IntGauge,
    published: Gauge,
    expires: Gauge,
    overlay_entries: IntGauge,
    age: Gauge,
    stale: IntGauge,
}

impl ServedMetrics {
    pub fn register(registry: &Registry) -> ServedMetrics {
        ServedMetrics {
            version: register(
                registry,
                IntGauge::new(
                    "permitgate_snapshot_version",
                    "Version of the snapshot being served (0 before the first).",
                ),
            ),
            documents: register(
                registry,
                IntGauge::new(
                    "permitgate_snapshot_documents",
                    "Documents in the snapshot being served.",
                ),
            ),
            published: register(
                registry,
                Gauge::new(
                    "permitgate_snapshot_published_timestamp_seconds",
                    "Publication time of the snapshot being served.",
                ),
            ),
            expires: register(
                registry,
                Gauge::new(
                    "permitgate_snapshot_expires_timestamp_seconds",
                    "When the manifest of the data being served expires (after it, answers say \"stale\": true); the origin publishes or signs again well before.",
                ),
            ),
            overlay_entries: register(
                registry,
                IntGauge::new(
                    "permitgate_overlay_entries",
                    "Documents changed by deltas over the base snapshot.",
                ),
            ),
            age: register(
                registry,
                Gauge::new(
                    "permitgate_snapshot_age_seconds",
                    "Seconds since the data being served was published.",
                ),
            ),
            stale: register(
                registry,
                IntGauge::new(
                    "permitgate_snapshot_stale",
                    "1 when the held manifest has expired (freeze attack or dead origin).",
                ),
            ),
        }
    }

    /// What the store serves now (age and staleness are set at every scrape:
    /// [`ServedMetrics::as_of`]).
    pub fn installed(&self, state: &State) {
        let gauge = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        let view = state.view();
        let info = view.info();
        self.version
            .set(i64::try_from(info.version).unwrap_or(i64::MAX));
        self.documents.set(gauge(state.snapshot().len()));
        self.published
            .set(info.published_at.unix_timestamp() as f64);
        self.overlay_entries.set(gauge(state.overlay_len()));
    }

    /// Age and staleness of the data served, as of `now`, so that the age moves whether
    /// or not anything is followed.
    pub fn as_of(&self, now: OffsetDateTime, info: &StateInfo) {
        self.age
            .set((now - info.published_at).as_seconds_f64().max(0.0));
        self.stale.set(i64::from(now > info.expires_at));
        self.expires.set(info.expires_at.unix_timestamp() as f64);
    }
}
