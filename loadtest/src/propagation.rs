//! Propagation: how long a publication takes to reach a gateway's answers.
//!
//! Each round publishes one change event into the repository (the library call behind
//! `permitgate publish --changes`, in this process), then waits for it to be seen. The
//! time counts from the publication returning (objects and manifest written and fsynced)
//! to the sighting. Seen by either:
//! - a probe: a document-status check every millisecond over one keep-alive connection,
//!   until an answer carries the new `snapshot.version` (the target is whatever follows
//!   the repository, directly or through relays: `scenario propagation` measures
//!   origin -> relay -> follower);
//! - a fleet of simulated followers of the target as a relay ([`crate::followers`]): each
//!   sighting is a follower holding the new manifest and its delta (`scenario fanout`).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::Serialize;
use serde_json::json;
use time::OffsetDateTime;

use permitgate::key_files::{self, HashKey};
use permitgate::publish::{publish_changes, ChangeEvent, PublishOptions, DEFAULT_MAX_DELTAS};
use permitgate::snapshot::RecordStatus;

use std::sync::Arc;

use tokio::sync::{mpsc, watch};

use crate::client::{Conn, Connector, Failure};
use crate::followers::Arrival;
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
    /// A publication not seen in this time counts as lost (by each follower).
    pub timeout: Duration,
    /// Simulated followers long-polling the target; 0: the status probe instead.
    pub followers: usize,
    /// Pause once everyone holds the current manifest, before the first publication: time
    /// for a measurement beside this one to start after the fleet's handshakes.
    pub settle: Duration,
}

#[derive(Debug, Clone, Serialize)]
pub struct PropagationReport {
    /// Publication returned -> the target answers with its version (or each follower
    /// holds it), ms, in order.
    pub samples_ms: Vec<f64>,
    /// With followers: the slowest follower's time, per publication.
    pub slowest_ms: Vec<f64>,
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
pub fn rank(v: &[f64], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let i = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1;
    v[i]
}

impl PropagationReport {
    fn new(
        samples_ms: Vec<f64>,
        slowest_ms: Vec<f64>,
        publish_ms: Vec<f64>,
        lost: usize,
    ) -> PropagationReport {
        let mut sorted = samples_ms.clone();
        sorted.sort_by(f64::total_cmp);
        PropagationReport {
            median_ms: rank(&sorted, 0.5),
            p90_ms: rank(&sorted, 0.9),
            p99_ms: rank(&sorted, 0.99),
            max_ms: sorted.last().copied().unwrap_or(f64::NAN),
            samples_ms,
            slowest_ms,
            publish_ms,
            lost,
        }
    }

