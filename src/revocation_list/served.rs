//! The revocation list a gateway serves to gates: the newest it has taken in (its
//! signature checked against the published temporary-permit keys), its ETag, and deltas
//! onto the lists before it, made once when it arrives, so that a thousand gates asking
//! cost a lookup each.

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwapOption;
use bytes::Bytes;
use time::OffsetDateTime;

use super::{delta, etag, RevocationList};

/// Lists before the current one that a delta is kept onto: at one list a minute while
/// the origin is idle, gates that synced in the last half hour get a delta.
const RECENT: usize = 32;

pub struct Current {
    pub bytes: Bytes,
    /// Quoted, as in the `ETag` header.
    pub etag: String,
    pub issued_at: OffsetDateTime,
    pub data_version: u64,
    pub permits: usize,
    /// Deltas onto recent lists, by their ETag; only those smaller than the list.
    deltas: HashMap<String, Bytes>,
    /// The lists before this one, newest first.
    recent: Vec<(String, Bytes)>,
}

impl Current {
    /// The delta onto the list whose ETag is `base`, when it is one of the recent ones.
    pub fn delta_from(&self, base: &str) -> Option<&Bytes> {
        self.deltas.get(base)
    }
}

#[derive(Default)]
pub struct Served {
    current: ArcSwapOption<Current>,
}

impl Served {
    pub fn current(&self) -> Option<Arc<Current>> {
        self.current.load_full()
    }

    /// Takes in `bytes`, a list whose signature the caller checked (`list`); `false`
    /// when it is the list held, or older than it (a source that went back: kept as is).
    pub fn offer(&self, bytes: Vec<u8>, list: &RevocationList) -> bool {
        let held = self.current.load_full();
        let tag = etag(&bytes);
        if let Some(h) = &held {
            let older = (list.data_version, list.issued_at) < (h.data_version, h.issued_at);
            if h.etag == tag || older {
                return false;
            }
        }
        let mut recent: Vec<(String, Bytes)> = match &held {
            Some(h) => std::iter::once((h.etag.clone(), h.bytes.clone()))
                .chain(h.recent.iter().cloned())
                .take(RECENT)
                .collect(),
            None => Vec::new(),
        };
        recent.retain(|(t, _)| *t != tag);
        let deltas = recent
            .iter()
            .filter_map(|(t, base)| {
                let d = delta(base, &bytes)?;
                (d.len() < bytes.len()).then(|| (t.clone(), Bytes::from(d)))
            })
            .collect();
        self.current.store(Some(Arc::new(Current {
            etag: tag,
            issued_at: list.issued_at,
            data_version: list.data_version,
            permits: list.len(),
            bytes: Bytes::from(bytes),
            deltas,
            recent,
        })));
        true
    }
}
