//! The one writer: every issuance and revocation of this origin process is decided and
//! published by one thread, in batches (the writes that arrive within `batch_window` are
//! one delta). Each batch is decided against the newest publication, whoever made it; the
//! repository's claim (src/publish/claim.rs) refuses a batch another origin overtook, and
//! then the batch is decided again on the newer data. An answer leaves only once its
//! publication is claimed, and the claim is fsynced: a returned permit is never lost, and
//! a retried request (same caller, same idempotency key) names the same permit.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use time::OffsetDateTime;
use tokio::sync::oneshot;

use super::ledger::{key_hex, Keys, Ledger};
use crate::clock::Clock;
use crate::document::{DocumentKind, TravelPermitNo};
use crate::issuance::{self, Actor, JournalEntry, Refusal};
use crate::publish::{PublishError, PublishOptions};
use crate::snapshot::{DocKey, Record, RecordStatus};
use crate::temp_permit::{self, PermitId, Reason, TempPermit};

/// Most writes in one publication.
const MAX_BATCH: usize = 256;
/// Publications overtaken by another origin in a row before the batch is given up.
const MAX_ATTEMPTS: usize = 32;

#[derive(Debug, Clone)]
pub struct IssueRequest {
    pub travel_permit: TravelPermitNo,
    /// As the name rule leaves it (src/person_name.rs).
    pub name: String,
    pub reason: Reason,
    pub issued_at: OffsetDateTime,
    /// The caller's key for this request: a retry with the same key is the same request.
    pub idempotency_key: String,
    pub by: Actor,
}

#[derive(Debug, Clone)]
pub struct Issued {
    pub token: String,
    pub permit: TempPermit,
    /// An earlier request under the same key issued it.
    pub replayed: bool,
    /// The repository's version when it was answered: it was published then or before.
    pub version: u64,
}

#[derive(Debug, Clone)]
pub struct Revoked {
    pub id: PermitId,
    /// When, and by whom, if the origin revoked it (`None`: revoked by an earlier publication).
    pub at: Option<(OffsetDateTime, Actor)>,
    pub replayed: bool,
    /// As [`Issued::version`].
    pub version: u64,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum OriginError {
    #[error("no temporary permit issued: {0}")]
    Refused(#[from] Refusal),
    #[error(
        "this idempotency key was given before with a different travel permit, name or reason"
    )]
    KeyReused,
    #[error("no temporary permit has this id")]
    UnknownPermit,
    #[error("issued_at: the permit would end before it begins")]
    Time,
    #[error("issued_at must be within {skew_seconds} seconds of the origin's clock (leave it out to issue now)")]
    IssuedAt { skew_seconds: i64 },
    #[error("the repository could not be published to")]
    Publish(#[source] Arc<PublishError>),
    #[error("the origin's writer has stopped")]
    Stopped,
}

impl OriginError {
    /// What the officer at the desk reads in Chinese (the English is its `Display`); `None`
    /// for the failures of the origin itself, which an operator reads.
    pub fn zh(&self) -> Option<String> {
        Some(match self {
            OriginError::Refused(r) => format!("未签发临时通行证：{}", r.zh()),
            OriginError::KeyReused => {
                "此幂等键已用于另一份申请（通行证号码、姓名或原因不同）".to_owned()
            }
            OriginError::UnknownPermit => "没有此编号的临时通行证".to_owned(),
            OriginError::Time => "签发时间有误：通行证将在生效前到期".to_owned(),
            OriginError::IssuedAt { skew_seconds } => {
                format!("签发时间须在源站时钟前后{skew_seconds}秒之内（不填则为现在）")
            }
            OriginError::Publish(_) | OriginError::Stopped => return None,
        })
    }
}

enum Job {
    Write(Write),
    Read(Box<dyn FnOnce(&Ledger) + Send>),
}

enum Write {
    Issue(IssueRequest, oneshot::Sender<Result<Issued, OriginError>>),
    Revoke(
        PermitId,
        Actor,
        oneshot::Sender<Result<Revoked, OriginError>>,
    ),
}

pub struct Settings {
    pub repo: PathBuf,
    /// The repository of record, when `repo` is a local copy of a bucket's.
    pub bucket: Option<Arc<crate::publish::bucket::Bucket>>,
    pub batch_window: Duration,
    pub manifest_expires_in: time::Duration,
    pub max_deltas: usize,
    /// How far a request's `issued_at` may be from the origin's clock.
    pub clock_skew: time::Duration,
    pub metrics: super::OriginMetrics,
    /// Without writes, this often: the revocation list is issued again (offline verifiers
    /// refuse a list older than they accept), and a manifest past half its freshness is
    /// signed again (followers would call the data stale when it expires).
    pub idle_tick: Duration,
}

/// The handle of the writer thread; cheap to clone.
#[derive(Clone)]
pub struct Origin {
    tx: mpsc::Sender<Job>,
}

impl Origin {
    /// Starts the writer thread, which reads the repository (pulling from the bucket,
    /// when there is one, on its own thread: it blocks on the store); returns once it has.
    pub fn start(
        settings: Settings,
        keys: Keys,
        clock: Arc<dyn Clock>,
    ) -> Result<Origin, PublishError> {
        let (tx, rx) = mpsc::channel();
        let (opened_tx, opened) = mpsc::channel();
        std::thread::Builder::new()
            .name("permitgate-orig".into())
            .spawn(move || {
                let ledger = match Ledger::open(&settings.repo, settings.bucket.clone(), &keys) {
                    Ok(l) => l,
                    Err(e) => return drop(opened_tx.send(Err(e))),
                };
                let _ = opened_tx.send(Ok(()));
                Writer {
                    ledger,
                    keys,
                    settings,
                    clock,
                }
                .run(rx)
            })
            .map_err(|source| PublishError::Write {
                path: PathBuf::from("<writer thread>"),
                source,
            })?;
        opened.recv().map_err(|_| PublishError::Write {
            path: PathBuf::from("<writer thread>"),
            source: std::io::Error::other("the writer stopped while reading the repository"),
        })??;
        Ok(Origin { tx })
    }

