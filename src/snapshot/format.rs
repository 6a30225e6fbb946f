//! Snapshot file: `header (96) ‖ records (N × 32, sorted by key) ‖ signature (64)`.
//!
//! The signature covers `"permitgate snapshot v1\0" ‖ BLAKE3(header ‖ records)`; the content
//! hash the manifest names is BLAKE3 of the whole file (what `b3sum` prints). Loading reads
//! the file once, hashing each chunk while it is still in cache, so both digests cost one
//! pass. The in-memory index is the record array itself plus a bucket directory built from
//! the sorted keys: lookup is one directory read and (on average) one record comparison.

use std::io::Read;
use std::path::Path;

use ed25519_dalek::{Signature, SigningKey, Verifier, VerifyingKey};

use super::files::open_object;
use super::pace::{Pace, Pacer};
use super::record::{DocKey, Record};
use super::stream::FileWriter;
use super::{Corruption, SizeError, SnapshotError};
use crate::key_files::{verifying_key_id, HashKey, KeyId};

pub const HEADER_LEN: usize = 96;
pub const RECORD_LEN: usize = Record::LEN;
pub const TRAILER_LEN: usize = 64;
pub(super) const READ_CHUNK: usize = 1 << 20;
/// An image in memory is hashed and indexed this much at a time: small enough to stay in
/// a core's L2 between the two passes, and to pace in steps well under a millisecond.
const FEED_CHUNK: usize = 256 << 10;
/// How errors name an image held in memory (fetched, not read from a file).
const MEMORY: &str = "<memory>";

/// The two files that share this format. A delta is a small snapshot of changes: its
/// records replace the base's, a record with kind byte 0 removes one, and its header names
/// the version it applies onto. Magic and signature context differ, so neither can be
/// passed off as the other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    Snapshot,
    Delta,
}

impl FileKind {
    fn magic(self) -> &'static [u8; 8] {
        match self {
            FileKind::Snapshot => b"PGSNAP1\n",
            FileKind::Delta => b"PGDELT1\n",
        }
    }

    fn context(self) -> &'static [u8] {
        match self {
            FileKind::Snapshot => b"permitgate snapshot v1\0",
            FileKind::Delta => b"permitgate delta v1\0",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            FileKind::Snapshot => "snapshot",
            FileKind::Delta => "delta",
        }
    }
}

impl std::fmt::Display for FileKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What the publisher states about a snapshot; everything in the header except counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotMeta {
    pub version: u64,
    /// Unix seconds.
    pub published_at: i64,
    pub hash_key_id: KeyId,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotHeader {
    pub kind: FileKind,
    /// Deltas: the data version they apply onto. Snapshots: 0.
    pub from_version: u64,
    pub meta: SnapshotMeta,
    pub documents: u64,
    pub persons: u64,
    pub signing_key_id: KeyId,
}

impl SnapshotHeader {
    pub(super) fn encode(&self) -> [u8; HEADER_LEN] {
        let mut h = [0u8; HEADER_LEN];
        h[..8].copy_from_slice(self.kind.magic());
        h[8..12].copy_from_slice(&(RECORD_LEN as u32).to_le_bytes());
        h[16..24].copy_from_slice(&self.meta.version.to_le_bytes());
        h[24..32].copy_from_slice(&self.meta.published_at.to_le_bytes());
        h[32..40].copy_from_slice(&self.documents.to_le_bytes());
        h[40..48].copy_from_slice(&self.persons.to_le_bytes());
        h[48..56].copy_from_slice(&self.meta.hash_key_id.0);
        h[56..64].copy_from_slice(&self.signing_key_id.0);
        h[64..72].copy_from_slice(&self.from_version.to_le_bytes());
        h
    }

