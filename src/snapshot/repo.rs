//! A snapshot repository on disk: `manifest.json` plus content-addressed `objects/<hash>`.
//!
//! Writes are atomic (temporary file, fsync, rename), so a reader sees the old state or the
//! new one; objects are written before the manifest that names them.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use ed25519_dalek::VerifyingKey;

use super::files::read_manifest;
use super::{
    ChainError, Delta, DocKey, FileKind, Manifest, ManifestDelta, ManifestError, ManifestSnapshot,
    Pace, Record, SignedManifest, Snapshot, SnapshotError,
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
        return Err(SnapshotError::Manifest(ManifestError::ObjectHash(
            named.to_owned(),
        )));
    }
    Ok(())
}

pub fn object_path(repo: &Path, hash_hex: &str) -> PathBuf {
    repo.join(OBJECTS_DIR).join(hash_hex)
}

/// Where the objects a manifest names are read from: a repository directory
/// ([`DirObjects`]).
pub trait Objects {
    /// The object `hash` names, read and verified as a `kind` file of `size` bytes (as the
    /// manifest names it): its content hashes to `hash` (checked first), then its
    /// signature, hashing key and records, all in the pass that reads it.
    fn open(
        &mut self,
        hash: &str,
        size: u64,
        kind: FileKind,
        trust: &Trust<'_>,
    ) -> Result<Snapshot, SnapshotError>;
}

/// Who may sign objects, and the hashing key they must have been built with (`None`:
/// any, for offline inspection).
#[derive(Clone, Copy)]
pub struct Trust<'a> {
    pub publishers: &'a [VerifyingKey],
    pub hash_key: Option<&'a HashKey>,
}

/// The objects of a repository on disk, each read once (hashed and indexed as it is read),
/// at `pace` when given (a new base verified while the gateway serves).
pub struct DirObjects<'a> {
    pub dir: &'a Path,
    pub pace: Option<Pace>,
}

impl<'a> DirObjects<'a> {
    pub fn new(dir: &'a Path) -> DirObjects<'a> {
        DirObjects { dir, pace: None }
    }
}

impl Objects for DirObjects<'_> {
    fn open(
        &mut self,
        hash: &str,
        size: u64,
        kind: FileKind,
        trust: &Trust<'_>,
    ) -> Result<Snapshot, SnapshotError> {
        Snapshot::load_kind(
            &object_path(self.dir, hash),
            kind,
            Some((hash, size)),
            trust.publishers,
            trust.hash_key,
            self.pace,
        )
    }
}

/// How much of a manifest's data is wanted: all of it, or (a follower holding an earlier
/// manifest with the same base) the deltas after the `held` first ones that move past
/// `version`.
#[derive(Debug, Clone, Copy)]
pub enum Wanted {
    All,
    DeltasAfter { held: usize, version: u64 },
}

/// The objects of a manifest that a [`Wanted`] asks for, with their sizes, in the order
/// they are verified: the base snapshot first (when wanted), then deltas in chain order.
pub fn wanted_objects(manifest: &Manifest, wanted: Wanted) -> Vec<(&str, u64)> {
    let (base, deltas) = wanted_parts(manifest, wanted);
    base.map(|s| (s.hash.as_str(), s.size))
        .into_iter()
        .chain(deltas.iter().map(|d| (d.hash.as_str(), d.size)))
        .collect()
}

fn wanted_parts(
    manifest: &Manifest,
    wanted: Wanted,
) -> (Option<&ManifestSnapshot>, &[ManifestDelta]) {
    match wanted {
        Wanted::All => (Some(&manifest.snapshot), &manifest.deltas),
        Wanted::DeltasAfter { held, version } => {
            let rest = manifest.deltas.get(held..).unwrap_or_default();
            // Applied by an earlier poll that failed on a later delta of the same chain.
            let skip = rest.iter().take_while(|d| d.version <= version).count();
            (None, &rest[skip..])
        }
    }
}

