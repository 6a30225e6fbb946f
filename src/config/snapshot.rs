//! `[snapshot]`: the repository served and the keys it is checked with.
//! The section as written (`Raw…`, with its defaults) and as validated, side by side;
//! a value that breaks a rule is recorded in `Problems`, and what is returned then is
//! never used (`Config::parse` returns the problems).

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::{millis_or_off, Problems};

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

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawSnapshot {
    pub(super) repo: Option<PathBuf>,
    pub(super) watch_interval_ms: u64,
    publisher_keys: Vec<PathBuf>,
    pub(super) hash_key: Option<PathBuf>,
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

pub(super) fn snapshot_config(
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
