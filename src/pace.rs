//! Pacing for work that runs beside the request workers (indexing a new base, a relay's
//! followers): it works in bursts and rests between them, so it never holds a core for
//! long.
//!
//! Priorities alone do not bound that hold. The kernel shares a core fairly over a few
//! milliseconds: a request worker that has just used more than its share is not let in
//! when it wakes, and waits for the next tick (4 ms here) while a thread at nice 10 spends
//! its own share in one piece (measured: `perf sched timehist` showed the followers'
//! thread run 3.99 ms while the worker waited 4.01 ms). A rest lets the worker in.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// How a job shares the cores: after each `burst` of work it rests `rest` long, so it takes
/// at most `burst` / (`burst` + `rest`) of a core. A burst is measured in wall time: one
/// that the request workers preempted used less of the CPU, and is not made up for. A
/// zero `rest` gives way instead (sched_yield): a thread waiting for the core runs first,
/// and with none waiting the job goes on at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pace {
    pub burst: Duration,
    pub rest: Duration,
}

impl Pace {
    /// Loading a new base while serving: at most a quarter of a core, in steps of about
    /// a millisecond; a 10M-document base takes about 2.5 s instead of 0.4 s.
    pub const BESIDE_REQUESTS: Pace = Pace {
        burst: Duration::from_millis(1),
        rest: Duration::from_millis(3),
    };

    /// The followers' thread of a relay: at most half a core, and a request worker waits
    /// for it a quarter of a millisecond at most, plus the one follower's answer it is
    /// writing.
    pub const FOLLOWERS: Pace = Pace {
        burst: Duration::from_micros(250),
        rest: Duration::from_micros(250),
    };

    /// The doors (the accept thread, the TLS handshake thread): a handshake is a few polls
    /// of 0.1–0.3 ms of signatures, an accept and a reset at the door some 15 µs, and
    /// each thread gives way every 100 µs to a request worker that woke meanwhile, which
    /// at nice 10 the kernel would otherwise let wait for the rest of the thread's slice
    /// (2–2.4 ms runs seen, `perf sched timehist`). They never rest: resting made
    /// partners' new connections wait (p99 170–310 ms in handshake floods).
    pub const GIVE_WAY: Pace = Pace {
        burst: Duration::from_micros(100),
        rest: Duration::ZERO,
    };
}

/// A [`Pace`] being kept, or none: call [`Pacer::tick`] between pieces of work.
#[derive(Debug)]
pub struct Pacer {
    pace: Option<Pace>,
    since: Instant,
}

impl Pacer {
    pub fn new(pace: Option<Pace>) -> Pacer {
        Pacer {
            pace,
            since: Instant::now(),
        }
    }

    pub fn is_paced(&self) -> bool {
        self.pace.is_some()
    }

    /// Rests when the current burst has run its length.
    pub fn tick(&mut self) {
        let Some(pace) = self.pace else { return };
        if self.since.elapsed() >= pace.burst {
            if pace.rest.is_zero() {
                std::thread::yield_now();
            } else {
                std::thread::sleep(pace.rest);
            }
            self.since = Instant::now();
        }
    }

    /// A new burst begins: the thread was idle (it slept with nothing to do), which is
    /// rest enough.
    pub fn restart(&mut self) {
        self.since = Instant::now();
    }
}

thread_local! {
    /// The pace of the side runtime this thread drives, if any.
    static THREAD_PACER: RefCell<Pacer> = RefCell::new(Pacer::new(None));
}

/// This thread keeps `pace` between the polls of [`Paced`] futures.
pub fn pace_this_thread(pace: Pace) {
    THREAD_PACER.with(|p| *p.borrow_mut() = Pacer::new(Some(pace)));
}

/// Between two pieces of work of a task that does many in one poll (an accept loop):
/// this thread keeps its pace there too.
pub fn tick_this_thread() {
    THREAD_PACER.with(|p| p.borrow_mut().tick());
}

/// This thread was idle: its next burst starts now (a runtime's unpark hook).
pub fn thread_woke() {
    THREAD_PACER.with(|p| p.borrow_mut().restart());
}

pin_project_lite::pin_project! {
    /// A future whose polls keep its thread's pace ([`pace_this_thread`]): before each
    /// poll, the thread rests if its burst has run out. On a thread without a pace it is
    /// the future itself.
    pub struct Paced<F> {
        #[pin]
        inner: F,
    }
}

impl<F> Paced<F> {
    pub fn new(inner: F) -> Paced<F> {
        Paced { inner }
    }
}

impl<F: Future> Future for Paced<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        tick_this_thread();
        self.project().inner.poll(cx)
    }
}

/// Spins `d` on the CPU: a piece of work for the pacing tests.
#[cfg(test)]
pub(crate) fn spin(d: Duration) {
    let from = Instant::now();
    while from.elapsed() < d {
        std::hint::spin_loop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A loop that does many pieces of work in one poll (the accept loop) keeps its
    /// thread's pace by ticking between them. A rest is a lower bound (a sleep never ends
    /// early), so this cannot flake.
    #[test]
    fn a_loop_inside_one_poll_keeps_its_threads_pace() {
        std::thread::spawn(|| {
            pace_this_thread(Pace {
                burst: Duration::from_millis(1),
                rest: Duration::from_millis(4),
            });
            let started = Instant::now();
            spin(Duration::from_millis(1));
            tick_this_thread();
            assert!(
                started.elapsed() >= Duration::from_millis(5),
                "{:?}",
                started.elapsed()
            );
        })
        .join()
        .expect("paced thread");
    }

    /// Rests are lower bounds (a sleep never ends early), so this cannot flake: each
    /// piece of 2 ms of work ends a burst and is followed by a rest of 4 ms.
    #[test]
    fn a_paced_job_rests_after_every_burst() {
        let pace = Pace {
            burst: Duration::from_millis(2),
            rest: Duration::from_millis(4),
        };
        let started = Instant::now();
        let mut pacer = Pacer::new(Some(pace));
        let mut worked = Duration::ZERO;
        for _ in 0..5 {
            let piece = Instant::now();
            spin(Duration::from_millis(2));
            worked += piece.elapsed();
            pacer.tick();
        }
        assert!(
            started.elapsed() >= worked + Duration::from_millis(4 * 5),
            "{:?}",
            started.elapsed()
        );
    }
}
