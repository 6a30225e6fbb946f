//! A partner's certificate signing request, checked before anything is issued: PKCS#10
//! in PEM, a key of an accepted type and size, a signature by that key, no CA asked for,
//! and no other id named.

use rustls_pki_types::pem::PemObject;
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::FromDer;
use x509_parser::public_key::PublicKey;
use x509_parser::x509::SubjectPublicKeyInfo;

use crate::partner::valid_partner_id;
use crate::tls::SPIFFE_PARTNER_PREFIX;

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

/// The CSR's DER, if it is one a partner `id` may be issued a certificate for.
pub fn check(pem: &str, id: &str) -> Result<Vec<u8>, CsrError> {
    if !valid_partner_id(id) {
        return Err(CsrError::Id(id.to_owned()));
    }
    let der = rustls_pki_types::CertificateSigningRequestDer::from_pem_slice(pem.as_bytes())
        .map_err(|_| CsrError::Parse)?;
    let (_, csr) = X509CertificationRequest::from_der(der.as_ref()).map_err(|_| CsrError::Parse)?;
    let info = &csr.certification_request_info;
    let spki = &info.subject_pki;
    let key_ok = match key_type(spki) {
        Ok(KeyType::Ed25519 | KeyType::EcdsaP256 | KeyType::EcdsaP384) => Ok(()),
        Ok(KeyType::Rsa) => match spki.parsed() {
            Ok(PublicKey::RSA(rsa)) if rsa.key_size() >= 2048 => Ok(()),
            Ok(PublicKey::RSA(rsa)) => Err(format!("RSA of {} bits", rsa.key_size())),
            _ => Err("RSA that does not parse".to_owned()),
        },
        Err(other) => Err(other),
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

/// The kinds of public key a partner or the partner CA may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum KeyType {
    Ed25519,
    EcdsaP256,
    EcdsaP384,
    Rsa,
}

/// What kind of key `spki` holds, or what it is instead, in words for a refusal.
pub(super) fn key_type(spki: &SubjectPublicKeyInfo<'_>) -> Result<KeyType, String> {
    use x509_parser::oid_registry::{
        OID_EC_P256, OID_KEY_TYPE_DSA, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_NIST_EC_P384,
        OID_SIG_ED25519,
    };
    let algorithm = &spki.algorithm.algorithm;
    if *algorithm == OID_SIG_ED25519 {
        Ok(KeyType::Ed25519)
    } else if matches!(spki.parsed(), Ok(PublicKey::RSA(_))) {
        // rsaEncryption, or another RSA key form x509-parser reads (the CA's own key must
        // be rsaEncryption: src/partner_ca/key.rs).
        Ok(KeyType::Rsa)
    } else if *algorithm == OID_KEY_TYPE_EC_PUBLIC_KEY {
        let curve = spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.as_oid().ok());
        match curve {
            Some(c) if c == OID_EC_P256 => Ok(KeyType::EcdsaP256),
            Some(c) if c == OID_NIST_EC_P384 => Ok(KeyType::EcdsaP384),
            Some(c) => Err(format!("ECDSA on the curve {c}")),
            None => Err("ECDSA on an unnamed curve".to_owned()),
        }
    } else if *algorithm == OID_KEY_TYPE_DSA {
        Err("DSA".to_owned())
    } else {
        Err(format!("of the algorithm {algorithm}"))
    }
}
