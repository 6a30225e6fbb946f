//! `[origin]`: the authority's own API (issuing and revoking temporary permits), served
//! by `permitgate origin` on a listener of its own, to callers whose certificates chain to
//! a client CA of their own. No partner can reach it: the partner listener has no
//! authority route, and the authority listener trusts no partner CA. A config that mixes
//! the two (one listener, one CA, one id for a caller and a partner) is refused.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::Problems;

/// What an authority caller may do. No partner scope is one of these, and no partner
/// table accepts them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthorityScope {
    TempPermitIssue,
    TempPermitRevoke,
    TempPermitRead,
}

#[derive(Debug, Clone)]
pub struct Caller {
    /// From the caller's certificate: SAN URI `spiffe://authority/<id>`.
    pub id: String,
    /// The office it works for, recorded with every write.
    pub office: String,
    pub scopes: Vec<AuthorityScope>,
}

#[derive(Debug, Clone)]
pub struct OriginConfig {
    pub listen: SocketAddr,
    /// Plain HTTP for Prometheus (`/metrics`) and probes (`/healthz`); none when absent.
    pub metrics_listen: Option<SocketAddr>,
    /// The CA the authority's callers' certificates chain to.
    pub client_ca: PathBuf,
    /// The repository's publishing key (Ed25519, PKCS#8 PEM).
    pub publisher_key: PathBuf,
    /// The temporary-permit issuing key (Ed25519, PKCS#8 PEM).
    pub temp_permit_key: PathBuf,
    /// Writes arriving this close together are published as one delta.
    pub batch_window: Duration,
    /// How long a manifest the origin publishes stays fresh.
    pub manifest_expires_in: time::Duration,
    pub max_deltas: usize,
    /// How far `issued_at` may be from the origin's clock.
    pub clock_skew: time::Duration,
    /// The audit trail of authority calls.
    pub audit_dir: PathBuf,
    pub callers: Vec<Caller>,
    /// The repository of record in an object store, shared by several origins;
    /// `snapshot.repo` is then this origin's local copy of it. `None`: `snapshot.repo` is
    /// the repository.
    pub bucket: Option<Bucket>,
}

/// `origin.bucket`: `s3://bucket/prefix`, and where the store is.
#[derive(Debug, Clone)]
pub struct Bucket {
    pub name: String,
    pub prefix: String,
    pub s3: crate::replication::S3Settings,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawOrigin {
    listen: Option<SocketAddr>,
    metrics_listen: Option<SocketAddr>,
    client_ca: Option<PathBuf>,
    publisher_key: Option<PathBuf>,
    temp_permit_key: Option<PathBuf>,
    #[serde(default = "default_batch_window_ms")]
    batch_window_ms: u64,
    #[serde(default = "default_manifest_expires_hours")]
    manifest_expires_hours: u64,
    #[serde(default = "default_max_deltas")]
    max_deltas: usize,
    #[serde(default = "default_clock_skew_seconds")]
    clock_skew_seconds: u64,
    audit_dir: Option<PathBuf>,
    #[serde(default)]
    callers: Vec<RawCaller>,
    bucket: Option<String>,
    s3_endpoint: Option<String>,
    s3_region: Option<String>,
}

fn default_batch_window_ms() -> u64 {
    2
}
fn default_manifest_expires_hours() -> u64 {
    24
}
fn default_max_deltas() -> usize {
    crate::publish::DEFAULT_MAX_DELTAS
}
fn default_clock_skew_seconds() -> u64 {
    300
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCaller {
    id: String,
    office: String,
    #[serde(default)]
    scopes: Vec<AuthorityScope>,
}

/// What the rest of the config says, that the origin must not share.
pub(super) struct Partners<'a> {
    pub listen: &'a [SocketAddr],
    pub client_ca: &'a std::path::Path,
    pub ids: &'a [&'a str],
    pub has_repo: bool,
}