    pub fn decode(h: &[u8], what: &str) -> Result<SnapshotHeader, SnapshotError> {
        let h: &[u8; HEADER_LEN] = h
            .get(..HEADER_LEN)
            .and_then(|s| s.try_into().ok())
            .ok_or_else(|| SnapshotError::Size {
                object: what.to_owned(),
                size: SizeError::NoHeader(HEADER_LEN),
            })?;
        let u64_at = |o: usize| u64::from_le_bytes(h[o..o + 8].try_into().unwrap_or_default());
        let id_at = |o: usize| KeyId(h[o..o + 8].try_into().unwrap_or_default());
        let kind = [FileKind::Snapshot, FileKind::Delta]
            .into_iter()
            .find(|k| &h[..8] == k.magic())
            .filter(|_| h[8..12] == (RECORD_LEN as u32).to_le_bytes())
            .ok_or_else(|| SnapshotError::NotASnapshot {
                object: what.to_owned(),
            })?;
        let from_version = u64_at(64);
        if h[12..16] != [0; 4]
            || h[72..] != [0; HEADER_LEN - 72]
            || (kind == FileKind::Snapshot && from_version != 0)
        {
            return Err(SnapshotError::Corrupt {
                kind,
                cause: Corruption::ReservedBytes,
            });
        }
        Ok(SnapshotHeader {
            kind,
            from_version,
            meta: SnapshotMeta {
                version: u64_at(16),
                published_at: u64_at(24) as i64,
                hash_key_id: id_at(48),
            },
            documents: u64_at(32),
            persons: u64_at(40),
            signing_key_id: id_at(56),
        })
    }

    /// Exact file size this header promises.
    fn file_len(&self) -> Option<u64> {
        self.documents
            .checked_mul(RECORD_LEN as u64)?
            .checked_add((HEADER_LEN + TRAILER_LEN) as u64)
    }
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

pub(super) fn signed_message(kind: FileKind, digest: &blake3::Hash) -> Vec<u8> {
    let context = kind.context();
    let mut m = Vec::with_capacity(context.len() + 32);
    m.extend_from_slice(context);
    m.extend_from_slice(digest.as_bytes());
    m
}

/// A verified, loaded snapshot with its lookup index. Immutable.
pub struct Snapshot {
    header: SnapshotHeader,
    content_hash: blake3::Hash,
    /// The whole file; records live at `HEADER_LEN..HEADER_LEN + documents * 32`.
    data: Box<[u8]>,
    /// `dir[b]..dir[b + 1]` are the records whose key prefix falls in bucket `b`.
    dir: Box<[u32]>,
    shift: u32,
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshot")
            .field("header", &self.header)
            .field("content_hash", &self.content_hash.to_hex().as_str())
            .finish()
    }
}

impl Snapshot {
    /// Reads, verifies and indexes a snapshot file. `trusted` are the publisher keys; the
    /// hashing key, when given, must be the one the snapshot was built with.
    ///
    /// One pass: each chunk is hashed and indexed right after it is read, while it is
    /// still in cache. Nothing is trusted until the signature has verified at the end.
    pub fn load(
        path: &Path,
        trusted: &[VerifyingKey],
        hash_key: Option<&HashKey>,
    ) -> Result<Snapshot, SnapshotError> {
        Self::load_kind(path, FileKind::Snapshot, None, trusted, hash_key, None)
    }

    /// [`Snapshot::load`] for either kind of file; the header must say `kind`, and the
    /// content hash be `named` (checked before the signature), when given. A repository's
    /// object (`size`: what its manifest names) is opened as [`open_object`] does: a
    /// regular file of that size, not through a link. Read, hashed and indexed a piece at a
    /// time, at `pace` when given.
    pub(super) fn load_kind(
        path: &Path,
        kind: FileKind,
        named: Option<(&str, u64)>,
        trusted: &[VerifyingKey],
        hash_key: Option<&HashKey>,
        pace: Option<Pace>,
    ) -> Result<Snapshot, SnapshotError> {
        let io = |source| SnapshotError::Io {
            path: path.to_owned(),
            source,
        };
        let (mut file, len) = match named {
            Some((_, size)) => (open_object(path, size).map_err(io)?, size),
            None => {
                let file = std::fs::File::open(path).map_err(io)?;
                let len = file.metadata().map_err(io)?.len();
                (file, len)
            }
        };
        let size = |size| SnapshotError::Size {
            object: path.display().to_string(),
            size,
        };
        let len = usize::try_from(len).map_err(|_| size(SizeError::TooLarge))?;
        if len < HEADER_LEN + TRAILER_LEN {
            return Err(size(SizeError::TooShort { len }));
        }
        let mut data = vec![0u8; len];
        let mut ingest = Ingest::new(len, kind, &path.display().to_string());
        let mut pacer = Pacer::new(pace);
        let mut filled = 0;
        while filled < len {
            let end = (filled + pacer.io_step()).min(len);
            let n = file.read(&mut data[filled..end]).map_err(io)?;
            if n == 0 {
                return Err(size(SizeError::Shrank { read: filled, len }));
            }
            filled += n;
            if let Err(e) = ingest.feed(&data[..filled]) {
                // As for an image in memory: an object that is not the one named is
                // reported so, whatever else is wrong with it.
                let Some((hash, _)) = named else {
                    return Err(e);
                };
                file.read_exact(&mut data[filled..]).map_err(io)?;
                return Err(check_named(hash, blake3::hash(&data)).err().unwrap_or(e));
            }
            pacer.tick();
        }
        ingest.finish(data, named.map(|(hash, _)| hash), trusted, hash_key)
    }

