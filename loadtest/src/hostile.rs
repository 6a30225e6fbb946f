//! Hostile partners, for isolation measurements: while one `permitgate-load` measures a
//! well-behaved partner, another runs one of these against the same gateway and reports
//! what the gateway did to it. Each attack keeps its pressure for the whole duration:
//! whatever the gateway answers or cuts is opened again at once.
//!
//! - `slow-body-h1`: HTTP/1.1 connections, each a request head declaring a 60 000-byte
//!   body and a few bytes of it, then nothing;
//! - `slow-body-h2`: the same as HTTP/2 streams, `--h2-streams` on each connection;
//! - `dribble`: HTTP/1.1 bodies sent one byte a second;
//! - `long-poll`: replication long-polls (`wait_ms=30000`, the current tag held) as
//!   HTTP/2 streams, as a relay's followers hold them (needs the `replicate` scope).
//!
//! Before authentication (no certificate needed for the first three; `--source` spreads
//! the connections over local addresses, as attackers on many hosts would come):
//! - `idle-tcp`: TCP connections that never start TLS, each opened again as soon as the
//!   gateway closes it;
//! - `hello-replay`: a recorded ClientHello sent on each new connection and the server's
//!   answer awaited, then the connection closed and another opened: the server does its
//!   key exchange and signs, the attacker does no crypto at all;
//! - `idle-tls`: full handshakes with the partner's certificate, then nothing;
//! - `handshake-flood`: full handshakes with the partner's certificate (no resumption),
//!   each connection closed at once and another opened, as `openssl s_time -new` does.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, ETAG, IF_NONE_MATCH};
use http::Request;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty};
use hyper::body::Frame;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

use crate::client::{Connector, Failure};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Attack {
    SlowBodyH1,
    SlowBodyH2,
    Dribble,
    LongPoll,
    IdleTcp,
    HelloReplay,
    IdleTls,
    HandshakeFlood,
}

impl Attack {
    /// The ALPN protocol the attack's connections ask for.
    pub fn protocol(self) -> crate::Protocol {
        match self {
            Attack::SlowBodyH2 | Attack::LongPoll => crate::Protocol::H2,
            Attack::HandshakeFlood => crate::Protocol::H1New,
            Attack::SlowBodyH1
            | Attack::Dribble
            | Attack::IdleTcp
            | Attack::HelloReplay
            | Attack::IdleTls => crate::Protocol::H1,
        }
    }
}

pub struct AttackPlan {
    pub attack: Attack,
    pub connections: usize,
    pub h2_streams: usize,
    pub duration: Duration,
    /// Where an attack request goes (`slow-body-*`, `dribble`).
    pub path: String,
}

/// What the gateway did to the attacker.
#[derive(Debug, Default, serde::Serialize)]
pub struct AttackReport {
    /// Requests (heads) sent.
    pub requests: u64,
    /// Answers by status.
    pub statuses: BTreeMap<u16, u64>,
    /// Requests that ended without an answer (connection cut, stream reset), and
    /// connections that could not be opened, by reason.
    pub failures: BTreeMap<&'static str, u64>,
    /// Requests still waiting when the attack ended.
    pub waiting_at_end: u64,
    /// What became of the connections of the attacks before authentication: opened,
    /// held until the end, closed by the gateway before a byte of TLS, handshakes
    /// completed or failed, server flights received.
    pub connections: BTreeMap<&'static str, u64>,
}

impl AttackReport {
    pub fn summary(&self) -> String {
        let join = |m: Vec<String>| {
            if m.is_empty() {
                "none".into()
            } else {
                m.join(", ")
            }
        };
        format!(
            "attack requests sent: {}\nanswers: {}\nended without an answer: {}\nstill waiting at the end: {}\nconnections: {}\n",
            self.requests,
            join(self.statuses.iter().map(|(s, n)| format!("{s}: {n}")).collect()),
            join(self.failures.iter().map(|(s, n)| format!("{s}: {n}")).collect()),
            self.waiting_at_end,
            join(self.connections.iter().map(|(s, n)| format!("{s}: {n}")).collect()),
        )
    }
}

type Shared = Arc<Mutex<AttackReport>>;

fn note(report: &Shared, f: impl FnOnce(&mut AttackReport)) {
    f(&mut report.lock().unwrap_or_else(|e| e.into_inner()));
}

