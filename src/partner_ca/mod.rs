//! The partner CA's work, done by our commands instead of by hand with openssl: checking
//! a partner's CSR (csr.rs), issuing its client certificate (`permitgate partners enrol`,
//! renewals: renewals.rs) and recording it in the partner registry, and re-signing the CRL
//! (`permitgate partners revoke`). The CA key is a file or a key in an HSM (key.rs,
//! pkcs11.rs); docs/security.md says which to choose.

use std::path::Path;

use rcgen::{
    CertificateParams, CertificateRevocationListParams, CertificateSigningRequestParams, DnType,
    ExtendedKeyUsagePurpose, Issuer, KeyIdMethod, KeyUsagePurpose, RevocationReason,
    RevokedCertParams, SanType, SerialNumber,
};
use rustls_pki_types::pem::PemObject;
use time::{Duration, OffsetDateTime};

mod csr;
mod key;
mod pkcs11;
mod renewals;

pub use csr::CsrError;
pub use key::{CaKey, CaKeyError, CaKeySource};
pub use pkcs11::UriError;
pub use renewals::{RenewalError, Renewals};

use crate::config::{RawPartner, Registry, RegistryError};
use crate::partner::IssuedCertificate;
use crate::tls::SPIFFE_PARTNER_PREFIX;

/// The longest a partner certificate may live (the CA/Browser Forum's old ceiling for
/// TLS certificates; partners' are 90 days by default).
pub const MAX_CERTIFICATE_DAYS: i64 = 825;

/// How long a new CRL is valid: gateways refuse handshakes once it is past, so it is
/// signed again well before (every `partners revoke` does; docs/operations.md).
pub const CRL_VALIDITY: Duration = Duration::days(7);

#[derive(Debug, thiserror::Error)]
pub enum PartnerCaError {
    #[error(transparent)]
    Csr(#[from] CsrError),
    #[error("the partner CA {what} cannot be used")]
    Ca {
        what: &'static str,
        #[source]
        source: rcgen::Error,
    },
    #[error("the lifetime must be from 1 to {MAX_CERTIFICATE_DAYS} days, not {0}")]
    Lifetime(i64),
    #[error("cannot read or write {}", path.display())]
    Io {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("the CRL {} does not parse", path.display())]
    Crl { path: std::path::PathBuf },
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error("the partner CA key {source_name} cannot be used")]
    Key {
        source_name: String,
        #[source]
        source: CaKeyError,
    },
    #[error("partner {0:?} is already in the registry; a new certificate comes by renewal")]
    Enrolled(String),
    #[error("partner {0:?} is not in the partner registry: its certificates are issued by the authority (`permitgate partners enrol`)")]
    NotEnrolled(String),
}

/// The partner CA: its certificate and key.
pub struct PartnerCa {
    issuer: Issuer<'static, CaKey>,
}

impl PartnerCa {
    /// The CA of the certificate at `cert` with the key `key` names, which must be its.
    pub fn load(cert: &Path, key: &CaKeySource) -> Result<PartnerCa, PartnerCaError> {
        let pem = std::fs::read(cert).map_err(|source| PartnerCaError::Io {
            path: cert.to_owned(),
            source,
        })?;
        let der = rustls_pki_types::CertificateDer::from_pem_slice(&pem).map_err(|_| {
            PartnerCaError::Ca {
                what: "certificate",
                source: rcgen::Error::CouldNotParseCertificate,
            }
        })?;
        let key = CaKey::load(key, &der).map_err(|source| PartnerCaError::Key {
            source_name: key.to_string(),
            source,
        })?;
        let issuer = Issuer::from_ca_cert_der(&der, key).map_err(|source| PartnerCaError::Ca {
            what: "certificate",
            source,
        })?;
        Ok(PartnerCa { issuer })
    }

    /// Checks `csr` (PEM) for partner `id` and issues its client certificate: the id as
    /// subject CN and as SAN URI `spiffe://partners/<id>` (what the gateway reads),
    /// clientAuth only, valid from now for `days`, a random serial.
    pub fn issue(
        &self,
        csr: &str,
        id: &str,
        days: i64,
        now: OffsetDateTime,
    ) -> Result<(String, IssuedCertificate), PartnerCaError> {
        if !(1..=MAX_CERTIFICATE_DAYS).contains(&days) {
            return Err(PartnerCaError::Lifetime(days));
        }
        let der = csr::check(csr, id)?;
        // A certificate's times are whole seconds: what is recorded says the same.
        let now = now.replace_nanosecond(0).unwrap_or(now);
        let public_key = CertificateSigningRequestParams::from_der(&der.as_slice().into())
            .map_err(|_| CsrError::Signature)?
            .public_key;
        let mut p = CertificateParams::default();
        p.distinguished_name.push(DnType::CommonName, id);
        p.subject_alt_names = vec![SanType::URI(
            format!("{SPIFFE_PARTNER_PREFIX}{id}")
                .try_into()
                .map_err(|_| CsrError::Id(id.to_owned()))?,
        )];
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        // A few minutes back: a partner whose clock runs a little behind can use it at once.
        p.not_before = now - Duration::minutes(5);
        p.not_after = now + Duration::days(days);
        let mut serial: [u8; 16] = rand::random();
        serial[0] &= 0x7f;
        serial[0] |= 0x01;
        p.serial_number = Some(SerialNumber::from_slice(&serial));
        let cert = p
            .signed_by(&public_key, &self.issuer)
            .map_err(|source| PartnerCaError::Ca {
                what: "key",
                source,
            })?;
        let issued = IssuedCertificate {
            serial: crate::tls::serial_text(&serial),
            not_after: now + Duration::days(days),
        };
        Ok((cert.pem(), issued))
    }

