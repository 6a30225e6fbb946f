//! Publishing: the authority's JSONL export in, a signed snapshot and manifest out.
//!
//! The export schema is documented in README.md ("Export format"). Every line is checked
//! with the same parsers the gateway uses for requests, so a number the gateway would
//! reject can never be published. Errors name the line and field, never the number.

use std::collections::HashMap;
use std::io::BufRead;
use std::path::{Path, PathBuf};

use ed25519_dalek::SigningKey;
use serde::Deserialize;
use time::{Duration, OffsetDateTime};

pub mod bucket;
mod changes;
pub mod claim;
mod spill;

pub use changes::{
    commit, load_current, publish_changes, publish_diff, ChangeEvent, Commit, DEFAULT_MAX_DELTAS,
};

use crate::day::Day;

use crate::document::DocumentNo;
use crate::key_files::HashKey;
use crate::snapshot::{
    self, object_path, write_atomic, DocKey, Manifest, ManifestSnapshot, Record, RecordStatus,
    SignedManifest, SnapshotError, SnapshotMeta, MANIFEST_FILE, MANIFEST_TYPE, NO_RENEWAL,
};

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("cannot read {}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{file} line {line}: {message}")]
    Line {
        /// Which input: `export` or `changes`.
        file: &'static str,
        line: usize,
        message: String,
    },
    #[error("the export names a document number more than once; every number must appear once")]
    DuplicateNumber,
    #[error("export has no documents")]
    Empty,
    #[error("nothing changed since the published version; nothing was published")]
    NoChanges,
    #[error("existing manifest in {} does not verify with the signing key's public key; refusing to overwrite it", .0.display())]
    ExistingManifest(PathBuf, #[source] SnapshotError),
    #[error("version {requested} is not above the published version {current}")]
    VersionNotIncreasing { requested: u64, current: u64 },
    #[error("another publisher published on top of version {from} first; nothing was published (publish again onto the newer data)")]
    Taken { from: u64 },
    #[error("{}: {message}", path.display())]
    Chain { path: PathBuf, message: String },
    #[error("the object store at {what} did not answer as it should")]
    Store {
        what: String,
        source: object_store::Error,
    },
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
}

/// Where a publication goes: a repository directory, and the bucket that decides its
/// chain when the directory is an origin's local copy of one (src/publish/bucket.rs).
#[derive(Clone, Copy)]
pub struct Target<'a> {
    pub dir: &'a Path,
    pub bucket: Option<&'a bucket::Bucket>,
}

impl<'a> Target<'a> {
    /// The directory alone: it decides its chain itself.
    pub fn dir(dir: &'a Path) -> Target<'a> {
        Target { dir, bucket: None }
    }
}

/// One line of the export: a person and their documents.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportPerson {
    /// The authority's own reference for the person; only used to detect repeated lines.
    pub person: String,
    pub documents: Vec<ExportDocument>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportDocument {
    pub number: String,
    pub status: RecordStatus,
    /// `YYYY-MM-DD`, the last day the document is valid.
    pub valid_until: String,
}

pub struct PublishOptions {
    /// Defaults to the published version + 1 (or 1 for a new repo).
    pub version: Option<u64>,
    pub expires_in: Duration,
    pub now: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishReport {
    pub version: u64,
    /// Documents in the snapshot, or changes in the delta.
    pub documents: u64,
    pub persons: u64,
    /// Object written: the snapshot or the delta.
    pub hash: String,
    pub size: u64,
    /// A change publication that replaced the delta chain with a full snapshot.
    pub compacted: bool,
}

impl PublishReport {
    fn of_snapshot(
        version: u64,
        snapshot: &ManifestSnapshot,
        persons: u64,
        compacted: bool,
    ) -> PublishReport {
        PublishReport {
            version,
            documents: snapshot.documents,
            persons,
            hash: snapshot.hash.clone(),
            size: snapshot.size,
            compacted,
        }
    }
}

/// Calls `f` with the number and text of each non-blank line of a JSON Lines file, and a
/// constructor of errors that name that line.
pub(super) fn for_each_line(
    what: &'static str,
    path: &Path,
    mut f: impl FnMut(usize, &str, &dyn Fn(String) -> PublishError) -> Result<(), PublishError>,
) -> Result<(), PublishError> {
    let read_err = |source| PublishError::Read {
        path: path.to_owned(),
        source,
    };
    let opened = std::fs::File::open(path).map_err(read_err)?;
    for (i, line) in std::io::BufReader::new(opened).lines().enumerate() {
        let line = line.map_err(read_err)?;
        if line.trim().is_empty() {
            continue;
        }
        let err = |message: String| PublishError::Line {
            file: what,
            line: i + 1,
            message,
        };
        f(i + 1, &line, &err)?;
    }
    Ok(())
}

/// Why two export lines cannot both be published: what the in-memory and the spilling
/// readers both report, naming the later line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PersonClash {
    /// The same reference on two lines.
    Repeated,
    /// Two references whose ids collide (never seen in practice; refused rather than
    /// linked).
    Collision,
}

impl PersonClash {
    fn of(earlier_ref: &[u8; 16], later_ref: &[u8; 16]) -> PersonClash {
        if earlier_ref == later_ref {
            PersonClash::Repeated
        } else {
            PersonClash::Collision
        }
    }

