//! Where a follower fetches a repository from: a directory (`file:///path`), an HTTPS
//! server (`https://host:port/path`: a relay gateway's `/v1/replication`, or any static
//! server holding a repository) reached with the gateway's own mTLS identity, or an
//! S3-compatible bucket (`s3://bucket/prefix`, through `object_store`; credentials from
//! the usual `AWS_*` environment variables).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use http::header::{ETAG, IF_NONE_MATCH};
use http::{Request, StatusCode};
use http_body_util::{BodyDataStream, BodyExt, Full, LengthLimitError, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::snapshot::{
    manifest_tag, read_bounded, ObjectError, ObjectSink, Pace, MANIFEST_FILE, MAX_MANIFEST_BYTES,
    OBJECTS_DIR,
};

/// How long an HTTPS manifest request asks a relay to hold it (relays cap it at 30 s;
/// static servers ignore it).
const LONG_POLL: Duration = Duration::from_secs(25);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("replication source {0:?} is not supported (use file:///path, https://host[:port]/path or s3://bucket/prefix)")]
    Unsupported(String),
    #[error("replication source {0}: an https source needs replication.ca")]
    NoTls(String),
    #[error("fetching {what}: HTTP {status}")]
    Status { what: String, status: u16 },
    /// The request failed; its cause (hyper's, object_store's, a timeout) is kept as the
    /// source, so the log shows the chain ("client error (Connect)" and why).
    #[error("fetching {what}")]
    Http {
        what: String,
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("fetching {what}")]
    Fetch {
        what: String,
        source: std::io::Error,
    },
    #[error("{what} is larger than {max} bytes")]
    TooLarge { what: String, max: u64 },
    /// The source has no such file.
    #[error(transparent)]
    Absent(Box<SourceError>),
    #[error("object {what}")]
    Object { what: String, source: ObjectError },
}

/// Endpoint and region of an S3-compatible store (None: from the environment / AWS).
#[derive(Debug, Clone, Default)]
pub struct S3Settings {
    pub endpoint: Option<String>,
    pub region: Option<String>,
}

pub enum Fetched {
    /// The file has the tag we already hold (or, for the revocation list, there is none).
    NotModified,
    Changed {
        bytes: Vec<u8>,
        tag: String,
    },
}

enum Small {
    NotModified,
    /// The source has no such file: the error that says so.
    Absent(SourceError),
    Got {
        bytes: Vec<u8>,
        tag: String,
    },
}

#[derive(Clone)]
pub enum Source {
    File(PathBuf),
    S3 {
        store: Arc<dyn object_store::ObjectStore>,
        prefix: String,
    },
    Https {
        base: String,
        // Boxed: the client is large and a source is made once per follower.
        client: Box<Client<HttpsConnector<HttpConnector>, Full<Bytes>>>,
    },
}

/// A source as configured (`replication.source`), parsed once when the config is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceUrl {
    /// `file:///path`: a repository directory.
    File(PathBuf),
    /// `https://host[:port]/path`, without a trailing slash.
    Https(String),
    /// `s3://bucket/prefix`.
    S3 { bucket: String, prefix: String },
}

impl std::str::FromStr for SourceUrl {
    type Err = SourceError;

    fn from_str(url: &str) -> Result<SourceUrl, SourceError> {
        let unsupported = || SourceError::Unsupported(url.to_owned());
        if let Some(rest) = url.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(unsupported());
            }
            return Ok(SourceUrl::S3 {
                bucket: bucket.to_owned(),
                prefix: prefix.trim_matches('/').to_owned(),
            });
        }
        if let Some(path) = url.strip_prefix("file://") {
            if path.starts_with('/') {
                return Ok(SourceUrl::File(PathBuf::from(path)));
            }
        }
        match url.strip_prefix("https://") {
            Some(rest) if !rest.is_empty() => {
                Ok(SourceUrl::Https(url.trim_end_matches('/').to_owned()))
            }
            _ => Err(unsupported()),
        }
    }
}