/// The verified data of a manifest: the base (when wanted) and the deltas, in order.
#[derive(Debug)]
pub struct Verified {
    pub snapshot: Option<Snapshot>,
    pub deltas: Vec<Delta>,
}

/// The one verification path, for the loader and the follower alike: every object the
/// manifest names (as far as wanted) is a well-formed hash, its content hashes to it, its
/// signature verifies, it is what its manifest entry says, and each delta applies onto
/// the version before it.
pub fn verify_objects(
    manifest: &Manifest,
    wanted: Wanted,
    objects: &mut impl Objects,
    trust: &Trust<'_>,
) -> Result<Verified, SnapshotError> {
    let snapshot = match wanted_parts(manifest, wanted).0 {
        Some(named) => {
            check_hash(&named.hash)?;
            let snapshot = objects.open(&named.hash, named.size, FileKind::Snapshot, trust)?;
            check_snapshot(&snapshot, named)?;
            Some(snapshot)
        }
        None => None,
    };
    let deltas = verify_deltas(manifest, wanted, objects, trust).collect::<Result<_, _>>()?;
    Ok(Verified { snapshot, deltas })
}

/// The deltas of [`verify_objects`], one at a time and in chain order, ending after the
/// first refused: a follower applies each as soon as it is verified, so that a chain
/// broken halfway leaves it at the last good delta.
pub fn verify_deltas<'a>(
    manifest: &'a Manifest,
    wanted: Wanted,
    objects: &'a mut impl Objects,
    trust: &'a Trust<'a>,
) -> impl Iterator<Item = Result<Delta, SnapshotError>> + 'a {
    let mut version = match wanted {
        Wanted::All => manifest.snapshot.version,
        Wanted::DeltasAfter { version, .. } => version,
    };
    let mut refused = false;
    wanted_parts(manifest, wanted).1.iter().map_while(move |d| {
        if refused {
            return None;
        }
        let verified = check_hash(&d.hash)
            .and_then(|()| objects.open(&d.hash, d.size, FileKind::Delta, trust))
            .map(Delta::from_file)
            .and_then(|delta| check_delta(&delta, d, version).map(|()| delta));
        match &verified {
            Ok(delta) => version = delta.version(),
            Err(_) => refused = true,
        }
        Some(verified)
    })
}

/// Verifies the manifest of the repository in `dir`, then everything it names.
pub fn load_repo(
    dir: &Path,
    trusted: &[VerifyingKey],
    hash_key: Option<&HashKey>,
) -> Result<Repo, SnapshotError> {
    let mpath = dir.join(MANIFEST_FILE);
    let bytes = read_manifest(&mpath).map_err(|source| SnapshotError::Io {
        path: mpath.clone(),
        source,
    })?;
    let manifest = SignedManifest::verify(&bytes, trusted)?;
    let trust = Trust {
        publishers: trusted,
        hash_key,
    };
    let verified = verify_objects(
        &manifest.manifest,
        Wanted::All,
        &mut DirObjects::new(dir),
        &trust,
    )?;
    Repo::new(manifest, verified)
}

impl Repo {
    /// A repo from a manifest and all of its verified data.
    pub fn new(manifest: SignedManifest, verified: Verified) -> Result<Repo, SnapshotError> {
        let snapshot = verified.snapshot.ok_or(SnapshotError::NoBase)?;
        Ok(Repo {
            manifest,
            snapshot,
            deltas: verified.deltas,
        })
    }

    /// The data as of the newest delta, for publishers: lookups and compaction.
    pub fn into_data(self) -> RepoData {
        let mut changes = HashMap::new();
        for d in &self.deltas {
            changes.extend(d.entries());
        }
        RepoData {
            version: self.manifest.manifest.data_version(),
            snapshot: self.snapshot,
            changes,
        }
    }
}

