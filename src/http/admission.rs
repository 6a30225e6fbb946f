//! Admission: which partner requests may hold what, and for how long.
//!
//! A request that waits on its client (a body still arriving) holds a slot, so slots are
//! bounded: `max_concurrent_requests` in all (it bounds the memory held by bodies), shared
//! among the partners by weight (src/shares.rs): a partner below its fair share is let in
//! even when every slot is taken, the slot of a body still arriving from the partner
//! furthest above its share being taken back (that request gets 503). A fixed cap per
//! partner (`max_requests_per_partner`) may be set on top. The body itself is bounded in
//! time (`body_read_timeout_ms`, see [`super::body`]). Replication long-polls and object
//! downloads wait on a budget of their own (`max_relay_waiters`), shared among following
//! partners the same way (a held long-poll taken back is answered 304 at once), and take
//! no partner slot: a relay with many followers turns away no partner traffic.
//!
//! Every refusal is counted by [`Refusal`] in `permitgate_refused_total{reason}`.

use std::sync::Arc;
use std::time::Duration;

use prometheus::IntCounter;

use super::problem::{Problem, ProblemKind};
use crate::shares::{Holder, Pool, Refused, Unit};

/// Why a request was refused before any work was done for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::VariantArray, strum::IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum Refusal {
    RateLimited,
    PartnerShare,
    Concurrency,
    QueueDelay,
    AuditBacklog,
    RelayWaiters,
    BodyTimeout,
    /// A slot taken back, while its body was still arriving, for a partner below its share.
    Preempted,
}

impl Refusal {
    pub fn label(self) -> &'static str {
        self.into()
    }
}

/// The limits admission enforces.
#[derive(Debug, Clone, Copy)]
pub struct AdmissionLimits {
    /// Partner connections open at once after the handshake, shared by fair share.
    pub max_connections: usize,
    pub max_concurrent_requests: usize,
    /// A fixed cap per partner on top of its fair share; `None`: the fair share alone.
    pub max_requests_per_partner: Option<usize>,
    pub max_relay_waiters: usize,
    /// A request that waited longer than this before it could be read is shed.
    pub max_queue_delay: Option<Duration>,
}

pub struct Admission {
    limits: AdmissionLimits,
    slots: Arc<Pool>,
    relay: Arc<Pool>,
    refused: Vec<IntCounter>,
}

/// A request's slot, or a replication request's place: given back on drop.
pub type Slot = Unit;

impl Admission {
    /// `refused`: one counter per [`Refusal`], in its order.
    pub fn new(limits: AdmissionLimits, refused: Vec<IntCounter>) -> Admission {
        Admission {
            limits,
            slots: Pool::new(limits.max_concurrent_requests),
            relay: Pool::new(limits.max_relay_waiters),
            refused,
        }
    }

    /// The pools a partner holds a part of: request slots, relay places.
    pub fn pools(&self) -> (&Arc<Pool>, &Arc<Pool>) {
        (&self.slots, &self.relay)
    }

    /// Counts a refusal in `permitgate_refused_total`.
    pub fn count(&self, why: Refusal) {
        if let Some(c) = self.refused.get(why as usize) {
            c.inc();
        }
    }

    /// Counts a refusal and builds its problem.
    pub fn refuse(&self, why: Refusal, detail: String) -> Problem {
        self.count(why);
        let kind = match why {
            Refusal::RateLimited => ProblemKind::RateLimited,
            Refusal::BodyTimeout => ProblemKind::BodyTimeout,
            _ => ProblemKind::Overloaded,
        };
        Problem::new(kind, detail)
    }

    pub fn max_queue_delay(&self) -> Option<Duration> {
        self.limits.max_queue_delay
    }

    /// Sheds a request that (or while any request) waited longer than
    /// `max_queue_delay_ms` before it could be read (src/overload.rs).
    pub fn check_queue_delay(&self, waited: Option<Duration>) -> Result<(), Problem> {
        if let (Some(waited), Some(limit)) = (waited, self.limits.max_queue_delay) {
            if waited > limit {
                return Err(self.refuse(
                    Refusal::QueueDelay,
                    format!(
                        "the request waited {} ms before it could be served (limit {} ms); try again shortly",
                        waited.as_millis(),
                        limit.as_millis()
                    ),
                ));
            }
        }
        Ok(())
    }

    /// A slot for one request of `partner`: within the fixed cap, if any, then from the
    /// shared slots by fair share.
    pub fn slot(&self, partner: &Arc<Holder>, id: &str) -> Result<Slot, Problem> {
        if let Some(cap) = self.limits.max_requests_per_partner {
            if partner.held() >= cap {
                return Err(self.refuse(
                    Refusal::PartnerShare,
                    format!("partner {id} has {cap} requests in progress, its share (max_requests_per_partner); try again shortly"),
                ));
            }
        }
        self.slots.acquire(partner).map_err(|e| match e {
            Refused::OverShare { share } => self.refuse(
                Refusal::PartnerShare,
                format!(
                    "all {} request slots are taken and partner {id} holds its fair share ({share}); try again shortly",
                    self.slots.capacity()
                ),
            ),
            Refused::Full => self.refuse(
                Refusal::Concurrency,
                format!(
                    "{} requests are in progress; try again shortly",
                    self.slots.capacity()
                ),
            ),
        })
    }