/// The bucket's store, with credentials from the usual `AWS_*` environment variables and
/// `s3`'s endpoint and region when given.
pub fn s3_store(
    bucket: &str,
    s3: &S3Settings,
) -> Result<Arc<dyn object_store::ObjectStore>, object_store::Error> {
    let mut b = object_store::aws::AmazonS3Builder::from_env()
        .with_bucket_name(bucket)
        .with_http_connector(super::s3_client::HyperConnector);
    if let Some(endpoint) = &s3.endpoint {
        b = b
            .with_endpoint(endpoint)
            .with_allow_http(endpoint.starts_with("http://"));
    }
    if let Some(region) = &s3.region {
        b = b.with_region(region);
    }
    Ok(Arc::new(b.build()?))
}

/// `name` under `prefix` in a bucket.
pub fn s3_path(prefix: &str, name: &str) -> object_store::path::Path {
    if prefix.is_empty() {
        object_store::path::Path::from(name)
    } else {
        object_store::path::Path::from(format!("{prefix}/{name}"))
    }
}

impl std::fmt::Display for SourceUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SourceUrl::File(path) => write!(f, "file://{}", path.display()),
            SourceUrl::Https(base) => f.write_str(base),
            SourceUrl::S3 { bucket, prefix } => write!(f, "s3://{bucket}/{prefix}"),
        }
    }
}

/// Changes in a file:// source's directory, as the kernel reports them (inotify): a
/// publication is seen as it lands instead of at the next poll. Dropped, it stops watching.
pub struct Changes {
    _watcher: notify::RecommendedWatcher,
    wake: Arc<tokio::sync::Notify>,
}

impl Changes {
    /// Resolves once something changed in the directory since the last call (a change while
    /// nobody waited is kept).
    pub async fn changed(&self) {
        self.wake.notified().await;
    }
}