    /// Adds `serials` (hex) to the CRL at `path` (made when absent) and signs it again,
    /// its number one above the old one's, valid for [`CRL_VALIDITY`].
    pub fn revoke(
        &self,
        path: &Path,
        serials: &[String],
        reason: RevocationReason,
        now: OffsetDateTime,
    ) -> Result<(), PartnerCaError> {
        let (mut revoked, number) = match std::fs::read(path) {
            Ok(pem) => listed(&pem).ok_or_else(|| PartnerCaError::Crl {
                path: path.to_owned(),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => (Vec::new(), 0),
            Err(source) => {
                return Err(PartnerCaError::Io {
                    path: path.to_owned(),
                    source,
                })
            }
        };
        for serial in serials {
            let bytes = hex::decode(serial).map_err(|_| PartnerCaError::Crl {
                path: path.to_owned(),
            })?;
            if revoked
                .iter()
                .any(|r| r.serial_number.as_ref() == bytes.as_slice())
            {
                continue;
            }
            revoked.push(RevokedCertParams {
                serial_number: SerialNumber::from_slice(&bytes),
                revocation_time: now,
                reason_code: Some(reason),
                invalidity_date: None,
            });
        }
        let crl = CertificateRevocationListParams {
            this_update: now,
            next_update: now + CRL_VALIDITY,
            crl_number: SerialNumber::from(number + 1),
            issuing_distribution_point: None,
            revoked_certs: revoked,
            key_identifier_method: KeyIdMethod::Sha256,
        }
        .signed_by(&self.issuer)
        .map_err(|source| PartnerCaError::Ca {
            what: "key",
            source,
        })?;
        let pem = crl.pem().map_err(|source| PartnerCaError::Ca {
            what: "key",
            source,
        })?;
        crate::snapshot::write_atomic(path, pem.as_bytes()).map_err(|source| PartnerCaError::Io {
            path: path.to_owned(),
            source,
        })
    }
}

/// Enrols `partner` (its certificates as issued here): its CSR checked, its certificate
/// issued for `days`, and the partner with that certificate added to the registry at
/// `registry`. Returns the certificate (PEM) and its record.
pub fn enrol(
    ca: &PartnerCa,
    registry: &Path,
    partner: RawPartner,
    csr: &str,
    days: i64,
    now: OffsetDateTime,
) -> Result<(String, IssuedCertificate), PartnerCaError> {
    Registry::update(registry, |r| {
        if r.partners.iter().any(|p| p.id == partner.id) {
            return Err(PartnerCaError::Enrolled(partner.id.clone()));
        }
        let (pem, issued) = ca.issue(csr, &partner.id, days, now)?;
        r.partners.push(RawPartner {
            certificates: vec![issued.clone()],
            ..partner
        });
        Ok((pem, issued))
    })
}

/// A new certificate for a partner of the registry at `registry`, recorded there before
/// it is handed out: `partners revoke --id` and `partners list` see every certificate a
/// partner holds. One that could not be recorded is not handed out.
pub fn reissue(
    ca: &PartnerCa,
    registry: &Path,
    id: &str,
    csr: &str,
    days: i64,
    now: OffsetDateTime,
) -> Result<(String, IssuedCertificate), PartnerCaError> {
    Registry::update(registry, |r| {
        let Some(p) = r.partners.iter_mut().find(|p| p.id == id) else {
            return Err(PartnerCaError::NotEnrolled(id.to_owned()));
        };
        let (pem, issued) = ca.issue(csr, id, days, now)?;
        p.certificates.push(issued.clone());
        Ok((pem, issued))
    })
}

/// What a CRL (PEM) lists, and its number.
fn listed(pem: &[u8]) -> Option<(Vec<RevokedCertParams>, u64)> {
    let der = rustls_pki_types::CertificateRevocationListDer::from_pem_slice(pem).ok()?;
    let (_, crl) = x509_parser::parse_x509_crl(der.as_ref()).ok()?;
    let number = crl
        .crl_number()
        .and_then(|n| u64::try_from(n.clone()).ok())
        .unwrap_or(0);
    let revoked = crl
        .iter_revoked_certificates()
        .map(|r| RevokedCertParams {
            serial_number: SerialNumber::from_slice(r.raw_serial()),
            revocation_time: r.revocation_date.to_datetime(),
            // Kept as it was listed: a key compromise stays one when the list is re-signed.
            reason_code: r.reason_code().and_then(|(_, code)| reason_of_code(code.0)),
            invalidity_date: None,
        })
        .collect();
    Some((revoked, number))
}

/// RFC 5280's CRLReason as rcgen has it.
fn reason_of_code(code: u8) -> Option<RevocationReason> {
    Some(match code {
        0 => RevocationReason::Unspecified,
        1 => RevocationReason::KeyCompromise,
        2 => RevocationReason::CaCompromise,
        3 => RevocationReason::AffiliationChanged,
        4 => RevocationReason::Superseded,
        5 => RevocationReason::CessationOfOperation,
        6 => RevocationReason::CertificateHold,
        8 => RevocationReason::RemoveFromCrl,
        9 => RevocationReason::PrivilegeWithdrawn,
        10 => RevocationReason::AaCompromise,
        _ => return None,
    })
}

/// The CLI's words for a reason.
pub fn reason(word: &str) -> Option<RevocationReason> {
    Some(match word {
        "unspecified" => RevocationReason::Unspecified,
        "key-compromise" => RevocationReason::KeyCompromise,
        "affiliation-changed" => RevocationReason::AffiliationChanged,
        "superseded" => RevocationReason::Superseded,
        "cessation-of-operation" => RevocationReason::CessationOfOperation,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::KeyPair;

    /// A CA in `dir`: certificate and key files.
    fn ca(dir: &Path) -> PartnerCa {
        let mut p = CertificateParams::new(Vec::<String>::new()).expect("params");
        p.distinguished_name
            .push(DnType::CommonName, "test partner CA");
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let key = KeyPair::generate().expect("key");
        let cert = p.self_signed(&key).expect("ca");
        std::fs::write(dir.join("ca.crt"), cert.pem()).expect("write");
        std::fs::write(dir.join("ca.key"), key.serialize_pem()).expect("write");
        PartnerCa::load(&dir.join("ca.crt"), &CaKeySource::File(dir.join("ca.key"))).expect("load")
    }

    fn csr(id: &str) -> String {
        let mut p = CertificateParams::default();
        p.distinguished_name.push(DnType::CommonName, id);
        let key = KeyPair::generate().expect("key");
        p.serialize_request(&key).expect("csr").pem().expect("pem")
    }

    fn partner(id: &str) -> RawPartner {
        RawPartner {
            id: id.to_owned(),
            ..RawPartner::default()
        }
    }

    /// Every certificate issued is in the registry, whoever issued it and however many
    /// issue at once: renewals on threads of their own, each reading and writing the
    /// whole file, lose none of each other's.
    #[test]
    fn the_registry_records_every_certificate_issued() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = std::sync::Arc::new(ca(dir.path()));
        let registry = dir.path().join("partners.toml");
        let now = OffsetDateTime::now_utc();
        enrol(&ca, &registry, partner("bank"), &csr("bank"), 90, now).expect("enrol");
        enrol(&ca, &registry, partner("rail"), &csr("rail"), 90, now).expect("enrol");
        let again = enrol(&ca, &registry, partner("bank"), &csr("bank"), 90, now);
        assert!(matches!(again, Err(PartnerCaError::Enrolled(_))));
        let unknown = reissue(&ca, &registry, "nobody", &csr("nobody"), 90, now);
        assert!(matches!(unknown, Err(PartnerCaError::NotEnrolled(_))));
        let threads: Vec<_> = (0..8)
            .map(|i| {
                let (ca, registry) = (ca.clone(), registry.clone());
                let id = if i % 2 == 0 { "bank" } else { "rail" };
                std::thread::spawn(move || {
                    reissue(&ca, &registry, id, &csr(id), 90, now)
                        .expect("reissue")
                        .1
                })
            })
            .collect();
        let issued: Vec<IssuedCertificate> = threads
            .into_iter()
            .map(|t| t.join().expect("thread"))
            .collect();
        let r = Registry::load(&registry).expect("load");
        let recorded: Vec<&IssuedCertificate> =
            r.partners.iter().flat_map(|p| &p.certificates).collect();
        assert_eq!(recorded.len(), 10, "two enrolled, eight renewed");
        for c in &issued {
            assert!(recorded.contains(&c), "{c:?} recorded");
        }
    }

    #[test]
    fn a_crl_signed_again_keeps_what_it_listed_and_why() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = ca(dir.path());
        let crl = dir.path().join("partners.crl");
        let now = OffsetDateTime::now_utc();
        ca.revoke(&crl, &["0A01".into()], RevocationReason::KeyCompromise, now)
            .expect("first");
        ca.revoke(
            &crl,
            &["0B02".into(), "0A01".into()],
            RevocationReason::Superseded,
            now,
        )
        .expect("second");
        let (listed, number) = listed(&std::fs::read(&crl).expect("read")).expect("parses");
        assert_eq!(number, 2);
        let reasons: Vec<(Vec<u8>, Option<RevocationReason>)> = listed
            .iter()
            .map(|r| (r.serial_number.as_ref().to_vec(), r.reason_code))
            .collect();
        assert_eq!(
            reasons,
            vec![
                (vec![0x0a, 0x01], Some(RevocationReason::KeyCompromise)),
                (vec![0x0b, 0x02], Some(RevocationReason::Superseded)),
            ],
            "listed once each, each with its own reason"
        );
    }
}
