//! Thread priorities: the side threads (TLS handshakes, control, followers, expensive
//! requests) run below the request workers, so that when both want a core the workers get
//! about ten times the weight.

/// thread_priority's cross-platform value for nice 10 under the normal policy.
pub const NICE_10: u8 = 22;

/// This thread at `value`; where the OS refuses, it keeps its priority.
pub fn set_priority(value: u8) {
    use thread_priority::unix::{
        set_thread_priority_and_policy, thread_native_id, NormalThreadSchedulePolicy,
        ThreadSchedulePolicy,
    };
    let priority = thread_priority::ThreadPriorityValue::try_from(value)
        .map(thread_priority::ThreadPriority::Crossplatform);
    if let Ok(priority) = priority {
        if let Err(e) = set_thread_priority_and_policy(
            thread_native_id(),
            priority,
            ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Other),
        ) {
            tracing::debug!(error = ?e, "side thread keeps its priority");
        }
    }
}
