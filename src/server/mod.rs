//! Wiring: the gateway assembled from its config, and the tasks that serve it.
//!
//! [`Gateway::from_config`] (here) loads everything except the snapshot, so sockets can be
//! bound (and `/healthz` answered) while a large snapshot loads; `snapshot` verifies and
//! installs it and wires the follower; `listen` sets up the partner socket; `listener`
//! accepts partner connections on a thread of their own, past the door (`door`: the
//! budget before authentication), and `handshakes` orders their TLS handshakes on
//! another; `connection` serves one connection (partner identity from the leaf
//! certificate, its share of the partner connections, then HTTP/1.1 or HTTP/2 as ALPN
//! chose; `write_deadline`: writes must progress); `reload` puts changed certificates,
//! CRLs and partners in use; `ops` is the plain metrics and probe listener; `side` holds
//! the side runtimes (accepting, TLS handshakes, control tasks: ops listener, file
//! watcher, follower; followers' connections) that keep that work off the request
//! workers; `fd_limit` checks the open-file limit at start.

mod connection;
mod door;
mod fd_limit;
mod files;
mod handshakes;
mod listen;
mod listener;
mod listener_metrics;
pub mod metrics;
mod ops;
mod reload;
mod side;
mod snapshot;
mod syn_filter;
mod write_deadline;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use ed25519_dalek::VerifyingKey;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::audit::AuditLog;
use crate::clock::Clock;
use crate::config::Config;
use crate::http::admission::AdmissionLimits;
use crate::http::{App, Limits, Parts};
use crate::key_files::{HashKey, KeyError};
use crate::keyring::Keyring;
use crate::overload::LagMonitor;
use crate::pace::Pace;
use crate::snapshot::SignedManifest;
use crate::store::Store;
use crate::tls::TlsError;
pub use metrics::Metrics;

