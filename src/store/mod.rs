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

use crate::snapshot::Repo;

pub struct Store {
    current: ArcSwapOption<State>,
    cache: CacheConfig,
    counters: CacheCounters,
}

impl Store {
    pub fn new(cache: CacheConfig, counters: CacheCounters) -> Store {
        Store {
            current: ArcSwapOption::empty(),
            cache,
            counters,
        }
    }

    /// The state to answer one request from, or `None` before the first snapshot.
    #[inline]
    pub fn current(&self) -> arc_swap::Guard<Option<Arc<State>>> {
        self.current.load()
    }

    pub fn is_ready(&self) -> bool {
        self.current.load().is_some()
    }

    /// Makes `repo` the state new requests see; returns the state it replaced.
    pub fn install(&self, repo: Repo) -> Result<Option<Arc<State>>, StaleVersion> {
        let state = State::new(repo, &self.cache, self.counters.clone())?;
        Ok(self.current.swap(Some(Arc::new(state))))
    }
}
