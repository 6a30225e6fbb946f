//! Admission: which partner requests may hold what, and for how long.
//!
//! A request that waits on its client (a body still arriving) holds a slot, so slots are
//! bounded twice: `max_concurrent_requests` in all (it bounds the memory held by bodies)
//! and `max_requests_per_partner` for each partner, so one partner can never hold more
//! than its share however many connections or streams it opens. The body itself is
//! bounded in time (`body_read_timeout_ms`, see [`super::body`]). Replication long-polls
//! and object downloads wait on a budget of their own (`max_relay_waiters`) and take no
//! partner slot: a relay with many followers turns away no partner traffic.
//!
//! Every refusal is counted by [`Refusal`] in `permitgate_refused_total{reason}`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use prometheus::IntCounter;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, SemaphorePermit};

use super::problem::{Problem, ProblemKind};

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
}

impl Refusal {
    pub fn label(self) -> &'static str {
        self.into()
    }
}

/// The limits admission enforces.
#[derive(Debug, Clone, Copy)]
pub struct AdmissionLimits {
    pub max_concurrent_requests: usize,
    pub max_requests_per_partner: usize,
    pub max_relay_waiters: usize,
    /// A request that waited longer than this before it could be read is shed.
    pub max_queue_delay: Option<Duration>,
}

pub struct Admission {
    limits: AdmissionLimits,
    slots: Semaphore,
    relay: Arc<Semaphore>,
    refused: Vec<IntCounter>,
}

/// A partner's slots in use; shared by the partner's entries across reloads.
#[derive(Debug, Default)]
pub struct PartnerSlots(AtomicUsize);

/// A request's slot: its partner's share and one of the shared slots, given back on drop.
pub struct Slot<'a> {
    _shared: SemaphorePermit<'a>,
    partner: &'a PartnerSlots,
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.partner.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Admission {
    /// `refused`: one counter per [`Refusal`], in its order.
    pub fn new(limits: AdmissionLimits, refused: Vec<IntCounter>) -> Admission {
        Admission {
            limits,
            slots: Semaphore::new(limits.max_concurrent_requests),
            relay: Arc::new(Semaphore::new(limits.max_relay_waiters)),
            refused,
        }
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

    /// A slot for one request of `partner`: within its share, then one of the shared ones.
    pub fn slot<'a>(&'a self, partner: &'a PartnerSlots, id: &str) -> Result<Slot<'a>, Problem> {
        let share = self.limits.max_requests_per_partner;
        if partner.0.fetch_add(1, Ordering::Relaxed) >= share {
            partner.0.fetch_sub(1, Ordering::Relaxed);
            return Err(self.refuse(
                Refusal::PartnerShare,
                format!(
                    "partner {id} has {share} requests in progress, its share; try again shortly"
                ),
            ));
        }
        match self.slots.try_acquire() {
            Ok(permit) => Ok(Slot {
                _shared: permit,
                partner,
            }),
            Err(_) => {
                partner.0.fetch_sub(1, Ordering::Relaxed);
                Err(self.refuse(
                    Refusal::Concurrency,
                    format!(
                        "{} requests are in progress; try again shortly",
                        self.limits.max_concurrent_requests
                    ),
                ))
            }
        }
    }

    /// A place for one replication long-poll or object download; held by the answer's
    /// body until it is sent.
    pub fn relay_place(&self) -> Result<OwnedSemaphorePermit, Problem> {
        self.relay.clone().try_acquire_owned().map_err(|_| {
            self.refuse(
                Refusal::RelayWaiters,
                format!(
                    "{} replication requests are in progress; try again shortly",
                    self.limits.max_relay_waiters
                ),
            )
        })
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
    use crate::metrics::Metrics;

    fn admission(all: usize, share: usize) -> (Admission, Metrics) {
        let metrics = Metrics::new();
        let a = Admission::new(
            AdmissionLimits {
                max_concurrent_requests: all,
                max_requests_per_partner: share,
                max_relay_waiters: 2,
                max_queue_delay: Some(Duration::from_millis(50)),
            },
            metrics.http.refused.clone(),
        );
        (a, metrics)
    }

    #[test]
    fn a_partner_never_holds_more_than_its_share() {
        let (a, metrics) = admission(4, 2);
        let (greedy, other) = (PartnerSlots::default(), PartnerSlots::default());
        let held: Vec<_> = (0..2)
            .map(|_| a.slot(&greedy, "g").expect("share"))
            .collect();
        let refused = a.slot(&greedy, "g").err().expect("over its share");
        assert_eq!(refused.kind, ProblemKind::Overloaded);
        assert!(refused.detail.contains("its share"), "{}", refused.detail);
        // The others still have the rest.
        let o1 = a.slot(&other, "o").expect("other partner");
        let o2 = a.slot(&other, "o").expect("other partner");
        // All four shared slots are taken now.
        let third = PartnerSlots::default();
        let p = a.slot(&third, "t").err().expect("no shared slot left");
        assert!(p.detail.contains("4 requests"), "{}", p.detail);
        assert_eq!(
            third.0.load(Ordering::Relaxed),
            0,
            "a refusal gives its share back"
        );
        drop(held);
        drop((o1, o2));
        assert_eq!(greedy.0.load(Ordering::Relaxed), 0);
        assert!(a.slot(&third, "t").is_ok());
        let text = String::from_utf8(metrics.encode()).expect("utf-8");
        assert!(text.contains("permitgate_refused_total{reason=\"partner_share\"} 1"));
        assert!(text.contains("permitgate_refused_total{reason=\"concurrency\"} 1"));
    }

    #[test]
    fn relay_places_are_a_budget_of_their_own() {
        let (a, _m) = admission(1, 1);
        let partner = PartnerSlots::default();
        let _slot = a.slot(&partner, "p").expect("slot");
        let r1 = a.relay_place().expect("relay place despite full slots");
        let _r2 = a.relay_place().expect("second place");
        assert!(a.relay_place().is_err(), "over max_relay_waiters");
        drop(r1);
        assert!(a.relay_place().is_ok());
    }

    #[test]
    fn queue_delay_over_the_limit_is_shed() {
        let (a, _m) = admission(1, 1);
        assert!(a.check_queue_delay(None).is_ok());
        assert!(a.check_queue_delay(Some(Duration::from_millis(50))).is_ok());
        let p = a
            .check_queue_delay(Some(Duration::from_millis(51)))
            .expect_err("shed");
        assert!(p.detail.contains("51 ms"), "{}", p.detail);
    }
}
