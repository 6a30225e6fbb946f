//! Where a follower fetches a repository from: a directory (`file:///path`), an HTTPS
//! server (`https://host:port/path`: a relay gateway's `/v1/replication`, or any static
//! server holding a repository) reached with the gateway's own mTLS identity, or an
//! S3-compatible bucket (`s3://bucket/prefix`, through `object_store`; credentials from
//! the usual `AWS_*` environment variables).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{ETAG, IF_NONE_MATCH};
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::snapshot::{manifest_tag, read_file, Pace, MANIFEST_FILE, OBJECTS_DIR};

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
    #[error("fetching {what}: {message}")]
    Http { what: String, message: String },
    #[error("fetching {what}")]
    Fetch {
        what: String,
        source: std::io::Error,
    },
}

/// Endpoint and region of an S3-compatible store (None: from the environment / AWS).
#[derive(Debug, Clone, Default)]
pub struct S3Settings {
    pub endpoint: Option<String>,
    pub region: Option<String>,
}

pub enum Fetched {
    /// The manifest has the tag we already hold.
    NotModified,
    Manifest {
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
            SourceUrl::S3 { bucket, prefix } => {
                let mut b = object_store::aws::AmazonS3Builder::from_env().with_bucket_name(bucket);
                if let Some(endpoint) = &s3.endpoint {
                    b = b
                        .with_endpoint(endpoint)
                        .with_allow_http(endpoint.starts_with("http://"));
                }
                if let Some(region) = &s3.region {
                    b = b.with_region(region);
                }
                let store = b.build().map_err(|e| SourceError::Http {
                    what: url.to_string(),
                    message: e.to_string(),
                })?;
                Ok(Source::S3 {
                    store: Arc::new(store),
                    prefix: prefix.clone(),
                })
            }
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

    fn s3_path(prefix: &str, name: &str) -> object_store::path::Path {
        if prefix.is_empty() {
            object_store::path::Path::from(name)
        } else {
            object_store::path::Path::from(format!("{prefix}/{name}"))
        }
    }

    async fn s3_get(
        store: &Arc<dyn object_store::ObjectStore>,
        path: object_store::path::Path,
        if_none_match: Option<&str>,
    ) -> Result<Option<(Bytes, Option<String>)>, SourceError> {
        let what = path.to_string();
        let opts = object_store::GetOptions {
            if_none_match: if_none_match.map(str::to_owned),
            ..Default::default()
        };
        let err = |message: String| SourceError::Http {
            what: what.clone(),
            message,
        };
        let got = match tokio::time::timeout(REQUEST_TIMEOUT, store.get_opts(&path, opts)).await {
            Err(_) => return Err(err("timed out".into())),
            Ok(Err(object_store::Error::NotModified { .. })) => return Ok(None),
            Ok(Err(e)) => return Err(err(e.to_string())),
            Ok(Ok(g)) => g,
        };
        let tag = got.meta.e_tag.clone();
        let bytes = tokio::time::timeout(REQUEST_TIMEOUT, got.bytes())
            .await
            .map_err(|_| err("body timed out".into()))?
            .map_err(|e| err(e.to_string()))?;
        Ok(Some((bytes, tag)))
    }

    async fn get(
        client: &Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
        url: String,
        if_none_match: Option<&str>,
    ) -> Result<(StatusCode, Option<String>, Bytes), SourceError> {
        let mut req = Request::get(&url);
        if let Some(tag) = if_none_match {
            req = req.header(IF_NONE_MATCH, tag);
        }
        let http_err = |message: String| SourceError::Http {
            what: url.clone(),
            message,
        };
        let req = req
            .body(Full::new(Bytes::new()))
            .map_err(|e| http_err(e.to_string()))?;
        let resp = tokio::time::timeout(REQUEST_TIMEOUT, client.request(req))
            .await
            .map_err(|_| http_err("timed out".into()))?
            .map_err(|e| http_err(e.to_string()))?;
        let status = resp.status();
        let tag = resp
            .headers()
            .get(ETAG)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = tokio::time::timeout(REQUEST_TIMEOUT, resp.into_body().collect())
            .await
            .map_err(|_| http_err("body timed out".into()))?
            .map_err(|e| http_err(e.to_string()))?
            .to_bytes();
        Ok((status, tag, body))
    }

    /// The manifest, unless it still has tag `held` (a content tag for files, the ETag
    /// for HTTP sources), so an idle poll transfers nothing new.
    pub async fn manifest(&self, held: Option<&str>) -> Result<Fetched, SourceError> {
        match self {
            Source::File(root) => {
                let path = root.join(MANIFEST_FILE);
                let bytes = tokio::fs::read(&path)
                    .await
                    .map_err(|source| SourceError::Fetch {
                        what: path.display().to_string(),
                        source,
                    })?;
                let tag = manifest_tag(&bytes);
                if held == Some(tag.as_str()) {
                    return Ok(Fetched::NotModified);
                }
                Ok(Fetched::Manifest { bytes, tag })
            }
            Source::S3 { store, prefix } => {
                match Self::s3_get(store, Self::s3_path(prefix, MANIFEST_FILE), held).await? {
                    None => Ok(Fetched::NotModified),
                    Some((bytes, tag)) => {
                        let tag = tag.unwrap_or_else(|| manifest_tag(&bytes));
                        if held == Some(tag.as_str()) {
                            return Ok(Fetched::NotModified);
                        }
                        Ok(Fetched::Manifest {
                            bytes: bytes.to_vec(),
                            tag,
                        })
                    }
                }
            }
            Source::Https { base, client } => {
                let url = format!("{base}/{MANIFEST_FILE}?wait_ms={}", LONG_POLL.as_millis());
                let (status, tag, body) = Self::get(client, url.clone(), held).await?;
                match status {
                    StatusCode::NOT_MODIFIED => Ok(Fetched::NotModified),
                    StatusCode::OK => {
                        let tag = tag.unwrap_or_else(|| manifest_tag(&body));
                        if held == Some(tag.as_str()) {
                            return Ok(Fetched::NotModified);
                        }
                        Ok(Fetched::Manifest {
                            bytes: body.to_vec(),
                            tag,
                        })
                    }
                    s => Err(SourceError::Status {
                        what: url,
                        status: s.as_u16(),
                    }),
                }
            }
        }
    }

    /// The object `hash`; read from a directory at `pace` when given (over the network,
    /// the body arrives at the network's pace).
    pub async fn object(&self, hash: &str, pace: Option<Pace>) -> Result<Vec<u8>, SourceError> {
        match self {
            Source::File(root) => {
                let path = root.join(OBJECTS_DIR).join(hash);
                let what = path.display().to_string();
                tokio::task::spawn_blocking(move || read_file(&path, pace))
                    .await
                    .map_err(std::io::Error::other)
                    .and_then(|read| read)
                    .map_err(|source| SourceError::Fetch { what, source })
            }
            Source::S3 { store, prefix } => {
                let path = Self::s3_path(prefix, &format!("{OBJECTS_DIR}/{hash}"));
                let what = path.to_string();
                Self::s3_get(store, path, None)
                    .await?
                    .map(|(b, _)| b.to_vec())
                    .ok_or(SourceError::Status { what, status: 304 })
            }
            Source::Https { base, client } => {
                let url = format!("{base}/{OBJECTS_DIR}/{hash}");
                let (status, _, body) = Self::get(client, url.clone(), None).await?;
                if status != StatusCode::OK {
                    return Err(SourceError::Status {
                        what: url,
                        status: status.as_u16(),
                    });
                }
                Ok(body.to_vec())
            }
        }
    }
}