    fn error(self, line: usize) -> PublishError {
        PublishError::Line {
            file: "export",
            line,
            message: match self {
                PersonClash::Repeated => "person: the same person appears on an earlier line",
                PersonClash::Collision => {
                    "person: two person references map to one person id; publish with a new hashing key"
                }
            }
            .into(),
        }
    }
}

/// One export line's person: its id, a hash of the reference it came from (tells a
/// repeated line from two references whose ids collide), and the line.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PersonLine {
    pub id: u64,
    pub ref_hash: [u8; 16],
    pub line: usize,
}

/// Reads an export line by line, checking every line as [`read_export`] documents, and
/// hands each line's person and records on; whether persons repeat is the caller's to
/// check (in memory, or spilled).
pub(crate) fn parse_export(
    path: &Path,
    hash_key: &HashKey,
    mut on_person: impl FnMut(PersonLine) -> Result<(), PublishError>,
    mut on_record: impl FnMut(Record) -> Result<(), PublishError>,
) -> Result<(), PublishError> {
    for_each_line("export", path, |line_no, line, err| {
        let person: ExportPerson = serde_json::from_str(line).map_err(|e| err(e.to_string()))?;
        if person.documents.is_empty() {
            return Err(err("documents: at least one document is required".into()));
        }
        let person_no = DocKey::person_id(hash_key, &person.person);
        let mut ref_hash = [0u8; 16];
        ref_hash.copy_from_slice(&blake3::hash(person.person.as_bytes()).as_bytes()[..16]);
        on_person(PersonLine {
            id: person_no,
            ref_hash,
            line: line_no,
        })?;
        let mut region = None;
        for (j, doc) in person.documents.iter().enumerate() {
            let number = DocumentNo::parse(&doc.number).map_err(|e| {
                err(format!(
                    "documents[{j}].number breaks rule {}: {e}",
                    e.rule()
                ))
            })?;
            if *region.get_or_insert(number.region()) != number.region() {
                return Err(err(format!(
                    "documents[{j}].number breaks rule region_mismatch: one person's documents must be from one region"
                )));
            }
            let valid_until = Day::parse(&doc.valid_until).ok_or_else(|| {
                err(format!(
                    "documents[{j}].valid_until must be a date YYYY-MM-DD from 1970 on"
                ))
            })?;
            on_record(Record {
                key: DocKey::of(hash_key, number.canonical()),
                person: person_no,
                valid_until: valid_until.0,
                status: doc.status,
                kind: number.kind(),
                region: number.region(),
                renewal: number.renewal().unwrap_or(NO_RENEWAL),
            })?;
        }
        Ok(())
    })
}

/// Parses an export into snapshot records, in memory.
pub fn read_export(path: &Path, hash_key: &HashKey) -> Result<Vec<Record>, PublishError> {
    let mut records = Vec::new();
    let mut persons: HashMap<u64, [u8; 16]> = HashMap::new();
    parse_export(
        path,
        hash_key,
        |p| match persons.insert(p.id, p.ref_hash) {
            Some(earlier) => Err(PersonClash::of(&earlier, &p.ref_hash).error(p.line)),
            None => Ok(()),
        },
        |r| {
            records.push(r);
            Ok(())
        },
    )?;
    if records.is_empty() {
        return Err(PublishError::Empty);
    }
    Ok(records)
}

