//! The authority listener: mutual TLS with the authority's client CA only (no partner
//! certificate chains to it; `[origin]` refuses a config that shares the CA, the address
//! or an id with partners), HTTP/1.1 or HTTP/2 as ALPN chooses, callers named by their
//! certificate's `spiffe://authority/<id>`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use super::api::Api;
use super::ledger::Keys;
use super::writer::{Origin, Settings};
use crate::audit::{AuditConfig, AuditLog, WhenFull};
use crate::clock::Clock;
use crate::config::{Config, OriginConfig};
use crate::key_files::{load_signing_key, HashKey, KeyError};
use crate::publish::bucket::Bucket;
use crate::tls::{self, TlsError};

/// Open authority connections at most: the authority's desks and systems, not the public.
const MAX_CONNECTIONS: usize = 512;
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum OriginStartError {
    #[error("the config has no [origin] section: nothing to serve")]
    NotConfigured,
    #[error("origin.client_ca and tls.client_ca share a certificate: no partner certificate may reach the authority API; give the authority a CA of its own")]
    SharedCa,
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error(transparent)]
    Audit(#[from] crate::audit::AuditError),
    #[error("cannot read the repository")]
    Repository(#[from] crate::publish::PublishError),
    #[error("cannot listen on {addr}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// The origin as a config describes it, ready to serve.
pub struct OriginService {
    pub origin: Origin,
    pub api: Arc<Api>,
    pub tls: Arc<rustls::ServerConfig>,
    pub listen: SocketAddr,
    /// Plain HTTP: `/metrics` and `/healthz`; none when not configured.
    pub metrics_listen: Option<SocketAddr>,
    pub metrics: super::OriginMetrics,
}

/// Checks the files `[origin]` names and opens the origin: the writer over the repository,
/// the audit trail of authority calls, the listener's TLS.
pub fn open(config: &Config, clock: Arc<dyn Clock>) -> Result<OriginService, OriginStartError> {
    let o = config
        .origin
        .as_ref()
        .ok_or(OriginStartError::NotConfigured)?;
    let authority_cas = tls::load_certs(&o.client_ca)?;
    let partner_cas = tls::load_certs(&config.tls.client_ca)?;
    if authority_cas.iter().any(|c| partner_cas.contains(c)) {
        return Err(OriginStartError::SharedCa);
    }
    let tls = tls::server_config(&config.tls.cert, &config.tls.key, &o.client_ca, Vec::new())?;
    let metrics = super::OriginMetrics::new();
    let origin = open_writer(config, o, clock.clone(), metrics.clone())?;
    let audit = AuditLog::open(
        AuditConfig {
            dir: o.audit_dir.clone(),
            max_file_bytes: 64 * 1024 * 1024,
            fsync_interval: Duration::ZERO,
            queue_capacity: 4096,
            when_full: WhenFull::Shed,
            answer_after: crate::audit::AnswerAfter::Fsync,
            checkpoints: None,
        },
        metrics.audit.clone(),
    )?;
    let api = Api {
        origin: origin.clone(),
        callers: o
            .callers
            .iter()
            .map(|c| (c.id.clone(), c.clone()))
            .collect::<HashMap<_, _>>(),
        hash_key: HashKey::load(&config.snapshot.hash_key)?,
        clock,
        audit: Some(audit),
        metrics: metrics.clone(),
    };
    Ok(OriginService {
        origin,
        api: Arc::new(api),
        tls,
        listen: o.listen,
        metrics_listen: o.metrics_listen,
        metrics,
    })
}

/// The writer alone, for the CLI: the same policy and repository claim as the API.
pub fn open_writer(
    config: &Config,
    o: &OriginConfig,
    clock: Arc<dyn Clock>,
    metrics: super::OriginMetrics,
) -> Result<Origin, OriginStartError> {
    let repo = config
        .snapshot
        .repo
        .clone()
        .ok_or(OriginStartError::NotConfigured)?;
    let keys = Keys {
        publisher: load_signing_key(&o.publisher_key)?,
        issuer: load_signing_key(&o.temp_permit_key)?,
        hash_key: HashKey::load(&config.snapshot.hash_key)?,
    };
    Ok(Origin::start(
        Settings {
            repo,
            bucket: match &o.bucket {
                Some(b) => Some(Arc::new(Bucket::open(&b.name, &b.prefix, &b.s3)?)),
                None => None,
            },
            batch_window: o.batch_window,
            manifest_expires_in: o.manifest_expires_in,
            max_deltas: o.max_deltas,
            clock_skew: o.clock_skew,
            metrics,
            idle_tick: Duration::from_secs(60),
        },
        keys,
        clock,
    )?)
}

impl OriginService {
    pub async fn bind(&self) -> Result<TcpListener, OriginStartError> {
        TcpListener::bind(self.listen)
            .await
            .map_err(|source| OriginStartError::Bind {
                addr: self.listen,
                source,
            })
    }

    /// Binds the ops listener, when configured.
    pub async fn bind_ops(&self) -> Result<Option<TcpListener>, OriginStartError> {
        let Some(addr) = self.metrics_listen else {
            return Ok(None);
        };
        TcpListener::bind(addr)
            .await
            .map(Some)
            .map_err(|source| OriginStartError::Bind { addr, source })
    }

    /// Serves `/metrics` and `/healthz` on `listener` until the task is dropped.
    pub async fn serve_ops(&self, listener: TcpListener) {
        let metrics = self.metrics.clone();
        let answer = move |req: &http::Request<hyper::body::Incoming>| {
            let (status, body) = match req.uri().path() {
                "/metrics" => (http::StatusCode::OK, metrics.encode()),
                "/healthz" => (http::StatusCode::OK, b"alive\n".to_vec()),
                _ => (http::StatusCode::NOT_FOUND, b"try /metrics\n".to_vec()),
            };
            let mut r = http::Response::new(http_body_util::Full::new(bytes::Bytes::from(body)));
            *r.status_mut() = status;
            r.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("text/plain; version=0.0.4"),
            );
            r
        };
        crate::plain_http::serve(listener, answer, None).await;
    }

    /// Serves `listener` until the task is dropped.
    pub async fn serve(&self, listener: TcpListener) {
        let acceptor = tokio_rustls::TlsAcceptor::from(self.tls.clone());
        let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                continue;
            };
            let (acceptor, api) = (acceptor.clone(), self.api.clone());
            tokio::spawn(async move {
                let _slot = slot;
                let Ok(Ok(tls)) =
                    tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await
                else {
                    return;
                };
                let caller: Option<Arc<str>> = tls
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|c| c.first())
                    .and_then(tls::authority_caller)
                    .map(Arc::from);
                let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let (api, caller) = (api.clone(), caller.clone());
                    async move {
                        let (parts, body) = req.into_parts();
                        let response = api
                            .handle(
                                caller.as_deref(),
                                &parts.method,
                                (parts.uri.path(), parts.uri.query()),
                                &parts.headers,
                                body,
                            )
                            .await;
                        Ok::<_, std::convert::Infallible>(response)
                    }
                });
                let _ = Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    }
}
