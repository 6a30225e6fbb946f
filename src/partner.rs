//! Partners: who may call, and what for. Identity comes from the client certificate (see
//! `tls`); this module only knows ids and scopes.

use serde::Deserialize;

use crate::rate_limit::RateLimit;

/// What a partner may do. Routes name the scope they need.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, serde::Serialize, strum::VariantArray,
)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    LinkCheck,
    DocumentStatus,
    TempPermit,
    Receipt,
    Replicate,
    ReceiptVerify,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::LinkCheck => "link_check",
            Scope::DocumentStatus => "document_status",
            Scope::TempPermit => "temp_permit",
            Scope::Receipt => "receipt",
            Scope::Replicate => "replicate",
            Scope::ReceiptVerify => "receipt_verify",
        }
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Scopes(u8);

impl Scopes {
    pub fn contains(self, s: Scope) -> bool {
        self.0 & s.bit() != 0
    }

    /// `s` and nothing else.
    pub fn is_only(self, s: Scope) -> bool {
        self.0 == s.bit()
    }

    pub fn iter(self) -> impl Iterator<Item = Scope> {
        use strum::VariantArray;
        Scope::VARIANTS
            .iter()
            .copied()
            .filter(move |s| self.contains(*s))
    }
}

impl FromIterator<Scope> for Scopes {
    fn from_iter<I: IntoIterator<Item = Scope>>(iter: I) -> Self {
        Scopes(iter.into_iter().fold(0, |acc, s| acc | s.bit()))
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Partner {
    pub id: String,
    pub scopes: Scopes,
    /// Requests per second and burst; `None` is unlimited.
    pub rate_limit: Option<RateLimit>,
    /// Its weight in fair shares of slots, relay places and connections (src/shares.rs).
    pub weight: u32,
    pub display_name: DisplayName,
    /// The client certificates issued to it by `partners enrol` and `renew`, oldest first.
    pub certificates: Vec<IssuedCertificate>,
}

/// The longest display names, in characters: signed into every receipt and printed in its
/// QR code, they are kept to an organisation's name (the registered name of a Chinese
/// company is rarely over 30 characters).
pub const DISPLAY_NAME_ZH_MAX: usize = 40;
pub const DISPLAY_NAME_EN_MAX: usize = 100;

/// The organisation's name as people read it, in Chinese and in English.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DisplayName {
    pub zh: Option<String>,
    pub en: Option<String>,
}

/// A client certificate the partner CA issued (the registry keeps them: `partners list`
/// shows the newest, `partners revoke --id` revokes them all).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct IssuedCertificate {
    /// Hex, as `openssl x509 -serial` prints it.
    pub serial: String,
    #[serde(with = "time::serde::rfc3339")]
    pub not_after: time::OffsetDateTime,
}

/// Partner ids are label values and path segments: keep them to a safe alphabet.
pub fn valid_partner_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_' || b == b'.'
        })
}
