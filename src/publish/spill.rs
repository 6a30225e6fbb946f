//! Publishing an export bigger than memory. Its records are spilled to 256 files by the
//! first byte of their key (keys are keyed hashes: uniform), then each file is sorted on
//! its own and appended to the snapshot in order, through a writer that hashes and signs
//! as it goes. Persons are spilled by id the same way, to find a repeated or colliding
//! reference and to count them for the header.
//!
//! Memory: the spill files' buffers (2 × 256 × 64 KiB, allocated as buckets are first
//! used) and the largest bucket while it is sorted (1/256 of the documents × 32 bytes:
//! about 12 MB at 100M documents). Disk: the spill, about 1.5 × the snapshot, in a
//! temporary directory inside the repository, removed when done.

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, BufWriter, Read, Seek, Write};
use std::path::{Path, PathBuf};

use ed25519_dalek::SigningKey;

use super::{parse_export, PersonClash, PersonLine, PublishError};
use crate::key_files::{verifying_key_id, HashKey};
use crate::snapshot::{
    object_path, sync_dir, FileKind, FileWriter, HashingWriter, ManifestSnapshot, Record,
    SnapshotHeader, SnapshotMeta, HEADER_LEN, OBJECTS_DIR, RECORD_LEN, TRAILER_LEN,
};

const BUCKETS: usize = 256;
const BUFFER: usize = 64 << 10;
type Entry = [u8; RECORD_LEN];

/// Fixed-size entries spilled to one file per bucket.
struct Buckets {
    dir: PathBuf,
    name: &'static str,
    files: Vec<Option<BufWriter<File>>>,
    entries: u64,
}

impl Buckets {
    fn new(dir: &Path, name: &'static str) -> Buckets {
        Buckets {
            dir: dir.to_owned(),
            name,
            files: (0..BUCKETS).map(|_| None).collect(),
            entries: 0,
        }
    }

    fn path(&self, bucket: usize) -> PathBuf {
        self.dir.join(format!("{}-{bucket:03}", self.name))
    }

    fn push(&mut self, bucket: u8, entry: &Entry) -> io::Result<()> {
        let i = usize::from(bucket);
        let path = self.path(i);
        let file = match &mut self.files[i] {
            Some(f) => f,
            empty => {
                let f = File::options()
                    .read(true)
                    .write(true)
                    .create_new(true)
                    .open(path)?;
                empty.insert(BufWriter::with_capacity(BUFFER, f))
            }
        };
        self.entries += 1;
        file.write_all(entry)
    }

    /// Bucket `i`'s entries, read back; its file is removed.
    fn take(&mut self, i: usize) -> io::Result<Vec<Entry>> {
        let Some(writer) = self.files[i].take() else {
            return Ok(Vec::new());
        };
        let mut file = writer
            .into_inner()
            .map_err(io::IntoInnerError::into_error)?;
        let len = file.stream_position()?;
        file.rewind()?;
        let n = usize::try_from(len).map_err(io::Error::other)? / RECORD_LEN;
        let mut entries = vec![[0u8; RECORD_LEN]; n];
        file.read_exact(entries.as_flattened_mut())?;
        drop(file);
        std::fs::remove_file(self.path(i))?;
        Ok(entries)
    }
}

/// A person line as a spilled entry: id (big-endian, so that entries sort by id), line,
/// reference hash.
fn person_entry(p: &PersonLine) -> Entry {
    let mut e = [0u8; RECORD_LEN];
    e[..8].copy_from_slice(&p.id.to_be_bytes());
    e[8..16].copy_from_slice(&(p.line as u64).to_be_bytes());
    e[16..].copy_from_slice(&p.ref_hash);
    e
}

fn person_of(e: &Entry) -> PersonLine {
    let u64_at = |at: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&e[at..at + 8]);
        u64::from_be_bytes(b)
    };
    let mut ref_hash = [0u8; 16];
    ref_hash.copy_from_slice(&e[16..]);
    PersonLine {
        id: u64_at(0),
        line: usize::try_from(u64_at(8)).unwrap_or(usize::MAX),
        ref_hash,
    }
}

/// What [`write_export_snapshot`] wrote.
pub(super) struct Written {
    pub snapshot: ManifestSnapshot,
    pub persons: u64,
}

