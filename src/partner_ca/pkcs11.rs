//! The partner CA's key in an HSM, through its PKCS#11 module (cryptoki): named by an
//! RFC 7512 URI, e.g.
//! `pkcs11:token=partner-ca;object=partner-ca-key?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/run/secrets/hsm-pin`.
//! The key signs in the HSM; what leaves it is the signature.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::types::AuthPin;
use percent_encoding::percent_decode_str;

pub const SCHEME: &str = "pkcs11:";

/// What a `pkcs11:` URI names: the token, the key (by label and/or id), the module to
/// load, and where the user PIN is.
#[derive(Clone)]
pub struct Pkcs11Uri {
    token: Option<String>,
    object: Option<String>,
    id: Option<Vec<u8>>,
    module: PathBuf,
    pin: Pin,
}

#[derive(Clone)]
enum Pin {
    /// `pin-value`: in the URI itself (tests; a config should name a file).
    Value(String),
    /// `pin-source`: a file holding it.
    Source(PathBuf),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UriError {
    #[error("a PKCS#11 URI's attribute {0:?} is not one this gateway reads (token, object, id; module-path, pin-source, pin-value)")]
    Attribute(String),
    #[error("a PKCS#11 URI's {0} is not percent-encoded UTF-8")]
    Encoding(&'static str),
    #[error("a PKCS#11 URI needs module-path (the HSM's PKCS#11 library)")]
    Module,
    #[error("a PKCS#11 URI needs pin-source (a file holding the token's user PIN) or pin-value")]
    Pin,
    #[error("a PKCS#11 URI needs object or id (the CA key's label or id in the token)")]
    Object,
}

impl Pkcs11Uri {
    pub fn parse(text: &str) -> Result<Pkcs11Uri, UriError> {
        let rest = text.strip_prefix(SCHEME).unwrap_or(text);
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        let decode = |what: &'static str, v: &str| {
            percent_decode_str(v)
                .decode_utf8()
                .map(|c| c.into_owned())
                .map_err(|_| UriError::Encoding(what))
        };
        let (mut token, mut object, mut id) = (None, None, None);
        for attr in path.split(';').filter(|a| !a.is_empty()) {
            let (name, value) = attr.split_once('=').unwrap_or((attr, ""));
            match name {
                "token" => token = Some(decode("token", value)?),
                "object" => object = Some(decode("object", value)?),
                // Bytes, not text: percent-decoded as they are.
                "id" => id = Some(percent_decode_str(value).collect::<Vec<u8>>()),
                other => return Err(UriError::Attribute(other.to_owned())),
            }
        }
        let (mut module, mut pin) = (None, None);
        for attr in query.split('&').filter(|a| !a.is_empty()) {
            let (name, value) = attr.split_once('=').unwrap_or((attr, ""));
            match name {
                "module-path" => module = Some(PathBuf::from(decode("module-path", value)?)),
                "pin-value" => pin = Some(Pin::Value(decode("pin-value", value)?)),
                "pin-source" => {
                    let source = decode("pin-source", value)?;
                    let file = source.strip_prefix("file:").unwrap_or(&source);
                    pin = Some(Pin::Source(PathBuf::from(file)));
                }
                other => return Err(UriError::Attribute(other.to_owned())),
            }
        }
        if object.is_none() && id.is_none() {
            return Err(UriError::Object);
        }
        Ok(Pkcs11Uri {
            token,
            object,
            id,
            module: module.ok_or(UriError::Module)?,
            pin: pin.ok_or(UriError::Pin)?,
        })
    }
}

/// The URI as logs and errors may show it: never the PIN.
impl fmt::Display for Pkcs11Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{SCHEME}")?;
        let mut sep = "";
        if let Some(t) = &self.token {
            write!(f, "token={t}")?;
            sep = ";";
        }
        if let Some(o) = &self.object {
            write!(f, "{sep}object={o}")?;
            sep = ";";
        }
        if let Some(id) = &self.id {
            write!(f, "{sep}id=%{}", hex::encode(id))?;
        }
        write!(f, "?module-path={}", self.module.display())?;
        match &self.pin {
            Pin::Value(_) => write!(f, "&pin-value=(hidden)"),
            Pin::Source(p) => write!(f, "&pin-source=file:{}", p.display()),
        }
    }
}

