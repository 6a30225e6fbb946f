//! TLS: the server's rustls configuration and who a client certificate says it is.
//!
//! Clients must present a certificate chaining to the partner CA, valid now and marked
//! for client authentication. webpki checks the first two, and the usage only when the
//! certificate states one (RFC 5280 reads "no extendedKeyUsage" as "any use"); a partner
//! certificate without the extension is refused here (`RequireClientAuth`). A server
//! certificate is put in use only if its key matches and its chain verifies. The partner id is read from the
//! leaf: a SAN URI `spiffe://partners/<id>` if there is one, else the subject CN. This
//! module knows nothing of HTTP or of which ids are configured.

use std::collections::HashSet;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::server::WebPkiClientVerifier;
use rustls::{CertificateError, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};

pub const SPIFFE_PARTNER_PREFIX: &str = "spiffe://partners/";
/// Authority callers (src/origin) are named so, under a client CA of their own.
pub const SPIFFE_AUTHORITY_PREFIX: &str = "spiffe://authority/";

/// TLS sessions kept for resumption.
const SESSION_CACHE: usize = 8192;

type X509ParseError = x509_parser::nom::Err<x509_parser::error::X509Error>;

/// Why a TLS file or configuration was refused; each names the file, and its cause is its
/// source.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {what} from {}", path.display())]
    Pem {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: PemError,
    },
    #[error("{} is not a usable {what}", path.display())]
    Rejected {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: rustls::Error,
    },
    #[error("the server certificate chain in {} does not verify", path.display())]
    Chain {
        path: PathBuf,
        #[source]
        source: ChainError,
    },
    #[error("a revocation list does not parse")]
    Crl(#[source] X509ParseError),
    #[error("the revocation list in {} cannot be used", path.display())]
    CrlProfile {
        path: PathBuf,
        #[source]
        source: CrlProfileError,
    },
    #[error("cannot build the partner certificate verifier")]
    Verifier(#[source] rustls::server::VerifierBuilderError),
    #[error("the crypto provider does not support TLS 1.2 and 1.3")]
    Versions(#[source] rustls::Error),
}

impl TlsError {
    /// The server certificate and key do not belong together: while one of the two is
    /// replaced before the other, for a moment.
    pub fn is_pair_mismatch(&self) -> bool {
        matches!(
            self,
            TlsError::Rejected {
                source: rustls::Error::InconsistentKeys(_),
                ..
            }
        )
    }
}

/// What is wrong with a PEM file.
#[derive(Debug, thiserror::Error)]
pub enum PemError {
    #[error(transparent)]
    File(#[from] rustls_pki_types::pem::Error),
    #[error("the file has no {0} block")]
    Missing(&'static str),
    #[error("the certificate does not parse")]
    X509(#[source] X509ParseError),
}

/// Why a server certificate chain does not verify.
#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    #[error("certificate {index} does not parse")]
    Parse {
        index: usize,
        #[source]
        source: X509ParseError,
    },
    #[error("certificate {index} is not signed by the next one")]
    Link {
        index: usize,
        #[source]
        source: x509_parser::error::X509Error,
    },
    #[error("the last certificate's signature does not verify against its issuer")]
    Issuer(#[source] x509_parser::error::X509Error),
}

/// notAfter (Unix seconds) of the first certificate in a PEM file: the leaf of a chain, or
/// the CA itself.
pub fn not_after(path: &Path) -> Result<i64, TlsError> {
    let certs = load_certs(path)?;
    let pem = |source| TlsError::Pem {
        what: "a certificate",
        path: path.to_owned(),
        source,
    };
    let first = certs
        .first()
        .ok_or_else(|| pem(PemError::Missing("CERTIFICATE")))?;
    let (_, cert) =
        x509_parser::parse_x509_certificate(first.as_ref()).map_err(|e| pem(PemError::X509(e)))?;
    Ok(cert.validity().not_after.timestamp())
}

pub fn crypto_provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn pem_error<'p>(what: &'static str, path: &'p Path) -> impl Fn(PemError) -> TlsError + 'p {
    move |source| TlsError::Pem {
        what,
        path: path.to_owned(),
        source,
    }
}

pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = pem_error("certificates", path);
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| pem(e.into()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem(e.into()))?;
    if certs.is_empty() {
        return Err(pem(PemError::Missing("CERTIFICATE")));
    }
    Ok(certs)
}

pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| pem_error("private key", path)(e.into()))
}

/// Certificate revocation lists (PEM, one or more per file) of the partner CA.
pub fn load_crls(
    paths: &[PathBuf],
) -> Result<Vec<CertificateRevocationListDer<'static>>, TlsError> {
    let mut out = Vec::new();
    for path in paths {
        let pem = pem_error("CRLs", path);
        let before = out.len();
        for crl in CertificateRevocationListDer::pem_file_iter(path).map_err(|e| pem(e.into()))? {
            out.push(crl.map_err(|e| pem(e.into()))?);
        }
        if out.len() == before {
            return Err(pem(PemError::Missing("X509 CRL")));
        }
        for crl in &out[before..] {
            check_crl_profile(crl).map_err(|source| TlsError::CrlProfile {
                path: path.clone(),
                source,
            })?;
        }
    }
    Ok(out)
}

/// What of a CRL the TLS library (webpki) cannot use.
#[derive(Debug, thiserror::Error)]
pub enum CrlProfileError {
    #[error("it does not parse")]
    Parse(#[source] X509ParseError),
    #[error(
        "it is a version 1 CRL without extensions, which rustls does not accept: issue version 2 \
         CRLs carrying a CRL Number (RFC 5280 §5.2.3); with `openssl ca -gencrl`, name a \
         crlnumber file in the CA section (`crlnumber = ...`) and create it (`echo 01 > crlnumber`)"
    )]
    Version1,
    #[error("it has no nextUpdate, which rustls requires")]
    NoNextUpdate,
}

