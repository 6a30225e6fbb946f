//! One chain of publications, however many publishers: the repository decides who
//! publishes next, by a create-if-absent of a file, not by a lock service of our own.
//!
//! Publishing version V on top of version N first writes V's objects, then claims the
//! successor of N: `chain/<N>.json` (N zero-padded), created only if absent (a `link(2)`
//! of a fully written, fsynced file: nobody ever sees half of one), holding V's signed
//! manifest and the journal of what V records. A second publisher on top of N finds the
//! name taken and gets [`PublishError::Taken`]: it must read the newer data and decide
//! again (a temporary permit counted against stale data would break the monthly limit).
//! Only after the claim is `manifest.json` replaced, by [`settle`], which installs the
//! newest link of the chain; every publisher settles after claiming, so a manifest
//! written late by a slower publisher is put right by the faster one, and a publisher
//! killed between claim and manifest is completed by the next one (or by an origin's
//! start). Followers read `manifest.json` only; `chain/` stays with the publishers
//! (a relay never serves it): its journal names offices and officers.

use std::path::{Path, PathBuf};

use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Serialize};

use super::PublishError;
use crate::issuance::JournalEntry;
use crate::snapshot::{write_atomic, Manifest, SignedManifest, MANIFEST_FILE};

pub const CHAIN_DIR: &str = "chain";

/// The successor of version `from`: what `chain/<from>.json` holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Link {
    pub from: u64,
    pub version: u64,
    /// The signed manifest of `version`, as `manifest.json` will hold it.
    pub manifest: String,
    /// What the authority's own writes in this version were, and who made them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub journal: Vec<JournalEntry>,
}

fn link_path(repo: &Path, from: u64) -> PathBuf {
    repo.join(link_name(from))
}

fn write_err(path: &Path) -> impl FnOnce(std::io::Error) -> PublishError + '_ {
    move |source| PublishError::Write {
        path: path.to_owned(),
        source,
    }
}

/// Claims the successor of `link.from` for `link.version`; durable (file and directory
/// fsynced) before it returns. `Taken` when another publisher claimed it first.
pub fn claim(repo: &Path, link: &Link) -> Result<(), PublishError> {
    let dir = repo.join(CHAIN_DIR);
    std::fs::create_dir_all(&dir).map_err(write_err(&dir))?;
    let path = link_path(repo, link.from);
    let tmp = crate::snapshot::temp_path(&path);
    let bytes = serde_json::to_vec(link).map_err(|e| PublishError::Write {
        path: path.clone(),
        source: std::io::Error::other(e),
    })?;
    let written = (|| {
        use std::io::Write;
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
        std::fs::hard_link(&tmp, &path)
    })();
    let _ = std::fs::remove_file(&tmp);
    match written {
        Ok(()) => {
            crate::snapshot::sync_dir(&dir);
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            Err(PublishError::Taken { from: link.from })
        }
        Err(e) => Err(write_err(&path)(e)),
    }
}

/// The link claimed on top of `from`, if any, its manifest verified with `trusted`.
pub fn successor(
    repo: &Path,
    from: u64,
    trusted: &VerifyingKey,
) -> Result<Option<Link>, PublishError> {
    let path = link_path(repo, from);
    match std::fs::read(&path) {
        Ok(bytes) => Link::read(&bytes, from, trusted, &path).map(Some),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(PublishError::Read { path, source }),
    }
}

impl Link {
    /// The successor of `from` as `bytes` (read from `what`) hold it: its manifest must
    /// verify with `trusted` and be of a version above `from`.
    pub fn read(
        bytes: &[u8],
        from: u64,
        trusted: &VerifyingKey,
        what: &Path,
    ) -> Result<Link, PublishError> {
        let unreadable = |message: String| PublishError::Chain {
            path: what.to_owned(),
            message,
        };
        let link: Link = serde_json::from_slice(bytes).map_err(|e| unreadable(e.to_string()))?;
        let signed = SignedManifest::verify(link.manifest.as_bytes(), &[*trusted])
            .map_err(|e| unreadable(format!("its manifest does not verify: {e}")))?;
        if link.from != from || signed.manifest.version != link.version || link.version <= from {
            return Err(unreadable(format!(
                "it must hold a manifest of a version above {from}"
            )));
        }
        Ok(link)
    }
}

