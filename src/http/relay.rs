//! Relay endpoints: any gateway serves the repository it holds to partners with the
//! `replicate` scope, so a fleet fans out from a few relays instead of all hitting the
//! origin. The layout mirrors a static repository (`manifest.json`, `objects/<hash>`), so a
//! follower treats a relay and a plain HTTPS server alike.
//!
//! `GET .../manifest` honours `If-None-Match` and, with `?wait_ms=N` (at most 30 000), holds
//! a request whose tag is current until the manifest changes: a follower learns of a new
//! version as soon as this gateway has it.

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_TYPE, ETAG, IF_NONE_MATCH};
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use tokio::sync::watch;

use super::problem::{Problem, ProblemKind};
use super::Body;
use crate::snapshot::{manifest_tag, MANIFEST_FILE, OBJECTS_DIR};

/// Longest a manifest request may be held.
pub const MAX_WAIT: Duration = Duration::from_secs(30);
/// Also re-read the manifest this often while holding, for repos changed by other
/// processes (an origin gateway serving the publisher's directory).
const RECHECK: Duration = Duration::from_millis(250);

#[derive(Clone)]
pub struct RelaySource {
    /// The repository this gateway holds (its replication state or its snapshot repo).
    pub dir: PathBuf,
    /// Bumped whenever this gateway has written a new manifest.
    pub changes: watch::Receiver<u64>,
}

fn none(relay: Option<&RelaySource>) -> Result<&RelaySource, Problem> {
    relay.ok_or_else(|| {
        Problem::new(
            ProblemKind::NotFound,
            "this gateway holds no repository to relay",
        )
    })
}

fn wait_ms(query: Option<&str>) -> Duration {
    query
        .into_iter()
        .flat_map(|q| q.split('&'))
        .find_map(|kv| kv.strip_prefix("wait_ms="))
        .and_then(|v| v.parse::<u64>().ok())
        .map_or(Duration::ZERO, |ms| Duration::from_millis(ms).min(MAX_WAIT))
}

pub async fn manifest<B>(
    relay: Option<&RelaySource>,
    req: &Request<B>,
) -> Result<Response<Body>, Problem> {
    let relay = none(relay)?;
    let held = req
        .headers()
        .get(IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let deadline = tokio::time::Instant::now() + wait_ms(req.uri().query());
    let mut changes = relay.changes.clone();
    loop {
        changes.borrow_and_update();
        let bytes = tokio::fs::read(relay.dir.join(MANIFEST_FILE))
            .await
            .map_err(|_| Problem::new(ProblemKind::NotReady, "no manifest held yet"))?;
        let tag = manifest_tag(&bytes);
        if held.as_deref() != Some(tag.as_str()) {
            return Ok(respond(StatusCode::OK, "application/json", &tag, bytes));
        }
        let now = tokio::time::Instant::now();
        if now >= deadline {
            return Ok(respond(
                StatusCode::NOT_MODIFIED,
                "application/json",
                &tag,
                Vec::new(),
            ));
        }
        tokio::select! {
            _ = changes.changed() => {}
            _ = tokio::time::sleep_until(deadline.min(now + RECHECK)) => {}
        }
    }
}

pub async fn object(relay: Option<&RelaySource>, path: &str) -> Result<Response<Body>, Problem> {
    let relay = none(relay)?;
    let hash = path.rsplit('/').next().unwrap_or_default();
    if hash.len() != 64
        || !hash
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(Problem::new(
            ProblemKind::NotFound,
            "objects are named by 64 lowercase hex characters",
        ));
    }
    let bytes = tokio::fs::read(relay.dir.join(OBJECTS_DIR).join(hash))
        .await
        .map_err(|_| Problem::new(ProblemKind::NotFound, "no such object here"))?;
    Ok(respond(
        StatusCode::OK,
        "application/octet-stream",
        &format!("\"{hash}\""),
        bytes,
    ))
}

fn respond(status: StatusCode, ctype: &'static str, tag: &str, body: Vec<u8>) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(ctype));
    if let Ok(v) = HeaderValue::from_str(tag) {
        r.headers_mut().insert(ETAG, v);
    }
    r
}
