//! One partner connection: handshake (on the TLS side runtime, side.rs), partner identity from
//! the leaf certificate, then hyper serves HTTP/1.1 or HTTP/2 as ALPN chose, with idle
//! and drain handling; on the request workers, or (a following gateway's connection to a
//! relay) on the followers' side runtime.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::Request;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_rustls::server::TlsStream;
use tokio_rustls::LazyConfigAcceptor;

use crate::http::{App, Caller};
use crate::tls::{self, HandshakeFailure};

use hyper_util::rt::TokioExecutor;
use hyper_util::server::conn::auto::Builder;

use super::door::{Class, Pass, Turned};
use super::handshakes::HandshakeQueue;
use super::listener_metrics::ListenerMetrics;
use super::write_deadline::WriteDeadline;
use crate::pace::Paced;

/// Send buffer of a following gateway's connection: room for a long, fast download.
const FOLLOWER_SEND_BUFFER: usize = 4 << 20;

type PartnerStream = TlsStream<WriteDeadline<TcpStream>>;

pub(super) async fn serve_connection(
    settings: Arc<ConnectionSettings>,
    tls_config: Arc<rustls::ServerConfig>,
    stream: TcpStream,
    peer: SocketAddr,
    pass: Pass,
    drain: watch::Receiver<bool>,
) {
    // Kept for TCP_INFO: the stream is owned by the connection served below.
    let fd = std::os::fd::AsRawFd::as_raw_fd(&stream);
    if let Some(bytes) = settings.send_buffer_bytes {
        // Bounds what a client that never reads can make the kernel hold for it.
        let _ = socket2::SockRef::from(&stream).set_send_buffer_size(bytes);
    }
    let stream = WriteDeadline::new(stream, settings.write_timeout);
    let deadline = settings.handshake_timeout;
    let (queue, class) = (settings.queue.clone(), pass.class());
    let handshake = settings.handshakes.spawn(Paced::new(async move {
        // A stranger's place may be taken back, until its handshake ends, for a source
        // prefix below its share (door.rs).
        let waiting = pass.preemptible();
        let taken_back = async {
            match &waiting {
                Some(w) => w.taken_back().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            r = tokio::time::timeout(deadline, handshake(tls_config, stream, &queue, class)) => {
                r.map_err(|_| Refused::TimedOut).and_then(|r| r)
            }
            _ = taken_back => Err(Refused::Turned(Turned::PrefixShare)),
        }
        // The pass goes here: through the handshake (or not), no longer the door's.
    }));
    let Ok(done) = handshake.await else {
        // The handshake thread is gone: the gateway is stopping.
        return;
    };
    let tls = match done {
        Ok(s) => s,
        Err(Refused::Turned(why)) => {
            settings.metrics.door.rejected(why);
            tracing::debug!(%peer, reason = why.label(), "connection closed before its handshake ended");
            return;
        }
        Err(Refused::Tls(e)) => {
            let reason = HandshakeFailure::classify(&e);
            settings.metrics.handshake_failed(reason);
            tracing::debug!(%peer, reason = reason.label(), error = %e, "TLS handshake failed");
            return;
        }
        Err(Refused::TimedOut) => {
            settings.metrics.handshake_failed(HandshakeFailure::Timeout);
            tracing::debug!(%peer, "TLS handshake timed out");
            return;
        }
    };
    let leaf = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .and_then(tls::leaf);
    let caller = Caller::new(leaf);
    // The partner's share of the connections open after a handshake (src/shares.rs).
    let unit = match settings.app.connection_unit(&caller) {
        Ok(u) => u,
        Err(_) => {
            settings.metrics.door.rejected(Turned::PartnerShare);
            tracing::debug!(%peer, "partner over its share of connections");
            return;
        }
    };
    let follower = settings.app.replicates_only(&caller);
    if follower && settings.send_buffer_bytes.is_some() {
        // A following gateway downloads bases of hundreds of MB: room for a long, fast
        // download (a relay's budget bounds how many download at once).
        let _ = socket2::SockRef::from(tls.get_ref().0.get_ref())
            .set_send_buffer_size(FOLLOWER_SEND_BUFFER);
    }
    match &settings.followers {
        Some(side) if follower => {
            // The socket stays with the request workers' I/O driver; only its polling
            // moves (as the handshake's did), in paced bursts (side.rs).
            let _ = side
                .spawn(Paced::new(serve_http(
                    settings.clone(),
                    tls,
                    caller,
                    unit,
                    fd,
                    peer,
                    drain,
                )))
                .await;
        }
        _ => serve_http(settings, tls, caller, unit, fd, peer, drain).await,
    }
}

/// Why a handshake ended without a connection.
enum Refused {
    /// By the handshake queue (handshakes.rs), or the door taking its place back.
    Turned(Turned),
    Tls(std::io::Error),
    TimedOut,
}

/// Reads the ClientHello (nothing asked of the CPU yet), waits for a turn on the TLS
/// thread to answer it, then completes the handshake with `config`.
async fn handshake(
    config: Arc<rustls::ServerConfig>,
    stream: WriteDeadline<TcpStream>,
    queue: &Arc<HandshakeQueue>,
    class: Class,
) -> Result<PartnerStream, Refused> {
    let start = LazyConfigAcceptor::new(rustls::server::Acceptor::default(), stream)
        .await
        .map_err(Refused::Tls)?;
    let turn = queue.turn(class).await.map_err(Refused::Turned)?;
    // The key exchange and the server's signature happen here, within the turn.
    let accept = start.into_stream(config);
    drop(turn);
    accept.await.map_err(Refused::Tls)
}

/// HTTP/1.1 or HTTP/2 (as ALPN chose) on a connection whose handshake is done.
async fn serve_http(
    settings: Arc<ConnectionSettings>,
    tls: PartnerStream,
    caller: Caller,
    unit: crate::shares::Unit,
    fd: RawFd,
    peer: SocketAddr,
    mut drain: watch::Receiver<bool>,
) {
    let caller = Arc::new(caller);
    let app = settings.app.clone();
    let activity = Arc::new(Activity::new());
    let seen = activity.clone();
    let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
    let svc = service_fn(move |req: Request<Incoming>| {
        let app = app.clone();
        let caller = caller.clone();
        let seen = seen.clone();
        // HTTP/1.1: how long this request sat in the socket before it was read. (An
        // HTTP/2 socket carries many streams; the scheduling lag covers those.)
        let queued = if h2 || !app.socket_wait_worth_reading() {
            None
        } else {
            crate::overload::socket_wait(fd)
        };
        async move {
            // A guard: a stream reset mid-request drops this future, and must count too.
            // Only HTTP/2 looks at it (HTTP/1.1's idle deadline is hyper's): two clock
            // reads and three atomics a request spared there.
            let _busy = h2.then(|| Busy::new(&seen));
            Ok::<_, Infallible>(app.handle(&caller, req, queued).await)
        }
    });
    let builder = if h2 { &settings.h2 } else { &settings.h1 };
    let conn = builder.serve_connection(TokioIo::new(tls), svc);
    tokio::pin!(conn);
    // HTTP/1.1 enforces the request-head deadline itself (idle keep-alive included);
    // HTTP/2 has none, so an HTTP/2 connection with no stream open for that long (or that
    // never sent its preface) is told to go away here.
    let idle = settings.idle_timeout;
    // Any connection may be closed for a partner below its share: gracefully, after the
    // requests in flight are answered (HTTP/1.1: the current one; HTTP/2: GOAWAY).
    let waiting = unit.preemptible();
    let result = loop {
        let check = idle.saturating_sub(activity.idle_for());
        tokio::select! {
            r = conn.as_mut() => break r,
            _ = drain_requested(&mut drain) => {
                conn.as_mut().graceful_shutdown();
                break conn.await;
            }
            _ = waiting.taken_back() => {
                settings.metrics.door.rejected(Turned::TakenBack);
                conn.as_mut().graceful_shutdown();
                break conn.await;
            }
            _ = tokio::time::sleep(check), if h2 => {
                if activity.idle_for() >= idle {
                    if !activity.ever_busy() {
                        // No stream ever (no preface, perhaps): there is no HTTP/2
                        // session to say GOAWAY in; close now rather than wait again.
                        break Ok(());
                    }
                    conn.as_mut().graceful_shutdown();
                    // A peer that ignores GOAWAY is dropped after one more period.
                    break tokio::time::timeout(idle, conn.as_mut()).await.unwrap_or(Ok(()));
                }
            }
        }
    };
    if let Err(e) = result {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}

struct Busy<'a>(&'a Activity);

impl<'a> Busy<'a> {
    fn new(a: &'a Activity) -> Busy<'a> {
        a.in_flight.fetch_add(1, Ordering::Relaxed);
        a.ever.store(true, Ordering::Relaxed);
        Busy(a)
    }
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0
            .last_busy_ms
            .store(self.0.now_ms(), Ordering::Relaxed);
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Requests in flight on one connection, and when the last one ended.
struct Activity {
    start: std::time::Instant,
    in_flight: AtomicUsize,
    /// Whether any request has been seen.
    ever: AtomicBool,
    /// Milliseconds since `start` when the connection was last busy.
    last_busy_ms: AtomicU64,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            start: std::time::Instant::now(),
            in_flight: AtomicUsize::new(0),
            ever: AtomicBool::new(false),
            last_busy_ms: AtomicU64::new(0),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn ever_busy(&self) -> bool {
        self.ever.load(Ordering::Relaxed)
    }

    /// How long the connection has had no request in flight (zero while it has).
    fn idle_for(&self) -> Duration {
        if self.in_flight.load(Ordering::Relaxed) > 0 {
            return Duration::ZERO;
        }
        let last = self.last_busy_ms.load(Ordering::Relaxed);
        Duration::from_millis(self.now_ms().saturating_sub(last))
    }
}

/// Resolves once a drain is asked for; never, if the gateway is gone without asking.
async fn drain_requested(drain: &mut watch::Receiver<bool>) {
    if drain.wait_for(|stop| *stop).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// What every connection of one listener shares.
pub(super) struct ConnectionSettings {
    pub(super) app: Arc<App>,
    /// One builder per protocol: ALPN has decided it, and sniffing the first bytes for a
    /// preface would wait for them without the request-head deadline.
    pub(super) h1: Builder<TokioExecutor>,
    pub(super) h2: Builder<TokioExecutor>,
    pub(super) handshake_timeout: Duration,
    /// Where TLS handshakes run: a thread of their own (see [`super::side::SideRuntime`]).
    pub(super) handshakes: tokio::runtime::Handle,
    /// The order in which handshakes get that thread (handshakes.rs).
    pub(super) queue: Arc<HandshakeQueue>,
    /// Where the connections of partners that only replicate are served, when this
    /// gateway relays.
    pub(super) followers: Option<tokio::runtime::Handle>,
    pub(super) idle_timeout: Duration,
    /// A write that moves nothing for this long ends the connection (write_deadline.rs).
    pub(super) write_timeout: Duration,
    pub(super) send_buffer_bytes: Option<usize>,
    pub(super) metrics: ListenerMetrics,
}
