//! Audit records as lines of the log, and the hash chain through them.
//!
//! A record is `{"seq":…,"time":…,"request_id":…,"partner":…,"route":…,"outcome":…,
//! "documents":[…]}`. The writer hashes a batch of records as a unit: after the batch's
//! lines comes a seal, `{"seal":{"first":…,"last":…},"prev":"<64 hex>","hash":"<64 hex>"}`,
//! whose `hash` is BLAKE3 (derive-key mode, [`SEAL_CONTEXT`]) of the bytes of the batch's
//! record lines (newlines included) followed by the seal's own bytes up to, not including,
//! `,"hash":`; `prev` is the previous seal's `hash` (64 zeros before the first). Hashing the
//! bytes as written, rather than a re-serialisation, leaves no canonical-form question
//! open; hashing a batch at once lets BLAKE3 work on many chunks in parallel, where a hash
//! per record of 200 bytes cost most of the writer's time.
//!
//! Format 1 (logs written before the seals) had no seals and a `prev` and `hash` in every
//! record (BLAKE3 derive-key [`CONTEXT`] of the line up to `,"hash":`); it is still read,
//! and a log may go on from format-1 records to sealed batches (the first seal's `prev` is
//! the last format-1 record's `hash`).

use serde::Deserialize;

/// Format 1: a hash per record.
pub const CONTEXT: &str = "permitgate 2026 audit record v1";
/// Format 2: a hash per batch, in its seal.
pub const SEAL_CONTEXT: &str = "permitgate 2026 audit seal v2";
pub const GENESIS: [u8; 32] = [0; 32];
/// `,"hash":"` + 64 hex digits + `"}`.
const HASH_SUFFIX_LEN: usize = 9 + 64 + 2;

/// What the request path knows of one answered request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answered {
    /// Unix nanoseconds, from the gateway's clock.
    pub time_ns: i128,
    /// Shared with the response header: no copy per request.
    pub request_id: http::HeaderValue,
    /// The identity the client certificate claimed (`None`: it claimed none).
    pub partner: Option<std::sync::Arc<str>>,
    pub route: &'static str,
    pub outcome: &'static str,
    /// Keyed hashes (the snapshot's document keys) of the numbers asked about.
    pub documents: Documents,
}

/// A check names one or two documents; a batch many. Inline up to two: no allocation on
/// the request path (and no free on the writer's thread) for single checks.
pub type Documents = smallvec::SmallVec<[[u8; 16]; 2]>;

/// A record's fields as read back (written by [`encode`] in this order), nothing else.
#[derive(Deserialize, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Record {
    pub seq: u64,
    pub time: String,
    // Owned: a partner id from a certificate may need JSON escapes, which a borrowed
    // string cannot hold.
    pub request_id: String,
    pub partner: String,
    pub route: String,
    pub outcome: String,
    pub documents: Vec<String>,
}

