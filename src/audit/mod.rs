//! The audit trail: one record per answered partner request, appended to size-rotated
//! files, each batch sealed by a hash that chains the batches (src/audit/record.rs).
//!
//! The request path reserves a place in the queue ([`AuditLog::reserve`]): when
//! `queue_capacity` records are waiting (a slow or failing disk), the request is shed with
//! 503 rather than answered without a record, unless `when_full = "drop"` says
//! availability matters more. An answer leaves only once its record is written
//! ([`Recorded::written`]), so a killed process has a record of every answer it gave.
//!
//! Who writes (src/audit/writer.rs): with `answer_after = "write"`, the request workers
//! themselves. A request records, lets the other requests ready on its worker record
//! theirs, then takes every queued record and writes them as one sealed batch with one
//! `write(2)` (group commit, flat combining: a worker that finds another writing leaves
//! its record to it). The writer thread fsyncs at most every `fsync_interval_ms` (0: each
//! as soon as the last one ends) without holding up the workers' writes, so a machine crash loses at most
//! that interval; it also rotates files, retries failed writes and signs checkpoints,
//! none of which a worker waits for. With `answer_after = "fsync"` the thread writes and
//! fsyncs each batch before its answers leave, and a machine crash loses none. Files are
//! `audit-<first seq>-<unix ms>.log`, so their names sort in chain order; the chain runs
//! on across files and restarts.

pub mod checkpoint;
pub mod record;
pub mod ship;
pub mod verify;
mod writer;

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus::{IntCounter, IntGauge};

pub use record::{Answered, Documents};
use writer::{Checkpointer, Ctl, Shared, Writer};

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WhenFull {
    /// Refuse requests (503 overloaded) until the writer catches up: no check unrecorded.
    Shed,
    /// Answer anyway and count the record as dropped.
    Drop,
}

/// When an answer may leave, as far as its record goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnswerAfter {
    /// Once its record is written to the kernel: a killed process loses no record of an
    /// answer it gave; a machine crash loses at most `fsync_interval_ms`.
    Write,
    /// Once its record is on disk (fsynced): not even a machine crash loses one.
    Fsync,
}

#[derive(Debug, Clone)]
pub struct AuditConfig {
    pub dir: PathBuf,
    pub max_file_bytes: u64,
    pub fsync_interval: Duration,
    pub queue_capacity: usize,
    pub when_full: WhenFull,
    pub answer_after: AnswerAfter,
    /// Signed checkpoints of the chain, written outside `dir` (checkpoint.rs).
    pub checkpoints: Option<CheckpointConfig>,
}

#[derive(Debug, Clone)]
pub struct CheckpointConfig {
    pub dir: PathBuf,
    /// The gateway's Ed25519 signing key for checkpoints (PKCS#8 PEM).
    pub key: PathBuf,
    pub interval: Duration,
}

#[derive(Clone)]
pub struct AuditMetrics {
    pub written: IntCounter,
    pub dropped: IntCounter,
    pub write_errors: IntCounter,
    pub queue_depth: IntGauge,
}

