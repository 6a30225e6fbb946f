//! Propagation: how long a publication takes to reach a gateway's answers.
//!
//! Each round publishes one change event into the repository (the library call behind
//! `permitgate publish --changes`, in this process), then asks the target for a document's
//! status every millisecond over one keep-alive connection until an answer carries the new
//! `snapshot.version`. The time counts from the publication returning (objects and
//! manifest written and fsynced) to that answer. The target is whatever follows the
//! repository, directly or through relays: loadtest/propagation.sh measures
//! origin -> relay -> follower.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::Serialize;
use serde_json::json;
use time::OffsetDateTime;

use permitgate::key_files::{self, HashKey};
use permitgate::publish::{publish_changes, ChangeEvent, PublishOptions, DEFAULT_MAX_DELTAS};
use permitgate::snapshot::RecordStatus;

use crate::client::{Conn, Connector, Failure};
use crate::workload::{read_export, Prepared};
use crate::LoadError;

pub struct PropagationPlan {
    pub publications: usize,
    /// The repository the origin serves.
    pub repo: PathBuf,
    pub signing_key: PathBuf,
    pub hash_key: PathBuf,
    /// The export the repository was published from: the document whose status toggles.
    pub export: PathBuf,
    /// Pause after each arrival, so that every hop is back in its long-poll (or idle
    /// between polls) when the next publication lands, as in production.
    pub gap: Duration,
    /// A publication not seen in this time counts as lost.
    pub timeout: Duration,
}

#[derive(Debug, Clone, Serialize)]
pub struct PropagationReport {
    /// Publication returned -> the target answers with its version, ms, in order.
    pub samples_ms: Vec<f64>,
    /// `permitgate publish --changes`'s own time (read, sign, write, fsync), ms.
    pub publish_ms: Vec<f64>,
    pub median_ms: f64,
    pub p90_ms: f64,
    /// Nearest rank: with 20 publications, the largest sample.
    pub p99_ms: f64,
    pub max_ms: f64,
    /// Publications the target never showed within the timeout.
    pub lost: usize,
}

/// The value at quantile `q` of sorted `v`, nearest rank.
fn rank(v: &[f64], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let i = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1;
    v[i]
}

impl PropagationReport {
    fn new(samples_ms: Vec<f64>, publish_ms: Vec<f64>, lost: usize) -> PropagationReport {
        let mut sorted = samples_ms.clone();
        sorted.sort_by(f64::total_cmp);
        PropagationReport {
            median_ms: rank(&sorted, 0.5),
            p90_ms: rank(&sorted, 0.9),
            p99_ms: rank(&sorted, 0.99),
            max_ms: sorted.last().copied().unwrap_or(f64::NAN),
            samples_ms,
            publish_ms,
            lost,
        }
    }

    pub fn summary(&self) -> String {
        let mut publish = self.publish_ms.clone();
        publish.sort_by(f64::total_cmp);
        format!(
            "{} publications, {} lost\n\
             propagation ms: median {:.1}  p90 {:.1}  p99 {:.1}  max {:.1}\n\
             samples ms: {}\n\
             publish itself ms: median {:.1}  max {:.1}\n",
            self.samples_ms.len() + self.lost,
            self.lost,
            self.median_ms,
            self.p90_ms,
            self.p99_ms,
            self.max_ms,
            self.samples_ms
                .iter()
                .map(|s| format!("{s:.1}"))
                .collect::<Vec<_>>()
                .join(" "),
            rank(&publish, 0.5),
            publish.last().copied().unwrap_or(f64::NAN),
        )
    }
}

/// The `snapshot.version` of a check's answer; `None` for any other answer.
fn served_version(status: u16, body: &Bytes) -> Option<u64> {
    if status != 200 {
        return None;
    }
    serde_json::from_slice::<serde_json::Value>(body).ok()?["snapshot"]["version"].as_u64()
}

/// Asks until the target serves `version` or later; the time it took, or `None` after
/// `timeout`.
async fn await_version(
    conn: &mut Conn,
    probe: &Prepared,
    version: u64,
    timeout: Duration,
) -> Result<Option<Duration>, Failure> {
    let start = Instant::now();
    while start.elapsed() < timeout {
        let (status, body) = conn.exchange(probe, timeout).await?;
        if served_version(status, &body).is_some_and(|v| v >= version) {
            return Ok(Some(start.elapsed()));
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    Ok(None)
}

pub async fn measure(
    connector: Connector,
    plan: PropagationPlan,
) -> Result<PropagationReport, LoadError> {
    let read_key = |path: &PathBuf, e: &dyn std::fmt::Display| {
        LoadError::Spec(format!("{}: {e}", path.display()))
    };
    let signing_key = key_files::load_signing_key(&plan.signing_key)
        .map_err(|e| read_key(&plan.signing_key, &e))?;
    let hash_key = HashKey::load(&plan.hash_key).map_err(|e| read_key(&plan.hash_key, &e))?;
    let (residents, _) = read_export(&plan.export)?;
    let number = residents[0].travel.clone();
    let probe = Prepared {
        path: "/v1/document-status",
        body: Bytes::from(json!({ "number": number }).to_string()),
        expect: 200,
        items: 1,
    };
    let http = |f: Failure| LoadError::Spec(format!("target: {}", f.label()));
    let mut conn = connector.connect().await.map_err(http)?;
    let changes = std::env::temp_dir().join(format!(
        "permitgate-propagation-{}.jsonl",
        std::process::id()
    ));

    let (mut samples, mut publish_ms, mut lost) = (Vec::new(), Vec::new(), 0);
    for i in 0..plan.publications {
        let status = if i % 2 == 0 {
            RecordStatus::Lost
        } else {
            RecordStatus::Valid
        };
        let event = ChangeEvent::Status {
            number: number.clone(),
            status,
        };
        let line = serde_json::to_string(&event).map_err(|e| LoadError::Spec(e.to_string()))?;
        std::fs::write(&changes, line).map_err(|source| LoadError::Write {
            path: changes.clone(),
            source,
        })?;
        let started = Instant::now();
        let opts = PublishOptions {
            version: None,
            expires_in: time::Duration::hours(24),
            now: OffsetDateTime::now_utc(),
        };
        let published = publish_changes(
            &changes,
            &plan.repo,
            &signing_key,
            &hash_key,
            &opts,
            DEFAULT_MAX_DELTAS,
        )
        .map_err(|e| LoadError::Spec(format!("publish: {}", permitgate::report::Report(&e))))?;
        publish_ms.push(started.elapsed().as_secs_f64() * 1e3);
        match await_version(&mut conn, &probe, published.version, plan.timeout)
            .await
            .map_err(http)?
        {
            Some(t) => samples.push(t.as_secs_f64() * 1e3),
            None => lost += 1,
        }
        tokio::time::sleep(plan.gap).await;
    }
    let _ = std::fs::remove_file(&changes);
    Ok(PropagationReport::new(samples, publish_ms, lost))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<f64> = (1..=20).map(f64::from).collect();
        assert_eq!(rank(&v, 0.5), 10.0);
        assert_eq!(rank(&v, 0.9), 18.0);
        assert_eq!(rank(&v, 0.99), 20.0);
        assert!(rank(&[], 0.5).is_nan());
    }

    #[test]
    fn only_a_200_with_a_version_counts() {
        let ok = Bytes::from_static(br#"{"snapshot":{"version":7}}"#);
        assert_eq!(served_version(200, &ok), Some(7));
        assert_eq!(served_version(503, &ok), None);
        assert_eq!(served_version(200, &Bytes::from_static(b"{}")), None);
    }
}