    pub async fn issue(&self, req: IssueRequest) -> Result<Issued, OriginError> {
        let (tx, rx) = oneshot::channel();
        self.send(Job::Write(Write::Issue(req, tx)))?;
        rx.await.map_err(|_| OriginError::Stopped)?
    }

    pub async fn revoke(&self, id: PermitId, by: Actor) -> Result<Revoked, OriginError> {
        let (tx, rx) = oneshot::channel();
        self.send(Job::Write(Write::Revoke(id, by, tx)))?;
        rx.await.map_err(|_| OriginError::Stopped)?
    }

    /// Runs `f` on the ledger between batches: it sees every write answered before it.
    pub async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Ledger) -> T + Send + 'static,
    ) -> Result<T, OriginError> {
        let (tx, rx) = oneshot::channel();
        self.send(Job::Read(Box::new(move |l| {
            let _ = tx.send(f(l));
        })))?;
        rx.await.map_err(|_| OriginError::Stopped)
    }

    /// For the CLI, which has no runtime.
    pub fn issue_blocking(&self, req: IssueRequest) -> Result<Issued, OriginError> {
        let (tx, rx) = oneshot::channel();
        self.send(Job::Write(Write::Issue(req, tx)))?;
        rx.blocking_recv().map_err(|_| OriginError::Stopped)?
    }

    pub fn revoke_blocking(&self, id: PermitId, by: Actor) -> Result<Revoked, OriginError> {
        let (tx, rx) = oneshot::channel();
        self.send(Job::Write(Write::Revoke(id, by, tx)))?;
        rx.blocking_recv().map_err(|_| OriginError::Stopped)?
    }

    fn send(&self, job: Job) -> Result<(), OriginError> {
        self.tx.send(job).map_err(|_| OriginError::Stopped)
    }
}

struct Writer {
    ledger: Ledger,
    keys: Keys,
    settings: Settings,
    clock: Arc<dyn Clock>,
}

