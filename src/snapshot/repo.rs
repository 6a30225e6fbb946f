//! A snapshot repository on disk: `manifest.json` plus content-addressed `objects/<hash>`.
//!
//! Writes are atomic (temporary file, fsync, rename), so a reader sees the old state or the
//! new one; objects are written before the manifest that names them.

use std::io::Write;
use std::path::{Path, PathBuf};

use ed25519_dalek::VerifyingKey;

use super::{
    Delta, Manifest, ManifestDelta, ManifestSnapshot, SignedManifest, Snapshot, SnapshotError,
};
use crate::key_files::HashKey;

pub const MANIFEST_FILE: &str = "manifest.json";
pub const OBJECTS_DIR: &str = "objects";

/// A verified manifest and the snapshot and deltas it names.
#[derive(Debug)]
pub struct Repo {
    pub manifest: SignedManifest,
    pub snapshot: Snapshot,
    /// In order; each one's `from_version` is the previous one's `version`.
    pub deltas: Vec<Delta>,
}

pub(crate) fn check_hash(named: &str) -> Result<(), SnapshotError> {
    if named.len() != 64 || !named.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(SnapshotError::Manifest(format!(
            "object hash {named:?} is not 64 hex characters"
        )));
    }
    Ok(())
}

pub(crate) fn check_content(named: &str, actual: blake3::Hash) -> Result<(), SnapshotError> {
    if actual.to_hex().as_str() != named {
        return Err(SnapshotError::HashMismatch {
            expected: named.to_owned(),
            actual: actual.to_hex().to_string(),
        });
    }
    Ok(())
}

pub fn object_path(repo: &Path, hash_hex: &str) -> PathBuf {
    repo.join(OBJECTS_DIR).join(hash_hex)
}

/// Verifies the manifest, then loads and verifies the snapshot it names.
pub fn load_repo(
    dir: &Path,
    trusted: &[VerifyingKey],
    hash_key: Option<&HashKey>,
) -> Result<Repo, SnapshotError> {
    let mpath = dir.join(MANIFEST_FILE);
    let bytes = std::fs::read(&mpath).map_err(|source| SnapshotError::Io {
        path: mpath.clone(),
        source,
    })?;
    let manifest = SignedManifest::verify(&bytes, trusted)?;
    let named = &manifest.manifest.snapshot;
    check_hash(&named.hash)?;
    let snapshot = Snapshot::load(&object_path(dir, &named.hash), trusted, hash_key)?;
    check_content(&named.hash, snapshot.content_hash())?;
    check_snapshot(&snapshot, named)?;
    let mut deltas = Vec::with_capacity(manifest.manifest.deltas.len());
    let mut version = named.version;
    for d in &manifest.manifest.deltas {
        check_hash(&d.hash)?;
        let delta = Delta::load(&object_path(dir, &d.hash), trusted, hash_key)?;
        check_content(&d.hash, delta.content_hash())?;
        check_delta(&delta, d, version)?;
        version = delta.version();
        deltas.push(delta);
    }
    Ok(Repo {
        manifest,
        snapshot,
        deltas,
    })
}

/// A verified snapshot is the one its manifest entry describes.
pub(crate) fn check_snapshot(
    snapshot: &Snapshot,
    entry: &ManifestSnapshot,
) -> Result<(), SnapshotError> {
    if snapshot.header().meta.version != entry.version || snapshot.len() as u64 != entry.documents {
        return Err(SnapshotError::Manifest(
            "manifest and snapshot disagree on version or document count".into(),
        ));
    }
    Ok(())
}

/// The entity tag of a manifest (quoted, as HTTP wants it): how relays and followers tell
/// whether a manifest changed without comparing it whole.
pub fn manifest_tag(bytes: &[u8]) -> String {
    format!("\"{}\"", &blake3::hash(bytes).to_hex()[..32])
}

/// A verified delta is the one its manifest entry describes, and applies onto `version`.
pub(crate) fn check_delta(
    delta: &Delta,
    entry: &ManifestDelta,
    version: u64,
) -> Result<(), SnapshotError> {
    if delta.from_version() != version
        || entry.from_version != version
        || delta.version() != entry.version
        || delta.len() as u64 != entry.entries
    {
        return Err(SnapshotError::Chain(format!(
            "delta {} does not apply onto version {version}",
            entry.hash
        )));
    }
    Ok(())
}

/// Writes `bytes` to `path` so that readers never see a partial file.
/// Removes the objects of `repo` that none of `keep` names (best effort: an object left
/// behind costs disk, not correctness). Only object-shaped names (64 characters, no dot)
/// are touched: a temporary file of an interrupted write is replaced by the next write
/// of that object, and anything else in `objects/` is not ours to judge.
pub fn remove_unnamed_objects<'a>(repo: &Path, keep: impl IntoIterator<Item = &'a Manifest>) {
    let named: std::collections::HashSet<&str> = keep
        .into_iter()
        .flat_map(|m| {
            std::iter::once(m.snapshot.hash.as_str())
                .chain(m.deltas.iter().map(|d| d.hash.as_str()))
        })
        .collect();
    let Ok(entries) = std::fs::read_dir(repo.join(OBJECTS_DIR)) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let name = name.to_string_lossy();
        if name.len() == 64 && !name.contains('.') && !named.contains(name.as_ref()) {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(
        ".{}.tmp",
        path.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("object")
    ));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}
