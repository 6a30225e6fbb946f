//! The audit trail: one record per answered partner request, appended to size-rotated
//! files by a writer thread, off the request path, each batch sealed by a hash that chains
//! the batches (src/audit/record.rs).
//!
//! The request path reserves a place in the writer's queue ([`AuditLog::reserve`]): when
//! the writer is `queue_capacity` records behind (a slow or failing disk), the request is
//! shed with 503 rather than answered without a record, unless `when_full = "drop"` says
//! availability matters more. An answer leaves only once its record is written: the
//! writer takes every record queued, writes them as one sealed batch with one `write(2)`
//! (group commit), and only then releases their answers ([`Recorded::written`]), so a
//! killed process has a record of every answer it gave. `fsync` runs at most every
//! `fsync_interval_ms` (0: every batch), so a machine crash loses at most that interval;
//! with `answer_after = "fsync"` the batch is fsynced before its answers leave, and a
//! machine crash loses none. Files are `audit-<first seq>-<unix ms>.log`, so their names
//! sort in chain order; the chain runs on across files and restarts.

pub mod checkpoint;
pub mod record;
pub mod ship;
pub mod verify;

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus::{IntCounter, IntGauge};

pub use record::{Answered, Documents};

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

enum Msg {
    /// A record, and whom to tell once it is written.
    Record(Answered, tokio::sync::oneshot::Sender<()>),
    /// Write and fsync everything before this, then answer.
    Sync(mpsc::SyncSender<()>),
    /// As `Sync`, then stop.
    Close(mpsc::SyncSender<()>),
}