pub(super) fn origin_config(
    o: RawOrigin,
    partners: Partners<'_>,
    resolve: &dyn Fn(PathBuf) -> PathBuf,
    problems: &mut Problems,
) -> Option<OriginConfig> {
    let listen = problems.required(o.listen, "origin.listen");
    if let Some(l) = listen {
        // Port 0 (an ephemeral port, tests) cannot be the same port twice.
        problems.check(
            l.port() == 0 || !partners.listen.contains(&l),
            "origin.listen",
            "must differ from server.listen and server.metrics_listen: partners never reach the authority API",
        );
    }
    if let Some(m) = o.metrics_listen {
        problems.check(
            m.port() == 0 || (Some(m) != listen && !partners.listen.contains(&m)),
            "origin.metrics_listen",
            "must differ from origin.listen, server.listen and server.metrics_listen",
        );
    }
    let client_ca = problems.required(o.client_ca.map(resolve), "origin.client_ca");
    if let Some(ca) = &client_ca {
        problems.check(
            ca.as_path() != partners.client_ca,
            "origin.client_ca",
            "must not be the partners' client CA (tls.client_ca): no partner certificate may reach the authority API",
        );
    }
    problems.check(
        partners.has_repo,
        "snapshot.repo",
        "is required with [origin]: the repository the origin publishes into (with origin.bucket, its local copy)",
    );
    let bucket = o.bucket.and_then(|url| match url.parse() {
        Ok(crate::replication::SourceUrl::S3 { bucket, prefix }) => Some(Bucket {
            name: bucket,
            prefix,
            s3: crate::replication::S3Settings {
                endpoint: o.s3_endpoint.clone(),
                region: o.s3_region.clone(),
            },
        }),
        _ => {
            problems.check(
                false,
                "origin.bucket",
                "must be s3://bucket/prefix (without it, snapshot.repo is the repository)",
            );
            None
        }
    });
    problems.check(
        bucket.is_some() || (o.s3_endpoint.is_none() && o.s3_region.is_none()),
        "origin.s3_endpoint",
        "is for origin.bucket, which is not set",
    );
    let publisher_key = problems.required(o.publisher_key.map(resolve), "origin.publisher_key");
    let temp_permit_key =
        problems.required(o.temp_permit_key.map(resolve), "origin.temp_permit_key");
    let audit_dir = problems.required(o.audit_dir.map(resolve), "origin.audit_dir");
    problems.check(
        o.batch_window_ms <= 100,
        "origin.batch_window_ms",
        "must be at most 100",
    );
    problems.check(
        (1..=24 * 365).contains(&o.manifest_expires_hours),
        "origin.manifest_expires_hours",
        "must be from 1 to 8760",
    );
    problems.check(
        (1..=1024).contains(&o.max_deltas),
        "origin.max_deltas",
        "must be from 1 to 1024",
    );
    problems.check(
        o.clock_skew_seconds <= 3600,
        "origin.clock_skew_seconds",
        "must be at most 3600",
    );
    problems.check(
        !o.callers.is_empty(),
        "origin.callers",
        "must name at least one caller",
    );
    let mut seen = HashSet::new();
    let callers = o
        .callers
        .into_iter()
        .enumerate()
        .map(|(i, c)| {
            let field = |name: &str| format!("origin.callers[{i}].{name}");
            problems.check(
                super::valid_partner_id(&c.id),
                field("id"),
                "must be 1-64 characters of a-z, 0-9, '-', '_', '.'",
            );
            problems.check(seen.insert(c.id.clone()), field("id"), "appears twice");
            problems.check(
                !partners.ids.contains(&c.id.as_str()),
                field("id"),
                "is also a partner's id: authority callers and partners are kept apart",
            );
            problems.check_name(&c.office, field("office"));
            problems.check(!c.scopes.is_empty(), field("scopes"), "must not be empty");
            Caller {
                id: c.id,
                office: c.office,
                scopes: c.scopes,
            }
        })
        .collect();
    Some(OriginConfig {
        listen: listen?,
        metrics_listen: o.metrics_listen,
        client_ca: client_ca?,
        publisher_key: publisher_key?,
        temp_permit_key: temp_permit_key?,
        batch_window: Duration::from_millis(o.batch_window_ms),
        manifest_expires_in: time::Duration::hours(o.manifest_expires_hours.min(24 * 365) as i64),
        max_deltas: o.max_deltas,
        clock_skew: time::Duration::seconds(o.clock_skew_seconds.min(3600) as i64),
        audit_dir: audit_dir?,
        callers,
        bucket,
    })
}
