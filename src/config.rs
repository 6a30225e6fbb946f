//! Gateway configuration: parsed once from TOML into a validated [`Config`].
//!
//! Unknown keys are errors (a typo must not silently fall back to a default). Relative
//! paths are relative to the config file's directory, so a config can travel with its
//! certificates. `config/gateway.toml` is the commented reference.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

mod origin;
mod partner_ca;
mod partners;
mod reading;

pub use origin::{AuthorityScope, Caller, OriginConfig};
pub use partner_ca::PartnerCaConfig;
pub use partners::{RawPartner, RawRateLimit, Registry, RegistryError};

use crate::audit::{AnswerAfter, AuditConfig, WhenFull};
use crate::keyring::Validity;
use crate::partner::{valid_partner_id, Partner};
use crate::rate_limit::RateLimit;
use crate::replication::SourceUrl;
use crate::store::CacheConfig;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config {}{}: {message}", path.display(), at.map(|(l, c)| format!(" line {l} column {c}")).unwrap_or_default())]
    Parse {
        path: PathBuf,
        /// Line and column (from 1) where TOML reports the mistake, when it says.
        at: Option<(usize, usize)>,
        message: String,
    },
    #[error("config {}: {}", path.display(), one_per_line(problems))]
    Invalid {
        path: PathBuf,
        /// Every problem found: TOML-level mistakes, then rules.
        problems: Vec<Invalid>,
        /// What could be read, with defaults where values were set aside and empty paths
        /// where required ones are missing: `config check` looks at its files too.
        partial: Option<Box<Config>>,
    },
}

/// One field that breaks a rule, or a TOML-level mistake (with its place in the file).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}{}: {rule}", at.map(|(l, c)| format!(" (line {l} column {c})")).unwrap_or_default())]
pub struct Invalid {
    pub field: String,
    pub rule: String,
    /// Line and column (from 1) of a TOML-level mistake.
    pub at: Option<(usize, usize)>,
}

#[derive(Debug, Clone)]
pub struct Config {
    /// The file this was read from: reloads read it again.
    pub path: PathBuf,
    pub server: ServerConfig,
    /// What anyone who reaches the port may hold before its certificate is seen.
    pub unauthenticated: UnauthenticatedConfig,
    pub tls: TlsConfig,
    pub snapshot: SnapshotConfig,
    pub cache: CacheConfig,
    pub partners: Vec<Partner>,
    /// The partner registry (src/config/partners.rs), reloaded with the config.
    pub partners_file: Option<PathBuf>,
    /// Renewal of partners' certificates over the API; `None`: not offered.
    pub partner_ca: Option<PartnerCaConfig>,
    pub replication: Option<ReplicationConfig>,
    /// Receipt signing keys and who signs; no keys when receipts are off.
    pub receipts: ReceiptsConfig,
    pub temp_permits: TempPermitConfig,
    /// `None`: no audit trail (the gateway warns at start).
    pub audit: Option<AuditConfig>,
    /// The authority's API, served by `permitgate origin` (src/origin).
    pub origin: Option<OriginConfig>,
}

/// A key file and the window in which the key may sign.
#[derive(Debug, Clone)]
pub struct KeyFile {
    pub path: PathBuf,
    pub validity: Validity,
}