impl AuditMetrics {
    pub fn register(registry: &prometheus::Registry) -> AuditMetrics {
        use crate::metrics::register;
        AuditMetrics {
            written: register(
                registry,
                IntCounter::new(
                    "permitgate_audit_records_total",
                    "Audit records written to the log (before fsync).",
                ),
            ),
            dropped: register(
                registry,
                IntCounter::new(
                    "permitgate_audit_records_dropped_total",
                    "Audit records not written: queue full under when_full = \"drop\", or shutting down.",
                ),
            ),
            write_errors: register(
                registry,
                IntCounter::new(
                    "permitgate_audit_write_errors_total",
                    "Failed audit writes or fsyncs (writes are retried; requests are shed meanwhile).",
                ),
            ),
            queue_depth: register(
                registry,
                IntGauge::new(
                    "permitgate_audit_queue_depth",
                    "Audit records reserved or queued and not yet written.",
                ),
            ),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("audit log {}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "audit log {path} is in use by another process (each gateway needs its own directory)"
    )]
    InUse { path: PathBuf },
    #[error("audit log {path}: the last record does not verify ({reason}); run `permitgate audit verify` and move the damaged file aside")]
    Damaged { path: PathBuf, reason: String },
    #[error("audit checkpoint key")]
    CheckpointKey(#[from] crate::key_files::KeyError),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> AuditError + '_ {
    move |source| AuditError::Io {
        path: path.to_owned(),
        source,
    }
}

pub struct AuditLog {
    shared: Arc<Shared>,
    /// Dropped, it stops the writer thread (after writing what is queued).
    ctl: mpsc::Sender<Ctl>,
    capacity: usize,
    when_full: WhenFull,
    /// With `answer_after = "write"` the request workers write the records themselves;
    /// with `"fsync"` the thread does, since an fsync must not stall a worker.
    workers_write: bool,
    dropped: IntCounter,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

/// The queue is full and the policy is to shed.
#[derive(Debug)]
pub struct Full;

/// A reserved place in the queue; [`Slot::record`] fills it. Dropped unfilled (the
/// request was abandoned), it frees the place.
pub struct Slot<'a> {
    log: &'a AuditLog,
    held: bool,
}

/// A record handed to the writer; [`Recorded::written`] says when its answer may leave.
pub struct Recorded<'a> {
    log: &'a AuditLog,
    /// `None` once settled, or for an answer given without a record (`when_full = "drop"`).
    written: Option<tokio::sync::oneshot::Receiver<()>>,
}

impl Recorded<'_> {
    /// Waits until the record is written (or fsynced, as `answer_after` says); `false` if
    /// it never will be (the writer stopped), and the answer must not leave as given.
    ///
    /// With `answer_after = "write"` the request's own worker writes it: it first lets
    /// the other requests ready on that thread record theirs (the task yields until the
    /// worker has run them and polled its sockets once), then writes every queued record
    /// in one sealed batch. The writer thread is not woken on the way, so an answer waits
    /// for no other thread's turn on the core.
    pub async fn written(mut self) -> bool {
        let Some(rx) = self.written.as_mut() else {
            return true;
        };
        if self.log.workers_write {
            tokio::task::yield_now().await;
            match rx.try_recv() {
                Ok(()) => {
                    self.written = None;
                    return true;
                }
                Err(tokio::sync::oneshot::error::TryRecvError::Closed) => {
                    self.written = None;
                    return false;
                }
                Err(tokio::sync::oneshot::error::TryRecvError::Empty) => {
                    self.log.shared.combine(&self.log.ctl);
                }
            }
        }
        let written = rx.await.is_ok();
        self.written = None;
        written
    }
}

impl Drop for Recorded<'_> {
    fn drop(&mut self) {
        // Abandoned before its record was written (the client went away): the thread
        // writes it, since the worker that would have will not come back for it.
        if self.written.is_some() && self.log.workers_write {
            let _ = self.log.ctl.send(Ctl::Kick);
        }
    }
}

