//! RFC 9457 problem documents: the one place failures become HTTP responses.
//!
//! Every failure has a stable `type` (`urn:permitgate:problem:<slug>`) that clients may
//! match on, a status, a fixed title, and a `detail` for humans. Invalid input also names
//! the `field` and the `rule` it broke. Details never contain the submitted numbers.

use serde::Serialize;

use crate::document::NumberError;

// The slug, status and title of each kind are one exhaustive table (`info`); the derive
// gives the variant list the metric labels are indexed by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, strum::VariantArray)]
pub enum ProblemKind {
    MalformedJson,
    UnknownField,
    MissingField,
    InvalidField,
    InvalidDocumentNumber,
    CsrRefused,
    BatchTooLarge,
    BodyTooLarge,
    BodyTimeout,
    InvalidHost,
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
    /// The stable name in `type`, logs and the audit trail.
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
            ProblemKind::CsrRefused => p!(
                "csr-refused",
                422,
                "The certificate signing request breaks a rule"
            ),
            ProblemKind::BatchTooLarge => p!("batch-too-large", 422, "Batch has too many checks"),
            ProblemKind::BodyTooLarge => p!("body-too-large", 413, "Request body is too large"),
            ProblemKind::BodyTimeout => {
                p!("body-timeout", 408, "Request body did not arrive in time")
            }
            ProblemKind::InvalidHost => p!(
                "invalid-host",
                400,
                "An HTTP/1.1 request needs exactly one Host header"
            ),
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
    /// The request's body was not read to its end: an HTTP/1.1 connection cannot carry
    /// another request after this answer.
    #[serde(skip)]
    pub body_unread: bool,
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
            body_unread: kind == ProblemKind::BodyTimeout,
        }
    }

    pub fn with_field(mut self, field: impl Into<String>) -> Problem {
        self.field = Some(field.into());
        self
    }

    /// Names the rule the field breaks (the `rule` member clients switch on).
    pub fn with_rule(mut self, rule: &'static str) -> Problem {
        self.rule = Some(rule);
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
    /// serde's own messages are the stable source for the field name. Nothing the client
    /// sent is repeated, whatever its JSON type: serde quotes offending values (a number
    /// sent as a JSON integer comes back in backticks), so values are cut out, and an
    /// unknown field is named only when it looks like a field name (a-z and `_`; never a
    /// document number used as a key).
    pub fn from_json(e: &serde_json::Error, prefix: &str) -> Problem {
        use serde_json::error::Category;
        let msg = e.to_string();
        let backticked = |m: &str| m.split('`').nth(1).map(str::to_owned);
        match e.classify() {
            Category::Syntax | Category::Eof | Category::Io => {
                Problem::new(ProblemKind::MalformedJson, redact_values(&msg))
            }
            Category::Data if msg.starts_with("unknown field") => {
                match backticked(&msg).filter(|f| looks_like_field_name(f)) {
                    Some(f) => Problem::new(ProblemKind::UnknownField, msg.clone())
                        .with_field(format!("{prefix}{f}")),
                    None => Problem::new(
                        ProblemKind::UnknownField,
                        "the request has a field this endpoint does not accept",
                    ),
                }
            }
            Category::Data if msg.starts_with("missing field") => {
                let p = Problem::new(ProblemKind::MissingField, msg.clone());
                match backticked(&msg) {
                    Some(f) => p.with_field(format!("{prefix}{f}")),
                    None => p,
                }
            }
            Category::Data => Problem::new(ProblemKind::InvalidField, redact_values(&msg)),
        }
    }
}

fn looks_like_field_name(f: &str) -> bool {
    (1..=40).contains(&f.len()) && f.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
}

/// Cuts out what serde quotes of the input: `"strings"` and `` `other values` ``.
fn redact_values(msg: &str) -> String {
    let mut out = String::with_capacity(msg.len());
    let mut open: Option<char> = None;
    for c in msg.chars() {
        match open {
            Some(q) if c == q => open = None,
            Some(_) => {}
            None if c == '"' || c == '`' => {
                out.push(c);
                out.push('…');
                out.push(c);
                open = Some(c);
            }
            None => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use strum::VariantArray;

    #[test]
    fn kinds_are_listed_once_in_order() {
        for (i, k) in ProblemKind::VARIANTS.iter().enumerate() {
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

    #[test]
    fn submitted_values_are_never_repeated_whatever_their_type() {
        #[derive(serde::Deserialize, Debug)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct R {
            number: String,
            #[serde(default)]
            receipt: bool,
        }
        for body in [
            r#"{"number":810000199001011237}"#,
            r#"{"number":81000019900101.1237}"#,
            r#"{"number":-810000199001011237}"#,
            r#"{"number":["810000199001011237"]}"#,
            r#"{"number":{"a":"810000199001011237"}}"#,
            r#"{"number":"x","receipt":"810000199001011237"}"#,
            r#"{"number":"x","receipt":810000199001011237}"#,
            r#"{"number":"x","810000199001011237":1}"#,
            r#"{"810000199001011237":"x"}"#,
            r#"{"number":"x"} 810000199001011237"#,
        ] {
            let e = serde_json::from_str::<R>(body).expect_err(body);
            let p = Problem::from_json(&e, "checks[0].");
            let json = serde_json::to_string(&p).expect("json");
            for needle in ["810000", "1237"] {
                assert!(!json.contains(needle), "{body} -> {json}");
            }
        }
        let p = Problem::from_json(
            &serde_json::from_str::<R>(r#"{"number":"x","travel_permt":1}"#).expect_err("x"),
            "",
        );
        assert_eq!(p.field.as_deref(), Some("travel_permt"));
    }
}