    /// Verifies and indexes a snapshot held in memory.
    pub fn from_bytes(
        data: Vec<u8>,
        trusted: &[VerifyingKey],
        hash_key: Option<&HashKey>,
    ) -> Result<Snapshot, SnapshotError> {
        Self::from_bytes_kind(data, FileKind::Snapshot, None, trusted, hash_key)
    }

    /// [`Snapshot::from_bytes`] for either kind; as [`Snapshot::load_kind`]. An image that
    /// does not even parse is reported as not hashing to `named` when it does not: the
    /// object is not the one named (damaged in transit), whatever else is wrong with it.
    /// Fed to the hasher and the index a piece at a time, each piece still in cache for
    /// the second pass.
    pub(super) fn from_bytes_kind(
        data: Vec<u8>,
        kind: FileKind,
        named: Option<&str>,
        trusted: &[VerifyingKey],
        hash_key: Option<&HashKey>,
    ) -> Result<Snapshot, SnapshotError> {
        let not_named = |data: &[u8]| named.and_then(|n| check_named(n, blake3::hash(data)).err());
        if data.len() < HEADER_LEN + TRAILER_LEN {
            return Err(SnapshotError::Size {
                object: MEMORY.to_owned(),
                size: SizeError::TooShort { len: data.len() },
            });
        }
        let mut ingest = Ingest::new(data.len(), kind, MEMORY);
        let mut fed = 0;
        while fed < data.len() {
            fed = (fed + FEED_CHUNK).min(data.len());
            if let Err(e) = ingest.feed(&data[..fed]) {
                return Err(not_named(&data).unwrap_or(e));
            }
        }
        ingest.finish(data, named, trusted, hash_key)
    }

    pub fn header(&self) -> &SnapshotHeader {
        &self.header
    }

    pub fn content_hash(&self) -> blake3::Hash {
        self.content_hash
    }

    /// The file image, as verified (what a follower keeps in its state directory).
    pub fn bytes(&self) -> &[u8] {
        &self.data
    }

    pub fn len(&self) -> usize {
        self.header.documents as usize
    }

    pub fn is_empty(&self) -> bool {
        self.header.documents == 0
    }

    /// Bytes held by this snapshot (file image plus directory).
    pub fn memory_bytes(&self) -> usize {
        self.data.len() + self.dir.len() * 4
    }

    #[inline]
    fn records(&self) -> &[u8] {
        &self.data[HEADER_LEN..self.data.len() - TRAILER_LEN]
    }

    #[inline]
    fn bucket(&self, key: &DocKey) -> usize {
        if self.shift >= 64 {
            0
        } else {
            (key.prefix() >> self.shift) as usize
        }
    }

    /// Touches the directory entries and then the first records of the keys' buckets, so
    /// that later [`Snapshot::get`]s find them in cache. Each pass's loads do not depend
    /// on one another, so the CPU has many misses in flight at once instead of one after
    /// the other.
    pub fn prefetch<'k>(&self, keys: impl Iterator<Item = &'k DocKey> + Clone) {
        let mut seen = 0u32;
        for k in keys.clone() {
            if let Some(lo) = self.dir.get(self.bucket(k)) {
                seen ^= *lo;
            }
        }
        std::hint::black_box(seen);
        let records = self.records();
        let mut seen = 0u8;
        for k in keys {
            if let Some(lo) = self.dir.get(self.bucket(k)) {
                if let Some(b) = records.get(*lo as usize * RECORD_LEN) {
                    seen ^= *b;
                }
            }
        }
        std::hint::black_box(seen);
    }

