//! The plain-HTTP ops listener: Prometheus metrics and orchestrator probes; no partner
//! data here.

use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::Gateway;

/// Plain-HTTP listener for Prometheus and orchestrator probes; no partner data here.
pub(super) async fn metrics_loop(
    gw: Arc<Gateway>,
    listener: TcpListener,
    stop: watch::Receiver<bool>,
) {
    let answer = move |req: &Request<Incoming>| ops_response(&gw, req.uri().path());
    crate::plain_http::serve(listener, answer, Some(stop)).await;
}

fn ops_response(gw: &Gateway, path: &str) -> Response<Full<Bytes>> {
    let (status, ctype, body) = match path {
        "/metrics" => {
            if let Some(state) = gw.store.current().as_ref() {
                gw.metrics.served.as_of(gw.clock.now(), state.view().info());
            }
            gw.app.observe_admission();
            (
                StatusCode::OK,
                "text/plain; version=0.0.4",
                gw.metrics.encode(),
            )
        }
        "/healthz" => (StatusCode::OK, "text/plain", b"alive\n".to_vec()),
        "/readyz" if gw.app.readiness().is_ok() => {
            (StatusCode::OK, "text/plain", b"ready\n".to_vec())
        }
        "/readyz" => (
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain",
            b"not ready\n".to_vec(),
        ),
        _ => (
            StatusCode::NOT_FOUND,
            "text/plain",
            b"try /metrics\n".to_vec(),
        ),
    };
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(ctype),
    );
    r
}
