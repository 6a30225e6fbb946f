//! Side runtimes: a thread with a single-threaded tokio runtime of its own, for work that
//! must neither wait behind the request workers nor hold them up (linkerd2-proxy runs its
//! admin and control tasks the same way).
//!
//! - TLS handshakes (`permitgate-tls`, nice 10). A handshake is CPU work (signatures)
//!   that any connecting client can ask for; on the request workers, a thousand clients
//!   reconnecting at once put a thousand handshakes in the run queue ahead of the
//!   requests of open connections (measured: another partner's p99 from 0.2 ms to 120 ms,
//!   and queue-delay shedding). Here they queue among themselves, and the OS shares the
//!   cores between this thread and the request workers. Below the request workers (a
//!   tenth of their weight when both want a core): handshakes use mostly the CPU the
//!   requests of open connections leave, and are never starved outright (SCHED_IDLE was
//!   measured slightly better for the victim, but let a busy machine stall handshakes past
//!   their deadline). Connections are accepted and served on the request workers (their
//!   sockets belong to that runtime's I/O driver); only the handshake is polled here.
//! - Accepting (`permitgate-acc`, nice 10): the partner listener. The door (door.rs)
//!   resets most of a connection flood as it arrives; doing so here costs this thread, not
//!   the request workers, and never waits behind handshakes (the listen queue would fill,
//!   and a partner's SYN would wait a second to be sent again). A connection let in is
//!   handed to the request workers' I/O driver.
//! - Both door threads give way (`Pace::GIVE_WAY`): every 100 µs of work they yield the
//!   core to a request worker that woke meanwhile, and go on at once when none did. At
//!   nice 10 alone the kernel let a worker wait while either ran 2–2.4 ms in one piece
//!   (`perf sched timehist`, idle TLS from many hosts); with it, every attack of
//!   `scenario doors` left the victim's p99 within 2× of alone in every round.
//! - Control (`permitgate-ctl`): the ops listener (metrics and probes answer however
//!   busy the request workers are), the file watcher and the replication follower. Its
//!   blocking threads (`permitgate-ctl-io`: reading, verifying and indexing a new base,
//!   applying deltas, fsyncs, freeing the state a swap replaced) run at nice 10 too: a
//!   10M-document swap is a third of a second of CPU, which at normal priority took a
//!   core from the request workers (p99 during a swap 3.8–19× of p99 without,
//!   `scenario swap`; 3.5–8.8× at nice 10). SCHED_IDLE measured the same as nice 10
//!   (1.7–7×) and would let an overloaded gateway put off loading new data for minutes.
//!   What did help is pacing the load while serving (snapshot::Pace): a quarter of a
//!   core at most, in millisecond steps.
//! - Followers (`permitgate-rly`, nice 10, only on a gateway that relays): the
//!   connections of partners that may only replicate. A publication wakes every held
//!   long-poll at once, and each follower then fetches its delta: with 1,000 followers,
//!   2,000 requests within tens of milliseconds, which on the request workers queued
//!   ahead of the partners' checks (`scenario fanout`). Here they queue among
//!   themselves; the sockets stay with the request workers' I/O driver, as for
//!   handshakes. Nice 10 did not keep the burst off the workers: the kernel let the
//!   thread spend its share in pieces of up to a 4 ms tick while a worker waited, so
//!   the thread is also paced (crate::pace, `Pace::FOLLOWERS`: 250 µs of work, 250 µs
//!   of rest). With one core for the relay, a partner's p99 beside 1,000 followers went
//!   from 2.1–2.4× of alone to 0.7–1.0× (`scenario fanout --pinned`, alternating runs),
//!   and a saturated relay still brought every follower each publication within 1 s.
//!   The door threads never rest: resting after each handshake made partners' new
//!   connections wait (p99 170–310 ms in handshake floods, `scenario doors`), for no
//!   victim within 2× that was not before.

use tokio::runtime::Handle;
use tokio::sync::oneshot;

use crate::pace::{pace_this_thread, thread_woke, Pace};
use crate::priority::set_priority;
pub use crate::priority::NICE_10;