    #[inline]
    pub fn get(&self, key: &DocKey) -> Option<Record> {
        let bucket = self.bucket(key);
        let lo = *self.dir.get(bucket)? as usize * RECORD_LEN;
        let hi = *self.dir.get(bucket + 1)? as usize * RECORD_LEN;
        self.records()
            .get(lo..hi)?
            .chunks_exact(RECORD_LEN)
            .find(|r| r[..16] == key.0)
            .and_then(Record::decode)
    }

    /// Every entry in key order, removals (deltas only) as `None`.
    pub(super) fn entries(&self) -> impl Iterator<Item = (DocKey, Option<Record>)> + '_ {
        self.records().chunks_exact(RECORD_LEN).map(|r| {
            let mut key = [0u8; 16];
            key.copy_from_slice(&r[..16]);
            (DocKey(key), Record::decode(r))
        })
    }

    /// All records in key order (for inspection and tests; not a hot path).
    pub fn iter(&self) -> impl Iterator<Item = Record> + '_ {
        self.records()
            .chunks_exact(RECORD_LEN)
            .filter_map(Record::decode)
    }
}

/// Hashes and indexes a snapshot image as it arrives, in one pass; trusts nothing until
/// [`Ingest::finish`] has checked the signature.
struct Ingest {
    kind: FileKind,
    hasher: blake3::Hasher,
    index: Option<IndexBuilder>,
    /// Bytes fed to the hasher so far.
    hashed: usize,
    len: usize,
    what: String,
}

impl Ingest {
    fn new(len: usize, kind: FileKind, what: &str) -> Ingest {
        Ingest {
            kind,
            hasher: blake3::Hasher::new(),
            index: None,
            hashed: 0,
            len,
            what: what.to_owned(),
        }
    }

    /// `data` is the file image read so far (a growing prefix of `len` bytes).
    fn feed(&mut self, data: &[u8]) -> Result<(), SnapshotError> {
        let body_end = self.len - TRAILER_LEN;
        let hash_to = data.len().min(body_end);
        if hash_to > self.hashed {
            self.hasher.update(&data[self.hashed..hash_to]);
            self.hashed = hash_to;
        }
        if self.index.is_none() && data.len() >= HEADER_LEN {
            let header = SnapshotHeader::decode(data, &self.what)?;
            check_header(&header, self.kind, self.len, &self.what)?;
            self.index = Some(
                IndexBuilder::new(header.documents as usize, header.kind == FileKind::Delta)
                    .map_err(|cause| SnapshotError::Corrupt {
                        kind: header.kind,
                        cause,
                    })?,
            );
        }
        if let Some(ix) = self.index.as_mut() {
            let kind = self.kind;
            ix.extend(&data[HEADER_LEN.min(hash_to)..hash_to])
                .map_err(|cause| SnapshotError::Corrupt { kind, cause })?;
        }
        Ok(())
    }

    fn finish(
        mut self,
        data: Vec<u8>,
        named: Option<&str>,
        trusted: &[VerifyingKey],
        hash_key: Option<&HashKey>,
    ) -> Result<Snapshot, SnapshotError> {
        let body_digest = self.hasher.finalize();
        self.hasher.update(&data[self.len - TRAILER_LEN..]);
        let content_hash = self.hasher.finalize();
        if let Some(named) = named {
            check_named(named, content_hash)?;
        }
        let index = self.index.ok_or_else(|| SnapshotError::Size {
            object: self.what.clone(),
            size: SizeError::NoHeader(HEADER_LEN),
        })?;
        let header = SnapshotHeader::decode(&data, &self.what)?;
        let sig_bytes: [u8; 64] = data[data.len() - TRAILER_LEN..].try_into().map_err(|_| {
            SnapshotError::BadSignature {
                what: header.kind.name(),
            }
        })?;
        check_signature(&header, &body_digest, &sig_bytes, trusted)?;
        if let Some(hk) = hash_key {
            if hk.id() != header.meta.hash_key_id {
                return Err(SnapshotError::HashKeyMismatch {
                    snapshot: header.meta.hash_key_id,
                    configured: hk.id(),
                });
            }
        }
        let (dir, shift) = index.finish().map_err(|size| SnapshotError::Size {
            object: self.what.clone(),
            size,
        })?;
        Ok(Snapshot {
            header,
            content_hash,
            data: data.into_boxed_slice(),
            dir,
            shift,
        })
    }
}

