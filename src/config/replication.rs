//! `[replication]`: the source a gateway follows.
//! The section as written (`Raw…`, with its defaults) and as validated, side by side;
//! a value that breaks a rule is recorded in `Problems`, and what is returned then is
//! never used (`Config::parse` returns the problems).

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::Problems;
use crate::replication::SourceUrl;

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

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawReplication {
    pub(super) source: Option<String>,
    pub(super) state_dir: Option<PathBuf>,
    pub(super) poll_interval_ms: u64,
    pub(super) unready_when_stale_for_ms: Option<u64>,
    pub(super) ca: Option<PathBuf>,
    pub(super) client_cert: Option<PathBuf>,
    pub(super) client_key: Option<PathBuf>,
    pub(super) s3_endpoint: Option<String>,
    pub(super) s3_region: Option<String>,
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

pub(super) fn replication_config(
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