/// A link's name in the repository, relative to it.
pub fn link_name(from: u64) -> String {
    format!("{CHAIN_DIR}/{from:020}.json")
}

/// The links after `from`, in chain order.
pub fn links_after(
    repo: &Path,
    mut from: u64,
    trusted: &VerifyingKey,
) -> Result<Vec<Link>, PublishError> {
    let mut out = Vec::new();
    while let Some(link) = successor(repo, from, trusted)? {
        from = link.version;
        out.push(link);
    }
    Ok(out)
}

/// The version `manifest.json` holds (0: none yet), verified with `trusted`.
pub fn installed_version(repo: &Path, trusted: &VerifyingKey) -> Result<u64, PublishError> {
    installed(repo, trusted).map(|m| m.map_or(0, |m| m.version))
}

/// What `manifest.json` holds (`None`: none yet), verified with `trusted`.
pub fn installed(repo: &Path, trusted: &VerifyingKey) -> Result<Option<Manifest>, PublishError> {
    let path = repo.join(MANIFEST_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => SignedManifest::verify(&bytes, &[*trusted])
            .map(|m| Some(m.manifest))
            .map_err(|e| PublishError::ExistingManifest(repo.to_owned(), e)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(PublishError::Read { path, source }),
    }
}

/// Installs the newest link of the chain as `manifest.json`, until what is installed is
/// the end of the chain (another publisher may write an older one meanwhile); returns
/// that version.
pub fn settle(repo: &Path, trusted: &VerifyingKey) -> Result<u64, PublishError> {
    loop {
        let installed = installed_version(repo, trusted)?;
        let Some(newest) = links_after(repo, installed, trusted)?.pop() else {
            return Ok(installed);
        };
        let path = repo.join(MANIFEST_FILE);
        write_atomic(&path, newest.manifest.as_bytes()).map_err(write_err(&path))?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key_files::generate_signing_key;

    fn link(key: &ed25519_dalek::SigningKey, from: u64, version: u64) -> Link {
        let manifest = crate::snapshot::testing::manifest(version, "00".repeat(32), 0);
        let signed = SignedManifest::sign(&manifest, key).expect("sign");
        Link {
            from,
            version,
            manifest: String::from_utf8(signed).expect("utf8"),
            journal: Vec::new(),
        }
    }

    #[test]
    fn one_successor_per_version_however_many_race_for_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = generate_signing_key();
        let won: Vec<bool> = std::thread::scope(|s| {
            let racers: Vec<_> = (0..8)
                .map(|i| {
                    let (repo, key) = (dir.path(), &key);
                    s.spawn(move || match claim(repo, &link(key, 0, 1 + i)) {
                        Ok(()) => true,
                        Err(PublishError::Taken { from: 0 }) => false,
                        Err(e) => panic!("{e}"),
                    })
                })
                .collect();
            racers
                .into_iter()
                .map(|r| r.join().expect("racer"))
                .collect()
        });
        assert_eq!(won.iter().filter(|w| **w).count(), 1, "{won:?}");
        let first = successor(dir.path(), 0, &key.verifying_key())
            .expect("read")
            .expect("claimed");
        // Leaves no temporary file behind.
        let names: Vec<_> = std::fs::read_dir(dir.path().join(CHAIN_DIR))
            .expect("dir")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");

        // The manifest follows the chain's end, also when written late by a slower one.
        claim(dir.path(), &link(&key, first.version, 20)).expect("next");
        assert_eq!(
            settle(dir.path(), &key.verifying_key()).expect("settle"),
            20
        );
        write_atomic(&dir.path().join(MANIFEST_FILE), first.manifest.as_bytes()).expect("old");
        assert_eq!(
            settle(dir.path(), &key.verifying_key()).expect("settle"),
            20
        );
        assert_eq!(
            installed_version(dir.path(), &key.verifying_key()).expect("installed"),
            20
        );
    }

    #[test]
    fn a_link_signed_by_another_key_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (key, other) = (generate_signing_key(), generate_signing_key());
        claim(dir.path(), &link(&other, 0, 1)).expect("claim");
        assert!(matches!(
            successor(dir.path(), 0, &key.verifying_key()),
            Err(PublishError::Chain { .. })
        ));
    }
}
