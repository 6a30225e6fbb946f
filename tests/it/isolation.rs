//! No partner can take another's answers away. While `bank` (a partner with a valid
//! scope) holds request bodies open over HTTP/1.1 or HTTP/2, or dribbles one, or `relay`
//! holds replication long-polls, `rail-gate` is answered every time; the attacker gets
//! its own share and no more. Real mTLS over real sockets; slots are made scarce so that
//! a gateway without these bounds refuses the victim within a few dozen requests.

use std::time::Duration;

use crate::common::{config_edit, h2_post, metric_value, read_until_closed, Options, TestGateway};
use bytes::Bytes;
use tokio::io::AsyncWriteExt;

const SCARCE: &str = "max_concurrent_requests = 64\nmax_requests_per_partner = 16";

/// `rail-gate` asks `n` times, on a connection opened now; every answer must be 200.
async fn victim_is_served(gw: &TestGateway, n: usize) {
    let s = gw.sample("travel_permit_lost_status").clone();
    let mut c = gw.client("rail-gate").await;
    for i in 0..n {
        let r = c.post_json(&s.path, &s.body).await;
        r.assert_ok(format!("victim refused at request {i}"));
    }
}

/// A request head declaring a 60 000-byte body, and the first few bytes of it.
fn unfinished_head(path: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: 60000\r\n\r\n{{\"travel_"
    )
}

#[tokio::test]
async fn slow_http1_bodies_hold_only_their_partners_share() {
    let gw = TestGateway::with_server(SCARCE).await;
    let link = gw.sample("linked_pair").clone();
    let mut held = Vec::new();
    for _ in 0..100 {
        let mut s = gw.raw_tls("bank").await.expect("connect");
        s.write_all(unfinished_head(&link.path).as_bytes())
            .await
            .expect("head");
        s.flush().await.expect("flush");
        held.push(s);
    }
    // The gateway has read all hundred heads: sixteen hold bank's share, the other
    // eighty-four were refused.
    gw.wait_metric("permitgate_refused_total{reason=\"partner_share\"}", 84.0)
        .await;
    victim_is_served(&gw, 50).await;
    // The attacker itself is held to its share.
    let r = gw
        .client("bank")
        .await
        .post_json(&link.path, &link.body)
        .await;
    r.problem(503, "overloaded");
    gw.wait_metric("permitgate_refused_total{reason=\"partner_share\"}", 85.0)
        .await;
    drop(held);
}

/// Eight partners together (colluding, or only busy) fill every slot with bodies that never
/// arrive; a ninth, below its fair share, is served every time, and the eight, over theirs,
/// get no more. With a fixed share per partner, four of them were enough to refuse it.
#[tokio::test]
async fn eight_partners_holding_every_slot_cannot_refuse_a_ninth() {
    let colluders: Vec<String> = (0..8).map(|i| format!("colluder-{i}")).collect();
    let gw = TestGateway::start_with(Options {
        server_extra: "max_concurrent_requests = 64",
        edit_config: colluders
            .iter()
            .map(|id| config_edit::add_partner(id, "scopes = [\"link_check\"]"))
            .collect(),
        ..Options::default()
    })
    .await;
    let link = gw.sample("linked_pair").clone();
    let mut held = Vec::new();
    for id in &colluders {
        gw.issue_partner(id);
        for _ in 0..9 {
            let mut s = gw.raw_tls(id).await.expect("connect");
            s.write_all(unfinished_head(&link.path).as_bytes())
                .await
                .expect("head");
            s.flush().await.expect("flush");
            held.push(s);
        }
    }
    // 72 heads read: 64 hold every slot, 8 were refused, at their share or taken back for
    // a colluder below its own.
    let refused = |m: &str| {
        metric_value(m, "permitgate_refused_total{reason=\"partner_share\"}")
            + metric_value(m, "permitgate_refused_total{reason=\"preempted\"}")
    };
    let mut m = gw.metrics().await;
    for _ in 0..100 {
        if refused(&m) == 8.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        m = gw.metrics().await;
    }
    assert_eq!(refused(&m), 8.0, "{m}");
    let before = metric_value(&m, "permitgate_refused_total{reason=\"preempted\"}");
    victim_is_served(&gw, 50).await;
    let m = gw.metrics().await;
    assert_eq!(
        metric_value(&m, "permitgate_refused_total{reason=\"concurrency\"}"),
        0.0,
        "{m}"
    );
    assert!(
        metric_value(&m, "permitgate_refused_total{reason=\"preempted\"}") > before,
        "the victim's slots were taken back from the colluders: {m}"
    );
    drop(held);
}

#[tokio::test]
async fn slow_http2_streams_hold_only_their_partners_share() {
    let gw = TestGateway::with_server(SCARCE).await;
    let link = gw.sample("linked_pair").clone();
    let mut keep = Vec::new();
    for _ in 0..2 {
        let (mut h2, conn) = h2::client::handshake(gw.h2_tls("bank").await)
            .await
            .expect("h2 handshake");
        keep.push(tokio::spawn(async move {
            let _ = conn.await;
        }));
        for _ in 0..64 {
            h2 = h2.ready().await.expect("stream capacity");
            let (answer, mut body) = h2.send_request(h2_post(&link.path), false).expect("open");
            body.send_data(Bytes::from_static(b"{\"travel_"), false)
                .expect("a few bytes");
            keep.push(tokio::spawn(async move {
                let _body = body;
                let _ = answer.await;
                std::future::pending::<()>().await;
            }));
        }
    }
    // Every stream's head read: sixteen hold bank's share, the other 112 were refused.
    gw.wait_metric("permitgate_refused_total{reason=\"partner_share\"}", 112.0)
        .await;
    gw.wait_metric("permitgate_admission_in_use{pool=\"request_slots\"}", 16.0)
        .await;
    victim_is_served(&gw, 50).await;
    let m = gw.metrics().await;
    assert!(
        metric_value(&m, "permitgate_refused_total{reason=\"concurrency\"}") == 0.0,
        "the attacker reached the shared limit: {m}"
    );
    for t in keep {
        t.abort();
    }
}

#[tokio::test]
async fn a_body_dribbled_byte_by_byte_is_cut_at_the_deadline() {
    let gw = TestGateway::with_server("body_read_timeout_ms = 1000").await;
    let link = gw.sample("linked_pair").clone();
    let body = link.body.to_string();
    // HTTP/1.1: 408 body-timeout, and the connection is closed.
    let mut s = gw.raw_tls("bank").await.expect("connect");
    let head = format!(
        "POST {} HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        link.path,
        body.len()
    );
    s.write_all(head.as_bytes()).await.expect("head");
    let (mut rd, mut wr) = tokio::io::split(s);
    let dribble = tokio::spawn(async move {
        for b in body.bytes() {
            if wr.write_all(&[b]).await.is_err() || wr.flush().await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    });
    let started = std::time::Instant::now();
    let answer = read_until_closed(&mut rd).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("body-timeout"), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("connection: close"),
        "{answer}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    dribble.abort();

    // HTTP/2: the stream gets 408.
    let (h2, conn) = h2::client::handshake(gw.h2_tls("bank").await)
        .await
        .expect("h2 handshake");
    let conn = tokio::spawn(conn);
    let mut h2 = h2.ready().await.expect("ready");
    let (answer, mut send) = h2.send_request(h2_post(&link.path), false).expect("open");
    let dribble = tokio::spawn(async move {
        for _ in 0..40 {
            if send.send_data(Bytes::from_static(b" "), false).is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    });
    let r = tokio::time::timeout(Duration::from_secs(5), answer)
        .await
        .expect("answered in time")
        .expect("response");
    assert_eq!(r.status(), 408);
    dribble.abort();
    conn.abort();
    gw.wait_metric("permitgate_refused_total{reason=\"body_timeout\"}", 2.0)
        .await;
}

#[tokio::test]
async fn held_long_polls_wait_on_their_own_budget() {
    let gw = TestGateway::with_server(
        "max_concurrent_requests = 8\nmax_requests_per_partner = 8\nmax_relay_waiters = 40",
    )
    .await;
    let mut relay = gw.client("relay").await;
    let first = relay.get("/v1/replication/manifest").await;
    assert_eq!(first.status, 200);
    let tag = first.headers["etag"].to_str().expect("etag").to_owned();

    let (h2, conn) = h2::client::handshake(gw.h2_tls("relay").await)
        .await
        .expect("h2 handshake");
    let conn = tokio::spawn(conn);
    let long_poll = || {
        http::Request::get("https://localhost/v1/replication/manifest?wait_ms=30000")
            .header("if-none-match", tag.as_str())
            .body(())
            .expect("request")
    };
    let mut h2 = h2;
    let mut waiting = Vec::new();
    for _ in 0..40 {
        h2 = h2.ready().await.expect("ready");
        let (answer, _) = h2.send_request(long_poll(), true).expect("open");
        waiting.push(answer);
    }
    gw.wait_metric("permitgate_admission_in_use{pool=\"relay_places\"}", 40.0)
        .await;
    // Forty followers wait; partners are answered, more than eight of them in a row.
    victim_is_served(&gw, 30).await;
    // The forty-first waiter is over the relay budget.
    h2 = h2.ready().await.expect("ready");
    let (answer, _) = h2.send_request(long_poll(), true).expect("open");
    let r = tokio::time::timeout(Duration::from_secs(5), answer)
        .await
        .expect("answered at once")
        .expect("response");
    assert_eq!(r.status(), 503);
    gw.wait_metric("permitgate_refused_total{reason=\"relay_waiters\"}", 1.0)
        .await;
    drop(waiting);
    conn.abort();
}

/// One follower holding every relay place with long-polls cannot make another follower's
/// requests fail: the second is below its fair share, so a held long-poll of the first is
/// answered at once (304, as if its wait had ended) and its place given to the second.
#[tokio::test]
async fn one_follower_holding_every_relay_place_cannot_starve_another() {
    let gw = TestGateway::start_with(Options {
        server_extra: "max_relay_waiters = 16",
        edit_config: vec![config_edit::add_partner(
            "follower-2",
            "scopes = [\"replicate\"]",
        )],
        ..Options::default()
    })
    .await;
    gw.issue_partner("follower-2");
    let mut relay = gw.client("relay").await;
    let first = relay.get("/v1/replication/manifest").await;
    assert_eq!(first.status, 200);
    let tag = first.headers["etag"].to_str().expect("etag").to_owned();
    let base = first.json()["signed"]["snapshot"]["hash"]
        .as_str()
        .expect("hash")
        .to_owned();
    let (mut h2, conn) = h2::client::handshake(gw.h2_tls("relay").await)
        .await
        .expect("h2 handshake");
    let conn = tokio::spawn(conn);
    let mut waiting = Vec::new();
    for _ in 0..16 {
        h2 = h2.ready().await.expect("ready");
        let req = http::Request::get("https://localhost/v1/replication/manifest?wait_ms=30000")
            .header("if-none-match", tag.as_str())
            .body(())
            .expect("request");
        waiting.push(h2.send_request(req, true).expect("open").0);
    }
    // Every place is held: the hog itself gets no more.
    h2 = h2.ready().await.expect("ready");
    let more = http::Request::get("https://localhost/v1/replication/manifest?wait_ms=30000")
        .header("if-none-match", tag.as_str())
        .body(())
        .expect("request");
    let (answer, _) = h2.send_request(more, true).expect("open");
    let r = tokio::time::timeout(Duration::from_secs(5), answer)
        .await
        .expect("answered at once")
        .expect("response");
    assert_eq!(r.status(), 503);

    // The other follower: its manifest, an object, and a long-poll of its own.
    let mut other = gw.client("follower-2").await;
    for path in [
        "/v1/replication/manifest".to_owned(),
        format!("/v1/replication/objects/{base}"),
    ] {
        assert_eq!(other.get(&path).await.status, 200, "{path}");
    }
    let mut answered = 0;
    for w in waiting {
        if let Ok(Ok(r)) = tokio::time::timeout(Duration::from_millis(200), w).await {
            assert_eq!(
                r.status(),
                304,
                "a long-poll taken back ends as if its wait had"
            );
            answered += 1;
        }
    }
    assert!(
        answered >= 1,
        "a long-poll of the hog taken back: {answered}"
    );
    conn.abort();
}

/// CPU time (user + system, in clock ticks) of the threads of `pid` named `name`.
fn thread_ticks(pid: u32, name: &str) -> Option<u64> {
    use permitgate_testkit::process::{cpu_ticks, threads_named};
    let threads = threads_named(pid, name);
    if threads.is_empty() {
        return None;
    }
    threads.iter().map(|t| cpu_ticks(&t.join("stat"))).sum()
}

/// The gateway as a process of its own (its threads can be told apart in /proc) on demo
/// data in `dir`, the demo's config with `edits`, ready; its partner address.
fn gateway_process(
    dir: &std::path::Path,
    mut edits: Vec<crate::common::config_edit::Edit>,
) -> (
    permitgate::demo::Demo,
    crate::common::process::Running,
    std::net::SocketAddr,
) {
    use crate::common::process::{free_port, start, wait_ready};
    let (listen, metrics) = (free_port(), free_port());
    let demo = permitgate_testkit::demo_data::prepare(
        dir,
        &permitgate_testkit::demo_data::options(300, listen, metrics),
    );
    // No queue-delay shedding: the machine is shared with other tests.
    edits.push(crate::common::config_edit::set(
        "server.max_queue_delay_ms",
        0,
    ));
    crate::common::config_edit::edit_file(&demo.config, edits);
    let gw = start(&demo.config);
    assert!(wait_ready(metrics, Duration::from_secs(30)), "not ready");
    (demo, gw, listen)
}

/// A following gateway's connections (partner `relay`, scope `replicate` only) are served
/// on a thread of their own at nice 10 (`permitgate-rly`), not on the request workers:
/// a thousand followers woken by a publication queue behind partner checks, not ahead of
/// them. The gateway runs as a process of its own so that its threads can be told apart;
/// the kernel's CPU time per thread shows where each partner's requests ran.
#[tokio::test]
async fn followers_are_served_beside_the_request_workers() {
    use crate::common::Client;

    let dir = tempfile::tempdir().expect("tempdir");
    let (demo, gw, listen) = gateway_process(dir.path(), Vec::new());
    let pid = gw.id();
    let connect = |partner: &'static str| {
        let (ca, cert, key) = (
            demo.pki.ca_cert(),
            demo.pki.partner_cert(partner),
            demo.pki.partner_key(partner),
        );
        async move {
            Client::connect(listen, &ca, Some((&cert, &key)))
                .await
                .expect("connect")
        }
    };
    let before = thread_ticks(pid, "permitgate-rly").expect("the followers' thread");

    let mut relay = connect("relay").await;
    for i in 0..2000 {
        relay
            .get("/v1/replication/manifest")
            .await
            .assert_ok(format!("manifest {i}"));
    }
    drop(relay);
    // The kernel accounts CPU time in ticks, the last ones a moment after the work: the
    // count is taken once it has moved and then held still for 100 ms.
    let mut after_relay = before;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = thread_ticks(pid, "permitgate-rly").expect("thread");
        if now > before && now == after_relay {
            break;
        }
        after_relay = now;
    }
    assert!(
        after_relay > before,
        "2,000 follower requests used no CPU on the followers' thread"
    );

    let body = serde_json::json!({ "number": "H00000000" });
    let mut bank = connect("bank").await;
    for _ in 0..2000 {
        let r = bank.post_json("/v1/document-status", &body).await;
        assert!(
            r.status.is_success() || r.status.is_client_error(),
            "{}",
            r.status
        );
    }
    let after_bank = thread_ticks(pid, "permitgate-rly").expect("thread");
    assert_eq!(
        after_bank, after_relay,
        "a partner check ran on the followers' thread"
    );
}

/// Batches (whose cost grows with their body: a thousand checks with receipts is tens of
/// milliseconds of signing) are answered on the work thread (`permitgate-work`, nice 10,
/// partners in fair turn), not on the request workers; single checks never go there. The
/// gateway runs as a process of its own; the kernel's CPU time per thread shows where
/// each request ran.
#[tokio::test]
async fn batches_are_answered_on_the_work_thread_and_single_checks_are_not() {
    use crate::common::Client;

    let dir = tempfile::tempdir().expect("tempdir");
    let (demo, gw, listen) = gateway_process(
        dir.path(),
        vec![crate::common::config_edit::partner("bank", |p| {
            p.remove("rate_limit");
        })],
    );
    let pid = gw.id();
    let mut bank = Client::connect(
        listen,
        &demo.pki.ca_cert(),
        Some((
            &demo.pki.partner_cert("bank"),
            &demo.pki.partner_key("bank"),
        )),
    )
    .await
    .expect("connect");
    let link = crate::common::sample(&demo, "linked_pair").clone();
    let before = thread_ticks(pid, "permitgate-work").expect("the work thread");
    for i in 0..2000 {
        bank.post_json(&link.path, &link.body)
            .await
            .assert_ok(format!("check {i}"));
    }
    let after_singles = thread_ticks(pid, "permitgate-work").expect("thread");
    assert_eq!(
        after_singles, before,
        "a single check ran on the work thread"
    );
    let mut item = link.body.clone();
    item["receipt"] = serde_json::json!(true);
    let batch = serde_json::json!({ "checks": vec![item; 1000] });
    for i in 0..20 {
        bank.post_json("/v1/link-checks:batch", &batch)
            .await
            .assert_ok(format!("batch {i}"));
    }
    let after_batches = thread_ticks(pid, "permitgate-work").expect("thread");
    // 20,000 signatures: about 0.4 s of CPU, 40 ticks; half of it is plenty to tell.
    assert!(
        after_batches >= after_singles + 20,
        "the batches' signing ran elsewhere: {before} -> {after_batches} ticks"
    );
}
