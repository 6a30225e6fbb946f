//! Following a source: poll the manifest, verify everything, apply new deltas to the
//! overlay or load a new base off the request path, persist the last good state, and keep
//! serving what we have whenever anything is refused.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ed25519_dalek::VerifyingKey;
use tokio::sync::watch;

use super::metrics::ReplicationMetrics;
use super::refusal::{Refusal, RefusalReason};
use super::revocations::ListFollower;
use super::source::{Fetched, Source};
use crate::clock::Clock;
use crate::key_files::HashKey;
use crate::snapshot::{
    check_hash, object_path, remove_unnamed_objects, verify_deltas, verify_objects, wanted_objects,
    write_atomic, DirObjects, Pace, Repo, SignedManifest, SnapshotError, Trust, Wanted,
    MANIFEST_FILE,
};
use crate::store::Store;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PollOutcome {
    NotModified,
    /// New deltas applied onto the held base; the data version now.
    Applied(u64),
    /// A new base (and its deltas) loaded and swapped in.
    Swapped(u64),
}

pub struct Follower {
    store: Arc<Store>,
    metrics: ReplicationMetrics,
    trusted: Vec<VerifyingKey>,
    hash_key: HashKey,
    source: Source,
    /// Where the last good state is kept; `None` when following the local repository
    /// this gateway serves (it is its own state, written by the publisher).
    state_dir: Option<PathBuf>,
    clock: Arc<dyn Clock>,
    held: Option<SignedManifest>,
    tag: Option<String>,
    last_refusal: Option<RefusalReason>,
    notify: Option<Arc<watch::Sender<u64>>>,
    /// The revocation list's own loop, started by [`Follower::run`], and its wake-up.
    list: Option<ListFollower>,
    /// The version of the newest manifest taken in, for the list's loop.
    new_manifest: watch::Sender<u64>,
}

/// What a [`Follower`] is made of; the composition root (src/server) fills it in.
pub struct FollowerParts {
    pub store: Arc<Store>,
    pub metrics: ReplicationMetrics,
    /// The publisher's keys a manifest must be signed with.
    pub trusted: Vec<VerifyingKey>,
    pub hash_key: HashKey,
    pub source: Source,
    /// Where the last good state is kept; `None` when following the local repository.
    pub state_dir: Option<PathBuf>,
    pub clock: Arc<dyn Clock>,
    /// The manifest of what the store serves now (from `state_dir`), if any.
    pub held: Option<SignedManifest>,
}

/// The least time between two polls that file events started.
const MIN_GAP: Duration = Duration::from_millis(5);

impl Follower {
    pub fn new(p: FollowerParts) -> Follower {
        Follower {
            store: p.store,
            metrics: p.metrics,
            trusted: p.trusted,
            hash_key: p.hash_key,
            source: p.source,
            state_dir: p.state_dir,
            clock: p.clock,
            held: p.held,
            tag: None,
            last_refusal: None,
            notify: None,
            list: None,
            new_manifest: watch::Sender::new(0),
        }
    }

    /// Also follows the source's revocation list of temporary permits, checked against
    /// `keyring`'s temporary-permit keys (src/replication/revocations.rs).
    pub fn revocations(mut self, keyring: crate::keyring::SharedKeyring) -> Follower {
        self.list = Some(ListFollower::new(
            self.source.clone(),
            self.store.clone(),
            keyring,
            self.state_dir.clone(),
            self.metrics.clone(),
        ));
        self
    }

    /// Bumps `tx` whenever a new manifest has been persisted (wakes relay long-polls).
    pub fn notify(mut self, tx: Arc<watch::Sender<u64>>) -> Follower {
        self.notify = Some(tx);
        self
    }

