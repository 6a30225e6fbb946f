//! `[tls]`: the server certificate and key, the partner CA and its CRLs.
//! The section as written (`Raw…`, with its defaults) and as validated, side by side;
//! a value that breaks a rule is recorded in `Problems`, and what is returned then is
//! never used (`Config::parse` returns the problems).

use std::path::{Path, PathBuf};

use serde::Deserialize;

#[derive(Debug, Clone)]
pub struct TlsConfig {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: PathBuf,
    /// Revocation lists of the partner CA (PEM).
    pub crls: Vec<PathBuf>,
}

impl TlsConfig {
    /// Every file a reload reads.
    pub fn files(&self) -> impl Iterator<Item = &Path> {
        [&self.cert, &self.key, &self.client_ca]
            .into_iter()
            .chain(&self.crls)
            .map(PathBuf::as_path)
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTls {
    pub(super) cert: PathBuf,
    pub(super) key: PathBuf,
    pub(super) client_ca: PathBuf,
    #[serde(default)]
    pub(super) crls: Vec<PathBuf>,
}