impl<'a> Slot<'a> {
    pub fn record(mut self, entry: Answered) -> Recorded<'a> {
        let log = self.log;
        if !std::mem::take(&mut self.held) {
            log.dropped.inc();
            return Recorded { log, written: None };
        }
        let (done, written) = tokio::sync::oneshot::channel();
        let shared = &log.shared;
        if shared.closed.load(Ordering::Acquire) {
            // Shutting down: nothing will write it, and `done` dropped says so.
            shared.pending.fetch_sub(1, Ordering::Relaxed);
            log.dropped.inc();
            return Recorded {
                log,
                written: Some(written),
            };
        }
        shared.queued.fetch_add(1, Ordering::SeqCst);
        if shared.records.send((entry, done)).is_err() {
            shared.queued.fetch_sub(1, Ordering::SeqCst);
            shared.pending.fetch_sub(1, Ordering::Relaxed);
            log.dropped.inc();
        } else if !log.workers_write {
            let _ = log.ctl.send(Ctl::Kick);
        }
        Recorded {
            log,
            written: Some(written),
        }
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        if self.held {
            self.log.shared.pending.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl AuditLog {
    /// Opens (or creates) the log in `config.dir`, continuing its chain, and starts the
    /// writer thread.
    pub fn open(config: AuditConfig, metrics: AuditMetrics) -> Result<AuditLog, AuditError> {
        AuditLog::open_with(config, metrics, true)
    }

    /// As [`AuditLog::open`]; without `thread`, only the request workers write (tests).
    fn open_with(
        config: AuditConfig,
        metrics: AuditMetrics,
        thread: bool,
    ) -> Result<AuditLog, AuditError> {
        std::fs::create_dir_all(&config.dir).map_err(io_err(&config.dir))?;
        // Two writers would fork the chain: the lock is held as long as the log is open.
        let lock_path = config.dir.join(".lock");
        let lock = File::create(&lock_path).map_err(io_err(&lock_path))?;
        lock.try_lock().map_err(|e| match e {
            std::fs::TryLockError::WouldBlock => AuditError::InUse {
                path: config.dir.clone(),
            },
            std::fs::TryLockError::Error(source) => AuditError::Io {
                path: lock_path.clone(),
                source,
            },
        })?;
        let tail = Tail::find(&config.dir)?;
        let checkpointer = match &config.checkpoints {
            Some(c) => Some(Checkpointer::new(
                c.clone(),
                crate::key_files::load_signing_key(&c.key)?,
                tail.next_seq.saturating_sub(1),
            )),
            None => None,
        };
        let (records, records_rx) = mpsc::channel();
        let (ctl, ctl_rx) = mpsc::channel();
        let workers_write = config.answer_after == AnswerAfter::Write;
        let pending = Arc::new(AtomicUsize::new(0));
        let writer = Writer::new(
            config.clone(),
            tail,
            records_rx,
            pending.clone(),
            metrics.clone(),
            lock,
        );
        let shared = Arc::new(Shared::new(writer, records, pending));
        let handle = thread
            .then(|| {
                writer::spawn(
                    shared.clone(),
                    ctl_rx,
                    checkpointer,
                    metrics.clone(),
                    workers_write,
                )
            })
            .transpose()
            .map_err(io_err(&config.dir))?;
        Ok(AuditLog {
            shared,
            ctl,
            capacity: config.queue_capacity,
            when_full: config.when_full,
            workers_write,
            dropped: metrics.dropped,
            thread: Mutex::new(handle),
        })
    }

    pub fn reserve(&self) -> Result<Slot<'_>, Full> {
        let pending = &self.shared.pending;
        if pending.fetch_add(1, Ordering::Relaxed) < self.capacity {
            return Ok(Slot {
                log: self,
                held: true,
            });
        }
        pending.fetch_sub(1, Ordering::Relaxed);
        match self.when_full {
            WhenFull::Shed => Err(Full),
            WhenFull::Drop => Ok(Slot {
                log: self,
                held: false,
            }),
        }
    }

    /// Blocks until everything recorded so far is written and fsynced.
    pub fn sync(&self) {
        let (done_tx, done_rx) = mpsc::sync_channel(1);
        if self.ctl.send(Ctl::Sync(done_tx)).is_ok() {
            let _ = done_rx.recv();
        }
    }

    /// Writes and fsyncs what is queued, then stops the writer (shutdown, after the
    /// drain). Records after this are counted as dropped.
    pub fn close(&self) {
        let (done_tx, done_rx) = mpsc::sync_channel(1);
        if self.ctl.send(Ctl::Close(done_tx)).is_ok() {
            let _ = done_rx.recv();
        }
        let handle = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(h) = handle {
            let _ = h.join();
        }
    }
}

/// Where the chain left off.
struct Tail {
    next_seq: u64,
    prev: [u8; 32],
    /// The newest file, if it ends cleanly after a seal (or is empty): append to it.
    append_to: Option<PathBuf>,
}

impl Tail {
    /// Reads the newest file from its end (older ones only when it holds no seal): the
    /// last seal (its hash checked against its batch, as `audit verify` would) or
    /// format-1 record gives the chain, the last complete record the next number. A
    /// damaged end refuses to start: a new chain on top of it would hide the damage.
    /// Records a crash left unsealed keep their numbers; the next seal chains from the
    /// last one written.
    fn find(dir: &Path) -> Result<Tail, AuditError> {
        let files = verify::log_files(dir).map_err(io_err(dir))?;
        let mut next_seq = None;
        let mut append_to = None;
        for (i, path) in files.iter().enumerate().rev() {
            let mut bytes = Vec::new();
            File::open(path)
                .and_then(|mut f| f.read_to_end(&mut bytes))
                .map_err(io_err(path))?;
            let damaged = |reason: String| AuditError::Damaged {
                path: path.clone(),
                reason,
            };
            let clean_end = bytes.is_empty() || bytes.ends_with(b"\n");
            // Complete lines only, each with its start offset, newest first.
            let complete = bytes
                .iter()
                .rposition(|&b| b == b'\n')
                .map_or(&bytes[..0], |end| &bytes[..end]);
            let mut end = complete.len();
            let mut unsealed = false;
            // The seal or format-1 record that ends the chain: its seq and hash.
            let mut chain_end = None;
            while end > 0 {
                let start = complete[..end]
                    .iter()
                    .rposition(|&b| b == b'\n')
                    .map_or(0, |p| p + 1);
                let line = &complete[start..end];
                match record::read_line(line).map_err(|e| damaged(e.to_string()))? {
                    record::Line::Record(seq) => {
                        next_seq.get_or_insert(seq + 1);
                        unsealed = true;
                    }
                    record::Line::Seal(seal) => {
                        // Its batch: the lines after the seal before it (a batch never
                        // spans files).
                        let batch_start = previous_seal_end(&complete[..start.saturating_sub(1)])
                            .map_err(|e| damaged(e.to_string()))?;
                        if record::seal_hash(&bytes[batch_start..start + seal.prefix_len])
                            != seal.hash
                        {
                            return Err(damaged(format!(
                                "the last seal does not match records {}..{}",
                                seal.first, seal.last
                            )));
                        }
                        chain_end = Some((seal.last, seal.hash));
                    }
                    record::Line::V1(d) => chain_end = Some((d.seq, d.hash)),
                }
                if let Some((last, hash)) = chain_end {
                    let newest = i + 1 == files.len();
                    if newest && clean_end && !unsealed {
                        append_to = Some(path.clone());
                    }
                    return Ok(Tail {
                        next_seq: next_seq.unwrap_or(last + 1),
                        prev: hash,
                        append_to,
                    });
                }
                end = start.saturating_sub(1);
            }
        }
        Ok(Tail {
            next_seq: next_seq.unwrap_or(1),
            prev: record::GENESIS,
            append_to: None,
        })
    }
}

/// Where the batch that ends after `before` begins: just after the last seal (or format-1
/// record) in `before`, or at 0.
fn previous_seal_end(before: &[u8]) -> Result<usize, record::LineError> {
    let mut end = before.len();
    while end > 0 {
        let start = before[..end]
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |p| p + 1);
        match record::read_line(&before[start..end])? {
            record::Line::Record(_) => {}
            record::Line::Seal(_) | record::Line::V1(_) => return Ok(end + 1),
        }
        end = start.saturating_sub(1);
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::verify::{log_files, verify_dir, VerifyError};
    use super::*;

    fn metrics() -> AuditMetrics {
        let c = |n: &str| IntCounter::new(n, "test").expect("counter");
        AuditMetrics {
            written: c("w"),
            dropped: c("d"),
            write_errors: c("e"),
            queue_depth: IntGauge::new("q", "test").expect("gauge"),
        }
    }

    fn config(dir: &Path, max_file_bytes: u64, queue_capacity: usize) -> AuditConfig {
        AuditConfig {
            dir: dir.to_owned(),
            max_file_bytes,
            fsync_interval: Duration::from_millis(50),
            queue_capacity,
            when_full: WhenFull::Shed,
            answer_after: AnswerAfter::Write,
            checkpoints: None,
        }
    }

    fn entry(i: u8) -> Answered {
        Answered {
            time_ns: 1_795_000_000_000_000_000 + i128::from(i),
            request_id: http::HeaderValue::from(u16::from(i)),
            partner: Some("bank".into()),
            route: "link_check",
            outcome: "ok",
            documents: smallvec::smallvec![[i; 16]],
        }
    }

    fn write(log: &AuditLog, range: std::ops::Range<u8>) {
        for i in range {
            log.reserve().expect("room").record(entry(i));
        }
        log.sync();
    }

    #[test]
    fn records_chain_across_rotated_files_and_restarts() {
        let dir = tempfile::tempdir().expect("dir");
        let m = metrics();
        let log = AuditLog::open(config(dir.path(), 2048, 100), m.clone()).expect("open");
        write(&log, 0..40);
        log.close();
        let files = log_files(dir.path()).expect("files").len();
        assert!(
            files >= 3,
            "40 records of ~190 bytes in 2 KiB files: {files} files"
        );
        assert_eq!(m.written.get(), 40);

        let log = AuditLog::open(config(dir.path(), 2048, 100), metrics()).expect("reopen");
        write(&log, 40..45);
        log.close();
        let r = verify_dir(dir.path()).expect("intact");
        assert_eq!(
            (r.records, r.first_seq, r.last_seq),
            (45, Some(1), Some(45))
        );
        assert!(r.truncated.is_empty());
    }

    fn newest(dir: &Path) -> PathBuf {
        log_files(dir).expect("files").pop().expect("a file")
    }

    #[test]
    fn alteration_and_removal_are_detected() {
        let dir = tempfile::tempdir().expect("dir");
        let log = AuditLog::open(config(dir.path(), 1 << 20, 100), metrics()).expect("open");
        write(&log, 0..5);
        log.close();
        let path = newest(dir.path());
        let good = std::fs::read_to_string(&path).expect("read");

        // Five records and their seal: the seal (line 6) finds any record altered.
        let altered = good.replacen("\"outcome\":\"ok\"", "\"outcome\":\"no\"", 1);
        std::fs::write(&path, &altered).expect("write");
        let e = verify_dir(dir.path()).expect_err("altered");
        assert!(matches!(&e, VerifyError::Broken { line: 6, .. }), "{e}");
        assert!(e.to_string().contains("records 1..5"), "{e}");

        let lines: Vec<&str> = good.split_inclusive('\n').collect();
        let removed: String = lines
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != 2)
            .map(|(_, l)| *l)
            .collect();
        std::fs::write(&path, &removed).expect("write");
        let e = verify_dir(dir.path()).expect_err("removed").to_string();
        assert!(e.contains("line 3") && e.contains("removed"), "{e}");

        let swapped: String = [lines[0], lines[2], lines[1], lines[3], lines[4], lines[5]].concat();
        std::fs::write(&path, &swapped).expect("write");
        assert!(verify_dir(dir.path()).is_err(), "reordered records passed");
    }

