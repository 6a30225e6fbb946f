//! Snapshot and delta files streamed rather than held: [`FileWriter`] writes one entry at a
//! time, [`scan`] reads one record at a time. Both hash as the bytes pass, so memory is a
//! buffer's worth whatever the number of documents (publishing 100M documents, or reading
//! what the current publication holds, must not need the whole file in memory).

use std::io::{self, Read, Write};
use std::path::Path;

use ed25519_dalek::{Signer, SigningKey, VerifyingKey};

use crate::key_files::verifying_key_id;

use super::header::signed_message;
use super::ingest::MEMORY;
use super::pace::READ_CHUNK;
use super::verify::{check_header, check_named, check_signature};
use super::{
    Corruption, DocKey, FileKind, Record, SizeError, SnapshotError, SnapshotHeader, SnapshotMeta,
    HEADER_LEN, RECORD_LEN, TRAILER_LEN,
};

/// Writes a file: the header, then exactly `header.documents` entries in strictly
/// ascending key order (the caller's to keep), then the signature.
pub struct FileWriter<W: Write> {
    out: W,
    kind: FileKind,
    /// Header and entries: what the signature covers.
    content: blake3::Hasher,
    left: u64,
}

impl<W: Write> FileWriter<W> {
    pub fn new(mut out: W, header: &SnapshotHeader) -> io::Result<FileWriter<W>> {
        let bytes = header.encode();
        out.write_all(&bytes)?;
        let mut content = blake3::Hasher::new();
        content.update(&bytes);
        Ok(FileWriter {
            out,
            kind: header.kind,
            content,
            left: header.documents,
        })
    }

    /// One entry: a record, or (deltas) the removal of the document with `key`.
    pub fn push(&mut self, key: &DocKey, record: Option<&Record>) -> io::Result<()> {
        let mut entry = [0u8; RECORD_LEN];
        match record {
            Some(r) => r.encode(&mut entry),
            // A removal: the key and zeros (kind byte 0).
            None => entry[..16].copy_from_slice(&key.0),
        }
        self.push_encoded(&entry)
    }

    /// One entry already in its 32 bytes.
    pub fn push_encoded(&mut self, entry: &[u8; RECORD_LEN]) -> io::Result<()> {
        self.left = self.left.checked_sub(1).ok_or_else(|| miscount("more"))?;
        self.content.update(entry);
        self.out.write_all(entry)
    }

    /// Signs what was written and appends the signature; returns the writer.
    pub fn finish(mut self, signing_key: &SigningKey) -> io::Result<W> {
        if self.left != 0 {
            return Err(miscount("fewer"));
        }
        let sig = signing_key.sign(&signed_message(self.kind, &self.content.finalize()));
        self.out.write_all(&sig.to_bytes())?;
        Ok(self.out)
    }
}

fn miscount(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("{what} entries than the header promises"),
    )
}

