//! `[receipts]` and `[temp_permits]`: the signing and issuing keys and their windows.
//! The section as written (`Raw…`, with its defaults) and as validated, side by side;
//! a value that breaks a rule is recorded in `Problems`, and what is returned then is
//! never used (`Config::parse` returns the problems).

use std::path::PathBuf;

use serde::Deserialize;

use super::Problems;
use crate::keyring::Validity;

/// A key file and the window in which the key may sign.
#[derive(Debug, Clone)]
pub struct KeyFile {
    pub path: PathBuf,
    pub validity: Validity,
}

#[derive(Debug, Clone, Default)]
pub struct ReceiptsConfig {
    /// Receipt signing keys (PKCS#8 PEM); empty when receipts are off.
    pub signing_keys: Vec<KeyFile>,
    /// Printed on the paper document, published with the keys (`GET /v1/keys`).
    pub authority: Option<crate::keyring::Authority>,
    /// The verifier page a receipt's QR code opens (`<verify_url>#<receipt>`); also published
    /// with the keys.
    pub verify_url: Option<String>,
}

#[derive(Debug, Clone)]
pub struct TempPermitConfig {
    /// The authority's temporary-permit issuing public keys (SPKI PEM).
    pub issuer_keys: Vec<KeyFile>,
    /// Gates' clocks may be this far off either way.
    pub clock_skew: time::Duration,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawReceipts {
    pub(super) signing_keys: Vec<RawKeyFile>,
    pub(super) authority: Option<crate::keyring::Authority>,
    pub(super) verify_url: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawTempPermits {
    pub(super) issuer_keys: Vec<RawKeyFile>,
    pub(super) clock_skew_seconds: u64,
}

impl Default for RawTempPermits {
    fn default() -> Self {
        RawTempPermits {
            issuer_keys: Vec::new(),
            clock_skew_seconds: crate::temp_permit::DEFAULT_CLOCK_SKEW.whole_seconds() as u64,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawKeyFile {
    pub(super) path: PathBuf,
    pub(super) not_before: Option<String>,
    pub(super) not_after: Option<String>,
}

pub(super) fn receipts_config(
    r: RawReceipts,
    resolve: &dyn Fn(PathBuf) -> PathBuf,
    problems: &mut Problems,
) -> ReceiptsConfig {
    problems.check(
        !r.signing_keys.is_empty(),
        "receipts.signing_keys",
        "needs at least one key (or leave [receipts] out)",
    );
    let authority = r.authority.map(|a| {
        let mut name = |field: &str, text: String| match crate::person_name::normalize(&text) {
            Ok(n) => n,
            Err(e) => {
                problems.check(false, format!("receipts.authority.{field}"), &e.to_string());
                text
            }
        };
        crate::keyring::Authority {
            zh: name("zh", a.zh),
            en: name("en", a.en),
        }
    });
    if let Some(url) = &r.verify_url {
        if let Err(e) = crate::keyring::check_verify_url(url) {
            problems.check(false, "receipts.verify_url", &e.to_string());
        }
    }
    ReceiptsConfig {
        signing_keys: key_files("receipts.signing_keys", r.signing_keys, resolve, problems),
        authority,
        verify_url: r.verify_url,
    }
}

pub(super) fn key_files(
    table: &str,
    raw: Vec<RawKeyFile>,
    resolve: &dyn Fn(PathBuf) -> PathBuf,
    problems: &mut Problems,
) -> Vec<KeyFile> {
    raw.into_iter()
        .enumerate()
        .map(|(i, k)| {
            let mut time = |name: &str, v: Option<String>| {
                let parsed = v.as_deref().map(crate::day::parse_rfc3339);
                problems.check(
                    !matches!(parsed, Some(None)),
                    format!("{table}[{i}].{name}"),
                    "must be an RFC 3339 time such as 2027-01-01T00:00:00Z",
                );
                parsed.flatten()
            };
            let validity = Validity {
                not_before: time("not_before", k.not_before),
                not_after: time("not_after", k.not_after),
            };
            if let (Some(nb), Some(na)) = (validity.not_before, validity.not_after) {
                problems.check(
                    nb < na,
                    format!("{table}[{i}].not_after"),
                    "must be after not_before",
                );
            }
            KeyFile {
                path: resolve(k.path),
                validity,
            }
        })
        .collect()
}