/// Builds, signs and writes a snapshot and its manifest into `repo`.
pub fn publish(
    input: &Path,
    repo: &Path,
    signing_key: &SigningKey,
    hash_key: &HashKey,
    opts: &PublishOptions,
) -> Result<PublishReport, PublishError> {
    let published = published_manifest(repo, signing_key)?;
    let current = published
        .as_ref()
        .map_or(0, |m| m.version.max(m.data_version()));
    let version = next_version(opts.version, current)?;
    let temp_permits = match &published {
        Some(m) => changes::temp_permits_in(m, repo, signing_key, hash_key)?,
        None => Vec::new(),
    };
    let written = spill::write_export_snapshot(
        input,
        temp_permits,
        repo,
        meta(version, hash_key, opts),
        hash_key,
        signing_key,
    )?;
    let snapshot = written.snapshot;
    let report = PublishReport::of_snapshot(version, &snapshot, written.persons, false);
    let manifest = Manifest {
        kind: MANIFEST_TYPE.into(),
        format: 1,
        version,
        published_at: opts.now,
        expires_at: opts.now + opts.expires_in,
        snapshot,
        deltas: Vec::new(),
    };
    write_manifest(
        Target::dir(repo),
        published.as_ref(),
        &manifest,
        signing_key,
        Vec::new(),
    )?;
    Ok(report)
}

/// The version to publish: `requested`, or the one after `current`; never backwards.
fn next_version(requested: Option<u64>, current: u64) -> Result<u64, PublishError> {
    let version = requested.unwrap_or(current + 1);
    if version <= current {
        return Err(PublishError::VersionNotIncreasing {
            requested: version,
            current,
        });
    }
    Ok(version)
}

fn meta(version: u64, hash_key: &HashKey, opts: &PublishOptions) -> SnapshotMeta {
    SnapshotMeta {
        version,
        published_at: opts.now.unix_timestamp(),
        hash_key_id: hash_key.id(),
    }
}

/// Signs and stores a full snapshot of `records`; returns its manifest entry and the
/// number of persons in it.
fn write_snapshot(
    repo: &Path,
    records: Vec<Record>,
    version: u64,
    hash_key: &HashKey,
    signing_key: &SigningKey,
    opts: &PublishOptions,
) -> Result<(ManifestSnapshot, u64), PublishError> {
    let bytes = snapshot::encode(records, meta(version, hash_key, opts), signing_key).map_err(
        |e| match e {
            SnapshotError::Corrupt {
                cause: snapshot::Corruption::DuplicateKey,
                ..
            } => PublishError::DuplicateNumber,
            e => e.into(),
        },
    )?;
    let header = snapshot::SnapshotHeader::decode(&bytes, "new snapshot")?;
    let hash = write_object(repo, &bytes)?;
    Ok((
        ManifestSnapshot {
            hash,
            size: bytes.len() as u64,
            version,
            documents: header.documents,
        },
        header.persons,
    ))
}

/// Writes a content-addressed object; returns its name (BLAKE3, hex).
fn write_object(repo: &Path, bytes: &[u8]) -> Result<String, PublishError> {
    let hash = blake3::hash(bytes).to_hex().to_string();
    let obj = object_path(repo, &hash);
    write_atomic(&obj, bytes).map_err(|source| PublishError::Write { path: obj, source })?;
    Ok(hash)
}

/// How long an object nobody names yet is spared: another publisher may be claiming the
/// publication that names it.
const SPARE_NEW_OBJECTS: std::time::Duration = std::time::Duration::from_secs(600);

