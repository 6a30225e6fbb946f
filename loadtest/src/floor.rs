//! The stack's floor: hyper (HTTP/1.1, or HTTP/2 as ALPN chose) over tokio-rustls with the
//! gateway's own TLS configuration (`permitgate::tls::server_config`: client certificate
//! required, the same suites and ALPN), answering every request with one fixed body once
//! it has read the request's. No routing, lookups, audit trail, metrics or limits: what
//! any server built on the gateway's stack costs a request before its own work.
//! `scenario compare --cases floor` measures it beside nginx and the gateway
//! (docs/benchmarks.md).

use std::convert::Infallible;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::LoadError;

/// The gateway's TLS configuration for these files (its `[tls]` cert, key, client_ca).
pub fn tls_config(
    cert: &Path,
    key: &Path,
    client_ca: &Path,
) -> Result<Arc<rustls::ServerConfig>, LoadError> {
    permitgate::tls::server_config(cert, key, client_ca, Vec::new())
        .map_err(|e| LoadError::Tls(e.to_string()))
}

/// Serves `answer` (as `application/json`) on every connection `listener` accepts, until
/// the task is dropped. A connection whose handshake or HTTP fails is closed; the rest go
/// on.
pub async fn serve(listener: TcpListener, tls: Arc<rustls::ServerConfig>, answer: Bytes) {
    let acceptor = TlsAcceptor::from(tls);
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            // Out of descriptors, say: wait rather than spin.
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            continue;
        };
        let _ = tcp.set_nodelay(true);
        tokio::spawn(connection(acceptor.clone(), tcp, answer.clone()));
    }
}

/// One connection: the handshake, then HTTP until the client closes. Generic over the
/// socket, so that another runtime's sockets can carry the same stack
/// (loadtest/experiments/uring-floor: io_uring). HTTP/2 spawns its streams on tokio.
pub async fn connection<S>(acceptor: TlsAcceptor, tcp: S, answer: Bytes)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let Ok(tls) = acceptor.accept(tcp).await else {
        return;
    };
    let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
    let svc = service_fn(move |req: Request<Incoming>| {
        let answer = answer.clone();
        async move {
            // As the gateway does (and nginx): the body is read before the answer.
            let _ = req.into_body().collect().await;
            let mut resp = Response::new(Full::new(answer));
            resp.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/json"),
            );
            Ok::<_, Infallible>(resp)
        }
    });
    let io = TokioIo::new(tls);
    let _ = if h2 {
        hyper::server::conn::http2::Builder::new(TokioExecutor::new())
            .serve_connection(io, svc)
            .await
    } else {
        hyper::server::conn::http1::Builder::new()
            .serve_connection(io, svc)
            .await
    };
}