/// What one batch decides, before it is published.
#[derive(Default)]
struct Plan {
    changes: Vec<(DocKey, Option<Record>)>,
    journal: Vec<JournalEntry>,
    /// Permits issued in this batch: their request fingerprint and token.
    issued: HashMap<PermitId, (String, Issued)>,
    /// Issued in this batch, per person and month (Beijing).
    per_month: HashMap<(u64, String), usize>,
    revoked: HashSet<PermitId>,
}

enum Answer {
    Issue(Result<Issued, OriginError>),
    Revoke(Result<Revoked, OriginError>),
}

impl Writer {
    fn run(mut self, rx: mpsc::Receiver<Job>) {
        self.write_list();
        loop {
            let first = match rx.recv_timeout(self.settings.idle_tick) {
                Ok(job) => job,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    self.idle();
                    continue;
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
            };
            let mut jobs = vec![first];
            let deadline = Instant::now() + self.settings.batch_window;
            while jobs.len() < MAX_BATCH {
                let left = deadline.saturating_duration_since(Instant::now());
                match rx.recv_timeout(left) {
                    Ok(job) => jobs.push(job),
                    Err(_) => break,
                }
            }
            let mut reads = Vec::new();
            let mut writes = Vec::new();
            for job in jobs {
                match job {
                    Job::Read(f) => reads.push(f),
                    Job::Write(w) => writes.push(w),
                }
            }
            if !writes.is_empty() {
                self.write(writes);
            }
            for f in reads {
                f(&self.ledger);
            }
        }
    }

    /// Decides and publishes a batch, again on newer data as long as another origin
    /// overtakes it; then answers every write in it.
    fn write(&mut self, writes: Vec<Write>) {
        let mut last_error = None;
        for _ in 0..MAX_ATTEMPTS {
            if let Err(e) = self.catch_up() {
                last_error = Some(e);
                break;
            }
            let mut plan = Plan::default();
            let answers: Vec<Answer> = writes.iter().map(|w| self.decide(&mut plan, w)).collect();
            let started = Instant::now();
            let writes_published = plan.journal.len();
            let published = if plan.changes.is_empty() {
                Ok(self.ledger.version())
            } else {
                let now = self.clock.now();
                self.ledger.publish(
                    plan.changes,
                    plan.journal,
                    &self.keys,
                    &PublishOptions {
                        version: None,
                        expires_in: self.settings.manifest_expires_in,
                        now,
                    },
                    self.settings.max_deltas,
                )
            };
            match published {
                Ok(version) => {
                    if writes_published > 0 {
                        let m = &self.settings.metrics;
                        m.publications.inc();
                        m.publish_seconds.observe(started.elapsed().as_secs_f64());
                        m.batch_writes.observe(writes_published as f64);
                        // Before the answers: a desk told "revoked" may hand the list to
                        // a gate at once.
                        self.write_list();
                    }
                    for (job, answer) in writes.into_iter().zip(answers) {
                        reply(job, answer, version);
                    }
                    return;
                }
                Err(PublishError::Taken { .. }) => {
                    self.settings.metrics.overtaken.inc();
                    continue;
                }
                Err(e) => {
                    last_error = Some(e);
                    break;
                }
            }
        }
        let e = Arc::new(last_error.unwrap_or(PublishError::Taken {
            from: self.ledger.version(),
        }));
        tracing::warn!(
            error = %crate::report::Report(&*e),
            writes = writes.len(),
            "a batch of writes could not be published; each is answered 503 (send it again)"
        );
        for job in writes {
            let failed = OriginError::Publish(e.clone());
            match job {
                Write::Issue(_, tx) => drop(tx.send(Err(failed))),
                Write::Revoke(_, _, tx) => drop(tx.send(Err(failed))),
            }
        }
    }

