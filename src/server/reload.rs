//! Reload: the config file and the TLS files it names, on SIGHUP or when their content
//! changes; a file that does not load is refused, counted once per change, and the old
//! state kept.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::config::{Config, TlsConfig};
use prometheus::{GaugeVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry};

use crate::metrics::register;
use crate::report::Report;
use crate::tls::{self, TlsError};

use super::files::{self, partner_tls};
use super::{Gateway, StartError};

impl Gateway {
    /// Reads the config file again and puts its certificates, CA, CRLs, partner table,
    /// receipt signing keys and published keyring (`GET /v1/keys`) in use; other changed
    /// sections are named in a warning and `permitgate_config_restart_needed`. Handshakes already done and requests already admitted are not disturbed.
    /// On any error nothing changes: the error is logged and counted, and returned.
    pub fn reload(&self) -> Result<(), StartError> {
        self.reloaded(self.try_reload())
    }

    /// Counts and logs a reload's result.
    fn reloaded(&self, result: Result<(), StartError>) -> Result<(), StartError> {
        self.metrics.reload.reloaded(result.is_ok());
        match &result {
            Ok(()) => tracing::info!("reloaded certificates, CRLs, partners and keys"),
            Err(e) => tracing::error!(error = %Report(e), "reload refused; keeping what is in use"),
        }
        result
    }

    fn try_reload(&self) -> Result<(), StartError> {
        let config = Config::load(&self.config.path)?;
        // Taken before the files are read: a file replaced while they load then differs
        // from what is recorded, and the next poll loads it (taken after, it would be
        // recorded as loaded without being so).
        let files = reloaded_files(&config);
        let seen = fingerprint(&files);
        let (tls, revoked) = partner_tls(&config.tls, false)?;
        // The snapshot publishers' keys in use (a new one needs a restart, below).
        let keys = files::keys(&config, &self.publisher_keys, false)?;
        self.metrics.reload.export_expiry(&config.tls)?;
        self.metrics.reload.export_key_windows(&keys.keyring);
        self.tls.store(tls);
        self.app.set_partners(&config.partners, revoked);
        self.app.set_keys(
            keys.receipt_keys,
            keys.keyring.clone(),
            config.temp_permits.clock_skew,
        );
        self.keyring.store(Arc::new(keys.keyring));
        let restart = self.config.restart_needed(&config);
        self.metrics
            .reload
            .restart_needed
            .set(i64::from(!restart.is_empty()));
        if !restart.is_empty() {
            tracing::warn!(
                sections = %restart.join(", "),
                "these sections of the config changed, and only a restart puts them in use; \
                 the rest is reloaded"
            );
        }
        let mut state = self.reload_state.lock().unwrap_or_else(|e| e.into_inner());
        state.fingerprint = seen;
        state.files = files;
        Ok(())
    }

    /// Reloads if any file a reload reads changed since it was last looked at. A server
    /// certificate that does not match its key is waited on for [`PAIR_WAIT`] (tried
    /// again at every poll, not counted): the other file of the pair is likely on its way.
    fn reload_if_changed(&self) {
        let since = {
            let mut state = self.reload_state.lock().unwrap_or_else(|e| e.into_inner());
            let now = fingerprint(&state.files);
            if now == state.fingerprint && state.pair_mismatch_since.is_none() {
                return;
            }
            if now != state.fingerprint {
                tracing::info!(fingerprint = %&now.to_hex()[..16], "configuration files changed");
            }
            state.fingerprint = now;
            state.pair_mismatch_since
        };
        let result = self.try_reload();
        let mismatch = matches!(&result, Err(StartError::Tls(e)) if e.is_pair_mismatch());
        let mut state = self.reload_state.lock().unwrap_or_else(|e| e.into_inner());
        if mismatch && since.is_none_or(|t| t.elapsed() < PAIR_WAIT) {
            state.pair_mismatch_since = Some(since.unwrap_or_else(Instant::now));
            self.metrics.reload.pair_waits.inc();
            tracing::info!(
                waiting_s = PAIR_WAIT.as_secs(),
                "the server certificate and key do not match (yet): waiting for the other of the pair"
            );
            return;
        }
        state.pair_mismatch_since = None;
        drop(state);
        let _ = self.reloaded(result);
    }
}

/// How long a reload from changed files waits for a server certificate and key that do
/// not match to be completed by the other file (docs/operations.md, "Rotating certificates").
pub const PAIR_WAIT: Duration = Duration::from_secs(10);

pub(super) struct ReloadState {
    pub(super) fingerprint: blake3::Hash,
    /// What a reload reads: [`reloaded_files`] of the config in use.
    pub(super) files: Vec<std::path::PathBuf>,
    /// Since when the server certificate and key have not matched, while waited on.
    pub(super) pair_mismatch_since: Option<Instant>,
}

