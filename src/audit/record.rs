//! One audit record as a line of the log, and the hash chain through the lines.
//!
//! A line is `{"seq":…,"time":…,"request_id":…,"partner":…,"route":…,"outcome":…,
//! "documents":[…],"prev":"<64 hex>","hash":"<64 hex>"}`. `hash` is BLAKE3 (derive-key
//! mode, [`CONTEXT`]) of the line's bytes up to, not including, `,"hash":`; `prev` is the
//! previous record's `hash` (64 zeros for the first record ever). Hashing the bytes as
//! written, rather than a re-serialisation, leaves no canonical-form question open.

use serde::Deserialize;

pub const CONTEXT: &str = "permitgate 2026 audit record v1";
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
    pub documents: Vec<[u8; 16]>,
}

/// A line as read back (written by [`encode`] in this field order).
#[derive(Deserialize, Debug, PartialEq, Eq)]
pub struct Body {
    pub seq: u64,
    pub time: String,
    // Owned: a partner id from a certificate may need JSON escapes, which a borrowed
    // string cannot hold.
    pub request_id: String,
    pub partner: String,
    pub route: String,
    pub outcome: String,
    pub documents: Vec<String>,
    pub prev: String,
}

/// The hash of a line whose bytes before `,"hash":` are `prefix`.
pub fn hash_of(prefix: &[u8]) -> [u8; 32] {
    let mut h = blake3::Hasher::new_derive_key(CONTEXT);
    h.update(prefix);
    *h.finalize().as_bytes()
}

/// Appends the line for `entry` (with its newline) to `out`; returns its hash.
pub fn encode(entry: &Answered, seq: u64, prev: &[u8; 32], out: &mut Vec<u8>) -> [u8; 32] {
    // Written field by field into `out` (the writer thread's batch buffer): no allocation
    // per record. Field order and spelling are [`Body`]'s, which reads it back.
    let time = time::OffsetDateTime::from_unix_timestamp_nanos(entry.time_ns)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let start = out.len();
    let text = |out: &mut Vec<u8>, s: &str| {
        // Escaped as JSON; writing a string into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, s);
    };
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
    out.extend_from_slice(b"],\"prev\":");
    push_hex(out, prev);
    let hash = hash_of(&out[start..]);
    out.extend_from_slice(b",\"hash\":");
    push_hex(out, &hash);
    out.extend_from_slice(b"}\n");
    hash
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

/// A line read back: its sequence number, `prev`, and whether `hash` matches its bytes.
#[derive(Debug, PartialEq, Eq)]
pub struct Decoded {
    pub seq: u64,
    pub prev: [u8; 32],
    pub hash: [u8; 32],
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LineError {
    #[error("not a record line")]
    Shape,
    #[error("hash does not match the record (altered)")]
    Hash,
}

/// Checks one line (without its newline) against its own hash.
pub fn decode(line: &[u8]) -> Result<Decoded, LineError> {
    if line.len() <= HASH_SUFFIX_LEN || !line.starts_with(b"{") {
        return Err(LineError::Shape);
    }
    let (prefix, suffix) = line.split_at(line.len() - HASH_SUFFIX_LEN);
    let hex_hash = suffix
        .strip_prefix(b",\"hash\":\"")
        .and_then(|s| s.strip_suffix(b"\"}"))
        .ok_or(LineError::Shape)?;
    let mut hash = [0u8; 32];
    hex::decode_to_slice(hex_hash, &mut hash).map_err(|_| LineError::Shape)?;
    if hash_of(prefix) != hash {
        return Err(LineError::Hash);
    }
    let mut object = prefix.to_vec();
    object.push(b'}');
    let body: Body = serde_json::from_slice(&object).map_err(|_| LineError::Shape)?;
    let mut prev = [0u8; 32];
    hex::decode_to_slice(body.prev.as_bytes(), &mut prev).map_err(|_| LineError::Shape)?;
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
            documents: vec![[0xab; 16], [0x01; 16]],
        }
    }

    #[test]
    fn a_line_decodes_to_what_was_encoded() {
        let mut out = Vec::new();
        let hash = encode(&entry(), 7, &[9; 32], &mut out);
        assert_eq!(out.last(), Some(&b'\n'));
        let line = &out[..out.len() - 1];
        let text = std::str::from_utf8(line).expect("utf8");
        assert!(
            text.contains("\"documents\":[\"abababababababababababababababab\""),
            "{text}"
        );
        let second = time::OffsetDateTime::from_unix_timestamp(1_795_000_000).expect("time");
        let time = format!("\"time\":\"{}\"", crate::day::rfc3339(second));
        assert!(text.contains(&time), "{text}");
        let d = decode(line).expect("decodes");
        assert_eq!(
            d,
            Decoded {
                seq: 7,
                prev: [9; 32],
                hash
            }
        );
        serde_json::from_slice::<serde_json::Value>(line).expect("a line is JSON");
    }

    #[test]
    fn a_partner_id_that_needs_escaping_reads_back() {
        let mut e = entry();
        e.partner = Some("CN \"quoted\" \\ back".into());
        let mut out = Vec::new();
        let hash = encode(&e, 3, &GENESIS, &mut out);
        let d = decode(&out[..out.len() - 1]).expect("decodes");
        assert_eq!((d.seq, d.hash), (3, hash));
    }

    #[test]
    fn any_altered_byte_is_caught() {
        let mut out = Vec::new();
        encode(&entry(), 1, &GENESIS, &mut out);
        let line = &out[..out.len() - 1];
        for i in 0..line.len() {
            let mut bad = line.to_vec();
            bad[i] ^= 0x01;
            assert!(decode(&bad).is_err(), "flip at byte {i} passed");
        }
        assert_eq!(decode(&line[..line.len() - 3]), Err(LineError::Shape));
    }
}