/// A `Write` that also hashes what passes through it: a file's content hash (its object
/// name) computed as it is written.
pub struct HashingWriter<W> {
    pub inner: W,
    pub hasher: blake3::Hasher,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Reads a `kind` file at `path` one record at a time, without keeping it. `f` sees each
/// entry (`None`: a delta's removal) as it is read, and must not act on what it saw unless
/// this returns `Ok`: the content hash (when `named`) and the signature are checked at the
/// end, as a loader would.
pub fn scan(
    path: &Path,
    kind: FileKind,
    named: Option<&str>,
    trusted: &[VerifyingKey],
    mut f: impl FnMut(DocKey, Option<Record>),
) -> Result<SnapshotHeader, SnapshotError> {
    let what = path.display().to_string();
    let io = |source| SnapshotError::Io {
        path: path.to_owned(),
        source,
    };
    let mut file = std::fs::File::open(path).map_err(io)?;
    let len =
        usize::try_from(file.metadata().map_err(io)?.len()).map_err(|_| SnapshotError::Size {
            object: what.clone(),
            size: SizeError::TooLarge,
        })?;
    let mut head = [0u8; HEADER_LEN];
    file.read_exact(&mut head).map_err(io)?;
    let header = SnapshotHeader::decode(&head, &what)?;
    check_header(&header, kind, len, &what)?;
    let corrupt = |cause| SnapshotError::Corrupt { kind, cause };
    let mut hasher = blake3::Hasher::new();
    hasher.update(&head);
    let mut chunk = vec![0u8; READ_CHUNK];
    let mut left = len - HEADER_LEN - TRAILER_LEN;
    let mut index = 0usize;
    while left > 0 {
        let n = left.min(READ_CHUNK);
        file.read_exact(&mut chunk[..n]).map_err(io)?;
        hasher.update(&chunk[..n]);
        for entry in chunk[..n].chunks_exact(RECORD_LEN) {
            let mut key = DocKey([0; 16]);
            key.0.copy_from_slice(&entry[..16]);
            let record = if kind == FileKind::Delta && entry[16..].iter().all(|b| *b == 0) {
                None
            } else {
                Some(
                    Record::decode(entry)
                        .ok_or_else(|| corrupt(Corruption::InvalidRecord(index)))?,
                )
            };
            f(key, record);
            index += 1;
        }
        left -= n;
    }
    let body_digest = hasher.finalize();
    let mut sig = [0u8; TRAILER_LEN];
    file.read_exact(&mut sig).map_err(io)?;
    hasher.update(&sig);
    if let Some(named) = named {
        check_named(named, hasher.finalize())?;
    }
    check_signature(&header, &body_digest, &sig, trusted)?;
    Ok(header)
}

/// Builds a snapshot file from records (any order; duplicates are an error).
pub fn encode(
    records: Vec<Record>,
    meta: SnapshotMeta,
    signing_key: &SigningKey,
) -> Result<Vec<u8>, SnapshotError> {
    let entries = records.into_iter().map(|r| (r.key, Some(r))).collect();
    encode_file(FileKind::Snapshot, 0, entries, meta, signing_key)
}

/// Builds a delta onto data version `from_version`: `Some` puts a record, `None` removes
/// the document with that key.
pub fn encode_delta(
    entries: Vec<(DocKey, Option<Record>)>,
    from_version: u64,
    meta: SnapshotMeta,
    signing_key: &SigningKey,
) -> Result<Vec<u8>, SnapshotError> {
    if meta.version <= from_version {
        return Err(SnapshotError::Corrupt {
            kind: FileKind::Delta,
            cause: Corruption::DeltaVersion {
                version: meta.version,
                from_version,
            },
        });
    }
    encode_file(FileKind::Delta, from_version, entries, meta, signing_key)
}

fn encode_file(
    kind: FileKind,
    from_version: u64,
    mut entries: Vec<(DocKey, Option<Record>)>,
    meta: SnapshotMeta,
    signing_key: &SigningKey,
) -> Result<Vec<u8>, SnapshotError> {
    entries.sort_unstable_by_key(|e| e.0);
    if entries.windows(2).any(|w| w[0].0 == w[1].0) {
        return Err(SnapshotError::Corrupt {
            kind,
            cause: Corruption::DuplicateKey,
        });
    }
    let mut persons: Vec<u64> = entries
        .iter()
        .filter_map(|e| e.1)
        .map(|r| r.person)
        .collect();
    persons.sort_unstable();
    persons.dedup();
    let header = SnapshotHeader {
        kind,
        from_version,
        meta,
        documents: entries.len() as u64,
        persons: persons.len() as u64,
        signing_key_id: verifying_key_id(&signing_key.verifying_key()),
    };
    // Writing into memory fails only if the header's count were wrong.
    let in_memory = |source| SnapshotError::Io {
        path: MEMORY.into(),
        source,
    };
    let mut w = FileWriter::new(
        Vec::with_capacity(HEADER_LEN + entries.len() * RECORD_LEN + TRAILER_LEN),
        &header,
    )
    .map_err(in_memory)?;
    for (key, rec) in &entries {
        if rec.is_some_and(|r| r.key != *key) {
            return Err(SnapshotError::Corrupt {
                kind,
                cause: Corruption::EntryKey,
            });
        }
        w.push(key, rec.as_ref()).map_err(in_memory)?;
    }
    w.finish(signing_key).map_err(in_memory)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::document::{DocumentKind, Region};
    use crate::snapshot::{testing, RecordStatus, Snapshot, NO_RENEWAL};

    fn records(n: u8) -> Vec<Record> {
        (0..n)
            .map(|i| Record {
                key: DocKey([i; 16]),
                person: u64::from(i / 2),
                valid_until: 20_000,
                status: RecordStatus::Valid,
                kind: DocumentKind::TravelPermit,
                region: Region::HongKong,
                renewal: NO_RENEWAL,
            })
            .collect()
    }

    #[test]
    fn a_scan_sees_what_a_load_sees_and_refuses_what_a_load_refuses() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("snap");
        let (bytes, trusted, _) = testing::signed_image(records(40), 1);
        std::fs::write(&path, &bytes).expect("write");
        let named = blake3::hash(&bytes).to_hex().to_string();
        let mut seen = Vec::new();
        let header = scan(&path, FileKind::Snapshot, Some(&named), &trusted, |k, r| {
            seen.push((k, r))
        })
        .expect("scan");
        let loaded = Snapshot::load(&path, &trusted, None).expect("load");
        assert_eq!(header, *loaded.header());
        let want: Vec<_> = loaded.iter().map(|r| (r.key, Some(r))).collect();
        assert_eq!(seen, want);

        let scan_err = |bytes: &[u8], named: Option<&str>| {
            std::fs::write(&path, bytes).expect("write");
            let e =
                scan(&path, FileKind::Snapshot, named, &trusted, |_, _| {}).expect_err("refused");
            crate::report::Report(&e).to_string()
        };
        let mut flipped = bytes.clone();
        flipped[HEADER_LEN + 5] ^= 1;
        assert!(scan_err(&flipped, None).contains("signature"));
        assert!(scan_err(&flipped, Some(&named)).contains("hash"));
        assert!(scan_err(&bytes[..bytes.len() - 1], None).contains("promises"));
        let wrong_kind = scan(
            &dir.path().join("snap"),
            FileKind::Delta,
            None,
            &trusted,
            |_, _| {},
        );
        assert!(wrong_kind.is_err());
    }

    #[test]
    fn the_writer_refuses_a_count_other_than_the_headers() {
        let (bytes, _, _) = testing::signed_image(records(2), 1);
        let header = SnapshotHeader::decode(&bytes, "fixture").expect("header");
        let sk = crate::key_files::generate_signing_key();
        let one = records(1);
        let mut w = FileWriter::new(Vec::new(), &header).expect("header");
        w.push(&one[0].key, Some(&one[0])).expect("first");
        assert!(w.finish(&sk).is_err(), "one entry of two");
        let mut w = FileWriter::new(Vec::new(), &header).expect("header");
        for r in records(2) {
            w.push(&r.key, Some(&r)).expect("entry");
        }
        assert!(w.push(&one[0].key, None).is_err(), "a third entry");
    }
}
