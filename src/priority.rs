//! Thread priorities: the side threads (TLS handshakes, control, followers, expensive
//! requests) run below the request workers, so that when both want a core the workers get
//! about ten times the weight.

/// The nice value of the side threads (the request workers keep 0).
pub const NICE_10: i32 = 10;

/// This thread at `nice` (Linux gives each thread a nice value of its own, set through its
/// thread id); where the OS refuses, it keeps its priority.
pub fn set_priority(nice: i32) {
    let tid = rustix::thread::gettid();
    if let Err(e) = rustix::process::setpriority_process(Some(tid), nice) {
        tracing::debug!(error = %e, "side thread keeps its priority");
    }
}
