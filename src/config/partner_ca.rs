//! `[partner_ca]`: the partner CA's key at the gateway, so that partners renew their
//! certificates over the API (`POST /v1/partner/certificate`) before they end. Absent: the
//! gateway renews nothing (enrolment and renewal by the authority's own commands).

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::Problems;
use crate::partner_ca::CaKeySource;

#[derive(Debug, Clone)]
pub struct PartnerCaConfig {
    /// The CA certificate (default: `tls.client_ca`, which must then hold just it).
    pub cert: PathBuf,
    /// A key file, or a key in an HSM (a `pkcs11:` URI).
    pub key: CaKeySource,
    /// Lifetime of a renewed certificate.
    pub certificate_days: i64,
    /// Renewals one partner may make in any 24 hours.
    pub renewals_per_day: usize,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPartnerCa {
    cert: Option<PathBuf>,
    key: Option<String>,
    #[serde(default = "default_days")]
    certificate_days: i64,
    #[serde(default = "default_renewals")]
    renewals_per_day: usize,
}

fn default_days() -> i64 {
    90
}
fn default_renewals() -> usize {
    4
}

pub(super) fn partner_ca_config(
    r: RawPartnerCa,
    client_ca: &Path,
    resolve: &dyn Fn(PathBuf) -> PathBuf,
    problems: &mut Problems,
) -> Option<PartnerCaConfig> {
    let key = problems.required(r.key, "partner_ca.key").and_then(|k| {
        match CaKeySource::parse(&k, resolve) {
            Ok(k) => Some(k),
            Err(e) => {
                problems.check(false, "partner_ca.key", &e.to_string());
                None
            }
        }
    });
    use crate::partner_ca::MAX_CERTIFICATE_DAYS;
    problems.check(
        (1..=MAX_CERTIFICATE_DAYS).contains(&r.certificate_days),
        "partner_ca.certificate_days",
        &format!("must be from 1 to {MAX_CERTIFICATE_DAYS}"),
    );
    problems.check(
        (1..=100).contains(&r.renewals_per_day),
        "partner_ca.renewals_per_day",
        "must be from 1 to 100",
    );
    Some(PartnerCaConfig {
        cert: r.cert.map(resolve).unwrap_or_else(|| client_ca.to_owned()),
        key: key?,
        certificate_days: r.certificate_days,
        renewals_per_day: r.renewals_per_day,
    })
}