    #[test]
    fn a_crash_cut_tail_is_reported_and_the_chain_resumes_after_it() {
        let dir = tempfile::tempdir().expect("dir");
        let log = AuditLog::open(config(dir.path(), 1 << 20, 100), metrics()).expect("open");
        write(&log, 0..5);
        log.close();
        let path = newest(dir.path());
        let bytes = std::fs::read(&path).expect("read");
        let seal_line = bytes[..bytes.len() - 1]
            .rsplit(|&b| b == b'\n')
            .next()
            .map_or(0, |l| l.len() + 1);
        // The crash cut the batch's seal: its five records stand unsealed.
        std::fs::write(&path, &bytes[..bytes.len() - 40]).expect("cut");
        let r = verify_dir(dir.path()).expect("a cut tail is not fatal");
        assert_eq!((r.records, r.last_seq), (5, Some(5)));
        assert_eq!(r.truncated, vec![(path.clone(), seal_line - 40)]);
        assert_eq!(r.unsealed, vec![(path.clone(), 5)]);

        // The restarted gateway starts a new file; its first seal starts the chain.
        let log = AuditLog::open(config(dir.path(), 1 << 20, 100), metrics()).expect("reopen");
        write(&log, 5..8);
        log.close();
        assert_eq!(log_files(dir.path()).expect("files").len(), 2);
        let r = verify_dir(dir.path()).expect("resumed");
        assert_eq!((r.records, r.last_seq), (8, Some(8)));
        assert_eq!(r.unsealed, vec![(path, 5)]);
    }

