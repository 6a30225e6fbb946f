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
/// that the request workers preempted used less of the CPU, and is not made up for.
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
            std::thread::sleep(pace.rest);
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
        THREAD_PACER.with(|p| p.borrow_mut().tick());
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
