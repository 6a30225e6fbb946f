//! Renewal over the API (`POST /v1/partner/certificate`): the partner CA at the gateway,
//! each renewal recorded in the partner registry, a few a day per partner.

use time::OffsetDateTime;

use super::csr::{self, CsrError};
use super::{reissue, PartnerCa, PartnerCaError};
use crate::partner::IssuedCertificate;

/// Renewal over the API (`POST /v1/partner/certificate`): the CA, the registry that
/// records what it issues, the lifetime of what it issues, and how often each partner may
/// ask.
pub struct Renewals {
    ca: PartnerCa,
    /// The partner registry, where each renewal is recorded.
    registry: std::path::PathBuf,
    days: i64,
    per_day: usize,
    /// When each partner renewed, in the last 24 hours (Unix seconds).
    recent: std::sync::Mutex<std::collections::HashMap<String, Vec<i64>>>,
}

/// Why a renewal is refused.
#[derive(Debug, thiserror::Error)]
pub enum RenewalError {
    #[error(transparent)]
    Csr(#[from] CsrError),
    #[error("at most {0} renewals in any 24 hours")]
    TooOften(usize),
    #[error("partner {0:?} is configured in the gateway's config, not in the partner registry: the authority renews its certificate")]
    NotEnrolled(String),
    #[error("the partner CA could not sign or record the certificate")]
    Sign(#[source] PartnerCaError),
}

impl Renewals {
    pub fn new(ca: PartnerCa, registry: std::path::PathBuf, days: i64, per_day: usize) -> Renewals {
        Renewals {
            ca,
            registry,
            days,
            per_day,
            recent: Default::default(),
        }
    }

    /// A new certificate for `id` from its CSR: the same profile as enrolment.
    pub fn renew(
        &self,
        id: &str,
        csr: &str,
        now: OffsetDateTime,
    ) -> Result<(String, IssuedCertificate), RenewalError> {
        csr::check(csr, id)?;
        let t = now.unix_timestamp();
        {
            let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
            let times = recent.entry(id.to_owned()).or_default();
            times.retain(|at| t - at < 86_400);
            if times.len() >= self.per_day {
                return Err(RenewalError::TooOften(self.per_day));
            }
            times.push(t);
        }
        reissue(&self.ca, &self.registry, id, csr, self.days, now).map_err(|e| match e {
            PartnerCaError::Csr(c) => RenewalError::Csr(c),
            PartnerCaError::NotEnrolled(id) => RenewalError::NotEnrolled(id),
            e => RenewalError::Sign(e),
        })
    }
}