impl fmt::Debug for Pkcs11Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Pkcs11Error {
    #[error("cannot load the PKCS#11 module {}", path.display())]
    Module { path: PathBuf, source: CkError },
    #[error("the PKCS#11 module {}: {what}", path.display())]
    Token {
        path: PathBuf,
        what: String,
        source: CkError,
    },
    #[error("no token labelled {0:?} in the PKCS#11 module")]
    NoToken(String),
    #[error("the PKCS#11 module has {0} tokens: name one with token=")]
    Tokens(usize),
    #[error("cannot read the token PIN from {}", path.display())]
    PinSource {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0} private keys in the token match the URI: it must name one")]
    Keys(usize),
    #[error("an Ed25519 CA key is not used through PKCS#11 here: ECDSA P-256 or P-384, or RSA")]
    Ed25519,
    #[error("the HSM did not sign")]
    Sign(#[source] CkError),
}

/// One context per module in this process, never finalized: PKCS#11 allows one
/// initialisation per process, and a gateway loading its CA again must not undo it.
fn module(path: &Path) -> Result<Pkcs11, Pkcs11Error> {
    static MODULES: OnceLock<Mutex<HashMap<PathBuf, Pkcs11>>> = OnceLock::new();
    let mut modules = MODULES
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if let Some(m) = modules.get(path) {
        return Ok(m.clone());
    }
    let err = |source| Pkcs11Error::Module {
        path: path.to_owned(),
        source,
    };
    let m = Pkcs11::new(path).map_err(err)?;
    match m.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
        Err(e) => return Err(err(e)),
    }
    modules.insert(path.to_owned(), m.clone());
    Ok(m)
}

/// How the key signs: ECDSA over a digest made here (the plain `CKM_ECDSA`, which every
/// HSM has), or RSA PKCS#1 v1.5 with SHA-256.
enum Signing {
    Ecdsa(&'static ring::digest::Algorithm),
    RsaSha256,
}

/// A private key in a token, with a logged-in session to sign with.
pub struct Pkcs11Key {
    /// PKCS#11 sessions are not to be shared between threads at once.
    session: Mutex<Session>,
    key: ObjectHandle,
    signing: Signing,
    algorithm: &'static rcgen::SignatureAlgorithm,
    public_key: Vec<u8>,
}

impl Pkcs11Key {
    /// The key `uri` names, to sign as `algorithm` for the certificate whose subject
    /// public key is `public_key`.
    pub(super) fn open(
        uri: &Pkcs11Uri,
        algorithm: &'static rcgen::SignatureAlgorithm,
        public_key: &[u8],
    ) -> Result<Pkcs11Key, Pkcs11Error> {
        let signing = if algorithm == &rcgen::PKCS_ECDSA_P256_SHA256 {
            Signing::Ecdsa(&ring::digest::SHA256)
        } else if algorithm == &rcgen::PKCS_ECDSA_P384_SHA384 {
            Signing::Ecdsa(&ring::digest::SHA384)
        } else if algorithm == &rcgen::PKCS_RSA_SHA256 {
            Signing::RsaSha256
        } else {
            // Ed25519 in PKCS#11 (CKM_EDDSA) is too new to count on.
            return Err(Pkcs11Error::Ed25519);
        };
        let m = module(&uri.module)?;
        let token_err = |what: &str| {
            let path = uri.module.clone();
            let what = what.to_owned();
            move |source| Pkcs11Error::Token { path, what, source }
        };
        let slots = m
            .get_slots_with_token()
            .map_err(token_err("listing its tokens"))?;
        let mut matching = Vec::new();
        for slot in slots {
            let info = m
                .get_token_info(slot)
                .map_err(token_err("reading a token"))?;
            if uri.token.as_deref().is_none_or(|t| info.label() == t) {
                matching.push(slot);
            }
        }
        let slot = match (matching.as_slice(), &uri.token) {
            ([slot], _) => *slot,
            ([], Some(t)) => return Err(Pkcs11Error::NoToken(t.clone())),
            (slots, _) => return Err(Pkcs11Error::Tokens(slots.len())),
        };
        let session = m
            .open_ro_session(slot)
            .map_err(token_err("opening a session"))?;
        let pin = match &uri.pin {
            Pin::Value(v) => v.clone(),
            Pin::Source(path) => std::fs::read_to_string(path)
                .map_err(|source| Pkcs11Error::PinSource {
                    path: path.clone(),
                    source,
                })?
                .trim_end_matches(['\n', '\r'])
                .to_owned(),
        };
        match session.login(UserType::User, Some(&AuthPin::from(pin))) {
            // Another session of this process logged in already: the token is open.
            Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {}
            Err(e) => return Err(token_err("logging in to the token")(e)),
        }
        let mut template = vec![Attribute::Class(ObjectClass::PRIVATE_KEY)];
        if let Some(o) = &uri.object {
            template.push(Attribute::Label(o.as_bytes().to_vec()));
        }
        if let Some(id) = &uri.id {
            template.push(Attribute::Id(id.clone()));
        }
        let keys = session
            .find_objects(&template)
            .map_err(token_err("finding the key"))?;
        let [key] = keys.as_slice() else {
            return Err(Pkcs11Error::Keys(keys.len()));
        };
        Ok(Pkcs11Key {
            key: *key,
            session: Mutex::new(session),
            signing,
            algorithm,
            public_key: public_key.to_vec(),
        })
    }