/// Runs the attack for its duration; every task stops by itself at the end.
pub async fn attack(connector: Connector, plan: AttackPlan) -> AttackReport {
    let hello = match plan.attack {
        Attack::HelloReplay => connector.client_hello().unwrap_or_default(),
        _ => Vec::new(),
    };
    let hello: Arc<[u8]> = hello.into();
    let connector = Arc::new(connector);
    let report: Shared = Arc::default();
    let end = Instant::now() + plan.duration;
    let mut tasks = Vec::new();
    for _ in 0..plan.connections {
        let (connector, report, path) = (connector.clone(), report.clone(), plan.path.clone());
        let streams = plan.h2_streams;
        let hello = hello.clone();
        tasks.push(tokio::spawn(async move {
            match plan.attack {
                Attack::IdleTcp
                | Attack::HelloReplay
                | Attack::IdleTls
                | Attack::HandshakeFlood => {
                    door_loop(&connector, &report, plan.attack, &hello, end).await
                }
                Attack::SlowBodyH1 => h1_loop(&connector, &report, &path, end, None).await,
                Attack::Dribble => {
                    h1_loop(
                        &connector,
                        &report,
                        &path,
                        end,
                        Some(Duration::from_secs(1)),
                    )
                    .await
                }
                Attack::SlowBodyH2 | Attack::LongPoll => {
                    h2_loop(&connector, &report, &path, streams, plan.attack, end).await
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    Arc::try_unwrap(report)
        .map(|m| m.into_inner().unwrap_or_else(|e| e.into_inner()))
        .unwrap_or_default()
}

/// One HTTP/1.1 connection after another, each with an unfinished body (`dribble`: one
/// more byte every period), until `end`.
async fn h1_loop(
    connector: &Connector,
    report: &Shared,
    path: &str,
    end: Instant,
    dribble: Option<Duration>,
) {
    while Instant::now() < end {
        let Some(mut tls) = connect(connector, report, end).await else {
            continue;
        };
        let head = format!(
            "POST {path} HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: 60000\r\n\r\n{{\"travel_"
        );
        if tls.write_all(head.as_bytes()).await.is_err() {
            note(report, |r| *r.failures.entry("write").or_default() += 1);
            continue;
        }
        note(report, |r| r.requests += 1);
        let mut buf = [0u8; 512];
        let answered = loop {
            let wait = dribble.map_or(end, |d| (Instant::now() + d).min(end));
            match tokio::time::timeout_at(wait, tls.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => break None,
                Ok(Ok(n)) => break Some(status_of(&buf[..n])),
                Err(_) if Instant::now() >= end => {
                    note(report, |r| r.waiting_at_end += 1);
                    return;
                }
                Err(_) => {
                    if tls.write_all(b" ").await.is_err() || tls.flush().await.is_err() {
                        break None;
                    }
                }
            }
        };
        note(report, |r| match answered {
            Some(Some(s)) => *r.statuses.entry(s).or_default() += 1,
            _ => *r.failures.entry("closed").or_default() += 1,
        });
    }
}

fn count(report: &Shared, what: &'static str) {
    note(report, |r| *r.connections.entry(what).or_default() += 1);
}

/// Waits until the gateway closes `io` (`true`), or `end` (`false`); reads and drops what
/// it sends meanwhile.
async fn until_closed(io: &mut (impl tokio::io::AsyncRead + Unpin), end: Instant) -> bool {
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(end, io.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

/// One connection after another, until `end`, as `attack` says (the attacks before
/// authentication, in the module's list).
async fn door_loop(
    connector: &Connector,
    report: &Shared,
    attack: Attack,
    hello: &[u8],
    end: Instant,
) {
    while Instant::now() < end {
        note(report, |r| r.requests += 1);
        match attack {
            Attack::IdleTcp | Attack::HelloReplay => {
                let Ok(Ok(mut tcp)) = tokio::time::timeout_at(end, connector.tcp()).await else {
                    count(report, "connect_failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                count(report, "opened");
                if attack == Attack::IdleTcp {
                    if until_closed(&mut tcp, end).await {
                        count(report, "closed_by_gateway");
                    } else {
                        count(report, "held_to_the_end");
                    }
                    continue;
                }
                if tcp.write_all(hello).await.is_err() {
                    count(report, "closed_by_gateway");
                    continue;
                }
                // The server's first flight, or a close: then on to the next.
                let mut buf = [0u8; 8192];
                match tokio::time::timeout_at(end, tcp.read(&mut buf)).await {
                    Ok(Ok(n)) if n > 0 => count(report, "server_flights"),
                    Ok(_) => count(report, "closed_by_gateway"),
                    Err(_) => count(report, "held_to_the_end"),
                }
            }
            Attack::IdleTls | Attack::HandshakeFlood => {
                match tokio::time::timeout_at(end, connector.tls()).await {
                    Err(_) => {}
                    Ok(Err(f)) => {
                        count(report, f.label());
                        // A refused handshake: the gateway closed it, at once.
                        tokio::task::yield_now().await;
                    }
                    Ok(Ok(mut tls)) => {
                        count(report, "handshakes");
                        if attack == Attack::IdleTls {
                            if until_closed(&mut tls, end).await {
                                count(report, "closed_by_gateway");
                            } else {
                                count(report, "held_to_the_end");
                            }
                        }
                    }
                }
            }
            _ => return,
        }
    }
}

/// A new connection, or `None` (counted, after a pause) when it cannot be had; also
/// `None` once `end` has passed, which ends the callers' loops.
async fn connect(
    connector: &Connector,
    report: &Shared,
    end: Instant,
) -> Option<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    match tokio::time::timeout_at(end, connector.tls()).await {
        Err(_) => None,
        Ok(Err(f)) => {
            note(report, |r| *r.failures.entry(f.label()).or_default() += 1);
            tokio::time::sleep(Duration::from_millis(100)).await;
            None
        }
        Ok(Ok(t)) => Some(t),
    }
}

fn status_of(head: &[u8]) -> Option<u16> {
    std::str::from_utf8(head.get(9..12)?).ok()?.parse().ok()
}

/// A body that sends a few bytes and then nothing, ever.
struct Held(bool);

impl hyper::body::Body for Held {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if std::mem::replace(&mut self.0, true) {
            Poll::Pending
        } else {
            Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(b"{\"travel_")))))
        }
    }
}

/// One HTTP/2 connection with `streams` attack streams, each re-opened when answered,
/// until `end`; a new connection when the gateway ends this one.
async fn h2_loop(
    connector: &Connector,
    report: &Shared,
    path: &str,
    streams: usize,
    attack: Attack,
    end: Instant,
) {
    while Instant::now() < end {
        let Some(tls) = connect(connector, report, end).await else {
            continue;
        };
        let io = TokioIo::new(tls);
        let Ok((send, conn)) = hyper::client::conn::http2::handshake::<
            _,
            _,
            BoxBody<Bytes, Infallible>,
        >(TokioExecutor::new(), io)
        .await
        else {
            note(report, |r| {
                *r.failures.entry(Failure::Http.label()).or_default() += 1
            });
            continue;
        };
        let conn = tokio::spawn(conn);
        let tag = match attack {
            Attack::LongPoll => manifest_tag(send.clone()).await,
            _ => None,
        };
        let mut tasks = Vec::new();
        for _ in 0..streams {
            let (mut send, report, path, tag) =
                (send.clone(), report.clone(), path.to_owned(), tag.clone());
            tasks.push(tokio::spawn(async move {
                let mut tag = tag;
                while Instant::now() < end {
                    if send.ready().await.is_err() {
                        return;
                    }
                    let req = match attack {
                        Attack::LongPoll => {
                            Request::get("https://localhost/v1/replication/manifest?wait_ms=30000")
                                .header(IF_NONE_MATCH, tag.clone().unwrap_or_default())
                                .body(Empty::new().boxed())
                        }
                        _ => Request::post(format!("https://localhost{path}"))
                            .header(CONTENT_TYPE, "application/json")
                            .body(Held(false).boxed()),
                    };
                    let Ok(req) = req else { return };
                    note(&report, |r| r.requests += 1);
                    match tokio::time::timeout_at(end, send.send_request(req)).await {
                        Err(_) => {
                            note(&report, |r| r.waiting_at_end += 1);
                            return;
                        }
                        Ok(Err(_)) => {
                            note(&report, |r| *r.failures.entry("reset").or_default() += 1);
                            return;
                        }
                        Ok(Ok(resp)) => {
                            let status = resp.status().as_u16();
                            if let Some(t) = resp.headers().get(ETAG) {
                                tag = t.to_str().ok().map(str::to_owned);
                            }
                            note(&report, |r| *r.statuses.entry(status).or_default() += 1);
                            let _ = tokio::time::timeout_at(end, resp.into_body().collect()).await;
                            if status == 503 {
                                // As a follower would: wait a little before asking again.
                                tokio::time::sleep(Duration::from_millis(100)).await;
                            }
                        }
                    }
                }
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
        conn.abort();
    }
}

async fn manifest_tag(
    mut send: hyper::client::conn::http2::SendRequest<BoxBody<Bytes, Infallible>>,
) -> Option<String> {
    send.ready().await.ok()?;
    let req = Request::get("https://localhost/v1/replication/manifest")
        .body(Empty::new().boxed())
        .ok()?;
    let resp = send.send_request(req).await.ok()?;
    resp.headers()
        .get(ETAG)
        .and_then(|t| t.to_str().ok())
        .map(str::to_owned)
}