use files::Loaded;
use listener::accept_loop;
pub use listener_metrics::ListenerMetrics;
use ops::metrics_loop;
use reload::{fingerprint, watch_files, ReloadState};
pub use reload::{ReloadMetrics, PAIR_WAIT};
use side::{SideRuntime, NICE_10};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("[partner_ca]")]
    PartnerCa(#[from] crate::partner_ca::PartnerCaError),
    #[error("replication source")]
    Replication(#[from] crate::replication::SourceError),
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Audit(#[from] crate::audit::AuditError),
    #[error("cannot start the {0} thread")]
    SideRuntime(&'static str, #[source] std::io::Error),
    #[error(transparent)]
    FdLimit(#[from] fd_limit::FdLimitError),
    #[error("cannot listen on {addr}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    /// Several files that do not load (src/server/files.rs), each with its cause.
    #[error("{} files do not load:{}", .0.len(), .0.iter().map(|e| format!("\n  {}", crate::report::Report(e))).collect::<String>())]
    Files(Vec<StartError>),
}

/// What `permitgate config check` reports of a config that loads.
#[derive(Debug)]
pub struct Checked {
    pub partners: usize,
    pub publisher_keys: usize,
    pub receipt_keys: usize,
    /// notAfter of the server certificate (Unix seconds).
    pub server_certificate_expires: i64,
    /// What `GET /v1/keys` would serve (the demo puts it beside the verifier page).
    pub published: Keyring,
}

/// Loads every file `config` names (certificates, CA, CRLs, keys) and checks them as
/// `serve` would, without binding a socket, opening the audit log or reading the snapshot.
pub fn check_config(config: &Config) -> Result<Checked, StartError> {
    check(config, false)
}

/// [`check_config`] of a config read only in part (`ConfigError::Invalid`'s `partial`):
/// the files it names, but not the required paths left out (empty), which its problems
/// already name.
pub fn check_config_as_read(config: &Config) -> Result<Checked, StartError> {
    check(config, true)
}

fn check(config: &Config, lenient: bool) -> Result<Checked, StartError> {
    let loaded = Loaded::from(config, lenient)?;
    Ok(Checked {
        partners: config.partners.len(),
        publisher_keys: loaded.publisher_keys.len(),
        receipt_keys: config.receipts.signing_keys.len(),
        server_certificate_expires: crate::tls::not_after(&config.tls.cert)?,
        published: loaded.credentials.keyring,
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
    /// The budget before authentication, and the order of handshakes.
    door: Arc<door::Door>,
    handshake_queue: Arc<handshakes::HandshakeQueue>,
    /// The TLS files in use, and the fingerprint of everything a reload reads as last
    /// seen (so a broken file is tried once per change, not once per poll).
    reload_state: Mutex<ReloadState>,
    config: Config,
    publisher_keys: Vec<VerifyingKey>,
    hash_key: HashKey,
    /// The manifest of what [`Gateway::load_snapshot`] put in service: where a follower
    /// starts from.
    served: Mutex<Option<SignedManifest>>,
    /// What `GET /v1/keys` serves: the revocation list's signature is checked against it.
    keyring: crate::keyring::SharedKeyring,
}

impl Gateway {
    pub fn from_config(config: Config, clock: Arc<dyn Clock>) -> Result<Gateway, StartError> {
        // Before the files are read, as in `try_reload`.
        let files = reload::reloaded_files(&config);
        let seen = fingerprint(&files);
        let Loaded {
            tls,
            revoked,
            publisher_keys,
            hash_key,
            credentials,
        } = Loaded::from(&config, false)?;
        let metrics = Arc::new(Metrics::new());
        metrics.reload.export_expiry(&config.tls)?;
        metrics.reload.export_key_windows(&credentials.keyring);
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
        let store = Arc::new(Store::new(
            config.cache,
            metrics.cache.clone(),
            metrics.served.clone(),
        ));
        let (manifest_tx, manifest_rx) = watch::channel(0u64);
        let keyring = Arc::new(ArcSwap::from_pointee(credentials.keyring.clone()));
        let relay_dir = match (&config.replication, &config.snapshot.repo) {
            (Some(r), _) => Some(r.state_dir.clone()),
            (None, repo) => repo.clone(),
        };
        let relay = relay_dir.map(|dir| {
            crate::http::relay::RelaySource::new(dir, publisher_keys.clone(), manifest_rx)
        });
        let app = Arc::new(
            App::new(Parts {
                store: store.clone(),
                hash_key: hash_key.clone(),
                clock: clock.clone(),
                limits: Limits {
                    max_body_bytes: config.server.max_body_bytes,
                    max_batch_items: config.server.max_batch_items,
                    unready_when_stale_for: config
                        .replication
                        .as_ref()
                        .and_then(|r| r.unready_when_stale_for),
                    body_read_timeout: config.server.body_read_timeout,
                    certificate_warning: time::Duration::days(
                        config.server.partner_certificate_warning_days.into(),
                    ),
                    admission: AdmissionLimits {
                        max_connections: config.server.max_connections,
                        max_concurrent_requests: config.server.max_concurrent_requests,
                        max_requests_per_partner: config.server.max_requests_per_partner,
                        max_relay_waiters: config.server.max_relay_waiters,
                        max_queue_delay: config.server.max_queue_delay,
                    },
                },
                partners: &config.partners,
                revoked,
                metrics: &metrics.http,
                relay,
                credentials,
                audit,
                lag: lag.clone(),
            })
            .map_err(|e| StartError::SideRuntime("work", e))?,
        );
        let door = door::Door::new(
            config.unauthenticated.clone(),
            metrics.listener.door.clone(),
        );
        let handshake_queue = handshakes::HandshakeQueue::new(
            config.unauthenticated.max_queued_handshakes,
            metrics.listener.handshakes_waiting.clone(),
        );
        Ok(Gateway {
            store,
            metrics,
            manifest_changed: Arc::new(manifest_tx),
            clock,
            app,
            lag,
            tls: ArcSwap::new(tls),
            door,
            handshake_queue,
            reload_state: Mutex::new(ReloadState {
                fingerprint: seen,
                files,
                pair_mismatch_since: None,
            }),
            config,
            publisher_keys,
            hash_key,
            served: Mutex::new(None),
            keyring,
        })
    }

    /// The request path, for tests that call [`App::handle`] without sockets.
    pub fn app(&self) -> &Arc<App> {
        &self.app
    }

    /// Writes and fsyncs the audit records of everything answered; call it after
    /// [`Running::drain`].
    pub fn close_audit(&self) {
        self.app.close_audit();
    }

    /// Connections open at most: partners' after their handshake, and both pools of
    /// connections before it (strangers', partner networks').
    fn connection_budget(&self) -> usize {
        self.config.server.max_connections + 2 * self.config.unauthenticated.max_connections
    }

    /// Binds the configured addresses and starts serving.
    pub async fn bind(self: &Arc<Self>) -> Result<Running, StartError> {
        fd_limit::ensure(self.connection_budget())?;
        let listen = self.config.server.listen;
        let listener =
            listen::bind(listen, self.config.server.handshake_timeout).map_err(|source| {
                StartError::Bind {
                    addr: listen,
                    source,
                }
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
        let open = Arc::new(tokio::sync::Semaphore::new(self.connection_budget()));
        let handshakes =
            SideRuntime::start("permitgate-tls", Some(NICE_10), Some(Pace::GIVE_WAY), None)
                .map_err(|e| StartError::SideRuntime("TLS handshake", e))?;
        let control = SideRuntime::start("permitgate-ctl", None, None, Some(NICE_10))
            .map_err(|e| StartError::SideRuntime("control", e))?;
        let followers = if self.app.relays() {
            Some(
                SideRuntime::start(
                    "permitgate-rly",
                    Some(NICE_10),
                    Some(Pace::FOLLOWERS),
                    Some(NICE_10),
                )
                .map_err(|e| StartError::SideRuntime("relay", e))?,
            )
        } else {
            None
        };
        // The partner listener is accepted on a thread of its own (nice 10): a flood of
        // connections the door closes at once costs that thread, not the request workers,
        // and accepting never waits behind handshakes (the listen queue would overflow,
        // and a partner's connection attempt would wait a second for its SYN to be sent
        // again).
        let accepts =
            SideRuntime::start("permitgate-acc", Some(NICE_10), Some(Pace::GIVE_WAY), None)
                .map_err(|e| StartError::SideRuntime("accept", e))?;
        let partner_listener = listener
            .into_std()
            .map_err(|source| StartError::Bind { addr, source })?;
        let accepting = accept_loop(
            self.clone(),
            partner_listener,
            open.clone(),
            stop_rx.clone(),
            tokio::runtime::Handle::current(),
            handshakes.handle().clone(),
            followers.as_ref().map(|f| f.handle().clone()),
        );
        let mut tasks = vec![accepts.handle().spawn(accepting)];
        if let Some(monitor) = self.lag.clone() {
            let gauge = self.metrics.scheduling_lag.clone();
            let stop = stop_rx.clone();
            tasks.push(tokio::spawn(async move { monitor.run(gauge, stop).await }));
        }
        {
            // The door forgets sources that have gone quiet.
            let (door, clock, mut stop) = (self.door.clone(), self.clock.clone(), stop_rx.clone());
            tasks.push(control.handle().spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(5));
                loop {
                    tokio::select! {
                        _ = tick.tick() => {}
                        _ = stop.changed() => return,
                    }
                    let now = u64::try_from(clock.now().unix_timestamp_nanos()).unwrap_or(0);
                    door.sweep(now);
                }
            }));
        }
        if let Some(every) = self.config.server.reload_poll_interval {
            tasks.push(
                control
                    .handle()
                    .spawn(watch_files(self.clone(), every, stop_rx.clone())),
            );
        }
        if let Some(l) = metrics_listener {
            // Registered again with the control runtime's I/O driver, where it is polled.
            let l = l.into_std().map_err(|source| StartError::Bind {
                addr: metrics_addr.unwrap_or(addr),
                source,
            })?;
            let (gw, stop) = (self.clone(), stop_rx);
            tasks.push(control.handle().spawn(async move {
                match TcpListener::from_std(l) {
                    Ok(l) => metrics_loop(gw, l, stop).await,
                    Err(e) => tracing::error!(error = %e, "ops listener unusable"),
                }
            }));
        }
        Ok(Running {
            addr,
            metrics_addr,
            stop: stop_tx,
            tasks,
            open,
            max_connections: self.connection_budget(),
            drain_timeout: self.config.server.drain_timeout,
            control,
            _accepts: accepts,
            _handshakes: handshakes,
            _followers: followers,
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
    /// The ops listener, file watcher and follower run here (side.rs); stopped on drop,
    /// after the tasks.
    control: SideRuntime,
    _accepts: SideRuntime,
    _handshakes: SideRuntime,
    _followers: Option<SideRuntime>,
}

impl Running {
    /// Starts following `[replication]`'s source, if configured. Call it after the
    /// initial [`Gateway::load_snapshot`], so the follower starts from what is served.
    pub fn start_replication(&mut self, gw: &Arc<Gateway>) -> Result<bool, StartError> {
        let Some((follower, interval)) = gw.follower()? else {
            return Ok(false);
        };
        let run = follower.run(interval, self.stop.subscribe());
        self.tasks.push(self.control.handle().spawn(run));
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
