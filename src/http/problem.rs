//! RFC 9457 problem documents: the one place failures become HTTP responses.
//!
//! Every failure has a stable `type` (`urn:permitgate:problem:<slug>`) that clients may
//! match on, a status, a fixed title, and a `detail` for humans. Invalid input also names
//! the `field` and the `rule` it broke. Details never contain the submitted numbers.

use serde::Serialize;

use crate::document::NumberError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProblemKind {
    MalformedJson,
    UnknownField,
    MissingField,
    InvalidField,
    InvalidDocumentNumber,
    BatchTooLarge,
    BodyTooLarge,
    UnsupportedMediaType,
    NotFound,
    MethodNotAllowed,
    UnknownPartner,
    CertificateRevoked,
    ScopeMissing,
    NotReady,
    ReceiptsUnavailable,
    Overloaded,
    RateLimited,
    Internal,
}

impl ProblemKind {
    pub const ALL: [ProblemKind; 18] = [
        ProblemKind::MalformedJson,
        ProblemKind::UnknownField,
        ProblemKind::MissingField,
        ProblemKind::InvalidField,
        ProblemKind::InvalidDocumentNumber,
        ProblemKind::BatchTooLarge,
        ProblemKind::BodyTooLarge,
        ProblemKind::UnsupportedMediaType,
        ProblemKind::NotFound,
        ProblemKind::MethodNotAllowed,
        ProblemKind::UnknownPartner,
        ProblemKind::CertificateRevoked,
        ProblemKind::ScopeMissing,
        ProblemKind::NotReady,
        ProblemKind::ReceiptsUnavailable,
        ProblemKind::Overloaded,
        ProblemKind::RateLimited,
        ProblemKind::Internal,
    ];

    pub fn slug(self) -> &'static str {
        self.info().0
    }

    pub fn status(self) -> u16 {
        self.info().1
    }

    pub fn title(self) -> &'static str {
        self.info().2
    }

    /// The `type` member: a URN, stable across releases.
    pub fn type_uri(self) -> &'static str {
        self.info().3
    }

    /// Metric label: the slug with underscores, as Prometheus prefers. Built once at
    /// start, never per request.
    pub fn label(self) -> String {
        self.slug().replace('-', "_")
    }

    pub fn index(self) -> usize {
        self as usize
    }

    fn info(self) -> (&'static str, u16, &'static str, &'static str) {
        macro_rules! p {
            ($slug:literal, $status:literal, $title:literal) => {
                (
                    $slug,
                    $status,
                    $title,
                    concat!("urn:permitgate:problem:", $slug),
                )
            };
        }
        match self {
            ProblemKind::MalformedJson => {
                p!("malformed-json", 400, "Request body is not valid JSON")
            }
            ProblemKind::UnknownField => p!(
                "unknown-field",
                400,
                "Request has a field this endpoint does not accept"
            ),
            ProblemKind::MissingField => p!("missing-field", 400, "Request lacks a required field"),
            ProblemKind::InvalidField => p!("invalid-field", 400, "A field has the wrong type"),
            ProblemKind::InvalidDocumentNumber => p!(
                "invalid-document-number",
                422,
                "Document number is not valid"
            ),
            ProblemKind::BatchTooLarge => p!("batch-too-large", 422, "Batch has too many checks"),
            ProblemKind::BodyTooLarge => p!("body-too-large", 413, "Request body is too large"),
            ProblemKind::UnsupportedMediaType => p!(
                "unsupported-media-type",
                415,
                "Request body must be application/json"
            ),
            ProblemKind::NotFound => p!("not-found", 404, "No such endpoint"),
            ProblemKind::MethodNotAllowed => p!(
                "method-not-allowed",
                405,
                "Method not allowed on this endpoint"
            ),
            ProblemKind::UnknownPartner => p!(
                "unknown-partner",
                403,
                "Client certificate is not a configured partner"
            ),
            ProblemKind::CertificateRevoked => p!(
                "certificate-revoked",
                403,
                "Client certificate has been revoked since this connection opened"
            ),
            ProblemKind::ScopeMissing => p!(
                "scope-missing",
                403,
                "Partner lacks the scope this endpoint needs"
            ),
            ProblemKind::NotReady => p!("not-ready", 503, "Gateway has no snapshot loaded yet"),
            ProblemKind::ReceiptsUnavailable => p!(
                "receipts-unavailable",
                503,
                "Gateway cannot sign receipts now"
            ),
            ProblemKind::Overloaded => p!(
                "overloaded",
                503,
                "Gateway is answering as many requests as it may"
            ),
            ProblemKind::RateLimited => p!(
                "rate-limited",
                429,
                "Partner is over its configured request rate"
            ),
            ProblemKind::Internal => p!("internal", 500, "Internal error"),
        }
    }
}

