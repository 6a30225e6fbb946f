//! Following the revocation list of temporary permits that the origin writes beside the
//! manifest (src/revocation_list): fetched when it changed, taken in only if its
//! signature holds against the published temporary-permit keys and it is not older than
//! the one held, kept in the state directory for a restart, and served to gates from
//! memory (src/http/revocations.rs).
//!
//! It has a loop of its own beside the manifest's: a list is for offline gates, and
//! fetching it must never delay a publication. It is asked for again after every new
//! manifest (the origin writes the list just after it, so a few times over the next
//! second until it arrives), and every [`EVERY`] otherwise (an idle origin issues it
//! again every minute).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::metrics::ReplicationMetrics;
use super::source::{Fetched, Source};
use crate::keyring::{Keyring, SharedKeyring};
use crate::report::Report;
use crate::revocation_list::{read, FILE};
use crate::snapshot::{read_bounded, write_atomic};
use crate::store::Store;

const EVERY: Duration = Duration::from_secs(10);
/// While the list is of older data than a new manifest, it is asked for again after 25,
/// 50, 100, 200, 400 and 800 ms (the origin writes it a few milliseconds after).
const AFTER_A_MANIFEST: u32 = 6;

/// Checks a list's signature and serves it if it is newer than the one held.
fn take(
    bytes: Vec<u8>,
    store: &Store,
    keyring: &Keyring,
    metrics: &ReplicationMetrics,
) -> Result<bool, crate::revocation_list::ListError> {
    let list = read(&bytes, keyring)?;
    let taken = store.revocations().offer(bytes, &list);
    if taken {
        metrics
            .list_issued
            .set(list.issued_at.unix_timestamp() as f64);
        metrics.list_permits.set(list.len() as i64);
    }
    Ok(taken)
}

/// Serves the list kept in `dir` (a state directory, or the repository served), if there
/// is one that verifies: from the start, before any source answers.
pub fn take_kept_list(dir: &Path, store: &Store, keyring: &Keyring, metrics: &ReplicationMetrics) {
    let path = dir.join(FILE);
    let Ok(bytes) = read_bounded(&path, crate::revocation_list::MAX_LIST_BYTES) else {
        return;
    };
    if let Err(e) = take(bytes, store, keyring, metrics) {
        tracing::warn!(path = %path.display(), error = %e, "the kept revocation list is refused; waiting for the source");
    }
}

pub struct ListFollower {
    source: Source,
    store: Arc<Store>,
    keyring: SharedKeyring,
    /// Where a list taken in from a remote source is kept.
    state_dir: Option<PathBuf>,
    metrics: ReplicationMetrics,
    tag: Option<String>,
    last_refusal: Option<String>,
}

impl ListFollower {
    pub fn new(
        source: Source,
        store: Arc<Store>,
        keyring: SharedKeyring,
        state_dir: Option<PathBuf>,
        metrics: ReplicationMetrics,
    ) -> ListFollower {
        ListFollower {
            source,
            store,
            keyring,
            state_dir,
            metrics,
            tag: None,
            last_refusal: None,
        }
    }

    /// Runs until `stop`; `manifest` holds the version of the newest manifest taken in.
    pub async fn run(
        mut self,
        mut manifest: watch::Receiver<u64>,
        mut stop: watch::Receiver<bool>,
    ) {
        let mut tries_left = 0;
        loop {
            tokio::select! {
                _ = self.poll() => {}
                _ = stop.changed() => return,
            }
            // A list made from older data than the manifest: the origin writes it just
            // after, so it is asked for again soon, a few times.
            let behind = self
                .store
                .revocations()
                .current()
                .is_some_and(|l| l.data_version < *manifest.borrow());
            let pause = if behind && tries_left > 0 {
                tries_left -= 1;
                Duration::from_millis(25) * 2u32.pow(AFTER_A_MANIFEST - 1 - tries_left)
            } else {
                EVERY
            };
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                changed = manifest.changed() => {
                    // The manifest's follower is gone: so is the reason to follow.
                    if changed.is_err() {
                        return;
                    }
                    tries_left = AFTER_A_MANIFEST;
                }
                _ = stop.changed() => return,
            }
        }
    }

    /// Fetches the list if it changed and takes it in; whether a new one was taken.
    pub async fn poll(&mut self) -> bool {
        match self.source.revocation_list(self.tag.as_deref()).await {
            Ok(Fetched::NotModified) => false,
            Ok(Fetched::Changed { bytes, tag }) => {
                // Verifying a large list and making its deltas take milliseconds: off the
                // request workers, with the write that keeps it.
                let (store, keyring, metrics) = (
                    self.store.clone(),
                    self.keyring.load_full(),
                    self.metrics.clone(),
                );
                let dir = self.state_dir.clone();
                let outcome = tokio::task::spawn_blocking(move || {
                    let taken = take(bytes, &store, &keyring, &metrics)?;
                    let kept = match (taken, dir, store.revocations().current()) {
                        (true, Some(dir), Some(list)) => {
                            write_atomic(&dir.join(FILE), &list.bytes).is_ok()
                        }
                        _ => true,
                    };
                    Ok::<_, crate::revocation_list::ListError>((taken, kept))
                })
                .await;
                // Refused or not, this content need not be fetched again.
                self.tag = Some(tag);
                match outcome {
                    Ok(Ok((taken, kept))) => {
                        if !kept {
                            tracing::warn!("cannot keep the revocation list in the state directory; it is served all the same");
                        }
                        if taken && self.last_refusal.take().is_some() {
                            tracing::info!("revocation list taken in again");
                        }
                        taken
                    }
                    Ok(Err(e)) => {
                        self.refused(format!("the revocation list {e}"));
                        false
                    }
                    Err(e) => {
                        self.refused(format!("checking the revocation list failed: {e}"));
                        false
                    }
                }
            }
            Err(e) => {
                self.refused(Report(&e).to_string());
                false
            }
        }
    }

    fn refused(&mut self, why: String) {
        self.metrics.list_refused.inc();
        // Once per cause, like the manifest's refusals.
        if self.last_refusal.as_deref() != Some(why.as_str()) {
            tracing::warn!(detail = %why, "revocation list refused; serving the one held");
            self.last_refusal = Some(why);
        }
    }
}
