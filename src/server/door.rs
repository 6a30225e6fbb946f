//! The door: what anyone who can reach the port may hold before a certificate has been
//! seen, apart from what partners hold after it (their connections are shared by fair
//! share, src/shares.rs).
//!
//! A connection is counted from accept until its handshake ends: per source address and
//! per source prefix (`[unauthenticated] max_per_source`, `max_per_prefix`), in all
//! (`max_connections`), and each source, each prefix and all strangers together may start
//! only so many handshakes a second (a token bucket each: the last bounds the CPU
//! strangers can take, as HAProxy's `maxsslrate` does). Over any of these it is closed at
//! once, before a byte of TLS. The strangers' pool is shared by prefix as partners share
//! theirs (src/shares.rs): when it is full, a connection from a prefix below its fair share
//! is still let in and the oldest unfinished handshake of the prefix furthest above its
//! share is closed, so a flood from many hosts cannot keep out a stranger from elsewhere.
//! Sources in `partner_networks` are not limited per source (a partner's egress proxy
//! carries many clients) and count in a pool of their own, so no stranger can fill it;
//! their handshakes also go first (handshakes.rs). nginx (`limit_conn`), HAProxy (stick
//! tables) and Envoy (per-listener limits) bound the same things per source.
//!
//! Entries for a source live while it has connections here or its bucket is not full
//! again; [`Door::sweep`] forgets the rest.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use dashmap::DashMap;
use ipnet::IpNet;
use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts, Registry};
use strum::VariantArray;

use crate::config::UnauthenticatedConfig;
use crate::metrics::register;
use crate::rate_limit::TokenBucket;
use crate::shares::{Holder, Pool, Preemptible, Unit};

/// Why a connection was closed on arrival or after its handshake; the `reason` of
/// `permitgate_connections_rejected_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::VariantArray, strum::IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum Turned {
    /// All of `[unauthenticated] max_connections` are open (strangers', or partner
    /// networks').
    Unauthenticated,
    PerSource,
    PerPrefix,
    SourceRate,
    PrefixRate,
    /// All strangers together started `handshakes_per_second` handshakes this second.
    StrangerRate,
    /// Closed before its handshake ended, for a source prefix below its fair share.
    PrefixShare,
    /// `max_queued_handshakes` strangers' handshakes already wait for the thread.
    HandshakeQueue,
    /// Every partner connection is open and this partner holds its fair share.
    PartnerShare,
    /// An open connection closed (gracefully) for a partner below its fair share.
    TakenBack,
    /// Every file descriptor the gateway budgets for connections is in use.
    Capacity,
}

impl Turned {
    pub fn label(self) -> &'static str {
        self.into()
    }
}

/// Whom a connection comes from, as far as the door can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// From a configured partner network.
    PartnerNetwork,
    Stranger,
}

pub struct DoorMetrics {
    /// Indexed by [`Turned`].
    pub rejected: Vec<IntCounter>,
    /// Connections open and not through their handshake.
    pub unauthenticated: IntGauge,
    /// Sources whose connection attempts the kernel drops now (syn_filter.rs).
    pub shunned: IntGauge,
}

impl DoorMetrics {
    pub fn register(registry: &Registry) -> DoorMetrics {
        let rejected = register(
            registry,
            IntCounterVec::new(
                Opts::new(
                    "permitgate_connections_rejected_total",
                    "Connections closed on arrival (before TLS) or after their handshake, by reason.",
                ),
                &["reason"],
            ),
        );
        DoorMetrics {
            rejected: Turned::VARIANTS
                .iter()
                .map(|t| rejected.with_label_values(&[t.label()]))
                .collect(),
            unauthenticated: register(
                registry,
                IntGauge::new(
                    "permitgate_unauthenticated_connections",
                    "Connections open whose TLS handshake has not ended.",
                ),
            ),
            shunned: register(
                registry,
                IntGauge::new(
                    "permitgate_shunned_sources",
                    "Source addresses whose connection attempts are dropped in the kernel for [unauthenticated] shun_seconds, after the door turned them away for their own limits.",
                ),
            ),
        }
    }