/// A problem document. `field` and `rule` are set for input errors.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    #[serde(rename = "type")]
    pub type_uri: &'static str,
    pub title: &'static str,
    pub status: u16,
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<&'static str>,
    #[serde(skip)]
    pub kind: ProblemKind,
    /// Seconds for the Retry-After header, where waiting helps.
    #[serde(skip)]
    pub retry_after: Option<u64>,
}

impl Problem {
    pub fn new(kind: ProblemKind, detail: impl Into<String>) -> Problem {
        Problem {
            type_uri: kind.type_uri(),
            title: kind.title(),
            status: kind.status(),
            detail: detail.into(),
            field: None,
            rule: None,
            kind,
            retry_after: match kind {
                ProblemKind::NotReady => Some(5),
                ProblemKind::Overloaded | ProblemKind::RateLimited => Some(1),
                _ => None,
            },
        }
    }

    pub fn with_field(mut self, field: impl Into<String>) -> Problem {
        self.field = Some(field.into());
        self
    }

    pub fn invalid_number(field: impl Into<String>, e: NumberError) -> Problem {
        let field = field.into();
        Problem {
            rule: Some(e.rule()),
            ..Problem::new(ProblemKind::InvalidDocumentNumber, format!("{field}: {e}"))
                .with_field(field)
        }
    }

    /// Classifies a serde_json error: syntax, unknown field, missing field or wrong type.
    /// serde's own messages are the stable source for the field name.
    pub fn from_json(e: &serde_json::Error, prefix: &str) -> Problem {
        use serde_json::error::Category;
        let msg = e.to_string();
        let backticked = |m: &str| m.split('`').nth(1).map(|f| format!("{prefix}{f}"));
        match e.classify() {
            Category::Syntax | Category::Eof | Category::Io => {
                Problem::new(ProblemKind::MalformedJson, msg)
            }
            Category::Data if msg.starts_with("unknown field") => {
                let p = Problem::new(ProblemKind::UnknownField, msg.clone());
                match backticked(&msg) {
                    Some(f) => p.with_field(f),
                    None => p,
                }
            }
            Category::Data if msg.starts_with("missing field") => {
                let p = Problem::new(ProblemKind::MissingField, msg.clone());
                match backticked(&msg) {
                    Some(f) => p.with_field(f),
                    None => p,
                }
            }
            Category::Data => Problem::new(ProblemKind::InvalidField, redact_strings(&msg)),
        }
    }
}

/// serde quotes offending string values (`invalid type: string "H1234…"`); those may be
/// document numbers, which never go into a problem detail.
fn redact_strings(msg: &str) -> String {
    let mut out = String::with_capacity(msg.len());
    let mut quoted = false;
    for c in msg.chars() {
        if c == '"' {
            if !quoted {
                out.push_str("\"…\"");
            }
            quoted = !quoted;
        } else if !quoted {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_listed_once_in_order() {
        for (i, k) in ProblemKind::ALL.iter().enumerate() {
            assert_eq!(k.index(), i);
            assert!(k.type_uri().ends_with(k.slug()));
        }
    }

    #[test]
    fn json_errors_are_classified() {
        #[derive(serde::Deserialize, Debug)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct R {
            number: String,
        }
        let p = |s: &str| Problem::from_json(&serde_json::from_str::<R>(s).expect_err(s), "");
        assert_eq!(p("{").kind, ProblemKind::MalformedJson);
        assert_eq!(p("{\"number\":\"1\",\"x\":1}").field.as_deref(), Some("x"));
        assert_eq!(
            p("{\"number\":\"1\",\"x\":1}").kind,
            ProblemKind::UnknownField
        );
        assert_eq!(p("{}").kind, ProblemKind::MissingField);
        assert_eq!(p("{}").field.as_deref(), Some("number"));
        assert_eq!(p("{\"number\":5}").kind, ProblemKind::InvalidField);
        let wrong = Problem::from_json(
            &serde_json::from_str::<Vec<u8>>("\"H12345678\"").expect_err("type"),
            "",
        );
        assert_eq!(wrong.kind, ProblemKind::InvalidField);
        assert!(!wrong.detail.contains("H12345678"), "{}", wrong.detail);
    }
}
