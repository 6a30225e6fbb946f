//! The hot path: a verified snapshot in memory and its lookup index, the record array
//! itself plus a bucket directory built from the sorted keys, so a lookup is one directory
//! read and (on average) one record comparison. [`IndexBuilder`] builds the directory while
//! the records stream in (ingest.rs).

use super::header::{SnapshotHeader, HEADER_LEN, RECORD_LEN, TRAILER_LEN};
use super::record::{DocKey, Record};
use super::{Corruption, SizeError};

/// A verified, loaded snapshot with its lookup index. Immutable.
pub struct Snapshot {
    pub(super) header: SnapshotHeader,
    pub(super) content_hash: blake3::Hash,
    /// The whole file; records live at `HEADER_LEN..HEADER_LEN + documents * 32`.
    pub(super) data: Box<[u8]>,
    /// `dir[b]..dir[b + 1]` are the records whose key prefix falls in bucket `b`.
    pub(super) dir: Box<[u32]>,
    pub(super) shift: u32,
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

/// Builds the bucket directory while records stream in: checks order, uniqueness and the
/// enum bytes, and counts the records of each bucket of key prefixes. About one bucket per
/// document keeps buckets short.
pub(super) struct IndexBuilder {
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
    pub(super) fn new(expected: usize, removals: bool) -> Result<IndexBuilder, Corruption> {
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
    pub(super) fn extend(&mut self, records: &[u8]) -> Result<(), Corruption> {
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

    pub(super) fn finish(mut self) -> Result<(Box<[u32]>, u32), SizeError> {
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
