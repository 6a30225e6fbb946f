//! A repository of record in an object store (S3 or compatible), for origins that share
//! one: each origin works on a local copy (`snapshot.repo`), and the bucket decides the
//! chain, as a directory does with a create-if-absent (src/publish/claim.rs).
//!
//! A publication's objects go up first (named by their hash: a plain PUT), then its link
//! is claimed with a conditional create (`If-None-Match: *`, object_store's
//! `PutMode::Create`): of two origins publishing on one version, the store accepts one,
//! and the other is told `Taken`. Only then does the local copy take the link, so the
//! copy never holds a publication the bucket refused, and can be thrown away: an origin
//! pulls what it lacks at start, whenever the bucket is ahead, and whenever its copy
//! lacks an object its manifest names. `manifest.json` only moves forward: it is replaced
//! by the chain's end with `If-Match` on the ETag just read (`PutMode::Update`), so a slow
//! origin cannot put an older one back.

use std::collections::HashSet;
use std::path::Path;
use std::sync::{Arc, Mutex};

use ed25519_dalek::VerifyingKey;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, UpdateVersion};

use super::claim::{self, Link, CHAIN_DIR};
use super::PublishError;
use crate::replication::{s3_path, s3_store, S3Settings};
use crate::snapshot::{
    object_path, wanted_objects, write_atomic, Manifest, SignedManifest, Wanted, MANIFEST_FILE,
};

/// Conditional writes that lost a race in a row before the bucket is called unavailable.
const MAX_RACES: usize = 16;

pub struct Bucket {
    store: Arc<dyn ObjectStore>,
    prefix: String,
    /// `s3://bucket/prefix`, for errors and logs.
    url: String,
    /// The origin's writer is a thread of its own, not a task: it waits on the store here.
    runtime: Option<tokio::runtime::Runtime>,
    /// Objects known to be in the bucket already.
    present: Mutex<HashSet<String>>,
}

/// An object as read, with the ETag a conditional write names.
struct Read {
    bytes: Vec<u8>,
    e_tag: Option<String>,
}

impl Read {
    /// Replaces this object only as read; creates it where there was none.
    fn replace(held: Option<&Read>) -> PutMode {
        match held {
            Some(Read {
                e_tag: e_tag @ Some(_),
                ..
            }) => PutMode::Update(UpdateVersion {
                e_tag: e_tag.clone(),
                version: None,
            }),
            // A store that gives no ETag cannot be asked for a conditional update.
            Some(Read { e_tag: None, .. }) => PutMode::Overwrite,
            None => PutMode::Create,
        }
    }
}

