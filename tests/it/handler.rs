//! The request path without sockets: `App::handle` called directly, as linkerd tests its
//! admin server with `oneshot`. Routing, admission order and body deadlines, fast.

use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::{BodyExt, Full};
use permitgate::http::{App, Caller};
use permitgate::tls::Leaf;
use serde_json::Value;

use crate::common::{Options, TestGateway};

fn caller(partner: &str) -> Caller {
    Caller::new(Some(Leaf {
        partner_id: Some(partner.to_owned()),
        issued_as: (Vec::new(), vec![1]),
        // A year from now: no warning on the answers.
        not_after: time::OffsetDateTime::now_utc().unix_timestamp() + 365 * 86_400,
    }))
}

fn request(method: Method, path: &str, body: &str) -> Request<Full<Bytes>> {
    Request::builder()
        .method(method)
        .uri(path)
        .header("host", "localhost")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_owned())))
        .expect("request")
}

async fn answer<B>(app: &App, partner: &str, req: Request<B>) -> (u16, Value)
where
    B: hyper::body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let r = app.handle(&caller(partner), req, None).await;
    let status = r.status().as_u16();
    let body = r.into_body().collect().await.expect("body").to_bytes();
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

#[tokio::test]
async fn every_route_answers_its_method_and_refuses_the_other() {
    let gw = TestGateway::start().await;
    let app = gw.gateway.app();
    // Every route of the table (the method is judged before the partner).
    use permitgate::http::route::Path;
    use permitgate::http::Route;
    use strum::VariantArray;
    let mut checked = 0;
    for &route in Route::VARIANTS {
        let spec = route.spec();
        let path = match spec.path {
            Path::Exact(paths) => paths[0].to_owned(),
            Path::Prefix(prefix) => format!("{prefix}x"),
            Path::Any => continue,
        };
        let method = spec.method;
        let other = if method == Method::GET {
            Method::POST
        } else {
            Method::GET
        };
        let r = app
            .handle(&caller("bank"), request(other, &path, "{}"), None)
            .await;
        assert_eq!(r.status(), 405, "{path}");
        assert_eq!(r.headers()["allow"], method.as_str(), "{path}");
        checked += 1;
    }
    assert_eq!(
        checked,
        Route::VARIANTS.len() - 1,
        "every route but Unknown"
    );
    let (status, p) = answer(app, "bank", request(Method::GET, "/v2/nothing", "")).await;
    assert_eq!(
        (status, p["type"].as_str()),
        (404, Some("urn:permitgate:problem:not-found"))
    );
}

#[tokio::test]
async fn refusals_come_in_admission_order() {
    let gw = TestGateway::start().await;
    let app = gw.gateway.app();
    let link = gw.sample("linked_pair").clone();
    let body = link.body.to_string();
    // Unknown partner before scope, scope before content type, content type before body.
    let (s, p) = answer(app, "stranger", request(Method::POST, &link.path, &body)).await;
    assert_eq!(
        (s, p["type"].as_str()),
        (403, Some("urn:permitgate:problem:unknown-partner"))
    );
    let (s, p) = answer(
        app,
        "rail-gate",
        request(Method::POST, &link.path, "not json"),
    )
    .await;
    assert_eq!(
        (s, p["type"].as_str()),
        (403, Some("urn:permitgate:problem:scope-missing"))
    );
    let mut req = request(Method::POST, &link.path, &body);
    req.headers_mut().remove("content-type");
    let (s, _) = answer(app, "bank", req).await;
    assert_eq!(s, 415);
    let (s, p) = answer(app, "bank", request(Method::POST, &link.path, &body)).await;
    assert_eq!((s, p["result"].as_str()), (200, Some("linked")));
    // HTTP/1.1 without Host, before anything else.
    let mut req = request(Method::POST, &link.path, &body);
    req.headers_mut().remove("host");
    let (s, p) = answer(app, "stranger", req).await;
    assert_eq!(
        (s, p["type"].as_str()),
        (400, Some("urn:permitgate:problem:invalid-host"))
    );
}

#[tokio::test]
async fn a_body_that_never_completes_gets_408() {
    let gw = TestGateway::start_with(Options {
        server_extra: "body_read_timeout_ms = 200",
        ..Options::default()
    })
    .await;
    let app = gw.gateway.app();
    let link = gw.sample("linked_pair").clone();
    let (mut tx, body) =
        http_body_util::channel::Channel::<Bytes, std::convert::Infallible>::new(1);
    let req = Request::builder()
        .method(Method::POST)
        .uri(&link.path)
        .header("host", "localhost")
        .header("content-type", "application/json")
        .body(body)
        .expect("request");
    let feed = tokio::spawn(async move {
        let _ = tx.send_data(Bytes::from_static(b"{\"travel_")).await;
        tokio::time::sleep(Duration::from_secs(30)).await;
    });
    let r = tokio::time::timeout(
        Duration::from_secs(5),
        app.handle(&caller("bank"), req, None),
    )
    .await
    .expect("answered at the deadline");
    assert_eq!(r.status(), 408);
    assert_eq!(r.headers()["connection"], "close");
    feed.abort();
}