    /// Starting reads only the log's end: an altered last batch refuses to start (a new
    /// chain on top would hide it); older files are `audit verify`'s to check.
    #[test]
    fn an_altered_last_batch_refuses_to_start() {
        let dir = tempfile::tempdir().expect("dir");
        let log = AuditLog::open(config(dir.path(), 1 << 20, 100), metrics()).expect("open");
        write(&log, 0..3);
        write(&log, 3..5);
        log.close();
        let path = newest(dir.path());
        let good = std::fs::read_to_string(&path).expect("read");
        // The last record's outcome: in the last batch, however records were batched.
        let mut altered = good.clone();
        let at = altered.rfind("\"ok\"").expect("outcome");
        altered.replace_range(at..at + 4, "\"no\"");
        std::fs::write(&path, &altered).expect("alter");
        let e = AuditLog::open(config(dir.path(), 1 << 20, 100), metrics())
            .err()
            .expect("refused");
        assert!(matches!(e, AuditError::Damaged { .. }), "{e}");
        std::fs::write(&path, &good).expect("restore");
        AuditLog::open(config(dir.path(), 1 << 20, 100), metrics()).expect("intact again");
    }

    /// A log written before the seals (a hash per record) goes on with sealed batches.
    #[test]
    fn a_format_1_log_goes_on_with_sealed_batches() {
        let dir = tempfile::tempdir().expect("dir");
        let mut v1 = Vec::new();
        let mut prev = record::GENESIS;
        for seq in 1..=3u64 {
            let prefix = format!(
                r#"{{"seq":{seq},"time":"2026-11-25T08:00:00Z","request_id":"r","partner":"bank","route":"link_check","outcome":"ok","documents":[],"prev":"{}""#,
                hex::encode(prev)
            );
            prev = record::hash_of(prefix.as_bytes());
            v1.extend_from_slice(prefix.as_bytes());
            v1.extend_from_slice(format!(",\"hash\":\"{}\"}}\n", hex::encode(prev)).as_bytes());
        }
        std::fs::write(dir.path().join("audit-00000000000000000001-0.log"), &v1).expect("write");
        let log = AuditLog::open(config(dir.path(), 1 << 20, 100), metrics()).expect("open");
        write(&log, 0..2);
        log.close();
        let r = verify_dir(dir.path()).expect("one chain through both formats");
        assert_eq!((r.records, r.last_seq), (5, Some(5)));
        let text = std::fs::read_to_string(newest(dir.path())).expect("read");
        assert!(
            text.contains(&format!("\"prev\":\"{}\"", hex::encode(prev))),
            "the first seal names the last format-1 record: {text}"
        );
    }

