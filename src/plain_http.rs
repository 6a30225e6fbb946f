//! The plain-HTTP listeners (the gateway's and the origin's metrics and probes, the demo's
//! verifier page): one accept loop, each request answered at once by a function of it.
//! Nothing here is for partners: no TLS, no bodies read.

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Serves `listener` with `respond` until `stop` turns (or forever without one).
pub async fn serve<F>(listener: TcpListener, respond: F, mut stop: Option<watch::Receiver<bool>>)
where
    F: Fn(&Request<Incoming>) -> Response<Full<Bytes>> + Clone + Send + Sync + 'static,
{
    loop {
        let accepted = match stop.as_mut() {
            Some(stop) => tokio::select! {
                r = listener.accept() => r,
                _ = stop.changed() => return,
            },
            None => listener.accept().await,
        };
        let Ok((stream, _)) = accepted else {
            // Out of descriptors, say: wait instead of spinning.
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let respond = respond.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req: Request<Incoming>| {
                let r = respond(&req);
                async move { Ok::<_, Infallible>(r) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}
