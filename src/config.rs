//! Gateway configuration: parsed once from TOML into a validated [`Config`].
//!
//! Unknown keys are errors (a typo must not silently fall back to a default). Relative
//! paths are relative to the config file's directory, so a config can travel with its
//! certificates. `config/gateway.toml` is the commented reference.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::audit::{AuditConfig, WhenFull};
use crate::keyring::Validity;
use crate::partner::{valid_partner_id, Partner, Scope};
use crate::rate_limit::RateLimit;
use crate::store::CacheConfig;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config {path}: {field}: {rule}")]
    Invalid {
        path: PathBuf,
        field: String,
        rule: String,
    },
}

#[derive(Debug, Clone)]
pub struct Config {
    /// The file this was read from: reloads read it again.
    pub path: PathBuf,
    pub server: ServerConfig,
    pub tls: TlsConfig,
    pub snapshot: SnapshotConfig,
    pub cache: CacheConfig,
    pub partners: Vec<Partner>,
    pub replication: Option<ReplicationConfig>,
    /// Receipt signing keys (PKCS#8 PEM); empty when receipts are off.
    pub receipt_keys: Vec<KeyFile>,
    pub temp_permits: TempPermitConfig,
    /// `None`: no audit trail (the gateway warns at start).
    pub audit: Option<AuditConfig>,
}

/// A key file and the window in which the key may sign.
#[derive(Debug, Clone)]
pub struct KeyFile {
    pub path: PathBuf,
    pub validity: Validity,
}

#[derive(Debug, Clone)]
pub struct TempPermitConfig {
    /// The authority's temporary-permit issuing public keys (SPKI PEM).
    pub issuer_keys: Vec<KeyFile>,
    /// Gates' clocks may be this far off either way.
    pub clock_skew: time::Duration,
}

#[derive(Debug, Clone)]
pub struct ReplicationConfig {
    /// `file:///path`, `https://host[:port]/path` or `s3://bucket/prefix`.
    pub source: String,
    /// The last good state (a repo layout), served at start before the source answers.
    pub state_dir: PathBuf,
    pub poll_interval: Duration,
    /// `/readyz` fails once the held manifest has been expired this long (absent: never).
    pub unready_when_stale_for: Option<Duration>,
    /// https sources: CA to trust, and this gateway's client identity (clientAuth).
    pub ca: Option<PathBuf>,
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
    /// s3 sources: endpoint URL of an S3-compatible store, and region.
    pub s3_endpoint: Option<String>,
    pub s3_region: Option<String>,
}

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
    /// Requests of one partner in progress at once (reading a body included): its share
    /// of `max_concurrent_requests`.
    pub max_requests_per_partner: usize,
    /// Replication long-polls and object downloads in progress at once, apart from the
    /// partner requests' slots.
    pub max_relay_waiters: usize,
}

#[derive(Debug, Clone)]
pub struct TlsConfig {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: PathBuf,
    /// Revocation lists of the partner CA (PEM).
    pub crls: Vec<PathBuf>,
}

impl TlsConfig {
    /// Every file a reload reads.
    pub fn files(&self) -> impl Iterator<Item = &Path> {
        [&self.cert, &self.key, &self.client_ca]
            .into_iter()
            .chain(&self.crls)
            .map(PathBuf::as_path)
    }
}

#[derive(Debug, Clone)]
pub struct SnapshotConfig {
    /// Local repo to serve from when there is no `[replication]`.
    pub repo: Option<PathBuf>,
    /// How often that repo's manifest is read for new publications; `None`: never (the
    /// repo is served as loaded at start).
    pub watch_interval: Option<Duration>,
    pub publisher_keys: Vec<PathBuf>,
    pub hash_key: PathBuf,
}

