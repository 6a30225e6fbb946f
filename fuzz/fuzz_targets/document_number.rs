//! Document numbers: parsing never panics, and what parses is canonical and parses again
//! to the same thing.
#![no_main]

use libfuzzer_sys::fuzz_target;
use permitgate::document::{DocumentNo, ResidencePermitNo, TravelPermitNo};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(n) = DocumentNo::parse(text) {
        let again = DocumentNo::parse(n.canonical()).expect("a canonical number parses");
        assert_eq!(again.canonical(), n.canonical());
    }
    if let Ok(t) = TravelPermitNo::parse(text) {
        assert_eq!(
            TravelPermitNo::parse(t.canonical()).expect("canonical").canonical(),
            t.canonical()
        );
    }
    if let Ok(r) = ResidencePermitNo::parse(text) {
        assert_eq!(
            ResidencePermitNo::parse(r.canonical()).expect("canonical").canonical(),
            r.canonical()
        );
    }
});
