//! Connections to the gateway: mTLS with the partner's certificate, then HTTP/1.1 or
//! HTTP/2 as asked. One [`Conn`] per worker; for the per-request-connection protocols the
//! worker makes a new one (full handshake, or TLS resumption) for every request.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderName, CONTENT_TYPE, HOST};
use http::{Method, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::client::Resumption;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, RootCertStore};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::workload::Prepared;
use crate::LoadError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    /// HTTP/1.1, one keep-alive connection per worker.
    H1,
    /// HTTP/2, --h2-streams workers multiplexed on each connection.
    H2,
    /// HTTP/1.1 with a new connection and a full TLS handshake per request.
    H1New,
    /// HTTP/1.1 with a new connection per request, resuming the TLS session.
    H1Resume,
}

impl Protocol {
    pub fn connection_per_request(self) -> bool {
        matches!(self, Protocol::H1New | Protocol::H1Resume)
    }
}

/// Where and as whom to connect.
#[derive(Debug, Clone)]
pub struct Target {
    pub addr: SocketAddr,
    /// Name the server certificate must carry.
    pub server_name: String,
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Local addresses to connect from, in turn (loopback 127.0.0.0/8 reaches a gateway
    /// on 127.0.0.1 from any of them); empty: the system's choice.
    pub sources: Vec<std::net::IpAddr>,
}

/// Why one request failed; the label of the `errors` map in the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    Connect,
    Tls,
    Http,
    Timeout,
}

impl Failure {
    pub fn label(self) -> &'static str {
        match self {
            Failure::Connect => "connect",
            Failure::Tls => "tls_handshake",
            Failure::Http => "http",
            Failure::Timeout => "timeout",
        }
    }
}

pub struct Connector {
    target: Target,
    tls: TlsConnector,
    name: ServerName<'static>,
    protocol: Protocol,
    /// The next of `target.sources` to connect from.
    next_source: std::sync::atomic::AtomicUsize,
}

impl Connector {
    pub fn new(target: Target, protocol: Protocol) -> Result<Connector, LoadError> {
        let tls_err = |e: permitgate::tls::TlsError| {
            LoadError::Tls(permitgate::report::Report(&e).to_string())
        };
        let mut roots = RootCertStore::empty();
        for c in permitgate::tls::load_certs(&target.ca).map_err(tls_err)? {
            roots
                .add(c)
                .map_err(|e| LoadError::Tls(format!("CA certificate: {e}")))?;
        }
        let mut cfg = ClientConfig::builder_with_provider(permitgate::tls::crypto_provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| LoadError::Tls(e.to_string()))?
            .with_root_certificates(roots)
            .with_client_auth_cert(
                permitgate::tls::load_certs(&target.cert).map_err(tls_err)?,
                permitgate::tls::load_key(&target.key).map_err(tls_err)?,
            )
            .map_err(|e| LoadError::Tls(format!("client certificate: {e}")))?;
        cfg.alpn_protocols = vec![match protocol {
            Protocol::H2 => b"h2".to_vec(),
            _ => b"http/1.1".to_vec(),
        }];
        if protocol == Protocol::H1New {
            cfg.resumption = Resumption::disabled();
        }
        let name = ServerName::try_from(target.server_name.clone())
            .map_err(|e| LoadError::Tls(format!("server name: {e}")))?;
        Ok(Connector {
            target,
            tls: TlsConnector::from(Arc::new(cfg)),
            name,
            protocol,
            next_source: std::sync::atomic::AtomicUsize::new(0),
        })
    }

    /// A TCP connection, from the next source address if any were given.
    pub async fn tcp(&self) -> Result<TcpStream, Failure> {
        let sources = &self.target.sources;
        let tcp = if sources.is_empty() {
            TcpStream::connect(self.target.addr).await
        } else {
            let i = self
                .next_source
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let source = sources[i % sources.len()];
            let socket = match source {
                std::net::IpAddr::V4(_) => tokio::net::TcpSocket::new_v4(),
                std::net::IpAddr::V6(_) => tokio::net::TcpSocket::new_v6(),
            }
            .map_err(|_| Failure::Connect)?;
            socket
                .bind(SocketAddr::new(source, 0))
                .map_err(|_| Failure::Connect)?;
            socket.connect(self.target.addr).await
        }
        .map_err(|_| Failure::Connect)?;
        let _ = tcp.set_nodelay(true);
        Ok(tcp)
    }