    pub fn public_key(&self) -> &[u8] {
        &self.public_key
    }

    pub fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        self.algorithm
    }

    /// The signature of `msg` as X.509 carries it.
    pub fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, Pkcs11Error> {
        let session = self.session.lock().unwrap_or_else(|e| e.into_inner());
        match self.signing {
            Signing::Ecdsa(digest) => {
                let digest = ring::digest::digest(digest, msg);
                let raw = session
                    .sign(&Mechanism::Ecdsa, self.key, digest.as_ref())
                    .map_err(Pkcs11Error::Sign)?;
                Ok(ecdsa_der(&raw))
            }
            Signing::RsaSha256 => session
                .sign(&Mechanism::Sha256RsaPkcs, self.key, msg)
                .map_err(Pkcs11Error::Sign),
        }
    }
}

/// PKCS#11's ECDSA signature (r ‖ s, each the curve's size) as X.509's
/// `ECDSA-Sig-Value ::= SEQUENCE { r INTEGER, s INTEGER }` in DER.
fn ecdsa_der(raw: &[u8]) -> Vec<u8> {
    let (r, s) = raw.split_at(raw.len() / 2);
    let integer = |n: &[u8]| {
        let n = &n[n.iter().take_while(|b| **b == 0).count().min(n.len() - 1)..];
        let mut out = vec![0x02];
        // A leading 1 bit would read as negative: a zero byte before it.
        let pad = n[0] & 0x80 != 0;
        out.push((n.len() + usize::from(pad)) as u8);
        if pad {
            out.push(0);
        }
        out.extend_from_slice(n);
        out
    };
    let (r, s) = (integer(r), integer(s));
    // At most 2 × (2 + 1 + 48) bytes for P-384: a one-byte length.
    let mut out = vec![0x30, (r.len() + s.len()) as u8];
    out.extend(r);
    out.extend(s);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fixed-size (PKCS#11's) ECDSA signature, turned into DER, verifies as ring's
    /// ASN.1 form: across many signatures, r and s with and without a leading zero or a
    /// high bit.
    #[test]
    fn ecdsa_signatures_become_der_that_verifies() {
        use ring::signature::{self, EcdsaKeyPair, KeyPair, UnparsedPublicKey};
        let rng = ring::rand::SystemRandom::new();
        for (fixed, asn1) in [
            (
                &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                &signature::ECDSA_P256_SHA256_ASN1,
            ),
            (
                &signature::ECDSA_P384_SHA384_FIXED_SIGNING,
                &signature::ECDSA_P384_SHA384_ASN1,
            ),
        ] {
            let pkcs8 = EcdsaKeyPair::generate_pkcs8(fixed, &rng).expect("key");
            let key = EcdsaKeyPair::from_pkcs8(fixed, pkcs8.as_ref(), &rng).expect("key");
            let public = UnparsedPublicKey::new(asn1, key.public_key().as_ref().to_vec());
            for i in 0..200u32 {
                let msg = i.to_le_bytes();
                let raw = key.sign(&rng, &msg).expect("sign");
                public
                    .verify(&msg, &ecdsa_der(raw.as_ref()))
                    .expect("DER verifies");
            }
        }
    }

    #[test]
    fn uris_say_what_they_lack_and_never_show_the_pin() {
        let uri = Pkcs11Uri::parse(
            "pkcs11:token=partner%20ca;object=ca-key?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-value=1234",
        )
        .expect("parses");
        assert_eq!(uri.token.as_deref(), Some("partner ca"));
        let shown = uri.to_string();
        assert!(
            !shown.contains("1234") && shown.contains("(hidden)"),
            "{shown}"
        );
        assert_eq!(
            Pkcs11Uri::parse("pkcs11:object=k?pin-value=1").map(drop),
            Err(UriError::Module)
        );
        assert_eq!(
            Pkcs11Uri::parse("pkcs11:object=k?module-path=/m.so").map(drop),
            Err(UriError::Pin)
        );
        assert_eq!(
            Pkcs11Uri::parse("pkcs11:token=t?module-path=/m.so&pin-value=1").map(drop),
            Err(UriError::Object)
        );
        assert_eq!(
            Pkcs11Uri::parse("pkcs11:object=k;slot-id=3?module-path=/m.so&pin-value=1").map(drop),
            Err(UriError::Attribute("slot-id".into()))
        );
        let file =
            Pkcs11Uri::parse("pkcs11:id=%01%02?module-path=/m.so&pin-source=file:/run/secrets/pin")
                .expect("parses");
        assert_eq!(file.id.as_deref(), Some(&[1u8, 2][..]));
        assert!(matches!(&file.pin, Pin::Source(p) if p == Path::new("/run/secrets/pin")));
    }
}