#[derive(Debug, Clone, Default)]
pub struct ReceiptsConfig {
    /// Receipt signing keys (PKCS#8 PEM); empty when receipts are off.
    pub signing_keys: Vec<KeyFile>,
    /// Printed on the paper document, published with the keys (`GET /v1/keys`).
    pub authority: Option<crate::keyring::Authority>,
    /// The verifier page a receipt's QR code opens (`<verify_url>#<receipt>`); also published
    /// with the keys.
    pub verify_url: Option<String>,
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
    pub source: SourceUrl,
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

// The file as written. Each section with defaults has one `Default` (the documented
// defaults, config/gateway.toml); a required field is an `Option` so that its absence is
// reported with every other problem rather than as the first parse error.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    server: RawServer,
    #[serde(default)]
    unauthenticated: RawUnauthenticated,
    tls: Option<RawTls>,
    #[serde(default)]
    snapshot: RawSnapshot,
    #[serde(default)]
    cache: CacheConfig,
    #[serde(default)]
    partners: Vec<partners::RawPartner>,
    /// The partner registry: more `[[partners]]`, in a file of their own.
    partners_file: Option<PathBuf>,
    partner_ca: Option<partner_ca::RawPartnerCa>,
    replication: Option<RawReplication>,
    receipts: Option<RawReceipts>,
    #[serde(default)]
    temp_permits: RawTempPermits,
    audit: Option<RawAudit>,
    origin: Option<origin::RawOrigin>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawServer {
    listen: Option<SocketAddr>,
    metrics_listen: Option<SocketAddr>,
    max_body_bytes: usize,
    max_batch_items: usize,
    handshake_timeout_ms: u64,
    max_connections: usize,
    max_concurrent_requests: usize,
    header_read_timeout_ms: u64,
    max_header_bytes: usize,
    h2_max_concurrent_streams: u32,
    reload_poll_interval_ms: u64,
    drain_timeout_ms: u64,
    max_queue_delay_ms: u64,
    body_read_timeout_ms: u64,
    partner_certificate_warning_days: u32,
    /// Default: none (the fair share alone).
    max_requests_per_partner: Option<usize>,
    max_relay_waiters: usize,
    write_timeout_ms: u64,
    send_buffer_bytes: usize,
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawUnauthenticated {
    max_connections: usize,
    max_per_source: usize,
    max_per_prefix: usize,
    prefix_v4: u8,
    prefix_v6: u8,
    handshakes_per_second_per_source: f64,
    handshakes_per_second_per_prefix: f64,
    handshakes_per_second: f64,
    max_queued_handshakes: usize,
    partner_networks: Vec<String>,
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
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawTls {
    cert: PathBuf,
    key: PathBuf,
    client_ca: PathBuf,
    #[serde(default)]
    crls: Vec<PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawSnapshot {
    repo: Option<PathBuf>,
    watch_interval_ms: u64,
    publisher_keys: Vec<PathBuf>,
    hash_key: Option<PathBuf>,
}

impl Default for RawSnapshot {
    fn default() -> Self {
        RawSnapshot {
            repo: None,
            watch_interval_ms: 50,
            publisher_keys: Vec::new(),
            hash_key: None,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawReplication {
    source: Option<String>,
    state_dir: Option<PathBuf>,
    poll_interval_ms: u64,
    unready_when_stale_for_ms: Option<u64>,
    ca: Option<PathBuf>,
    client_cert: Option<PathBuf>,
    client_key: Option<PathBuf>,
    s3_endpoint: Option<String>,
    s3_region: Option<String>,
}

impl Default for RawReplication {
    fn default() -> Self {
        RawReplication {
            source: None,
            state_dir: None,
            poll_interval_ms: 1000,
            unready_when_stale_for_ms: None,
            ca: None,
            client_cert: None,
            client_key: None,
            s3_endpoint: None,
            s3_region: None,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawReceipts {
    signing_keys: Vec<RawKeyFile>,
    authority: Option<crate::keyring::Authority>,
    verify_url: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawTempPermits {
    issuer_keys: Vec<RawKeyFile>,
    clock_skew_seconds: u64,
}

impl Default for RawTempPermits {
    fn default() -> Self {
        RawTempPermits {
            issuer_keys: Vec::new(),
            clock_skew_seconds: crate::temp_permit::DEFAULT_CLOCK_SKEW.whole_seconds() as u64,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawAudit {
    dir: Option<PathBuf>,
    max_file_bytes: u64,
    fsync_interval_ms: u64,
    queue_capacity: usize,
    when_full: WhenFull,
    answer_after: AnswerAfter,
    checkpoint_key: Option<PathBuf>,
    checkpoint_dir: Option<PathBuf>,
    checkpoint_interval_ms: u64,
}

impl Default for RawAudit {
    fn default() -> Self {
        RawAudit {
            dir: None,
            max_file_bytes: 64 * 1024 * 1024,
            fsync_interval_ms: 200,
            queue_capacity: 65_536,
            when_full: WhenFull::Shed,
            answer_after: AnswerAfter::Write,
            checkpoint_key: None,
            checkpoint_dir: None,
            checkpoint_interval_ms: 5000,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKeyFile {
    path: PathBuf,
    not_before: Option<String>,
    not_after: Option<String>,
}

/// The problems found so far; validation goes on after the first (vector's config
/// validation does the same), so that one run of `config check` names them all.
#[derive(Default)]
struct Problems(Vec<Invalid>);

impl Problems {
    /// Records `rule` against `field` unless `ok`.
    fn check(&mut self, ok: bool, field: impl Into<String>, rule: &str) {
        if !ok {
            self.0.push(Invalid {
                field: field.into(),
                rule: rule.to_owned(),
                at: None,
            });
        }
    }

    /// A name people read (an office, an organisation's display name).
    fn check_name(&mut self, name: &str, field: impl Into<String>) {
        self.check(
            (1..=100).contains(&name.chars().count()) && !name.chars().any(char::is_control),
            field,
            "must be 1-100 characters, no control characters",
        );
    }

    /// A required value, or a problem recorded and `None`.
    fn required<T>(&mut self, value: Option<T>, field: &str) -> Option<T> {
        self.check(value.is_some(), field, "is required");
        value
    }
}

/// Line and column (from 1) of byte `offset` in `text`.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

impl Config {
    /// The sections of `new` that differ from `self` and that only a restart puts in use.
    /// A reload applies `[tls]` (files and paths), the partners (`[[partners]]`,
    /// `partners_file`), `[receipts]` and `[temp_permits]`; everything else is read at start.
    pub fn restart_needed(&self, new: &Config) -> Vec<&'static str> {
        // Compared by their Debug form: plain data all through, and no PartialEq to keep
        // in step with every field of every section.
        fn differs(a: &dyn std::fmt::Debug, b: &dyn std::fmt::Debug) -> bool {
            format!("{a:?}") != format!("{b:?}")
        }
        [
            ("server", differs(&self.server, &new.server)),
            (
                "unauthenticated",
                differs(&self.unauthenticated, &new.unauthenticated),
            ),
            ("snapshot", differs(&self.snapshot, &new.snapshot)),
            ("cache", differs(&self.cache, &new.cache)),
            ("partner_ca", differs(&self.partner_ca, &new.partner_ca)),
            ("replication", differs(&self.replication, &new.replication)),
            ("audit", differs(&self.audit, &new.audit)),
            ("origin", differs(&self.origin, &new.origin)),
        ]
        .into_iter()
        .filter_map(|(section, changed)| changed.then_some(section))
        .collect()
    }
}

/// One problem as it is; several counted, one per line (`config check` prints them so).
fn one_per_line(problems: &[Invalid]) -> String {
    match problems {
        [one] => one.to_string(),
        _ => format!(
            "{} problems:{}",
            problems.len(),
            problems
                .iter()
                .map(|p| format!("\n  {p}"))
                .collect::<String>()
        ),
    }
}

/// Whether `field` is `entry` or inside it (`tls.cert` is within `tls`, not within `tl`).
fn within(field: &str, entry: &str) -> bool {
    field
        .strip_prefix(entry)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with(['.', '[']))
}

/// Milliseconds, where 0 means "off".
fn millis_or_off(ms: u64) -> Option<Duration> {
    (ms > 0).then(|| Duration::from_millis(ms))
}

impl Config {
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Config::parse(&text, path)
    }

    /// Parses `text` as if it were the file at `path` (relative paths resolve against it),
    /// and reports every rule the values break.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let mut read = reading::read::<RawConfig>(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            at: e.span().map(|s| line_column(text, s.start)),
            message: e.message().to_owned(),
        })?;
        let mut mistakes: Vec<Invalid> = (read.mistakes.iter())
            .map(|m| Invalid {
                field: m.field.clone(),
                rule: m.message.clone(),
                at: m.at,
            })
            .collect();
        // In the file's order, as a person goes through them.
        mistakes.sort_by_key(|m| m.at);
        let Some(mut raw) = read.value.take() else {
            return Err(ConfigError::Invalid {
                path: path.to_owned(),
                problems: mistakes,
                partial: None,
            });
        };
        let base = path.parent().unwrap_or(Path::new("."));
        // An empty path (a required one left out) stays empty: its file is not looked for.
        let resolve = |p: PathBuf| {
            if p.is_absolute() || p.as_os_str().is_empty() {
                p
            } else {
                base.join(p)
            }
        };
        let mut problems = Problems::default();
        let raw_tls = problems.required(raw.tls.take(), "tls").unwrap_or_default();
        let server = server_config(raw.server, &mut problems);
        let unauthenticated = unauthenticated_config(raw.unauthenticated, &mut problems);
        let snapshot = snapshot_config(
            raw.snapshot,
            raw.replication.is_some(),
            &resolve,
            &mut problems,
        );
        let replication = raw
            .replication
            .and_then(|r| replication_config(r, &resolve, &mut problems));
        problems.check(
            !raw.cache.enabled || raw.cache.max_entries > 0,
            "cache.max_entries",
            "must be above 0 when the cache is on",
        );
        let partners_file = raw.partners_file.map(&resolve);
        let registered = match &partners_file {
            Some(path) => match partners::Registry::load(path) {
                Ok(r) => r.partners,
                Err(e) => {
                    problems.check(
                        false,
                        "partners_file",
                        &crate::report::Report(&e).to_string(),
                    );
                    Vec::new()
                }
            },
            None => Vec::new(),
        };
        let partners = partners::partners(raw.partners, registered, &mut problems);
        let receipts = raw
            .receipts
            .map(|r| receipts_config(r, &resolve, &mut problems))
            .unwrap_or_default();
        let t = raw.temp_permits;
        problems.check(
            t.clock_skew_seconds <= 86_400,
            "temp_permits.clock_skew_seconds",
            "must be at most 86400 (one day)",
        );
        let temp_permits = TempPermitConfig {
            issuer_keys: key_files(
                "temp_permits.issuer_keys",
                t.issuer_keys,
                &resolve,
                &mut problems,
            ),
            clock_skew: time::Duration::seconds(t.clock_skew_seconds.min(86_400) as i64),
        };
        let audit = raw
            .audit
            .and_then(|a| audit_config(a, &resolve, &mut problems));
        let partner_client_ca = resolve(raw_tls.client_ca.clone());
        let origin = raw.origin.and_then(|o| {
            let listen: Vec<SocketAddr> = [Some(server.listen), server.metrics_listen]
                .into_iter()
                .flatten()
                .collect();
            let ids: Vec<&str> = partners.iter().map(|p| p.id.as_str()).collect();
            origin::origin_config(
                o,
                origin::Partners {
                    listen: &listen,
                    client_ca: &partner_client_ca,
                    ids: &ids,
                    has_repo: snapshot.repo.is_some(),
                },
                &resolve,
                &mut problems,
            )
        });
        let client_ca = resolve(raw_tls.client_ca.clone());
        let partner_ca = raw
            .partner_ca
            .and_then(|r| partner_ca::partner_ca_config(r, &client_ca, &resolve, &mut problems));
        problems.check(
            partner_ca.is_none() || partners_file.is_some(),
            "partner_ca",
            "renewals are recorded in the partner registry: set partners_file too",
        );
        // A value set aside as a mistake is not reported again as missing or defaulted.
        for p in &mut problems.0 {
            p.field = read.as_written(&p.field);
        }
        problems
            .0
            .retain(|p| !mistakes.iter().any(|m| within(&p.field, &m.field)));
        let config = Config {
            path: path.to_owned(),
            server,
            unauthenticated,
            tls: TlsConfig {
                cert: resolve(raw_tls.cert),
                key: resolve(raw_tls.key),
                client_ca: resolve(raw_tls.client_ca),
                crls: raw_tls.crls.into_iter().map(resolve).collect(),
            },
            snapshot,
            cache: raw.cache,
            partners,
            partners_file,
            partner_ca,
            replication,
            receipts,
            temp_permits,
            audit,
            origin,
        };
        if !mistakes.is_empty() || !problems.0.is_empty() {
            return Err(ConfigError::Invalid {
                path: path.to_owned(),
                problems: mistakes.into_iter().chain(problems.0).collect(),
                partial: Some(Box::new(config)),
            });
        }
        Ok(config)
    }
}

// Each section's checks and conversion. A value that breaks a rule is recorded in
// `problems`; what is returned then is never used (`parse` returns the problems).

fn unauthenticated_config(u: RawUnauthenticated, problems: &mut Problems) -> UnauthenticatedConfig {
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
    }
}

fn server_config(s: RawServer, problems: &mut Problems) -> ServerConfig {
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

fn snapshot_config(
    s: RawSnapshot,
    replicated: bool,
    resolve: &dyn Fn(PathBuf) -> PathBuf,
    problems: &mut Problems,
) -> SnapshotConfig {
    problems.check(
        s.repo.is_some() || replicated,
        "snapshot.repo",
        "is required unless [replication] is configured",
    );
    problems.check(
        !s.publisher_keys.is_empty(),
        "snapshot.publisher_keys",
        "needs at least one key",
    );
    let hash_key = problems.required(s.hash_key, "snapshot.hash_key");
    problems.check(
        !(1..10).contains(&s.watch_interval_ms),
        "snapshot.watch_interval_ms",
        "must be 0 (do not watch) or at least 10",
    );
    SnapshotConfig {
        repo: s.repo.map(resolve),
        watch_interval: millis_or_off(s.watch_interval_ms),
        publisher_keys: s.publisher_keys.into_iter().map(resolve).collect(),
        hash_key: resolve(hash_key.unwrap_or_default()),
    }
}

fn replication_config(
    r: RawReplication,
    resolve: &dyn Fn(PathBuf) -> PathBuf,
    problems: &mut Problems,
) -> Option<ReplicationConfig> {
    let source = problems
        .required(r.source, "replication.source")
        .and_then(|s| match s.parse::<SourceUrl>() {
            Ok(url) => Some(url),
            Err(_) => {
                problems.check(
                    false,
                    "replication.source",
                    "must be file:///path, https://host[:port]/path or s3://bucket/prefix",
                );
                None
            }
        });
    let state_dir = problems.required(r.state_dir, "replication.state_dir");
    problems.check(
        !matches!(source, Some(SourceUrl::Https(_))) || r.ca.is_some(),
        "replication.ca",
        "is required for an https source",
    );
    problems.check(
        r.client_cert.is_some() == r.client_key.is_some(),
        "replication.client_cert",
        "client_cert and client_key go together",
    );
    problems.check(
        r.poll_interval_ms >= 50,
        "replication.poll_interval_ms",
        "must be at least 50",
    );
    Some(ReplicationConfig {
        source: source?,
        state_dir: resolve(state_dir?),
        poll_interval: Duration::from_millis(r.poll_interval_ms),
        unready_when_stale_for: r.unready_when_stale_for_ms.map(Duration::from_millis),
        ca: r.ca.map(resolve),
        client_cert: r.client_cert.map(resolve),
        client_key: r.client_key.map(resolve),
        s3_endpoint: r.s3_endpoint,
        s3_region: r.s3_region,
    })
}

fn receipts_config(
    r: RawReceipts,
    resolve: &dyn Fn(PathBuf) -> PathBuf,
    problems: &mut Problems,
) -> ReceiptsConfig {
    problems.check(
        !r.signing_keys.is_empty(),
        "receipts.signing_keys",
        "needs at least one key (or leave [receipts] out)",
    );
    let authority = r.authority.map(|a| {
        let mut name = |field: &str, text: String| match crate::person_name::normalize(&text) {
            Ok(n) => n,
            Err(e) => {
                problems.check(false, format!("receipts.authority.{field}"), &e.to_string());
                text
            }
        };
        crate::keyring::Authority {
            zh: name("zh", a.zh),
            en: name("en", a.en),
        }
    });
    if let Some(url) = &r.verify_url {
        if let Err(e) = crate::keyring::check_verify_url(url) {
            problems.check(false, "receipts.verify_url", &e.to_string());
        }
    }
    ReceiptsConfig {
        signing_keys: key_files("receipts.signing_keys", r.signing_keys, resolve, problems),
        authority,
        verify_url: r.verify_url,
    }
}

fn key_files(
    table: &str,
    raw: Vec<RawKeyFile>,
    resolve: &dyn Fn(PathBuf) -> PathBuf,
    problems: &mut Problems,
) -> Vec<KeyFile> {
    raw.into_iter()
        .enumerate()
        .map(|(i, k)| {
            let mut time = |name: &str, v: Option<String>| {
                let parsed = v.as_deref().map(crate::day::parse_rfc3339);
                problems.check(
                    !matches!(parsed, Some(None)),
                    format!("{table}[{i}].{name}"),
                    "must be an RFC 3339 time such as 2027-01-01T00:00:00Z",
                );
                parsed.flatten()
            };
            let validity = Validity {
                not_before: time("not_before", k.not_before),
                not_after: time("not_after", k.not_after),
            };
            if let (Some(nb), Some(na)) = (validity.not_before, validity.not_after) {
                problems.check(
                    nb < na,
                    format!("{table}[{i}].not_after"),
                    "must be after not_before",
                );
            }
            KeyFile {
                path: resolve(k.path),
                validity,
            }
        })
        .collect()
}

fn audit_config(
    a: RawAudit,
    resolve: &dyn Fn(PathBuf) -> PathBuf,
    problems: &mut Problems,
) -> Option<AuditConfig> {
    let dir = problems.required(a.dir, "audit.dir");
    problems.check(
        a.max_file_bytes >= 4096,
        "audit.max_file_bytes",
        "must be at least 4096",
    );
    problems.check(
        a.fsync_interval_ms <= 60_000,
        "audit.fsync_interval_ms",
        "must be at most 60000 (a crash loses up to this much)",
    );
    problems.check(
        a.queue_capacity > 0,
        "audit.queue_capacity",
        "must be at least 1",
    );
    let dir = resolve(dir?);
    let checkpoints = match (a.checkpoint_key, a.checkpoint_dir) {
        (None, None) => None,
        (Some(key), Some(cdir)) => {
            let cdir = resolve(cdir);
            problems.check(
                !cdir.starts_with(&dir),
                "audit.checkpoint_dir",
                "must be outside audit.dir: whoever can rewrite the log must not reach the checkpoints",
            );
            problems.check(
                (100..=3_600_000).contains(&a.checkpoint_interval_ms),
                "audit.checkpoint_interval_ms",
                "must be from 100 to 3600000",
            );
            Some(crate::audit::CheckpointConfig {
                dir: cdir,
                key: resolve(key),
                interval: Duration::from_millis(a.checkpoint_interval_ms),
            })
        }
        (Some(_), None) => {
            problems.check(
                false,
                "audit.checkpoint_dir",
                "is required with audit.checkpoint_key",
            );
            None
        }
        (None, Some(_)) => {
            problems.check(
                false,
                "audit.checkpoint_key",
                "is required with audit.checkpoint_dir",
            );
            None
        }
    };
    Some(AuditConfig {
        dir,
        max_file_bytes: a.max_file_bytes,
        fsync_interval: Duration::from_millis(a.fsync_interval_ms),
        queue_capacity: a.queue_capacity,
        when_full: a.when_full,
        answer_after: a.answer_after,
        checkpoints,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::partner::Scope;

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
        // No fixed cap by default: fair shares of the slots (src/shares.rs).
        assert_eq!(c.server.max_requests_per_partner, None);
        assert_eq!(c.partners[0].weight, 1);
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
            c.receipts.signing_keys.is_empty(),
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
        assert_eq!(c.receipts.signing_keys.len(), 2);
        assert!(c.receipts.signing_keys[0].validity.not_after.is_some());
        assert!(c.receipts.authority.is_some() && c.receipts.verify_url.is_some());
        assert_eq!(c.temp_permits.issuer_keys.len(), 1);
        assert_eq!(c.temp_permits.clock_skew, time::Duration::minutes(5));
        assert_eq!(
            c.audit.map(|a| a.when_full),
            Some(crate::audit::WhenFull::Shed)
        );
    }

    #[test]
    fn every_problem_is_reported_not_just_the_first() {
        let p = Path::new("g.toml");
        let text = MIN
            .replace(
                "[tls]",
                "max_body_bytes = 10\nmax_header_bytes = 100\n[tls]",
            )
            .replace("id = \"bank\"", "id = \"Bank Ltd\"")
            + "[audit]\nqueue_capacity = 0\n";
        let Err(ConfigError::Invalid { problems, .. }) = Config::parse(&text, p) else {
            panic!("invalid config accepted");
        };
        let fields: Vec<&str> = problems.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "server.max_body_bytes",
                "server.max_header_bytes",
                "partners[0].id",
                "audit.dir",
                "audit.queue_capacity"
            ]
        );
        let required = MIN.replace("listen = \"127.0.0.1:8443\"", "");
        let e = Config::parse(&required, p)
            .expect_err("no listen")
            .to_string();
        assert!(e.contains("server.listen: is required"), "{e}");
    }

    /// One run names every mistake: the TOML-level ones with their line and column, then
    /// the rules; a value set aside is not reported again, and a default never is.
    #[test]
    fn one_mistake_of_every_kind_in_one_run() {
        let p = Path::new("g.toml");
        let text = MIN
            .replace("listen =", "listne =")
            .replace(
                "hash_key = \"/etc/permitgate/hash.key\"",
                "hash_key = \"/etc/permitgate/hash.key\"\nwatch_interval_ms = \"soon\"",
            )
            .replace(
                "scopes = [\"link_check\"]",
                "scopes = [\"link_check\", \"everything\"]\nrate_limit = { per_second = 0 }",
            )
            + "[[partners]]\nscopes = [\"receipt\"]\n"
            + "[[partners]]\nid = \"Rail Gate\"\n"
            + "[tls.extra]\n";
        let Err(ConfigError::Invalid { problems, .. }) = Config::parse(&text, p) else {
            panic!("accepted");
        };
        let said: Vec<String> = problems.iter().map(ToString::to_string).collect();
        let has = |field: &str, at: Option<(usize, usize)>, words: &str| {
            assert!(
                problems
                    .iter()
                    .any(|q| q.field == field && q.at == at && q.rule.contains(words)),
                "{field} {at:?} {words:?} in {said:#?}"
            );
        };
        // An unknown field, a wrong type, a value outside an enum, a missing field.
        has("server.listne", Some((3, 1)), "unknown field `listne`");
        has("snapshot.watch_interval_ms", Some((12, 21)), "invalid type");
        has(
            "partners[0].scopes[1]",
            Some((15, 25)),
            "unknown variant `everything`",
        );
        has("partners[1]", Some((17, 1)), "missing field `id`");
        has("tls.extra", Some((21, 6)), "unknown field `extra`");
        // Rules, on what could be read.
        has("server.listen", None, "is required");
        has("partners[0].rate_limit.per_second", None, "must be above 0");
        has("partners[2].id", None, "must be 1-64 characters");
        // No burst was written: its default is not a mistake.
        assert!(!said.iter().any(|s| s.contains("burst")), "{said:#?}");
        assert_eq!(problems.len(), 8, "{said:#?}");
        let e = ConfigError::Invalid {
            path: p.into(),
            problems,
            partial: None,
        }
        .to_string();
        assert!(
            e.contains("server.listne (line 3 column 1): unknown field `listne`"),
            "{e}"
        );
    }

    /// What a reload applies and what it names as needing a restart.
    #[test]
    fn a_reload_names_the_sections_only_a_restart_applies() {
        let p = Path::new("/srv/g.toml");
        let running = Config::parse(MIN, p).expect("valid");
        let keys = format!("{MIN}[receipts]\nsigning_keys = [{{ path = \"r2.key\" }}]\n[temp_permits]\nissuer_keys = [{{ path = \"t2.pub\" }}]\n");
        let reloaded =
            Config::parse(&keys.replace("pki/server.crt", "pki/new.crt"), p).expect("valid");
        assert!(running.restart_needed(&reloaded).is_empty());
        let listen = MIN.replace("127.0.0.1:8443", "127.0.0.1:9443") + "[cache]\nmax_entries = 5\n";
        let changed = Config::parse(&listen, p).expect("valid");
        assert_eq!(running.restart_needed(&changed), ["server", "cache"]);
    }

    #[test]
    fn a_syntax_error_says_where() {
        let e = Config::parse(&MIN.replace("[snapshot]", "[snapshot"), Path::new("g.toml"))
            .expect_err("unclosed")
            .to_string();
        assert!(e.starts_with("config g.toml line 8 column 10:"), "{e}");
    }

    #[test]
    fn replication_sources_are_parsed_once() {
        let p = Path::new("/srv/g.toml");
        let with = |source: &str| {
            Config::parse(
                &format!("{MIN}[replication]\nsource = \"{source}\"\nstate_dir = \"state\"\nca = \"ca.crt\"\n"),
                p,
            )
        };
        let c = with("https://origin:8443/v1/replication/").expect("https");
        assert_eq!(
            c.replication.map(|r| r.source),
            Some(SourceUrl::Https(
                "https://origin:8443/v1/replication".into()
            ))
        );
        let c = with("s3://bucket/some/prefix").expect("s3");
        assert_eq!(
            c.replication.map(|r| r.source),
            Some(SourceUrl::S3 {
                bucket: "bucket".into(),
                prefix: "some/prefix".into()
            })
        );
        for bad in ["ftp://x", "file://relative", "s3:///nobucket", "https://"] {
            let e = with(bad).expect_err(bad).to_string();
            assert!(e.contains("replication.source: must be"), "{bad}: {e}");
        }
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
        // Display names are signed into receipts: an organisation's name, not a letter.
        let named = |zh: usize| {
            MIN.replace(
                "id = \"bank\"",
                &format!("id = \"bank\"\ndisplay_name_zh = \"{}\"", "银".repeat(zh)),
            )
        };
        assert!(Config::parse(&named(crate::partner::DISPLAY_NAME_ZH_MAX), p).is_ok());
        let e = Config::parse(&named(crate::partner::DISPLAY_NAME_ZH_MAX + 1), p)
            .expect_err("long name")
            .to_string();
        assert!(
            e.contains("partners[0].display_name_zh") && e.contains("signed into receipts"),
            "{e}"
        );
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
        let receipts = |extra: &str| {
            Config::parse(
                &format!("{MIN}[receipts]\nsigning_keys = [{{ path = \"r.key\" }}]\n{extra}\n"),
                p,
            )
        };
        for (extra, field) in [
            ("verify_url = \"ftp://x/\"", "receipts.verify_url"),
            ("verify_url = \"https://x/v/#here\"", "receipts.verify_url"),
            ("verify_url = \"https:///v/\"", "receipts.verify_url"),
            (
                "verify_url = \"javascript:alert(1)//\"",
                "receipts.verify_url",
            ),
            (
                "verify_url = \"http://verify.example/v/\"",
                "receipts.verify_url",
            ),
            (
                "authority = { zh = \"  \", en = \"A\" }",
                "receipts.authority.zh",
            ),
            (
                "authority = { zh = \"局\", en = \"A\\u0007\" }",
                "receipts.authority.en",
            ),
        ] {
            let e = receipts(extra).expect_err(extra).to_string();
            assert!(e.contains(field), "{extra}: {e}");
        }
        let c = receipts(
            "authority = { zh = \" 局 \", en = \"Bureau\" }\nverify_url = \"https://v.example/v/\"",
        )
        .expect("valid");
        assert_eq!(
            c.receipts.authority.map(|a| a.zh),
            Some("局".to_owned()),
            "trimmed"
        );
        assert_eq!(
            c.receipts.verify_url.as_deref(),
            Some("https://v.example/v/")
        );
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