    /// A TCP connection and its TLS handshake, ALPN as the protocol says.
    pub async fn tls(&self) -> Result<tokio_rustls::client::TlsStream<TcpStream>, Failure> {
        let tcp = self.tcp().await?;
        self.tls
            .connect(self.name.clone(), tcp)
            .await
            .map_err(|_| Failure::Tls)
    }

    /// The bytes of a ClientHello this connector would send, for replaying: the server
    /// answers each with its key exchange and signature; the replayer does no crypto.
    pub fn client_hello(&self) -> Result<Vec<u8>, LoadError> {
        let mut conn = rustls::ClientConnection::new(self.tls.config().clone(), self.name.clone())
            .map_err(|e| LoadError::Tls(e.to_string()))?;
        let mut hello = Vec::new();
        while conn.wants_write() {
            conn.write_tls(&mut hello)
                .map_err(|e| LoadError::Tls(e.to_string()))?;
        }
        Ok(hello)
    }

    pub async fn connect(&self) -> Result<Conn, Failure> {
        let io = TokioIo::new(self.tls().await?);
        if self.protocol == Protocol::H2 {
            let (send, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                .await
                .map_err(|_| Failure::Http)?;
            tokio::spawn(conn);
            Ok(Conn::H2(send))
        } else {
            let (send, conn) = hyper::client::conn::http1::handshake(io)
                .await
                .map_err(|_| Failure::Http)?;
            tokio::spawn(conn);
            Ok(Conn::H1(send))
        }
    }
}

/// An open connection.
pub enum Conn {
    H1(hyper::client::conn::http1::SendRequest<Full<Bytes>>),
    H2(hyper::client::conn::http2::SendRequest<Full<Bytes>>),
}

impl Conn {
    /// Another sender on the same connection: HTTP/2 multiplexes, HTTP/1.1 does not.
    pub fn share(&self) -> Option<Conn> {
        match self {
            Conn::H2(s) => Some(Conn::H2(s.clone())),
            Conn::H1(_) => None,
        }
    }

    /// Sends one request and reads the whole answer; returns its status.
    pub async fn send(&mut self, p: &Prepared, timeout: Duration) -> Result<u16, Failure> {
        Ok(self.exchange(p, timeout).await?.0)
    }

    /// Sends one request; returns the answer's status and body.
    pub async fn exchange(
        &mut self,
        p: &Prepared,
        timeout: Duration,
    ) -> Result<(u16, Bytes), Failure> {
        let json = [(CONTENT_TYPE, "application/json")];
        let answer = self.request(Method::POST, p.path, &json, p.body.clone(), true);
        let answer = tokio::time::timeout(timeout, answer)
            .await
            .map_err(|_| Failure::Timeout)??;
        Ok((answer.head.status.as_u16(), answer.body))
    }

    /// Sends `method path` with `headers` and `body` (HTTP/2: the path's absolute form)
    /// and reads the answer to its end; the body is kept only when `keep` (a download is
    /// counted, not held).
    pub async fn request(
        &mut self,
        method: Method,
        path: &str,
        headers: &[(HeaderName, &str)],
        body: Bytes,
        keep: bool,
    ) -> Result<Answer, Failure> {
        let mut req = Request::builder().method(method);
        req = match self {
            Conn::H1(_) => req.uri(path).header(HOST, "localhost"),
            Conn::H2(_) => req.uri(format!("https://localhost{path}")),
        };
        for (name, value) in headers {
            req = req.header(name, *value);
        }
        let req = req.body(Full::new(body)).map_err(|_| Failure::Http)?;
        let resp = match self {
            Conn::H1(s) => {
                s.ready().await.map_err(|_| Failure::Http)?;
                s.send_request(req).await
            }
            Conn::H2(s) => {
                s.ready().await.map_err(|_| Failure::Http)?;
                s.send_request(req).await
            }
        }
        .map_err(|_| Failure::Http)?;
        let (head, mut incoming) = resp.into_parts();
        if keep {
            let body = incoming
                .collect()
                .await
                .map_err(|_| Failure::Http)?
                .to_bytes();
            let len = body.len() as u64;
            return Ok(Answer { head, body, len });
        }
        let mut len = 0u64;
        while let Some(frame) = incoming.frame().await {
            let frame = frame.map_err(|_| Failure::Http)?;
            len += frame.data_ref().map_or(0, |d| d.len() as u64);
        }
        Ok(Answer {
            head,
            body: Bytes::new(),
            len,
        })
    }
}

/// What a request got back: status and headers, the body (when kept) and its length.
pub struct Answer {
    pub head: http::response::Parts,
    pub body: Bytes,
    pub len: u64,
}
