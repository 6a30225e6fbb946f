//! Who writes the audit trail. With `answer_after = "write"` the request workers do,
//! each taking every queued record when its turn comes ([`Shared::combine`]); the writer
//! thread ([`spawn`]) does what a worker must not wait for: fsyncs, rotation, retries of
//! a failed write, checkpoints, and records a worker left behind. With `"fsync"` the
//! thread writes every batch.

use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{fence, AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::{
    checkpoint, record, AnswerAfter, Answered, AuditConfig, AuditMetrics, CheckpointConfig, Tail,
};

/// A record and whom to tell once it is written.
pub(super) type Queued = (Answered, tokio::sync::oneshot::Sender<()>);

/// What wakes the writer thread.
pub(super) enum Ctl {
    /// Records wait for the thread: an fsync before their answers, a rotation, a failed
    /// write, an abandoned request, or written data the interval has to fsync.
    Kick,
    /// Write and fsync everything before this, then answer.
    Sync(mpsc::SyncSender<()>),
    /// As `Sync`, then stop.
    Close(mpsc::SyncSender<()>),
}

/// What the request workers and the writer thread share.
pub(super) struct Shared {
    /// The writer's state, taken by whoever writes: a request worker before it parks,
    /// or the thread.
    pub(super) writer: Mutex<Writer>,
    pub(super) records: mpsc::Sender<Queued>,
    /// Records sent and not yet taken by a writer: a worker that finds the writer busy
    /// leaves its record to the holder, who looks at this after letting go.
    pub(super) queued: AtomicUsize,
    /// Records reserved or queued and not yet written.
    pub(super) pending: Arc<AtomicUsize>,
    pub(super) closed: AtomicBool,
}

impl Shared {
    pub(super) fn new(
        writer: Writer,
        records: mpsc::Sender<Queued>,
        pending: Arc<AtomicUsize>,
    ) -> Shared {
        Shared {
            writer: Mutex::new(writer),
            records,
            queued: AtomicUsize::new(0),
            pending,
            closed: AtomicBool::new(false),
        }
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, Writer> {
        self.writer.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether records were sent after the last writer let go. The fence pairs with the
    /// one in [`Shared::combine`]: of a sender that failed to take the lock and the
    /// holder letting go, at least one sees the other.
    fn records_left(&self) -> bool {
        fence(Ordering::SeqCst);
        self.queued.load(Ordering::SeqCst) > 0
    }

    /// Writes every queued record as one batch, on the calling (request worker's)
    /// thread, unless another writer holds the log: then the holder writes them once it
    /// lets go (flat combining). What a worker must not do (fsync, rotate, retry a failed
    /// write) is left to the thread.
    pub(super) fn combine(&self, ctl: &mpsc::Sender<Ctl>) {
        // A few turns at most: a worker serves its own connections, not every other
        // worker's records for ever.
        for _ in 0..4 {
            // Pairs with the fence in `records_left`: this worker's record was counted
            // before it looks at the lock.
            fence(Ordering::SeqCst);
            let mut writer = match self.writer.try_lock() {
                Ok(w) => w,
                Err(std::sync::TryLockError::Poisoned(e)) => e.into_inner(),
                Err(std::sync::TryLockError::WouldBlock) => return,
            };
            let thread_needed = writer.worker_turn(self);
            drop(writer);
            if thread_needed {
                let _ = ctl.send(Ctl::Kick);
                return;
            }
            if !self.records_left() {
                return;
            }
        }
        let _ = ctl.send(Ctl::Kick);
    }
}

/// Starts the writer thread; it stops once `ctl`'s sender is dropped or says to close.
pub(super) fn spawn(
    shared: Arc<Shared>,
    ctl: mpsc::Receiver<Ctl>,
    checkpointer: Option<Checkpointer>,
    metrics: AuditMetrics,
    below_workers: bool,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("audit-writer".into())
        .spawn(move || {
            // Off the answers' path (fsyncs and checkpoints), the thread runs below the
            // request workers; with `"fsync"` answers wait for it.
            if below_workers {
                crate::priority::set_priority(crate::priority::NICE_10);
            }
            run(&shared, &ctl, checkpointer, &metrics);
        })
}

/// The writer thread: fsyncs within the interval, signs checkpoints, and writes what the
/// request workers leave to it, until `ctl` says to stop or its sender is dropped.
fn run(
    shared: &Shared,
    ctl: &mpsc::Receiver<Ctl>,
    mut checkpointer: Option<Checkpointer>,
    metrics: &AuditMetrics,
) {
    loop {
        // Blocks for the next message; unwritten data is fsynced and checkpoints are
        // signed when their time comes round while nothing arrives.
        let timer = {
            let writer = shared.lock();
            let checkpoint = checkpointer
                .as_ref()
                .and_then(|c| c.timer(writer.seq.saturating_sub(1)));
            match (writer.fsync_timer(), checkpoint) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            }
        };
        // A worker that found the log locked just now left its record to this thread.
        let first = if shared.records_left() {
            Some(Ctl::Kick)
        } else {
            match timer {
                Some(left) => match ctl.recv_timeout(left) {
                    Ok(m) => Some(m),
                    Err(mpsc::RecvTimeoutError::Timeout) => None,
                    Err(mpsc::RecvTimeoutError::Disconnected) => break,
                },
                None => match ctl.recv() {
                    Ok(m) => Some(m),
                    Err(_) => break,
                },
            }
        };
        let mut waiters = Vec::new();
        let mut closing = false;
        for msg in first.into_iter().chain(ctl.try_iter()) {
            match msg {
                Ctl::Kick => {}
                Ctl::Sync(done) => waiters.push(done),
                Ctl::Close(done) => {
                    waiters.push(done);
                    closing = true;
                }
            }
        }
        thread_turns(
            shared,
            &mut checkpointer,
            metrics,
            !waiters.is_empty(),
            closing,
        );
        if closing {
            shared.lock().close();
            shared.closed.store(true, Ordering::Release);
        }
        for w in waiters {
            let _ = w.send(());
        }
        if closing {
            return;
        }
    }
    thread_turns(shared, &mut checkpointer, metrics, true, true);
    shared.lock().close();
    shared.closed.store(true, Ordering::Release);
}

/// The thread's turns until nothing is queued: each writes under the lock, then fsyncs
/// and signs a checkpoint after letting go of it, so that the workers' batches are not
/// held up by the disk.
fn thread_turns(
    shared: &Shared,
    checkpointer: &mut Option<Checkpointer>,
    metrics: &AuditMetrics,
    sync: bool,
    closing: bool,
) {
    loop {
        // A checkpoint vouches only for what is on disk: one due asks for an fsync.
        let checkpoint_due = checkpointer.as_ref().is_some_and(|c| c.due(closing));
        let turn = shared.lock().thread_turn(shared, sync || checkpoint_due);
        if let Some(durable) = turn.finish(metrics) {
            if let Some(c) = checkpointer.as_mut() {
                c.write(durable, closing, metrics);
            }
        }
        // A worker that found the log busy left its record to this turn's holder.
        if !shared.records_left() {
            return;
        }
    }
}

/// Where the chain stands: the newest sealed record and its seal.
#[derive(Debug, Clone, Copy)]
struct Point {
    seq: u64,
    seal: [u8; 32],
}

/// What the thread does after a turn, without the writer's lock.
struct Turn {
    /// The file to fsync, if the turn wrote or found data not yet fsynced and it is time.
    fsync: Option<(Arc<File>, PathBuf)>,
    /// Answers that wait for the fsync (`answer_after = "fsync"`).
    answers: Vec<tokio::sync::oneshot::Sender<()>>,
    /// What is on disk once the fsync (if any) is done; `None` while something written
    /// is not fsynced.
    durable: Option<Point>,
}

impl Turn {
    /// Fsyncs, then lets the answers go; returns what is on disk.
    fn finish(self, metrics: &AuditMetrics) -> Option<Point> {
        if let Some((file, path)) = &self.fsync {
            fsync(file, path, metrics);
        }
        for done in self.answers {
            let _ = done.send(());
        }
        self.durable
    }
}

/// Signs checkpoints of the chain every interval (checkpoint.rs): the thread's own.
pub(super) struct Checkpointer {
    config: CheckpointConfig,
    key: ed25519_dalek::SigningKey,
    /// The newest record a checkpoint covers, and when the last one was tried.
    checkpointed: u64,
    last: Instant,
}

impl Checkpointer {
    pub(super) fn new(
        config: CheckpointConfig,
        key: ed25519_dalek::SigningKey,
        checkpointed: u64,
    ) -> Checkpointer {
        Checkpointer {
            config,
            key,
            checkpointed,
            last: Instant::now(),
        }
    }

    fn due(&self, now: bool) -> bool {
        now || self.last.elapsed() >= self.config.interval
    }

    /// How long until a checkpoint is due, when records up to `newest` are not covered.
    fn timer(&self, newest: u64) -> Option<Duration> {
        (newest > self.checkpointed)
            .then(|| self.config.interval.saturating_sub(self.last.elapsed()))
    }

    /// Signs `durable` (on disk), when it is past the last checkpoint and one is due (or
    /// `now`).
    fn write(&mut self, durable: Point, now: bool, metrics: &AuditMetrics) {
        if !self.due(now) || durable.seq <= self.checkpointed {
            return;
        }
        let point = checkpoint::Checkpoint {
            seq: durable.seq,
            seal: durable.seal,
            time_ms: i64::try_from(
                time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000,
            )
            .unwrap_or(i64::MAX),
        };
        self.last = Instant::now();
        match point.write(&self.config.dir, &self.key) {
            Ok(()) => self.checkpointed = durable.seq,
            Err(e) => {
                // Tried again an interval later.
                metrics.write_errors.inc();
                tracing::error!(error = %crate::report::Report(&e), "audit checkpoint not written; trying again in an interval");
            }
        }
    }
}

pub(super) struct Writer {
    config: AuditConfig,
    records: mpsc::Receiver<Queued>,
    /// A record taken from the queue that a worker left at a file's end for the thread,
    /// which may rotate.
    carried: Option<Queued>,
    /// Encoded lines not yet written: after a failed write, until the thread's retry.
    buf: Vec<u8>,
    /// Records in `buf`.
    unwritten: usize,
    /// Whom to tell once the records encoded are written.
    answers: Vec<tokio::sync::oneshot::Sender<()>>,
    /// Shared with the thread's fsync, which runs without the writer's lock.
    file: Option<(Arc<File>, PathBuf)>,
    size: u64,
    seq: u64,
    /// The last seal's hash.
    prev: [u8; 32],
    /// The unsealed batch in the buffer: its first record and where its lines start.
    batch_start: Option<(u64, usize)>,
    append_to: Option<PathBuf>,
    pending: Arc<AtomicUsize>,
    metrics: AuditMetrics,
    /// Written since the last fsync began.
    dirty: bool,
    last_sync: Instant,
    /// The log is closed: records still queued will not be written.
    closed: bool,
    /// A worker's write that takes longer than this (a disk throttling writes, a stalled
    /// volume) leaves the writing to the thread for [`WORKERS_OFF`]: the worker that
    /// blocks in write(2) blocks every connection it serves, while the thread only holds
    /// up answers, and the queue's limit sheds requests meanwhile.
    pub(super) worker_write_budget: Duration,
    workers_off_until: Option<Instant>,
    /// The directory's lock, held until the log is closed.
    lock: Option<File>,
}

const MAX_BATCH: usize = 4096;
/// A page-cache write of a batch takes microseconds.
const WORKER_WRITE_BUDGET: Duration = Duration::from_millis(2);
const WORKERS_OFF: Duration = Duration::from_secs(1);

impl Writer {
    pub(super) fn new(
        config: AuditConfig,
        tail: Tail,
        records: mpsc::Receiver<Queued>,
        pending: Arc<AtomicUsize>,
        metrics: AuditMetrics,
        lock: File,
    ) -> Writer {
        Writer {
            config,
            records,
            carried: None,
            buf: Vec::with_capacity(64 * 1024),
            unwritten: 0,
            answers: Vec::new(),
            file: None,
            size: 0,
            seq: tail.next_seq,
            prev: tail.prev,
            batch_start: None,
            append_to: tail.append_to,
            pending,
            metrics,
            dirty: false,
            last_sync: Instant::now(),
            closed: false,
            worker_write_budget: WORKER_WRITE_BUDGET,
            workers_off_until: None,
            lock: Some(lock),
        }
    }

    /// A request worker's turn: the queued records as one batch, written once. Returns
    /// whether the thread is needed: for a rotation, a failed write (retried there), or
    /// data now written that the interval must fsync.
    fn worker_turn(&mut self, shared: &Shared) -> bool {
        if self.closed {
            while let Ok((_, done)) = self.records.try_recv() {
                shared.queued.fetch_sub(1, Ordering::SeqCst);
                self.pending.fetch_sub(1, Ordering::Relaxed);
                self.metrics.dropped.inc();
                drop(done);
            }
            return false;
        }
        if !self.buf.is_empty() {
            // A failed write is being retried by the thread.
            return true;
        }
        if let Some(until) = self.workers_off_until {
            if Instant::now() < until {
                return true;
            }
            self.workers_off_until = None;
        }
        let was_dirty = self.dirty;
        let complete = self.gather(shared, false);
        self.seal();
        let started = Instant::now();
        let written = self.write_out(false);
        let took = started.elapsed();
        if took > self.worker_write_budget {
            self.workers_off_until = Some(Instant::now() + WORKERS_OFF);
            tracing::warn!(
                took_ms = took.as_secs_f64() * 1e3,
                "a slow audit write on a request worker; the writer thread takes the writes for a second"
            );
        }
        if !written {
            return true;
        }
        self.release();
        !complete || (self.dirty && !was_dirty)
    }

    /// The thread's turn: everything queued, rotating as needed, written with retries.
    /// Fsynced (by the caller, after letting go of the lock) when due, asked for
    /// (`sync`), or waited for (`answer_after = "fsync"`).
    fn thread_turn(&mut self, shared: &Shared, sync: bool) -> Turn {
        self.gather(shared, true);
        self.seal();
        self.write_out(true);
        let due = self.last_sync.elapsed() >= self.config.fsync_interval;
        let answers_wait_for_disk = self.config.answer_after == AnswerAfter::Fsync;
        if !answers_wait_for_disk {
            self.release();
        }
        let now = Point {
            seq: self.seq.saturating_sub(1),
            seal: self.prev,
        };
        if !self.dirty {
            return Turn {
                fsync: None,
                answers: std::mem::take(&mut self.answers),
                durable: Some(now),
            };
        }
        if !(due || sync || (answers_wait_for_disk && !self.answers.is_empty())) {
            return Turn {
                fsync: None,
                answers: Vec::new(),
                durable: None,
            };
        }
        // Whatever a worker writes from now on is for the next fsync.
        self.dirty = false;
        self.last_sync = Instant::now();
        Turn {
            fsync: self.file.clone(),
            answers: std::mem::take(&mut self.answers),
            durable: Some(now),
        }
    }

    /// After the last turn: records still queued will not be written, and another log
    /// may open the directory.
    fn close(&mut self) {
        self.closed = true;
        self.file = None;
        self.lock = None;
    }

    /// Encodes queued records (up to [`MAX_BATCH`]) into the buffer. At a file's end,
    /// rotates when `may_rotate`, else leaves the record for the thread and returns
    /// `false`.
    fn gather(&mut self, shared: &Shared, may_rotate: bool) -> bool {
        for _ in 0..MAX_BATCH {
            let next = self.carried.take().or_else(|| {
                let r = self.records.try_recv().ok();
                if r.is_some() {
                    shared.queued.fetch_sub(1, Ordering::SeqCst);
                }
                r
            });
            let Some((entry, done)) = next else {
                return true;
            };
            if self.size + self.buf.len() as u64 >= self.config.max_file_bytes {
                if !may_rotate {
                    self.carried = Some((entry, done));
                    return false;
                }
                // Every file ends with a seal.
                self.seal();
                self.write_out(true);
                self.rotate();
            }
            self.batch_start.get_or_insert((self.seq, self.buf.len()));
            record::encode(&entry, self.seq, &mut self.buf);
            self.seq += 1;
            self.unwritten += 1;
            self.answers.push(done);
        }
        true
    }

    /// Lets the answers of the records written go.
    fn release(&mut self) {
        for done in self.answers.drain(..) {
            let _ = done.send(());
        }
    }

    /// How long until written data is due for an fsync; `None`: nothing to fsync.
    fn fsync_timer(&self) -> Option<Duration> {
        self.dirty.then(|| {
            self.config
                .fsync_interval
                .saturating_sub(self.last_sync.elapsed())
        })
    }

    /// Seals the batch in the buffer, if any: its records and their seal go out in one
    /// write.
    fn seal(&mut self) {
        if let Some((first, start)) = self.batch_start.take() {
            self.prev = record::seal(first, self.seq - 1, &self.prev, start, &mut self.buf);
        }
    }

    /// Writes the buffer to the current file (after a failure, cutting off any partial
    /// write). With `retry` it tries until it succeeds: records are never skipped, and
    /// meanwhile the queue fills and the request path sheds. Without, a failure leaves
    /// the buffer for the thread and returns `false`.
    fn write_out(&mut self, retry: bool) -> bool {
        if self.buf.is_empty() {
            return true;
        }
        // The buffer holds `unwritten` records, the last of them `seq - 1`.
        let first_seq = self.seq - self.unwritten as u64;
        loop {
            match self.try_write(first_seq) {
                Ok(()) => break,
                Err(e) => {
                    self.metrics.write_errors.inc();
                    if let Some((f, _)) = &self.file {
                        let _ = f.set_len(self.size);
                    }
                    if !retry {
                        tracing::error!(error = %e, "audit write failed; the writer thread retries");
                        return false;
                    }
                    tracing::error!(error = %e, "audit write failed; retrying");
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
        self.size += self.buf.len() as u64;
        self.buf.clear();
        self.metrics.written.inc_by(self.unwritten as u64);
        self.pending.fetch_sub(self.unwritten, Ordering::Relaxed);
        self.metrics
            .queue_depth
            .set(self.pending.load(Ordering::Relaxed) as i64);
        self.unwritten = 0;
        self.dirty = true;
        true
    }

    fn try_write(&mut self, first_seq: u64) -> std::io::Result<()> {
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
            self.file = Some((Arc::new(f), path));
        }
        let Some((f, _)) = self.file.as_ref() else {
            return Err(std::io::Error::other("no audit file"));
        };
        (&**f).write_all(&self.buf)
    }

    fn rotate(&mut self) {
        self.fsync();
        self.file = None;
        self.size = 0;
    }

    fn fsync(&mut self) {
        if let Some((f, path)) = &self.file {
            fsync(f, path, &self.metrics);
        }
        self.dirty = false;
        self.last_sync = Instant::now();
    }
}

/// A failed fsync is counted (`permitgate_audit_write_errors_total`) and logged.
fn fsync(file: &File, path: &Path, metrics: &AuditMetrics) {
    if let Err(e) = file.sync_data() {
        metrics.write_errors.inc();
        tracing::error!(error = %e, file = %path.display(), "audit fsync failed");
    }
}
