//! A development PKI made with rcgen: partner CA, server certificate, the demo partners
//! enrolled in a partner registry (`partners.toml`) with their client certificates, a rogue CA's client certificate that the gateway must refuse; and the
//! authority's own client CA with its callers' certificates (the origin's API).
//!
//! For demos and tests only: production certificates come from the authority's CA.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose, RevocationReason,
    RevokedCertParams, SanType, SerialNumber,
};
use rustls_pki_types::pem::PemObject;
use time::{Duration, OffsetDateTime};

use crate::config::AuthorityScope;
use crate::key_files::write_secret;
use crate::partner::Scope;
use crate::tls::{SPIFFE_AUTHORITY_PREFIX, SPIFFE_PARTNER_PREFIX};

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("certificate generation")]
    Rcgen(#[from] rcgen::Error),
    #[error("cannot write {}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Key(#[from] crate::key_files::KeyError),
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    PartnerCa(#[from] crate::partner_ca::PartnerCaError),
    #[error(transparent)]
    Registry(#[from] crate::config::RegistryError),
}

/// A demo partner as it is enrolled: id, scopes, the names people read, and its rate.
pub struct DemoPartner {
    pub id: &'static str,
    pub scopes: &'static [Scope],
    pub display_name: (&'static str, &'static str),
    /// Requests per second (and burst); `None`: unlimited.
    pub rate: Option<(f64, u32)>,
}

/// The demo partners. `no-scopes` is known but may do nothing; `relay` is another gateway
/// following this one's repository.
pub const DEMO_PARTNERS: &[DemoPartner] = &[
    DemoPartner {
        id: "bank",
        scopes: &[
            Scope::LinkCheck,
            Scope::DocumentStatus,
            Scope::Receipt,
            Scope::ReceiptVerify,
        ],
        display_name: ("演示银行（非真实机构）", "Demo Bank (not a real bank)"),
        rate: None,
    },
    DemoPartner {
        id: "rail-gate",
        scopes: &[Scope::DocumentStatus, Scope::TempPermit],
        display_name: ("演示铁路闸机", "Demo rail gates"),
        rate: None,
    },
    DemoPartner {
        id: "no-scopes",
        scopes: &[],
        display_name: ("演示无权限合作方", "Demo partner without scopes"),
        rate: None,
    },
    DemoPartner {
        id: "relay",
        scopes: &[Scope::Replicate],
        display_name: ("演示中继网关", "Demo relay gateway"),
        rate: None,
    },
    DemoPartner {
        id: "sandbox",
        scopes: &[Scope::LinkCheck, Scope::DocumentStatus],
        display_name: ("演示联调环境", "Demo integration sandbox"),
        rate: Some((5.0, 5)),
    },
];

/// The integrators' partner: 5 requests a second (so that retry code meets a 429), and a
/// certificate that ends [`SANDBOX_CERTIFICATE_DAYS`] days after the demo's start (so that
/// its answers carry the expiry warning, and the metric and alert show it).
pub const SANDBOX: &str = "sandbox";
pub const SANDBOX_CERTIFICATE_DAYS: i64 = 10;

/// The demo's authority callers (the origin's API): id, office, scopes.
pub const DEMO_CALLERS: &[(&str, &str, &[AuthorityScope])] = &[
    (
        "desk-01",
        "演示出入境办证大厅 Demo immigration office",
        &[
            AuthorityScope::TempPermitIssue,
            AuthorityScope::TempPermitRevoke,
            AuthorityScope::TempPermitRead,
        ],
    ),
    (
        "resident-app",
        "演示网上办事平台 Demo online services",
        &[
            AuthorityScope::TempPermitIssue,
            AuthorityScope::TempPermitRead,
        ],
    ),
    (
        "auditor",
        "演示督察室 Demo inspection",
        &[AuthorityScope::TempPermitRead],
    ),
];

/// Where [`generate`] put things, relative to nothing: full paths.
#[derive(Debug, Clone)]
pub struct PkiLayout {
    pub dir: PathBuf,
}

impl PkiLayout {
    pub fn ca_cert(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }
    pub fn server_cert(&self) -> PathBuf {
        self.dir.join("server.crt")
    }
    pub fn server_key(&self) -> PathBuf {
        self.dir.join("server.key")
    }
    pub fn partner_cert(&self, id: &str) -> PathBuf {
        self.dir.join("partners").join(format!("{id}.crt"))
    }
    pub fn partner_key(&self, id: &str) -> PathBuf {
        self.dir.join("partners").join(format!("{id}.key"))
    }
    pub fn rogue_cert(&self) -> PathBuf {
        self.dir.join("rogue").join("client.crt")
    }
    pub fn rogue_key(&self) -> PathBuf {
        self.dir.join("rogue").join("client.key")
    }
    /// The partner registry the demo partners are enrolled in (`partners_file`).
    pub fn registry(&self) -> PathBuf {
        self.dir.join("partners.toml")
    }
    pub fn exists(&self) -> bool {
        self.ca_cert().exists() && self.server_key().exists() && self.rogue_key().exists()
    }
    /// The authority's client CA: only the origin trusts it.
    pub fn authority_ca_cert(&self) -> PathBuf {
        self.dir.join("authority-ca.crt")
    }
    pub fn caller_cert(&self, id: &str) -> PathBuf {
        self.dir.join("authority").join(format!("{id}.crt"))
    }
    pub fn caller_key(&self, id: &str) -> PathBuf {
        self.dir.join("authority").join(format!("{id}.key"))
    }
}

fn ca_params(cn: &str, now: OffsetDateTime) -> CertificateParams {
    let mut p = CertificateParams::default();
    p.distinguished_name.push(DnType::CommonName, cn);
    p.distinguished_name
        .push(DnType::OrganizationName, "permitgate development");
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    p.not_before = now - Duration::days(1);
    p.not_after = now + Duration::days(3650);
    p
}

fn partner_ca(layout: &PkiLayout) -> Result<crate::partner_ca::PartnerCa, PkiError> {
    Ok(crate::partner_ca::PartnerCa::load(
        &layout.ca_cert(),
        &crate::partner_ca::CaKeySource::File(layout.dir.join("ca.key")),
    )?)
}

/// Issues `sandbox` a new certificate (and key) ending [`SANDBOX_CERTIFICATE_DAYS`] days
/// from now, recorded in the registry as a renewal is: the demo does it at every start.
pub fn renew_sandbox(layout: &PkiLayout) -> Result<(), PkiError> {
    let (key, csr) = partner_key_and_csr(SANDBOX)?;
    let (cert, _) = crate::partner_ca::reissue(
        &partner_ca(layout)?,
        &layout.registry(),
        SANDBOX,
        &csr,
        SANDBOX_CERTIFICATE_DAYS,
        OffsetDateTime::now_utc(),
    )?;
    write(&layout.partner_cert(SANDBOX), &cert)?;
    write_key(&layout.partner_key(SANDBOX), &key)
}

/// Enrols each of [`DEMO_PARTNERS`] the registry lacks, as `permitgate partners enrol`
/// does: a key and CSR made as the partner makes them, checked and signed by the partner
/// CA, the partner with its certificate added to the registry. Partners already there are
/// left as they are (an edited registry keeps its edits). Returns the ids enrolled.
pub fn enrol_partners(layout: &PkiLayout) -> Result<Vec<&'static str>, PkiError> {
    let registered = crate::config::Registry::load(&layout.registry())?;
    let ca = partner_ca(layout)?;
    let mut enrolled = Vec::new();
    for p in DEMO_PARTNERS {
        if registered.partners.iter().any(|r| r.id == p.id) {
            continue;
        }
        let (key, csr) = partner_key_and_csr(p.id)?;
        let entry = crate::config::RawPartner {
            id: p.id.to_owned(),
            scopes: p.scopes.to_vec(),
            rate_limit: p
                .rate
                .map(|(per_second, burst)| crate::config::RawRateLimit {
                    per_second,
                    burst: Some(burst),
                }),
            display_name_zh: Some(p.display_name.0.to_owned()),
            display_name_en: Some(p.display_name.1.to_owned()),
            ..Default::default()
        };
        let days = if p.id == SANDBOX {
            SANDBOX_CERTIFICATE_DAYS
        } else {
            365
        };
        let (cert, _) = crate::partner_ca::enrol(
            &ca,
            &layout.registry(),
            entry,
            &csr,
            days,
            OffsetDateTime::now_utc(),
        )?;
        write(&layout.partner_cert(p.id), &cert)?;
        write_key(&layout.partner_key(p.id), &key)?;
        enrolled.push(p.id);
    }
    Ok(enrolled)
}

/// A partner's new key and its CSR (PEM), as the partner makes them.
fn partner_key_and_csr(id: &str) -> Result<(KeyPair, String), PkiError> {
    let key = KeyPair::generate()?;
    let mut request = CertificateParams::default();
    request.distinguished_name.push(DnType::CommonName, id);
    let csr = request.serialize_request(&key)?.pem()?;
    Ok((key, csr))
}

fn client_params(id: &str, now: OffsetDateTime) -> Result<CertificateParams, PkiError> {
    let mut p = CertificateParams::default();
    p.distinguished_name.push(DnType::CommonName, id);
    p.subject_alt_names = vec![SanType::URI(
        format!("{SPIFFE_PARTNER_PREFIX}{id}").try_into()?,
    )];
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.not_before = now - Duration::days(1);
    p.not_after = now + Duration::days(365);
    Ok(p)
}

fn write(path: &Path, text: &str) -> Result<(), PkiError> {
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d).map_err(|source| PkiError::Write {
            path: d.to_owned(),
            source,
        })?;
    }
    std::fs::write(path, text).map_err(|source| PkiError::Write {
        path: path.to_owned(),
        source,
    })
}

