//! Overload detection by scheduling lag: a task asks to wake every [`TICK`] and notes how
//! late it woke. When the async workers are saturated, every ready task (each connection
//! with a request to read) waits its turn, and so does this one: its lateness is the queue
//! delay a newly read request faces. When two wakes in a row are later than the configured
//! limit (one late wake is a hiccup: a preempted thread, a slow syscall), new partner
//! requests are shed with 503 until the lag is back under it.
//!
//! Why not only the concurrency limit: a CPU-bound request holds its permit only while it
//! runs, so on a saturated machine few permits are ever taken while requests queue in
//! socket buffers and run queues, where no counter sees them. The lag sees the run queue;
//! [`socket_wait`] sees the socket buffer: how long ago the kernel received the data of a
//! request that is only now being read.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use prometheus::Gauge;
use tokio::sync::watch;

pub const TICK: Duration = Duration::from_millis(5);

pub struct LagMonitor {
    /// The smaller of the last two lags: over a limit only when both were.
    lag_us: AtomicU64,
    /// The last lag alone, and when it was measured (microseconds after `start`).
    recent_us: AtomicU64,
    measured_at_us: AtomicU64,
    start: Instant,
}

impl Default for LagMonitor {
    fn default() -> Self {
        LagMonitor {
            lag_us: AtomicU64::new(0),
            recent_us: AtomicU64::new(0),
            measured_at_us: AtomicU64::new(0),
            start: Instant::now(),
        }
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

impl LagMonitor {
    /// The gauge [`LagMonitor::run`] sets.
    pub fn register(registry: &prometheus::Registry) -> Gauge {
        crate::metrics::register(
            registry,
            Gauge::new(
                "permitgate_scheduling_lag_seconds",
                "How late a 5 ms timer last woke: the queue delay on the async workers; over server.max_queue_delay_ms, requests are shed.",
            ),
        )
    }

    /// How far behind the workers run, sustained over two wakes.
    pub fn lag(&self) -> Duration {
        Duration::from_micros(self.lag_us.load(Ordering::Relaxed))
    }

    /// Whether the workers may be running `limit` behind: the last wake was at least a
    /// quarter of it late, or the monitor has not woken for longer than a tick and that
    /// quarter (the workers are too busy to run it, or blocked). When not, no request can
    /// have waited `limit` in its socket, and reading the socket's wait (a getsockopt per
    /// request, a third of an HTTP/1.1 request's system calls) is skipped.
    pub fn may_lag(&self, limit: Duration) -> bool {
        let quarter = micros(limit / 4);
        let since = micros(self.start.elapsed())
            .saturating_sub(self.measured_at_us.load(Ordering::Relaxed));
        self.recent_us.load(Ordering::Relaxed) >= quarter || since > micros(TICK) + quarter
    }

    /// Measures until `stop` is set (or its sender is gone).
    pub async fn run(&self, gauge: Gauge, mut stop: watch::Receiver<bool>) {
        let mut previous = Duration::ZERO;
        loop {
            let asked = Instant::now();
            tokio::select! {
                _ = tokio::time::sleep(TICK) => {}
                _ = stop.changed() => return,
            }
            // Timers fire when the worker polls its drivers, where sockets that became
            // readable are woken too, so the timer alone comes back ahead of the requests
            // that just arrived. Yielding once puts this task behind them: the time until
            // it runs again is the work queued in front of a new request.
            let woke = Instant::now();
            tokio::task::yield_now().await;
            let lag = woke
                .saturating_duration_since(asked)
                .saturating_sub(TICK)
                .max(woke.elapsed());
            let sustained = lag.min(previous);
            previous = lag;
            self.lag_us.store(micros(sustained), Ordering::Relaxed);
            self.recent_us.store(micros(lag), Ordering::Relaxed);
            self.measured_at_us
                .store(micros(self.start.elapsed()), Ordering::Relaxed);
            gauge.set(lag.as_secs_f64());
        }
    }
}

/// How long ago the kernel last received data on this TCP socket (`tcpi_last_data_recv`,
/// millisecond resolution). Called when a request head has just been read, it is how long
/// the request waited in the socket buffer. `None` where TCP_INFO is not available.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
pub fn socket_wait(fd: std::os::fd::RawFd) -> Option<Duration> {
    let mut info = std::mem::MaybeUninit::<libc::tcp_info>::zeroed();
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: `info` is a writable tcp_info of `len` bytes; the kernel writes at most
    // `len` bytes and reports how many. `fd` is the connection's socket, open for as long
    // as the connection is served (the caller holds the stream).
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            info.as_mut_ptr().cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return None;
    }
    // SAFETY: zero-initialised, then (partly) filled by the kernel: every bit pattern is a
    // valid tcp_info (plain integers).
    let info = unsafe { info.assume_init() };
    Some(Duration::from_millis(u64::from(info.tcpi_last_data_recv)))
}

#[cfg(not(target_os = "linux"))]
pub fn socket_wait(_fd: i32) -> Option<Duration> {
    None
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::os::fd::AsRawFd;
    use std::sync::Arc;

    #[test]
    fn socket_wait_is_the_age_of_unread_data() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let mut client =
            std::net::TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        let (mut server, _) = listener.accept().expect("accept");
        client.write_all(b"request").expect("write");
        std::thread::sleep(Duration::from_millis(120));
        let waited = socket_wait(server.as_raw_fd()).expect("TCP_INFO on Linux");
        assert!(waited >= Duration::from_millis(100), "{waited:?}");
        let mut buf = [0u8; 7];
        server.read_exact(&mut buf).expect("read");
        client.write_all(b"fresh").expect("write");
        std::thread::sleep(Duration::from_millis(5));
        let fresh = socket_wait(server.as_raw_fd()).expect("TCP_INFO");
        assert!(fresh < Duration::from_millis(60), "{fresh:?}");
    }

    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn a_blocked_worker_shows_as_lag_and_clears_after() {
        let monitor = Arc::new(LagMonitor::default());
        let limit = Duration::from_millis(20);
        let overloaded = |m: &LagMonitor| (m.lag() > limit).then(|| m.lag());
        let (_stop_tx, stop) = watch::channel(false);
        let gauge = Gauge::new("lag", "test").expect("gauge");
        let m = monitor.clone();
        let g = gauge.clone();
        tokio::spawn(async move { m.run(g, stop).await });
        tokio::time::sleep(TICK * 4).await;
        assert_eq!(overloaded(&monitor), None, "an idle runtime has no lag");

        // One long stall is a hiccup, not overload.
        tokio::spawn(async { std::thread::sleep(Duration::from_millis(60)) });
        for _ in 0..10 {
            tokio::time::sleep(TICK).await;
            assert_eq!(
                overloaded(&monitor),
                None,
                "a single late wake shed requests"
            );
        }
        // Stalls back to back, the way a queue of CPU-bound requests keeps the worker.
        tokio::spawn(async {
            for _ in 0..4 {
                std::thread::sleep(Duration::from_millis(40));
                tokio::task::yield_now().await;
            }
        });
        let mut seen = None;
        for _ in 0..20 {
            tokio::time::sleep(TICK).await;
            if let Some(lag) = overloaded(&monitor) {
                seen = Some(lag);
                break;
            }
        }
        let lag = seen.expect("the lag was never seen");
        assert!(lag > Duration::from_millis(20), "{lag:?}");
        assert!(gauge.get() > 0.02);

        let mut cleared = false;
        for _ in 0..40 {
            tokio::time::sleep(TICK).await;
            if overloaded(&monitor).is_none() {
                cleared = true;
                break;
            }
        }
        assert!(cleared, "the lag never cleared");
    }

