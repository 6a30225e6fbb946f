//! Bootstrap: the local repository verified and installed at start, and the follower
//! of `[replication]` (or of the served repository) that keeps it current.

use std::time::Duration;

use crate::replication::{Follower, FollowerParts, Source};
use crate::report::Report;
use crate::snapshot::{load_repo, ChainError, SnapshotError};
use crate::store::StateInfo;
use crate::tls::{self};

use super::{Gateway, StartError};

impl Gateway {
    /// Verifies the local repo and makes it current. Blocking: run it off the async
    /// workers (`spawn_blocking`) for large snapshots.
    ///
    /// Without replication the configured repo must load. With replication the state
    /// directory is the local repo: `Ok(None)` when it holds nothing usable yet (the
    /// follower will fetch from the source).
    pub fn load_snapshot(&self) -> Result<Option<StateInfo>, SnapshotError> {
        let dir = match (&self.config.replication, &self.config.snapshot.repo) {
            (Some(r), _) => {
                if !r.state_dir.join(crate::snapshot::MANIFEST_FILE).exists() {
                    return Ok(None);
                }
                match load_repo(&r.state_dir, &self.publisher_keys, Some(&self.hash_key)) {
                    Ok(repo) => {
                        let info = self.install(repo)?;
                        crate::replication::take_kept_list(
                            &r.state_dir,
                            &self.store,
                            &self.keyring.load(),
                            &self.metrics.replication,
                        );
                        return Ok(Some(info));
                    }
                    Err(e) => {
                        tracing::warn!(error = %Report(&e), "state directory unusable; waiting for the source");
                        return Ok(None);
                    }
                }
            }
            (None, Some(repo)) => repo,
            // Config validation refuses a config with neither.
            (None, None) => return Ok(None),
        };
        let repo = load_repo(dir, &self.publisher_keys, Some(&self.hash_key))?;
        let info = self.install(repo)?;
        // A repository served without a follower has its list taken in here alone.
        crate::replication::take_kept_list(
            dir,
            &self.store,
            &self.keyring.load(),
            &self.metrics.replication,
        );
        Ok(Some(info))
    }

    /// A follower (and its poll interval), starting from what the store serves now: of
    /// `[replication]`'s source, or of the snapshot repo this gateway serves, watched
    /// for publications (`snapshot.watch_interval_ms`). `None` when neither applies.
    pub fn follower(&self) -> Result<Option<(Follower, Duration)>, StartError> {
        let (source, state_dir, interval) =
            match (&self.config.replication, &self.config.snapshot.repo) {
                (Some(r), _) => {
                    let tls = match &r.ca {
                        Some(ca) => Some(tls::client_config(
                            ca,
                            r.client_cert.as_deref().zip(r.client_key.as_deref()),
                        )?),
                        None => None,
                    };
                    let s3 = crate::replication::S3Settings {
                        endpoint: r.s3_endpoint.clone(),
                        region: r.s3_region.clone(),
                    };
                    let source = Source::new(&r.source, tls, &s3)?;
                    (source, Some(r.state_dir.clone()), r.poll_interval)
                }
                (None, Some(repo)) => match self.config.snapshot.watch_interval {
                    Some(every) => (Source::File(repo.clone()), None, every),
                    None => return Ok(None),
                },
                (None, None) => return Ok(None),
            };
        let held = self
            .served
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .filter(|_| self.store.is_ready());
        let follower = Follower::new(FollowerParts {
            store: self.store.clone(),
            metrics: self.metrics.replication.clone(),
            trusted: self.publisher_keys.clone(),
            hash_key: self.hash_key.clone(),
            source,
            state_dir,
            clock: self.clock.clone(),
            held,
        })
        .notify(self.manifest_changed.clone())
        .revocations(self.keyring.clone());
        Ok(Some((follower, interval)))
    }

    fn install(&self, repo: crate::snapshot::Repo) -> Result<StateInfo, SnapshotError> {
        *self.served.lock().unwrap_or_else(|e| e.into_inner()) = Some(repo.manifest.clone());
        self.store.install(repo).map_err(|e| {
            SnapshotError::Chain(ChainError::Stale {
                held: e.held,
                offered: e.offered,
            })
        })
    }
}