/// A repository's data as of its newest delta: the base snapshot with the latest change
/// to each document over it. For publishers (O(changes) memory over the base); requests
/// are answered by the store's overlay.
pub struct RepoData {
    version: u64,
    snapshot: Snapshot,
    /// The latest entry of each changed document (`None`: removed).
    changes: HashMap<DocKey, Option<Record>>,
}

impl RepoData {
    pub fn version(&self) -> u64 {
        self.version
    }

    pub fn get(&self, key: &DocKey) -> Option<Record> {
        match self.changes.get(key) {
            Some(changed) => *changed,
            None => self.snapshot.get(key),
        }
    }

    /// The data after `changes`, published as `version` (publishers that keep their data
    /// in memory between publications).
    pub fn apply(&mut self, version: u64, changes: &[(DocKey, Option<Record>)]) {
        self.version = version;
        self.changes.extend(changes.iter().copied());
    }

    /// Every document, in key order.
    pub fn records(&self) -> Vec<Record> {
        let mut out: Vec<Record> = self
            .snapshot
            .iter()
            .filter(|r| !self.changes.contains_key(&r.key))
            .chain(self.changes.values().flatten().copied())
            .collect();
        out.sort_unstable_by_key(|r| r.key);
        out
    }
}

/// A verified snapshot is the one its manifest entry describes.
fn check_snapshot(snapshot: &Snapshot, entry: &ManifestSnapshot) -> Result<(), SnapshotError> {
    if snapshot.header().meta.version != entry.version || snapshot.len() as u64 != entry.documents {
        return Err(SnapshotError::Manifest(ManifestError::Disagrees));
    }
    Ok(())
}

/// The entity tag of a manifest (quoted, as HTTP wants it): how relays and followers tell
/// whether a manifest changed without comparing it whole.
pub fn manifest_tag(bytes: &[u8]) -> String {
    format!("\"{}\"", &blake3::hash(bytes).to_hex()[..32])
}

/// A verified delta is the one its manifest entry describes, and applies onto `version`.
fn check_delta(delta: &Delta, entry: &ManifestDelta, version: u64) -> Result<(), SnapshotError> {
    if delta.from_version() != version
        || entry.from_version != version
        || delta.version() != entry.version
        || delta.len() as u64 != entry.entries
    {
        return Err(SnapshotError::Chain(ChainError::DoesNotApply {
            hash: entry.hash.clone(),
            version,
        }));
    }
    Ok(())
}

/// Removes the objects of `repo` that none of `keep` names (best effort: an object left
/// behind costs disk, not correctness). Only object-shaped names (64 characters, no dot)
/// are touched: a temporary file of an interrupted write ([`temp_path`]) stays, and
/// anything else in `objects/` is not ours to judge. Objects written
/// within `spare_younger_than` stay: in a repository with more than one publisher they may
/// belong to a publication being claimed this moment (src/publish/claim.rs).
pub fn remove_unnamed_objects<'a>(
    repo: &Path,
    keep: impl IntoIterator<Item = &'a Manifest>,
    spare_younger_than: Option<std::time::Duration>,
) {
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
        let young = spare_younger_than.is_some_and(|spare| {
            e.metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_none_or(|age| age < spare)
        });
        if name.len() == 64 && !name.contains('.') && !named.contains(name.as_ref()) && !young {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// A temporary name beside `path` that no other write gets, in this process or another:
/// two publishers writing one file at once must not write into each other's.
pub fn temp_path(path: &Path) -> PathBuf {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let dir = path.parent().unwrap_or(Path::new("."));
    dir.join(format!(
        ".{}.{}-{}.tmp",
        path.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("object"),
        std::process::id(),
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ))
}

/// Writes `bytes` to `path` so that readers never see a partial file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = temp_path(path);
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    sync_dir(dir);
    Ok(())
}

/// Makes a rename in `dir` durable; best effort (not every filesystem syncs directories).
pub fn sync_dir(dir: &Path) {
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}
