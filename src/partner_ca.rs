//! The partner CA's work, done by our commands instead of by hand with openssl: checking
//! a partner's CSR, issuing its client certificate (`permitgate partners enrol`), and
//! re-signing the CRL (`permitgate partners revoke`). The CA key is a file here (the demo,
//! small deployments); docs/security.md says how a deployment keeps it offline.

use std::path::Path;

use rcgen::{
    CertificateParams, CertificateRevocationListParams, CertificateSigningRequestParams, DnType,
    ExtendedKeyUsagePurpose, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose, RevocationReason,
    RevokedCertParams, SanType, SerialNumber,
};
use rustls_pki_types::pem::PemObject;
use time::{Duration, OffsetDateTime};
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::FromDer;
use x509_parser::public_key::PublicKey;

use crate::config::{RawPartner, Registry, RegistryError};
use crate::partner::{valid_partner_id, IssuedCertificate};
use crate::tls::SPIFFE_PARTNER_PREFIX;

/// The longest a partner certificate may live (the CA/Browser Forum's old ceiling for
/// TLS certificates; partners' are 90 days by default).
pub const MAX_CERTIFICATE_DAYS: i64 = 825;

/// How long a new CRL is valid: gateways refuse handshakes once it is past, so it is
/// signed again well before (every `partners revoke` does; docs/operations.md).
pub const CRL_VALIDITY: Duration = Duration::days(7);

/// Why a CSR is refused: each names the rule it breaks.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CsrError {
    #[error("the CSR is not a PKCS#10 request in PEM (\"-----BEGIN CERTIFICATE REQUEST-----\")")]
    Parse,
    #[error("the CSR's signature does not verify: it was not signed with the key it carries")]
    Signature,
    #[error(
        "the CSR's key is {0}: use ECDSA P-256 or P-384, Ed25519, or RSA of at least 2048 bits"
    )]
    Key(String),
    #[error("the CSR asks for a CA certificate (basicConstraints CA:TRUE): partners get end-entity certificates only")]
    CaRequested,
    #[error("the CSR names {named:?}, not the partner id {id:?}: its subject CN and SAN URI spiffe://partners/<id> must be the id, or absent")]
    OtherId { named: String, id: String },
    #[error("the partner id {0:?} must be 1-64 characters of a-z, 0-9, '-', '_', '.'")]
    Id(String),
}

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
    #[error("partner {0:?} is already in the registry; a new certificate comes by renewal")]
    Enrolled(String),
    #[error("partner {0:?} is not in the partner registry: its certificates are issued by the authority (`permitgate partners enrol`)")]
    NotEnrolled(String),
}

/// The partner CA: its certificate and key.
pub struct PartnerCa {
    issuer: Issuer<'static, KeyPair>,
}

impl PartnerCa {
    pub fn load(cert: &Path, key: &Path) -> Result<PartnerCa, PartnerCaError> {
        let read = |path: &Path| {
            std::fs::read_to_string(path).map_err(|source| PartnerCaError::Io {
                path: path.to_owned(),
                source,
            })
        };
        let key = KeyPair::from_pem(&read(key)?).map_err(|source| PartnerCaError::Ca {
            what: "key",
            source,
        })?;
        let issuer =
            Issuer::from_ca_cert_pem(&read(cert)?, key).map_err(|source| PartnerCaError::Ca {
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
        let der = check_csr(csr, id)?;
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

/// The CSR's DER, if it is one a partner `id` may be issued a certificate for.
pub fn check_csr(pem: &str, id: &str) -> Result<Vec<u8>, CsrError> {
    if !valid_partner_id(id) {
        return Err(CsrError::Id(id.to_owned()));
    }
    let der = rustls_pki_types::CertificateSigningRequestDer::from_pem_slice(pem.as_bytes())
        .map_err(|_| CsrError::Parse)?;
    let (_, csr) = X509CertificationRequest::from_der(der.as_ref()).map_err(|_| CsrError::Parse)?;
    let info = &csr.certification_request_info;
    let spki = &info.subject_pki;
    let algorithm = &spki.algorithm.algorithm;
    use x509_parser::oid_registry::{
        OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_NIST_EC_P384, OID_SIG_ED25519,
    };
    let key_ok = if *algorithm == OID_SIG_ED25519 {
        Ok(())
    } else if *algorithm == OID_KEY_TYPE_EC_PUBLIC_KEY {
        let curve = spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.as_oid().ok());
        match curve {
            Some(c) if c == OID_EC_P256 || c == OID_NIST_EC_P384 => Ok(()),
            Some(c) => Err(format!("ECDSA on the curve {c}")),
            None => Err("ECDSA on an unnamed curve".to_owned()),
        }
    } else {
        match spki.parsed() {
            Ok(PublicKey::RSA(rsa)) if rsa.key_size() >= 2048 => Ok(()),
            Ok(PublicKey::RSA(rsa)) => Err(format!("RSA of {} bits", rsa.key_size())),
            Ok(PublicKey::DSA(_)) => Err("DSA".to_owned()),
            _ => Err(format!("of the algorithm {algorithm}")),
        }
    };
    key_ok.map_err(CsrError::Key)?;
    // After the key's rules: a key too weak to be accepted is also one the verifier
    // declines, and the refusal should say the first.
    csr.verify_signature().map_err(|_| CsrError::Signature)?;
    let mut named = Vec::new();
    for cn in info.subject.iter_common_name() {
        named.push(cn.as_str().unwrap_or("(unreadable)").to_owned());
    }
    for ext in csr.requested_extensions().into_iter().flatten() {
        match ext {
            ParsedExtension::BasicConstraints(bc) if bc.ca => return Err(CsrError::CaRequested),
            ParsedExtension::SubjectAlternativeName(san) => {
                for name in &san.general_names {
                    if let GeneralName::URI(uri) = name {
                        named.push(match uri.strip_prefix(SPIFFE_PARTNER_PREFIX) {
                            Some(named_id) => named_id.to_owned(),
                            None => (*uri).to_owned(),
                        });
                    }
                }
            }
            _ => {}
        }
    }
    if let Some(other) = named.into_iter().find(|n| n != id) {
        return Err(CsrError::OtherId {
            named: other,
            id: id.to_owned(),
        });
    }
    Ok(der.as_ref().to_vec())
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
        check_csr(csr, id)?;
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

#[cfg(test)]
mod tests {
    use super::*;

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
        PartnerCa::load(&dir.join("ca.crt"), &dir.join("ca.key")).expect("load")
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