    pub fn rejected(&self, why: Turned) {
        if let Some(c) = self.rejected.get(why as usize) {
            c.inc();
        }
    }
}

struct Count {
    open: usize,
    handshakes: TokenBucket,
    /// A prefix's part of the strangers' pool.
    share: Option<Arc<Holder>>,
}

pub struct Door {
    limits: UnauthenticatedConfig,
    strangers: Arc<Pool>,
    strangers_rate: TokenBucket,
    partner_networks: AtomicUsize,
    sources: DashMap<IpAddr, Count>,
    prefixes: DashMap<IpNet, Count>,
    metrics: Arc<DoorMetrics>,
}

/// A connection let in, counted until it is dropped (its handshake ended).
pub struct Pass {
    door: Arc<Door>,
    class: Class,
    /// The source and its prefix, and the unit of the strangers' pool, for strangers.
    counted: Option<(IpAddr, IpNet, Unit)>,
}

impl Pass {
    pub fn class(&self) -> Class {
        self.class
    }

    /// A stranger's place, registered as one that may be taken back for a prefix below
    /// its share while the handshake has not ended.
    pub fn preemptible(&self) -> Option<Preemptible<'_>> {
        self.counted.as_ref().map(|(_, _, unit)| unit.preemptible())
    }
}

/// The address as the door counts it: an IPv4 client on a dual-stack socket is itself.
fn source_of(peer: SocketAddr) -> IpAddr {
    match peer.ip() {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

impl Door {
    pub fn new(limits: UnauthenticatedConfig, metrics: Arc<DoorMetrics>) -> Arc<Door> {
        Arc::new(Door {
            limits: limits.clone(),
            strangers: Pool::new(limits.max_connections),
            strangers_rate: TokenBucket::new(limits.handshakes_all_strangers),
            partner_networks: AtomicUsize::new(0),
            sources: DashMap::new(),
            prefixes: DashMap::new(),
            metrics,
        })
    }

    pub fn metrics(&self) -> &DoorMetrics {
        &self.metrics
    }

    fn prefix_of(&self, ip: IpAddr) -> IpNet {
        let len = match ip {
            IpAddr::V4(_) => self.limits.prefix_v4,
            IpAddr::V6(_) => self.limits.prefix_v6,
        };
        IpNet::new(ip, len).map_or(IpNet::from(ip), |n| n.trunc())
    }

    /// The source to shun after `peer` was turned away for `why`: its address, when it was
    /// over its own limits (not its prefix's: syn_filter.rs says why).
    pub fn shunned_source(&self, peer: SocketAddr, why: Turned) -> Option<IpNet> {
        matches!(why, Turned::PerSource | Turned::SourceRate).then(|| IpNet::from(source_of(peer)))
    }

    /// The kernel's side of the door, for the accept loop to keep (syn_filter.rs).
    pub fn syn_filter(&self) -> super::syn_filter::SynFilter {
        super::syn_filter::SynFilter::new(self.limits.shun, self.metrics.shunned.clone())
    }

    /// Lets a connection from `peer` in, at `now_ns` (Unix nanoseconds), or says why not
    /// (counted).
    pub fn admit(self: &Arc<Door>, peer: SocketAddr, now_ns: u64) -> Result<Pass, Turned> {
        let r = self.try_admit(peer, now_ns);
        match &r {
            Ok(_) => self.metrics.unauthenticated.inc(),
            Err(why) => self.metrics.rejected(*why),
        }
        r
    }

    fn try_admit(self: &Arc<Door>, peer: SocketAddr, now_ns: u64) -> Result<Pass, Turned> {
        let ip = source_of(peer);
        let max = self.limits.max_connections;
        if self.limits.partner_networks.iter().any(|n| n.contains(&ip)) {
            if self.partner_networks.fetch_add(1, Ordering::AcqRel) >= max {
                self.partner_networks.fetch_sub(1, Ordering::AcqRel);
                return Err(Turned::Unauthenticated);
            }
            return Ok(Pass {
                door: self.clone(),
                class: Class::PartnerNetwork,
                counted: None,
            });
        }
        let prefix = self.prefix_of(ip);
        self.count_in(
            &self.sources,
            ip,
            self.limits.max_per_source,
            &self.limits.handshakes_per_source,
            now_ns,
        )
        .map_err(|full| {
            if full {
                Turned::PerSource
            } else {
                Turned::SourceRate
            }
        })?;
        let share = self
            .count_in(
                &self.prefixes,
                prefix,
                self.limits.max_per_prefix,
                &self.limits.handshakes_per_prefix,
                now_ns,
            )
            .map_err(|full| {
                if full {
                    Turned::PerPrefix
                } else {
                    Turned::PrefixRate
                }
            })
            .and_then(|()| {
                self.within_strangers_rate(&prefix, now_ns)?;
                let holder = self
                    .prefixes
                    .get_mut(&prefix)
                    .map(|mut c| {
                        c.share
                            .get_or_insert_with(|| self.strangers.holder(1))
                            .clone()
                    })
                    .ok_or(Turned::Unauthenticated)?;
                self.strangers
                    .acquire(&holder)
                    .map_err(|_| Turned::Unauthenticated)
            });
        let unit = match share {
            Ok(u) => u,
            Err(why) => {
                Self::uncount(&self.sources, &ip);
                if why != Turned::PerPrefix && why != Turned::PrefixRate {
                    Self::uncount(&self.prefixes, &prefix);
                }
                return Err(why);
            }
        };
        Ok(Pass {
            door: self.clone(),
            class: Class::Stranger,
            counted: Some((ip, prefix, unit)),
        })
    }

    /// All strangers' handshake rate, for a prefix that has been starting handshakes:
    /// one whose bucket is (nearly) full again has been quiet, and is not kept out by a
    /// flood from elsewhere that used the rate up.
    fn within_strangers_rate(&self, prefix: &IpNet, now_ns: u64) -> Result<(), Turned> {
        let quiet = self
            .prefixes
            .get(prefix)
            .is_some_and(|c| c.handshakes.is_nearly_full(now_ns));
        if quiet {
            return Ok(());
        }
        self.strangers_rate
            .take(now_ns)
            .map_err(|_| Turned::StrangerRate)
    }

    /// One more open connection of `key`, within `max` and its handshake rate; `Err(true)`
    /// when `max` are open, `Err(false)` when its bucket is empty.
    fn count_in<K: std::hash::Hash + Eq>(
        &self,
        map: &DashMap<K, Count>,
        key: K,
        max: usize,
        rate: &crate::rate_limit::RateLimit,
        now_ns: u64,
    ) -> Result<(), bool> {
        let mut c = map.entry(key).or_insert_with(|| Count {
            open: 0,
            handshakes: TokenBucket::new(*rate),
            share: None,
        });
        if c.open >= max {
            return Err(true);
        }
        c.handshakes.take(now_ns).map_err(|_| false)?;
        c.open += 1;
        Ok(())
    }

    fn uncount<K: std::hash::Hash + Eq>(map: &DashMap<K, Count>, key: &K) {
        if let Some(mut c) = map.get_mut(key) {
            c.open = c.open.saturating_sub(1);
        }
    }

    /// Forgets sources and prefixes with nothing open whose buckets have filled again.
    pub fn sweep(&self, now_ns: u64) {
        self.sources
            .retain(|_, c| c.open > 0 || !c.handshakes.is_full(now_ns));
        self.prefixes
            .retain(|_, c| c.open > 0 || !c.handshakes.is_full(now_ns));
    }

    /// Sources remembered now (for tests of the sweep).
    #[cfg(test)]
    fn sources_remembered(&self) -> usize {
        self.sources.len()
    }
}

impl Drop for Pass {
    fn drop(&mut self) {
        let door = &self.door;
        door.metrics.unauthenticated.dec();
        match &self.counted {
            None => {
                door.partner_networks.fetch_sub(1, Ordering::AcqRel);
            }
            Some((ip, prefix, _unit)) => {
                Door::uncount(&door.sources, ip);
                Door::uncount(&door.prefixes, prefix);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rate_limit::RateLimit;

    const SEC: u64 = 1_000_000_000;

    fn door(partner_networks: &[&str]) -> Arc<Door> {
        let rate = |per_second: f64| RateLimit {
            per_second,
            burst: (2.0 * per_second) as u32,
        };
        Door::new(
            UnauthenticatedConfig {
                max_connections: 6,
                max_per_source: 2,
                max_per_prefix: 3,
                prefix_v4: 24,
                prefix_v6: 56,
                handshakes_per_source: rate(5.0),
                handshakes_per_prefix: rate(50.0),
                handshakes_all_strangers: rate(1000.0),
                max_queued_handshakes: 8,
                partner_networks: partner_networks
                    .iter()
                    .map(|n| n.parse().expect("net"))
                    .collect(),
                shun: std::time::Duration::from_secs(1),
            },
            Arc::new(DoorMetrics::register(&Registry::new())),
        )
    }

    fn at(ip: &str) -> SocketAddr {
        SocketAddr::new(ip.parse().expect("ip"), 40000)
    }

    /// Only a source over its own limits is shunned, as itself: never its prefix, never
    /// for the strangers' total; an IPv4 client of a dual-stack socket as IPv4.
    #[test]
    fn a_source_over_its_own_limits_is_what_is_shunned() {
        let d = door(&[]);
        for (peer, why, host) in [
            ("192.0.2.7", Turned::PerSource, "192.0.2.7/32"),
            ("192.0.2.7", Turned::SourceRate, "192.0.2.7/32"),
            ("::ffff:192.0.2.7", Turned::SourceRate, "192.0.2.7/32"),
            ("2001:db8::7", Turned::PerSource, "2001:db8::7/128"),
        ] {
            let host = host.parse::<IpNet>().expect("net");
            assert_eq!(
                d.shunned_source(at(peer), why),
                Some(host),
                "{peer} {why:?}"
            );
        }
        for why in [
            Turned::PerPrefix,
            Turned::PrefixRate,
            Turned::StrangerRate,
            Turned::Unauthenticated,
            Turned::PrefixShare,
            Turned::HandshakeQueue,
        ] {
            assert_eq!(d.shunned_source(at("192.0.2.7"), why), None, "{why:?}");
        }
    }

    #[test]
    fn sources_prefixes_and_strangers_are_each_bounded() {
        let d = door(&[]);
        let t = 100 * SEC;
        let a: Vec<_> = (0..2)
            .map(|_| d.admit(at("192.0.2.1"), t).expect("in"))
            .collect();
        assert_eq!(d.admit(at("192.0.2.1"), t).err(), Some(Turned::PerSource));
        let b = d.admit(at("192.0.2.2"), t).expect("a neighbour");
        assert_eq!(
            d.admit(at("192.0.2.3"), t).err(),
            Some(Turned::PerPrefix),
            "three from 192.0.2.0/24 already"
        );
        // An IPv4 client on a dual-stack listener is the same source.
        assert_eq!(
            d.admit(at("::ffff:192.0.2.9"), t).err(),
            Some(Turned::PerPrefix)
        );
        let others: Vec<_> = ["198.51.100.1", "203.0.113.1", "203.0.113.2"]
            .iter()
            .map(|ip| d.admit(at(ip), t).expect("in"))
            .collect();
        assert_eq!(
            d.admit(at("100.64.0.1"), t).err(),
            Some(Turned::Unauthenticated),
            "six in all"
        );
        drop(a);
        drop(b);
        drop(others);
        assert_eq!(d.strangers.in_use(), 0);
        assert!(d.admit(at("192.0.2.1"), t).is_ok());
    }

    #[test]
    fn each_source_starts_so_many_handshakes_a_second() {
        let d = door(&[]);
        let t = 100 * SEC;
        // Burst 10, then 5 a second: each connection closes at once, as a flood's do.
        for i in 0..10 {
            drop(
                d.admit(at("192.0.2.1"), t)
                    .unwrap_or_else(|e| panic!("{i}: {e:?}")),
            );
        }
        assert_eq!(d.admit(at("192.0.2.1"), t).err(), Some(Turned::SourceRate));
        assert!(
            d.admit(at("192.0.2.1"), t + SEC / 5).is_ok(),
            "a token back"
        );
        // Forgotten once idle and full again.
        assert_eq!(d.sources_remembered(), 1);
        d.sweep(t + 10 * SEC);
        assert_eq!(d.sources_remembered(), 0);
    }

    /// Many hosts of few prefixes fill the strangers' pool with handshakes that never end;
    /// a stranger from another prefix is let in, and the oldest of the greediest prefix's
    /// is taken back.
    #[tokio::test]
    async fn a_prefix_below_its_share_takes_back_a_place_from_the_greediest() {
        let d = door(&[]);
        let t = 100 * SEC;
        // Three per prefix at most, six in all: two prefixes fill it.
        let flood: Vec<_> = [
            "192.0.2.1",
            "192.0.2.2",
            "192.0.2.3",
            "198.51.100.1",
            "198.51.100.2",
            "198.51.100.3",
        ]
        .iter()
        .map(|ip| d.admit(at(ip), t).expect("in"))
        .collect();
        let waiting: Vec<_> = flood
            .iter()
            .map(|p| p.preemptible().expect("a stranger's"))
            .collect();
        let newcomer = d
            .admit(at("203.0.113.7"), t)
            .expect("below its prefix's share");
        waiting[0].taken_back().await;
        assert_eq!(d.metrics.unauthenticated.get(), 7);
        drop(waiting);
        drop((flood, newcomer));
        assert_eq!(d.strangers.in_use(), 0);
    }

    #[test]
    fn all_strangers_together_start_so_many_handshakes_a_second() {
        let d = door(&[]);
        let t = 100 * SEC;
        // 100 prefixes keep starting handshakes (each connection closing at once), 30 a
        // prefix: within each prefix's bucket (burst 100), not within the strangers' (burst
        // 2,000 in all) once every prefix has been busy.
        let mut refused = 0;
        for round in 0..30u32 {
            for p in 0..100u32 {
                let ip = format!("10.{p}.0.{}", round + 1);
                match d.admit(at(&ip), t) {
                    Ok(pass) => drop(pass),
                    Err(Turned::StrangerRate) => refused += 1,
                    Err(e) => panic!("{ip}: {e:?}"),
                }
            }
        }
        assert_eq!(
            refused,
            30 * 100 - 2000 - 100,
            "the first of each prefix was quiet"
        );
        // A prefix that has been quiet is not kept out by the others' flood.
        assert!(d.admit(at("10.200.0.1"), t).is_ok());
    }

    #[test]
    fn partner_networks_have_a_pool_of_their_own_and_no_per_source_limit() {
        let d = door(&["10.1.0.0/16"]);
        let t = 100 * SEC;
        let strangers: Vec<_> = (1..=6)
            .map(|i| d.admit(at(&format!("198.51.{i}.1")), t).expect("in"))
            .collect();
        assert_eq!(
            d.admit(at("198.51.99.1"), t).err(),
            Some(Turned::Unauthenticated)
        );
        // Strangers fill their pool; a partner network's sources still get in, many from
        // one address.
        let partners: Vec<_> = (0..6)
            .map(|_| {
                let p = d.admit(at("10.1.2.3"), t).expect("partner network");
                assert_eq!(p.class(), Class::PartnerNetwork);
                p
            })
            .collect();
        assert_eq!(
            d.admit(at("10.1.2.3"), t).err(),
            Some(Turned::Unauthenticated)
        );
        drop((strangers, partners));
    }
}
