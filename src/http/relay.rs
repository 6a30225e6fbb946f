//! Relay endpoints: any gateway serves the repository it holds to partners with the
//! `replicate` scope, so a fleet fans out from a few relays instead of all hitting the
//! origin. The layout mirrors a static repository (`manifest.json`, `objects/<hash>`), so a
//! follower treats a relay and a plain HTTPS server alike.
//!
//! `GET .../manifest` honours `If-None-Match` and, with `?wait_ms=N` (at most 30 000), holds
//! a request whose tag is current until the manifest changes: a follower learns of a new
//! version as soon as this gateway has it. Long-polls and downloads wait on the relay
//! budget (`max_relay_waiters`), not on partner slots; objects are streamed from disk a
//! piece at a time, so a download of a large base costs one piece of memory.
//!
//! A publication wakes every held long-poll at once, and each follower then asks for the
//! new delta: a thousand followers made four thousand file operations (each a blocking
//! task) in one burst. So the manifest is read from disk once per change and answered
//! from memory, and objects of at most one piece (deltas, as a rule) are kept in memory
//! once read: they are immutable, being named by their hash.
//!
//! The directory is not trusted further than its signatures: the manifest is served only
//! if it verifies with a publisher key (and is at most `MAX_MANIFEST_BYTES`), and an object
//! only if that manifest names it, as a regular file (no link followed) of the size it
//! names. A link in `objects/` to a key file or to `/dev/zero` serves nothing.

use std::collections::HashMap;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use ed25519_dalek::VerifyingKey;
use http::header::{HeaderValue, CONTENT_LENGTH, CONTENT_TYPE, ETAG, IF_NONE_MATCH};
use http::{Request, Response, StatusCode};
use http_body_util::{Either, Full};
use hyper::body::Frame;
use tokio::io::{AsyncRead, AsyncReadExt, ReadBuf};
use tokio::sync::watch;

use super::admission::Slot;

use super::problem::{Problem, ProblemKind};
use super::Body;
use crate::snapshot::{
    manifest_tag, open_object, read_manifest, SignedManifest, MANIFEST_FILE, OBJECTS_DIR,
};

/// Longest a manifest request may be held.
pub const MAX_WAIT: Duration = Duration::from_secs(30);
/// Objects are sent in pieces of this size: a download holds one piece in memory,
/// whatever the object's size.
const PIECE: usize = 64 * 1024;

/// Small objects kept in memory at most; past it the set starts again.
const SMALL_OBJECTS: usize = 256;

#[derive(Clone)]
pub struct RelaySource {
    /// The repository this gateway holds (its replication state or its snapshot repo).
    pub dir: PathBuf,
    /// Publisher keys: a manifest that does not verify with one is not served.
    trusted: Arc<[VerifyingKey]>,
    /// Bumped whenever a new manifest is in place (written by this gateway's follower, or
    /// seen in the snapshot repo it serves).
    pub changes: watch::Receiver<u64>,
    held: Arc<Held>,
}

/// The manifest as of one change, read and verified once.
struct HeldManifest {
    change: u64,
    bytes: Bytes,
    tag: String,
    /// The objects it names, and their sizes: nothing else is served.
    named: Arc<HashMap<String, u64>>,
}

#[derive(Default)]
struct Held {
    /// An async lock: the requests a change wakes wait for the one that reads the file.
    manifest: tokio::sync::Mutex<Option<HeldManifest>>,
    small: std::sync::Mutex<HashMap<String, Bytes>>,
    /// Held while an object not in `small` is opened (and, when small, read): the
    /// followers a publication wakes all ask for its new delta at once, and one reads it
    /// while the others wait and then find it held.
    opening: tokio::sync::Mutex<()>,
}

impl RelaySource {
    pub fn new(
        dir: PathBuf,
        trusted: Vec<VerifyingKey>,
        changes: watch::Receiver<u64>,
    ) -> RelaySource {
        RelaySource {
            dir,
            trusted: trusted.into(),
            changes,
            held: Arc::default(),
        }
    }

