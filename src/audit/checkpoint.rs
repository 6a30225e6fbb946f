//! Signed checkpoints of the audit trail, kept outside its directory.
//!
//! The seals chain the log's batches, but with a public hashing context: anyone who can
//! write the log can rewrite it consistently (remove a record and seal everything again,
//! append a forged batch, drop the last batches) and `audit verify` says "intact". So
//! every `checkpoint_interval_ms` the writer signs where the chain stands (the last
//! sealed record's number, that seal's hash, the time) with a key of the gateway's and
//! writes it, once (create-new; never replaced), to `checkpoint_dir`: a directory on
//! another volume or host, or a mounted write-once (object-locked) bucket. `audit verify
//! --checkpoints` then finds every checkpoint's seal in the log: a rewrite or a truncation
//! up to the last checkpoint is caught; what came after it is reported as not covered.
//!
//! File `checkpoint-<seq, 20 digits>.json`:
//! `{"format":1,"key_id":"<16 hex>","seq":N,"seal":"<64 hex>","time_ms":T,"sig":"<128 hex>"}`,
//! the signature over `"permitgate audit checkpoint v1\0"`, then seq (u64 LE), the seal's
//! 32 bytes, and time_ms (i64 LE).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};

use crate::key_files::verifying_key_id;

const CONTEXT: &[u8] = b"permitgate audit checkpoint v1\0";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub seq: u64,
    pub seal: [u8; 32],
    pub time_ms: i64,
}

#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    format: u32,
    key_id: String,
    seq: u64,
    seal: String,
    time_ms: i64,
    sig: String,
}

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("cannot read or write {}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} is not a checkpoint: {reason}", path.display())]
    Format { path: PathBuf, reason: String },
    #[error("{} is signed by key {key_id}, not the one given", path.display())]
    UnknownKey { path: PathBuf, key_id: String },
    #[error("{}: the signature does not verify (altered)", path.display())]
    BadSignature { path: PathBuf },
    #[error("the log ends at record {last}, but the checkpoint of {time} says it held {seq}: records removed from its end")]
    Truncated { last: u64, seq: u64, time: String },
    #[error("the log has no seal after record {seq} with the hash the checkpoint of {time} signed: the log was rewritten up to there")]
    Rewritten { seq: u64, time: String },
}

fn message(c: &Checkpoint) -> Vec<u8> {
    let mut m = Vec::with_capacity(CONTEXT.len() + 48);
    m.extend_from_slice(CONTEXT);
    m.extend_from_slice(&c.seq.to_le_bytes());
    m.extend_from_slice(&c.seal);
    m.extend_from_slice(&c.time_ms.to_le_bytes());
    m
}

impl Checkpoint {
    fn file_name(&self) -> String {
        format!("checkpoint-{:020}.json", self.seq)
    }

    /// Signs and writes the checkpoint into `dir`, once: an existing file of the same
    /// record is left as it is (never replaced). Synced before it returns.
    pub fn write(&self, dir: &Path, key: &SigningKey) -> Result<(), CheckpointError> {
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| CheckpointError::Io { path, source }
        };
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let sig = key.sign(&message(self));
        let file = File {
            format: 1,
            key_id: verifying_key_id(&key.verifying_key()).to_string(),
            seq: self.seq,
            seal: hex::encode(self.seal),
            time_ms: self.time_ms,
            sig: hex::encode(sig.to_bytes()),
        };
        let path = dir.join(self.file_name());
        let mut text = serde_json::to_vec(&file).map_err(|e| CheckpointError::Format {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        text.push(b'\n');
        let mut f = match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
        {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(()),
            Err(e) => return Err(io(&path)(e)),
        };
        f.write_all(&text).map_err(io(&path))?;
        f.sync_all().map_err(io(&path))?;
        crate::snapshot::sync_dir(dir);
        Ok(())
    }
}

/// The checkpoints in `dir`, each signature checked with `key`, by record number.
pub fn load(dir: &Path, key: &VerifyingKey) -> Result<Vec<Checkpoint>, CheckpointError> {
    let entries = std::fs::read_dir(dir).map_err(|source| CheckpointError::Io {
        path: dir.to_owned(),
        source,
    })?;
    let want_id = verifying_key_id(key).to_string();
    let mut out = BTreeMap::new();
    for path in entries.filter_map(|e| e.ok().map(|e| e.path())) {
        let named = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("checkpoint-") && n.ends_with(".json"));
        if !named {
            continue;
        }
        let bytes = std::fs::read(&path).map_err(|source| CheckpointError::Io {
            path: path.clone(),
            source,
        })?;
        let format = |reason: String| CheckpointError::Format {
            path: path.clone(),
            reason,
        };
        let f: File = serde_json::from_slice(&bytes).map_err(|e| format(e.to_string()))?;
        if f.format != 1 {
            return Err(format(format!("format {} is not known", f.format)));
        }
        if f.key_id != want_id {
            return Err(CheckpointError::UnknownKey {
                path,
                key_id: f.key_id,
            });
        }
        let mut seal = [0u8; 32];
        hex::decode_to_slice(&f.seal, &mut seal)
            .map_err(|_| format("seal is not 64 hex".into()))?;
        let mut sig = [0u8; 64];
        hex::decode_to_slice(&f.sig, &mut sig).map_err(|_| format("sig is not 128 hex".into()))?;
        let c = Checkpoint {
            seq: f.seq,
            seal,
            time_ms: f.time_ms,
        };
        key.verify(&message(&c), &Signature::from_bytes(&sig))
            .map_err(|_| CheckpointError::BadSignature { path: path.clone() })?;
        out.insert(c.seq, c);
    }
    Ok(out.into_values().collect())
}