/// The config file, every TLS file it names, the partner registry, and the receipt and
/// temporary-permit key files (a key replaced under the same name is picked up too).
pub(super) fn reloaded_files(config: &Config) -> Vec<std::path::PathBuf> {
    let keys = (config.receipts.signing_keys.iter())
        .chain(&config.temp_permits.issuer_keys)
        .map(|k| k.path.as_path());
    std::iter::once(config.path.as_path())
        .chain(config.tls.files())
        .chain(config.partners_file.as_deref())
        .chain(keys)
        .map(Path::to_owned)
        .collect()
}

/// Hash of `files`; unreadable files hash as absent, so a file being replaced shows up as
/// a change (and a failed reload) once, not an error per poll.
pub(super) fn fingerprint(files: &[std::path::PathBuf]) -> blake3::Hash {
    let mut h = blake3::Hasher::new();
    for path in files {
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

/// Reloads by result, and the expiry of the certificates in use.
pub struct ReloadMetrics {
    ok: IntCounter,
    failed: IntCounter,
    last_successful: IntGauge,
    /// The end of each receipt and temporary-permit key's window, by use and key id.
    key_window_end: GaugeVec,
    /// Reloads put off while the server certificate and key did not match.
    pair_waits: IntCounter,
    /// 1 while the config file holds changes a reload cannot apply.
    restart_needed: IntGauge,
    certificate_expiry: GaugeVec,
}

impl ReloadMetrics {
    pub fn register(registry: &Registry) -> ReloadMetrics {
        let reloads = register(
            registry,
            IntCounterVec::new(
                Opts::new(
                    "permitgate_reloads_total",
                    "Reloads of certificates, CRLs and the partner table (SIGHUP or a changed file), by result; a failed one keeps what was in use.",
                ),
                &["result"],
            ),
        );
        let last_successful = register(
            registry,
            IntGauge::new(
                "permitgate_config_last_reload_successful",
                "1 when the last reload went through (or none was tried since the start), 0 while the last one was refused.",
            ),
        );
        last_successful.set(1);
        ReloadMetrics {
            ok: reloads.with_label_values(&["ok"]),
            failed: reloads.with_label_values(&["failed"]),
            last_successful,
            key_window_end: register(
                registry,
                GaugeVec::new(
                    Opts::new(
                        "permitgate_signing_key_not_after_timestamp_seconds",
                        "End of the window of each receipt signing and temporary-permit issuing key published at /v1/keys (+Inf: open-ended); the latest per use is when signing or verifying stops without a successor.",
                    ),
                    &["use", "key_id"],
                ),
            ),
            restart_needed: register(
                registry,
                IntGauge::new(
                    "permitgate_config_restart_needed",
                    "1 when the config file read by the last reload changed a section only a restart applies (server, listeners, snapshot, replication, audit...): see the reload's warning.",
                ),
            ),
            pair_waits: register(
                registry,
                IntCounter::new(
                    "permitgate_reload_pair_waits_total",
                    "Reloads put off (not counted as failed) because the server certificate and key did not match, while the other of the pair may still be on its way.",
                )
                ,
            ),
            certificate_expiry: register(
                registry,
                GaugeVec::new(
                    Opts::new(
                        "permitgate_certificate_expiry_timestamp_seconds",
                        "notAfter of the certificates in use (server: the leaf; client_ca: the partner CA).",
                    ),
                    &["certificate"],
                ),
            ),
        }
    }

    fn reloaded(&self, ok: bool) {
        if ok { &self.ok } else { &self.failed }.inc();
        self.last_successful.set(i64::from(ok));
    }

    /// Records when the windows of the published receipt and temporary-permit keys end.
    pub(super) fn export_key_windows(&self, keyring: &crate::keyring::Keyring) {
        use crate::keyring::KeyUse;
        self.key_window_end.reset();
        for k in keyring.keys() {
            if matches!(k.key_use, KeyUse::Receipt | KeyUse::TempPermit) {
                let end = k
                    .validity
                    .not_after
                    .map_or(f64::INFINITY, |t| t.unix_timestamp() as f64);
                self.key_window_end
                    .with_label_values(&[k.key_use.as_str(), &k.id.to_string()])
                    .set(end);
            }
        }
    }

    /// Records when the server certificate and the partner CA in use expire.
    pub(super) fn export_expiry(&self, t: &TlsConfig) -> Result<(), TlsError> {
        for (name, path) in [("server", &t.cert), ("client_ca", &t.client_ca)] {
            self.certificate_expiry
                .with_label_values(&[name])
                .set(tls::not_after(path)? as f64);
        }
        Ok(())
    }
}

pub(super) async fn watch_files(
    gw: Arc<Gateway>,
    every: Duration,
    mut stop: watch::Receiver<bool>,
) {
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
