//! `[unauthenticated]`: what anyone who reaches the port may hold before its certificate is seen.
//! The section as written (`Raw…`, with its defaults) and as validated, side by side;
//! a value that breaks a rule is recorded in `Problems`, and what is returned then is
//! never used (`Config::parse` returns the problems).

use serde::Deserialize;

use super::Problems;
use crate::rate_limit::RateLimit;

/// The budget before authentication (src/server/door.rs): per source address and prefix,
/// in all, and the order of handshakes.
#[derive(Debug, Clone)]
pub struct UnauthenticatedConfig {
    /// Connections not through their handshake yet, from sources outside
    /// `partner_networks`; those from inside have a pool of the same size of their own.
    pub max_connections: usize,
    pub max_per_source: usize,
    pub max_per_prefix: usize,
    /// Prefix lengths that group sources (a host's neighbours, a site).
    pub prefix_v4: u8,
    pub prefix_v6: u8,
    pub handshakes_per_source: RateLimit,
    pub handshakes_per_prefix: RateLimit,
    /// All strangers together: bounds the CPU their handshakes can take.
    pub handshakes_all_strangers: RateLimit,
    /// Handshakes of strangers waiting for the handshake thread; more are closed.
    pub max_queued_handshakes: usize,
    /// Partners' address ranges: no per-source limits, a pool of their own, and their
    /// handshakes go first.
    pub partner_networks: Vec<ipnet::IpNet>,
    /// How long a source turned away for its own limits has its connection attempts
    /// dropped in the kernel (src/server/syn_filter.rs); zero: never.
    pub shun: std::time::Duration,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawUnauthenticated {
    pub(super) max_connections: usize,
    pub(super) max_per_source: usize,
    pub(super) max_per_prefix: usize,
    pub(super) prefix_v4: u8,
    pub(super) prefix_v6: u8,
    pub(super) handshakes_per_second_per_source: f64,
    pub(super) handshakes_per_second_per_prefix: f64,
    pub(super) handshakes_per_second: f64,
    pub(super) max_queued_handshakes: usize,
    pub(super) partner_networks: Vec<String>,
    pub(super) shun_seconds: f64,
}

impl Default for RawUnauthenticated {
    fn default() -> Self {
        RawUnauthenticated {
            max_connections: 2048,
            max_per_source: 32,
            max_per_prefix: 256,
            prefix_v4: 24,
            prefix_v6: 56,
            handshakes_per_second_per_source: 20.0,
            handshakes_per_second_per_prefix: 200.0,
            handshakes_per_second: 1000.0,
            max_queued_handshakes: 256,
            partner_networks: Vec::new(),
            shun_seconds: 1.0,
        }
    }
}

pub(super) fn unauthenticated_config(
    u: RawUnauthenticated,
    problems: &mut Problems,
) -> UnauthenticatedConfig {
    for (value, field) in [
        (u.max_connections, "max_connections"),
        (u.max_per_source, "max_per_source"),
        (u.max_per_prefix, "max_per_prefix"),
        (u.max_queued_handshakes, "max_queued_handshakes"),
    ] {
        problems.check(
            value > 0,
            format!("unauthenticated.{field}"),
            "must be at least 1",
        );
    }
    problems.check(
        (8..=32).contains(&u.prefix_v4),
        "unauthenticated.prefix_v4",
        "must be from 8 to 32",
    );
    problems.check(
        (16..=128).contains(&u.prefix_v6),
        "unauthenticated.prefix_v6",
        "must be from 16 to 128",
    );
    let mut rate = |per_second: f64, field: &str| {
        problems.check(
            per_second > 0.0 && per_second <= 1e6,
            format!("unauthenticated.{field}"),
            "must be above 0 and at most 1e6",
        );
        // Twice the rate at once: a partner's connection pool reconnecting after a
        // restart passes in the first second.
        RateLimit {
            per_second,
            burst: (per_second * 2.0).ceil().max(1.0) as u32,
        }
    };
    let handshakes_per_source = rate(
        u.handshakes_per_second_per_source,
        "handshakes_per_second_per_source",
    );
    let handshakes_per_prefix = rate(
        u.handshakes_per_second_per_prefix,
        "handshakes_per_second_per_prefix",
    );
    let handshakes_all_strangers = rate(u.handshakes_per_second, "handshakes_per_second");
    let partner_networks = u
        .partner_networks
        .iter()
        .enumerate()
        .filter_map(|(i, n)| {
            let parsed = n.parse::<ipnet::IpNet>().map(|n| n.trunc());
            problems.check(
                parsed.is_ok(),
                format!("unauthenticated.partner_networks[{i}]"),
                "must be a network such as 192.0.2.0/24 or 2001:db8::/48",
            );
            parsed.ok()
        })
        .collect();
    problems.check(
        (0.0..=3600.0).contains(&u.shun_seconds),
        "unauthenticated.shun_seconds",
        "must be from 0 (never) to 3600",
    );
    UnauthenticatedConfig {
        max_connections: u.max_connections,
        max_per_source: u.max_per_source,
        max_per_prefix: u.max_per_prefix,
        prefix_v4: u.prefix_v4,
        prefix_v6: u.prefix_v6,
        handshakes_per_source,
        handshakes_per_prefix,
        handshakes_all_strangers,
        max_queued_handshakes: u.max_queued_handshakes,
        partner_networks,
        shun: std::time::Duration::try_from_secs_f64(u.shun_seconds).unwrap_or_default(),
    }
}
