//! `[server]`: listeners, limits, timeouts.
//! The section as written (`Raw…`, with its defaults) and as validated, side by side;
//! a value that breaks a rule is recorded in `Problems`, and what is returned then is
//! never used (`Config::parse` returns the problems).

use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;

use super::{millis_or_off, Problems};

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub metrics_listen: Option<SocketAddr>,
    pub max_body_bytes: usize,
    pub max_batch_items: usize,
    pub handshake_timeout: Duration,
    /// Open partner connections; more are closed as they arrive.
    pub max_connections: usize,
    /// Requests being answered at once; more get 503 overloaded at once.
    pub max_concurrent_requests: usize,
    /// A request head not complete by then closes the connection (slow clients); the
    /// wait for the next request on an idle keep-alive connection counts too.
    pub header_read_timeout: Duration,
    /// Largest request head (HTTP/1.1 read buffer, HTTP/2 header list).
    pub max_header_bytes: usize,
    pub h2_max_concurrent_streams: u32,
    /// How often the config, certificate, key, CA and CRL files are checked for changes;
    /// `None`: only SIGHUP reloads.
    pub reload_poll_interval: Option<Duration>,
    /// On SIGTERM, how long open connections get to finish their requests.
    pub drain_timeout: Duration,
    /// Shed new requests while the async workers run this far behind; `None`: never.
    pub max_queue_delay: Option<Duration>,
    /// A request body not complete this long after its head was read gets 408.
    pub body_read_timeout: Duration,
    /// A partner whose certificate ends within this many days is told so on every answer
    /// (`Permitgate-Certificate-Expires`); 0: never.
    pub partner_certificate_warning_days: u32,
    /// A fixed cap on one partner's requests in progress (reading a body included), on
    /// top of its fair share of `max_concurrent_requests` (src/shares.rs); `None`: the fair
    /// share alone.
    pub max_requests_per_partner: Option<usize>,
    /// Replication long-polls and object downloads in progress at once, apart from the
    /// partner requests' slots.
    pub max_relay_waiters: usize,
    /// A write to a partner socket that moves nothing for this long ends the connection.
    pub write_timeout: Duration,
    /// SO_SNDBUF of partner sockets (the kernel reserves twice this); `None`: the
    /// kernel's own sizing, which grows to megabytes per connection.
    pub send_buffer_bytes: Option<usize>,
}

/// Fits the largest batch (1,000 items of the longest numbers, each with `"receipt":
/// true`, about 86 KB) with room for whitespace and full-width input.
pub const DEFAULT_MAX_BODY_BYTES: usize = 256 * 1024;

pub const DEFAULT_MAX_BATCH_ITEMS: usize = 1000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawServer {
    pub(super) listen: Option<SocketAddr>,
    pub(super) metrics_listen: Option<SocketAddr>,
    pub(super) max_body_bytes: usize,
    pub(super) max_batch_items: usize,
    pub(super) handshake_timeout_ms: u64,
    pub(super) max_connections: usize,
    pub(super) max_concurrent_requests: usize,
    pub(super) header_read_timeout_ms: u64,
    pub(super) max_header_bytes: usize,
    pub(super) h2_max_concurrent_streams: u32,
    pub(super) reload_poll_interval_ms: u64,
    pub(super) drain_timeout_ms: u64,
    pub(super) max_queue_delay_ms: u64,
    pub(super) body_read_timeout_ms: u64,
    pub(super) partner_certificate_warning_days: u32,
    /// Default: none (the fair share alone).
    pub(super) max_requests_per_partner: Option<usize>,
    pub(super) max_relay_waiters: usize,
    pub(super) write_timeout_ms: u64,
    pub(super) send_buffer_bytes: usize,
}

impl Default for RawServer {
    fn default() -> Self {
        RawServer {
            listen: None,
            metrics_listen: None,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            max_batch_items: DEFAULT_MAX_BATCH_ITEMS,
            handshake_timeout_ms: 10_000,
            max_connections: 10_000,
            max_concurrent_requests: 1024,
            header_read_timeout_ms: 30_000,
            max_header_bytes: 16 * 1024,
            h2_max_concurrent_streams: 128,
            reload_poll_interval_ms: 2000,
            drain_timeout_ms: 20_000,
            max_queue_delay_ms: 50,
            body_read_timeout_ms: 10_000,
            partner_certificate_warning_days: 30,
            max_requests_per_partner: None,
            max_relay_waiters: 4096,
            write_timeout_ms: 10_000,
            send_buffer_bytes: 64 * 1024,
        }
    }
}