/// Fits the largest batch (1,000 items of the longest numbers, each with `"receipt":
/// true`, about 86 KB) with room for whitespace and full-width input.
pub const DEFAULT_MAX_BODY_BYTES: usize = 256 * 1024;
pub const DEFAULT_MAX_BATCH_ITEMS: usize = 1000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    server: RawServer,
    tls: RawTls,
    snapshot: RawSnapshot,
    #[serde(default)]
    cache: RawCache,
    #[serde(default)]
    partners: Vec<RawPartner>,
    replication: Option<RawReplication>,
    receipts: Option<RawReceipts>,
    temp_permits: Option<RawTempPermits>,
    audit: Option<RawAudit>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAudit {
    dir: PathBuf,
    #[serde(default = "default_audit_file_bytes")]
    max_file_bytes: u64,
    #[serde(default = "default_audit_fsync")]
    fsync_interval_ms: u64,
    #[serde(default = "default_audit_queue")]
    queue_capacity: usize,
    #[serde(default = "default_when_full")]
    when_full: WhenFull,
}

fn default_audit_file_bytes() -> u64 {
    64 * 1024 * 1024
}
fn default_audit_fsync() -> u64 {
    200
}
fn default_audit_queue() -> usize {
    65_536
}
fn default_when_full() -> WhenFull {
    WhenFull::Shed
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawReceipts {
    signing_keys: Vec<RawKeyFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTempPermits {
    #[serde(default)]
    issuer_keys: Vec<RawKeyFile>,
    #[serde(default = "default_clock_skew")]
    clock_skew_seconds: u64,
}

fn default_clock_skew() -> u64 {
    crate::temp_permit::DEFAULT_CLOCK_SKEW.whole_seconds() as u64
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKeyFile {
    path: PathBuf,
    not_before: Option<String>,
    not_after: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawReplication {
    source: String,
    state_dir: PathBuf,
    #[serde(default = "default_poll_interval")]
    poll_interval_ms: u64,
    unready_when_stale_for_ms: Option<u64>,
    ca: Option<PathBuf>,
    client_cert: Option<PathBuf>,
    client_key: Option<PathBuf>,
    s3_endpoint: Option<String>,
    s3_region: Option<String>,
}

fn default_poll_interval() -> u64 {
    1000
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    listen: SocketAddr,
    metrics_listen: Option<SocketAddr>,
    #[serde(default = "default_max_body")]
    max_body_bytes: usize,
    #[serde(default = "default_max_batch")]
    max_batch_items: usize,
    #[serde(default = "default_handshake_timeout")]
    handshake_timeout_ms: u64,
    #[serde(default = "default_max_connections")]
    max_connections: usize,
    #[serde(default = "default_max_concurrent_requests")]
    max_concurrent_requests: usize,
    #[serde(default = "default_header_read_timeout")]
    header_read_timeout_ms: u64,
    #[serde(default = "default_max_header_bytes")]
    max_header_bytes: usize,
    #[serde(default = "default_h2_streams")]
    h2_max_concurrent_streams: u32,
    #[serde(default = "default_reload_poll")]
    reload_poll_interval_ms: u64,
    #[serde(default = "default_drain_timeout")]
    drain_timeout_ms: u64,
    #[serde(default = "default_max_lag")]
    max_queue_delay_ms: u64,
    #[serde(default = "default_body_read_timeout")]
    body_read_timeout_ms: u64,
    /// Default: 128, or max_concurrent_requests if that is smaller.
    max_requests_per_partner: Option<usize>,
    #[serde(default = "default_max_relay_waiters")]
    max_relay_waiters: usize,
}

fn default_body_read_timeout() -> u64 {
    10_000
}
const DEFAULT_MAX_REQUESTS_PER_PARTNER: usize = 128;
fn default_max_relay_waiters() -> usize {
    4096
}

fn default_max_lag() -> u64 {
    50
}

fn default_drain_timeout() -> u64 {
    20_000
}

fn default_reload_poll() -> u64 {
    2000
}

fn default_max_connections() -> usize {
    10_000
}
fn default_max_concurrent_requests() -> usize {
    1024
}
fn default_header_read_timeout() -> u64 {
    30_000
}
fn default_max_header_bytes() -> usize {
    16 * 1024
}
fn default_h2_streams() -> u32 {
    128
}

fn default_max_body() -> usize {
    DEFAULT_MAX_BODY_BYTES
}
fn default_max_batch() -> usize {
    DEFAULT_MAX_BATCH_ITEMS
}
fn default_handshake_timeout() -> u64 {
    10_000
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    cert: PathBuf,
    key: PathBuf,
    client_ca: PathBuf,
    #[serde(default)]
    crls: Vec<PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSnapshot {
    repo: Option<PathBuf>,
    #[serde(default = "default_watch_interval")]
    watch_interval_ms: u64,
    publisher_keys: Vec<PathBuf>,
    hash_key: PathBuf,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCache {
    #[serde(default)]
    enabled: bool,
    #[serde(default = "default_cache_entries")]
    max_entries: u64,
}

impl Default for RawCache {
    fn default() -> Self {
        RawCache {
            enabled: false,
            max_entries: default_cache_entries(),
        }
    }
}

fn default_watch_interval() -> u64 {
    50
}

fn default_cache_entries() -> u64 {
    CacheConfig::default().max_entries
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPartner {
    id: String,
    #[serde(default)]
    scopes: Vec<Scope>,
    rate_limit: Option<RawRateLimit>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRateLimit {
    per_second: f64,
    burst: Option<u32>,
}

impl Config {
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Config::parse(&text, path)
    }

    /// Parses `text` as if it were the file at `path` (relative paths resolve against it).
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.message().to_owned()
                + &e.span()
                    .map(|s| format!(" (at byte {})", s.start))
                    .unwrap_or_default(),
        })?;
        let invalid = |field: &str, rule: &str| ConfigError::Invalid {
            path: path.to_owned(),
            field: field.to_owned(),
            rule: rule.to_owned(),
        };
        let base = path.parent().unwrap_or(Path::new("."));
        let resolve = |p: PathBuf| if p.is_absolute() { p } else { base.join(p) };

        if raw.server.max_body_bytes < 1024 {
            return Err(invalid("server.max_body_bytes", "must be at least 1024"));
        }
        if !(1..=100_000).contains(&raw.server.max_batch_items) {
            return Err(invalid(
                "server.max_batch_items",
                "must be between 1 and 100000",
            ));
        }
        if raw.server.handshake_timeout_ms == 0 {
            return Err(invalid("server.handshake_timeout_ms", "must be above 0"));
        }
        if raw.server.header_read_timeout_ms == 0 {
            return Err(invalid("server.header_read_timeout_ms", "must be above 0"));
        }
        if raw.server.max_connections == 0 {
            return Err(invalid("server.max_connections", "must be at least 1"));
        }
        if raw.server.max_concurrent_requests == 0 {
            return Err(invalid(
                "server.max_concurrent_requests",
                "must be at least 1",
            ));
        }
        if raw.server.body_read_timeout_ms == 0 {
            return Err(invalid("server.body_read_timeout_ms", "must be above 0"));
        }
        let max_requests_per_partner = raw
            .server
            .max_requests_per_partner
            .unwrap_or(DEFAULT_MAX_REQUESTS_PER_PARTNER.min(raw.server.max_concurrent_requests));
        if max_requests_per_partner == 0
            || max_requests_per_partner > raw.server.max_concurrent_requests
        {
            return Err(invalid(
                "server.max_requests_per_partner",
                "must be at least 1 and at most server.max_concurrent_requests",
            ));
        }
        if raw.server.max_relay_waiters == 0 {
            return Err(invalid("server.max_relay_waiters", "must be at least 1"));
        }
        // hyper's HTTP/1.1 read buffer cannot be smaller.
        if raw.server.max_header_bytes < 8192 {
            return Err(invalid("server.max_header_bytes", "must be at least 8192"));
        }
        if raw.server.h2_max_concurrent_streams == 0 {
            return Err(invalid(
                "server.h2_max_concurrent_streams",
                "must be at least 1",
            ));
        }
        if raw.snapshot.repo.is_none() && raw.replication.is_none() {
            return Err(invalid(
                "snapshot.repo",
                "is required unless [replication] is configured",
            ));
        }
        let replication = match raw.replication {
            None => None,
            Some(r) => {
                if !["file:///", "https://", "s3://"]
                    .iter()
                    .any(|p| r.source.starts_with(p))
                {
                    return Err(invalid(
                        "replication.source",
                        "must be file:///path, https://host[:port]/path or s3://bucket/prefix",
                    ));
                }
                if r.source.starts_with("https://") && r.ca.is_none() {
                    return Err(invalid("replication.ca", "is required for an https source"));
                }
                if r.client_cert.is_some() != r.client_key.is_some() {
                    return Err(invalid(
                        "replication.client_cert",
                        "client_cert and client_key go together",
                    ));
                }
                if r.poll_interval_ms < 50 {
                    return Err(invalid(
                        "replication.poll_interval_ms",
                        "must be at least 50",
                    ));
                }
                Some(ReplicationConfig {
                    source: r.source,
                    state_dir: resolve(r.state_dir),
                    poll_interval: Duration::from_millis(r.poll_interval_ms),
                    unready_when_stale_for: r.unready_when_stale_for_ms.map(Duration::from_millis),
                    ca: r.ca.map(resolve),
                    client_cert: r.client_cert.map(resolve),
                    client_key: r.client_key.map(resolve),
                    s3_endpoint: r.s3_endpoint,
                    s3_region: r.s3_region,
                })
            }
        };
        if raw.snapshot.publisher_keys.is_empty() {
            return Err(invalid("snapshot.publisher_keys", "needs at least one key"));
        }
        if raw.cache.enabled && raw.cache.max_entries == 0 {
            return Err(invalid(
                "cache.max_entries",
                "must be above 0 when the cache is on",
            ));
        }
        let mut seen = HashSet::new();
        let mut partners = Vec::with_capacity(raw.partners.len());
        for (i, p) in raw.partners.into_iter().enumerate() {
            if !valid_partner_id(&p.id) {
                return Err(invalid(
                    &format!("partners[{i}].id"),
                    "must be 1-64 characters of a-z, 0-9, '-', '_', '.'",
                ));
            }
            if !seen.insert(p.id.clone()) {
                return Err(invalid(&format!("partners[{i}].id"), "appears twice"));
            }
            let rate_limit = match p.rate_limit {
                None => None,
                Some(r) => {
                    if !(r.per_second > 0.0 && r.per_second <= 1e9) {
                        return Err(invalid(
                            &format!("partners[{i}].rate_limit.per_second"),
                            "must be above 0 and at most 1e9",
                        ));
                    }
                    let burst = r.burst.unwrap_or(r.per_second.ceil() as u32);
                    if burst == 0 {
                        return Err(invalid(
                            &format!("partners[{i}].rate_limit.burst"),
                            "must be at least 1",
                        ));
                    }
                    Some(RateLimit {
                        per_second: r.per_second,
                        burst,
                    })
                }
            };
            partners.push(Partner {
                id: p.id,
                scopes: p.scopes.into_iter().collect(),
                rate_limit,
            });
        }
        let key_files = |table: &str, raw: Vec<RawKeyFile>| {
            raw.into_iter()
                .enumerate()
                .map(|(i, k)| {
                    let time = |name: &str, v: Option<String>| match v {
                        None => Ok(None),
                        Some(t) => crate::day::parse_rfc3339(&t).map(Some).ok_or_else(|| {
                            invalid(
                                &format!("{table}[{i}].{name}"),
                                "must be an RFC 3339 time such as 2027-01-01T00:00:00Z",
                            )
                        }),
                    };
                    let validity = Validity {
                        not_before: time("not_before", k.not_before)?,
                        not_after: time("not_after", k.not_after)?,
                    };
                    if let (Some(nb), Some(na)) = (validity.not_before, validity.not_after) {
                        if nb >= na {
                            return Err(invalid(
                                &format!("{table}[{i}].not_after"),
                                "must be after not_before",
                            ));
                        }
                    }
                    Ok(KeyFile {
                        path: resolve(k.path),
                        validity,
                    })
                })
                .collect::<Result<Vec<_>, _>>()
        };
        let receipt_keys = match raw.receipts {
            Some(r) if r.signing_keys.is_empty() => {
                return Err(invalid(
                    "receipts.signing_keys",
                    "needs at least one key (or leave [receipts] out)",
                ))
            }
            Some(r) => key_files("receipts.signing_keys", r.signing_keys)?,
            None => Vec::new(),
        };
        let temp_permits = match raw.temp_permits {
            Some(t) => {
                if t.clock_skew_seconds > 86_400 {
                    return Err(invalid(
                        "temp_permits.clock_skew_seconds",
                        "must be at most 86400 (one day)",
                    ));
                }
                TempPermitConfig {
                    issuer_keys: key_files("temp_permits.issuer_keys", t.issuer_keys)?,
                    clock_skew: time::Duration::seconds(t.clock_skew_seconds as i64),
                }
            }
            None => TempPermitConfig {
                issuer_keys: Vec::new(),
                clock_skew: crate::temp_permit::DEFAULT_CLOCK_SKEW,
            },
        };
        let audit = match raw.audit {
            None => None,
            Some(a) => {
                if a.max_file_bytes < 4096 {
                    return Err(invalid("audit.max_file_bytes", "must be at least 4096"));
                }
                if a.fsync_interval_ms > 60_000 {
                    return Err(invalid(
                        "audit.fsync_interval_ms",
                        "must be at most 60000 (a crash loses up to this much)",
                    ));
                }
                if a.queue_capacity == 0 {
                    return Err(invalid("audit.queue_capacity", "must be at least 1"));
                }
                Some(AuditConfig {
                    dir: resolve(a.dir),
                    max_file_bytes: a.max_file_bytes,
                    fsync_interval: Duration::from_millis(a.fsync_interval_ms),
                    queue_capacity: a.queue_capacity,
                    when_full: a.when_full,
                })
            }
        };
        if (1..10).contains(&raw.snapshot.watch_interval_ms) {
            return Err(invalid(
                "snapshot.watch_interval_ms",
                "must be 0 (do not watch) or at least 10",
            ));
        }
        if (1..100).contains(&raw.server.reload_poll_interval_ms) {
            return Err(invalid(
                "server.reload_poll_interval_ms",
                "must be 0 (SIGHUP only) or at least 100",
            ));
        }
        Ok(Config {
            path: path.to_owned(),
            server: ServerConfig {
                listen: raw.server.listen,
                metrics_listen: raw.server.metrics_listen,
                max_body_bytes: raw.server.max_body_bytes,
                max_batch_items: raw.server.max_batch_items,
                handshake_timeout: Duration::from_millis(raw.server.handshake_timeout_ms),
                max_connections: raw.server.max_connections,
                max_concurrent_requests: raw.server.max_concurrent_requests,
                header_read_timeout: Duration::from_millis(raw.server.header_read_timeout_ms),
                max_header_bytes: raw.server.max_header_bytes,
                h2_max_concurrent_streams: raw.server.h2_max_concurrent_streams,
                reload_poll_interval: (raw.server.reload_poll_interval_ms > 0)
                    .then(|| Duration::from_millis(raw.server.reload_poll_interval_ms)),
                drain_timeout: Duration::from_millis(raw.server.drain_timeout_ms),
                max_queue_delay: (raw.server.max_queue_delay_ms > 0)
                    .then(|| Duration::from_millis(raw.server.max_queue_delay_ms)),
                body_read_timeout: Duration::from_millis(raw.server.body_read_timeout_ms),
                max_requests_per_partner,
                max_relay_waiters: raw.server.max_relay_waiters,
            },
            tls: TlsConfig {
                cert: resolve(raw.tls.cert),
                key: resolve(raw.tls.key),
                client_ca: resolve(raw.tls.client_ca),
                crls: raw.tls.crls.into_iter().map(resolve).collect(),
            },
            snapshot: SnapshotConfig {
                repo: raw.snapshot.repo.map(resolve),
                watch_interval: (raw.snapshot.watch_interval_ms > 0)
                    .then(|| Duration::from_millis(raw.snapshot.watch_interval_ms)),
                publisher_keys: raw
                    .snapshot
                    .publisher_keys
                    .into_iter()
                    .map(resolve)
                    .collect(),
                hash_key: resolve(raw.snapshot.hash_key),
            },
            cache: CacheConfig {
                enabled: raw.cache.enabled,
                max_entries: raw.cache.max_entries,
            },
            partners,
            replication,
            receipt_keys,
            temp_permits,
            audit,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: &str = r#"
[server]
listen = "127.0.0.1:8443"
[tls]
cert = "pki/server.crt"
key = "pki/server.key"
client_ca = "pki/ca.crt"
[snapshot]
repo = "repo"
publisher_keys = ["keys/publisher.pub"]
hash_key = "/etc/permitgate/hash.key"
[[partners]]
id = "bank"
scopes = ["link_check"]
"#;

    #[test]
    fn defaults_and_relative_paths() {
        let c = Config::parse(MIN, Path::new("/srv/pg/gateway.toml")).expect("valid");
        assert_eq!(c.server.max_body_bytes, 262_144);
        assert_eq!(c.server.body_read_timeout, Duration::from_secs(10));
        assert_eq!(c.server.max_requests_per_partner, 128);
        // A smaller total caps the default share, rather than refusing the config.
        let small = MIN.replacen("[tls]", "max_concurrent_requests = 16\n[tls]", 1);
        let capped = Config::parse(&small, Path::new("/srv/pg/gateway.toml")).expect("valid");
        assert_eq!(capped.server.max_requests_per_partner, 16);
        let over = MIN.replacen(
            "[tls]",
            "max_concurrent_requests = 16\nmax_requests_per_partner = 17\n[tls]",
            1,
        );
        let e = Config::parse(&over, Path::new("/srv/pg/gateway.toml")).expect_err("over");
        assert!(
            e.to_string().contains("server.max_requests_per_partner"),
            "{e}"
        );
        assert_eq!(c.server.max_relay_waiters, 4096);
        assert_eq!(c.server.max_batch_items, 1000);
        assert_eq!(
            (c.server.max_connections, c.server.max_concurrent_requests),
            (10_000, 1024)
        );
        assert_eq!(c.server.header_read_timeout, Duration::from_secs(30));
        assert_eq!(c.server.max_header_bytes, 16 * 1024);
        assert_eq!(c.server.drain_timeout, Duration::from_secs(20));
        assert_eq!(c.server.max_queue_delay, Some(Duration::from_millis(50)));
        assert_eq!(c.server.reload_poll_interval, Some(Duration::from_secs(2)));
        assert!(c.tls.crls.is_empty());
        assert!(c.audit.is_none());
        let a = Config::parse(
            &format!("{MIN}[audit]\ndir = \"audit\"\n"),
            Path::new("/srv/g.toml"),
        )
        .expect("audit")
        .audit
        .expect("on");
        assert_eq!(a.dir, Path::new("/srv/audit"));
        assert_eq!(
            (
                a.max_file_bytes,
                a.fsync_interval,
                a.queue_capacity,
                a.when_full
            ),
            (64 << 20, Duration::from_millis(200), 65_536, WhenFull::Shed)
        );
        assert!(!c.cache.enabled);
        assert_eq!(c.tls.cert, Path::new("/srv/pg/pki/server.crt"));
        assert_eq!(c.snapshot.hash_key, Path::new("/etc/permitgate/hash.key"));
        assert!(c.partners[0].scopes.contains(Scope::LinkCheck));
        assert!(!c.partners[0].scopes.contains(Scope::DocumentStatus));
        assert!(
            c.receipt_keys.is_empty(),
            "receipts are off unless configured"
        );
        assert!(c.temp_permits.issuer_keys.is_empty());
        assert_eq!(c.temp_permits.clock_skew, time::Duration::minutes(5));
    }

    #[test]
    fn the_reference_config_parses() {
        let text = include_str!("../config/gateway.toml");
        let c = Config::parse(text, Path::new("config/gateway.toml")).expect("reference config");
        assert_eq!(c.partners.len(), 4);
        assert_eq!(
            c.partners[0].rate_limit,
            Some(RateLimit {
                per_second: 5000.0,
                burst: 10_000
            })
        );
        assert_eq!(c.partners[1].rate_limit, None);
        assert_eq!(c.server.max_body_bytes, DEFAULT_MAX_BODY_BYTES);
        assert_eq!(c.server.handshake_timeout, Duration::from_secs(10));
        assert_eq!(c.receipt_keys.len(), 2);
        assert!(c.receipt_keys[0].validity.not_after.is_some());
        assert_eq!(c.temp_permits.issuer_keys.len(), 1);
        assert_eq!(c.temp_permits.clock_skew, time::Duration::minutes(5));
        assert_eq!(
            c.audit.map(|a| a.when_full),
            Some(crate::audit::WhenFull::Shed)
        );
    }

    #[test]
    fn mistakes_are_named() {
        let p = Path::new("g.toml");
        let typo = MIN.replace("listen =", "listne =");
        let e = Config::parse(&typo, p).expect_err("typo").to_string();
        assert!(e.contains("listne"), "{e}");
        let scope = MIN.replace("\"link_check\"", "\"link_checks\"");
        let e = Config::parse(&scope, p).expect_err("scope").to_string();
        assert!(e.contains("link_checks"), "{e}");
        let dup = format!("{MIN}[[partners]]\nid = \"bank\"\n");
        let e = Config::parse(&dup, p).expect_err("dup").to_string();
        assert!(e.contains("partners[1].id") && e.contains("twice"), "{e}");
        let bad_id = MIN.replace("id = \"bank\"", "id = \"Bank Ltd\"");
        assert!(Config::parse(&bad_id, p).is_err());
        let e = Config::parse(
            &format!("{MIN}[receipts]\nsigning_keys = [{{ path = \"r.key\", not_before = \"yesterday\" }}]\n"),
            p,
        )
        .expect_err("time")
        .to_string();
        assert!(
            e.contains("receipts.signing_keys[0].not_before") && e.contains("RFC 3339"),
            "{e}"
        );
        let e = Config::parse(&format!("{MIN}[receipts]\nsigning_keys = []\n"), p)
            .expect_err("empty")
            .to_string();
        assert!(e.contains("receipts.signing_keys"), "{e}");
        let e = Config::parse(
            &format!("{MIN}[temp_permits]\nclock_skew_seconds = 100000\n"),
            p,
        )
        .expect_err("skew")
        .to_string();
        assert!(e.contains("temp_permits.clock_skew_seconds"), "{e}");
        let e = Config::parse(&format!("{MIN}rate_limit = {{ per_second = 0 }}\n"), p)
            .expect_err("rate")
            .to_string();
        assert!(e.contains("partners[0].rate_limit.per_second"), "{e}");
        let e = Config::parse(
            &format!("{MIN}rate_limit = {{ per_second = 5, burst = 0 }}\n"),
            p,
        )
        .expect_err("burst")
        .to_string();
        assert!(e.contains("partners[0].rate_limit.burst"), "{e}");
        let e = Config::parse(
            &format!("{MIN}[audit]\ndir = \"a\"\nwhen_full = \"block\"\n"),
            p,
        )
        .expect_err("when_full")
        .to_string();
        assert!(e.contains("block"), "{e}");
        let e = Config::parse(
            &format!("{MIN}[audit]\ndir = \"a\"\nqueue_capacity = 0\n"),
            p,
        )
        .expect_err("queue")
        .to_string();
        assert!(e.contains("audit.queue_capacity"), "{e}");
        let small = MIN.replace("[tls]", "max_body_bytes = 10\n[tls]");
        let e = Config::parse(&small, p).expect_err("small").to_string();
        assert!(e.contains("server.max_body_bytes"), "{e}");
    }
}