    pub fn summary(&self) -> String {
        let mut publish = self.publish_ms.clone();
        publish.sort_by(f64::total_cmp);
        let listed = |v: &[f64]| {
            v.iter()
                .map(|s| format!("{s:.1}"))
                .collect::<Vec<_>>()
                .join(" ")
        };
        let mut s = format!(
            "{} sightings, {} lost\n\
             propagation ms: median {:.1}  p90 {:.1}  p99 {:.1}  max {:.1}\n",
            self.samples_ms.len(),
            self.lost,
            self.median_ms,
            self.p90_ms,
            self.p99_ms,
            self.max_ms,
        );
        if self.slowest_ms.is_empty() {
            s.push_str(&format!("samples ms: {}\n", listed(&self.samples_ms)));
        } else {
            s.push_str(&format!(
                "slowest follower per publication ms: {}\n",
                listed(&self.slowest_ms)
            ));
        }
        s.push_str(&format!(
            "publish itself ms: median {:.1}  max {:.1}\n",
            rank(&publish, 0.5),
            publish.last().copied().unwrap_or(f64::NAN),
        ));
        s
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

/// How publications are seen.
enum Observer {
    Probe {
        conn: Conn,
        probe: Prepared,
    },
    Fleet {
        arrivals: mpsc::UnboundedReceiver<Arrival>,
        /// The newest version each follower holds.
        held: Vec<u64>,
        stop: watch::Sender<bool>,
    },
}

impl Observer {
    /// When each observer saw `version` or later, counted from `t0`; `None`: not within
    /// `timeout`.
    async fn sightings(
        &mut self,
        version: u64,
        t0: Instant,
        timeout: Duration,
    ) -> Result<Vec<Option<Duration>>, Failure> {
        match self {
            Observer::Probe { conn, probe } => {
                Ok(vec![await_version(conn, probe, version, timeout).await?])
            }
            Observer::Fleet { arrivals, held, .. } => {
                let mut seen: Vec<Option<Duration>> = held
                    .iter()
                    .map(|v| (*v >= version).then_some(Duration::ZERO))
                    .collect();
                let deadline = tokio::time::Instant::from_std(t0 + timeout);
                while seen.iter().any(Option::is_none) {
                    let Ok(Some(a)) = tokio::time::timeout_at(deadline, arrivals.recv()).await
                    else {
                        break;
                    };
                    held[a.follower] = held[a.follower].max(a.version);
                    if a.version >= version && seen[a.follower].is_none() {
                        seen[a.follower] = Some(a.at.saturating_duration_since(t0));
                    }
                }
                Ok(seen)
            }
        }
    }
}

impl Drop for Observer {
    fn drop(&mut self) {
        if let Observer::Fleet { stop, .. } = self {
            let _ = stop.send(true);
        }
    }
}

/// How long a fleet may take to connect (a thousand mTLS handshakes, on a relay that
/// serves partners meanwhile) and hold the relay's manifest; not part of any measurement.
const FLEET_START: Duration = Duration::from_secs(120);

/// Starts `n` followers and waits until each holds the relay's manifest.
async fn fleet(connector: Connector, n: usize) -> Result<Observer, LoadError> {
    let connector = Arc::new(connector);
    let (tx, mut arrivals) = mpsc::unbounded_channel();
    let (failed_tx, mut failed) = mpsc::unbounded_channel();
    let (stop, stopped) = watch::channel(false);
    for id in 0..n {
        tokio::spawn(crate::followers::follow(
            id,
            connector.clone(),
            tx.clone(),
            failed_tx.clone(),
            stopped.clone(),
        ));
    }
    let mut held = vec![0u64; n];
    let deadline = tokio::time::Instant::now() + FLEET_START;
    while held.contains(&0) {
        match tokio::time::timeout_at(deadline, arrivals.recv()).await {
            Ok(Some(a)) => held[a.follower] = held[a.follower].max(a.version),
            _ => {
                let _ = stop.send(true);
                let mut why = Vec::new();
                while let Ok(f) = failed.try_recv() {
                    why.push(f.label());
                }
                return Err(LoadError::Spec(format!(
                    "{} of {n} followers never got the manifest (failures: {why:?})",
                    held.iter().filter(|v| **v == 0).count()
                )));
            }
        }
    }
    Ok(Observer::Fleet {
        arrivals,
        held,
        stop,
    })
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
    let http = |f: Failure| LoadError::Spec(format!("target: {}", f.label()));
    let mut observer = if plan.followers == 0 {
        Observer::Probe {
            conn: connector.connect().await.map_err(http)?,
            probe: Prepared {
                path: "/v1/document-status",
                body: Bytes::from(json!({ "number": number }).to_string()),
                expect: 200,
                items: 1,
            },
        }
    } else {
        let fleet = fleet(connector, plan.followers).await?;
        // For a script that starts other load once the fleet is up (`scenario fanout`).
        eprintln!("all {} followers hold the manifest", plan.followers);
        fleet
    };
    let changes = std::env::temp_dir().join(format!(
        "permitgate-propagation-{}.jsonl",
        std::process::id()
    ));

    tokio::time::sleep(plan.settle).await;
    let (mut samples, mut slowest, mut publish_ms, mut lost) =
        (Vec::new(), Vec::new(), Vec::new(), 0);
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
        let t0 = Instant::now();
        publish_ms.push(t0.duration_since(started).as_secs_f64() * 1e3);
        let seen = observer
            .sightings(published.version, t0, plan.timeout)
            .await
            .map_err(http)?;
        let ms: Vec<f64> = seen
            .iter()
            .flatten()
            .map(|t| t.as_secs_f64() * 1e3)
            .collect();
        lost += seen.len() - ms.len();
        if plan.followers > 0 {
            slowest.push(ms.iter().copied().fold(0.0, f64::max));
        }
        samples.extend(ms);
        tokio::time::sleep(plan.gap).await;
    }
    let _ = std::fs::remove_file(&changes);
    Ok(PropagationReport::new(samples, slowest, publish_ms, lost))
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