impl Source {
    /// For a file:// source, its directory's changes; `None` for the others (they are
    /// polled, or hold a long-poll) or where the directory cannot be watched (then the poll
    /// interval alone applies: said in the log).
    pub fn watch(&self) -> Option<Changes> {
        use notify::Watcher as _;
        let Source::File(root) = self else {
            return None;
        };
        let wake = Arc::new(tokio::sync::Notify::new());
        let notified = wake.clone();
        let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            // Writes, renames and removals only: the follower's own reads of the manifest
            // are reported too (opened, closed), and would wake it again and again.
            if event.is_ok_and(|e| !matches!(e.kind, notify::EventKind::Access(_))) {
                notified.notify_one();
            }
        })
        .and_then(|mut w| {
            w.watch(root, notify::RecursiveMode::NonRecursive)?;
            Ok(w)
        });
        match watcher {
            Ok(w) => Some(Changes { _watcher: w, wake }),
            Err(e) => {
                tracing::warn!(dir = %root.display(), error = %e, "cannot watch the repository for publications; polling only");
                None
            }
        }
    }

    /// `tls` is the client configuration (trust anchors, and the gateway's identity) for
    /// https sources; `s3` the endpoint and region for s3 sources (defaults: AWS's, and
    /// the environment's).
    pub fn new(
        url: &SourceUrl,
        tls: Option<Arc<rustls::ClientConfig>>,
        s3: &S3Settings,
    ) -> Result<Source, SourceError> {
        match url {
            SourceUrl::S3 { bucket, prefix } => Ok(Source::S3 {
                store: s3_store(bucket, s3).map_err(|e| http_error(url, e))?,
                prefix: prefix.clone(),
            }),
            SourceUrl::File(path) => Ok(Source::File(path.clone())),
            SourceUrl::Https(base) => {
                let tls = tls.ok_or_else(|| SourceError::NoTls(base.clone()))?;
                let connector = hyper_rustls::HttpsConnectorBuilder::new()
                    .with_tls_config((*tls).clone())
                    .https_only()
                    .enable_http1()
                    .build();
                Ok(Source::Https {
                    base: base.clone(),
                    client: Box::new(Client::builder(TokioExecutor::new()).build(connector)),
                })
            }
        }
    }

    /// The object at `path` in the store with its ETag, `None` when it still has the tag
    /// `if_none_match`; its body is read by the caller.
    async fn s3_open(
        store: &Arc<dyn object_store::ObjectStore>,
        path: &object_store::path::Path,
        if_none_match: Option<&str>,
    ) -> Result<Option<object_store::GetResult>, SourceError> {
        let opts = object_store::GetOptions {
            if_none_match: if_none_match.map(str::to_owned),
            ..Default::default()
        };
        match tokio::time::timeout(REQUEST_TIMEOUT, store.get_opts(path, opts)).await {
            Err(_) => Err(http_error(path, "timed out")),
            Ok(Err(object_store::Error::NotModified { .. })) => Ok(None),
            Ok(Err(e @ object_store::Error::NotFound { .. })) => {
                Err(SourceError::Absent(Box::new(http_error(path, e))))
            }
            Ok(Err(e)) => Err(http_error(path, e)),
            Ok(Ok(g)) => Ok(Some(g)),
        }
    }

    async fn get(
        client: &Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
        url: &str,
        if_none_match: Option<&str>,
    ) -> Result<http::Response<hyper::body::Incoming>, SourceError> {
        let mut req = Request::get(url);
        if let Some(tag) = if_none_match {
            req = req.header(IF_NONE_MATCH, tag);
        }
        let req = req
            .body(Full::new(Bytes::new()))
            .map_err(|e| http_error(url, e))?;
        tokio::time::timeout(REQUEST_TIMEOUT, client.request(req))
            .await
            .map_err(|_| http_error(url, "timed out"))?
            .map_err(|e| http_error(url, e))
    }

    /// The manifest, unless it still has tag `held` (a content tag for files, the ETag
    /// for HTTP sources), so an idle poll transfers nothing new. A manifest larger than
    /// [`MAX_MANIFEST_BYTES`] is refused without being read whole.
    pub async fn manifest(&self, held: Option<&str>) -> Result<Fetched, SourceError> {
        let query = format!("?wait_ms={}", LONG_POLL.as_millis());
        match self
            .small(MANIFEST_FILE, &query, held, MAX_MANIFEST_BYTES)
            .await?
        {
            Small::NotModified => Ok(Fetched::NotModified),
            Small::Absent(e) => Err(e),
            Small::Got { bytes, tag } => Ok(Fetched::Changed { bytes, tag }),
        }
    }

    /// The revocation list of temporary permits beside the manifest (`None`: the source
    /// has none), unless it still has tag `held`; refused when larger than
    /// [`crate::revocation_list::MAX_LIST_BYTES`].
    pub async fn revocation_list(&self, held: Option<&str>) -> Result<Fetched, SourceError> {
        use crate::revocation_list::{FILE, MAX_LIST_BYTES};
        match self.small(FILE, "", held, MAX_LIST_BYTES).await? {
            Small::NotModified | Small::Absent(_) => Ok(Fetched::NotModified),
            Small::Got { bytes, tag } => Ok(Fetched::Changed { bytes, tag }),
        }
    }

    /// A small file of the repository (`name`), at most `max` bytes, unless it still has
    /// tag `held`; `query` is added to an https source's URL.
    async fn small(
        &self,
        name: &str,
        query: &str,
        held: Option<&str>,
        max: u64,
    ) -> Result<Small, SourceError> {
        let got = |bytes: Vec<u8>, tag: Option<String>| {
            let tag = tag.unwrap_or_else(|| manifest_tag(&bytes));
            if held == Some(tag.as_str()) {
                Small::NotModified
            } else {
                Small::Got { bytes, tag }
            }
        };
        let too_large = |what: String| SourceError::TooLarge { what, max };
        match self {
            Source::File(root) => {
                let path = root.join(name);
                let what = path.display().to_string();
                let read = tokio::task::spawn_blocking(move || read_bounded(&path, max))
                    .await
                    .map_err(std::io::Error::other)
                    .and_then(|read| read);
                match read {
                    Ok(bytes) => Ok(got(bytes, None)),
                    Err(e) if e.kind() == std::io::ErrorKind::FileTooLarge => Err(too_large(what)),
                    Err(source) => {
                        let absent = source.kind() == std::io::ErrorKind::NotFound;
                        let e = SourceError::Fetch { what, source };
                        if absent {
                            Ok(Small::Absent(e))
                        } else {
                            Err(e)
                        }
                    }
                }
            }
            Source::S3 { store, prefix } => {
                let path = s3_path(prefix, name);
                let got_s3 = match Self::s3_open(store, &path, held).await {
                    Ok(g) => g,
                    Err(SourceError::Absent(e)) => return Ok(Small::Absent(*e)),
                    Err(e) => return Err(e),
                };
                let Some(got_s3) = got_s3 else {
                    return Ok(Small::NotModified);
                };
                if got_s3.meta.size > max {
                    return Err(too_large(path.to_string()));
                }
                let tag = got_s3.meta.e_tag.clone();
                let bytes = tokio::time::timeout(REQUEST_TIMEOUT, got_s3.bytes())
                    .await
                    .map_err(|_| http_error(&path, "body timed out"))?
                    .map_err(|e| http_error(&path, e))?;
                if bytes.len() as u64 > max {
                    return Err(too_large(path.to_string()));
                }
                Ok(got(bytes.to_vec(), tag))
            }
            Source::Https { base, client } => {
                let url = format!("{base}/{name}{query}");
                let resp = Self::get(client, &url, held).await?;
                match resp.status() {
                    StatusCode::NOT_MODIFIED => Ok(Small::NotModified),
                    StatusCode::OK => {
                        let tag = resp
                            .headers()
                            .get(ETAG)
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_owned);
                        let limited = Limited::new(
                            resp.into_body(),
                            usize::try_from(max).unwrap_or(usize::MAX),
                        );
                        let body = tokio::time::timeout(REQUEST_TIMEOUT, limited.collect())
                            .await
                            .map_err(|_| http_error(&url, "body timed out"))?
                            .map_err(|e| {
                                if e.is::<LengthLimitError>() {
                                    too_large(url.clone())
                                } else {
                                    http_error(&url, e)
                                }
                            })?
                            .to_bytes();
                        Ok(got(body.to_vec(), tag))
                    }
                    s => {
                        let e = SourceError::Status {
                            what: url,
                            status: s.as_u16(),
                        };
                        if s == StatusCode::NOT_FOUND {
                            Ok(Small::Absent(e))
                        } else {
                            Err(e)
                        }
                    }
                }
            }
        }
    }

    /// Fetches the object `hash` of `size` bytes (as the signed manifest names it) into
    /// `path`, streamed to disk as it arrives (never held whole in memory) through an
    /// [`ObjectSink`]: a source that sends more than `size` bytes is cut off there, and
    /// the file is kept only if its content hashes to `hash`. Written at `pace` when given.
    pub async fn fetch_object(
        &self,
        hash: &str,
        size: u64,
        path: PathBuf,
        pace: Option<Pace>,
    ) -> Result<(), SourceError> {
        let object_error = |what: String| move |source| SourceError::Object { what, source };
        match self {
            Source::File(root) => {
                let from = root.join(OBJECTS_DIR).join(hash);
                let what = from.display().to_string();
                let hash = hash.to_owned();
                tokio::task::spawn_blocking(move || {
                    ObjectSink::create(path, &hash, size, pace)?.copy_from(&from)
                })
                .await
                .map_err(|e| ObjectError::Io(std::io::Error::other(e)))
                .and_then(|copied| copied)
                .map_err(|source| match source {
                    // The directory's own trouble (missing, a link, not a regular file).
                    ObjectError::Io(source) => SourceError::Fetch {
                        what: what.clone(),
                        source,
                    },
                    source => SourceError::Object {
                        what: what.clone(),
                        source,
                    },
                })
            }
            Source::S3 { store, prefix } => {
                let at = s3_path(prefix, &format!("{OBJECTS_DIR}/{hash}"));
                let what = at.to_string();
                let got = Self::s3_open(store, &at, None)
                    .await?
                    .ok_or(SourceError::Status {
                        what: what.clone(),
                        status: 304,
                    })?;
                if got.meta.size > size {
                    return Err(object_error(what)(ObjectError::TooLarge { size }));
                }
                let sink = ObjectSink::create(path, hash, size, pace)
                    .map_err(|e| object_error(what.clone())(ObjectError::Io(e)))?;
                stream_into(sink, what, got.into_stream()).await
            }
            Source::Https { base, client } => {
                let url = format!("{base}/{OBJECTS_DIR}/{hash}");
                let resp = Self::get(client, &url, None).await?;
                if resp.status() != StatusCode::OK {
                    return Err(SourceError::Status {
                        what: url,
                        status: resp.status().as_u16(),
                    });
                }
                let sink = ObjectSink::create(path, hash, size, pace)
                    .map_err(|e| object_error(url.clone())(ObjectError::Io(e)))?;
                stream_into(sink, url, BodyDataStream::new(resp.into_body())).await
            }
        }
    }
}

