//! The revocation list of temporary permits, served from memory: to gates at
//! `GET /v1/temporary-permits/revocations` (scope `temp_permit`), and to following
//! gateways at `GET /v1/replication/temp-permit-revocations.bin` (scope `replicate`),
//! where a static repository has the file.
//!
//! `If-None-Match` with the list held: `304`. With `A-IM: pgrl-delta` and the ETag of a
//! recent list, `226 IM Used` and only what changed (RFC 3229; the format is in
//! src/revocation_list/delta.rs), which the gate applies to its own list and checks the
//! origin's signature on. Otherwise the whole list, `200`.

use http::header::{HeaderValue, CACHE_CONTROL, IF_NONE_MATCH, LAST_MODIFIED, VARY};
use http::{HeaderMap, HeaderName, Request, Response, StatusCode};

use super::problem::{Problem, ProblemKind};
use super::relay::respond;
use super::Body;
use crate::revocation_list::{Served, DELTA_FORMAT};

pub const LIST_TYPE: &str = "application/vnd.permitgate.revocation-list";
pub const DELTA_TYPE: &str = "application/vnd.permitgate.revocation-delta";

const A_IM: HeaderName = HeaderName::from_static("a-im");
const IM: HeaderName = HeaderName::from_static("im");
const DELTA_BASE: HeaderName = HeaderName::from_static("delta-base");

/// The entity tags a request names in `If-None-Match` (weak ones compared as strong: a
/// list's tag is its hash).
fn named_tags(headers: &HeaderMap) -> Vec<&str> {
    headers
        .get_all(IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().trim_start_matches("W/"))
        .filter(|t| !t.is_empty())
        .collect()
}

fn wants_delta(headers: &HeaderMap) -> bool {
    headers
        .get_all(A_IM)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|f| {
            f.split(';')
                .next()
                .is_some_and(|f| f.trim().eq_ignore_ascii_case(DELTA_FORMAT))
        })
}

const HTTP_DATE: &[time::format_description::FormatItem<'static>] = time::macros::format_description!(
    "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
);

pub fn answer<B>(served: &Served, req: &Request<B>) -> Result<Response<Body>, Problem> {
    let Some(current) = served.current() else {
        return Err(Problem::new(
            ProblemKind::NotFound,
            "no temporary-permit revocation list has reached this gateway yet",
        ));
    };
    let tags = named_tags(req.headers());
    let mut r = if tags.iter().any(|t| *t == current.etag || *t == "*") {
        respond(
            StatusCode::NOT_MODIFIED,
            LIST_TYPE,
            &current.etag,
            bytes::Bytes::new(),
        )
    } else if let Some((base, delta)) = wants_delta(req.headers())
        .then(|| tags.iter().find_map(|t| Some((*t, current.delta_from(t)?))))
        .flatten()
    {
        let mut r = respond(
            StatusCode::IM_USED,
            DELTA_TYPE,
            &current.etag,
            delta.clone(),
        );
        let h = r.headers_mut();
        h.insert(IM, HeaderValue::from_static(DELTA_FORMAT));
        if let Ok(v) = HeaderValue::from_str(base) {
            h.insert(DELTA_BASE, v);
        }
        r
    } else {
        respond(
            StatusCode::OK,
            LIST_TYPE,
            &current.etag,
            current.bytes.clone(),
        )
    };
    let h = r.headers_mut();
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(VARY, HeaderValue::from_static("A-IM"));
    if let Some(v) = current
        .issued_at
        .to_offset(time::UtcOffset::UTC)
        .format(HTTP_DATE)
        .ok()
        .and_then(|d| HeaderValue::from_str(&d).ok())
    {
        h.insert(LAST_MODIFIED, v);
    }
    Ok(r)
}