    /// The socket is worth reading only while the workers may be behind: not on an idle
    /// runtime, but while the monitor cannot run (a blocked worker) and after a late wake.
    #[tokio::test(flavor = "current_thread")]
    async fn the_socket_wait_is_read_only_when_the_workers_may_lag() {
        let monitor = Arc::new(LagMonitor::default());
        let limit = Duration::from_millis(40);
        let (_stop_tx, stop) = watch::channel(false);
        let m = monitor.clone();
        tokio::spawn(async move { m.run(Gauge::new("lag", "test").expect("gauge"), stop).await });
        tokio::time::sleep(TICK * 4).await;
        assert!(!monitor.may_lag(limit), "an idle runtime");
        // This test's thread is the only worker: blocked, the monitor cannot wake.
        std::thread::sleep(Duration::from_millis(30));
        assert!(monitor.may_lag(limit), "the monitor is overdue");
        // Its next wake is late by about as much: still worth reading, then not.
        tokio::time::sleep(Duration::from_millis(1)).await;
        tokio::task::yield_now().await;
        assert!(monitor.may_lag(limit), "a late wake");
        let mut quiet = false;
        for _ in 0..20 {
            tokio::time::sleep(TICK).await;
            if !monitor.may_lag(limit) {
                quiet = true;
                break;
            }
        }
        assert!(quiet, "never quiet again");
    }
}