/// What is read of a format-1 record's body (its bytes before `,"hash":`, which its hash
/// has vouched for): the rest are [`Record`]'s fields.
#[derive(Deserialize)]
struct Body {
    seq: u64,
    prev: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SealBody {
    seal: Range,
    prev: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Range {
    first: u64,
    last: u64,
}

/// The hash of a format-1 line whose bytes before `,"hash":` are `prefix`.
pub fn hash_of(prefix: &[u8]) -> [u8; 32] {
    let mut h = blake3::Hasher::new_derive_key(CONTEXT);
    h.update(prefix);
    *h.finalize().as_bytes()
}

/// The hash of a seal: `sealed` is the batch's record lines and the seal's bytes before
/// `,"hash":`, contiguous as written.
pub fn seal_hash(sealed: &[u8]) -> [u8; 32] {
    let mut h = blake3::Hasher::new_derive_key(SEAL_CONTEXT);
    h.update(sealed);
    *h.finalize().as_bytes()
}

/// Appends the line for `entry` (with its newline) to `out`.
pub fn encode(entry: &Answered, seq: u64, out: &mut Vec<u8>) {
    // Written field by field into `out` (the writer thread's batch buffer): no allocation
    // per record. Field order and spelling are [`Record`]'s, which reads it back.
    let time = time::OffsetDateTime::from_unix_timestamp_nanos(entry.time_ns)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    out.extend_from_slice(b"{\"seq\":");
    // Writing into a Vec cannot fail.
    let _ = std::io::Write::write_fmt(out, format_args!("{seq}"));
    out.extend_from_slice(b",\"time\":\"");
    crate::day::write_rfc3339(out, time);
    out.extend_from_slice(b"\",\"request_id\":");
    text(out, entry.request_id.to_str().unwrap_or_default());
    out.extend_from_slice(b",\"partner\":");
    text(out, entry.partner.as_deref().unwrap_or("-"));
    out.extend_from_slice(b",\"route\":");
    text(out, entry.route);
    out.extend_from_slice(b",\"outcome\":");
    text(out, entry.outcome);
    out.extend_from_slice(b",\"documents\":[");
    for (i, d) in entry.documents.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        push_hex(out, d);
    }
    out.extend_from_slice(b"]}\n");
}

/// Seals the batch of records `first..=last`, whose lines are `out[records_start..]`:
/// appends the seal line and returns its hash (the next seal's `prev`).
pub fn seal(
    first: u64,
    last: u64,
    prev: &[u8; 32],
    records_start: usize,
    out: &mut Vec<u8>,
) -> [u8; 32] {
    let _ = std::io::Write::write_fmt(
        out,
        format_args!("{{\"seal\":{{\"first\":{first},\"last\":{last}}},\"prev\":"),
    );
    push_hex(out, prev);
    let hash = seal_hash(&out[records_start..]);
    out.extend_from_slice(b",\"hash\":");
    push_hex(out, &hash);
    out.extend_from_slice(b"}\n");
    hash
}

/// A string as JSON: as it is when nothing in it needs escaping (request ids, routes and
/// outcomes never do; partner ids rarely), else escaped by serde_json.
fn text(out: &mut Vec<u8>, s: &str) {
    if s.bytes()
        .all(|b| b >= 0x20 && b != b'"' && b != b'\\' && b < 0x7f)
    {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else {
        // Writing a string into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, s);
    }
}

/// `"<hex>"`.
fn push_hex(out: &mut Vec<u8>, bytes: &[u8]) {
    out.push(b'"');
    let at = out.len();
    out.resize(at + 2 * bytes.len(), 0);
    // The slice is exactly twice the input: this cannot fail.
    let _ = hex::encode_to_slice(bytes, &mut out[at..]);
    out.push(b'"');
}

/// A format-1 line read back: its sequence number, `prev`, and its `hash` (checked against
/// its bytes).
#[derive(Debug, PartialEq, Eq)]
pub struct Decoded {
    pub seq: u64,
    pub prev: [u8; 32],
    pub hash: [u8; 32],
}

/// A seal read back; its hash is checked against the batch by the reader, who has the
/// batch's bytes.
#[derive(Debug, PartialEq, Eq)]
pub struct Seal {
    pub first: u64,
    pub last: u64,
    pub prev: [u8; 32],
    pub hash: [u8; 32],
    /// The seal line's bytes before `,"hash":`: what its hash covers after the records.
    pub prefix_len: usize,
}

/// One line of a log.
#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    /// A format-2 record: its sequence number (its bytes are checked by its batch's seal).
    Record(u64),
    Seal(Seal),
    /// A format-1 record, its own hash checked.
    V1(Decoded),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LineError {
    #[error("not a record line")]
    Shape,
    #[error("hash does not match the record (altered)")]
    Hash,
}

/// The `,"hash":"…"}` tail of a format-1 record or a seal, split off: (prefix, hash).
fn split_hash(line: &[u8]) -> Option<(&[u8], [u8; 32])> {
    if line.len() <= HASH_SUFFIX_LEN || !line.starts_with(b"{") {
        return None;
    }
    let (prefix, suffix) = line.split_at(line.len() - HASH_SUFFIX_LEN);
    let hex_hash = suffix
        .strip_prefix(b",\"hash\":\"")
        .and_then(|s| s.strip_suffix(b"\"}"))?;
    let mut hash = [0u8; 32];
    hex::decode_to_slice(hex_hash, &mut hash).ok()?;
    Some((prefix, hash))
}

fn hex32(text: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(text.as_bytes(), &mut out).ok()?;
    Some(out)
}

/// Reads one line (without its newline) of either format.
pub fn read_line(line: &[u8]) -> Result<Line, LineError> {
    if line.starts_with(b"{\"seal\":") {
        let (prefix, hash) = split_hash(line).ok_or(LineError::Shape)?;
        let mut object = prefix.to_vec();
        object.push(b'}');
        let body: SealBody = serde_json::from_slice(&object).map_err(|_| LineError::Shape)?;
        let prev = hex32(&body.prev).ok_or(LineError::Shape)?;
        return Ok(Line::Seal(Seal {
            first: body.seal.first,
            last: body.seal.last,
            prev,
            hash,
            prefix_len: prefix.len(),
        }));
    }
    // Only a format-1 record ends in its hash; a format-2 record ends in `]}`.
    if split_hash(line).is_some() {
        return decode(line).map(Line::V1);
    }
    let r: Record = serde_json::from_slice(line).map_err(|_| LineError::Shape)?;
    Ok(Line::Record(r.seq))
}

/// Checks one format-1 line (without its newline) against its own hash.
pub fn decode(line: &[u8]) -> Result<Decoded, LineError> {
    let (prefix, hash) = split_hash(line).ok_or(LineError::Shape)?;
    if hash_of(prefix) != hash {
        return Err(LineError::Hash);
    }
    let mut object = prefix.to_vec();
    object.push(b'}');
    let body: Body = serde_json::from_slice(&object).map_err(|_| LineError::Shape)?;
    let prev = hex32(&body.prev).ok_or(LineError::Shape)?;
    Ok(Decoded {
        seq: body.seq,
        prev,
        hash,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> Answered {
        Answered {
            time_ns: 1_795_000_000_123_000_000,
            request_id: http::HeaderValue::from_static("req-1"),
            partner: Some("bank".into()),
            route: "link_check",
            outcome: "ok",
            documents: smallvec::smallvec![[0xab; 16], [0x01; 16]],
        }
    }

    #[test]
    fn a_record_and_its_seal_read_back() {
        let mut out = Vec::new();
        encode(&entry(), 7, &mut out);
        encode(&entry(), 8, &mut out);
        let records = out.len();
        let hash = seal(7, 8, &[9; 32], 0, &mut out);
        let text = std::str::from_utf8(&out).expect("utf8");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(
            lines[0].contains("\"documents\":[\"abababababababababababababababab\""),
            "{text}"
        );
        let second = time::OffsetDateTime::from_unix_timestamp(1_795_000_000).expect("time");
        let time = format!("\"time\":\"{}\"", crate::day::rfc3339(second));
        assert!(lines[0].contains(&time), "{text}");
        for line in &lines {
            serde_json::from_str::<serde_json::Value>(line).expect("every line is JSON");
        }
        assert_eq!(read_line(lines[0].as_bytes()), Ok(Line::Record(7)));
        assert_eq!(read_line(lines[1].as_bytes()), Ok(Line::Record(8)));
        let Ok(Line::Seal(s)) = read_line(lines[2].as_bytes()) else {
            panic!("a seal: {}", lines[2]);
        };
        assert_eq!((s.first, s.last, s.prev, s.hash), (7, 8, [9; 32], hash));
        let covered = &out[..records + s.prefix_len];
        assert_eq!(seal_hash(covered), hash);
    }

    #[test]
    fn a_partner_id_that_needs_escaping_reads_back() {
        let mut e = entry();
        e.partner = Some("CN \"quoted\" \\ back".into());
        let mut out = Vec::new();
        encode(&e, 3, &mut out);
        let line = &out[..out.len() - 1];
        assert_eq!(read_line(line), Ok(Line::Record(3)));
        let r: Record = serde_json::from_slice(line).expect("record");
        assert_eq!(r.partner, "CN \"quoted\" \\ back");
    }

    /// A format-1 line (as logs written before the seals hold): its own hash is checked.
    #[test]
    fn format_1_records_are_still_read() {
        let prefix = br#"{"seq":1,"time":"2026-11-25T08:00:00Z","request_id":"r","partner":"bank","route":"link_check","outcome":"ok","documents":[],"prev":"0000000000000000000000000000000000000000000000000000000000000000""#;
        let hash = hash_of(prefix);
        let mut line = prefix.to_vec();
        line.extend_from_slice(b",\"hash\":\"");
        line.extend_from_slice(hex::encode(hash).as_bytes());
        line.extend_from_slice(b"\"}");
        assert_eq!(
            read_line(&line),
            Ok(Line::V1(Decoded {
                seq: 1,
                prev: GENESIS,
                hash
            }))
        );
        for i in 0..line.len() {
            let mut bad = line.clone();
            bad[i] ^= 0x01;
            assert!(
                !matches!(read_line(&bad), Ok(Line::V1(_))),
                "flip at byte {i} passed as format 1"
            );
        }
    }
}
