//! The in-memory store every answer comes from.
//!
//! A [`State`] is one verified snapshot plus the overlay of changes applied on top of it
//! and an optional cache of snapshot lookups. The [`Store`] holds the current state behind
//! an `ArcSwap`: installing a new one is a pointer swap, and a request that loaded the old
//! state keeps answering from it (both documents of a link check come from one state).
//!
//! Changes published after the snapshot (deltas) go into a versioned overlay; a request
//! reads through a [`View`] pinned to one version, so it never sees half of a delta.
//!
//! Lookup order is overlay → cache → snapshot. The cache only ever holds snapshot results,
//! which never change for the life of a state, so it needs no invalidation; a new state
//! gets a new cache.

mod state;

mod metrics;

pub use metrics::ServedMetrics;
pub use state::{CacheConfig, CacheCounters, StaleVersion, State, StateInfo, View};

use std::sync::Arc;

use arc_swap::ArcSwapOption;

use time::OffsetDateTime;

use crate::snapshot::{Delta, Repo};

/// Why deltas could not be applied onto what is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    #[error("nothing is served yet to apply deltas onto")]
    NothingServed,
    #[error(transparent)]
    Stale(#[from] StaleVersion),
}

pub struct Store {
    current: ArcSwapOption<State>,
    /// The revocation list of temporary permits served to gates.
    revocations: crate::revocation_list::Served,
    cache: CacheConfig,
    counters: CacheCounters,
    served: ServedMetrics,
}

impl Store {
    pub fn new(cache: CacheConfig, counters: CacheCounters, served: ServedMetrics) -> Store {
        Store {
            current: ArcSwapOption::empty(),
            revocations: Default::default(),
            cache,
            counters,
            served,
        }
    }

    /// The state to answer one request from, or `None` before the first snapshot.
    #[inline]
    pub fn current(&self) -> arc_swap::Guard<Option<Arc<State>>> {
        self.current.load()
    }

    pub fn revocations(&self) -> &crate::revocation_list::Served {
        &self.revocations
    }

    pub fn is_ready(&self) -> bool {
        self.current.load().is_some()
    }

    /// Makes `repo` the state new requests see, and says so in the metrics; returns what
    /// is served now. The one way a base gets served (at start and by the follower).
    ///
    /// Blocks until the state it replaced is freed here, by the caller (a blocking thread):
    /// freeing a 10M-document state returns hundreds of MB to the OS, which must not
    /// happen on a request worker that held the last reference.
    pub fn install(&self, repo: Repo) -> Result<StateInfo, StaleVersion> {
        let state = Arc::new(State::new(repo, &self.cache, self.counters.clone())?);
        self.served.installed(&state);
        let info = (*state.view().info()).clone();
        if let Some(old) = self.current.swap(Some(state)) {
            release(old);
        }
        Ok(info)
    }

    /// Applies verified deltas, in order, onto what is served; each becomes visible at
    /// once. The expiry stays where it was: what is served is as fresh as the last manifest
    /// whose whole chain is in ([`Store::complete`]), not as the newer manifest naming
    /// these deltas, so a source that withholds the next delta cannot make a partial chain
    /// look fresh. `each` is told how long each delta took to apply.
    pub fn apply(
        &self,
        deltas: &[Delta],
        mut each: impl FnMut(std::time::Duration),
    ) -> Result<StateInfo, ApplyError> {
        let guard = self.current.load();
        let state = guard.as_ref().ok_or(ApplyError::NothingServed)?;
        for d in deltas {
            let started = std::time::Instant::now();
            let expires_at = state.view().info().expires_at;
            state.apply(StateInfo::of(&d.header().meta, expires_at), d.entries())?;
            each(started.elapsed());
        }
        self.served.installed(state);
        Ok((*state.view().info()).clone())
    }

    /// Every delta of a manifest is served (or it names none new: re-signed to extend its
    /// expiry): what is served is trusted until that manifest's `expires_at`.
    pub fn complete(&self, expires_at: OffsetDateTime) -> Result<StateInfo, ApplyError> {
        let guard = self.current.load();
        let state = guard.as_ref().ok_or(ApplyError::NothingServed)?;
        state.extend_expiry(expires_at);
        self.served.installed(state);
        Ok((*state.view().info()).clone())
    }
}

/// Drops `old` once the requests still reading it are done (their guards hold references),
/// so that the memory is freed on this thread; after a second, whoever is last frees it.
fn release(old: Arc<State>) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
    while Arc::strong_count(&old) > 1 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    drop(old);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::testing;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    fn store() -> Store {
        Store::new(
            CacheConfig::default(),
            CacheCounters::detached(),
            ServedMetrics::register(&prometheus::Registry::new()),
        )
    }

    /// A reader still holding the replaced state: install waits for it (so that the
    /// memory is freed on the installing thread), but not for ever.
    #[test]
    fn install_frees_the_replaced_state_itself_and_waits_a_bounded_time() {
        for (hold, waited) in [
            (Duration::from_millis(100), true),
            (Duration::from_secs(3), false),
        ] {
            let s = store();
            s.install(testing::repo(Vec::new(), 1)).expect("first");
            let held = s.current().as_ref().cloned().expect("served");
            let released = Arc::new(AtomicBool::new(false));
            let reader = {
                let released = released.clone();
                std::thread::spawn(move || {
                    std::thread::sleep(hold);
                    // Said before the reference goes: install may return the moment it does.
                    released.store(true, Ordering::SeqCst);
                    drop(held);
                })
            };
            s.install(testing::repo(Vec::new(), 2)).expect("second");
            assert_eq!(
                released.load(Ordering::SeqCst),
                waited,
                "reader holding {hold:?}"
            );
            reader.join().expect("reader");
        }
    }
}