/// An object is the one its name (the BLAKE3 of its content, in hex) names.
pub(super) fn check_named(named: &str, actual: blake3::Hash) -> Result<(), SnapshotError> {
    if actual.to_hex().as_str() != named {
        return Err(SnapshotError::HashMismatch {
            expected: named.to_owned(),
            actual: actual.to_hex().to_string(),
        });
    }
    Ok(())
}

/// The header says the expected kind and promises exactly `len` bytes.
pub(super) fn check_header(
    header: &SnapshotHeader,
    kind: FileKind,
    len: usize,
    object: &str,
) -> Result<(), SnapshotError> {
    if header.kind != kind {
        return Err(SnapshotError::WrongKind {
            object: object.to_owned(),
            found: header.kind,
            expected: kind,
        });
    }
    check_len(header, len, object)
}

/// `signature` is a trusted publisher's, over `body_digest` (BLAKE3 of header and
/// records) in the header's kind's context.
pub(super) fn check_signature(
    header: &SnapshotHeader,
    body_digest: &blake3::Hash,
    signature: &[u8; TRAILER_LEN],
    trusted: &[VerifyingKey],
) -> Result<(), SnapshotError> {
    let what = header.kind.name();
    trusted
        .iter()
        .find(|k| verifying_key_id(k) == header.signing_key_id)
        .ok_or(SnapshotError::UnknownKey {
            what,
            key_id: header.signing_key_id,
        })?
        .verify(
            &signed_message(header.kind, body_digest),
            &Signature::from_bytes(signature),
        )
        .map_err(|_| SnapshotError::BadSignature { what })
}

fn check_len(header: &SnapshotHeader, len: usize, object: &str) -> Result<(), SnapshotError> {
    if header.file_len() != Some(len as u64) {
        return Err(SnapshotError::Size {
            object: object.to_owned(),
            size: SizeError::Promised {
                len,
                documents: header.documents,
            },
        });
    }
    Ok(())
}

/// Builds the bucket directory while records stream in: checks order, uniqueness and the
/// enum bytes, and counts the records of each bucket of key prefixes. About one bucket per
/// document keeps buckets short.
struct IndexBuilder {
    dir: Vec<u32>,
    shift: u32,
    /// Records seen so far.
    count: usize,
    expected: usize,
    prev: Option<(u64, u64)>,
    /// Deltas may hold removals: kind byte 0 and nothing but the key.
    removals: bool,
}

impl IndexBuilder {
    fn new(expected: usize, removals: bool) -> Result<IndexBuilder, Corruption> {
        if expected > u32::MAX as usize - 1 {
            return Err(Corruption::TooManyDocuments);
        }
        let bits = (usize::BITS - expected.max(1).leading_zeros()).clamp(1, 32);
        Ok(IndexBuilder {
            dir: vec![0u32; (1usize << bits) + 1],
            shift: 64 - bits,
            count: 0,
            expected,
            prev: None,
            removals,
        })
    }

