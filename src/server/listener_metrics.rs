//! The partner listener's metrics, shared by the listener and every connection it serves.

use std::sync::Arc;

use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts, Registry};
use strum::VariantArray;

use super::door::DoorMetrics;
use crate::metrics::register;
use crate::tls::HandshakeFailure;

/// The partner listener's metrics: connections open and turned away (the door's),
/// failed handshakes.
#[derive(Clone)]
pub struct ListenerMetrics {
    pub connections_open: IntGauge,
    /// Connections let in past the door (its refusals are the door's counter).
    pub connections_accepted: IntCounter,
    pub door: Arc<DoorMetrics>,
    pub handshakes_waiting: IntGauge,
    /// Indexed by [`HandshakeFailure`], all created at 0.
    pub handshake_failures: Vec<IntCounter>,
}

impl ListenerMetrics {
    pub fn register(registry: &Registry) -> ListenerMetrics {
        let failures = register(
            registry,
            IntCounterVec::new(
                Opts::new(
                    "permitgate_tls_handshake_failures_total",
                    "TLS handshakes that failed, by reason.",
                ),
                &["reason"],
            ),
        );
        ListenerMetrics {
            connections_open: register(
                registry,
                IntGauge::new(
                    "permitgate_connections_open",
                    "Connections open now: through their handshake or not.",
                ),
            ),
            connections_accepted: register(
                registry,
                IntCounter::new(
                    "permitgate_connections_accepted_total",
                    "Connections let in past the door (before their handshake); those it turned away are in permitgate_connections_rejected_total.",
                ),
            ),
            door: Arc::new(DoorMetrics::register(registry)),
            handshakes_waiting: register(
                registry,
                IntGauge::new(
                    "permitgate_handshakes_waiting",
                    "TLS handshakes whose ClientHello has arrived, waiting for the handshake thread.",
                ),
            ),
            handshake_failures: HandshakeFailure::VARIANTS
                .iter()
                .map(|f| failures.with_label_values(&[f.label()]))
                .collect(),
        }
    }

    pub(super) fn handshake_failed(&self, f: HandshakeFailure) {
        if let Some(c) = self.handshake_failures.get(f as usize) {
            c.inc();
        }
    }
}
