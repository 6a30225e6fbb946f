//! The HTTP client object_store's S3 store runs on: hyper over rustls with ring, the
//! stack the gateway already serves and follows HTTPS sources with, instead of reqwest and
//! a second crypto provider (aws-lc-rs, a C build) in the serving binary. Server
//! certificates are checked against the system's roots, as reqwest's platform verifier
//! did.

use std::time::Duration;

use http_body_util::BodyExt;
use hyper_util::client::legacy::connect::HttpConnector as TcpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use object_store::client::{
    ClientOptions, HttpClient, HttpConnector, HttpError, HttpErrorKind, HttpRequest,
    HttpRequestBody, HttpResponse, HttpResponseBody, HttpService,
};

/// How long a request may take until its answer's head (object_store's own default); the
/// body is the caller's to bound.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Makes [`HyperClient`]s for object_store.
#[derive(Debug, Default)]
pub struct HyperConnector;

impl HttpConnector for HyperConnector {
    fn connect(&self, _options: &ClientOptions) -> object_store::Result<HttpClient> {
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_native_roots()
            .map_err(|e| object_store::Error::Generic {
                store: "S3",
                source: Box::new(e),
            })?
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector({
                let mut tcp = TcpConnector::new();
                tcp.enforce_http(false);
                tcp.set_connect_timeout(Some(CONNECT_TIMEOUT));
                tcp
            });
        let client = Client::builder(TokioExecutor::new()).build(https);
        Ok(HttpClient::new(HyperClient(client)))
    }
}

/// One pooled hyper client.
#[derive(Debug)]
pub struct HyperClient(Client<hyper_rustls::HttpsConnector<TcpConnector>, HttpRequestBody>);

#[async_trait::async_trait]
impl HttpService for HyperClient {
    async fn call(&self, req: HttpRequest) -> Result<HttpResponse, HttpError> {
        let answer = tokio::time::timeout(REQUEST_TIMEOUT, self.0.request(req))
            .await
            .map_err(|e| HttpError::new(HttpErrorKind::Timeout, e))?
            .map_err(|e| {
                let kind = if e.is_connect() {
                    HttpErrorKind::Connect
                } else {
                    HttpErrorKind::Request
                };
                HttpError::new(kind, e)
            })?;
        let (parts, body) = answer.into_parts();
        let body = body.map_err(|e| HttpError::new(HttpErrorKind::Decode, e));
        Ok(HttpResponse::from_parts(parts, HttpResponseBody::new(body)))
    }
}