/// Signs the manifest and claims its place in the chain as the successor of `previous`
/// (the publication it was built on: `None` for a new repository), after the objects it
/// names, recording `journal` with it; then installs it and applies the retention rule:
/// objects named by neither this manifest nor the one it replaces are removed. The
/// previous publication stays whole, for followers that read its manifest a moment ago;
/// older bases and deltas go (docs/replication.md). `Taken` when another publisher
/// published on top of `previous` first: nothing is installed.
fn write_manifest(
    target: Target<'_>,
    previous: Option<&Manifest>,
    manifest: &Manifest,
    key: &SigningKey,
    journal: Vec<crate::issuance::JournalEntry>,
) -> Result<(), PublishError> {
    let repo = target.dir;
    let signed = SignedManifest::sign(manifest, key)?;
    let mpath = repo.join(MANIFEST_FILE);
    let manifest_text = String::from_utf8(signed).map_err(|e| PublishError::Write {
        path: mpath,
        source: std::io::Error::other(e),
    })?;
    let link = claim::Link {
        from: previous.map_or(0, |m| m.version),
        version: manifest.version,
        manifest: manifest_text,
        journal,
    };
    if let Some(bucket) = target.bucket {
        bucket.claim(repo, &link, manifest)?;
    }
    claim::claim(repo, &link)?;
    claim::settle(repo, &key.verifying_key())?;
    if let Some(bucket) = target.bucket {
        // The claim made the publication: whoever publishes or starts next installs its
        // manifest if this cannot now.
        if let Err(e) = bucket.settle(&key.verifying_key()) {
            tracing::warn!(bucket = bucket.url(), error = %crate::report::Report(&e), "claimed, but cannot install the manifest yet");
        }
    }
    snapshot::remove_unnamed_objects(
        repo,
        std::iter::once(manifest).chain(previous),
        Some(SPARE_NEW_OBJECTS),
    );
    Ok(())
}

/// Signs `manifest` again as the next version with the same data, fresh from `opts.now`
/// for `opts.expires_in`: followers extend their expiry, nothing else changes. Claims its
/// place in the chain like any publication (`Taken` when another publisher was first);
/// returns the new manifest.
pub fn refresh(
    target: Target<'_>,
    manifest: &Manifest,
    signing_key: &SigningKey,
    opts: &PublishOptions,
) -> Result<Manifest, PublishError> {
    let mut next = manifest.clone();
    next.version = next_version(opts.version, manifest.version.max(manifest.data_version()))?;
    next.published_at = opts.now;
    next.expires_at = opts.now + opts.expires_in;
    write_manifest(target, Some(manifest), &next, signing_key, Vec::new())?;
    Ok(next)
}

