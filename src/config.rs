//! Gateway configuration: parsed once from TOML into a validated [`Config`].
//!
//! Unknown keys are errors (a typo must not silently fall back to a default). Relative
//! paths are relative to the config file's directory, so a config can travel with its
//! certificates. `config/gateway.toml` is the commented reference. Each section has a
//! module of its own (vector's layout): its raw form as written, with its defaults, beside
//! its validated form and checks; this file reads the whole (config/reading.rs) and puts it
//! together.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

mod audit;
mod keys;
mod origin;
mod partner_ca;
mod partners;
mod reading;
mod replication;
mod server;
mod snapshot;
mod tls;
mod unauthenticated;

use audit::{audit_config, RawAudit};
use keys::{key_files, receipts_config, RawReceipts, RawTempPermits};
pub use keys::{KeyFile, ReceiptsConfig, TempPermitConfig};
pub use origin::{AuthorityScope, Caller, OriginConfig};
pub use partner_ca::PartnerCaConfig;
pub use partners::{RawPartner, RawRateLimit, Registry, RegistryError};
pub use replication::ReplicationConfig;
use replication::{replication_config, RawReplication};
use server::{server_config, RawServer};
pub use server::{ServerConfig, DEFAULT_MAX_BATCH_ITEMS, DEFAULT_MAX_BODY_BYTES};
pub use snapshot::SnapshotConfig;
use snapshot::{snapshot_config, RawSnapshot};
use tls::RawTls;
pub use tls::TlsConfig;
pub use unauthenticated::UnauthenticatedConfig;
use unauthenticated::{unauthenticated_config, RawUnauthenticated};

use crate::audit::AuditConfig;
use crate::partner::{valid_partner_id, Partner};
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::WhenFull;
    use crate::partner::Scope;
    use crate::rate_limit::RateLimit;
    use crate::replication::SourceUrl;

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

    /// `[unauthenticated] shun_seconds`: 0 turns the shun off; below 0, above 3600 or
    /// nan is refused with the field and the rule.
    #[test]
    fn shun_seconds_is_from_0_to_3600() {
        let p = Path::new("g.toml");
        let with = |v: &str| {
            MIN.replace(
                "[tls]",
                &format!("[unauthenticated]\nshun_seconds = {v}\n[tls]"),
            )
        };
        let c = Config::parse(&with("0.0"), p).expect("0 is off");
        assert!(c.unauthenticated.shun.is_zero());
        let c = Config::parse(MIN, p).expect("default");
        assert_eq!(c.unauthenticated.shun, std::time::Duration::from_secs(1));
        for bad in ["-1.0", "3601.0", "nan"] {
            let Err(ConfigError::Invalid { problems, .. }) = Config::parse(&with(bad), p) else {
                panic!("shun_seconds = {bad} accepted");
            };
            assert_eq!(problems.len(), 1, "{bad}");
            assert_eq!(problems[0].field, "unauthenticated.shun_seconds");
            assert!(
                problems[0].to_string().contains("from 0 (never) to 3600"),
                "{}",
                problems[0]
            );
        }
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