fn write_key(path: &Path, key: &KeyPair) -> Result<(), PkiError> {
    write(path, "")?;
    write_secret(path, key.serialize_pem().as_bytes())?;
    Ok(())
}

fn write_server(
    ca: &Issuer<'_, KeyPair>,
    not_after: OffsetDateTime,
    cert_out: &Path,
    key_out: &Path,
) -> Result<(), PkiError> {
    let key = KeyPair::generate()?;
    let mut p = CertificateParams::new(vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ])?;
    p.distinguished_name
        .push(DnType::CommonName, "permitgate demo server");
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.not_before = OffsetDateTime::now_utc() - Duration::days(1);
    p.not_after = not_after;
    write_key(key_out, &key)?;
    write(cert_out, &p.signed_by(&key, ca)?.pem())
}

/// Issues a new server certificate from the demo CA (certificate rotation in tests).
pub fn issue_server(
    layout: &PkiLayout,
    not_after: OffsetDateTime,
    cert_out: &Path,
    key_out: &Path,
) -> Result<(), PkiError> {
    write_server(&demo_ca(layout)?, not_after, cert_out, key_out)
}

/// Creates the development PKI under `dir`, replacing what is there: the CAs, the server
/// certificate and the rogue one; [`enrol_partners`] enrols the partners.
pub fn generate(dir: &Path) -> Result<PkiLayout, PkiError> {
    let layout = PkiLayout {
        dir: dir.to_owned(),
    };
    let now = OffsetDateTime::now_utc();

    let ca_key = KeyPair::generate()?;
    let params = ca_params("permitgate demo partner CA", now);
    let ca_cert = params.self_signed(&ca_key)?;
    write(&layout.ca_cert(), &ca_cert.pem())?;
    write_key(&dir.join("ca.key"), &ca_key)?;
    let ca = Issuer::new(params, ca_key);

    write_server(
        &ca,
        now + Duration::days(365),
        &layout.server_cert(),
        &layout.server_key(),
    )?;

    // A new CA: the certificates of an earlier registry are not its own. The partners
    // are enrolled next ([`enrol_partners`]).
    let _ = std::fs::remove_file(layout.registry());

    // Same identity as a real partner, issued by a CA the gateway does not trust.
    let rogue_ca_key = KeyPair::generate()?;
    let rogue_ca = Issuer::new(ca_params("rogue CA", now), rogue_ca_key);
    let rogue_key = KeyPair::generate()?;
    let rogue = client_params("bank", now)?.signed_by(&rogue_key, &rogue_ca)?;
    write(&layout.rogue_cert(), &rogue.pem())?;
    write_key(&layout.rogue_key(), &rogue_key)?;
    Ok(layout)
}