/// Reads the export at `input` and writes its records and `extra` (the temporary permits
/// the repository holds) as a signed snapshot object into `repo`, in bounded memory.
pub(super) fn write_export_snapshot(
    input: &Path,
    extra: Vec<Record>,
    repo: &Path,
    meta: SnapshotMeta,
    hash_key: &HashKey,
    signing_key: &SigningKey,
) -> Result<Written, PublishError> {
    let objects = repo.join(OBJECTS_DIR);
    let write_err = |path: &Path| {
        let path = path.to_owned();
        move |source| PublishError::Write { path, source }
    };
    std::fs::create_dir_all(&objects).map_err(write_err(&objects))?;
    let spill = tempfile::Builder::new()
        .prefix(".publish-")
        .tempdir_in(repo)
        .map_err(write_err(repo))?;
    let spilled = write_err(spill.path());
    let mut records = Buckets::new(spill.path(), "records");
    let mut persons = Buckets::new(spill.path(), "persons");
    parse_export(
        input,
        hash_key,
        |p| {
            persons
                .push(p.id.to_be_bytes()[0], &person_entry(&p))
                .map_err(spilled.clone())
        },
        |r| {
            let mut e = [0u8; RECORD_LEN];
            r.encode(&mut e);
            records.push(r.key.0[0], &e).map_err(spilled.clone())
        },
    )?;
    if records.entries == 0 {
        return Err(PublishError::Empty);
    }
    // Persons of the extra records (a permit's holder) who have no line of their own.
    let mut extra_persons: HashSet<u64> = extra.iter().map(|r| r.person).collect();
    for r in &extra {
        let mut e = [0u8; RECORD_LEN];
        r.encode(&mut e);
        records.push(r.key.0[0], &e).map_err(spilled.clone())?;
    }

    let mut distinct = 0u64;
    let mut first_clash: Option<(usize, PersonClash)> = None;
    for b in 0..BUCKETS {
        let mut entries = persons.take(b).map_err(spilled.clone())?;
        entries.sort_unstable();
        for (i, e) in entries.iter().enumerate() {
            let p = person_of(e);
            match i.checked_sub(1).map(|j| person_of(&entries[j])) {
                Some(earlier) if earlier.id == p.id => {
                    let clash = PersonClash::of(&earlier.ref_hash, &p.ref_hash);
                    if first_clash.is_none_or(|(line, _)| p.line < line) {
                        first_clash = Some((p.line, clash));
                    }
                }
                _ => {
                    distinct += 1;
                    extra_persons.remove(&p.id);
                }
            }
        }
    }
    if let Some((line, clash)) = first_clash {
        return Err(clash.error(line));
    }

    let header = SnapshotHeader {
        kind: FileKind::Snapshot,
        from_version: 0,
        meta,
        documents: records.entries,
        persons: distinct + extra_persons.len() as u64,
        signing_key_id: verifying_key_id(&signing_key.verifying_key()),
    };
    let tmp = tempfile::Builder::new()
        .prefix(".snapshot-")
        .tempfile_in(&objects)
        .map_err(write_err(&objects))?;
    let hash = write_sorted(
        tmp.as_file(),
        tmp.path(),
        &header,
        &mut records,
        signing_key,
    )?;
    let path = object_path(repo, &hash);
    tmp.persist(&path).map_err(|e| PublishError::Write {
        path: path.clone(),
        source: e.error,
    })?;
    sync_dir(&objects);
    Ok(Written {
        snapshot: ManifestSnapshot {
            hash,
            size: (HEADER_LEN + TRAILER_LEN) as u64 + records.entries * RECORD_LEN as u64,
            version: header.meta.version,
            documents: records.entries,
        },
        persons: header.persons,
    })
}

/// Writes the snapshot into `file` (at `path`): header, each bucket sorted, signature;
/// synced. Returns the file's content hash (its object name).
fn write_sorted(
    file: &File,
    path: &Path,
    header: &SnapshotHeader,
    records: &mut Buckets,
    signing_key: &SigningKey,
) -> Result<String, PublishError> {
    let written = |source| PublishError::Write {
        path: path.to_owned(),
        source,
    };
    let spill = records.dir.clone();
    let spilled = |source| PublishError::Write {
        path: spill.clone(),
        source,
    };
    let out = HashingWriter {
        inner: BufWriter::with_capacity(1 << 20, file),
        hasher: blake3::Hasher::new(),
    };
    let mut w = FileWriter::new(out, header).map_err(written)?;
    for b in 0..BUCKETS {
        let mut entries = records.take(b).map_err(spilled)?;
        entries.sort_unstable_by(|x, y| x[..16].cmp(&y[..16]));
        if entries.windows(2).any(|w| w[0][..16] == w[1][..16]) {
            return Err(PublishError::DuplicateNumber);
        }
        for e in &entries {
            w.push_encoded(e).map_err(written)?;
        }
    }
    let out = w.finish(signing_key).map_err(written)?;
    let hash = out.hasher.finalize().to_hex().to_string();
    out.inner
        .into_inner()
        .map_err(|e| written(e.into_error()))?
        .sync_all()
        .map_err(written)?;
    Ok(hash)
}