/// How far checkpoints vouch for a log.
#[derive(Debug, PartialEq, Eq)]
pub struct Coverage {
    /// The newest checkpoint: its record number and time (RFC 3339), if any.
    pub last: Option<(u64, String)>,
    /// Records after it, which no checkpoint covers yet.
    pub after: u64,
}

fn time_of(c: &Checkpoint) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(c.time_ms) * 1_000_000)
        .map(crate::day::rfc3339)
        .unwrap_or_else(|_| c.time_ms.to_string())
}

/// Checks `checkpoints` against the seals a walk of the log found (`sealed`: the hash of
/// the seal after each record number that ends a batch) and its last record.
pub fn check(
    checkpoints: &[Checkpoint],
    sealed: &std::collections::HashMap<u64, [u8; 32]>,
    last: Option<u64>,
) -> Result<Coverage, CheckpointError> {
    let last_seq = last.unwrap_or(0);
    for c in checkpoints {
        if c.seq > last_seq {
            return Err(CheckpointError::Truncated {
                last: last_seq,
                seq: c.seq,
                time: time_of(c),
            });
        }
        if sealed.get(&c.seq) != Some(&c.seal) {
            return Err(CheckpointError::Rewritten {
                seq: c.seq,
                time: time_of(c),
            });
        }
    }
    let newest = checkpoints.last();
    Ok(Coverage {
        last: newest.map(|c| (c.seq, time_of(c))),
        after: last_seq - newest.map_or(0, |c| c.seq),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn a_checkpoint_is_written_once_and_read_back_only_with_its_key() {
        let dir = tempfile::tempdir().expect("dir");
        let key = crate::key_files::generate_signing_key();
        let c = Checkpoint {
            seq: 42,
            seal: [7; 32],
            time_ms: 1_795_000_000_000,
        };
        c.write(dir.path(), &key).expect("write");
        // Never replaced: a second write of the same record leaves the first.
        Checkpoint {
            seal: [8; 32],
            ..c.clone()
        }
        .write(dir.path(), &key)
        .expect("second write");
        assert_eq!(
            load(dir.path(), &key.verifying_key()).expect("load"),
            vec![c.clone()]
        );
        let other = crate::key_files::generate_signing_key();
        assert!(matches!(
            load(dir.path(), &other.verifying_key()),
            Err(CheckpointError::UnknownKey { .. })
        ));
        let path = dir.path().join(c.file_name());
        let text = std::fs::read_to_string(&path).expect("read");
        std::fs::write(&path, text.replace("\"seq\":42", "\"seq\":43")).expect("alter");
        assert!(matches!(
            load(dir.path(), &key.verifying_key()),
            Err(CheckpointError::BadSignature { .. })
        ));
    }

    #[test]
    fn checkpoints_catch_rewriting_and_truncation_and_count_what_is_after() {
        let c = |seq, seal| Checkpoint {
            seq,
            seal: [seal; 32],
            time_ms: 1_795_000_000_000,
        };
        let sealed: HashMap<u64, [u8; 32]> = [(10, [1; 32]), (20, [2; 32]), (30, [3; 32])].into();
        let cps = [c(10, 1), c(20, 2)];
        let cov = check(&cps, &sealed, Some(35)).expect("intact");
        assert_eq!(cov.after, 15);
        assert_eq!(cov.last.map(|l| l.0), Some(20));
        assert!(matches!(
            check(&[c(20, 9)], &sealed, Some(35)),
            Err(CheckpointError::Rewritten { seq: 20, .. })
        ));
        assert!(matches!(
            check(&[c(40, 4)], &sealed, Some(35)),
            Err(CheckpointError::Truncated {
                last: 35,
                seq: 40,
                ..
            })
        ));
        assert_eq!(check(&[], &sealed, Some(35)).expect("none").after, 35);
    }
}
