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
//! - Control (`permitgate-ctl`): the ops listener (metrics and probes answer however
//!   busy the request workers are), the file watcher and the replication follower.

use tokio::runtime::Handle;
use tokio::sync::oneshot;

pub struct SideRuntime {
    handle: Handle,
    stop: Option<oneshot::Sender<()>>,
}

impl SideRuntime {
    /// Starts the thread `name`; with `priority` (thread_priority's cross-platform value,
    /// such as [`NICE_10`]) where the OS allows it.
    pub fn start(name: &str, priority: Option<u8>) -> std::io::Result<SideRuntime> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let handle = rt.handle().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                if let Some(p) = priority {
                    set_priority(p);
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

/// thread_priority's cross-platform value for nice 10 under the normal policy.
pub const NICE_10: u8 = 22;

/// This thread at `value`; where the OS refuses, it keeps its priority.
fn set_priority(value: u8) {
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
            tracing::debug!(error = ?e, "side runtime keeps its priority");
        }
    }
}

impl Drop for SideRuntime {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