    /// A request worker's runtime: one thread.
    fn worker() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("runtime")
    }

    /// Whether the answer is still held after 100 ms.
    fn still_held(recorded: Recorded<'_>) -> bool {
        worker().block_on(async {
            tokio::time::timeout(Duration::from_millis(100), recorded.written())
                .await
                .is_err()
        })
    }

    /// Records of `tasks` requests ready together on one worker, each awaiting its
    /// `written()`, in a current-thread runtime; panics if they are not all written
    /// within 10 s.
    fn answer_together(log: &AuditLog, tasks: u8) {
        worker().block_on(async {
            let requests = (0..tasks).map(|i| async move {
                let recorded = log.reserve().expect("room").record(entry(i));
                recorded.written().await
            });
            let all = futures_util::future::join_all(requests);
            let written = tokio::time::timeout(Duration::from_secs(10), all)
                .await
                .expect("every answer let go");
            assert!(written.iter().all(|w| *w), "{written:?}");
        });
    }

    /// With `answer_after = "write"` a request's records are written by its own worker,
    /// all the requests ready on it in one batch: here there is no writer thread at all.
    #[test]
    fn request_workers_write_their_records_in_one_batch_without_the_thread() {
        let dir = tempfile::tempdir().expect("dir");
        let m = metrics();
        let log =
            AuditLog::open_with(config(dir.path(), 1 << 20, 100), m.clone(), false).expect("open");
        answer_together(&log, 50);
        assert_eq!(m.written.get(), 50);
        let text = std::fs::read_to_string(newest(dir.path())).expect("read");
        let seals = text.lines().filter(|l| l.contains("\"seal\"")).count();
        assert_eq!(seals, 1, "one batch for the 50 requests:\n{text}");
        let r = verify_dir(dir.path()).expect("intact");
        assert_eq!((r.records, r.last_seq), (50, Some(50)));

        // With `"fsync"` they wait for the thread, which is not there.
        let mut cfg = config(dir.path(), 1 << 20, 100);
        cfg.answer_after = AnswerAfter::Fsync;
        drop(log);
        let log = AuditLog::open_with(cfg, metrics(), false).expect("reopen");
        let recorded = log.reserve().expect("room").record(entry(1));
        assert!(still_held(recorded), "answered before any fsync");
    }

    /// A worker whose write was slow leaves the next batches to the thread (not there
    /// in this test, so the answers wait) until a second has passed.
    #[test]
    fn a_slow_write_hands_the_writing_to_the_thread() {
        let dir = tempfile::tempdir().expect("dir");
        let log =
            AuditLog::open_with(config(dir.path(), 1 << 20, 100), metrics(), false).expect("open");
        // Every write counts as slow.
        log.shared.lock().worker_write_budget = Duration::ZERO;
        answer_together(&log, 5);
        let recorded = log.reserve().expect("room").record(entry(5));
        assert!(
            still_held(recorded),
            "a worker wrote again right after a slow write"
        );
        assert_eq!(verify_dir(dir.path()).expect("intact").records, 5);
        log.shared.lock().worker_write_budget = Duration::from_secs(60);
        std::thread::sleep(Duration::from_millis(1100));
        answer_together(&log, 2);
        assert_eq!(verify_dir(dir.path()).expect("intact").records, 8);
    }

    /// What a worker leaves (a record abandoned before its worker came back, a file's
    /// end, data written since the last fsync) reaches the thread without any `sync`.
    #[test]
    fn the_thread_takes_what_the_workers_leave() {
        let dir = tempfile::tempdir().expect("dir");
        let wait_for = |what: &str, done: &dyn Fn() -> bool| {
            for _ in 0..500 {
                if done() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            panic!("{what}: not within 5 s");
        };
        let records = || verify_dir(dir.path()).map_or(0, |r| r.records);

        // The worker's future dropped before it wrote: the client went away.
        let log = AuditLog::open(config(dir.path(), 2048, 100), metrics()).expect("open");
        // The thread idle first, as it is between a server's requests.
        log.sync();
        std::thread::sleep(Duration::from_millis(50));
        drop(log.reserve().expect("room").record(entry(0)));
        wait_for("the abandoned record", &|| records() == 1);

        // 2 KiB files: a worker stops at each file's end, the thread rotates.
        answer_together(&log, 30);
        wait_for("thirty more", &|| records() == 31);
        assert!(log_files(dir.path()).expect("files").len() >= 3);
        log.close();

        // Written by a worker, checkpointed by the thread once the interval passes: it
        // was told there was something to fsync.
        let key_path = dir.path().join("checkpoint.pem");
        let key = crate::key_files::generate_signing_key();
        crate::key_files::save_signing_key(&key, &key_path).expect("key");
        let mut cfg = config(dir.path(), 1 << 20, 100);
        let points = dir.path().join("checkpoints");
        cfg.checkpoints = Some(CheckpointConfig {
            dir: points.clone(),
            key: key_path,
            interval: Duration::from_millis(20),
        });
        let log = AuditLog::open(cfg, metrics()).expect("reopen");
        log.sync();
        std::thread::sleep(Duration::from_millis(50));
        answer_together(&log, 5);
        wait_for("a checkpoint of record 36", &|| {
            checkpoint::load(&points, &key.verifying_key())
                .is_ok_and(|c| c.iter().any(|p| p.seq == 36))
        });
        log.close();
    }

    #[test]
    fn a_directory_has_one_writer() {
        let dir = tempfile::tempdir().expect("dir");
        let first = AuditLog::open(config(dir.path(), 4096, 10), metrics()).expect("open");
        let second = AuditLog::open(config(dir.path(), 4096, 10), metrics());
        assert!(matches!(second, Err(AuditError::InUse { .. })));
        first.close();
        AuditLog::open(config(dir.path(), 4096, 10), metrics()).expect("free after close");
    }

    #[test]
    fn a_full_queue_sheds_or_drops_as_configured() {
        let dir = tempfile::tempdir().expect("dir");
        let log = AuditLog::open(config(dir.path(), 1 << 20, 2), metrics()).expect("open");
        let a = log.reserve().expect("first");
        let b = log.reserve().expect("second");
        assert!(log.reserve().is_err(), "a third is shed");
        drop(a); // an abandoned request frees its place
        let c = log.reserve().expect("room again");
        b.record(entry(1));
        c.record(entry(2));
        log.close();

        let m = metrics();
        let mut cfg = config(dir.path(), 1 << 20, 1);
        cfg.when_full = WhenFull::Drop;
        let log = AuditLog::open(cfg, m.clone()).expect("open");
        let held = log.reserve().expect("first");
        log.reserve()
            .expect("drop mode answers anyway")
            .record(entry(3));
        held.record(entry(4));
        log.close();
        assert_eq!((m.written.get(), m.dropped.get()), (1, 1));
        assert_eq!(verify_dir(dir.path()).expect("intact").records, 3);
    }
}
