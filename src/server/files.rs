//! The files a config names, loaded and checked: the partner-facing TLS (server
//! certificate and key, partner CA, CRLs), the snapshot's keys, the receipt and
//! temporary-permit keys (the keyring `GET /v1/keys` publishes), the partner CA, the audit
//! checkpoint key and replication's client TLS. Each file is read on its own, so a start,
//! a reload or `config check` names every file that does not load, not only the first.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;

use ed25519_dalek::VerifyingKey;

use crate::config::{Config, TlsConfig};
use crate::http::Credentials;
use crate::key_files::{load_signing_key, load_verifying_key, HashKey};
use crate::keyring::{KeyUse, Keyring, PublicKey, SigningKeys, Validity};
use crate::tls::{self, IssuedAs};

use super::StartError;

/// The failures met so far. `lenient`: a config `config check` could read only in part,
/// where a required path left out is empty (and already named by the config's problems);
/// anywhere else an empty path is a file that does not load.
pub(super) struct Failures {
    failed: Vec<StartError>,
    lenient: bool,
}

impl Failures {
    pub(super) fn new(lenient: bool) -> Failures {
        Failures {
            failed: Vec::new(),
            lenient,
        }
    }

    /// The value, or `None` with its error kept (several, from a loader that collects,
    /// kept one by one).
    pub(super) fn keep<T, E: Into<StartError>>(&mut self, result: Result<T, E>) -> Option<T> {
        match result.map_err(Into::into) {
            Ok(v) => Some(v),
            Err(StartError::Files(several)) => {
                self.failed.extend(several);
                None
            }
            Err(e) => {
                self.failed.push(e);
                None
            }
        }
    }

    /// `load(path)` kept; when lenient, `None` for an empty path.
    pub(super) fn file<T, E: Into<StartError>>(
        &mut self,
        path: &Path,
        load: impl FnOnce(&Path) -> Result<T, E>,
    ) -> Option<T> {
        if self.lenient && path.as_os_str().is_empty() {
            return None;
        }
        self.keep(load(path))
    }

    fn is_empty(&self) -> bool {
        self.failed.is_empty()
    }

    /// `value` when nothing failed; else the one failure, or all of them.
    pub(super) fn finish<T>(mut self, value: Option<T>) -> Result<T, StartError> {
        match (self.failed.len(), value) {
            (0, Some(v)) => Ok(v),
            (1, _) => Err(self.failed.remove(0)),
            // Lenient only: something was left out, nothing failed to load.
            (0, None) => Err(StartError::Files(Vec::new())),
            _ => Err(StartError::Files(self.failed)),
        }
    }
}

/// The partner-facing TLS config and the certificates its CRLs revoke.
pub(super) fn partner_tls(
    t: &TlsConfig,
    lenient: bool,
) -> Result<(Arc<rustls::ServerConfig>, HashSet<IssuedAs>), StartError> {
    let mut failed = Failures::new(lenient);
    let crls: Vec<_> = (t.crls.iter())
        .filter_map(|path| failed.keep(tls::load_crls(std::slice::from_ref(path))))
        .flatten()
        .collect();
    let revoked = failed.keep(tls::revoked_certificates(&crls));
    let chain = failed.file(&t.cert, tls::load_certs);
    let key = failed.file(&t.key, tls::load_key);
    let partner_cas = failed.file(&t.client_ca, tls::load_certs);
    let config = match (chain, key, partner_cas) {
        (Some(chain), Some(key), Some(partner_cas)) if failed.is_empty() => {
            let files = tls::ServerFiles {
                chain,
                key,
                partner_cas,
                crls,
            };
            failed.keep(tls::server_config_from(files, &t.cert, &t.client_ca))
        }
        _ => None,
    };
    failed.finish(config.zip(revoked))
}

/// What a reload may put in use without a restart besides TLS and partners: the receipt
/// signing keys and the keyring published at `GET /v1/keys` (receipt, temporary-permit and
/// snapshot keys, the authority's name and the verifier page's address).
pub(super) struct Keys {
    pub(super) receipt_keys: SigningKeys,
    pub(super) keyring: Keyring,
}

