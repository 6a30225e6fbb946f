//! The doors before authentication, over real sockets from other loopback addresses
//! (127.0.0.2 and up: strangers; the kit's clients come from 127.0.0.1, a partner
//! network): what anyone who reaches the port can hold is bounded per source, a partner
//! network keeps its own budget, and after the handshake a partner's connections are a
//! share that shrinks as others connect.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpSocket, TcpStream};

use crate::common::{metric_value, Options, TestGateway};

/// A TCP connection to the gateway from `source` (a loopback address).
async fn connect_from(gw: &TestGateway, source: &str) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(source.parse::<IpAddr>().expect("ip"), 0))?;
    socket.connect(gw.addr()).await
}

/// [`connect_from`], then the first byte of a TLS record (what a ClientHello starts
/// with), and nothing more: a handshake that stalls once the gateway has the connection
/// (the kernel hands it over only once something has arrived).
async fn stalled_from(gw: &TestGateway, source: &str) -> std::io::Result<TcpStream> {
    let mut s = connect_from(gw, source).await?;
    s.write_all(&[0x16]).await?;
    Ok(s)
}

/// Whether the gateway closed `s` (read returns 0 or an error) within `within`.
async fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 64];
    matches!(
        tokio::time::timeout(within, s.read(&mut buf)).await,
        Ok(Ok(0)) | Ok(Err(_))
    )
}

async fn rejected(gw: &TestGateway, reason: &str) -> f64 {
    metric_value(
        &gw.metrics().await,
        &format!("permitgate_connections_rejected_total{{reason=\"{reason}\"}}"),
    )
}

/// A gateway with `server_extra` in [server] and `unauthenticated` merged into
/// [unauthenticated].
async fn with_unauthenticated(server_extra: &'static str, unauthenticated: &str) -> TestGateway {
    TestGateway::start_with(Options {
        server_extra,
        edit_config: vec![crate::common::config_edit::merge(
            "unauthenticated",
            unauthenticated,
        )],
        ..Options::default()
    })
    .await
}

/// The burst of a source allowed 2 handshakes a second (4): stalled connections from
/// `source`, each let in.
async fn burst_from(gw: &TestGateway, source: &str) -> Vec<TcpStream> {
    let mut held = Vec::new();
    for _ in 0..4 {
        let mut s = stalled_from(gw, source).await.expect("connect");
        assert!(!closed_within(&mut s, Duration::from_millis(100)).await);
        held.push(s);
    }
    held
}

/// Idle TCP: connections that never send a byte are not handed to the gateway (the
/// kernel defers them until their handshake deadline); connections that start a handshake
/// and stall hold at most max_per_source from one stranger; the rest are closed on
/// arrival. Partners (a partner network, and another stranger) connect and are served
/// meanwhile. With one pool counted from accept, the same connections used to keep
/// everyone else out. (No shun here: each of the 40 must reach the door; the next test
/// shows the shun.)
#[tokio::test]
async fn idle_connections_from_one_source_hold_only_that_sources_budget() {
    let gw = with_unauthenticated(
        "max_connections = 16",
        "max_per_source = 8\nmax_connections = 64\nhandshakes_per_second_per_source = 1000.0\nshun_seconds = 0.0",
    )
    .await;
    let mut silent = Vec::new();
    for _ in 0..40 {
        silent.push(connect_from(&gw, "127.0.0.6").await.expect("connect"));
    }
    let mut idle = Vec::new();
    let mut closed = 0;
    for _ in 0..40 {
        let mut s = stalled_from(&gw, "127.0.0.2").await.expect("connect");
        // Refused connections are closed at once; held ones stay open.
        if closed_within(&mut s, Duration::from_millis(100)).await {
            closed += 1;
        } else {
            idle.push(s);
        }
    }
    assert_eq!(idle.len(), 8, "held: its source's budget");
    assert_eq!(closed, 32);
    assert_eq!(rejected(&gw, "per_source").await, 32.0);
    // The silent connections came first: had the kernel handed them over, they would be
    // ahead of these in the accept queue and held too (eight more, 127.0.0.6's budget).
    let m = gw.metrics().await;
    assert_eq!(
        metric_value(&m, "permitgate_unauthenticated_connections"),
        8.0,
        "silent connections reached the gateway"
    );

    // A partner network's client, and a stranger from another address, are served.
    let link = gw.sample("linked_pair").clone();
    let mut c = gw.client("bank").await;
    assert_eq!(c.post_json(&link.path, &link.body).await.status, 200);
    let tcp = connect_from(&gw, "127.0.0.3").await.expect("connect");
    let (cert, key) = gw.cert_paths("rail-gate");
    let mut cfg =
        (*crate::common::client_config(&gw.demo.pki.ca_cert(), Some((&cert, &key)))).clone();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let mut tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(cfg))
        .connect(name, tcp)
        .await
        .expect("a stranger from another address completes its handshake");
    tls.write_all(b"GET /healthz HTTP/1.1\r\nhost: localhost\r\n\r\n")
        .await
        .expect("request");
    let answer = crate::common::read_answer(&mut tls).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    drop((idle, silent));
}

