//! One consistent view: snapshot + overlay + cache.

use std::sync::atomic::{AtomicUsize, Ordering};

use dashmap::DashMap;
use prometheus::IntCounter;
use time::OffsetDateTime;

use crate::snapshot::{DocKey, Record, Repo, Snapshot};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheConfig {
    pub enabled: bool,
    pub max_entries: u64,
}

impl Default for CacheConfig {
    /// Off: the snapshot index is a single array probe, which a general-purpose cache does
    /// not beat even on skewed keys (see docs/benchmarks.md).
    fn default() -> Self {
        CacheConfig {
            enabled: false,
            max_entries: 1_000_000,
        }
    }
}

/// Pre-resolved `permitgate_cache_lookups_total{result}` handles.
#[derive(Clone)]
pub struct CacheCounters {
    pub hit: IntCounter,
    pub miss: IntCounter,
}

impl CacheCounters {
    /// Counters that are not registered anywhere (benches, tools).
    pub fn detached() -> CacheCounters {
        let c = || IntCounter::new("detached", "not exported").unwrap_or_else(|_| unreachable!());
        CacheCounters {
            hit: c(),
            miss: c(),
        }
    }
}

/// What answers report about the data they came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateInfo {
    pub version: u64,
    pub published_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
    /// `published_at` as RFC 3339, formatted once rather than per answer.
    pub published_at_text: String,
}

pub struct State {
    info: StateInfo,
    snapshot: Snapshot,
    overlay: DashMap<DocKey, Record>,
    /// Lets lookups skip the overlay's shard locks while it is empty (the usual case).
    overlay_len: AtomicUsize,
    cache: Option<moka::sync::Cache<DocKey, Option<Record>>>,
    counters: CacheCounters,
}

impl State {
    pub fn new(repo: Repo, cache: &CacheConfig, counters: CacheCounters) -> State {
        let m = &repo.manifest.manifest;
        State {
            info: StateInfo {
                version: m.version,
                published_at: m.published_at,
                expires_at: m.expires_at,
                published_at_text: crate::day::rfc3339(m.published_at),
            },
            snapshot: repo.snapshot,
            overlay: DashMap::new(),
            overlay_len: AtomicUsize::new(0),
            cache: cache
                .enabled
                .then(|| moka::sync::Cache::new(cache.max_entries)),
            counters,
        }
    }

    pub fn info(&self) -> &StateInfo {
        &self.info
    }

    pub fn snapshot(&self) -> &Snapshot {
        &self.snapshot
    }

    #[inline]
    pub fn get(&self, key: &DocKey) -> Option<Record> {
        if self.overlay_len.load(Ordering::Acquire) != 0 {
            if let Some(r) = self.overlay.get(key) {
                return Some(*r);
            }
        }
        match &self.cache {
            None => self.snapshot.get(key),
            Some(cache) => {
                if let Some(hit) = cache.get(key) {
                    self.counters.hit.inc();
                    return hit;
                }
                self.counters.miss.inc();
                let found = self.snapshot.get(key);
                cache.insert(*key, found);
                found
            }
        }
    }

    /// Puts records over the snapshot (changes published after it). Replication applies
    /// deltas through this; each record replaces the snapshot's record for its key.
    pub fn apply_overlay(&self, records: impl IntoIterator<Item = Record>) {
        for r in records {
            if self.overlay.insert(r.key, r).is_none() {
                self.overlay_len.fetch_add(1, Ordering::Release);
            }
        }
    }

    pub fn overlay_len(&self) -> usize {
        self.overlay_len.load(Ordering::Acquire)
    }
}
