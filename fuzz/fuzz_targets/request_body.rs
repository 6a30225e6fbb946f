//! Request bodies as the gateway reads them: every endpoint's JSON shape, batch items
//! one by one, and the problem a parse error becomes (which must never echo a number).
#![no_main]

use libfuzzer_sys::fuzz_target;
use permitgate::http::api::{
    BatchRequest, DocumentStatusRequest, LinkCheckRequest, TempPermitRequest,
};
use permitgate::http::problem::Problem;

fn problem_of(e: &serde_json::Error, body: &[u8]) {
    let p = Problem::from_json(e, "checks[0].");
    // Quoted strings from the body are redacted in details of the wrong-type kind.
    let _ = serde_json::to_vec(&p).expect("a problem serialises");
    let _ = body;
}

fuzz_target!(|data: &[u8]| {
    match serde_json::from_slice::<LinkCheckRequest<'_>>(data) {
        Ok(r) => {
            let _ = permitgate::document::TravelPermitNo::parse(&r.travel_permit);
            let _ = permitgate::document::ResidencePermitNo::parse(&r.residence_permit);
        }
        Err(e) => problem_of(&e, data),
    }
    if let Ok(batch) = serde_json::from_slice::<BatchRequest<'_>>(data) {
        for raw in batch.checks {
            if let Err(e) = serde_json::from_str::<LinkCheckRequest<'_>>(raw.get()) {
                problem_of(&e, raw.get().as_bytes());
            }
        }
    }
    if let Ok(r) = serde_json::from_slice::<DocumentStatusRequest>(data) {
        let _ = permitgate::document::DocumentNo::parse(&r.number);
    }
    let _ = serde_json::from_slice::<TempPermitRequest>(data);
});
