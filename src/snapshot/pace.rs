//! The I/O step of a paced snapshot job (verifying and indexing a new base, writing an
//! object): the pace itself is crate::pace, shared with the side runtimes.

use crate::pace::Pacer;

/// Files are read this much at a time (a step of the pace).
pub(super) const READ_CHUNK: usize = 1 << 20;

/// What a paced read or write moves per system call. A thread inside one is not preempted
/// (kernels built without kernel preemption, as this machine's is): a 1 MiB read into fresh
/// pages measured 2.9 ms on the CPU in one piece, a 64 KiB one stays well under the burst.
const PACED_IO: usize = 64 << 10;

/// How much one read or write system call of `pacer`'s job should move: [`PACED_IO`] when
/// paced.
pub(super) fn io_step(pacer: &Pacer) -> usize {
    if pacer.is_paced() {
        PACED_IO
    } else {
        READ_CHUNK
    }
}