    /// Polls until `stop` says so: at once again after a poll that brought a new
    /// publication (the next one may follow it closely: waiting out the interval there
    /// delayed it by up to the interval even through a relay's long-poll), else at most
    /// once per `interval`, and at once after a poll the server held for longer (a
    /// relay's long-poll) unless it failed. A static source is so asked at most twice per
    /// interval per publication. A file:// source is also polled as soon as its
    /// directory changes (at most every [`MIN_GAP`]: a publication writes many files).
    pub async fn run(mut self, interval: Duration, mut stop: watch::Receiver<bool>) {
        let changes = self.source.watch();
        if let Some(list) = self.list.take() {
            tokio::spawn(list.run(self.new_manifest.subscribe(), stop.clone()));
        }
        loop {
            let started = Instant::now();
            // Counted and logged inside; the loop goes on either way.
            let result = tokio::select! {
                r = self.poll_and_record() => r,
                _ = stop.changed() => return,
            };
            let pause = match result {
                Err(_) => interval,
                Ok(PollOutcome::NotModified) => interval.saturating_sub(started.elapsed()),
                Ok(PollOutcome::Applied(_) | PollOutcome::Swapped(_)) => Duration::ZERO,
            };
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = async {
                    match &changes {
                        Some(c) => {
                            c.changed().await;
                            tokio::time::sleep(MIN_GAP.saturating_sub(started.elapsed())).await;
                        }
                        None => std::future::pending().await,
                    }
                } => {}
                _ = stop.changed() => return,
            }
        }
    }

    /// One poll with its metrics and logging; refusals leave the served state untouched.
    pub async fn poll_and_record(&mut self) -> Result<PollOutcome, Refusal> {
        let result = self.poll().await;
        let m = &self.metrics;
        let now = self.clock.now();
        match &result {
            Ok(outcome) => {
                match outcome {
                    PollOutcome::NotModified => &m.not_modified,
                    PollOutcome::Applied(_) => &m.applied,
                    PollOutcome::Swapped(_) => &m.swapped,
                }
                .inc();
                m.last_success.set(now.unix_timestamp() as f64);
                if let Some(prev) = self.last_refusal.take() {
                    tracing::info!(previous = prev.label(), "replication recovered");
                }
            }
            Err(r) => {
                m.failure(r.reason);
                // Once per cause: a dead origin polled every second must not flood logs.
                if self.last_refusal != Some(r.reason) {
                    if self.store.is_ready() {
                        tracing::warn!(reason = r.reason.label(), detail = %r.detail(), "replication refused; serving the last good state");
                    } else {
                        tracing::warn!(reason = r.reason.label(), detail = %r.detail(), "replication refused; nothing to serve yet (not ready)");
                    }
                    self.last_refusal = Some(r.reason);
                }
            }
        }
        result
    }

    async fn poll(&mut self) -> Result<PollOutcome, Refusal> {
        let fetched = self
            .source
            .manifest(self.tag.as_deref())
            .await
            .map_err(Refusal::from)?;
        let (bytes, tag) = match fetched {
            Fetched::NotModified => return Ok(PollOutcome::NotModified),
            Fetched::Changed { bytes, tag } => (bytes, tag),
        };
        let new = SignedManifest::verify(&bytes, &self.trusted)?;
        let outcome = match &self.held {
            Some(held) if new.manifest == held.manifest => {
                // Same content under a new tag (first poll after a restart): nothing to do.
                self.tag = Some(tag);
                return Ok(PollOutcome::NotModified);
            }
            Some(held) if new.manifest.version <= held.manifest.version => {
                return Err(Refusal::new(
                    RefusalReason::Rollback,
                    format!(
                        "offered manifest version {} is not above the held {}",
                        new.manifest.version, held.manifest.version
                    ),
                ))
            }
            Some(held) if self.extends(held, &new) => {
                let version = self
                    .store
                    .current()
                    .as_ref()
                    .map_or(0, |s| s.view().info().version);
                self.follow(
                    &new,
                    Wanted::DeltasAfter {
                        held: held.manifest.deltas.len(),
                        version,
                    },
                )
                .await?
            }
            _ => self.follow(&new, Wanted::All).await?,
        };
        // Objects are on disk; the manifest goes last, so a crash leaves the old state.
        if let Some(dir) = &self.state_dir {
            let (dir, swapped, keep) = (
                dir.clone(),
                matches!(outcome, PollOutcome::Swapped(_)),
                new.clone(),
            );
            blocking(move || {
                write_atomic(&dir.join(MANIFEST_FILE), &bytes)
                    .map_err(|e| Refusal::new(RefusalReason::Storage, e.to_string()))?;
                if swapped {
                    remove_unnamed_objects(&dir, [&keep.manifest], None);
                }
                Ok(())
            })
            .await?;
        }
        if let Some(tx) = &self.notify {
            tx.send_modify(|n| *n += 1);
        }
        self.new_manifest.send_replace(new.manifest.version);
        self.held = Some(new);
        self.tag = Some(tag);
        Ok(outcome)
    }

    /// Same base, and our deltas are a prefix of the new chain.
    fn extends(&self, held: &SignedManifest, new: &SignedManifest) -> bool {
        let (h, n) = (&held.manifest, &new.manifest);
        self.store.is_ready()
            && h.snapshot.hash == n.snapshot.hash
            && n.deltas.len() >= h.deltas.len()
            && h.deltas
                .iter()
                .zip(&n.deltas)
                .all(|(a, b)| a.hash == b.hash)
    }

    /// Fetches what `new` names that `wanted` asks for into the state directory (streamed
    /// to disk, each object no larger than named and kept only if it hashes to its name),
    /// then, off the async workers (a base is hundreds of MB): verifies it from there (the
    /// loader's path, snapshot::verify_objects), and installs the new base or applies each
    /// delta onto what is served as soon as it is verified. A fetch that fails halfway
    /// leaves what was fetched before it applied. A gateway following the repository it
    /// serves (no state directory) verifies the objects where they are.
    async fn follow(&self, new: &SignedManifest, wanted: Wanted) -> Result<PollOutcome, Refusal> {
        // A new base verified while serving is paced, to leave the cores to the requests;
        // the first one is loaded at full speed (nothing is served until it is in).
        let started = Instant::now();
        let pace = self.store.is_ready().then_some(Pace::BESIDE_REQUESTS);
        let dir = match (&self.state_dir, &self.source) {
            (Some(dir), _) => dir.clone(),
            (None, Source::File(root)) => root.clone(),
            (None, _) => {
                return Err(Refusal::new(
                    RefusalReason::Storage,
                    "a remote source needs replication.state_dir",
                ))
            }
        };
        let mut fetch_failed = None;
        if self.state_dir.is_some() {
            for (hash, size) in wanted_objects(&new.manifest, wanted) {
                // Named by a signed manifest, but a path and a URL all the same: checked first.
                check_hash(hash)?;
                if let Err(e) = self
                    .source
                    .fetch_object(hash, size, object_path(&dir, hash), pace)
                    .await
                {
                    fetch_failed = Some(Refusal::from(e));
                    break;
                }
            }
        }
        let (trusted, hash_key, store, metrics) = (
            self.trusted.clone(),
            self.hash_key.clone(),
            self.store.clone(),
            self.metrics.clone(),
        );
        let manifest = new.clone();
        blocking(move || {
            let trust = Trust {
                publishers: &trusted,
                hash_key: Some(&hash_key),
            };
            let mut objects = DirObjects { dir: &dir, pace };
            // An object whose fetch failed is reported by that failure, not as unreadable.
            let refusal = |e: SnapshotError, failed: &mut Option<Refusal>| match e {
                e @ SnapshotError::Io { .. } => failed.take().unwrap_or_else(|| Refusal::from(e)),
                e => Refusal::from(e),
            };
            let chain =
                |e: &dyn std::fmt::Display| Refusal::new(RefusalReason::Chain, e.to_string());
            let expires_at = manifest.manifest.expires_at;
            if let Wanted::All = wanted {
                let verified = verify_objects(&manifest.manifest, wanted, &mut objects, &trust)
                    .map_err(|e| refusal(e, &mut fetch_failed))?;
                let info = store
                    .install(Repo::new(manifest, verified)?)
                    .map_err(|e| chain(&e))?;
                metrics.base_swap.observe(started.elapsed().as_secs_f64());
                return Ok(PollOutcome::Swapped(info.version));
            }
            let observe = |took: Duration| metrics.delta_apply.observe(took.as_secs_f64());
            for delta in verify_deltas(&manifest.manifest, wanted, &mut objects, &trust) {
                let delta = delta.map_err(|e| refusal(e, &mut fetch_failed))?;
                store
                    .apply(std::slice::from_ref(&delta), observe)
                    .map_err(|e| chain(&e))?;
            }
            // Only once the whole chain is in: a manifest whose deltas did not all apply
            // must not make what is served look fresher than it is.
            let info = store.complete(expires_at).map_err(|e| chain(&e))?;
            Ok(PollOutcome::Applied(info.version))
        })
        .await
    }
}

/// Runs file writes, fsyncs and hashing of large objects off the async workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Refusal> + Send + 'static,
) -> Result<T, Refusal> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Refusal::new(RefusalReason::Storage, e.to_string()))?
}
