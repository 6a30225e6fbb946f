//! `permitgate audit verify DIR`: walks the chain through every file in order.
//!
//! Broken: a line that is not a record, a record whose hash does not match its bytes
//! (altered), a sequence gap or a `prev` that is not the previous record's hash (removed,
//! inserted or reordered records). Not broken, but reported: a file that ends in the
//! middle of a record, which is what a crash leaves; the chain resumes after it. A log whose
//! first file starts after seq 1 had older files archived; its first `prev` cannot be
//! checked here. Removing records from the very end is not detectable from the log alone.

use std::io;
use std::path::{Path, PathBuf};

use super::record;

/// The log's files, in chain order (their names sort that way).
pub fn log_files(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("audit-") && n.ends_with(".log"))
        })
        .collect();
    files.sort();
    Ok(files)
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Report {
    pub files: usize,
    pub records: u64,
    pub first_seq: Option<u64>,
    pub last_seq: Option<u64>,
    /// Files ending in a partial record, and its length in bytes.
    pub truncated: Vec<(PathBuf, usize)>,
}

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("cannot read {}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("{path} line {line}: {reason}")]
    Broken {
        path: PathBuf,
        line: usize,
        reason: String,
    },
}

pub fn verify_dir(dir: &Path) -> Result<Report, VerifyError> {
    let files = log_files(dir).map_err(|source| VerifyError::Io {
        path: dir.to_owned(),
        source,
    })?;
    let mut report = Report {
        files: files.len(),
        ..Report::default()
    };
    let mut last: Option<(u64, [u8; 32])> = None;
    for path in &files {
        let bytes = std::fs::read(path).map_err(|source| VerifyError::Io {
            path: path.clone(),
            source,
        })?;
        let lines = bytes.split_inclusive(|&b| b == b'\n').enumerate();
        for (i, line) in lines {
            let broken = |reason: String| VerifyError::Broken {
                path: path.clone(),
                line: i + 1,
                reason,
            };
            let Some(line) = line.strip_suffix(b"\n") else {
                // Only the last piece of a file can lack its newline.
                report.truncated.push((path.clone(), line.len()));
                break;
            };
            let d = record::decode(line).map_err(|e| broken(e.to_string()))?;
            match last {
                None if d.seq == 1 && d.prev != record::GENESIS => {
                    return Err(broken("the first record does not start the chain".into()))
                }
                Some((seq, _)) if d.seq != seq + 1 => {
                    return Err(broken(format!(
                        "expected record {}, found {} (records removed or reordered)",
                        seq + 1,
                        d.seq
                    )))
                }
                Some((_, hash)) if d.prev != hash => {
                    return Err(broken(
                        "prev is not the previous record's hash (records removed or replaced)"
                            .into(),
                    ))
                }
                _ => {}
            }
            report.first_seq.get_or_insert(d.seq);
            report.last_seq = Some(d.seq);
            report.records += 1;
            last = Some((d.seq, d.hash));
        }
    }
    Ok(report)
}
