//! Pacing for a long CPU-bound job (verifying and indexing a new base) that runs beside
//! the request workers: the job works in bursts and rests between them, so it never holds
//! a core for long and its stream through memory never evicts the workers' data for long.

use std::time::{Duration, Instant};

/// Files are read this much at a time (a step of the pace).
pub(super) const READ_CHUNK: usize = 1 << 20;

/// What a paced read or write moves per system call. A thread inside one is not preempted
/// (kernels built without kernel preemption, as this machine's is): a 1 MiB read into fresh
/// pages measured 2.9 ms on the CPU in one piece, a 64 KiB one stays well under the burst.
const PACED_IO: usize = 64 << 10;

/// How a job shares the cores: after each `burst` of work it rests `rest` bursts long, so
/// it takes at most 1 / (1 + `rest`) of a core. A burst is measured in wall time: one that
/// the request workers preempted used less of the CPU, and is not made up for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pace {
    pub burst: Duration,
    pub rest: u32,
}

impl Pace {
    /// Loading a new base while serving: at most a quarter of a core, in steps of about
    /// a millisecond; a 10M-document base takes about 2.5 s instead of 0.4 s.
    pub const BESIDE_REQUESTS: Pace = Pace {
        burst: Duration::from_millis(1),
        rest: 3,
    };
}

/// A [`Pace`] being kept, or none: call [`Pacer::tick`] between pieces of work.
pub(super) struct Pacer {
    pace: Option<Pace>,
    since: Instant,
}

impl Pacer {
    pub(super) fn new(pace: Option<Pace>) -> Pacer {
        Pacer {
            pace,
            since: Instant::now(),
        }
    }

    /// How much one read or write system call should move: [`PACED_IO`] when paced.
    pub(super) fn io_step(&self) -> usize {
        if self.pace.is_some() {
            PACED_IO
        } else {
            READ_CHUNK
        }
    }

    /// Rests when the current burst has run its length.
    pub(super) fn tick(&mut self) {
        let Some(pace) = self.pace else { return };
        if self.since.elapsed() >= pace.burst {
            std::thread::sleep(pace.burst * pace.rest);
            self.since = Instant::now();
        }
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
            rest: 2,
        };
        let started = Instant::now();
        let mut pacer = Pacer::new(Some(pace));
        let mut worked = Duration::ZERO;
        for _ in 0..5 {
            let piece = Instant::now();
            while piece.elapsed() < Duration::from_millis(2) {
                std::hint::spin_loop();
            }
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
