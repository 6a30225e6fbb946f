//! One consistent view: snapshot + overlay + cache.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;

use dashmap::DashMap;
use prometheus::IntCounter;
use time::OffsetDateTime;

use crate::snapshot::{DocKey, Record, Repo, Snapshot, SnapshotMeta};

/// `[cache]` of the config file, read as it is (its `Default` is the config's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
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
    pub fn register(registry: &prometheus::Registry) -> CacheCounters {
        let lookups = crate::metrics::register(
            registry,
            prometheus::IntCounterVec::new(
                prometheus::Opts::new(
                    "permitgate_cache_lookups_total",
                    "Lookups through the record cache.",
                ),
                &["result"],
            ),
        );
        CacheCounters {
            hit: lookups.with_label_values(&["hit"]),
            miss: lookups.with_label_values(&["miss"]),
        }
    }

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

impl StateInfo {
    /// What a snapshot or delta header says, with the expiry of the manifest naming it.
    pub fn of(meta: &SnapshotMeta, expires_at: OffsetDateTime) -> StateInfo {
        let published_at = OffsetDateTime::from_unix_timestamp(meta.published_at)
            .unwrap_or(OffsetDateTime::UNIX_EPOCH);
        StateInfo {
            version: meta.version,
            published_at,
            expires_at,
            published_at_text: crate::day::rfc3339(published_at),
        }
    }
}

pub struct State {
    /// What the newest applied change says; swapped after a delta's entries are in.
    info: ArcSwap<StateInfo>,
    snapshot: Snapshot,
    /// Changes over the snapshot, each tagged with the data version that made it (`None`
    /// removes the document). A [`View`] sees the newest entry not above its version, so a
    /// delta becomes visible all at once, when `info` moves to its version.
    overlay: DashMap<DocKey, Vec<(u64, Option<Record>)>>,
    /// Lets lookups skip the overlay's shard locks while it is empty (the usual case).
    overlay_len: AtomicUsize,
    cache: Option<moka::sync::Cache<DocKey, Option<Record>>>,
    counters: CacheCounters,
}

impl State {
    /// The state a repo describes: its snapshot with its deltas applied in order.
    pub fn new(
        repo: Repo,
        cache: &CacheConfig,
        counters: CacheCounters,
    ) -> Result<State, StaleVersion> {
        let expires_at = repo.manifest.manifest.expires_at;
        let state = State {
            info: ArcSwap::from_pointee(StateInfo::of(&repo.snapshot.header().meta, expires_at)),
            snapshot: repo.snapshot,
            overlay: DashMap::new(),
            overlay_len: AtomicUsize::new(0),
            cache: cache
                .enabled
                .then(|| moka::sync::Cache::new(cache.max_entries)),
            counters,
        };
        for d in &repo.deltas {
            state.apply(StateInfo::of(&d.header().meta, expires_at), d.entries())?;
        }
        Ok(state)
    }

    /// A consistent view for one request: every lookup through it sees the same version.
    #[inline]
    pub fn view(&self) -> View<'_> {
        View {
            state: self,
            info: self.info.load(),
        }
    }

    pub fn snapshot(&self) -> &Snapshot {
        &self.snapshot
    }

    fn snapshot_get(&self, key: &DocKey) -> Option<Record> {
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

    /// Applies one change set (a delta) as data version `info.version`: entries first, then
    /// the version readers see. Versions must increase.
    pub fn apply(
        &self,
        info: StateInfo,
        entries: impl IntoIterator<Item = (DocKey, Option<Record>)>,
    ) -> Result<(), StaleVersion> {
        let current = self.info.load().version;
        if info.version <= current {
            return Err(StaleVersion {
                held: current,
                offered: info.version,
            });
        }
        for (key, rec) in entries {
            let mut slot = self.overlay.entry(key).or_default();
            if slot.is_empty() {
                self.overlay_len.fetch_add(1, Ordering::Release);
            }
            slot.push((info.version, rec));
        }
        self.info.store(Arc::new(info));
        Ok(())
    }

    /// A newer manifest that changes no data (re-signed to extend its expiry).
    pub fn extend_expiry(&self, expires_at: OffsetDateTime) {
        let mut info = (**self.info.load()).clone();
        info.expires_at = expires_at;
        self.info.store(Arc::new(info));
    }

    /// BLAKE3 of the base snapshot file (its object name).
    pub fn base_hash(&self) -> blake3::Hash {
        self.snapshot.content_hash()
    }

    /// Documents with changes over the snapshot.
    pub fn overlay_len(&self) -> usize {
        self.overlay_len.load(Ordering::Acquire)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("change set version {offered} is not above the held version {held}")]
pub struct StaleVersion {
    pub held: u64,
    pub offered: u64,
}

/// One request's window on a [`State`].
pub struct View<'a> {
    state: &'a State,
    info: arc_swap::Guard<Arc<StateInfo>>,
}