/// Creates the authority's client CA and a certificate for each of [`DEMO_CALLERS`] under
/// `layout`, unless they are there (a demo directory of an earlier version gains them).
pub fn generate_authority(layout: &PkiLayout) -> Result<(), PkiError> {
    let ca_key_path = layout.dir.join("authority-ca.key");
    if layout.authority_ca_cert().exists() && ca_key_path.exists() {
        return Ok(());
    }
    let now = OffsetDateTime::now_utc();
    let ca_key = KeyPair::generate()?;
    let params = ca_params("permitgate demo authority CA", now);
    write(
        &layout.authority_ca_cert(),
        &params.self_signed(&ca_key)?.pem(),
    )?;
    write_key(&ca_key_path, &ca_key)?;
    let ca = Issuer::new(params, ca_key);
    for (id, _, _) in DEMO_CALLERS {
        issue_caller_with(&ca, id, &layout.caller_cert(id), &layout.caller_key(id))?;
    }
    Ok(())
}

/// Issues one more authority caller's certificate (tests: callers the demo lacks).
pub fn issue_caller(
    layout: &PkiLayout,
    id: &str,
    out_cert: &Path,
    out_key: &Path,
) -> Result<(), PkiError> {
    let ca_key = KeyPair::from_pem(&read(layout.dir.join("authority-ca.key"))?)?;
    let ca = Issuer::new(
        ca_params("permitgate demo authority CA", OffsetDateTime::now_utc()),
        ca_key,
    );
    issue_caller_with(&ca, id, out_cert, out_key)
}

