//! Loading a snapshot or delta: read (from a file or memory), hashed and indexed in one
//! pass, each chunk while it is still in cache, so both digests and the index cost one
//! read; nothing is trusted until the signature has verified at the end.

use std::io::Read;
use std::path::Path;

use ed25519_dalek::VerifyingKey;

use super::files::open_object;
use super::header::{FileKind, SnapshotHeader, HEADER_LEN, TRAILER_LEN};
use super::index::{IndexBuilder, Snapshot};
use super::pace::io_step;
use super::verify::{check_header, check_named, check_signature};
use super::{SizeError, SnapshotError};
use crate::key_files::HashKey;
use crate::pace::{Pace, Pacer};

/// An image in memory is hashed and indexed this much at a time: small enough to stay in
/// a core's L2 between the two passes, and to pace in steps well under a millisecond.
const FEED_CHUNK: usize = 256 << 10;
/// How errors name an image held in memory (fetched, not read from a file).
pub(super) const MEMORY: &str = "<memory>";

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
            let end = (filled + io_step(&pacer)).min(len);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::document::{DocumentKind, Region};
    use crate::key_files::generate_signing_key;
    use crate::key_files::verifying_key_id;
    use crate::snapshot::RecordStatus;
    use crate::snapshot::{encode, DocKey, Record, SnapshotMeta, RECORD_LEN};

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
            rest: std::time::Duration::ZERO,
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
