//! Limits and overload over real mTLS sockets: requests beyond the concurrency limit are
//! shed at once, slow request heads and oversized heads are cut off, connections beyond
//! the limit are closed and counted, certificate expiry is exported.

use std::time::Duration;

use crate::common::{
    finish_request, metric_value, read_answer, read_until_closed, start_request, until_status,
    TestGateway,
};
use tokio::io::AsyncWriteExt;

#[tokio::test]
async fn a_partner_never_holds_more_than_its_share_of_the_slots() {
    let gw =
        TestGateway::with_server("max_concurrent_requests = 2\nmax_requests_per_partner = 1").await;
    let link = gw.sample("linked_pair").clone();
    let status = gw.sample("travel_permit_lost_status").clone();
    let body = link.body.to_string();
    // A bank request whose body is still arriving holds bank's only share.
    let mut slow = gw.raw_tls("bank").await.expect("connect");
    start_request(&mut slow, &link.path, &body).await;

    let mut bank = gw.client("bank").await;
    let shed = until_status(&mut bank, &link.path, &link.body, 503)
        .await
        .expect("bank's second request was never shed");
    let p = shed.problem(503, "overloaded");
    assert_eq!(shed.headers["retry-after"], "1");
    assert!(
        p["detail"]
            .as_str()
            .is_some_and(|d| d.contains("its share")),
        "{p}"
    );
    // Another partner is served meanwhile, and so are probes and the keys.
    let mut rail = gw.client("rail-gate").await;
    assert_eq!(rail.post_json(&status.path, &status.body).await.status, 200);
    assert_eq!(bank.get("/healthz").await.status, 200);
    assert_eq!(bank.get("/v1/keys").await.status, 200);

    // With rail-gate's share held too, the shared slots are all taken.
    let rail_body = status.body.to_string();
    let mut rail_slow = gw.raw_tls("rail-gate").await.expect("connect");
    start_request(&mut rail_slow, &status.path, &rail_body).await;
    let mut rail2 = gw.client("rail-gate").await;
    let p = rail2.post_json(&status.path, &status.body).await;
    p.problem(503, "overloaded");

    // The slow requests complete, and their slots are free again.
    let answer = finish_request(&mut slow, &body).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let answer = finish_request(&mut rail_slow, &rail_body).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert_eq!(bank.post_json(&link.path, &link.body).await.status, 200);
    let m = gw
        .wait_metric("permitgate_refused_total{reason=\"partner_share\"}", 2.0)
        .await;
    assert!(m.contains("permitgate_requests_total{outcome=\"overloaded\",partner=\"bank\""));
}

/// The only slot, held by a body still arriving, is taken back for another partner below
/// its fair share: that partner is served, the slow request gets 503 and its connection
/// is closed (its body was not read).
#[tokio::test]
async fn a_slow_body_gives_its_slot_to_a_partner_below_its_share() {
    let gw = TestGateway::with_server("max_concurrent_requests = 1").await;
    let link = gw.sample("linked_pair").clone();
    let status = gw.sample("travel_permit_lost_status").clone();
    let body = link.body.to_string();
    let mut slow = gw.raw_tls("bank").await.expect("connect");
    start_request(&mut slow, &link.path, &body).await;
    // The slow request holds the slot (the gateway has read its head).
    let mut bank = gw.client("bank").await;
    let shed = until_status(&mut bank, &link.path, &link.body, 503)
        .await
        .expect("bank's second request was never refused");
    let p = shed.problem(503, "overloaded");
    assert!(
        p["detail"]
            .as_str()
            .is_some_and(|d| d.contains("fair share")),
        "{p}"
    );
    let mut rail = gw.client("rail-gate").await;
    assert_eq!(rail.post_json(&status.path, &status.body).await.status, 200);
    let answer = read_until_closed(&mut slow).await;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("connection: close"),
        "{answer}"
    );
    gw.wait_metric("permitgate_refused_total{reason=\"preempted\"}", 1.0)
        .await;
    assert_eq!(bank.post_json(&link.path, &link.body).await.status, 200);
}

#[tokio::test]
async fn a_slow_request_head_is_cut_off() {
    let gw = TestGateway::with_server("header_read_timeout_ms = 300").await;
    let mut s = gw.raw_tls("bank").await.expect("connect");
    s.write_all(b"POST /v1/link-checks HTTP/1.1\r\nhost: localhost\r\n")
        .await
        .expect("partial head");
    s.flush().await.expect("flush");
    let answer = read_until_closed(&mut s).await;
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
        "{answer}"
    );
    // A client that sends its head at once is served as before; left idle, its
    // keep-alive connection is a slow head too, and is closed once the timeout passes
    // (read_until_closed fails the test if it is still open after 5 s).
    let mut s = gw.raw_tls("bank").await.expect("connect");
    s.write_all(b"GET /healthz HTTP/1.1\r\nhost: localhost\r\n\r\n")
        .await
        .expect("request");
    let answer = read_until_closed(&mut s).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        !answer.to_ascii_lowercase().contains("connection: close"),
        "closed with the answer, not by the timeout: {answer}"
    );
}