    /// Feeds the records area from its start up to some point; only records not seen yet
    /// and complete in `records` are indexed, so callers can pass a growing prefix.
    fn extend(&mut self, records: &[u8]) -> Result<(), Corruption> {
        let complete = (records.len() / RECORD_LEN).min(self.expected);
        if complete <= self.count {
            return Ok(());
        }
        let new = &records[self.count * RECORD_LEN..complete * RECORD_LEN];
        // Locals, not fields, in the loop: this runs 10^7 times per load and the compiler
        // keeps locals in registers where `self` would be re-read after every store.
        let (shift, dir) = (self.shift, self.dir.as_mut_slice());
        let (mut prev, mut i) = (self.prev, self.count);
        for r in new.chunks_exact(RECORD_LEN) {
            let r: &[u8; RECORD_LEN] = r.try_into().unwrap_or(&[0; RECORD_LEN]);
            let key = (
                u64::from_be_bytes([r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7]]),
                u64::from_be_bytes([r[8], r[9], r[10], r[11], r[12], r[13], r[14], r[15]]),
            );
            let valid =
                Record::fields_valid(r) || (self.removals && r[16..] == [0; RECORD_LEN - 16]);
            if !valid {
                return Err(Corruption::InvalidRecord(i));
            }
            if prev.is_some_and(|p| p >= key) {
                return Err(Corruption::OutOfOrder(i));
            }
            prev = Some(key);
            // Count per bucket; `finish` turns counts into start offsets. Filling start
            // offsets here instead branches on the (random) gap between keys and costs
            // twice as much as hashing the file.
            if let Some(c) = dir.get_mut(((key.0 >> shift) as usize) + 1) {
                *c += 1;
            }
            i += 1;
        }
        self.prev = prev;
        self.count = i;
        Ok(())
    }

    fn finish(mut self) -> Result<(Box<[u32]>, u32), SizeError> {
        if self.count != self.expected {
            return Err(SizeError::Records {
                found: self.count,
                expected: self.expected,
            });
        }
        let mut sum = 0u32;
        for d in self.dir.iter_mut() {
            sum += *d;
            *d = sum;
        }
        Ok((self.dir.into_boxed_slice(), self.shift))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::document::{DocumentKind, Region};
    use crate::key_files::generate_signing_key;
    use crate::snapshot::RecordStatus;

    fn records(n: u32, hk: &HashKey) -> Vec<Record> {
        (0..n)
            .map(|i| Record {
                key: DocKey::of(hk, &format!("H{:08}", i)),
                person: u64::from(i / 2),
                valid_until: 20_000 + i,
                status: RecordStatus::Valid,
                kind: DocumentKind::TravelPermit,
                region: Region::HongKong,
                renewal: crate::snapshot::record::NO_RENEWAL,
            })
            .collect()
    }

    fn meta(hk: &HashKey) -> SnapshotMeta {
        SnapshotMeta {
            version: 7,
            published_at: 1_790_000_000,
            hash_key_id: hk.id(),
        }
    }

    #[test]
    fn round_trip_finds_every_record_and_nothing_else() {
        let hk = HashKey::generate();
        let sk = generate_signing_key();
        for n in [0u32, 1, 2, 3, 100, 5000] {
            let recs = records(n, &hk);
            let bytes = encode(recs.clone(), meta(&hk), &sk).expect("encode");
            let snap = Snapshot::from_bytes(bytes, &[sk.verifying_key()], Some(&hk)).expect("load");
            assert_eq!(snap.len(), n as usize);
            assert_eq!(snap.header().meta, meta(&hk));
            for r in &recs {
                assert_eq!(snap.get(&r.key), Some(*r));
            }
            assert_eq!(snap.get(&DocKey::of(&hk, "M00000001")), None);
            assert_eq!(snap.iter().count(), n as usize);
        }
    }

    #[test]
    fn file_load_matches_memory_load_and_b3sum() {
        let hk = HashKey::generate();
        let sk = generate_signing_key();
        let bytes = encode(records(3000, &hk), meta(&hk), &sk).expect("encode");
        let expected = blake3::hash(&bytes);
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("s");
        std::fs::write(&p, &bytes).expect("write");
        let snap = Snapshot::load(&p, &[sk.verifying_key()], Some(&hk)).expect("load");
        assert_eq!(snap.content_hash(), expected);
    }

    /// An image of several feed pieces, paced or not, is the snapshot the file holds; a
    /// flipped bit in any piece is refused.
    #[test]
    fn an_image_in_memory_or_a_file_read_paced_loads_alike() {
        let hk = HashKey::generate();
        let sk = generate_signing_key();
        let recs = records(20_000, &hk);
        let bytes = encode(recs.clone(), meta(&hk), &sk).expect("encode");
        assert!(bytes.len() > 2 * FEED_CHUNK);
        let named = blake3::hash(&bytes).to_hex();
        let trusted = [sk.verifying_key()];
        let pace = Pace {
            burst: std::time::Duration::ZERO,
            rest: 1,
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("object");
        let size = bytes.len() as u64;
        let load = |image: Vec<u8>, from_file: Option<Option<Pace>>| match from_file {
            None => Snapshot::from_bytes_kind(
                image,
                FileKind::Snapshot,
                Some(named.as_str()),
                &trusted,
                Some(&hk),
            ),
            Some(pace) => {
                std::fs::write(&path, &image).expect("write");
                Snapshot::load_kind(
                    &path,
                    FileKind::Snapshot,
                    Some((named.as_str(), size)),
                    &trusted,
                    Some(&hk),
                    pace,
                )
            }
        };
        for from_file in [None, Some(None), Some(Some(pace))] {
            let snap = load(bytes.clone(), from_file).expect("load");
            assert_eq!(snap.content_hash(), blake3::hash(&bytes));
            assert!(recs.iter().all(|r| snap.get(&r.key) == Some(*r)));
            for pos in [
                HEADER_LEN + 5,
                FEED_CHUNK + 3,
                bytes.len() - TRAILER_LEN - 2,
            ] {
                let mut bad = bytes.clone();
                bad[pos] ^= 0x01;
                assert!(
                    matches!(
                        load(bad, from_file),
                        Err(SnapshotError::HashMismatch { .. })
                    ),
                    "flip at {pos} accepted"
                );
            }
        }
        // A file of another size than named is not read.
        std::fs::write(&path, &bytes[..bytes.len() - 1]).expect("write");
        let short = Snapshot::load_kind(
            &path,
            FileKind::Snapshot,
            Some((named.as_str(), size)),
            &trusted,
            Some(&hk),
            None,
        );
        assert!(matches!(short, Err(SnapshotError::Io { .. })), "{short:?}");
    }

    #[test]
    fn tampering_is_refused() {
        let hk = HashKey::generate();
        let sk = generate_signing_key();
        let good = encode(records(200, &hk), meta(&hk), &sk).expect("encode");
        let trusted = [sk.verifying_key()];

        // A flipped bit anywhere: header, a record, the signature.
        for pos in [
            20,
            HEADER_LEN + 5,
            HEADER_LEN + 32 * 100 + 28,
            good.len() - 3,
        ] {
            let mut bad = good.clone();
            bad[pos] ^= 0x01;
            assert!(
                Snapshot::from_bytes(bad, &trusted, Some(&hk)).is_err(),
                "flip at {pos} accepted"
            );
        }
        // Truncated by one record, and by one byte.
        for cut in [RECORD_LEN, 1] {
            let bad = good[..good.len() - cut].to_vec();
            assert!(matches!(
                Snapshot::from_bytes(bad, &trusted, Some(&hk)),
                Err(SnapshotError::Size { .. })
            ));
        }
        // Wrong publisher key.
        let other = generate_signing_key();
        assert!(matches!(
            Snapshot::from_bytes(good.clone(), &[other.verifying_key()], Some(&hk)),
            Err(SnapshotError::UnknownKey { .. })
        ));
        // Same key id cannot be forged, but a signature by another key under our id fails.
        let mut forged = encode(records(200, &hk), meta(&hk), &other).expect("encode");
        forged[56..64].copy_from_slice(&verifying_key_id(&sk.verifying_key()).0);
        assert!(matches!(
            Snapshot::from_bytes(forged, &trusted, Some(&hk)),
            Err(SnapshotError::BadSignature { .. })
        ));
        // Wrong hashing key.
        assert!(matches!(
            Snapshot::from_bytes(good.clone(), &trusted, Some(&HashKey::generate())),
            Err(SnapshotError::HashKeyMismatch { .. })
        ));
        assert!(Snapshot::from_bytes(good, &trusted, Some(&hk)).is_ok());
    }

    #[test]
    fn duplicate_keys_cannot_be_published() {
        let hk = HashKey::generate();
        let mut recs = records(3, &hk);
        recs.push(recs[0]);
        assert!(encode(recs, meta(&hk), &generate_signing_key()).is_err());
    }
}
