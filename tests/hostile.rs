//! Hostile input over real sockets: bytes that are not TLS, clients that send nothing or
//! half a request, pipelined requests, chunked bodies over the limit, and HTTP/2 rapid
//! reset. Each time the gateway answers correctly or closes, never panics, and goes on
//! serving everyone else.

mod common;

use std::time::Duration;

use common::{h2_post, read_answer, read_until_closed, Options, TestGateway};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

async fn gateway(server_extra: &'static str) -> TestGateway {
    TestGateway::start_with(Options {
        server_extra,
        ..Options::default()
    })
    .await
}

async fn still_serves(gw: &TestGateway) {
    let link = gw.sample("linked_pair").clone();
    let mut c = gw.client("bank").await;
    assert_eq!(c.post_json(&link.path, &link.body).await.status, 200);
}

#[tokio::test]
async fn bytes_that_are_not_tls_are_refused_and_counted() {
    let gw = gateway("").await;
    let garbage: [&[u8]; 3] = [
        b"GET /v1/link-checks HTTP/1.1\r\nhost: x\r\n\r\n",
        &[0x16, 0x03, 0x01, 0xff, 0xff, 0x01, 0x00],
        &[0xa5; 4096],
    ];
    for g in garbage {
        let mut s = TcpStream::connect(gw.addr()).await.expect("connect");
        let _ = s.write_all(g).await;
        let answer = read_until_closed(&mut s).await;
        assert!(!answer.contains("HTTP/1.1 200"), "{answer}");
    }
    let m = gw
        .wait_metric(
            "permitgate_tls_handshake_failures_total{reason=\"protocol\"}",
            3.0,
        )
        .await;
    assert!(m.contains("permitgate_tls_handshake_failures_total"));
    still_serves(&gw).await;
}

#[tokio::test]
async fn a_client_that_connects_and_sends_nothing_is_cut_off() {
    // Handshakes run at idle priority: leave a busy test machine time for them.
    let gw = gateway("handshake_timeout_ms = 1000\nheader_read_timeout_ms = 300").await;
    // Silent before TLS: the handshake deadline closes it.
    let mut s = TcpStream::connect(gw.addr()).await.expect("connect");
    assert_eq!(read_until_closed(&mut s).await, "");
    gw.wait_metric(
        "permitgate_tls_handshake_failures_total{reason=\"timeout\"}",
        1.0,
    )
    .await;
    // Silent after TLS: the request-head deadline closes it.
    let mut t = gw.raw_tls("bank").await.expect("handshake");
    let answer = read_until_closed(&mut t).await;
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
        "{answer}"
    );
    // Silent after choosing HTTP/2: no connection preface, and no request either. Closed
    // at the deadline, not a second deadline later (there is no session to GOAWAY).
    let gw = gateway("header_read_timeout_ms = 1500").await;
    let mut t = gw.h2_tls("bank").await;
    let started = std::time::Instant::now();
    read_until_closed(&mut t).await;
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(1400) && took < Duration::from_millis(2900),
        "closed after {took:?}"
    );
    still_serves(&gw).await;
}

#[tokio::test]
async fn a_truncated_request_gets_no_answer_but_an_error_or_a_close() {
    let gw = gateway("").await;
    let mut s = gw.raw_tls("bank").await.expect("connect");
    s.write_all(
        b"POST /v1/link-checks HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{\"travel_permit\":\"H",
    )
    .await
    .expect("write");
    s.shutdown().await.expect("half close");
    let answer = read_until_closed(&mut s).await;
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 400"),
        "{answer}"
    );
    // A head cut in the middle of a header line.
    let mut s = gw.raw_tls("bank").await.expect("connect");
    s.write_all(b"POST /v1/link-checks HTTP/1.1\r\nhost: loc")
        .await
        .expect("write");
    s.shutdown().await.expect("half close");
    let answer = read_until_closed(&mut s).await;
    assert!(
        !answer.contains(" 500 ") && !answer.contains(" 200 "),
        "{answer}"
    );
    still_serves(&gw).await;
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order() {
    let gw = gateway("").await;
    let link = gw.sample("linked_pair").clone();
    let other = gw.sample("valid_but_not_linked").clone();
    let req = |body: &serde_json::Value, last: bool| {
        let body = body.to_string();
        format!(
            "POST {} HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: {}\r\n{}\r\n{body}",
            link.path,
            body.len(),
            if last { "connection: close\r\n" } else { "" }
        )
    };
    let mut s = gw.raw_tls("bank").await.expect("connect");
    let both = req(&link.body, false) + &req(&other.body, true);
    s.write_all(both.as_bytes())
        .await
        .expect("write both at once");
    let answer = read_until_closed(&mut s).await;
    let responses: Vec<&str> = answer.split("HTTP/1.1 ").skip(1).collect();
    assert_eq!(responses.len(), 2, "{answer}");
    assert!(responses[0].starts_with("200") && responses[1].starts_with("200"));
    let first = responses[0].find("\"result\":\"linked\"");
    let second = responses[1].find("\"result\":\"not_linked\"");
    assert!(
        first.is_some() && second.is_some(),
        "answers out of order: {answer}"
    );
}

