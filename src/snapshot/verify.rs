//! A file checked against what it claims: the name it was fetched by, its header's kind
//! and length, and a trusted publisher's signature.

use ed25519_dalek::{Signature, Verifier, VerifyingKey};

use super::header::{signed_message, FileKind, SnapshotHeader, TRAILER_LEN};
use super::{SizeError, SnapshotError};
use crate::key_files::verifying_key_id;

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
