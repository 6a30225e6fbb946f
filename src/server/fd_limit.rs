//! The open-file limit, checked against the connections a config allows before anything
//! is bound: a gateway whose limit is below them fails under load with EMFILE at accept
//! (and for its audit files), long after it started without a word. Raised within the
//! hard limit where the soft one is lower (as Go's runtime does at start); refused with
//! what to change where even the hard limit is too low.

/// Descriptors beyond connections: listeners, audit and snapshot files, the runtimes'.
const OTHER_FILES: u64 = 256;

#[derive(Debug, thiserror::Error)]
#[error(
    "the open-file limit is {soft} (hard limit {hard}), and the connections the config allows \
     ({connections}: server.max_connections, plus [unauthenticated] max_connections twice) \
     need about {needed}: raise the limit (systemd LimitNOFILE=, a container's ulimits, \
     `ulimit -n` in a shell) or lower those settings"
)]
pub struct FdLimitError {
    soft: u64,
    hard: u64,
    connections: usize,
    needed: u64,
}

/// Makes sure `connections` (and the gateway's other files) fit the open-file limit.
pub fn ensure(connections: usize) -> Result<(), FdLimitError> {
    let needed = connections as u64 + OTHER_FILES;
    let Ok((soft, hard)) = rlimit::Resource::NOFILE.get() else {
        // Nothing to check against (not a Unix limit here).
        return Ok(());
    };
    if soft >= needed {
        return Ok(());
    }
    let raised = needed.min(hard);
    if rlimit::Resource::NOFILE.set(raised, hard).is_ok() {
        tracing::info!(from = soft, to = raised, "raised the open-file limit");
        if raised >= needed {
            return Ok(());
        }
    }
    Err(FdLimitError {
        soft,
        hard,
        connections,
        needed,
    })
}