    /// The manifest as of change number `change`, its tag and the objects it names: read
    /// and verified once per change.
    async fn manifest(
        &self,
        change: u64,
    ) -> Result<(Bytes, String, Arc<HashMap<String, u64>>), Problem> {
        let mut held = self.held.manifest.lock().await;
        if let Some(h) = held.as_ref().filter(|h| h.change == change) {
            return Ok((h.bytes.clone(), h.tag.clone(), h.named.clone()));
        }
        let path = self.dir.join(MANIFEST_FILE);
        let trusted = self.trusted.clone();
        let read = tokio::task::spawn_blocking(move || {
            let bytes = read_manifest(&path).map_err(|e| e.to_string())?;
            let signed = SignedManifest::verify(&bytes, &trusted)
                .map_err(|e| crate::report::Report(&e).to_string())?;
            Ok::<_, String>((bytes, signed.manifest))
        })
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r);
        let (bytes, manifest) = read.map_err(|detail| {
            tracing::warn!(dir = %self.dir.display(), %detail, "the repository's manifest is not served");
            Problem::new(ProblemKind::NotReady, "no verified manifest held yet")
        })?;
        let named: HashMap<String, u64> =
            std::iter::once((manifest.snapshot.hash, manifest.snapshot.size))
                .chain(manifest.deltas.into_iter().map(|d| (d.hash, d.size)))
                .collect();
        let bytes = Bytes::from(bytes);
        let h = HeldManifest {
            change,
            tag: manifest_tag(&bytes),
            bytes,
            named: Arc::new(named),
        };
        let out = (h.bytes.clone(), h.tag.clone(), h.named.clone());
        *held = Some(h);
        Ok(out)
    }

    fn small_object(&self, hash: &str) -> Option<Bytes> {
        self.held
            .small
            .lock()
            .ok()
            .and_then(|m| m.get(hash).cloned())
    }

    fn keep_small_object(&self, hash: &str, bytes: Bytes) {
        if let Ok(mut m) = self.held.small.lock() {
            if m.len() >= SMALL_OBJECTS {
                m.clear();
            }
            m.insert(hash.to_owned(), bytes);
        }
    }
}

fn none(relay: Option<&RelaySource>) -> Result<&RelaySource, Problem> {
    relay.ok_or_else(|| {
        Problem::new(
            ProblemKind::NotFound,
            "this gateway holds no repository to relay",
        )
    })
}

/// `?wait_ms=N`: how long to hold a request whose manifest is current; absent: not at all.
/// Anything but an integer within 0..=30 000 is refused, as docs/openapi.yaml says.
fn wait_ms(query: Option<&str>) -> Result<Duration, Problem> {
    let given = query
        .into_iter()
        .flat_map(|q| q.split('&'))
        .find_map(|kv| kv.strip_prefix("wait_ms="));
    let Some(text) = given else {
        return Ok(Duration::ZERO);
    };
    text.parse::<u64>()
        .ok()
        .map(Duration::from_millis)
        .filter(|wait| *wait <= MAX_WAIT)
        .ok_or_else(|| {
            Problem::new(
                ProblemKind::InvalidField,
                format!(
                    "wait_ms must be an integer from 0 to {}",
                    MAX_WAIT.as_millis()
                ),
            )
            .with_field("wait_ms")
            .with_rule("range")
        })
}