/// The repository's current manifest, verified with the signing key's public key; `None`
/// for a new repository.
fn published_manifest(
    repo: &Path,
    signing_key: &SigningKey,
) -> Result<Option<Manifest>, PublishError> {
    // A publisher killed between its claim and installing its manifest: completed here.
    claim::settle(repo, &signing_key.verifying_key())?;
    let mpath = repo.join(MANIFEST_FILE);
    match std::fs::read(&mpath) {
        Ok(bytes) => SignedManifest::verify(&bytes, &[signing_key.verifying_key()])
            .map(|m| Some(m.manifest))
            .map_err(|e| PublishError::ExistingManifest(repo.to_owned(), e)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(PublishError::Read {
            path: mpath,
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key_files::generate_signing_key;
    use crate::snapshot::load_repo;

    const EXPORT: &str = r#"{"person":"p1","documents":[{"number":"H12345678","status":"valid","valid_until":"2031-01-01"},{"number":"810000199001011230","status":"valid","valid_until":"2030-06-30"}]}
{"person":"p2","documents":[{"number":"01234567","status":"lost","valid_until":"2029-01-01"}]}
"#;

    fn opts() -> PublishOptions {
        PublishOptions {
            version: None,
            expires_in: Duration::hours(24),
            now: OffsetDateTime::from_unix_timestamp(1_790_000_000).expect("ts"),
        }
    }

    #[test]
    fn publish_then_load() {
        let dir = tempfile::tempdir().expect("tempdir");
        let input = dir.path().join("export.jsonl");
        std::fs::write(&input, EXPORT).expect("write");
        let (sk, hk) = (generate_signing_key(), HashKey::generate());
        let repo = dir.path().join("repo");
        let r1 = publish(&input, &repo, &sk, &hk, &opts()).expect("publish");
        assert_eq!((r1.version, r1.documents, r1.persons), (1, 3, 2));
        let r2 = publish(&input, &repo, &sk, &hk, &opts()).expect("publish again");
        assert_eq!(r2.version, 2);
        let err = publish(
            &input,
            &repo,
            &sk,
            &hk,
            &PublishOptions {
                version: Some(2),
                ..opts()
            },
        );
        assert!(matches!(
            err,
            Err(PublishError::VersionNotIncreasing { .. })
        ));

        let loaded = load_repo(&repo, &[sk.verifying_key()], Some(&hk)).expect("load");
        assert_eq!(loaded.manifest.manifest.version, 2);
        let tp = loaded
            .snapshot
            .get(&DocKey::of(&hk, "H12345678"))
            .expect("present");
        let rp = loaded
            .snapshot
            .get(&DocKey::of(&hk, "810000199001011230"))
            .expect("present");
        assert_eq!(tp.person, rp.person);
        assert_eq!(Day(rp.valid_until).to_string(), "2030-06-30");
        let lost = loaded
            .snapshot
            .get(&DocKey::of(&hk, "01234567"))
            .expect("present");
        assert_eq!(lost.status, RecordStatus::Lost);
        assert_ne!(lost.person, tp.person);
    }

    #[test]
    fn full_publications_keep_the_current_and_the_previous_base_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let input = dir.path().join("export.jsonl");
        std::fs::write(&input, EXPORT).expect("write");
        let (sk, hk) = (generate_signing_key(), HashKey::generate());
        let repo = dir.path().join("repo");
        // As if each publication were an hour older than the next: unnamed objects are
        // spared for ten minutes (another publisher may be claiming them).
        let age_objects = || {
            let objects = std::fs::read_dir(repo.join(snapshot::OBJECTS_DIR));
            for e in objects.into_iter().flatten() {
                let f = std::fs::File::options()
                    .write(true)
                    .open(e.expect("entry").path())
                    .expect("open");
                let hour_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
                f.set_modified(hour_ago).expect("mtime");
            }
        };
        let hashes: Vec<String> = (0..3)
            .map(|_| {
                age_objects();
                publish(&input, &repo, &sk, &hk, &opts())
                    .expect("publish")
                    .hash
            })
            .collect();
        let mut left: Vec<String> = std::fs::read_dir(repo.join(snapshot::OBJECTS_DIR))
            .expect("objects")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        let mut want = vec![hashes[1].clone(), hashes[2].clone()];
        want.sort();
        assert_eq!(left, want, "version 1's base is gone, 2 and 3 stay");
        let loaded = load_repo(&repo, &[sk.verifying_key()], Some(&hk)).expect("load");
        assert_eq!(loaded.manifest.manifest.version, 3);
    }

    #[test]
    fn export_errors_name_line_and_field_but_not_the_number() {
        let dir = tempfile::tempdir().expect("tempdir");
        let hk = HashKey::generate();
        let cases = [
            (
                r#"{"person":"p","documents":[{"number":"810000199001011231","status":"valid","valid_until":"2030-01-01"}]}"#,
                "check_character",
            ),
            (
                r#"{"person":"p","documents":[{"number":"H12345678","status":"valid","valid_until":"2030-02-30"}]}"#,
                "valid_until",
            ),
            (
                r#"{"person":"p","documents":[{"number":"H12345678","status":"stolen","valid_until":"2030-01-01"}]}"#,
                "unknown variant",
            ),
            (
                r#"{"person":"p","documents":[{"number":"H12345678","status":"valid","valid_until":"2030-01-01","x":1}]}"#,
                "unknown field",
            ),
            (r#"{"person":"p","documents":[]}"#, "at least one"),
            (
                r#"{"person":"p","documents":[{"number":"H12345678","status":"valid","valid_until":"2030-01-01"},{"number":"820000198512310010","status":"valid","valid_until":"2030-01-01"}]}"#,
                "region_mismatch",
            ),
        ];
        for (line, want) in cases {
            let input = dir.path().join("e.jsonl");
            std::fs::write(&input, format!("\n{line}\n")).expect("write");
            let e = read_export(&input, &hk).expect_err(want).to_string();
            assert!(e.contains("line 2") && e.contains(want), "{e}");
            assert!(!e.contains("H12345678") && !e.contains("8100001990"), "{e}");
        }
        let input = dir.path().join("twice.jsonl");
        std::fs::write(
            &input,
            concat!(
                r#"{"person":"a","documents":[{"number":"H12345678","status":"valid","valid_until":"2030-01-01"}]}"#,
                "\n",
                r#"{"person":"a","documents":[{"number":"H87654321","status":"valid","valid_until":"2030-01-01"}]}"#,
            ),
        )
        .expect("write");
        let e = read_export(&input, &hk)
            .expect_err("same person twice")
            .to_string();
        assert!(e.contains("line 2") && e.contains("earlier line"), "{e}");
        // The spilling publisher finds it too, and names the same line.
        let repo = dir.path().join("twice-repo");
        let sk = generate_signing_key();
        let p = publish(&input, &repo, &sk, &hk, &opts()).expect_err("same person twice");
        assert_eq!(p.to_string(), e);

        let input = dir.path().join("dup.jsonl");
        let doc = r#"{"number":"H12345678","status":"valid","valid_until":"2030-01-01"}"#;
        std::fs::write(
            &input,
            format!("{{\"person\":\"a\",\"documents\":[{doc}]}}\n{{\"person\":\"b\",\"documents\":[{doc}]}}\n"),
        )
        .expect("write");
        let repo = dir.path().join("repo");
        let e = publish(&input, &repo, &generate_signing_key(), &hk, &opts()).expect_err("dup");
        assert!(e.to_string().contains("once"), "{e}");
    }

    /// An export of `persons` people with a travel permit each, and [`EXPORT`]'s lines.
    fn big_export(path: &Path, persons: usize) {
        let mut text = String::from(EXPORT);
        for i in 0..persons {
            text.push_str(&format!(
                "{{\"person\":\"x{i}\",\"documents\":[{{\"number\":\"H{:08}\",\"status\":\"valid\",\"valid_until\":\"2031-01-01\"}}]}}\n",
                20_000_000 + i
            ));
        }
        std::fs::write(path, text).expect("write");
    }

    /// The snapshot written through the spill is byte for byte the one the in-memory
    /// encoder makes of the same records: order, header counts, signature.
    #[test]
    fn the_spilled_snapshot_is_the_in_memory_encoding() {
        let dir = tempfile::tempdir().expect("tempdir");
        let input = dir.path().join("export.jsonl");
        big_export(&input, 5_000);
        let (sk, hk) = (generate_signing_key(), HashKey::generate());
        let repo = dir.path().join("repo");
        let report = publish(&input, &repo, &sk, &hk, &opts()).expect("publish");
        assert_eq!((report.documents, report.persons), (5_003, 5_002));
        let written = std::fs::read(object_path(&repo, &report.hash)).expect("object");
        let expected = snapshot::encode(
            read_export(&input, &hk).expect("export"),
            meta(1, &hk, &opts()),
            &sk,
        )
        .expect("encode");
        assert!(written == expected, "the spilled snapshot differs");
        assert_eq!(blake3::hash(&written).to_hex().as_str(), report.hash);
        assert_eq!(report.size, written.len() as u64);
        // Nothing but the manifest and the objects is left behind.
        let mut left: Vec<String> = std::fs::read_dir(&repo)
            .expect("repo")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["chain", "manifest.json", "objects"]);
        assert_eq!(
            std::fs::read_dir(repo.join("objects"))
                .expect("objects")
                .count(),
            1
        );
    }

    /// Of several repeated persons, the first line that repeats one is named, as the
    /// in-memory reader names it; a refused export leaves no spill behind.
    #[test]
    fn the_spill_names_the_first_repeated_person() {
        let dir = tempfile::tempdir().expect("tempdir");
        let input = dir.path().join("export.jsonl");
        big_export(&input, 3_000);
        let mut text = std::fs::read_to_string(&input).expect("read");
        let line = |person: &str, n: u32| {
            format!(
                "{{\"person\":\"{person}\",\"documents\":[{{\"number\":\"M{n:08}\",\"status\":\"valid\",\"valid_until\":\"2031-01-01\"}}]}}\n"
            )
        };
        text.push_str(&line("x2999", 1));
        text.push_str(&line("x7", 2));
        std::fs::write(&input, text).expect("write");
        let hk = HashKey::generate();
        let in_memory = read_export(&input, &hk).expect_err("repeated").to_string();
        assert!(in_memory.contains("line 3003"), "{in_memory}");
        let repo = dir.path().join("repo");
        let e = publish(&input, &repo, &generate_signing_key(), &hk, &opts())
            .expect_err("repeated")
            .to_string();
        assert_eq!(e, in_memory);
        let left: Vec<_> = std::fs::read_dir(&repo)
            .expect("repo")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert!(left.iter().all(|n| n == "objects"), "left behind: {left:?}");
    }
}
