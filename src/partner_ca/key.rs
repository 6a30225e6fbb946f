//! The partner CA's signing key: a PEM file (the demo, a small deployment on a host that
//! is not a gateway), or a key in an HSM reached through PKCS#11 and named by an RFC 7512
//! URI, which never leaves the HSM. rcgen signs certificates and CRLs through [`CaKey`]
//! either way, and a key is checked against the CA certificate before it signs anything.

use std::fmt;
use std::path::{Path, PathBuf};

use rcgen::{KeyPair, PublicKeyData, SignatureAlgorithm, SigningKey};
use ring::signature::{self, UnparsedPublicKey, VerificationAlgorithm};
use x509_parser::prelude::FromDer;
use x509_parser::x509::SubjectPublicKeyInfo;

use super::csr::{key_type, KeyType};
use super::pkcs11::{self, Pkcs11Key, Pkcs11Uri, UriError};
use x509_parser::oid_registry::OID_PKCS1_RSAENCRYPTION;

/// Where the CA key is, as `[partner_ca] key` or `--ca-key` says.
#[derive(Debug, Clone)]
pub enum CaKeySource {
    File(PathBuf),
    Pkcs11(Pkcs11Uri),
}

impl CaKeySource {
    /// A `pkcs11:` URI, or else a path (a relative one through `resolve`).
    pub fn parse(
        text: &str,
        resolve: impl FnOnce(PathBuf) -> PathBuf,
    ) -> Result<CaKeySource, UriError> {
        if text.starts_with(pkcs11::SCHEME) {
            Pkcs11Uri::parse(text).map(CaKeySource::Pkcs11)
        } else {
            Ok(CaKeySource::File(resolve(PathBuf::from(text))))
        }
    }
}

/// The path, or the URI without its PIN: what logs and errors may show.
impl fmt::Display for CaKeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CaKeySource::File(p) => write!(f, "{}", p.display()),
            CaKeySource::Pkcs11(uri) => write!(f, "{uri}"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CaKeyError {
    #[error("cannot read {}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} is not a private key in PEM", path.display())]
    Pem { path: PathBuf },
    #[error("the CA certificate's key is {0}: a PKCS#11 CA key must be ECDSA P-256 or P-384, or RSA; a key file may also be Ed25519")]
    Algorithm(String),
    #[error("the CA certificate does not parse")]
    Certificate,
    #[error(transparent)]
    Pkcs11(#[from] pkcs11::Pkcs11Error),
    #[error("the key does not belong to the CA certificate (its signature does not verify with the certificate's public key)")]
    Mismatch,
}

/// The CA's key, ready to sign.
pub enum CaKey {
    File(Box<KeyPair>),
    Pkcs11(Pkcs11Key),
}

/// How a CA certificate's key signs and is verified: rcgen's algorithm, and ring's
/// verifier for the check that the key is the certificate's.
pub(super) struct Profile {
    pub algorithm: &'static SignatureAlgorithm,
    verify: &'static dyn VerificationAlgorithm,
    /// The subject public key as rcgen wants it (the BIT STRING's contents).
    pub public_key: Vec<u8>,
}

impl Profile {
    fn of(spki: &SubjectPublicKeyInfo<'_>) -> Result<Profile, CaKeyError> {
        let (algorithm, verify): (_, &'static dyn VerificationAlgorithm) =
            match key_type(spki).map_err(CaKeyError::Algorithm)? {
                KeyType::EcdsaP256 => (
                    &rcgen::PKCS_ECDSA_P256_SHA256,
                    &signature::ECDSA_P256_SHA256_ASN1,
                ),
                KeyType::EcdsaP384 => (
                    &rcgen::PKCS_ECDSA_P384_SHA384,
                    &signature::ECDSA_P384_SHA384_ASN1,
                ),
                KeyType::Rsa if spki.algorithm.algorithm == OID_PKCS1_RSAENCRYPTION => (
                    &rcgen::PKCS_RSA_SHA256,
                    &signature::RSA_PKCS1_2048_8192_SHA256,
                ),
                KeyType::Rsa => {
                    let oid = &spki.algorithm.algorithm;
                    return Err(CaKeyError::Algorithm(format!("of the algorithm {oid}")));
                }
                KeyType::Ed25519 => (&rcgen::PKCS_ED25519, &signature::ED25519),
            };
        Ok(Profile {
            algorithm,
            verify,
            public_key: spki.subject_public_key.data.to_vec(),
        })
    }
}

impl CaKey {
    /// The key `source` names, for the CA certificate `cert_der`: refused unless a
    /// signature it makes verifies with the certificate's public key.
    pub fn load(source: &CaKeySource, cert_der: &[u8]) -> Result<CaKey, CaKeyError> {
        let (_, cert) = x509_parser::certificate::X509Certificate::from_der(cert_der)
            .map_err(|_| CaKeyError::Certificate)?;
        let profile = Profile::of(cert.public_key())?;
        let key = match source {
            CaKeySource::File(path) => CaKey::File(Box::new(read_key_file(path)?)),
            CaKeySource::Pkcs11(uri) => CaKey::Pkcs11(Pkcs11Key::open(
                uri,
                profile.algorithm,
                &profile.public_key,
            )?),
        };
        // A key of another CA would sign certificates no gateway accepts: find out now.
        let probe = b"permitgate partner CA key check";
        let signed = key.sign(probe).map_err(|_| CaKeyError::Mismatch)?;
        UnparsedPublicKey::new(profile.verify, &profile.public_key)
            .verify(probe, &signed)
            .map_err(|_| CaKeyError::Mismatch)?;
        Ok(key)
    }
}

fn read_key_file(path: &Path) -> Result<KeyPair, CaKeyError> {
    let pem = std::fs::read_to_string(path).map_err(|source| CaKeyError::Read {
        path: path.to_owned(),
        source,
    })?;
    KeyPair::from_pem(&pem).map_err(|_| CaKeyError::Pem {
        path: path.to_owned(),
    })
}

impl PublicKeyData for CaKey {
    fn der_bytes(&self) -> &[u8] {
        match self {
            CaKey::File(k) => k.der_bytes(),
            CaKey::Pkcs11(k) => k.public_key(),
        }
    }

    fn algorithm(&self) -> &'static SignatureAlgorithm {
        match self {
            CaKey::File(k) => k.algorithm(),
            CaKey::Pkcs11(k) => k.algorithm(),
        }
    }
}

impl SigningKey for CaKey {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        match self {
            CaKey::File(k) => k.sign(msg),
            CaKey::Pkcs11(k) => k.sign(msg).map_err(|e| {
                tracing::error!(error = %crate::report::Report(&e), "the partner CA's HSM did not sign");
                rcgen::Error::RemoteKeyError
            }),
        }
    }
}