    /// A place for one replication long-poll or object download of `partner`; held by the
    /// answer's body until it is sent.
    pub fn relay_place(&self, partner: &Arc<Holder>, id: &str) -> Result<Slot, Problem> {
        self.relay.acquire(partner).map_err(|e| {
            let detail = match e {
                Refused::OverShare { share } => format!(
                    "all {} replication places are taken and partner {id} holds its fair share ({share}); try again shortly",
                    self.relay.capacity()
                ),
                Refused::Full => format!(
                    "{} replication requests are in progress; try again shortly",
                    self.relay.capacity()
                ),
            };
            self.refuse(Refusal::RelayWaiters, detail)
        })
    }

    /// A slot taken back while its body was arriving: counted, and the request's answer.
    pub fn preempted(&self, id: &str) -> Problem {
        let mut p = self.refuse(
            Refusal::Preempted,
            format!(
                "this request's slot was given to a partner below its fair share while partner {id}'s body was still arriving; try again shortly"
            ),
        );
        p.body_unread = true;
        p
    }
}

/// Only JSON is accepted by the check routes (parameters may follow `;`).
pub fn check_content_type<B>(req: &http::Request<B>) -> Result<(), Problem> {
    let ok = req
        .headers()
        .get(http::header::CONTENT_TYPE)
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
pub fn host_header_ok<B>(req: &http::Request<B>) -> Result<(), Problem> {
    let hosts = req.headers().get_all(http::header::HOST).iter().count();
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::Metrics;

    fn admission(all: usize, cap: Option<usize>) -> (Admission, Metrics) {
        let metrics = Metrics::new();
        let a = Admission::new(
            AdmissionLimits {
                max_connections: 8,
                max_concurrent_requests: all,
                max_requests_per_partner: cap,
                max_relay_waiters: 2,
                max_queue_delay: Some(Duration::from_millis(50)),
            },
            metrics.http.refused.clone(),
        );
        (a, metrics)
    }

    #[test]
    fn a_partner_never_holds_more_than_its_cap_or_its_fair_share_when_full() {
        let (a, metrics) = admission(4, Some(3));
        let (slots, _) = a.pools();
        let (greedy, other) = (slots.holder(1), slots.holder(1));
        let held: Vec<_> = (0..3)
            .map(|_| a.slot(&greedy, "g").expect("room"))
            .collect();
        let refused = a.slot(&greedy, "g").err().expect("over its cap");
        assert_eq!(refused.kind, ProblemKind::Overloaded);
        assert!(refused.detail.contains("its share"), "{}", refused.detail);
        let o1 = a.slot(&other, "o").expect("the last slot");
        // Full: other (1 of a share of 2) is below its share, but greedy's slots are busy,
        // not waiting on a body, so nothing can be taken back.
        let p = a.slot(&other, "o").err().expect("nothing to take back");
        assert!(p.detail.contains("4 requests"), "{}", p.detail);
        assert_eq!(other.held(), 1, "a refusal gives its unit back");
        drop(held);
        drop(o1);
        // Without a cap: full, and at its share, a partner is refused.
        let (a, _) = admission(4, None);
        let (slots, _) = a.pools();
        let alone = slots.holder(1);
        let all: Vec<_> = (0..4).map(|_| a.slot(&alone, "a").expect("room")).collect();
        let p = a.slot(&alone, "a").err().expect("full, at its share");
        assert!(p.detail.contains("fair share (4)"), "{}", p.detail);
        drop(all);
        let text = String::from_utf8(metrics.encode()).expect("utf-8");
        assert!(text.contains("permitgate_refused_total{reason=\"partner_share\"} 1"));
        assert!(text.contains("permitgate_refused_total{reason=\"concurrency\"} 1"));
    }

    #[test]
    fn relay_places_are_a_budget_of_their_own() {
        let (a, _m) = admission(1, None);
        let (slots, relay) = a.pools();
        let (p, r) = (slots.holder(1), relay.holder(1));
        let _slot = a.slot(&p, "p").expect("slot");
        let r1 = a
            .relay_place(&r, "p")
            .expect("relay place despite full slots");
        let _r2 = a.relay_place(&r, "p").expect("second place");
        assert!(a.relay_place(&r, "p").is_err(), "over max_relay_waiters");
        drop(r1);
        assert!(a.relay_place(&r, "p").is_ok());
    }

    #[test]
    fn queue_delay_over_the_limit_is_shed() {
        let (a, _m) = admission(1, None);
        assert!(a.check_queue_delay(None).is_ok());
        assert!(a.check_queue_delay(Some(Duration::from_millis(50))).is_ok());
        let p = a
            .check_queue_delay(Some(Duration::from_millis(51)))
            .expect_err("shed");
        assert!(p.detail.contains("51 ms"), "{}", p.detail);
    }
}