/// Idle TCP by the thousand: connections that never send wait in the kernel's SYN queue,
/// as many as it holds (net.core.somaxconn; `.ci/run` raises it to 65,535), and none
/// reaches the gateway. With the listen backlog the gateway used to ask for (4,096), the
/// ones past it came in by SYN cookies, which the kernel hands over at once, deferred or
/// not: each then cost an accept and a refusal at the door.
#[tokio::test]
async fn silent_connections_wait_in_the_kernel_as_many_as_its_queue_holds() {
    let queue = permitgate_testkit::process::somaxconn().unwrap_or(128) as usize;
    let n = queue.saturating_sub(512).min(6_000);
    if let Ok((soft, hard)) = rlimit::Resource::NOFILE.get() {
        let want = (n as u64 + 1_024).min(hard);
        if soft < want {
            rlimit::Resource::NOFILE
                .set(want, hard)
                .expect("raise the open-file limit");
        }
    }
    let gw = with_unauthenticated("", "max_per_source = 8\nshun_seconds = 0.0").await;
    let mut silent = Vec::with_capacity(n);
    for i in 0..n {
        let s = connect_from(&gw, "127.0.0.9").await.unwrap_or_else(|e| {
            panic!("silent connection {i} of {n}: {e} (handed to the door, which refused it)")
        });
        silent.push(s);
    }
    // The partner's connection is accepted after every one of them that the kernel
    // handed over (one accept queue, in order), so the door has seen those by now.
    let link = gw.sample("linked_pair").clone();
    let mut c = gw.client("bank").await;
    assert_eq!(c.post_json(&link.path, &link.body).await.status, 200);
    let m = gw.metrics().await;
    assert_eq!(
        metric_value(&m, "permitgate_unauthenticated_connections"),
        0.0,
        "silent connections reached the gateway ({n} opened)"
    );
    assert_eq!(
        rejected(&gw, "per_source").await,
        0.0,
        "silent connections were refused at the door ({n} opened)"
    );
    drop(silent);
}

/// A source may start only so many handshakes a second: beyond its burst, connections
/// are closed on arrival (counted source_rate) until tokens come back.
#[tokio::test]
async fn a_source_starts_only_so_many_handshakes_a_second() {
    let gw = with_unauthenticated("", "handshakes_per_second_per_source = 2.0").await;
    // Burst 4: the first four connections are let in, the next ones closed.
    let held = burst_from(&gw, "127.0.0.4").await;
    let mut s = stalled_from(&gw, "127.0.0.4").await.expect("connect");
    assert!(closed_within(&mut s, Duration::from_millis(500)).await);
    assert_eq!(rejected(&gw, "source_rate").await, 1.0);
    // Another source of the same prefix has its own bucket.
    let mut s = stalled_from(&gw, "127.0.0.5").await.expect("connect");
    assert!(!closed_within(&mut s, Duration::from_millis(100)).await);
    drop(held);
}

/// A source turned away for its own limits is shunned: for `shun_seconds` the kernel
/// drops its connection attempts (a SYN never answered), so a flood's reconnections cost
/// the gateway no accept and no reset. Its neighbours connect meanwhile, and it connects
/// again once the shun ends.
#[tokio::test]
async fn a_source_turned_away_is_shunned_for_a_while() {
    let gw = with_unauthenticated(
        "",
        "handshakes_per_second_per_source = 2.0\nshun_seconds = 1.0",
    )
    .await;
    let held = burst_from(&gw, "127.0.0.7").await;
    let mut s = stalled_from(&gw, "127.0.0.7").await.expect("connect");
    assert!(closed_within(&mut s, Duration::from_millis(500)).await);
    gw.wait_metric("permitgate_shunned_sources", 1.0).await;
    let attempt =
        tokio::time::timeout(Duration::from_millis(300), connect_from(&gw, "127.0.0.7")).await;
    assert!(attempt.is_err(), "a shunned source's SYN is not answered");
    let neighbour = tokio::time::timeout(Duration::from_secs(2), connect_from(&gw, "127.0.0.8"))
        .await
        .expect("a neighbour is not shunned");
    assert!(neighbour.is_ok());
    gw.wait_metric_within("permitgate_shunned_sources", 0.0, Duration::from_secs(5))
        .await;
    let again = tokio::time::timeout(Duration::from_secs(2), connect_from(&gw, "127.0.0.7"))
        .await
        .expect("connects once the shun ended");
    assert!(again.is_ok());
    assert_eq!(rejected(&gw, "source_rate").await, 1.0);
    drop(held);
}

/// Idle TLS with a partner certificate: one partner holding every partner connection
/// cannot keep another out. The newcomer is below its fair share, so one of the hog's
/// connections is closed (gracefully) and the newcomer served. With one pool counted from
/// accept, the hog's connections refused the newcomer at accept.
#[tokio::test]
async fn a_partner_holding_every_connection_cannot_keep_another_out() {
    let gw = TestGateway::with_server("max_connections = 12").await;
    let mut hog = Vec::new();
    for _ in 0..12 {
        let mut c = gw.client("bank").await;
        assert_eq!(c.get("/healthz").await.status, 200);
        hog.push(c);
    }
    // The hog itself gets no thirteenth.
    let (cert, key) = gw.cert_paths("bank");
    let extra =
        crate::common::Client::connect(gw.addr(), &gw.demo.pki.ca_cert(), Some((&cert, &key)))
            .await;
    let refused = match extra {
        Err(_) => true,
        Ok(mut c) => c
            .try_request(http::Method::GET, "/healthz", None, bytes::Bytes::new())
            .await
            .is_err(),
    };
    assert!(refused, "the hog got a thirteenth connection");
    // The newcomer is served, again and again, on connections of its own.
    let status = gw.sample("travel_permit_lost_status").clone();
    let mut newcomer = Vec::new();
    for i in 0..4 {
        let mut rail = gw.client("rail-gate").await;
        let r = rail.post_json(&status.path, &status.body).await;
        assert_eq!(r.status, 200, "newcomer connection {i}");
        newcomer.push(rail);
    }
    let taken = rejected(&gw, "taken_back").await;
    assert!(taken >= 4.0, "hog connections taken back: {taken}");
    assert!(rejected(&gw, "partner_share").await >= 1.0);
    drop((hog, newcomer));
}
