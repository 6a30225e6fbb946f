//! Wiring: sockets, TLS handshakes, HTTP connections, and the metrics listener.
//!
//! [`Gateway::from_config`] loads everything except the snapshot, so sockets can be bound
//! (and `/healthz` answered) while a large snapshot loads; [`Gateway::load_snapshot`] does
//! the verification and the swap. The accept loop hands each connection to its own task:
//! handshake (bounded by a timeout), partner identity from the leaf certificate, then
//! hyper serves HTTP/1.1 or HTTP/2 as ALPN chose.

use std::collections::HashSet;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use ed25519_dalek::VerifyingKey;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use prometheus::IntCounter;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use crate::audit::AuditLog;
use crate::clock::Clock;
use crate::config::{Config, TlsConfig};
use crate::http::admission::AdmissionLimits;
use crate::http::{App, Caller, Credentials, Limits};
use crate::keyring::{KeyUse, Keyring, PublicKey, SigningKeys, Validity};
use crate::keys::{load_signing_key, load_verifying_key, HashKey, KeyError};
use crate::metrics::Metrics;
use crate::overload::LagMonitor;
use crate::replication::{Follower, Source};
use crate::snapshot::{load_repo, SignedManifest, SnapshotError};
use crate::store::{StateInfo, Store};
use crate::tls::{self, HandshakeFailure, TlsError};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("replication: {0}")]
    Replication(String),
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Audit(#[from] crate::audit::AuditError),
    #[error("cannot start the TLS handshake thread: {0}")]
    HandshakeThread(std::io::Error),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// Receipt signing keys and the published keyring: receipt keys, temporary-permit issuing
/// keys and snapshot publishing keys.
fn credentials(config: &Config, publisher_keys: &[VerifyingKey]) -> Result<Credentials, KeyError> {
    let receipt_keys = SigningKeys::new(
        config
            .receipt_keys
            .iter()
            .map(|k| Ok((load_signing_key(&k.path)?, k.validity)))
            .collect::<Result<Vec<_>, KeyError>>()?,
    );
    let mut published: Vec<PublicKey> = receipt_keys.public(KeyUse::Receipt).collect();
    for k in &config.temp_permits.issuer_keys {
        published.push(PublicKey::new(
            KeyUse::TempPermit,
            load_verifying_key(&k.path)?,
            k.validity,
        ));
    }
    published.extend(
        publisher_keys
            .iter()
            .map(|k| PublicKey::new(KeyUse::Snapshot, *k, Validity::default())),
    );
    Ok(Credentials {
        receipt_keys,
        keyring: Keyring::new(published),
        temp_permit_skew: config.temp_permits.clock_skew,
    })
}

/// Everything needed to serve, built from a [`Config`].
pub struct Gateway {
    pub store: Arc<Store>,
    pub metrics: Arc<Metrics>,
    /// Told whenever the held manifest changes (relay long-polls wait on it).
    manifest_changed: Arc<watch::Sender<u64>>,
    clock: Arc<dyn Clock>,
    app: Arc<App>,
    lag: Option<Arc<LagMonitor>>,
    /// Swapped by reloads; each handshake uses the one current when it starts.
    tls: ArcSwap<rustls::ServerConfig>,
    /// The TLS files in use, and the fingerprint of everything a reload reads as last
    /// seen (so a broken file is tried once per change, not once per poll).
    reload_state: Mutex<ReloadState>,
    config: Config,
    publisher_keys: Vec<VerifyingKey>,
    hash_key: HashKey,
    /// The manifest of what [`Gateway::load_snapshot`] put in service: where a follower
    /// starts from.
    served: Mutex<Option<SignedManifest>>,
}

impl Gateway {
    pub fn from_config(config: Config, clock: Arc<dyn Clock>) -> Result<Gateway, StartError> {
        // Before the files are read, as in `try_reload`.
        let seen = fingerprint(&config.path, &config.tls);
        let (tls, revoked) = partner_tls(&config.tls)?;
        let publisher_keys = config
            .snapshot
            .publisher_keys
            .iter()
            .map(|p| load_verifying_key(p))
            .collect::<Result<Vec<_>, _>>()?;
        let hash_key = HashKey::load(&config.snapshot.hash_key)?;
        let credentials = credentials(&config, &publisher_keys)?;
        let metrics = Arc::new(Metrics::new());
        export_expiry(&metrics, &config.tls)?;
        // Measured only where something compares it with max_queue_delay_ms.
        let lag = config
            .server
            .max_queue_delay
            .is_some()
            .then(|| Arc::new(LagMonitor::default()));
        let audit = match &config.audit {
            Some(a) => Some(AuditLog::open(a.clone(), metrics.audit.clone())?),
            None => {
                tracing::warn!("no [audit] configured: checks leave no audit trail");
                None
            }
        };
        let store = Arc::new(Store::new(config.cache, metrics.cache_counters()));
        let (manifest_tx, manifest_rx) = watch::channel(0u64);
        let relay_dir = match (&config.replication, &config.snapshot.repo) {
            (Some(r), _) => Some(r.state_dir.clone()),
            (None, repo) => repo.clone(),
        };
        let relay = relay_dir.map(|dir| crate::http::relay::RelaySource {
            dir,
            changes: manifest_rx,
        });
        let app = Arc::new(App::new(
            store.clone(),
            hash_key.clone(),
            clock.clone(),
            Limits {
                max_body_bytes: config.server.max_body_bytes,
                max_batch_items: config.server.max_batch_items,
                unready_when_stale_for: config
                    .replication
                    .as_ref()
                    .and_then(|r| r.unready_when_stale_for),
                body_read_timeout: config.server.body_read_timeout,
                admission: AdmissionLimits {
                    max_concurrent_requests: config.server.max_concurrent_requests,
                    max_requests_per_partner: config.server.max_requests_per_partner,
                    max_relay_waiters: config.server.max_relay_waiters,
                    max_queue_delay: config.server.max_queue_delay,
                },
            },
            &config.partners,
            revoked,
            &metrics,
            relay,
            credentials,
            audit,
            lag.clone(),
        ));
        Ok(Gateway {
            store,
            metrics,
            manifest_changed: Arc::new(manifest_tx),
            clock,
            app,
            lag,
            tls: ArcSwap::new(tls),
            reload_state: Mutex::new(ReloadState {
                fingerprint: seen,
                tls: config.tls.clone(),
            }),
            config,
            publisher_keys,
            hash_key,
            served: Mutex::new(None),
        })
    }

    /// Writes and fsyncs the audit records of everything answered; call it after
    /// [`Running::drain`].
    pub fn close_audit(&self) {
        self.app.close_audit();
    }

    /// Reads the config file again and puts its certificates, CA, CRLs and partner table
    /// in use. Handshakes already done and requests already admitted are not disturbed.
    /// On any error nothing changes: the error is logged and counted, and returned.
    pub fn reload(&self) -> Result<(), StartError> {
        let result = self.try_reload();
        self.metrics.reloaded(result.is_ok());
        match &result {
            Ok(()) => tracing::info!("reloaded certificates, CRLs and partners"),
            Err(e) => tracing::error!(error = %e, "reload refused; keeping what is in use"),
        }
        result
    }

    fn try_reload(&self) -> Result<(), StartError> {
        let config = Config::load(&self.config.path)?;
        // Taken before the files are read: a file replaced while they load then differs
        // from what is recorded, and the next poll loads it (taken after, it would be
        // recorded as loaded without being so).
        let seen = fingerprint(&config.path, &config.tls);
        let (tls, revoked) = partner_tls(&config.tls)?;
        export_expiry(&self.metrics, &config.tls)?;
        self.tls.store(tls);
        self.app
            .set_partners(&config.partners, revoked, &self.metrics);
        let mut state = self.reload_state.lock().unwrap_or_else(|e| e.into_inner());
        state.fingerprint = seen;
        state.tls = config.tls;
        Ok(())
    }

    /// Reloads if any file a reload reads changed since it was last looked at.
    fn reload_if_changed(&self) {
        let now = {
            let mut state = self.reload_state.lock().unwrap_or_else(|e| e.into_inner());
            let now = fingerprint(&self.config.path, &state.tls);
            if now == state.fingerprint {
                return;
            }
            state.fingerprint = now;
            now
        };
        tracing::info!(fingerprint = %&now.to_hex()[..16], "configuration files changed");
        let _ = self.reload();
    }

    /// Verifies the local repo and makes it current. Blocking: run it off the async
    /// workers (`spawn_blocking`) for large snapshots.
    ///
    /// Without replication the configured repo must load. With replication the state
    /// directory is the local repo: `Ok(None)` when it holds nothing usable yet (the
    /// follower will fetch from the source).
    pub fn load_snapshot(&self) -> Result<Option<StateInfo>, SnapshotError> {
        let dir = match (&self.config.replication, &self.config.snapshot.repo) {
            (Some(r), _) => {
                if !r.state_dir.join(crate::snapshot::MANIFEST_FILE).exists() {
                    return Ok(None);
                }
                match load_repo(&r.state_dir, &self.publisher_keys, Some(&self.hash_key)) {
                    Ok(repo) => return self.install(repo).map(Some),
                    Err(e) => {
                        tracing::warn!(error = %e, "state directory unusable; waiting for the source");
                        return Ok(None);
                    }
                }
            }
            (None, Some(repo)) => repo,
            (None, None) => {
                return Err(SnapshotError::Manifest(
                    "no snapshot.repo and no [replication] configured".into(),
                ))
            }
        };
        let repo = load_repo(dir, &self.publisher_keys, Some(&self.hash_key))?;
        self.install(repo).map(Some)
    }

    /// A follower (and its poll interval), starting from what the store serves now: of
    /// `[replication]`'s source, or of the snapshot repo this gateway serves, watched
    /// for publications (`snapshot.watch_interval_ms`). `None` when neither applies.
    pub fn follower(&self) -> Result<Option<(Follower, Duration)>, StartError> {
        let (source, state_dir, interval) =
            match (&self.config.replication, &self.config.snapshot.repo) {
                (Some(r), _) => {
                    let tls = match &r.ca {
                        Some(ca) => Some(tls::client_config(
                            ca,
                            r.client_cert.as_deref().zip(r.client_key.as_deref()),
                        )?),
                        None => None,
                    };
                    let s3 = crate::replication::S3Settings {
                        endpoint: r.s3_endpoint.clone(),
                        region: r.s3_region.clone(),
                    };
                    let source = Source::parse(&r.source, tls, &s3)
                        .map_err(|e| StartError::Replication(e.to_string()))?;
                    (source, Some(r.state_dir.clone()), r.poll_interval)
                }
                (None, Some(repo)) => match self.config.snapshot.watch_interval {
                    Some(every) => (Source::File(repo.clone()), None, every),
                    None => return Ok(None),
                },
                (None, None) => return Ok(None),
            };
        let held = self
            .served
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .filter(|_| self.store.is_ready());
        let follower = Follower::new(
            self.store.clone(),
            self.metrics.clone(),
            self.publisher_keys.clone(),
            self.hash_key.clone(),
            source,
            state_dir,
            self.clock.clone(),
            held,
        )
        .notify(self.manifest_changed.clone());
        Ok(Some((follower, interval)))
    }

    fn install(&self, repo: crate::snapshot::Repo) -> Result<StateInfo, SnapshotError> {
        let documents = repo.snapshot.len();
        *self.served.lock().unwrap_or_else(|e| e.into_inner()) = Some(repo.manifest.clone());
        self.store
            .install(repo)
            .map_err(|e| SnapshotError::Manifest(e.to_string()))?;
        let guard = self.store.current();
        let info = guard
            .as_ref()
            .map(|s| (*s.view().info()).clone())
            .ok_or_else(|| SnapshotError::Manifest("store is empty after install".into()))?;
        self.metrics.snapshot_installed(&info, documents);
        Ok(info)
    }

    /// Binds the configured addresses and starts serving.
    pub async fn bind(self: &Arc<Self>) -> Result<Running, StartError> {
        let listen = self.config.server.listen;
        let listener = TcpListener::bind(listen)
            .await
            .map_err(|source| StartError::Bind {
                addr: listen,
                source,
            })?;
        let metrics_listener = match self.config.server.metrics_listen {
            Some(addr) => Some(
                TcpListener::bind(addr)
                    .await
                    .map_err(|source| StartError::Bind { addr, source })?,
            ),
            None => None,
        };
        self.serve(listener, metrics_listener)
    }

    /// Serves on already-bound listeners.
    pub fn serve(
        self: &Arc<Self>,
        listener: TcpListener,
        metrics_listener: Option<TcpListener>,
    ) -> Result<Running, StartError> {
        let local = |l: &TcpListener| {
            l.local_addr().map_err(|source| StartError::Bind {
                addr: self.config.server.listen,
                source,
            })
        };
        let addr = local(&listener)?;
        let metrics_addr = metrics_listener.as_ref().map(local).transpose()?;
        let (stop_tx, stop_rx) = watch::channel(false);
        let open = Arc::new(tokio::sync::Semaphore::new(
            self.config.server.max_connections,
        ));
        let handshakes = HandshakeThread::start().map_err(StartError::HandshakeThread)?;
        let mut tasks = vec![tokio::spawn(accept_loop(
            self.clone(),
            listener,
            open.clone(),
            stop_rx.clone(),
            handshakes,
        ))];
        if let Some(monitor) = self.lag.clone() {
            let gauge = self.metrics.scheduling_lag();
            let stop = stop_rx.clone();
            tasks.push(tokio::spawn(async move { monitor.run(gauge, stop).await }));
        }
        if let Some(every) = self.config.server.reload_poll_interval {
            tasks.push(tokio::spawn(watch_files(
                self.clone(),
                every,
                stop_rx.clone(),
            )));
        }
        if let Some(l) = metrics_listener {
            tasks.push(tokio::spawn(metrics_loop(self.clone(), l, stop_rx)));
        }
        Ok(Running {
            addr,
            metrics_addr,
            stop: stop_tx,
            tasks,
            open,
            max_connections: self.config.server.max_connections,
            drain_timeout: self.config.server.drain_timeout,
        })
    }
}

/// A serving gateway. Dropping it stops the listeners.
pub struct Running {
    pub addr: SocketAddr,
    pub metrics_addr: Option<SocketAddr>,
    /// Set once: stop accepting, and tell open connections to finish and close.
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// One permit per open partner connection.
    open: Arc<tokio::sync::Semaphore>,
    max_connections: usize,
    drain_timeout: Duration,
}

impl Running {
    /// Starts following `[replication]`'s source, if configured. Call it after the
    /// initial [`Gateway::load_snapshot`], so the follower starts from what is served.
    pub fn start_replication(&mut self, gw: &Arc<Gateway>) -> Result<bool, StartError> {
        let Some((follower, interval)) = gw.follower()? else {
            return Ok(false);
        };
        self.tasks
            .push(tokio::spawn(follower.run(interval, self.stop.subscribe())));
        Ok(true)
    }

    /// Stops accepting and asks every open connection to close once its requests in
    /// flight are answered (HTTP/1.1: after the current response; HTTP/2: GOAWAY).
    pub fn stop(&self) {
        let _ = self.stop.send(true);
    }

    /// [`stop`](Self::stop), then waits up to `server.drain_timeout_ms` for the
    /// connections to close. Returns how many were still open when it gave up (0: all
    /// drained).
    pub async fn drain(&self) -> usize {
        self.stop();
        let all = u32::try_from(self.max_connections).unwrap_or(u32::MAX);
        match tokio::time::timeout(self.drain_timeout, self.open.acquire_many(all)).await {
            Ok(_) => 0,
            Err(_) => self.max_connections - self.open.available_permits(),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop();
        for t in &self.tasks {
            t.abort();
        }
    }
}

struct ReloadState {
    fingerprint: blake3::Hash,
    tls: TlsConfig,
}

/// Hash of the config file and every TLS file it names; unreadable files hash as absent,
/// so a file being replaced shows up as a change (and a failed reload) once, not an error
/// per poll.
fn fingerprint(config: &Path, tls: &TlsConfig) -> blake3::Hash {
    let mut h = blake3::Hasher::new();
    for path in std::iter::once(config).chain(tls.files()) {
        match std::fs::read(path) {
            Ok(bytes) => {
                h.update(&(bytes.len() as u64).to_le_bytes());
                h.update(&bytes);
            }
            Err(_) => {
                h.update(&u64::MAX.to_le_bytes());
            }
        }
    }
    h.finalize()
}

/// The partner-facing TLS config and the serials its CRLs revoke.
fn partner_tls(t: &TlsConfig) -> Result<(Arc<rustls::ServerConfig>, HashSet<Vec<u8>>), TlsError> {
    let crls = tls::load_crls(&t.crls)?;
    let revoked = tls::revoked_serials(&crls)?;
    Ok((
        tls::server_config(&t.cert, &t.key, &t.client_ca, crls)?,
        revoked,
    ))
}

fn export_expiry(metrics: &Metrics, t: &TlsConfig) -> Result<(), TlsError> {
    metrics.certificate_expires("server", tls::not_after(&t.cert)?);
    metrics.certificate_expires("client_ca", tls::not_after(&t.client_ca)?);
    Ok(())
}

async fn watch_files(gw: Arc<Gateway>, every: Duration, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        let gw = gw.clone();
        // File reads and certificate parsing stay off the async workers.
        let _ = tokio::task::spawn_blocking(move || gw.reload_if_changed()).await;
    }
}

struct HandshakeCounters(Vec<IntCounter>);

impl HandshakeCounters {
    fn new(m: &Metrics) -> Self {
        HandshakeCounters(
            HandshakeFailure::ALL
                .iter()
                .map(|f| m.handshake_failure(f.label()))
                .collect(),
        )
    }

    fn inc(&self, f: HandshakeFailure) {
        if let Some(c) = self.0.get(f as usize) {
            c.inc();
        }
    }
}

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

/// A thread with a runtime of its own for TLS handshakes. A handshake is CPU work
/// (signatures) that any connecting client can ask for; on the request workers, a
/// thousand clients reconnecting at once put a thousand handshakes in the run queue ahead
/// of the requests of open connections (measured: another partner's p99 from 0.2 ms to
/// 120 ms, and queue-delay shedding). Here they queue among themselves, and the OS shares
/// the cores between this thread and the request workers. Connections are accepted and
/// served on the request workers (their sockets belong to that runtime's I/O driver);
/// only the handshake is polled here.
struct HandshakeThread {
    handle: tokio::runtime::Handle,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl HandshakeThread {
    fn start() -> std::io::Result<HandshakeThread> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let handle = rt.handle().clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("permitgate-tls".into())
            .spawn(move || {
                // Below the request workers (SCHED_IDLE): handshakes use the CPU the
                // requests of open connections leave. Best effort; where the OS refuses,
                // the thread stays at normal priority.
                if let Err(e) = thread_priority::unix::set_thread_priority_and_policy(
                    thread_priority::unix::thread_native_id(),
                    thread_priority::ThreadPriority::Min,
                    thread_priority::unix::ThreadSchedulePolicy::Normal(
                        thread_priority::unix::NormalThreadSchedulePolicy::Idle,
                    ),
                ) {
                    tracing::debug!(error = ?e, "TLS handshake thread keeps its priority");
                }
                rt.block_on(async {
                    let _ = stopped.await;
                })
            })?;
        Ok(HandshakeThread {
            handle,
            stop: Some(stop),
        })
    }
}

impl Drop for HandshakeThread {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

async fn accept_loop(
    gw: Arc<Gateway>,
    listener: TcpListener,
    open: Arc<tokio::sync::Semaphore>,
    mut stop: watch::Receiver<bool>,
    handshakes: HandshakeThread,
) {
    let builder = http_builder(&gw.config.server);
    let shared = Arc::new(ConnectionSettings {
        app: gw.app.clone(),
        h1: builder.clone().http1_only(),
        h2: builder.http2_only(),
        handshake_timeout: gw.config.server.handshake_timeout,
        handshakes: handshakes.handle.clone(),
        idle_timeout: gw.config.server.header_read_timeout,
        queue_delay_checked: gw.config.server.max_queue_delay.is_some(),
        failures: HandshakeCounters::new(&gw.metrics),
    });
    let rejected = gw.metrics.connections_rejected();
    let open_gauge = gw.metrics.connections_open();
    loop {
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
        };
        let Ok(permit) = open.clone().try_acquire_owned() else {
            // At the limit: close at once rather than hold a socket nobody will serve.
            rejected.inc();
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let conn = serve_connection(
            shared.clone(),
            TlsAcceptor::from(gw.tls.load_full()),
            stream,
            peer,
            stop.clone(),
        );
        let gauge = open_gauge.clone();
        tokio::spawn(async move {
            gauge.inc();
            conn.await;
            gauge.dec();
            drop(permit);
        });
    }
}

/// What every connection of one listener shares.
struct ConnectionSettings {
    app: Arc<App>,
    /// One builder per protocol: ALPN has decided it, and sniffing the first bytes for a
    /// preface would wait for them without the request-head deadline.
    h1: Builder<TokioExecutor>,
    h2: Builder<TokioExecutor>,
    handshake_timeout: Duration,
    /// Where TLS handshakes run: a thread of their own (see [`HandshakeThread`]).
    handshakes: tokio::runtime::Handle,
    idle_timeout: Duration,
    /// `server.max_queue_delay_ms` is on: measure each HTTP/1.1 request's socket wait.
    queue_delay_checked: bool,
    failures: HandshakeCounters,
}

async fn serve_connection(
    settings: Arc<ConnectionSettings>,
    acceptor: TlsAcceptor,
    stream: TcpStream,
    peer: SocketAddr,
    mut drain: watch::Receiver<bool>,
) {
    // Kept for TCP_INFO: the stream is owned by the connection served below.
    let fd = std::os::fd::AsRawFd::as_raw_fd(&stream);
    let deadline = settings.handshake_timeout;
    let handshake = settings
        .handshakes
        .spawn(async move { tokio::time::timeout(deadline, acceptor.accept(stream)).await });
    let Ok(done) = handshake.await else {
        // The handshake thread is gone: the gateway is stopping.
        return;
    };
    let tls = match done {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            let reason = HandshakeFailure::classify(&e);
            settings.failures.inc(reason);
            tracing::debug!(%peer, reason = reason.label(), error = %e, "TLS handshake failed");
            return;
        }
        Err(_) => {
            settings.failures.inc(HandshakeFailure::Timeout);
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
    let caller = Arc::new(Caller::new(leaf));
    let app = settings.app.clone();
    let activity = Arc::new(Activity::new());
    let seen = activity.clone();
    let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
    // One getsockopt per request, only when something will look at the answer.
    let check_wait = settings.queue_delay_checked;
    let svc = service_fn(move |req: Request<Incoming>| {
        let app = app.clone();
        let caller = caller.clone();
        let seen = seen.clone();
        // HTTP/1.1: how long this request sat in the socket before it was read. (An
        // HTTP/2 socket carries many streams; the scheduling lag covers those.)
        let queued = if h2 || !check_wait {
            None
        } else {
            crate::overload::socket_wait(fd)
        };
        async move {
            // A guard: a stream reset mid-request drops this future, and must count too.
            let _busy = Busy::new(&seen);
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
    let result = loop {
        let check = idle.saturating_sub(activity.idle_for());
        tokio::select! {
            r = conn.as_mut() => break r,
            _ = drain_requested(&mut drain) => {
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

/// Plain-HTTP listener for Prometheus and orchestrator probes; no partner data here.
async fn metrics_loop(gw: Arc<Gateway>, listener: TcpListener, mut stop: watch::Receiver<bool>) {
    loop {
        let stream = tokio::select! {
            r = listener.accept() => match r {
                Ok((s, _)) => s,
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.changed() => return,
        };
        let gw = gw.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req: Request<Incoming>| {
                let gw = gw.clone();
                async move { Ok::<_, Infallible>(ops_response(&gw, req.uri().path())) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

fn ops_response(gw: &Gateway, path: &str) -> Response<Full<Bytes>> {
    let (status, ctype, body) = match path {
        "/metrics" => {
            if let Some(state) = gw.store.current().as_ref() {
                gw.metrics.served_as_of(gw.clock.now(), state.view().info());
            }
            (
                StatusCode::OK,
                "text/plain; version=0.0.4",
                gw.metrics.encode(),
            )
        }
        "/healthz" => (StatusCode::OK, "text/plain", b"alive\n".to_vec()),
        "/readyz" if gw.app.readiness().is_ok() => {
            (StatusCode::OK, "text/plain", b"ready\n".to_vec())
        }
        "/readyz" => (
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain",
            b"not ready\n".to_vec(),
        ),
        _ => (
            StatusCode::NOT_FOUND,
            "text/plain",
            b"try /metrics\n".to_vec(),
        ),
    };
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(ctype),
    );
    r
}