    /// Keeps what the origin publishes fresh while nobody writes: the manifest (signed
    /// again once half its freshness is gone) and the revocation list.
    fn idle(&mut self) {
        if self.catch_up().is_err() {
            return;
        }
        let now = self.clock.now();
        let fresh_for = self.settings.manifest_expires_in;
        if self.ledger.expires_at() - now < fresh_for / 2 {
            let opts = PublishOptions {
                version: None,
                expires_in: fresh_for,
                now,
            };
            match self.ledger.refresh(&self.keys, &opts) {
                Ok(_) => self.settings.metrics.publications.inc(),
                // Another publisher was first: the next tick reads its manifest.
                Err(PublishError::Taken { .. }) => self.settings.metrics.overtaken.inc(),
                Err(e) => {
                    tracing::warn!(error = %crate::report::Report(&e), "cannot sign the manifest again")
                }
            }
        }
        self.write_list();
    }

    /// Issues the revocation list of the data this origin holds, unless the one in the
    /// repository is of newer data (another origin's). Best effort: a failure is logged,
    /// and the next write or refresh tries again.
    fn write_list(&self) {
        let path = self.ledger.repo().join(crate::revocation_list::FILE);
        let version = self.ledger.version();
        let newer = crate::revocation_list::data_version_in(&path).is_some_and(|v| v > version);
        if newer {
            return;
        }
        let now = self.clock.now();
        let bytes =
            crate::revocation_list::build(self.ledger.revoked(), now, version, &self.keys.issuer);
        let written = crate::snapshot::write_atomic(&path, &bytes).map_err(|e| e.to_string());
        let written = written.and_then(|()| match self.ledger.bucket() {
            Some(b) => b
                .put_list(crate::revocation_list::FILE, &bytes, version)
                .map_err(|e| crate::report::Report(&e).to_string()),
            None => Ok(()),
        });
        match written {
            Ok(()) => {
                let m = &self.settings.metrics;
                m.revocation_list_permits
                    .set(crate::revocation_list::count_of(&bytes).unwrap_or(0) as i64);
                m.revocation_list_written.set(now.unix_timestamp());
            }
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot write the revocation list")
            }
        }
    }

    /// Reads the repository again when another publisher has published since.
    fn catch_up(&mut self) -> Result<(), PublishError> {
        if self.ledger.is_behind(&self.keys)? {
            self.ledger = Ledger::open(
                &self.settings.repo,
                self.settings.bucket.clone(),
                &self.keys,
            )?;
        }
        Ok(())
    }

    fn decide(&self, plan: &mut Plan, write: &Write) -> Answer {
        match write {
            Write::Issue(req, _) => Answer::Issue(self.decide_issue(plan, req)),
            Write::Revoke(id, by, _) => Answer::Revoke(self.decide_revoke(plan, *id, by)),
        }
    }

    fn decide_issue(&self, plan: &mut Plan, req: &IssueRequest) -> Result<Issued, OriginError> {
        let hash_key = &self.keys.hash_key;
        let id = PermitId::for_request(hash_key, &req.by.caller, &req.idempotency_key);
        let fingerprint = key_hex(&DocKey::of(
            hash_key,
            &format!(
                "temporary-permit-request-body:{}\n{}\n{}",
                req.travel_permit.canonical(),
                req.name,
                <&str>::from(req.reason)
            ),
        ));
        if let Some((asked, issued)) = plan.issued.get(&id) {
            return if *asked == fingerprint {
                Ok(Issued {
                    replayed: true,
                    ..issued.clone()
                })
            } else {
                Err(OriginError::KeyReused)
            };
        }
        if let Some(p) = self.ledger.permit(&id) {
            if p.request != fingerprint {
                return Err(OriginError::KeyReused);
            }
            let (token, permit) = temp_permit::issue_as(
                id,
                &req.travel_permit,
                &req.name,
                req.reason,
                p.issued_at,
                Some(p.expires_at),
                &self.keys.issuer,
            )
            .map_err(|_| OriginError::Time)?;
            return Ok(Issued {
                token,
                permit,
                replayed: true,
                version: 0,
            });
        }
        if (req.issued_at - self.clock.now()).abs() > self.settings.clock_skew {
            return Err(OriginError::IssuedAt {
                skew_seconds: self.settings.clock_skew.whole_seconds(),
            });
        }
        let holder_key = DocKey::of(hash_key, req.travel_permit.canonical());
        let holder = self.ledger.data().get(&holder_key);
        let month = crate::day::Day::in_beijing(req.issued_at).month();
        let this_month = holder.map_or(0, |h| {
            self.ledger.issued_in_month(h.person, req.issued_at)
                + plan
                    .per_month
                    .get(&(h.person, month.clone()))
                    .copied()
                    .unwrap_or(0)
        });
        let until = issuance::decide(req.reason, holder.as_ref(), req.issued_at, this_month)?;
        let Some(holder) = holder else {
            return Err(Refusal::NotPublished.into());
        };
        let (token, permit) = temp_permit::issue_as(
            id,
            &req.travel_permit,
            &req.name,
            req.reason,
            req.issued_at,
            Some(until),
            &self.keys.issuer,
        )
        .map_err(|_| OriginError::Time)?;
        let key = id.doc_key(hash_key);
        plan.changes.push((
            key,
            Some(issuance::issuance_record(
                key,
                &holder,
                Some(permit.issued_at),
                permit.expires_at,
            )),
        ));
        plan.journal.push(JournalEntry::Issue {
            permit: id.to_string(),
            holder: key_hex(&holder_key),
            travel_permit_masked: req.travel_permit.masked(),
            request: fingerprint.clone(),
            reason: req.reason,
            issued_at: permit.issued_at,
            expires_at: permit.expires_at,
            by: req.by.clone(),
        });
        *plan.per_month.entry((holder.person, month)).or_default() += 1;
        let issued = Issued {
            token,
            permit,
            replayed: false,
            version: 0,
        };
        plan.issued.insert(id, (fingerprint, issued.clone()));
        Ok(issued)
    }

    fn decide_revoke(
        &self,
        plan: &mut Plan,
        id: PermitId,
        by: &Actor,
    ) -> Result<Revoked, OriginError> {
        let key = id.doc_key(&self.keys.hash_key);
        if plan.revoked.contains(&id) {
            return Ok(Revoked {
                id,
                at: None,
                replayed: true,
                version: 0,
            });
        }
        let in_plan = plan
            .changes
            .iter()
            .position(|(k, _)| *k == key)
            .and_then(|i| plan.changes[i].1.map(|r| (i, r)));
        let record = match in_plan {
            Some((_, r)) => Some(r),
            None => self.ledger.data().get(&key),
        };
        let Some(mut record) = record.filter(|r| r.kind == DocumentKind::TemporaryPermit) else {
            return Err(OriginError::UnknownPermit);
        };
        if record.status == RecordStatus::Revoked {
            return Ok(Revoked {
                id,
                at: self.ledger.permit(&id).and_then(|p| p.revoked.clone()),
                replayed: true,
                version: 0,
            });
        }
        record.status = RecordStatus::Revoked;
        match in_plan {
            Some((i, _)) => plan.changes[i].1 = Some(record),
            None => plan.changes.push((key, Some(record))),
        }
        let at = self.clock.now();
        plan.journal.push(JournalEntry::Revoke {
            permit: id.to_string(),
            at,
            by: by.clone(),
        });
        plan.revoked.insert(id);
        Ok(Revoked {
            id,
            at: Some((at, by.clone())),
            replayed: false,
            version: 0,
        })
    }
}

/// Answers one write with the version its batch left the repository at (a replay was
/// published then or before).
fn reply(write: Write, answer: Answer, version: u64) {
    match (write, answer) {
        (Write::Issue(_, tx), Answer::Issue(r)) => {
            let _ = tx.send(r.map(|i| Issued { version, ..i }));
        }
        (Write::Revoke(_, _, tx), Answer::Revoke(r)) => {
            let _ = tx.send(r.map(|v| Revoked { version, ..v }));
        }
        _ => {}
    }
}
