//! The metrics listener exports what SREs need, and the numbers move with traffic.

use crate::common::{metric_value, Options, TestGateway};
use serde_json::json;

#[tokio::test]
async fn counters_and_histograms_move_with_requests() {
    let gw = TestGateway::start().await;
    let before = gw.metrics().await;
    let ok = "permitgate_requests_total{outcome=\"ok\",partner=\"bank\",route=\"link_check\"}";
    let bad = "permitgate_requests_total{outcome=\"invalid_document_number\",partner=\"bank\",route=\"link_check\"}";
    let count = "permitgate_request_duration_seconds_count{route=\"link_check\"}";
    assert_eq!(metric_value(&before, ok), 0.0);

    let mut c = gw.client("bank").await;
    let s = gw
        .samples()
        .iter()
        .find(|s| s.path == "/v1/link-checks")
        .expect("a link sample");
    for _ in 0..3 {
        assert_eq!(c.post_json(&s.path, &s.body).await.status, 200);
    }
    c.post_json(
        "/v1/link-checks",
        &json!({"travel_permit": "H1", "residence_permit": "810000199001011230"}),
    )
    .await
    .problem(422, "invalid-document-number");

    let after = gw.wait_metric(ok, 3.0).await;
    assert_eq!(metric_value(&after, bad), 1.0);
    assert_eq!(metric_value(&after, count), 4.0);
    assert_eq!(metric_value(&after, "permitgate_snapshot_version"), 1.0);
    assert_eq!(
        metric_value(&after, "permitgate_snapshot_documents"),
        gw.gateway
            .store
            .current()
            .as_ref()
            .map_or(0, |s| s.snapshot().len()) as f64
    );
    assert!(metric_value(&after, "permitgate_snapshot_published_timestamp_seconds") > 1.7e9);
    assert!(after.contains("permitgate_build_info{version=\""));
    // No personal data in any label.
    for field in ["travel_permit", "residence_permit"] {
        let n = s.body[field].as_str().expect("number");
        assert!(!after.contains(n), "{field} leaked into metrics");
    }
}

#[tokio::test]
async fn cache_counts_hits_and_misses_when_enabled() {
    let gw = TestGateway::start().await;
    // Cache is off by default: lookups do not touch it.
    let mut c = gw.client("rail-gate").await;
    let body = json!({"number": "H12345678"});
    c.post_json("/v1/document-status", &body).await;
    let m = gw.metrics().await;
    assert_eq!(
        metric_value(&m, "permitgate_cache_lookups_total{result=\"miss\"}"),
        0.0
    );
    drop(gw);

    let gw = TestGateway::start_with(Options {
        cache: true,
        ..Options::default()
    })
    .await;
    let mut c = gw.client("rail-gate").await;
    c.post_json("/v1/document-status", &body).await;
    c.post_json("/v1/document-status", &body).await;
    let m = gw.metrics().await;
    assert_eq!(
        metric_value(&m, "permitgate_cache_lookups_total{result=\"miss\"}"),
        1.0
    );
    assert_eq!(
        metric_value(&m, "permitgate_cache_lookups_total{result=\"hit\"}"),
        1.0
    );
}

#[tokio::test]
async fn probes_on_the_metrics_listener() {
    let gw = TestGateway::start_with(Options {
        load_snapshot: false,
        ..Options::default()
    })
    .await;
    let addr = gw.running.metrics_addr.expect("metrics");
    let get = |path: &'static str| async move {
        let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let (mut send, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .expect("handshake");
        tokio::spawn(conn);
        let req = http::Request::get(path)
            .header("host", "m")
            .body(http_body_util::Full::new(bytes::Bytes::new()))
            .expect("req");
        send.send_request(req)
            .await
            .expect("resp")
            .status()
            .as_u16()
    };
    assert_eq!(get("/healthz").await, 200);
    assert_eq!(get("/readyz").await, 503);
    gw.gateway.load_snapshot().expect("load");
    assert_eq!(get("/readyz").await, 200);
    assert_eq!(get("/nope").await, 404);
}
