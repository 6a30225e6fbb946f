//! Snapshot file: `header (96) ‖ records (N × 32, sorted by key) ‖ signature (64)`.
//!
//! The signature covers `"permitgate snapshot v1\0" ‖ BLAKE3(header ‖ records)`; the content
//! hash the manifest names is BLAKE3 of the whole file (what `b3sum` prints). This module is
//! the header's codec; verify.rs checks a file against its header and signature, ingest.rs
//! loads one, index.rs answers lookups from it, stream.rs writes and scans files.

use super::record::Record;
use super::{Corruption, SizeError, SnapshotError};
use crate::key_files::KeyId;

pub const HEADER_LEN: usize = 96;
pub const RECORD_LEN: usize = Record::LEN;
pub const TRAILER_LEN: usize = 64;

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
    pub(super) fn file_len(&self) -> Option<u64> {
        self.documents
            .checked_mul(RECORD_LEN as u64)?
            .checked_add((HEADER_LEN + TRAILER_LEN) as u64)
    }
}

/// What a publisher signs: the kind's context and the body's digest.
pub(super) fn signed_message(kind: FileKind, digest: &blake3::Hash) -> Vec<u8> {
    let context = kind.context();
    let mut m = Vec::with_capacity(context.len() + 32);
    m.extend_from_slice(context);
    m.extend_from_slice(digest.as_bytes());
    m
}
