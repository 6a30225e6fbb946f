//! `permitgate audit verify DIR`: walks the chain through every file in order.
//!
//! Broken: a line that is neither a record nor a seal, a seal whose hash does not match its
//! batch's bytes (a record or the seal altered), a seal that does not cover exactly the
//! records before it, a sequence gap, or a `prev` that is not the previous seal's hash
//! (removed, inserted or reordered records or batches). Format-1 records (a hash each) are
//! checked one by one as before. Not broken, but reported: a file that ends in the middle of
//! a line, and records after a file's last seal, which is what a crash leaves (the writer
//! writes a batch and its seal at once, and ends every file with a seal); the chain resumes
//! after them. A log whose first file starts after seq 1 had older files archived; its first
//! `prev` cannot be checked here. Removing whole batches from the very end is not detectable
//! from the log alone.

use std::io;
use std::path::{Path, PathBuf};

use super::record::{self, Line};

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
    /// Files ending in a partial line, and its length in bytes.
    pub truncated: Vec<(PathBuf, usize)>,
    /// Files whose last records have no seal (a crash cut the batch), and how many.
    pub unsealed: Vec<(PathBuf, u64)>,
    /// The hash of the seal after each record asked for ([`verify_dir_at`]) that ends a
    /// batch: where checkpoints are checked.
    pub sealed: std::collections::HashMap<u64, [u8; 32]>,
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

/// Where the chain stands between lines and files.
#[derive(Default)]
pub(super) struct Chain {
    /// The last sequence number read.
    pub last_seq: Option<u64>,
    /// The hash the next seal (or format-1 record) must name as `prev`.
    pub hash: Option<[u8; 32]>,
    /// Record numbers whose seal is wanted, and the seals found for them.
    pub wanted: std::collections::HashSet<u64>,
    pub sealed: std::collections::HashMap<u64, [u8; 32]>,
}

/// Records read since the last seal of the file being walked.
struct Batch {
    first: u64,
    last: u64,
    /// Where the batch's first line starts in the file's bytes.
    start: usize,
    /// Whether records came before it (sealed or cut by a crash).
    after_records: bool,
}

/// What one file held: complete records, the unsealed ones at its end, and the length of
/// a partial last line.
#[derive(Debug, Default)]
pub(super) struct FileReport {
    pub records: u64,
    pub first_seq: Option<u64>,
    pub unsealed: u64,
    pub truncated: Option<usize>,
}

/// Walks one file's bytes on from `chain`. `Err((line, reason))` names the first broken
/// line (from 1).
pub(super) fn walk(bytes: &[u8], chain: &mut Chain) -> Result<FileReport, (usize, String)> {
    let mut report = FileReport::default();
    let mut batch: Option<Batch> = None;
    let mut at = 0;
    for (i, piece) in bytes.split_inclusive(|&b| b == b'\n').enumerate() {
        let start = at;
        at += piece.len();
        let Some(line) = piece.strip_suffix(b"\n") else {
            // Only the last piece of a file can lack its newline.
            report.truncated = Some(piece.len());
            break;
        };
        let broken = |reason: &str| (i + 1, reason.to_owned());
        let seq_follows = |seq: u64| match chain.last_seq {
            Some(last) if seq != last + 1 => Err((
                i + 1,
                format!(
                    "expected record {}, found {seq} (records removed or reordered)",
                    last + 1
                ),
            )),
            _ => Ok(()),
        };
        match record::read_line(line).map_err(|e| broken(&e.to_string()))? {
            Line::Record(seq) => {
                seq_follows(seq)?;
                match &mut batch {
                    Some(b) => b.last = seq,
                    None => {
                        batch = Some(Batch {
                            first: seq,
                            last: seq,
                            start,
                            after_records: chain.last_seq.is_some(),
                        })
                    }
                }
                report.first_seq.get_or_insert(seq);
                report.records += 1;
                chain.last_seq = Some(seq);
            }
            Line::Seal(seal) => {
                let b = batch
                    .take()
                    .ok_or_else(|| broken("a seal with no records before it"))?;
                if (seal.first, seal.last) != (b.first, b.last) {
                    return Err(broken(&format!(
                        "the seal covers records {}..{}, the batch before it is {}..{} (records removed or inserted)",
                        seal.first, seal.last, b.first, b.last
                    )));
                }
                let expected_prev = match chain.hash {
                    Some(h) => Some(h),
                    // The first seal (the records before it, if any, were never sealed).
                    None if b.first == 1 || b.after_records => Some(record::GENESIS),
                    // Earlier files archived: this first prev cannot be checked.
                    None => None,
                };
                if expected_prev.is_some_and(|p| p != seal.prev) {
                    return Err(broken(
                        "prev is not the previous seal's hash (batches removed or replaced)",
                    ));
                }
                if record::seal_hash(&bytes[b.start..start + seal.prefix_len]) != seal.hash {
                    return Err(broken(&format!(
                        "the seal's hash does not match records {}..{} (a record or the seal altered)",
                        b.first, b.last
                    )));
                }
                chain.hash = Some(seal.hash);
                if chain.wanted.contains(&seal.last) {
                    chain.sealed.insert(seal.last, seal.hash);
                }
            }
            Line::V1(d) => {
                if batch.is_some() {
                    return Err(broken("a format-1 record among unsealed records"));
                }
                seq_follows(d.seq)?;
                let expected_prev = match chain.hash {
                    Some(h) => Some(h),
                    None if d.seq == 1 => Some(record::GENESIS),
                    None => None,
                };
                if expected_prev.is_some_and(|p| p != d.prev) {
                    return Err(broken(if chain.hash.is_none() {
                        "the first record does not start the chain"
                    } else {
                        "prev is not the previous record's hash (records removed or replaced)"
                    }));
                }
                report.first_seq.get_or_insert(d.seq);
                report.records += 1;
                chain.last_seq = Some(d.seq);
                chain.hash = Some(d.hash);
            }
        }
    }
    // A batch never spans files: records after a file's last seal were cut by a crash.
    report.unsealed = batch.map_or(0, |b| b.last - b.first + 1);
    Ok(report)
}

