//! Request bodies: read whole, bounded in size and in time, and parsed as a JSON object.
//!
//! A body must be complete `body_read_timeout_ms` after its head was read (408
//! `body-timeout`), however slowly it dribbles in. Answers given before the body was read
//! (a refusal) first discard a bounded amount of it: an HTTP/2 stream answered with its
//! body unread ends in RST_STREAM, which common clients (curl 7.88) report as an error
//! instead of showing the answer.

use bytes::Bytes;
use http::header::CONTENT_LENGTH;
use http::Request;
use http_body_util::{BodyExt, Limited};
use serde::Deserialize;
use tokio::time::Instant;

use super::problem::{Problem, ProblemKind};

/// Most bytes of a refused request's body discarded before the answer.
const DISCARD_LIMIT: usize = 64 * 1024;

/// Why a body was not read.
#[derive(Debug)]
pub enum BodyError {
    TooLarge { limit: usize },
    TimedOut,
    Broken(String),
}

impl BodyError {
    /// The problem to answer; `timeout` is the body deadline the request had.
    pub fn problem(self, timeout: std::time::Duration) -> Problem {
        match self {
            BodyError::TooLarge { limit } => Problem::new(
                ProblemKind::BodyTooLarge,
                format!("the body limit is {limit} bytes"),
            ),
            BodyError::TimedOut => Problem::new(
                ProblemKind::BodyTimeout,
                format!(
                    "the request body was not complete within {} ms",
                    timeout.as_millis()
                ),
            ),
            BodyError::Broken(e) => Problem::new(
                ProblemKind::MalformedJson,
                format!("the body could not be read: {e}"),
            ),
        }
    }
}

/// Reads the whole body: at most `limit` bytes (a larger declared length is refused
/// before anything is read), complete by `deadline`.
pub async fn read<B>(req: Request<B>, limit: usize, deadline: Instant) -> Result<Bytes, BodyError>
where
    B: hyper::body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(BodyError::TooLarge { limit });
    }
    let collect = Limited::new(req.into_body(), limit).collect();
    match tokio::time::timeout_at(deadline, collect).await {
        Err(_) => Err(BodyError::TimedOut),
        Ok(Ok(c)) => Ok(c.to_bytes()),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
            Err(BodyError::TooLarge { limit })
        }
        Ok(Err(e)) => Err(BodyError::Broken(e.to_string())),
    }
}

/// Reads what a refused request sent, at most 64 KiB and until `deadline`, dropping each
/// piece as it arrives: a refusal holds no memory for the body it turns away.
pub async fn discard<B>(req: Request<B>, deadline: Instant)
where
    B: hyper::body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut body = std::pin::pin!(req.into_body());
    let mut left = DISCARD_LIMIT;
    let drain = async {
        while let Some(Ok(frame)) = body.frame().await {
            let len = frame.data_ref().map_or(0, |d| d.len());
            if len >= left {
                return;
            }
            left -= len;
        }
    };
    let _ = tokio::time::timeout_at(deadline, drain).await;
}

/// Parses a JSON object into `T`. Only an object: serde's derive would also take an
/// array of the fields' values. Errors never quote the input (`prefix` is prepended to
/// field names, e.g. `checks[3].`).
pub fn object<'de, T: Deserialize<'de>>(bytes: &'de [u8], prefix: &str) -> Result<T, Problem> {
    match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') => {}
        // Not JSON at all: malformed, whatever its first byte.
        Some(_) if serde_json::from_slice::<serde::de::IgnoredAny>(bytes).is_err() => {
            return Err(Problem::new(
                ProblemKind::MalformedJson,
                format!("{} is not JSON", whole(prefix)),
            ))
        }
        Some(_) => {
            let mut p = Problem::new(
                ProblemKind::InvalidField,
                format!("{} must be a JSON object", whole(prefix)),
            );
            if !prefix.is_empty() {
                p.field = Some(prefix.trim_end_matches('.').to_owned());
            }
            return Err(p);
        }
        None => {
            return Err(Problem::new(
                ProblemKind::MalformedJson,
                format!("{} is empty", whole(prefix)),
            ))
        }
    }
    serde_json::from_slice(bytes).map_err(|e| {
        let p = Problem::from_json(&e, prefix);
        if p.kind != ProblemKind::InvalidField || p.field.is_some() {
            return p;
        }
        // Parsed again, tracking the path, only when it failed: on every request the
        // tracking would cost what the parse itself does.
        let traced = serde_path_to_error::deserialize::<_, T>(
            &mut serde_json::Deserializer::from_slice(bytes),
        );
        match traced.err().map(|t| t.path().to_string()) {
            Some(path) if is_field_path(&path) => {
                let field = format!("{prefix}{path}");
                Problem {
                    detail: format!("{field}: {}", p.detail),
                    ..p
                }
                .with_field(field)
            }
            _ => p,
        }
    })
}

/// A path made of this API's field names and array indices (`checks[2].travel_permit`):
/// nothing a client put in a key is echoed.
fn is_field_path(path: &str) -> bool {
    !path.is_empty()
        && path.split('.').all(|segment| {
            let (name, index) = segment.split_once('[').unwrap_or((segment, ""));
            (1..=40).contains(&name.len())
                && name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
                && index.split('[').all(|i| {
                    i.is_empty()
                        || i.strip_suffix(']')
                            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
                })
        })
}