/// Writes the pieces of an object's body into `sink` as they arrive (`what` names it in
/// errors), within the request timeout.
async fn stream_into<E: Into<Box<dyn std::error::Error + Send + Sync>>>(
    sink: ObjectSink,
    what: String,
    mut pieces: impl futures_util::Stream<Item = Result<Bytes, E>> + Unpin,
) -> Result<(), SourceError> {
    let sink = BlockingSink::start(sink);
    let streamed = tokio::time::timeout(REQUEST_TIMEOUT, async {
        while let Some(piece) = pieces.next().await {
            let piece = piece.map_err(|e| http_error(&what, e))?;
            if !sink.write(piece).await {
                break;
            }
        }
        Ok(())
    })
    .await
    .map_err(|_| http_error(&what, "body timed out"))?;
    sink.finish(streamed, what).await
}

fn http_error(
    what: impl std::fmt::Display,
    cause: impl Into<Box<dyn std::error::Error + Send + Sync>>,
) -> SourceError {
    SourceError::Http {
        what: what.to_string(),
        source: cause.into(),
    }
}

/// An [`ObjectSink`] written on a blocking thread (a paced write sleeps, and the fsync
/// blocks) from pieces arriving on the async side, a few pieces in flight at most.
struct BlockingSink {
    pieces: tokio::sync::mpsc::Sender<Bytes>,
    done: tokio::task::JoinHandle<Result<(), ObjectError>>,
}

impl BlockingSink {
    fn start(mut sink: ObjectSink) -> BlockingSink {
        let (pieces, mut rx) = tokio::sync::mpsc::channel::<Bytes>(8);
        let done = tokio::task::spawn_blocking(move || {
            while let Some(piece) = rx.blocking_recv() {
                sink.write(&piece)?;
            }
            sink.finish()
        });
        BlockingSink { pieces, done }
    }

    /// Passes a piece on; `false` once the writer has stopped (on an error, which
    /// [`BlockingSink::finish`] returns).
    async fn write(&self, piece: Bytes) -> bool {
        self.pieces.send(piece).await.is_ok()
    }

    /// Ends the object: kept if the stream ended well, and the writer took every piece,
    /// found it whole and named by its hash. A stream that failed is reported as such (the
    /// writer then finds the object short and removes it); else the writer's error, which
    /// is what stopped the stream early.
    async fn finish(
        self,
        streamed: Result<(), SourceError>,
        what: String,
    ) -> Result<(), SourceError> {
        drop(self.pieces);
        let written = self
            .done
            .await
            .map_err(|e| ObjectError::Io(std::io::Error::other(e)))
            .and_then(|written| written);
        streamed?;
        written.map_err(|source| SourceError::Object { what, source })
    }
}