pub(super) fn server_config(s: RawServer, problems: &mut Problems) -> ServerConfig {
    let listen = problems.required(s.listen, "server.listen");
    problems.check(
        s.max_body_bytes >= 1024,
        "server.max_body_bytes",
        "must be at least 1024",
    );
    problems.check(
        (1..=100_000).contains(&s.max_batch_items),
        "server.max_batch_items",
        "must be between 1 and 100000",
    );
    problems.check(
        s.handshake_timeout_ms > 0,
        "server.handshake_timeout_ms",
        "must be above 0",
    );
    problems.check(
        s.header_read_timeout_ms > 0,
        "server.header_read_timeout_ms",
        "must be above 0",
    );
    problems.check(
        s.max_connections > 0,
        "server.max_connections",
        "must be at least 1",
    );
    problems.check(
        s.max_concurrent_requests > 0,
        "server.max_concurrent_requests",
        "must be at least 1",
    );
    problems.check(
        s.body_read_timeout_ms > 0,
        "server.body_read_timeout_ms",
        "must be above 0",
    );
    problems.check(
        s.partner_certificate_warning_days <= 365,
        "server.partner_certificate_warning_days",
        "must be from 0 to 365",
    );
    let max_requests_per_partner = s.max_requests_per_partner;
    problems.check(
        max_requests_per_partner.is_none_or(|m| (1..=s.max_concurrent_requests).contains(&m)),
        "server.max_requests_per_partner",
        "must be at least 1 and at most server.max_concurrent_requests",
    );
    problems.check(
        s.max_relay_waiters > 0,
        "server.max_relay_waiters",
        "must be at least 1",
    );
    problems.check(
        s.write_timeout_ms > 0,
        "server.write_timeout_ms",
        "must be above 0",
    );
    problems.check(
        s.send_buffer_bytes == 0 || (4096..=64 << 20).contains(&s.send_buffer_bytes),
        "server.send_buffer_bytes",
        "must be 0 (the kernel's sizing) or from 4096 to 67108864",
    );
    // hyper's HTTP/1.1 read buffer cannot be smaller.
    problems.check(
        s.max_header_bytes >= 8192,
        "server.max_header_bytes",
        "must be at least 8192",
    );
    problems.check(
        s.h2_max_concurrent_streams > 0,
        "server.h2_max_concurrent_streams",
        "must be at least 1",
    );
    problems.check(
        !(1..100).contains(&s.reload_poll_interval_ms),
        "server.reload_poll_interval_ms",
        "must be 0 (SIGHUP only) or at least 100",
    );
    ServerConfig {
        listen: listen.unwrap_or(SocketAddr::from(([127, 0, 0, 1], 0))),
        metrics_listen: s.metrics_listen,
        max_body_bytes: s.max_body_bytes,
        max_batch_items: s.max_batch_items,
        handshake_timeout: Duration::from_millis(s.handshake_timeout_ms),
        max_connections: s.max_connections,
        max_concurrent_requests: s.max_concurrent_requests,
        header_read_timeout: Duration::from_millis(s.header_read_timeout_ms),
        max_header_bytes: s.max_header_bytes,
        h2_max_concurrent_streams: s.h2_max_concurrent_streams,
        reload_poll_interval: millis_or_off(s.reload_poll_interval_ms),
        drain_timeout: Duration::from_millis(s.drain_timeout_ms),
        max_queue_delay: millis_or_off(s.max_queue_delay_ms),
        body_read_timeout: Duration::from_millis(s.body_read_timeout_ms),
        partner_certificate_warning_days: s.partner_certificate_warning_days,
        max_requests_per_partner,
        max_relay_waiters: s.max_relay_waiters,
        write_timeout: Duration::from_millis(s.write_timeout_ms),
        send_buffer_bytes: (s.send_buffer_bytes > 0).then_some(s.send_buffer_bytes),
    }
}