#[tokio::test]
async fn an_oversized_request_head_is_refused() {
    let gw = TestGateway::with_server("max_header_bytes = 8192").await;
    let mut s = gw.raw_tls("bank").await.expect("connect");
    let big = "a".repeat(20_000);
    let head = format!("GET /healthz HTTP/1.1\r\nhost: localhost\r\nx-padding: {big}\r\n\r\n");
    // The server may close before reading it all; a failed write is part of the refusal.
    let _ = s.write_all(head.as_bytes()).await;
    let _ = s.flush().await;
    let answer = read_until_closed(&mut s).await;
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 431"),
        "{answer}"
    );
    let mut c = gw.client("bank").await;
    assert_eq!(
        c.get("/healthz").await.status,
        200,
        "normal heads still pass"
    );
}

#[tokio::test]
async fn connections_beyond_the_limit_are_closed_and_counted() {
    let gw = TestGateway::with_server("max_connections = 2").await;
    let mut a = gw.client("bank").await;
    let mut b = gw.client("bank").await;
    assert_eq!(a.get("/healthz").await.status, 200);
    assert_eq!(b.get("/healthz").await.status, 200);
    let (cert, key) = gw.cert_paths("bank");
    let third =
        crate::common::Client::connect(gw.addr(), &gw.demo.pki.ca_cert(), Some((&cert, &key)))
            .await;
    let refused = match third {
        Err(_) => true,
        Ok(mut c) => c
            .try_request(http::Method::GET, "/healthz", None, bytes::Bytes::new())
            .await
            .is_err(),
    };
    assert!(refused, "a third connection was served");
    gw.wait_metric(
        "permitgate_connections_rejected_total{reason=\"partner_share\"}",
        1.0,
    )
    .await;
    let m = gw.metrics().await;
    assert_eq!(metric_value(&m, "permitgate_connections_open"), 2.0);

    // A freed slot is usable again.
    drop(a);
    let mut served = false;
    for _ in 0..100 {
        if let Ok(mut c) =
            crate::common::Client::connect(gw.addr(), &gw.demo.pki.ca_cert(), Some((&cert, &key)))
                .await
        {
            if c.try_request(http::Method::GET, "/healthz", None, bytes::Bytes::new())
                .await
                .is_ok_and(|r| r.status == 200)
            {
                served = true;
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(served, "the freed connection slot was never reused");
    assert_eq!(b.get("/healthz").await.status, 200);
}

#[tokio::test]
async fn certificate_expiry_is_exported() {
    let gw = TestGateway::start().await;
    let m = gw.metrics().await;
    let now = time::OffsetDateTime::now_utc().unix_timestamp() as f64;
    for cert in ["server", "client_ca"] {
        let v = metric_value(
            &m,
            &format!("permitgate_certificate_expiry_timestamp_seconds{{certificate=\"{cert}\"}}"),
        );
        assert!(v > now + 86_400.0, "{cert}: {v}");
        let expected = permitgate::tls::not_after(&match cert {
            "server" => gw.demo.pki.server_cert(),
            _ => gw.demo.pki.ca_cert(),
        })
        .expect("not after") as f64;
        assert_eq!(v, expected, "{cert}");
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_request_that_waited_too_long_to_be_read_is_shed() {
    let gw = TestGateway::with_server("max_queue_delay_ms = 50").await;
    let s = gw.sample("linked_pair").clone();
    let body = s.body.to_string();
    let request = format!(
        "POST {} HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        s.path,
        body.len()
    );
    let mut late = gw.raw_tls("bank").await.expect("connect");
    late.write_all(request.as_bytes()).await.expect("request");
    late.flush().await.expect("flush");
    // The gateway shares this test's only thread: blocking it keeps the request unread
    // in the socket, as a saturated gateway would.
    std::thread::sleep(Duration::from_millis(200));
    let answer = read_answer(&mut late).await;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(
        answer.contains("urn:permitgate:problem:overloaded") && answer.contains("waited"),
        "{answer}"
    );
    // Read at once, the same request is answered.
    let mut c = gw.client("bank").await;
    assert_eq!(c.post_json(&s.path, &s.body).await.status, 200);
}