/// The parts of the CRL profile webpki insists on, checked here so that a refusal names
/// the file and what to change (webpki's own error names neither).
fn check_crl_profile(crl: &CertificateRevocationListDer<'_>) -> Result<(), CrlProfileError> {
    let (_, parsed) = x509_parser::parse_x509_crl(crl.as_ref()).map_err(CrlProfileError::Parse)?;
    let tbs = &parsed.tbs_cert_list;
    if tbs.version.is_none() || tbs.extensions().is_empty() {
        return Err(CrlProfileError::Version1);
    }
    if tbs.next_update.is_none() {
        return Err(CrlProfileError::NoNextUpdate);
    }
    Ok(())
}

/// The certificates `crls` list, by issuer and serial: connections that were open before
/// a CRL update are checked against it per request, since their handshake is already done.
pub fn revoked_certificates(
    crls: &[CertificateRevocationListDer<'_>],
) -> Result<HashSet<IssuedAs>, TlsError> {
    let mut out = HashSet::new();
    for crl in crls {
        let (_, parsed) = x509_parser::parse_x509_crl(crl.as_ref()).map_err(TlsError::Crl)?;
        let issuer = parsed.tbs_cert_list.issuer.as_raw();
        out.extend(
            parsed
                .iter_revoked_certificates()
                .map(|r| (issuer.to_vec(), r.raw_serial().to_vec())),
        );
    }
    Ok(out)
}

/// Server config: TLS 1.3 and 1.2, client certificate required (chaining to `client_ca`,
/// marked for clientAuth, not on `crls`), ALPN h2 and http/1.1.
pub fn server_config(
    cert: &Path,
    key: &Path,
    client_ca: &Path,
    crls: Vec<CertificateRevocationListDer<'static>>,
) -> Result<Arc<ServerConfig>, TlsError> {
    server_config_from(
        ServerFiles {
            chain: load_certs(cert)?,
            key: load_key(key)?,
            partner_cas: load_certs(client_ca)?,
            crls,
        },
        cert,
        client_ca,
    )
}

/// What [`server_config`] reads, read: callers that name every file that does not load
/// read each one themselves.
pub struct ServerFiles {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
    pub partner_cas: Vec<CertificateDer<'static>>,
    pub crls: Vec<CertificateRevocationListDer<'static>>,
}

/// [`server_config`] of files already read (`cert` and `client_ca` name them in errors).
pub fn server_config_from(
    files: ServerFiles,
    cert: &Path,
    client_ca: &Path,
) -> Result<Arc<ServerConfig>, TlsError> {
    let ServerFiles {
        chain,
        key,
        partner_cas,
        crls,
    } = files;
    let provider = crypto_provider();
    let mut roots = RootCertStore::empty();
    for ca in partner_cas.iter().cloned() {
        roots.add(ca).map_err(|source| TlsError::Rejected {
            what: "partner CA",
            path: client_ca.to_owned(),
            source,
        })?;
    }
    // Only leaves are checked: the partner CA is the trust anchor, and a CRL covers what it
    // issued. A leaf whose issuer has no CRL here is refused only if CRLs are configured
    // at all (webpki's default: unknown status is an error).
    let webpki = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .with_crls(crls)
        .only_check_end_entity_revocation()
        .build()
        .map_err(TlsError::Verifier)?;
    let verifier = Arc::new(RequireClientAuth(webpki));
    check_chain(&chain, &partner_cas).map_err(|source| TlsError::Chain {
        path: cert.to_owned(),
        source,
    })?;
    let mut cfg = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(TlsError::Versions)?
        .with_client_cert_verifier(verifier)
        // Refuses a key that does not match the certificate's public key.
        .with_single_cert(chain, key)
        .map_err(|source| TlsError::Rejected {
            what: "server certificate and key",
            path: cert.to_owned(),
            source,
        })?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    // Resumption is the cheap way back in (no signature, no certificate chain to check):
    // room for the sessions of many partners' connection pools (rustls keeps 256 by
    // default; an entry holds the client's certificate, about 1.5 KB). A reload builds a
    // new config and so a new cache: a CRL loaded since cannot be skipped by resuming.
    cfg.session_storage = rustls::server::ServerSessionMemoryCache::new(SESSION_CACHE);
    // The server's order (AES-256-GCM, AES-128-GCM, ChaCha20-Poly1305; all AEAD with
    // forward secrecy) wins over a client's: testssl.sh flagged client order (docs/security.md).
    cfg.ignore_client_order = true;
    Ok(Arc::new(cfg))
}

/// Checks each certificate of a server chain against the next one's key, and the last
/// against its issuer where that is at hand (in the chain itself, or in `also`, the
/// partner CA bundle, which often issued the server certificate too). A certificate
/// altered after signing parses but fails here.
fn check_chain(
    chain: &[CertificateDer<'_>],
    also: &[CertificateDer<'_>],
) -> Result<(), ChainError> {
    use x509_parser::prelude::{FromDer, X509Certificate};
    fn parse<'a>(c: &'a CertificateDer<'_>) -> Result<X509Certificate<'a>, X509ParseError> {
        X509Certificate::from_der(c.as_ref()).map(|(_, x)| x)
    }
    let certs = chain
        .iter()
        .enumerate()
        .map(|(index, c)| parse(c).map_err(|source| ChainError::Parse { index, source }))
        .collect::<Result<Vec<_>, _>>()?;
    let known = also
        .iter()
        .filter_map(|c| parse(c).ok())
        .collect::<Vec<_>>();
    // load_certs refuses a file without certificates.
    let Some(top) = certs.last() else {
        return Ok(());
    };
    for (index, pair) in certs.windows(2).enumerate() {
        pair[0]
            .verify_signature(Some(pair[1].public_key()))
            .map_err(|source| ChainError::Link { index, source })?;
    }
    let issuer = certs
        .iter()
        .chain(&known)
        .find(|c| c.subject().as_raw() == top.issuer().as_raw());
    if let Some(issuer) = issuer {
        top.verify_signature(Some(issuer.public_key()))
            .map_err(ChainError::Issuer)?;
    }
    Ok(())
}

/// webpki's client verifier, and a leaf that states clientAuth among its extended key
/// usages: a certificate without the extension would otherwise pass as "any use".
#[derive(Debug)]
struct RequireClientAuth(Arc<dyn rustls::server::danger::ClientCertVerifier>);

impl rustls::server::danger::ClientCertVerifier for RequireClientAuth {
    fn offer_client_auth(&self) -> bool {
        self.0.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.0.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[rustls::DistinguishedName] {
        self.0.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: rustls_pki_types::UnixTime,
    ) -> Result<rustls::server::danger::ClientCertVerified, rustls::Error> {
        let verified = self.0.verify_client_cert(end_entity, intermediates, now)?;
        let client_auth = x509_parser::parse_x509_certificate(end_entity.as_ref())
            .ok()
            .and_then(|(_, c)| {
                c.extended_key_usage()
                    .ok()
                    .flatten()
                    .map(|e| e.value.client_auth)
            });
        if client_auth == Some(true) {
            Ok(verified)
        } else {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::InvalidPurpose,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// Client config for outgoing mTLS (replication sources): trust `ca`, present `identity`.
pub fn client_config(
    ca: &Path,
    identity: Option<(&Path, &Path)>,
) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let mut roots = RootCertStore::empty();
    for c in load_certs(ca)? {
        roots.add(c).map_err(|source| TlsError::Rejected {
            what: "CA",
            path: ca.to_owned(),
            source,
        })?;
    }
    let builder = rustls::ClientConfig::builder_with_provider(crypto_provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(TlsError::Versions)?
        .with_root_certificates(roots);
    let cfg = match identity {
        Some((cert, key)) => builder
            .with_client_auth_cert(load_certs(cert)?, load_key(key)?)
            .map_err(|source| TlsError::Rejected {
                what: "client certificate and key",
                path: cert.to_owned(),
                source,
            })?,
        None => builder.with_no_client_auth(),
    };
    Ok(Arc::new(cfg))
}

/// What a (verified) leaf certificate says of its holder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leaf {
    pub partner_id: Option<String>,
    /// Who issued it and its serial: what a CRL names it by.
    pub issued_as: IssuedAs,
    /// notAfter, Unix seconds.
    pub not_after: i64,
}

/// A serial as `openssl x509 -serial` prints it: hex of its bytes, without the sign byte.
pub fn serial_text(raw: &[u8]) -> String {
    let start = raw.iter().position(|b| *b != 0).unwrap_or(raw.len());
    hex::encode_upper(&raw[start..])
}

/// A certificate as a CRL names it: its issuer's name (DER) and its serial. A serial alone
/// is not enough: two CAs may both use it.
pub type IssuedAs = (Vec<u8>, Vec<u8>);

pub fn leaf(cert: &CertificateDer<'_>) -> Option<Leaf> {
    let (_, cert) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    Some(Leaf {
        partner_id: partner_id(&cert),
        issued_as: (
            cert.tbs_certificate.issuer.as_raw().to_vec(),
            cert.raw_serial().to_vec(),
        ),
        not_after: cert.validity().not_after.timestamp(),
    })
}

/// The authority caller a (verified) leaf names: SAN URI under
/// [`SPIFFE_AUTHORITY_PREFIX`] only, never a subject CN, so that no certificate made for a
/// partner names a caller.
pub fn authority_caller(cert: &CertificateDer<'_>) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    san_uri_id(&cert, SPIFFE_AUTHORITY_PREFIX)
}

/// The id after `prefix` in the leaf's first SAN URI that has it.
fn san_uri_id(
    cert: &x509_parser::certificate::X509Certificate<'_>,
    prefix: &str,
) -> Option<String> {
    let san = cert.subject_alternative_name().ok()??;
    san.value.general_names.iter().find_map(|name| match name {
        x509_parser::extensions::GeneralName::URI(uri) => {
            uri.strip_prefix(prefix).map(str::to_owned)
        }
        _ => None,
    })
}

/// The partner id a leaf claims: SAN URI under [`SPIFFE_PARTNER_PREFIX`], else subject CN.
fn partner_id(cert: &x509_parser::certificate::X509Certificate<'_>) -> Option<String> {
    if let Some(id) = san_uri_id(cert, SPIFFE_PARTNER_PREFIX) {
        return Some(id);
    }
    let cn = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map(str::to_owned);
    cn
}

/// Why a handshake failed, as a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::VariantArray, strum::IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum HandshakeFailure {
    NoCertificate,
    UnknownCa,
    Expired,
    Revoked,
    BadUsage,
    BadCertificate,
    Protocol,
    Timeout,
    Io,
}

impl HandshakeFailure {
    pub fn label(self) -> &'static str {
        self.into()
    }

    pub fn classify(e: &io::Error) -> HandshakeFailure {
        let Some(tls) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) else {
            return HandshakeFailure::Io;
        };
        match tls {
            rustls::Error::NoCertificatesPresented => HandshakeFailure::NoCertificate,
            rustls::Error::InvalidCertificate(c) => match c {
                CertificateError::UnknownIssuer => HandshakeFailure::UnknownCa,
                CertificateError::Expired
                | CertificateError::ExpiredContext { .. }
                | CertificateError::NotValidYet
                | CertificateError::NotValidYetContext { .. } => HandshakeFailure::Expired,
                CertificateError::Revoked => HandshakeFailure::Revoked,
                CertificateError::InvalidPurpose
                | CertificateError::InvalidPurposeContext { .. } => HandshakeFailure::BadUsage,
                _ => HandshakeFailure::BadCertificate,
            },
            _ => HandshakeFailure::Protocol,
        }
    }
}