#[tokio::test]
async fn a_chunked_body_over_the_limit_is_refused() {
    let gw = gateway("max_body_bytes = 4096").await;
    let mut s = gw.raw_tls("bank").await.expect("connect");
    s.write_all(
        b"POST /v1/link-checks HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n",
    )
    .await
    .expect("head");
    // 64 chunks of 1 KiB: no length up front, so only counting can stop it.
    let chunk = format!("400\r\n{}\r\n", "a".repeat(1024));
    for _ in 0..64 {
        if s.write_all(chunk.as_bytes()).await.is_err() {
            break;
        }
    }
    let _ = s.write_all(b"0\r\n\r\n").await;
    let answer = read_answer(&mut s).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(
        answer.contains("urn:permitgate:problem:body-too-large"),
        "{answer}"
    );
    still_serves(&gw).await;
}

#[tokio::test]
async fn http2_rapid_reset_is_cut_short_and_others_are_served() {
    let gw = gateway("").await;
    let tls = gw.h2_tls("bank").await;
    let (mut h2, conn) = h2::client::handshake(tls).await.expect("h2 handshake");
    let conn = tokio::spawn(conn);
    let link = gw.sample("linked_pair").clone();
    // Open streams and reset them at once, a batch at a time, over and over
    // (CVE-2023-44487): HEADERS and RST_STREAM arrive together, before the server has
    // accepted the streams.
    let mut sent = 0;
    let mut refused = false;
    'flood: for _ in 0..200 {
        let mut streams = Vec::new();
        for _ in 0..100 {
            let ready = tokio::time::timeout(Duration::from_secs(2), h2.clone().ready()).await;
            let Ok(Ok(mut ready)) = ready else {
                refused = true;
                break 'flood;
            };
            let req = h2_post(&link.path);
            match ready.send_request(req, false) {
                Ok((_, stream)) => streams.push(stream),
                Err(_) => {
                    refused = true;
                    break 'flood;
                }
            }
            h2 = ready;
        }
        for mut s in streams {
            s.send_reset(h2::Reason::CANCEL);
            sent += 1;
        }
        tokio::task::yield_now().await;
    }
    assert!(
        refused,
        "the server accepted {sent} rapid resets without closing"
    );
    // The abusive connection is gone; the server is not.
    let ended = tokio::time::timeout(Duration::from_secs(5), conn).await;
    assert!(ended.is_ok(), "the abusive connection stayed open");
    still_serves(&gw).await;
}

#[tokio::test]
async fn http2_streams_reset_one_by_one_start_no_work() {
    let gw = gateway("").await;
    let (mut h2, conn) = h2::client::handshake(gw.h2_tls("bank").await)
        .await
        .expect("h2 handshake");
    tokio::spawn(conn);
    let link = gw.sample("linked_pair").clone();
    for _ in 0..5_000 {
        let Ok(Ok(mut ready)) =
            tokio::time::timeout(Duration::from_secs(2), h2.clone().ready()).await
        else {
            break;
        };
        let req = h2_post(&link.path);
        let Ok((_, mut stream)) = ready.send_request(req, false) else {
            break;
        };
        stream.send_reset(h2::Reason::CANCEL);
        h2 = ready;
    }
    // No reset stream was answered (none is counted); the server serves on.
    still_serves(&gw).await;
    let m = gw.metrics().await;
    let answered: f64 = m
        .lines()
        .filter(|l| {
            l.starts_with("permitgate_requests_total") && l.contains("route=\"link_check\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(answered, 1.0, "only the normal request was answered");
}