/// `place`: this request's place on the relay budget, held while it waits; taken back
/// for a follower below its fair share, the request is answered as if its wait had ended.
pub async fn manifest<B>(
    relay: Option<&RelaySource>,
    req: &Request<B>,
    place: Slot,
) -> Result<Response<Body>, Problem> {
    let relay = none(relay)?;
    let wait = wait_ms(req.uri().query())?;
    let held = req
        .headers()
        .get(IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let deadline = tokio::time::Instant::now() + wait;
    let mut changes = relay.changes.clone();
    let answer = loop {
        let change = *changes.borrow_and_update();
        let (bytes, tag, _) = relay.manifest(change).await?;
        if held.as_deref() != Some(tag.as_str()) {
            break respond(StatusCode::OK, "application/json", &tag, bytes);
        }
        // An error: nothing will announce a change any more (shutting down).
        let waiting = place.preemptible();
        let changed = tokio::select! {
            r = changes.changed() => r.is_ok(),
            _ = tokio::time::sleep_until(deadline) => false,
            _ = waiting.taken_back() => false,
        };
        if !changed {
            break respond(
                StatusCode::NOT_MODIFIED,
                "application/json",
                &tag,
                Bytes::new(),
            );
        }
    };
    drop(place);
    Ok(answer)
}

/// Streams one object from disk; `place` is held until the last piece is sent.
pub async fn object(
    relay: Option<&RelaySource>,
    path: &str,
    place: Slot,
) -> Result<Response<Body>, Problem> {
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
    let tag = format!("\"{hash}\"");
    const OCTETS: &str = "application/octet-stream";
    let missing = || Problem::new(ProblemKind::NotFound, "no such object here");
    let change = *relay.changes.borrow();
    let (_, _, named) = relay.manifest(change).await?;
    let Some(&size) = named.get(hash) else {
        return Err(Problem::new(
            ProblemKind::NotFound,
            "the manifest this gateway holds names no such object",
        ));
    };
    if let Some(bytes) = relay.small_object(hash) {
        return Ok(respond(StatusCode::OK, OCTETS, &tag, bytes));
    }
    let opening = relay.held.opening.lock().await;
    if let Some(bytes) = relay.small_object(hash) {
        return Ok(respond(StatusCode::OK, OCTETS, &tag, bytes));
    }
    let path = relay.dir.join(OBJECTS_DIR).join(hash);
    let opened = tokio::task::spawn_blocking(move || open_object(&path, size))
        .await
        .map_err(std::io::Error::other)
        .and_then(|o| o);
    let std_file = match opened {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(missing()),
        Err(e) => {
            tracing::warn!(object = hash, error = %e, "a repository object is not served");
            return Err(missing());
        }
    };
    let mut file = tokio::fs::File::from_std(std_file);
    let len = size;
    if len <= PIECE as u64 {
        let mut bytes = Vec::with_capacity(len as usize);
        (&mut file)
            .take(len)
            .read_to_end(&mut bytes)
            .await
            .map_err(|_| missing())?;
        // Read whole anyway: checked against its name before it is served or kept, so
        // a file replaced with other bytes of the same size is not passed on.
        if bytes.len() as u64 != len || blake3::hash(&bytes).to_hex().as_str() != hash {
            tracing::warn!(
                object = hash,
                "a repository object does not hash to its name"
            );
            return Err(missing());
        }
        let bytes = Bytes::from(bytes);
        relay.keep_small_object(hash, bytes.clone());
        return Ok(respond(StatusCode::OK, OCTETS, &tag, bytes));
    }
    drop(opening);
    let mut r = Response::new(Either::Right(ObjectBody {
        file,
        left: len,
        buf: BytesMut::new(),
        _place: place,
    }));
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(OCTETS));
    r.headers_mut()
        .insert(CONTENT_LENGTH, HeaderValue::from(len));
    if let Ok(v) = HeaderValue::from_str(&tag) {
        r.headers_mut().insert(ETAG, v);
    }
    Ok(r)
}

/// An object file sent piece by piece. Objects are immutable (named by their hash), so
/// the length taken when it was opened holds; a file cut short ends the stream with an
/// error rather than a short answer under a full Content-Length.
pub struct ObjectBody {
    file: tokio::fs::File,
    left: u64,
    buf: BytesMut,
    _place: Slot,
}

impl hyper::body::Body for ObjectBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        let this = self.get_mut();
        if this.left == 0 {
            return Poll::Ready(None);
        }
        let want = usize::try_from(this.left).map_or(PIECE, |l| l.min(PIECE));
        this.buf.resize(want, 0);
        let mut rb = ReadBuf::new(&mut this.buf[..want]);
        match Pin::new(&mut this.file).poll_read(cx, &mut rb) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(e)) => Poll::Ready(Some(Err(e))),
            Poll::Ready(Ok(())) => {
                let n = rb.filled().len();
                if n == 0 {
                    return Poll::Ready(Some(Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "object file shorter than when it was opened",
                    ))));
                }
                this.left -= n as u64;
                Poll::Ready(Some(Ok(Frame::data(this.buf.split_to(n).freeze()))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.left == 0
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        hyper::body::SizeHint::with_exact(self.left)
    }
}

pub(super) fn respond(
    status: StatusCode,
    ctype: &'static str,
    tag: &str,
    body: Bytes,
) -> Response<Body> {
    let mut r = Response::new(Either::Left(Full::new(body)));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(ctype));
    if let Ok(v) = HeaderValue::from_str(tag) {
        r.headers_mut().insert(ETAG, v);
    }
    r
}
