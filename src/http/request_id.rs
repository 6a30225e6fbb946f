//! `x-request-id`: taken from the partner when it is a sane token, else made here; echoed
//! on the response and written into the audit record, so a partner's ticket, the gateway's
//! audit trail and logs can be joined.

use std::sync::atomic::{AtomicU64, Ordering};

use http::HeaderValue;

pub const HEADER: &str = "x-request-id";
pub const MAX_LEN: usize = 64;

/// A partner's id is used as given when it is 1-64 characters of `A-Z a-z 0-9 - _ . : /`
/// (UUIDs, ULIDs, trace ids); anything else is replaced, not refused.
pub fn acceptable(v: &HeaderValue) -> bool {
    let b = v.as_bytes();
    !b.is_empty()
        && b.len() <= MAX_LEN
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.' | b':' | b'/'))
}

/// Ids made here: a random per-process prefix and a counter, unique without a random draw
/// per request.
pub struct Generator {
    prefix: String,
    next: AtomicU64,
}

impl Default for Generator {
    fn default() -> Self {
        Generator {
            prefix: format!("pg-{:08x}", rand::random::<u32>()),
            next: AtomicU64::new(1),
        }
    }
}

impl Generator {
    pub fn next(&self) -> HeaderValue {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let id = format!("{}-{n:x}", self.prefix);
        // Hex digits and '-' only: always a valid header value.
        HeaderValue::from_str(&id).unwrap_or(HeaderValue::from_static("pg-invalid"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partner_ids_are_kept_only_when_sane() {
        let ok = |s: &str| acceptable(&HeaderValue::from_str(s).expect("header"));
        assert!(ok("3f2c9e1a-0b7d-4c55-9a8e-1d2f3a4b5c6d"));
        assert!(ok("trace:01HZX/ABC_1.2"));
        assert!(!ok(""));
        assert!(!ok("has space"));
        assert!(!ok("quote\"d"));
        assert!(!ok(&"a".repeat(65)));
    }

    #[test]
    fn generated_ids_are_distinct_and_acceptable() {
        let g = Generator::default();
        let (a, b) = (g.next(), g.next());
        assert_ne!(a, b);
        assert!(acceptable(&a) && acceptable(&b), "{a:?}");
    }
}
