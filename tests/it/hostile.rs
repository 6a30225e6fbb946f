//! Hostile input over real sockets: bytes that are not TLS, clients that send nothing or
//! half a request, pipelined requests, chunked bodies over the limit, and HTTP/2 rapid
//! reset. Each time the gateway answers correctly or closes, never panics, and goes on
//! serving everyone else.

use std::time::Duration;

use crate::common::{h2_post, read_answer, read_until_closed, TestGateway};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

async fn still_serves(gw: &TestGateway) {
    let link = gw.sample("linked_pair").clone();
    let mut c = gw.client("bank").await;
    assert_eq!(c.post_json(&link.path, &link.body).await.status, 200);
}

#[tokio::test]
async fn bytes_that_are_not_tls_are_refused_and_counted() {
    let gw = TestGateway::with_server("").await;
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
    let gw =
        TestGateway::with_server("handshake_timeout_ms = 1000\nheader_read_timeout_ms = 300").await;
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
    let gw = TestGateway::with_server("header_read_timeout_ms = 1500").await;
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
    let gw = TestGateway::with_server("").await;
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
    let gw = TestGateway::with_server("").await;
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
    let gw = TestGateway::with_server("max_body_bytes = 4096").await;
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

/// One HTTP/2 frame: length, type, flags, stream id, payload (RFC 9113 §4.1).
fn h2_frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len())
        .expect("small frame")
        .to_be_bytes();
    let mut f = vec![len[1], len[2], len[3], kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

#[tokio::test]
async fn http2_rapid_reset_is_cut_short_and_others_are_served() {
    let gw = TestGateway::with_server("").await;
    let mut tls = gw.h2_tls("bank").await;
    let link = gw.sample("linked_pair").clone();
    // CVE-2023-44487: each stream's HEADERS and its RST_STREAM in the same write, so
    // they arrive together, before the server can accept the stream. Written as raw
    // frames: a client library may flush the HEADERS before the reset.
    // Request head in HPACK, literals without indexing: :method POST (static 3),
    // :scheme https (static 7), :path (name 4), :authority (name 1).
    let mut block = vec![
        0x83,
        0x87,
        0x04,
        u8::try_from(link.path.len()).expect("short"),
    ];
    block.extend_from_slice(link.path.as_bytes());
    block.extend_from_slice(&[0x01, 9]);
    block.extend_from_slice(b"localhost");
    let mut burst = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    burst.extend(h2_frame(0x4, 0, 0, &[])); // SETTINGS, none changed
    for i in 0..1000u32 {
        let stream = 2 * i + 1;
        burst.extend(h2_frame(0x1, 0x4, stream, &block)); // HEADERS, END_HEADERS
        burst.extend(h2_frame(0x3, 0, stream, &8u32.to_be_bytes())); // RST_STREAM CANCEL
    }
    // The server may stop reading before all of it is written.
    let _ = tls.write_all(&burst).await;
    let _ = tls.flush().await;
    // It answers with GOAWAY (type 0x7) and closes the connection.
    let mut seen = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        let mut buf = [0u8; 16384];
        loop {
            match tokio::io::AsyncReadExt::read(&mut tls, &mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the abusive connection stayed open");
    let mut at = 0;
    let mut goaway = false;
    while at + 9 <= seen.len() {
        let len = usize::from(seen[at]) << 16
            | usize::from(seen[at + 1]) << 8
            | usize::from(seen[at + 2]);
        goaway |= seen[at + 3] == 0x7;
        at += 9 + len;
    }
    assert!(goaway, "no GOAWAY among {} bytes", seen.len());
    // The server is not gone.
    still_serves(&gw).await;
}

#[tokio::test]
async fn http2_streams_reset_one_by_one_start_no_work() {
    let gw = TestGateway::with_server("").await;
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

/// The server side of a loopback TCP connection in /proc/net/tcp, by its two ports: its
/// send queue in bytes (`tx_queue`), or `None` once the socket is gone.
fn server_send_queue(server_port: u16, client_port: u16) -> Option<u64> {
    let table = std::fs::read_to_string("/proc/net/tcp").expect("/proc/net/tcp");
    let port = |addr: &str| u16::from_str_radix(addr.rsplit(':').next()?, 16).ok();
    table.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        (port(f.get(1)?)? == server_port && port(f.get(2)?)? == client_port)
            .then(|| u64::from_str_radix(f.get(4)?.split(':').next()?, 16).ok())?
    })
}

/// A client that pipelines requests and never reads the answers (its receive window shut)
/// makes the gateway hold no more than the send buffer for it, and is cut off (reset) when
/// a write has moved nothing for write_timeout_ms. It used to hold megabytes in the
/// kernel per connection, for as long as the client liked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_its_answers_is_cut_off_with_a_bounded_queue() {
    let gw = TestGateway::with_server("write_timeout_ms = 1000\nsend_buffer_bytes = 16384").await;
    let link = gw.sample("linked_pair").clone();
    let body = link.body.to_string();
    let request = format!(
        "POST {} HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        link.path,
        body.len()
    );
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .set_recv_buffer_size(4096)
        .expect("small receive buffer");
    let tcp = socket.connect(gw.addr()).await.expect("connect");
    let client_port = tcp.local_addr().expect("addr").port();
    let (cert, key) = gw.cert_paths("bank");
    let mut cfg =
        (*crate::common::client_config(&gw.demo.pki.ca_cert(), Some((&cert, &key)))).clone();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(cfg))
        .connect(name, tcp)
        .await
        .expect("handshake");
    let (_unread, mut wr) = tokio::io::split(tls);
    let writer = tokio::spawn(async move {
        for _ in 0..50_000 {
            if wr.write_all(request.as_bytes()).await.is_err() {
                return;
            }
        }
    });
    let server_port = gw.addr().port();
    let mut most = 0;
    let started = std::time::Instant::now();
    let gone = loop {
        match server_send_queue(server_port, client_port) {
            None => break started.elapsed(),
            Some(q) => most = most.max(q),
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "still open after 20 s, send queue {most} bytes"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    // The kernel reserves twice SO_SNDBUF; what is queued stays within it.
    assert!(most > 0, "the answers did queue up");
    assert!(most <= 2 * 16384, "send queue {most} bytes");
    assert!(gone >= Duration::from_millis(900), "cut off after {gone:?}");
    writer.abort();
    still_serves(&gw).await;
}
