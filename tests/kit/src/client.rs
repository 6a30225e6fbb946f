//! An mTLS client over one HTTP/1.1 keep-alive connection, and its answers.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, RootCertStore};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use permitgate::tls::{crypto_provider, load_certs, load_key};

pub fn client_config(ca: &Path, identity: Option<(&Path, &Path)>) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    for c in load_certs(ca).expect("ca") {
        roots.add(c).expect("add root");
    }
    let builder = ClientConfig::builder_with_provider(crypto_provider())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots);
    let cfg = match identity {
        Some((cert, key)) => builder
            .with_client_auth_cert(load_certs(cert).expect("cert"), load_key(key).expect("key"))
            .expect("client auth"),
        None => builder.with_no_client_auth(),
    };
    Arc::new(cfg)
}

pub struct Response {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Response {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn content_type(&self) -> &str {
        self.headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// Asserts a 200 answer (`what` and the body say which, when not).
    pub fn assert_ok(&self, what: impl std::fmt::Display) {
        assert_eq!(
            self.status,
            200,
            "{what}: {}",
            String::from_utf8_lossy(&self.body)
        );
    }

    /// Asserts a problem document of the given slug and returns it.
    pub fn problem(&self, status: u16, slug: &str) -> Value {
        assert_eq!(
            self.status.as_u16(),
            status,
            "body: {}",
            String::from_utf8_lossy(&self.body)
        );
        assert_eq!(self.content_type(), "application/problem+json");
        let v = self.json();
        assert_eq!(v["type"], format!("urn:permitgate:problem:{slug}"), "{v}");
        assert_eq!(v["status"], status);
        assert!(v["title"].as_str().is_some_and(|t| !t.is_empty()));
        v
    }
}

/// One HTTP/1.1 keep-alive connection over mTLS.
pub struct Client {
    send: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
}

impl Client {
    pub async fn connect(
        addr: SocketAddr,
        ca: &Path,
        identity: Option<(&Path, &Path)>,
    ) -> Result<Client, Box<dyn std::error::Error + Send + Sync>> {
        let mut cfg = (*client_config(ca, identity)).clone();
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        let tcp = TcpStream::connect(addr).await?;
        let tls = TlsConnector::from(Arc::new(cfg))
            .connect(ServerName::try_from("localhost")?, tcp)
            .await?;
        let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
        tokio::spawn(conn);
        Ok(Client { send })
    }

    pub async fn try_request(
        &mut self,
        method: Method,
        path: &str,
        content_type: Option<&str>,
        body: impl Into<Bytes>,
    ) -> Result<Response, hyper::Error> {
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header("host", "localhost");
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        let req = req.body(Full::new(body.into())).expect("request");
        self.try_request_with(req).await
    }

    /// Sends a request built by the caller (custom headers).
    pub async fn try_request_with(
        &mut self,
        req: Request<Full<Bytes>>,
    ) -> Result<Response, hyper::Error> {
        // The connection task takes the previous exchange's end on its own thread; a
        // request sent before it has is refused with "connection was not ready".
        self.send.ready().await?;
        let resp = self.send.send_request(req).await?;
        let (parts, body) = resp.into_parts();
        let body = body.collect().await?.to_bytes();
        Ok(Response {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }

    pub async fn post_json(&mut self, path: &str, body: &Value) -> Response {
        self.try_request(
            Method::POST,
            path,
            Some("application/json"),
            serde_json::to_vec(body).expect("json"),
        )
        .await
        .expect("response")
    }

    pub async fn post_raw(
        &mut self,
        path: &str,
        content_type: Option<&str>,
        body: impl Into<Bytes>,
    ) -> Response {
        self.try_request(Method::POST, path, content_type, body)
            .await
            .expect("response")
    }

    pub async fn get(&mut self, path: &str) -> Response {
        self.try_request(Method::GET, path, None, Bytes::new())
            .await
            .expect("response")
    }
}

/// `POST` of JSON with an `Idempotency-Key` (`None`: without one).
pub async fn post_idempotent(
    client: &mut Client,
    path: &str,
    key: Option<&str>,
    body: &Value,
) -> Response {
    let mut req = Request::builder()
        .method(Method::POST)
        .uri(path)
        .header("host", "localhost")
        .header("content-type", "application/json");
    if let Some(k) = key {
        req = req.header("idempotency-key", k);
    }
    let req = req
        .body(Full::new(Bytes::from(
            serde_json::to_vec(body).expect("json"),
        )))
        .expect("request");
    client.try_request_with(req).await.expect("response")
}