pub fn verify_dir(dir: &Path) -> Result<Report, VerifyError> {
    verify_dir_at(dir, std::collections::HashSet::new())
}

/// [`verify_dir`], noting the seal that ends the batch at each of `wanted` (record
/// numbers), where there is one.
pub fn verify_dir_at(
    dir: &Path,
    wanted: std::collections::HashSet<u64>,
) -> Result<Report, VerifyError> {
    let files = log_files(dir).map_err(|source| VerifyError::Io {
        path: dir.to_owned(),
        source,
    })?;
    let mut report = Report {
        files: files.len(),
        ..Report::default()
    };
    let mut chain = Chain {
        wanted,
        ..Chain::default()
    };
    for path in &files {
        let bytes = std::fs::read(path).map_err(|source| VerifyError::Io {
            path: path.clone(),
            source,
        })?;
        let file = walk(&bytes, &mut chain).map_err(|(line, reason)| VerifyError::Broken {
            path: path.clone(),
            line,
            reason,
        })?;
        if let Some(first) = file.first_seq {
            report.first_seq.get_or_insert(first);
        }
        report.records += file.records;
        if let Some(len) = file.truncated {
            report.truncated.push((path.clone(), len));
        }
        if file.unsealed > 0 {
            report.unsealed.push((path.clone(), file.unsealed));
        }
    }
    report.last_seq = chain.last_seq;
    report.sealed = chain.sealed;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::record::{encode, seal, Answered};

    fn batch(first: u64, last: u64, prev: &[u8; 32], out: &mut Vec<u8>) -> [u8; 32] {
        let start = out.len();
        for seq in first..=last {
            encode(
                &Answered {
                    time_ns: 1_795_000_000_000_000_000,
                    request_id: http::HeaderValue::from_static("r"),
                    partner: Some("bank".into()),
                    route: "link_check",
                    outcome: "ok",
                    documents: smallvec::smallvec![[seq as u8; 16]],
                },
                seq,
                out,
            );
        }
        seal(first, last, prev, start, out)
    }

    #[test]
    fn any_altered_byte_of_a_sealed_batch_is_caught() {
        let mut log = Vec::new();
        let h = batch(1, 3, &record::GENESIS, &mut log);
        batch(4, 5, &h, &mut log);
        let mut chain = Chain::default();
        let r = walk(&log, &mut chain).expect("intact");
        assert_eq!((r.records, r.unsealed, chain.last_seq), (5, 0, Some(5)));
        for i in 0..log.len() {
            let mut bad = log.clone();
            bad[i] ^= 0x01;
            let mut chain = Chain::default();
            let outcome = walk(&bad, &mut chain);
            // A flipped newline may leave a partial or unsealed tail instead: never a
            // silent pass with all five records sealed.
            assert!(
                outcome.as_ref().map_or(true, |r| r.unsealed > 0
                    || r.truncated.is_some()
                    || r.records < 5),
                "flip at byte {i} passed"
            );
        }
    }

    #[test]
    fn a_seal_must_cover_exactly_its_batch_and_name_the_previous_seal() {
        let mut first = Vec::new();
        let h = batch(1, 2, &record::GENESIS, &mut first);
        let mut wrong_prev = first.clone();
        batch(3, 4, &[7; 32], &mut wrong_prev);
        let e = walk(&wrong_prev, &mut Chain::default()).expect_err("wrong prev");
        assert!(e.1.contains("previous seal"), "{e:?}");
        let mut skipped = first.clone();
        batch(4, 5, &h, &mut skipped);
        let e = walk(&skipped, &mut Chain::default()).expect_err("gap");
        assert!(e.1.contains("expected record 3"), "{e:?}");
        let mut unsealed = first;
        let cut = unsealed.len();
        batch(3, 4, &h, &mut unsealed);
        let last_line = unsealed[..unsealed.len() - 1]
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(cut, |p| p + 1);
        unsealed.truncate(last_line);
        let r = walk(&unsealed, &mut Chain::default()).expect("a cut batch is not fatal");
        assert_eq!((r.records, r.unsealed), (4, 2));
    }
}