impl View<'_> {
    pub fn info(&self) -> &StateInfo {
        &self.info
    }

    /// Starts loading what [`View::get`] of these keys will read from the snapshot index.
    /// Only the plain index path is worth it: the overlay and the cache are hash tables of
    /// their own.
    pub fn prefetch<'k>(&self, keys: impl Iterator<Item = &'k DocKey> + Clone) {
        let st = self.state;
        if st.cache.is_none() && st.overlay_len.load(Ordering::Relaxed) == 0 {
            st.snapshot.prefetch(keys);
        }
    }

    #[inline]
    pub fn get(&self, key: &DocKey) -> Option<Record> {
        let st = self.state;
        if st.overlay_len.load(Ordering::Acquire) != 0 {
            if let Some(entries) = st.overlay.get(key) {
                let version = self.info.version;
                if let Some((_, rec)) = entries.iter().rev().find(|(v, _)| *v <= version) {
                    return *rec;
                }
            }
        }
        st.snapshot_get(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::document::{DocumentKind, Region};
    use crate::snapshot::{testing, RecordStatus, NO_RENEWAL};

    fn rec(k: u8, status: RecordStatus) -> Record {
        Record {
            key: DocKey([k; 16]),
            person: u64::from(k),
            valid_until: 30_000,
            status,
            kind: DocumentKind::TravelPermit,
            region: Region::HongKong,
            renewal: NO_RENEWAL,
        }
    }

    fn info(version: u64) -> StateInfo {
        let t = time::OffsetDateTime::now_utc();
        StateInfo {
            version,
            published_at: t,
            expires_at: t,
            published_at_text: crate::day::rfc3339(t),
        }
    }

    #[test]
    fn a_view_keeps_its_version_while_changes_land() {
        let state = State::new(
            testing::repo(
                vec![rec(1, RecordStatus::Valid), rec(2, RecordStatus::Valid)],
                5,
            ),
            &CacheConfig::default(),
            CacheCounters::detached(),
        )
        .expect("state");
        let before = state.view();
        state
            .apply(
                info(6),
                [
                    (DocKey([1; 16]), Some(rec(1, RecordStatus::Lost))),
                    (DocKey([2; 16]), None),
                    (DocKey([3; 16]), Some(rec(3, RecordStatus::Valid))),
                ],
            )
            .expect("newer version");
        let after = state.view();
        // The old view still answers version 5 for every key, the new one version 6.
        assert_eq!(before.info().version, 5);
        assert_eq!(
            before.get(&DocKey([1; 16])).map(|r| r.status),
            Some(RecordStatus::Valid)
        );
        assert!(before.get(&DocKey([2; 16])).is_some());
        assert!(before.get(&DocKey([3; 16])).is_none());
        assert_eq!(after.info().version, 6);
        assert_eq!(
            after.get(&DocKey([1; 16])).map(|r| r.status),
            Some(RecordStatus::Lost)
        );
        assert!(
            after.get(&DocKey([2; 16])).is_none(),
            "removed by the change"
        );
        assert!(after.get(&DocKey([3; 16])).is_some(), "added by the change");
        assert_eq!(state.overlay_len(), 3);

        assert_eq!(
            state.apply(info(6), []),
            Err(StaleVersion {
                held: 6,
                offered: 6
            })
        );
    }

    #[test]
    fn cache_never_hides_a_change() {
        let state = State::new(
            testing::repo(vec![rec(1, RecordStatus::Valid)], 1),
            &CacheConfig {
                enabled: true,
                max_entries: 10,
            },
            CacheCounters::detached(),
        )
        .expect("state");
        assert_eq!(
            state.view().get(&DocKey([1; 16])).map(|r| r.status),
            Some(RecordStatus::Valid)
        );
        state
            .apply(
                info(2),
                [(DocKey([1; 16]), Some(rec(1, RecordStatus::Revoked)))],
            )
            .expect("apply");
        assert_eq!(
            state.view().get(&DocKey([1; 16])).map(|r| r.status),
            Some(RecordStatus::Revoked)
        );
    }
}