pub struct SideRuntime {
    handle: Handle,
    stop: Option<oneshot::Sender<()>>,
}

impl SideRuntime {
    /// Starts the thread `name`; with `priority` (a nice value,
    /// such as [`NICE_10`]) where the OS allows it, keeping `pace` between the polls of
    /// [`Paced`](crate::pace::Paced) tasks, and its blocking threads (`spawn_blocking`,
    /// named `name-io`) at `blocking_priority`.
    pub fn start(
        name: &str,
        priority: Option<i32>,
        pace: Option<Pace>,
        blocking_priority: Option<i32>,
    ) -> std::io::Result<SideRuntime> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .thread_name(format!("{name}-io"))
            .on_thread_start(move || {
                if let Some(p) = blocking_priority {
                    set_priority(p);
                }
            })
            // Called on the runtime's own thread only: an idle spell is rest enough.
            .on_thread_unpark(thread_woke)
            .build()?;
        let handle = rt.handle().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                if let Some(p) = priority {
                    set_priority(p);
                }
                if let Some(pace) = pace {
                    pace_this_thread(pace);
                }
                rt.block_on(async {
                    let _ = stopped.await;
                })
            })?;
        Ok(SideRuntime {
            handle,
            stop: Some(stop),
        })
    }

    pub fn handle(&self) -> &Handle {
        &self.handle
    }
}

impl Drop for SideRuntime {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// This thread's nice value and scheduling policy, from /proc (fields 19 and 41 of
    /// its stat line).
    fn nice_and_policy() -> (i64, i64) {
        let stat = std::fs::read_to_string("/proc/thread-self/stat").expect("stat");
        let fields: Vec<i64> = stat[stat.rfind(')').expect("comm") + 2..]
            .split_whitespace()
            .map(|f| f.parse().unwrap_or(-1))
            .collect();
        (fields[16], fields[38])
    }

    #[test]
    fn side_threads_run_below_the_workers() {
        let rt = SideRuntime::start("pg-test-side", None, None, Some(NICE_10)).expect("start");
        let (tx, rx) = std::sync::mpsc::channel();
        let handle = rt.handle().clone();
        let base = nice_and_policy();
        rt.handle().spawn(async move {
            let runtime_thread = nice_and_policy();
            let blocking = handle
                .spawn_blocking(|| {
                    (
                        nice_and_policy(),
                        std::thread::current().name().map(str::to_owned),
                    )
                })
                .await
                .expect("blocking task");
            let _ = tx.send((runtime_thread, blocking));
        });
        let (runtime_thread, (blocking, name)) = rx
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("answer");
        assert_eq!(
            runtime_thread, base,
            "the runtime's own thread keeps its priority"
        );
        assert_eq!((blocking.0 - base.0, blocking.1), (10, base.1));
        assert_eq!(name.as_deref(), Some("pg-test-side-io"));
    }

    /// A paced side runtime rests between the polls of a task that keeps the thread busy
    /// (a yield does not park the thread, so it is not rest). Rests are lower bounds (a
    /// sleep never ends early), so this cannot flake: five polls of 2 ms hold four rests
    /// of 4 ms.
    #[test]
    fn a_paced_side_runtime_rests_between_the_polls_of_a_busy_task() {
        use crate::pace::{spin, Paced};
        use std::time::{Duration, Instant};
        let pace = Pace {
            burst: Duration::from_millis(2),
            rest: Duration::from_millis(4),
        };
        let rt = SideRuntime::start("pg-test-paced", None, Some(pace), None).expect("start");
        let (tx, rx) = std::sync::mpsc::channel();
        rt.handle().spawn(Paced::new(async move {
            let started = Instant::now();
            for _ in 0..5 {
                spin(Duration::from_millis(2));
                tokio::task::yield_now().await;
            }
            let _ = tx.send(started.elapsed());
        }));
        let paced = rx.recv_timeout(Duration::from_secs(10)).expect("answer");
        assert!(paced >= Duration::from_millis(5 * 2 + 4 * 4), "{paced:?}");
    }
}