fn whole(prefix: &str) -> &str {
    if prefix.is_empty() {
        "the request body"
    } else {
        prefix.trim_end_matches('.')
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::api::{DocumentStatusRequest, LinkCheckRequest};

    #[test]
    fn only_objects_are_parsed() {
        let arr = object::<DocumentStatusRequest>(br#"["H89266337"]"#, "").expect_err("array");
        assert_eq!(arr.kind, ProblemKind::InvalidField);
        assert!(!arr.detail.contains("H89266337"), "{}", arr.detail);
        let item = object::<LinkCheckRequest>(br#"  ["H1", "810000"]"#, "checks[2].")
            .expect_err("array item");
        assert_eq!(item.field.as_deref(), Some("checks[2]"));
        assert_eq!(
            object::<DocumentStatusRequest>(b" ", "")
                .expect_err("empty")
                .kind,
            ProblemKind::MalformedJson
        );
        let ok: DocumentStatusRequest = object(br#" {"number":"H89266337"}"#, "").expect("object");
        assert_eq!(ok.number, "H89266337");
        // Not JSON at all is malformed, not the wrong type.
        for text in [&b"H89266337"[..], b"number=H89266337", b"\"H8926", b"[1,"] {
            let p = object::<DocumentStatusRequest>(text, "").expect_err("not JSON");
            assert_eq!(p.kind, ProblemKind::MalformedJson, "{text:?}");
        }
    }

    /// A value of the wrong JSON type is named by its path, whatever the value was (a
    /// number sent as a JSON number is not echoed either).
    #[test]
    fn a_wrongly_typed_value_is_named_by_its_path() {
        for (body, prefix, field) in [
            (&br#"{"number": 89266337}"#[..], "", "number"),
            (
                br#"{"travel_permit": ["H89266337"], "residence_permit": "x"}"#,
                "",
                "travel_permit",
            ),
            (
                br#"{"travel_permit": "H1", "residence_permit": "x", "receipt": "yes"}"#,
                "checks[3].",
                "checks[3].receipt",
            ),
        ] {
            let p = if prefix.is_empty() && body.starts_with(b"{\"number") {
                object::<DocumentStatusRequest>(body, prefix).expect_err("wrong type")
            } else {
                object::<LinkCheckRequest>(body, prefix).expect_err("wrong type")
            };
            assert_eq!(p.kind, ProblemKind::InvalidField);
            assert_eq!(p.field.as_deref(), Some(field), "{}", p.detail);
            assert!(!p.detail.contains("89266337"), "{}", p.detail);
        }
        assert!(is_field_path("checks[12].travel_permit"));
        for not in ["", "H89266337", "checks[x]", "a.b c", "checks[]"] {
            assert!(!is_field_path(not), "{not}");
        }
    }

    #[tokio::test]
    async fn a_body_must_arrive_by_its_deadline() {
        let (mut tx, body) =
            http_body_util::channel::Channel::<Bytes, std::convert::Infallible>::new(4);
        let req = Request::new(body);
        let deadline = Instant::now() + std::time::Duration::from_millis(50);
        let sender = tokio::spawn(async move {
            let _ = tx.send_data(Bytes::from_static(b"{")).await;
            tokio::time::sleep(std::time::Duration::from_secs(5)).await;
            drop(tx);
        });
        let started = std::time::Instant::now();
        assert!(matches!(
            read(req, 1024, deadline).await,
            Err(BodyError::TimedOut)
        ));
        assert!(started.elapsed() < std::time::Duration::from_secs(4));
        sender.abort();
    }

    /// A body of 1 KiB pieces whose pieces say how many of them are alive at once.
    struct Counted {
        sent: usize,
        alive: std::sync::Arc<std::sync::atomic::AtomicUsize>,
        most: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    }

    struct Piece(std::sync::Arc<std::sync::atomic::AtomicUsize>);

    impl AsRef<[u8]> for Piece {
        fn as_ref(&self) -> &[u8] {
            &[b' '; 1024]
        }
    }

    impl Drop for Piece {
        fn drop(&mut self) {
            self.0.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
        }
    }

    impl hyper::body::Body for Counted {
        type Data = Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
            use std::sync::atomic::Ordering::SeqCst;
            if self.sent == 200 {
                return std::task::Poll::Ready(None);
            }
            self.sent += 1;
            let now = self.alive.fetch_add(1, SeqCst) + 1;
            self.most.fetch_max(now, SeqCst);
            let piece = Bytes::from_owner(Piece(self.alive.clone()));
            std::task::Poll::Ready(Some(Ok(hyper::body::Frame::data(piece))))
        }
    }

    #[tokio::test]
    async fn a_refused_body_is_dropped_as_it_arrives_and_read_no_further_than_the_limit() {
        let (alive, most) = (Default::default(), std::sync::Arc::default());
        let body = Counted {
            sent: 0,
            alive,
            most: std::sync::Arc::clone(&most),
        };
        let req = Request::new(body);
        let far = Instant::now() + std::time::Duration::from_secs(60);
        discard(req, far).await;
        assert!(
            most.load(std::sync::atomic::Ordering::SeqCst) <= 2,
            "pieces held at once: {most:?}"
        );
    }

    #[tokio::test]
    async fn a_declared_length_over_the_limit_is_refused_unread() {
        let req = Request::builder()
            .header(CONTENT_LENGTH, "60000")
            .body(http_body_util::Full::new(Bytes::from_static(b"{}")))
            .expect("request");
        let far = Instant::now() + std::time::Duration::from_secs(60);
        assert!(matches!(
            read(req, 1024, far).await,
            Err(BodyError::TooLarge { limit: 1024 })
        ));
    }
}