fn issue_caller_with(
    ca: &Issuer<'_, KeyPair>,
    id: &str,
    out_cert: &Path,
    out_key: &Path,
) -> Result<(), PkiError> {
    let mut p = client_params(id, OffsetDateTime::now_utc())?;
    p.subject_alt_names = vec![SanType::URI(
        format!("{SPIFFE_AUTHORITY_PREFIX}{id}").try_into()?,
    )];
    let key = KeyPair::generate()?;
    write(out_cert, &p.signed_by(&key, ca)?.pem())?;
    write_key(out_key, &key)
}

fn read(p: PathBuf) -> Result<String, PkiError> {
    std::fs::read_to_string(&p).map_err(|source| PkiError::Write { path: p, source })
}

/// The CA made by [`generate`], from its key. Re-signing with the same subject and key
/// yields an issuer webpki accepts: chains are matched by name and verified by key.
fn demo_ca(layout: &PkiLayout) -> Result<Issuer<'static, KeyPair>, PkiError> {
    let ca_key = KeyPair::from_pem(&read(layout.dir.join("ca.key"))?)?;
    Ok(Issuer::new(
        ca_params("permitgate demo partner CA", OffsetDateTime::now_utc()),
        ca_key,
    ))
}

/// Writes a CRL of the demo CA revoking the given certificates (PEM files), valid for a
/// week. `crl_number` must grow with each new list.
pub fn revoke(
    layout: &PkiLayout,
    certs: &[&Path],
    crl_number: u64,
    out: &Path,
) -> Result<(), PkiError> {
    let now = OffsetDateTime::now_utc();
    let mut revoked_certs = Vec::new();
    for path in certs {
        let pem = read(path.to_path_buf())?;
        let der = rustls_pki_types::CertificateDer::from_pem_slice(pem.as_bytes())
            .map_err(|e| PkiError::Invalid(format!("{}: {e}", path.display())))?;
        let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref())
            .map_err(|e| PkiError::Invalid(format!("{}: {e}", path.display())))?;
        revoked_certs.push(RevokedCertParams {
            serial_number: SerialNumber::from_slice(cert.raw_serial()),
            revocation_time: now - Duration::minutes(1),
            reason_code: Some(RevocationReason::KeyCompromise),
            invalidity_date: None,
        });
    }
    let crl = CertificateRevocationListParams {
        this_update: now - Duration::minutes(1),
        next_update: now + Duration::days(7),
        crl_number: SerialNumber::from(crl_number),
        issuing_distribution_point: None,
        revoked_certs,
        key_identifier_method: KeyIdMethod::Sha256,
    }
    .signed_by(&demo_ca(layout)?)?;
    write(out, &crl.pem()?)
}

/// The extended key usage a certificate from [`issue_client`] states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usage {
    ClientAuth,
    ServerAuthOnly,
    /// No extendedKeyUsage extension at all.
    Unstated,
}

/// Issues one more client certificate from a CA generated by [`generate`] (tests use it for
/// certificates the demo does not ship: other ids, no identity, wrong key usage).
pub fn issue_client(
    layout: &PkiLayout,
    id: Option<&str>,
    usage: Usage,
    out_cert: &Path,
    out_key: &Path,
) -> Result<(), PkiError> {
    let ca = demo_ca(layout)?;
    let now = OffsetDateTime::now_utc();
    let mut params = match id {
        Some(id) => client_params(id, now)?,
        None => {
            let mut p = CertificateParams::default();
            p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
            p.not_before = now - Duration::days(1);
            p.not_after = now + Duration::days(30);
            p
        }
    };
    params.extended_key_usages = match usage {
        Usage::ClientAuth => vec![ExtendedKeyUsagePurpose::ClientAuth],
        Usage::ServerAuthOnly => vec![ExtendedKeyUsagePurpose::ServerAuth],
        Usage::Unstated => Vec::new(),
    };
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &ca)?;
    write(out_cert, &cert.pem())?;
    write_key(out_key, &key)?;
    Ok(())
}
