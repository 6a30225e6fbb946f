//! `[audit]`: the audit trail and its signed checkpoints.
//! The section as written (`Raw…`, with its defaults) and as validated, side by side;
//! a value that breaks a rule is recorded in `Problems`, and what is returned then is
//! never used (`Config::parse` returns the problems).

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::Problems;
use crate::audit::{AnswerAfter, AuditConfig, WhenFull};

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawAudit {
    pub(super) dir: Option<PathBuf>,
    pub(super) max_file_bytes: u64,
    pub(super) fsync_interval_ms: u64,
    pub(super) queue_capacity: usize,
    pub(super) when_full: WhenFull,
    pub(super) answer_after: AnswerAfter,
    pub(super) checkpoint_key: Option<PathBuf>,
    pub(super) checkpoint_dir: Option<PathBuf>,
    pub(super) checkpoint_interval_ms: u64,
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

pub(super) fn audit_config(
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