impl Drop for Bucket {
    fn drop(&mut self) {
        // Also from inside another runtime, where dropping one would panic.
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

impl Bucket {
    pub fn open(bucket: &str, prefix: &str, s3: &S3Settings) -> Result<Bucket, PublishError> {
        let url = format!("s3://{bucket}/{prefix}");
        let unavailable = |source| PublishError::Store {
            what: url.clone(),
            source,
        };
        let store = s3_store(bucket, s3).map_err(unavailable)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|source| PublishError::Write {
                path: url.clone().into(),
                source,
            })?;
        Ok(Bucket {
            store,
            prefix: prefix.trim_matches('/').to_owned(),
            url,
            runtime: Some(runtime),
            present: Mutex::new(HashSet::new()),
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    fn block_on<T>(&self, f: impl std::future::Future<Output = T>) -> T {
        match &self.runtime {
            Some(rt) => rt.block_on(f),
            // Only while being dropped.
            None => unreachable!("the bucket's runtime is gone"),
        }
    }

    fn error(&self, name: &str) -> impl FnOnce(object_store::Error) -> PublishError + '_ {
        let what = format!("{}/{name}", self.url.trim_end_matches('/'));
        move |source| PublishError::Store { what, source }
    }

    /// `name`'s bytes and ETag; `None` when the bucket has no such object.
    fn get(&self, name: &str) -> Result<Option<Read>, PublishError> {
        let path = s3_path(&self.prefix, name);
        self.block_on(async {
            match self.store.get(&path).await {
                Ok(got) => {
                    let e_tag = got.meta.e_tag.clone();
                    let bytes = got.bytes().await?.to_vec();
                    Ok(Some(Read { bytes, e_tag }))
                }
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(e),
            }
        })
        .map_err(self.error(name))
    }

    /// Puts `bytes` as `name` in `mode`; `Ok(false)` when the condition did not hold.
    fn put(&self, name: &str, bytes: Vec<u8>, mode: PutMode) -> Result<bool, PublishError> {
        let path = s3_path(&self.prefix, name);
        let opts = PutOptions {
            mode,
            ..Default::default()
        };
        match self.block_on(self.store.put_opts(&path, bytes.into(), opts)) {
            Ok(_) => Ok(true),
            Err(object_store::Error::AlreadyExists { .. })
            | Err(object_store::Error::Precondition { .. }) => Ok(false),
            Err(e) => Err(self.error(name)(e)),
        }
    }

    /// Uploads the objects `manifest` names that the bucket does not hold yet.
    fn put_objects(&self, repo: &Path, manifest: &Manifest) -> Result<(), PublishError> {
        for (hash, _) in wanted_objects(manifest, Wanted::All) {
            if self.present.lock().is_ok_and(|p| p.contains(hash)) {
                continue;
            }
            let name = format!("{}/{hash}", crate::snapshot::OBJECTS_DIR);
            let path = s3_path(&self.prefix, &name);
            let held = match self.block_on(self.store.head(&path)) {
                Ok(_) => true,
                Err(object_store::Error::NotFound { .. }) => false,
                Err(e) => return Err(self.error(&name)(e)),
            };
            if !held {
                let local = object_path(repo, hash);
                let bytes = std::fs::read(&local).map_err(|source| PublishError::Read {
                    path: local,
                    source,
                })?;
                self.put(&name, bytes, PutMode::Overwrite)?;
            }
            if let Ok(mut p) = self.present.lock() {
                p.insert(hash.to_owned());
            }
        }
        Ok(())
    }

    /// Claims `link` in the bucket, after the objects `manifest` (its manifest) names;
    /// `Taken` when another publisher claimed its place first.
    pub fn claim(&self, repo: &Path, link: &Link, manifest: &Manifest) -> Result<(), PublishError> {
        self.put_objects(repo, manifest)?;
        let name = claim::link_name(link.from);
        let bytes = serde_json::to_vec(link).map_err(|e| PublishError::Write {
            path: name.clone().into(),
            source: std::io::Error::other(e),
        })?;
        if self.put(&name, bytes, PutMode::Create)? {
            Ok(())
        } else {
            Err(PublishError::Taken { from: link.from })
        }
    }

    /// The link the bucket holds on top of `from`, verified with `trusted`.
    pub fn successor(
        &self,
        from: u64,
        trusted: &VerifyingKey,
    ) -> Result<Option<Link>, PublishError> {
        let name = claim::link_name(from);
        match self.get(&name)? {
            Some(Read { bytes, .. }) => Link::read(
                &bytes,
                from,
                trusted,
                Path::new(&self.url).join(&name).as_path(),
            )
            .map(Some),
            None => Ok(None),
        }
    }

    /// The bucket's `manifest.json` and what it says, verified with `trusted`.
    fn manifest(&self, trusted: &VerifyingKey) -> Result<Option<(Read, Manifest)>, PublishError> {
        let Some(read) = self.get(MANIFEST_FILE)? else {
            return Ok(None);
        };
        let manifest = SignedManifest::verify(&read.bytes, &[*trusted])
            .map(|m| m.manifest)
            .map_err(|e| PublishError::ExistingManifest(Path::new(&self.url).to_owned(), e))?;
        Ok(Some((read, manifest)))
    }

    /// Installs the chain's end as the bucket's `manifest.json`, never an older one over a
    /// newer; returns the version installed.
    pub fn settle(&self, trusted: &VerifyingKey) -> Result<u64, PublishError> {
        for _ in 0..MAX_RACES {
            let held = self.manifest(trusted)?;
            let mut at = held.as_ref().map_or(0, |(_, m)| m.version);
            let mut newest = None;
            while let Some(link) = self.successor(at, trusted)? {
                at = link.version;
                newest = Some(link);
            }
            let Some(newest) = newest else {
                return Ok(at);
            };
            let mode = Read::replace(held.as_ref().map(|(read, _)| read));
            if self.put(MANIFEST_FILE, newest.manifest.into_bytes(), mode)? {
                return Ok(at);
            }
        }
        Err(PublishError::Chain {
            path: Path::new(&self.url).join(MANIFEST_FILE),
            message: format!(
                "changed under every one of {MAX_RACES} attempts to install the chain's end"
            ),
        })
    }

    /// Brings what the bucket holds beyond the local copy `repo` into it: the links (for
    /// their journal), the objects the newest manifest names, then that manifest. Returns
    /// the version the copy now holds.
    ///
    /// The newest is the bucket's `manifest.json` or the copy's chain end, whichever is
    /// newer: another origin may claim a link after [`Bucket::settle`] and before its own
    /// settle, so the chain walked here can end past the bucket's manifest. The copy must
    /// hold that end's objects too, since the copy's own settle (at every publication)
    /// installs its chain end.
    pub fn pull(&self, repo: &Path, trusted: &VerifyingKey) -> Result<u64, PublishError> {
        let remote = self.settle(trusted)?;
        let installed = claim::installed(repo, trusted)?;
        let local = installed.as_ref().map_or(0, |m| m.version);
        if remote < local {
            return Err(PublishError::Chain {
                path: repo.to_owned(),
                message: format!(
                    "the local copy holds version {local}, the bucket {} only {remote}: it is not a copy of this bucket (remove it, and it is pulled again)",
                    self.url
                ),
            });
        }
        // A copy whose manifest names an object it lacks (a pull cut short after its
        // links, then settled) is mended below, not left as it is.
        if remote == local && installed.is_none_or(|m| objects_present(repo, &m)) {
            return Ok(local);
        }
        for link in self.links_missing_from(repo, local, trusted)? {
            match claim::claim(repo, &link) {
                Ok(()) | Err(PublishError::Taken { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        let mut newest = self
            .manifest(trusted)?
            .map(|(Read { bytes, .. }, manifest)| (bytes, manifest));
        let bucket_version = newest.as_ref().map_or(0, |(_, m)| m.version);
        if let Some(end) = claim::links_after(repo, bucket_version.max(local), trusted)?.pop() {
            let manifest = SignedManifest::verify(end.manifest.as_bytes(), &[*trusted])
                .map_err(|e| PublishError::ExistingManifest(repo.to_owned(), e))?
                .manifest;
            newest = Some((end.manifest.into_bytes(), manifest));
        }
        let Some((bytes, manifest)) = newest else {
            return Ok(local);
        };
        self.get_objects(repo, &manifest)?;
        let path = repo.join(MANIFEST_FILE);
        write_atomic(&path, &bytes).map_err(|source| PublishError::Write { path, source })?;
        Ok(manifest.version)
    }

    /// Brings every object `manifest` names that the copy `repo` lacks from the bucket,
    /// each checked against its name.
    fn get_objects(&self, repo: &Path, manifest: &Manifest) -> Result<(), PublishError> {
        let version = manifest.version;
        for (hash, _) in wanted_objects(manifest, Wanted::All) {
            let local_path = object_path(repo, hash);
            if local_path.exists() {
                continue;
            }
            let name = format!("{}/{hash}", crate::snapshot::OBJECTS_DIR);
            let Some(Read { bytes: object, .. }) = self.get(&name)? else {
                return Err(PublishError::Chain {
                    path: Path::new(&self.url).join(&name),
                    message: format!(
                        "version {version} names it, and the bucket has no such object"
                    ),
                });
            };
            if blake3::hash(&object).to_hex().as_str() != hash {
                return Err(PublishError::Chain {
                    path: Path::new(&self.url).join(&name),
                    message: "its content is not the object its name says".into(),
                });
            }
            write_atomic(&local_path, &object).map_err(|source| PublishError::Write {
                path: local_path,
                source,
            })?;
        }
        Ok(())
    }

    /// The links the local copy lacks: after `local` by walking the chain, or every link
    /// the bucket has when the copy has none yet (a new origin, whose journal needs them).
    fn links_missing_from(
        &self,
        repo: &Path,
        local: u64,
        trusted: &VerifyingKey,
    ) -> Result<Vec<Link>, PublishError> {
        let has_chain =
            std::fs::read_dir(repo.join(CHAIN_DIR)).is_ok_and(|mut d| d.next().is_some());
        let mut links = Vec::new();
        let mut at = local;
        if !has_chain {
            let dir = s3_path(&self.prefix, CHAIN_DIR);
            let listed: Vec<object_store::ObjectMeta> = self
                .block_on(async {
                    use futures_util::TryStreamExt;
                    self.store.list(Some(&dir)).try_collect().await
                })
                .map_err(self.error(CHAIN_DIR))?;
            for meta in listed {
                let Some(from) = meta
                    .location
                    .filename()
                    .and_then(|n| n.strip_suffix(".json"))
                    .and_then(|n| n.parse::<u64>().ok())
                else {
                    continue;
                };
                if let Some(link) = self.successor(from, trusted)? {
                    at = at.max(link.version);
                    links.push(link);
                }
            }
            return Ok(links);
        }
        while let Some(link) = self.successor(at, trusted)? {
            at = link.version;
            links.push(link);
        }
        Ok(links)
    }

    /// Puts the revocation list of data version `version`, unless the bucket's is of newer
    /// data (another origin's).
    pub fn put_list(&self, name: &str, bytes: &[u8], version: u64) -> Result<(), PublishError> {
        for _ in 0..MAX_RACES {
            let held = self.get(name)?;
            let newer = held.as_ref().is_some_and(|h| {
                crate::revocation_list::data_version_of(&h.bytes).is_some_and(|v| v > version)
            });
            if newer {
                return Ok(());
            }
            if self.put(name, bytes.to_vec(), Read::replace(held.as_ref()))? {
                return Ok(());
            }
        }
        Ok(())
    }
}

/// Whether the copy `repo` holds every object `manifest` names.
fn objects_present(repo: &Path, manifest: &Manifest) -> bool {
    wanted_objects(manifest, Wanted::All)
        .into_iter()
        .all(|(hash, _)| object_path(repo, hash).exists())
}
