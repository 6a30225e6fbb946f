//! Sealed objects: the compact signed text form shared by temporary permits and receipts.
//!
//! `PREFIX ‖ base45(body ‖ signature)`, where the signature is Ed25519 over
//! `context ‖ body` and `body` starts with a format version byte and the signing key's
//! 8-byte id. Base45 (RFC 9285) uses only the characters of a QR code's alphanumeric mode,
//! so the text fits a QR code at 5.5 bits per character. The prefix and the signature
//! context differ per kind of object, so one kind can never be passed off as another.
//!
//! Opening a sealed object only checks its shape; the caller looks the key id up in its
//! [`crate::keyring::Keyring`] and then checks the signature with [`Opened::verify`].

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};

use crate::key_files::{verifying_key_id, KeyId};

pub const SIGNATURE_LEN: usize = 64;
/// Version byte and key id lead every body.
pub const BODY_HEAD_LEN: usize = 1 + 8;
/// Longer text is refused before decoding: no sealed object of ours comes near it.
pub const MAX_TEXT_LEN: usize = 1024;

/// One kind of sealed object: its text prefix, signature context and format version.
#[derive(Debug, Clone, Copy)]
pub struct Kind {
    pub prefix: &'static str,
    pub context: &'static [u8],
    pub version: u8,
}

/// Why a sealed text could not be opened. All of these are "malformed" to a verifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    #[error("does not start with {0}")]
    Prefix(&'static str),
    #[error("longer than {MAX_TEXT_LEN} characters")]
    TooLong,
    #[error("is not base45 (RFC 9285)")]
    Encoding,
    #[error("is too short to hold a body and a signature")]
    Truncated,
    #[error("has format version {0}, this build reads version {1}")]
    Version(u8, u8),
}

/// Starts a body: version byte and key id of `key`.
pub fn body_head(kind: &Kind, key: &SigningKey) -> Vec<u8> {
    let mut body = Vec::with_capacity(160);
    body.push(kind.version);
    body.extend_from_slice(&verifying_key_id(&key.verifying_key()).0);
    body
}

/// Signs a finished body and encodes the whole as text.
pub fn seal(kind: &Kind, mut body: Vec<u8>, key: &SigningKey) -> String {
    let signature = key.sign(&signed_message(kind, &body));
    body.extend_from_slice(&signature.to_bytes());
    let mut text = String::with_capacity(kind.prefix.len() + body.len() * 3 / 2 + 2);
    text.push_str(kind.prefix);
    text.push_str(&base45::encode(&body));
    text
}

/// A sealed object whose shape is right and whose signature is not yet checked.
#[derive(Debug, Clone)]
pub struct Opened {
    kind: Kind,
    bytes: Vec<u8>,
}

impl Opened {
    pub fn key_id(&self) -> KeyId {
        let mut id = [0u8; 8];
        id.copy_from_slice(&self.bytes[1..BODY_HEAD_LEN]);
        KeyId(id)
    }

    /// The fields after version and key id.
    pub fn fields(&self) -> Reader<'_> {
        Reader(&self.body()[BODY_HEAD_LEN..])
    }

    fn body(&self) -> &[u8] {
        &self.bytes[..self.bytes.len() - SIGNATURE_LEN]
    }

    pub fn verify(&self, key: &VerifyingKey) -> bool {
        let Ok(sig) =
            <[u8; SIGNATURE_LEN]>::try_from(&self.bytes[self.bytes.len() - SIGNATURE_LEN..])
        else {
            return false;
        };
        key.verify(
            &signed_message(&self.kind, self.body()),
            &Signature::from_bytes(&sig),
        )
        .is_ok()
    }
}

pub fn open(kind: &Kind, text: &str) -> Result<Opened, OpenError> {
    if text.len() > MAX_TEXT_LEN {
        return Err(OpenError::TooLong);
    }
    let encoded = text
        .trim()
        .strip_prefix(kind.prefix)
        .ok_or(OpenError::Prefix(kind.prefix))?;
    let bytes = base45::decode(encoded).map_err(|_| OpenError::Encoding)?;
    // One string per object: the crate reduces a final pair worth more than 255 modulo
    // 256 (and may take other overlong groups), so the decoding must encode back to
    // exactly what was given.
    if base45::encode(&bytes) != encoded {
        return Err(OpenError::Encoding);
    }
    if bytes.len() < BODY_HEAD_LEN + SIGNATURE_LEN {
        return Err(OpenError::Truncated);
    }
    if bytes[0] != kind.version {
        return Err(OpenError::Version(bytes[0], kind.version));
    }
    Ok(Opened { kind: *kind, bytes })
}

fn signed_message(kind: &Kind, body: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(kind.context.len() + body.len());
    m.extend_from_slice(kind.context);
    m.extend_from_slice(body);
    m
}

