//! The partner listener: accepting within `max_connections`, TLS handshakes on a thread
//! of their own, and the HTTP settings every connection shares.

use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto::Builder;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::time::Instant;

use super::door::Turned;

use super::connection::{serve_connection, ConnectionSettings};
use super::Gateway;

/// HTTP settings of every partner connection: slow heads time out, heads and HTTP/2
/// streams are bounded. Rapid reset (CVE-2023-44487): more than 20 streams reset before
/// they were accepted ends the connection (GOAWAY); a stream reset after acceptance drops
/// its handler (no answer, no audit record).
fn http_builder(server: &crate::config::ServerConfig) -> Builder<TokioExecutor> {
    let mut b = Builder::new(TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(server.header_read_timeout)
        .max_buf_size(server.max_header_bytes);
    b.http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(server.h2_max_concurrent_streams)
        .max_pending_accept_reset_streams(20)
        .max_header_list_size(u32::try_from(server.max_header_bytes).unwrap_or(u32::MAX));
    b
}

/// Accepts on the accept thread (`permitgate-acc`, where this runs): the door's refusals
/// cost that thread only. A connection let in is handed to the request workers
/// (`workers`), whose I/O driver its socket belongs to from then on; its handshake is
/// polled on the TLS thread (`handshakes`).
pub(super) async fn accept_loop(
    gw: Arc<Gateway>,
    listener: std::net::TcpListener,
    open: Arc<tokio::sync::Semaphore>,
    mut stop: watch::Receiver<bool>,
    workers: tokio::runtime::Handle,
    handshakes: tokio::runtime::Handle,
    followers: Option<tokio::runtime::Handle>,
) {
    let listener = match TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = %e, "partner listener unusable");
            return;
        }
    };
    let builder = http_builder(&gw.config.server);
    let door = gw.door.clone();
    let shared = Arc::new(ConnectionSettings {
        app: gw.app.clone(),
        h1: builder.clone().http1_only(),
        h2: builder.http2_only(),
        handshake_timeout: gw.config.server.handshake_timeout,
        handshakes,
        queue: gw.handshake_queue.clone(),
        followers,
        idle_timeout: gw.config.server.header_read_timeout,
        write_timeout: gw.config.server.write_timeout,
        send_buffer_bytes: gw.config.server.send_buffer_bytes,
        metrics: gw.metrics.listener.clone(),
    });
    let open_gauge = gw.metrics.listener.connections_open.clone();
    let mut syn_filter = door.syn_filter();
    loop {
        // Tokio's budget ends this task's poll only every 128 accepts (about 2 ms of a
        // flood): the thread's pace is kept between accepts instead.
        crate::pace::tick_this_thread();
        let due = syn_filter.due();
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.changed() => return,
            () = tokio::time::sleep_until(due.unwrap_or_else(Instant::now)), if due.is_some() => {
                syn_filter.apply(socket2::SockRef::from(&listener), Instant::now());
                continue;
            }
        };
        // Before a byte of TLS: the door's budget for this source (door.rs).
        let now = u64::try_from(gw.clock.now().unix_timestamp_nanos()).unwrap_or(0);
        let pass = match door.admit(peer, now) {
            Ok(pass) => pass,
            Err(why) => {
                if let Some(net) = door.shunned_source(peer, why) {
                    syn_filter.shun(net, Instant::now());
                }
                reset(stream);
                continue;
            }
        };
        let Ok(permit) = open.clone().try_acquire_owned() else {
            // Every descriptor budgeted for connections is in use.
            door.metrics().rejected(Turned::Capacity);
            reset(stream);
            continue;
        };
        shared.metrics.connections_accepted.inc();
        let _ = stream.set_nodelay(true);
        let Ok(stream) = stream.into_std() else {
            continue;
        };
        let (shared, tls, stop, gauge) = (
            shared.clone(),
            gw.tls.load_full(),
            stop.clone(),
            open_gauge.clone(),
        );
        workers.spawn(async move {
            // Registered with the request workers' I/O driver, here.
            let Ok(stream) = TcpStream::from_std(stream) else {
                return;
            };
            gauge.inc();
            serve_connection(shared, tls, stream, peer, pass, stop).await;
            gauge.dec();
            drop(permit);
        });
    }
}

/// Closes a connection turned away at the door with a reset: no FIN exchange, and no
/// TIME_WAIT socket left on the gateway for each of a flood's connections (a minute each).
fn reset(stream: TcpStream) {
    let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
}
