//! Audit log lines as `audit verify` reads them: arbitrary bytes as a line of either
//! format, and arbitrary format-1 record prefixes completed with their correct hash (so the
//! JSON decoding behind it is reached).
#![no_main]

use libfuzzer_sys::fuzz_target;
use permitgate::audit::record;

fuzz_target!(|data: &[u8]| {
    let _ = record::read_line(data);
    let _ = record::decode(data);
    let mut line = data.to_vec();
    let hash = record::hash_of(data);
    line.extend_from_slice(b",\"hash\":\"");
    line.extend(hash.iter().flat_map(|b| format!("{b:02x}").into_bytes()));
    line.extend_from_slice(b"\"}");
    if let Ok(d) = record::decode(&line) {
        assert_eq!(d.hash, hash);
    }
});
