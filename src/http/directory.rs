//! The partner table as the request path sees it: each configured partner with its
//! pre-resolved metric handles, its rate-limit bucket and its count of slots in use.
//!
//! A reload builds a new [`Directory`] and swaps it in whole; connections keep only the
//! identity their certificate claimed and look it up per request, so a partner removed or
//! re-scoped by a reload is treated accordingly on its next request. Buckets of partners
//! whose limit did not change carry over (a reload refills nobody), and so do the
//! partner's parts of the shared pools (a reload frees no share held by requests in
//! progress; a new weight counts from the next time the partner becomes active). The
//! certificates on the current CRLs travel with it, for connections whose handshake predates them.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use super::metrics::{HttpMetrics, RequestCounters};
use crate::partner::Partner;
use crate::rate_limit::TokenBucket;
use crate::shares::{Holder, Pool};

pub struct PartnerEntry {
    pub partner: Partner,
    pub counters: Arc<RequestCounters>,
    pub bucket: Option<Arc<TokenBucket>>,
    /// Its part of the request slots, the relay places and the connections.
    pub slots: Arc<Holder>,
    pub relay: Arc<Holder>,
    pub connections: Arc<Holder>,
    /// notAfter of the certificate it last made a connection with, and when that was.
    pub seen: (prometheus::IntGauge, prometheus::IntGauge),
}

/// The pools partners share (src/shares.rs).
#[derive(Clone)]
pub struct Pools {
    pub slots: Arc<Pool>,
    pub relay: Arc<Pool>,
    pub connections: Arc<Pool>,
}

#[derive(Default)]
pub struct Directory {
    by_id: HashMap<String, Arc<PartnerEntry>>,
    revoked: HashSet<crate::tls::IssuedAs>,
}

impl Directory {
    /// `counters` resolves one partner's request counters (registered on first use).
    pub fn build(
        partners: &[Partner],
        revoked: HashSet<crate::tls::IssuedAs>,
        metrics: &HttpMetrics,
        pools: &Pools,
        previous: Option<&Directory>,
    ) -> Directory {
        let by_id = partners
            .iter()
            .map(|p| {
                let old = previous.and_then(|d| d.get(&p.id));
                let bucket = p.rate_limit.map(|limit| {
                    old.and_then(|e| e.bucket.clone())
                        .filter(|b| b.limit() == limit)
                        .unwrap_or_else(|| Arc::new(TokenBucket::new(limit)))
                });
                let counters = old
                    .map(|e| e.counters.clone())
                    .unwrap_or_else(|| Arc::new(metrics.request_counters(&p.id)));
                let part = |pool: &Arc<Pool>, held: Option<&Arc<Holder>>| match held {
                    Some(h) => {
                        h.set_weight(p.weight);
                        h.clone()
                    }
                    None => pool.holder(p.weight),
                };
                let entry = PartnerEntry {
                    partner: p.clone(),
                    counters,
                    bucket,
                    slots: part(&pools.slots, old.map(|e| &e.slots)),
                    relay: part(&pools.relay, old.map(|e| &e.relay)),
                    connections: part(&pools.connections, old.map(|e| &e.connections)),
                    seen: metrics.certificate_gauges(&p.id),
                };
                (p.id.clone(), Arc::new(entry))
            })
            .collect();
        Directory { by_id, revoked }
    }

    pub fn is_revoked(&self, certificate: &crate::tls::IssuedAs) -> bool {
        !self.revoked.is_empty() && self.revoked.contains(certificate)
    }

    pub fn get(&self, id: &str) -> Option<&Arc<PartnerEntry>> {
        self.by_id.get(id)
    }
}