pub(super) fn keys(
    config: &Config,
    publisher_keys: &[VerifyingKey],
    lenient: bool,
) -> Result<Keys, StartError> {
    let mut failed = Failures::new(lenient);
    let receipt_keys: Vec<_> = (config.receipts.signing_keys.iter())
        .filter_map(|k| Some((failed.file(&k.path, load_signing_key)?, k.validity)))
        .collect();
    let receipt_keys = SigningKeys::new(receipt_keys);
    let mut published: Vec<PublicKey> = receipt_keys.public(KeyUse::Receipt).collect();
    for k in &config.temp_permits.issuer_keys {
        if let Some(key) = failed.file(&k.path, load_verifying_key) {
            published.push(PublicKey::new(KeyUse::TempPermit, key, k.validity));
        }
    }
    published.extend(
        (publisher_keys.iter()).map(|k| PublicKey::new(KeyUse::Snapshot, *k, Validity::default())),
    );
    let mut keyring = Keyring::new(published);
    keyring.authority = config.receipts.authority.clone();
    keyring.verify_url = config.receipts.verify_url.clone();
    failed.finish(Some(Keys {
        receipt_keys,
        keyring,
    }))
}

/// The snapshot publishers' public keys.
pub(super) fn publisher_keys(
    config: &Config,
    lenient: bool,
) -> Result<Vec<VerifyingKey>, StartError> {
    let mut failed = Failures::new(lenient);
    let keys = (config.snapshot.publisher_keys.iter())
        .filter_map(|p| failed.file(p, load_verifying_key))
        .collect();
    failed.finish(Some(keys))
}

/// The files a config names, loaded and checked: what `serve` needs before it binds,
/// and all that `permitgate config check` does.
pub(super) struct Loaded {
    pub(super) tls: Arc<rustls::ServerConfig>,
    pub(super) revoked: HashSet<IssuedAs>,
    pub(super) publisher_keys: Vec<VerifyingKey>,
    pub(super) hash_key: HashKey,
    pub(super) credentials: Credentials,
}

impl Loaded {
    /// `lenient`: see [`Failures`].
    pub(super) fn from(config: &Config, lenient: bool) -> Result<Loaded, StartError> {
        let mut failed = Failures::new(lenient);
        let tls = failed.keep(partner_tls(&config.tls, lenient));
        let publisher_keys = failed
            .keep(publisher_keys(config, lenient))
            .unwrap_or_default();
        let hash_key = failed.file(&config.snapshot.hash_key, HashKey::load);
        let keys = failed.keep(keys(config, &publisher_keys, lenient));
        let renewals = match (&config.partner_ca, &config.partners_file) {
            (Some(p), Some(registry)) => failed
                .file(&p.cert, |cert| {
                    crate::partner_ca::PartnerCa::load(cert, &p.key)
                })
                .map(|ca| {
                    crate::partner_ca::Renewals::new(
                        ca,
                        registry.clone(),
                        p.certificate_days,
                        p.renewals_per_day,
                    )
                }),
            // The config's rules require the registry with [partner_ca].
            _ => None,
        };
        if let Some(c) = config.audit.as_ref().and_then(|a| a.checkpoints.as_ref()) {
            // Loaded again by the audit writer; checked here so that `config check` says so.
            failed.file(&c.key, load_signing_key);
        }
        if let Some(r) = &config.replication {
            if let Some(ca) = &r.ca {
                // Built again by the follower; checked here so that `config check` says so.
                let identity = r.client_cert.as_deref().zip(r.client_key.as_deref());
                failed.file(ca, |ca| tls::client_config(ca, identity));
            }
        }
        let loaded = match (tls, hash_key, keys) {
            (Some((tls, revoked)), Some(hash_key), Some(keys)) => Some(Loaded {
                tls,
                revoked,
                publisher_keys,
                hash_key,
                credentials: Credentials {
                    receipt_keys: keys.receipt_keys,
                    keyring: keys.keyring,
                    temp_permit_skew: config.temp_permits.clock_skew,
                    renewals,
                },
            }),
            _ => None,
        };
        failed.finish(loaded)
    }
}