/// Reads fixed-layout fields off a body; every read checks the length.
pub struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    pub fn bytes<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (head, rest) = self.0.split_first_chunk::<N>()?;
        self.0 = rest;
        Some(*head)
    }

    pub fn u8(&mut self) -> Option<u8> {
        self.bytes::<1>().map(|[b]| b)
    }

    pub fn u32(&mut self) -> Option<u32> {
        self.bytes().map(u32::from_le_bytes)
    }

    pub fn u64(&mut self) -> Option<u64> {
        self.bytes().map(u64::from_le_bytes)
    }

    /// A string of at most 255 bytes, preceded by its length.
    pub fn short_str(&mut self) -> Option<&'a str> {
        let len = usize::from(self.u8()?);
        let s = self.0.get(..len)?;
        self.0 = &self.0[len..];
        std::str::from_utf8(s).ok()
    }

    /// True when every byte was read: trailing bytes make a body malformed.
    pub fn is_done(&self) -> bool {
        self.0.is_empty()
    }
}

/// Appends a string of at most 255 bytes with its length; longer strings are the
/// caller's bug (they validate lengths first), cut at a character boundary.
pub fn push_short_str(body: &mut Vec<u8>, s: &str) {
    let mut end = s.len().min(255);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    body.push(end as u8);
    body.extend_from_slice(&s.as_bytes()[..end]);
}

/// Every other spelling of `text`'s last base45 group that a lenient decoder reads as
/// the same bytes: a final pair worth 256..2024 (reduced mod 256), or a final triple
/// worth 65536..91124. Test support for the strict decoding of tokens and receipts.
#[cfg(test)]
pub(crate) fn non_canonical_tails(text: &str, prefix: &str) -> Vec<String> {
    const ALPHABET: &[u8; 45] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:";
    let encoded = &text[prefix.len()..];
    let bytes = base45::decode(encoded).expect("canonical input");
    let (head, group, step, max) = if bytes.len() % 2 == 1 {
        (&encoded[..encoded.len() - 2], 2, 256u32, 45 * 45)
    } else {
        (&encoded[..encoded.len() - 3], 3, 65_536, 45 * 45 * 45)
    };
    let last = u32::from(bytes[bytes.len() - 1])
        + if group == 3 {
            256 * u32::from(bytes[bytes.len() - 2])
        } else {
            0
        };
    (1..)
        .map(|k| last + k * step)
        .take_while(|v| *v < max)
        .map(|mut v| {
            let mut s = format!("{prefix}{head}");
            for _ in 0..group {
                s.push(char::from(ALPHABET[(v % 45) as usize]));
                v /= 45;
            }
            s
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_canonical_spelling_opens() {
        let key = SigningKey::from_bytes(&[9; 32]);
        // Odd and even body lengths: a final pair, then a final triple.
        for extra in [0usize, 1] {
            let mut body = body_head(&KIND, &key);
            body.extend(std::iter::repeat_n(0xff, extra));
            let text = seal(&KIND, body, &key);
            let tails = non_canonical_tails(&text, KIND.prefix);
            if (text.len() - KIND.prefix.len()) % 3 == 2 {
                assert_eq!(tails.len(), 7, "{text}");
            }
            for t in tails {
                assert_ne!(t, text);
                assert_eq!(open(&KIND, &t).err(), Some(OpenError::Encoding), "{t}");
            }
            assert!(open(&KIND, &text).is_ok());
        }
    }

    const KIND: Kind = Kind {
        prefix: "TST1:",
        context: b"permitgate test v1\0",
        version: 1,
    };

    #[test]
    fn seal_and_open() {
        let key = SigningKey::from_bytes(&[9; 32]);
        let mut body = body_head(&KIND, &key);
        body.extend_from_slice(&7u32.to_le_bytes());
        push_short_str(&mut body, "陳大文");
        let text = seal(&KIND, body, &key);
        assert!(text.starts_with("TST1:"));
        assert!(text
            .bytes()
            .all(|b| b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:".contains(&b)));

        let o = open(&KIND, &text).expect("opens");
        assert_eq!(o.key_id(), verifying_key_id(&key.verifying_key()));
        assert!(o.verify(&key.verifying_key()));
        assert!(!o.verify(&SigningKey::from_bytes(&[8; 32]).verifying_key()));
        let mut f = o.fields();
        assert_eq!(f.u32(), Some(7));
        assert_eq!(f.short_str(), Some("陳大文"));
        assert!(f.is_done());
        assert_eq!(f.u8(), None);
    }

    #[test]
    fn shape_errors() {
        let key = SigningKey::from_bytes(&[9; 32]);
        let text = seal(&KIND, body_head(&KIND, &key), &key);
        assert_eq!(
            open(&KIND, "XX1:00").err(),
            Some(OpenError::Prefix("TST1:"))
        );
        assert_eq!(open(&KIND, "TST1:aa").err(), Some(OpenError::Encoding));
        assert_eq!(
            open(&KIND, &format!("TST1:{}", base45::encode([1u8; 20]))).err(),
            Some(OpenError::Truncated)
        );
        assert!(open(&KIND, &text[..text.len() - 3]).is_err());
        let other = Kind { version: 2, ..KIND };
        assert_eq!(
            open(&other, &seal(&other, body_head(&other, &key), &key))
                .map(|o| o.key_id())
                .ok(),
            Some(verifying_key_id(&key.verifying_key()))
        );
        assert_eq!(
            open(&KIND, &seal(&other, body_head(&other, &key), &key)).err(),
            Some(OpenError::Version(2, 1))
        );
        assert_eq!(
            open(&KIND, &"A".repeat(2000)).err(),
            Some(OpenError::TooLong)
        );
    }
}