pub struct AuditLog {
    tx: mpsc::Sender<Msg>,
    /// Records reserved or queued and not yet written.
    pending: Arc<AtomicUsize>,
    capacity: usize,
    when_full: WhenFull,
    dropped: IntCounter,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
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
pub struct Recorded(Option<tokio::sync::oneshot::Receiver<()>>);

impl Recorded {
    /// Waits until the record is written (or fsynced, as `answer_after` says); `false` if
    /// it never will be (the writer stopped), and the answer must not leave as given.
    pub async fn written(self) -> bool {
        match self.0 {
            Some(rx) => rx.await.is_ok(),
            // `when_full = "drop"`: answered without a record, by configuration.
            None => true,
        }
    }
}

impl Slot<'_> {
    pub fn record(mut self, entry: Answered) -> Recorded {
        if !std::mem::take(&mut self.held) {
            self.log.dropped.inc();
            return Recorded(None);
        }
        let (done, written) = tokio::sync::oneshot::channel();
        if self.log.tx.send(Msg::Record(entry, done)).is_err() {
            // The writer is gone (shutting down): nothing will write it.
            self.log.pending.fetch_sub(1, Ordering::Relaxed);
            self.log.dropped.inc();
        }
        Recorded(Some(written))
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        if self.held {
            self.log.pending.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl AuditLog {
    /// Opens (or creates) the log in `config.dir`, continuing its chain, and starts the
    /// writer thread.
    pub fn open(config: AuditConfig, metrics: AuditMetrics) -> Result<AuditLog, AuditError> {
        std::fs::create_dir_all(&config.dir).map_err(io_err(&config.dir))?;
        // Two writers would fork the chain: the lock is held as long as the writer runs.
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
        let checkpoints = match &config.checkpoints {
            Some(c) => Some((c.clone(), crate::key_files::load_signing_key(&c.key)?)),
            None => None,
        };
        let pending = Arc::new(AtomicUsize::new(0));
        let (tx, rx) = mpsc::channel();
        let writer = Writer {
            config: config.clone(),
            file: None,
            size: 0,
            seq: tail.next_seq,
            prev: tail.prev,
            batch_start: None,
            append_to: tail.append_to,
            pending: pending.clone(),
            metrics: metrics.clone(),
            dirty: false,
            last_sync: Instant::now(),
            checkpoints,
            checkpointed: tail.next_seq.saturating_sub(1),
            last_checkpoint: Instant::now(),
            _lock: lock,
        };
        // On one CPU the writer takes the core from the request worker whose records it
        // waits for: it must not spin for the next one, and at nice 10 its wake-ups do not
        // preempt the worker, which answers and records what it has first (batches of
        // several records instead of one, a context switch per batch instead of two per
        // request; docs/benchmarks.md, Performance III).
        let one_cpu = std::thread::available_parallelism().is_ok_and(|n| n.get() == 1);
        let handle = std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || {
                if one_cpu {
                    crate::priority::set_priority(crate::priority::NICE_10);
                }
                writer.run(rx, if one_cpu { Duration::ZERO } else { SPIN })
            })
            .map_err(io_err(&config.dir))?;
        Ok(AuditLog {
            tx,
            pending,
            capacity: config.queue_capacity,
            when_full: config.when_full,
            dropped: metrics.dropped,
            writer: Mutex::new(Some(handle)),
        })
    }

    pub fn reserve(&self) -> Result<Slot<'_>, Full> {
        if self.pending.fetch_add(1, Ordering::Relaxed) < self.capacity {
            return Ok(Slot {
                log: self,
                held: true,
            });
        }
        self.pending.fetch_sub(1, Ordering::Relaxed);
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
        if self.tx.send(Msg::Sync(done_tx)).is_ok() {
            let _ = done_rx.recv();
        }
    }

    /// Writes and fsyncs what is queued, then stops the writer (shutdown, after the
    /// drain). Records after this are counted as dropped.
    pub fn close(&self) {
        let (done_tx, done_rx) = mpsc::sync_channel(1);
        if self.tx.send(Msg::Close(done_tx)).is_ok() {
            let _ = done_rx.recv();
        }
        let handle = self.writer.lock().unwrap_or_else(|e| e.into_inner()).take();
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

struct Writer {
    config: AuditConfig,
    file: Option<(File, PathBuf)>,
    size: u64,
    seq: u64,
    /// The last seal's hash.
    prev: [u8; 32],
    /// The unsealed batch in the buffer: its first record and where its lines start.
    batch_start: Option<(u64, usize)>,
    append_to: Option<PathBuf>,
    pending: Arc<AtomicUsize>,
    metrics: AuditMetrics,
    dirty: bool,
    last_sync: Instant,
    /// Where and with what checkpoints are signed, the last record one covers, and when.
    checkpoints: Option<(CheckpointConfig, ed25519_dalek::SigningKey)>,
    checkpointed: u64,
    last_checkpoint: Instant,
    _lock: File,
}

const MAX_BATCH: usize = 4096;
/// How long the writer looks for the next record before it parks (with more than one CPU).
const SPIN: Duration = Duration::from_micros(50);

/// The next message within `spin`, looked for without blocking (yielding the core to
/// whoever else wants it between looks).
fn spin_for(rx: &mpsc::Receiver<Msg>, spin: Duration) -> Option<Msg> {
    let until = Instant::now() + spin;
    loop {
        if let Ok(m) = rx.try_recv() {
            return Some(m);
        }
        if Instant::now() >= until {
            return None;
        }
        std::thread::yield_now();
    }
}

impl Writer {
    /// Writes what `rx` brings; looks for the next record for `spin` before it parks.
    fn run(mut self, rx: mpsc::Receiver<Msg>, spin: Duration) {
        let mut buf = Vec::with_capacity(64 * 1024);
        // The answers of the batch being written: released once it is.
        let mut answers = Vec::with_capacity(MAX_BATCH);
        loop {
            // Under load the next record comes within microseconds: looked for a little
            // while before the thread parks, so that a request's send rarely has to wake
            // it (a futex wake and a context switch for every few records otherwise).
            let spun = spin_for(&rx, spin);
            // Else blocks for the next record: its answer waits for it. Unwritten data is
            // fsynced when the interval comes round while nothing arrives.
            let first = if let Some(m) = spun {
                m
            } else if let Some(left) = self.next_timer() {
                match rx.recv_timeout(left) {
                    Ok(m) => m,
                    Err(mpsc::RecvTimeoutError::Timeout) => {
                        if self.dirty && self.last_sync.elapsed() >= self.config.fsync_interval {
                            self.fsync();
                        }
                        self.checkpoint(false);
                        continue;
                    }
                    Err(mpsc::RecvTimeoutError::Disconnected) => break,
                }
            } else {
                match rx.recv() {
                    Ok(m) => m,
                    Err(_) => break,
                }
            };
            let mut waiters = Vec::new();
            let mut closing = false;
            let mut batch = 0usize;
            // Everything queued meanwhile joins this batch: while one batch is written,
            // the next gathers (group commit).
            for msg in std::iter::once(first)
                .chain(std::iter::from_fn(|| rx.try_recv().ok()))
                .take(MAX_BATCH)
            {
                match msg {
                    Msg::Record(entry, done) => {
                        if self.size + buf.len() as u64 >= self.config.max_file_bytes {
                            // Every file ends with a seal.
                            self.seal(&mut buf);
                            self.write_out(&mut buf, &mut batch);
                            self.rotate();
                        }
                        self.batch_start.get_or_insert((self.seq, buf.len()));
                        record::encode(&entry, self.seq, &mut buf);
                        self.seq += 1;
                        batch += 1;
                        answers.push(done);
                    }
                    Msg::Sync(done) => waiters.push(done),
                    Msg::Close(done) => {
                        waiters.push(done);
                        closing = true;
                    }
                }
            }
            self.seal(&mut buf);
            self.write_out(&mut buf, &mut batch);
            let due = self.last_sync.elapsed() >= self.config.fsync_interval;
            let answers_wait_for_disk =
                self.config.answer_after == AnswerAfter::Fsync && !answers.is_empty();
            if self.dirty && (due || !waiters.is_empty() || answers_wait_for_disk) {
                self.fsync();
            }
            for done in answers.drain(..) {
                let _ = done.send(());
            }
            self.checkpoint(closing);
            for w in waiters {
                let _ = w.send(());
            }
            if closing {
                return;
            }
        }
        self.seal(&mut buf);
        self.write_out(&mut buf, &mut 0);
        self.fsync();
        self.checkpoint(true);
    }

    /// How long the writer may wait for records before it has something to do on its
    /// own: fsync written data, or checkpoint records no checkpoint covers. `None`:
    /// nothing pending.
    fn next_timer(&self) -> Option<Duration> {
        let fsync = self.dirty.then(|| {
            self.config
                .fsync_interval
                .saturating_sub(self.last_sync.elapsed())
        });
        let checkpoint = self.checkpoints.as_ref().and_then(|(c, _)| {
            (self.seq.saturating_sub(1) > self.checkpointed)
                .then(|| c.interval.saturating_sub(self.last_checkpoint.elapsed()))
        });
        match (fsync, checkpoint) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Signs where the chain stands, when checkpoints are configured, something sealed
    /// is not covered yet, and the interval has passed (or `now`). The log is fsynced
    /// first: a checkpoint never vouches for records a machine crash could still take.
    fn checkpoint(&mut self, now: bool) {
        let Some((c, _)) = &self.checkpoints else {
            return;
        };
        let last = self.seq.saturating_sub(1);
        let due = now || self.last_checkpoint.elapsed() >= c.interval;
        if !due || last <= self.checkpointed || self.batch_start.is_some() {
            return;
        }
        if self.dirty {
            self.fsync();
        }
        let Some((c, key)) = &self.checkpoints else {
            return;
        };
        let point = checkpoint::Checkpoint {
            seq: last,
            seal: self.prev,
            time_ms: i64::try_from(
                time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000,
            )
            .unwrap_or(i64::MAX),
        };
        match point.write(&c.dir, key) {
            Ok(()) => {
                self.checkpointed = last;
                self.last_checkpoint = Instant::now();
            }
            Err(e) => {
                // Tried again an interval later.
                self.last_checkpoint = Instant::now();
                self.metrics.write_errors.inc();
                tracing::error!(error = %crate::report::Report(&e), "audit checkpoint not written; trying again in an interval");
            }
        }
    }

    /// Seals the batch in `buf`, if any: its records and their seal go out in one write.
    fn seal(&mut self, buf: &mut Vec<u8>) {
        if let Some((first, start)) = self.batch_start.take() {
            self.prev = record::seal(first, self.seq - 1, &self.prev, start, buf);
        }
    }

    /// Writes `buf` to the current file, retrying (after cutting off any partial write)
    /// until it succeeds: records are never skipped. Meanwhile the queue fills and the
    /// request path sheds.
    fn write_out(&mut self, buf: &mut Vec<u8>, batch: &mut usize) {
        if buf.is_empty() {
            return;
        }
        // The buffer holds `batch` records, the last of them `seq - 1`.
        let first_seq = self.seq - *batch as u64;
        loop {
            match self.try_write(buf, first_seq) {
                Ok(()) => break,
                Err(e) => {
                    self.metrics.write_errors.inc();
                    tracing::error!(error = %e, "audit write failed; retrying");
                    if let Some((f, _)) = &self.file {
                        let _ = f.set_len(self.size);
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
        self.size += buf.len() as u64;
        buf.clear();
        self.metrics.written.inc_by(*batch as u64);
        self.pending.fetch_sub(*batch, Ordering::Relaxed);
        self.metrics
            .queue_depth
            .set(self.pending.load(Ordering::Relaxed) as i64);
        *batch = 0;
        self.dirty = true;
    }

    fn try_write(&mut self, buf: &[u8], first_seq: u64) -> std::io::Result<()> {
        if self.file.is_none() {
            let path = match self.append_to.take() {
                Some(p) => p,
                None => self.config.dir.join(format!(
                    "audit-{:020}-{}.log",
                    first_seq,
                    time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000
                )),
            };
            let mut f = OpenOptions::new().create(true).append(true).open(&path)?;
            self.size = f.seek(SeekFrom::End(0))?;
            self.file = Some((f, path));
        }
        let Some((f, _)) = self.file.as_mut() else {
            return Err(std::io::Error::other("no audit file"));
        };
        f.write_all(buf)
    }

    fn rotate(&mut self) {
        self.fsync();
        self.file = None;
        self.size = 0;
    }

    fn fsync(&mut self) {
        if let Some((f, path)) = &self.file {
            if let Err(e) = f.sync_data() {
                self.metrics.write_errors.inc();
                tracing::error!(error = %e, file = %path.display(), "audit fsync failed");
            }
        }
        self.dirty = false;
        self.last_sync = Instant::now();
    }
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
