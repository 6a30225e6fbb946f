//! A fleet of followers on one relay, simulated: each holds its own mTLS connection and
//! long-poll (`GET /v1/replication/manifest?wait_ms=25000` with `If-None-Match`), as a
//! following gateway does, and on a new manifest fetches the newest delta it names. Used by
//! [`crate::propagation`] to time a publication's arrival at every follower, and to have
//! many followers download the base snapshot at once (the relay's memory is the
//! caller's to watch).

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{HeaderName, ETAG, IF_NONE_MATCH};
use http::Method;
use tokio::sync::mpsc;

use crate::client::{Answer, Conn, Connector, Failure};

const MANIFEST: &str = "/v1/replication/manifest";
const OBJECTS: &str = "/v1/replication/objects/";
/// What a following gateway asks for (src/replication/source.rs).
const WAIT_MS: u64 = 25_000;

/// One follower's view of a new manifest: the data version it names, when the follower
/// had it and its newest delta.
#[derive(Debug, Clone, Copy)]
pub struct Arrival {
    pub follower: usize,
    pub version: u64,
    pub at: Instant,
}

/// `GET path` (with `If-None-Match: tag`, when given) on `conn`.
async fn get(
    conn: &mut Conn,
    path: &str,
    tag: Option<&str>,
    keep: bool,
) -> Result<Answer, Failure> {
    let cond: Vec<(HeaderName, &str)> = tag.map(|t| (IF_NONE_MATCH, t)).into_iter().collect();
    conn.request(Method::GET, path, &cond, Bytes::new(), keep)
        .await
}

/// The data version a manifest names and its newest delta's (or the base's) object hash.
fn manifest_news(body: &[u8]) -> Option<(u64, String)> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let signed = &v["signed"];
    let newest = signed["deltas"]
        .as_array()
        .and_then(|d| d.last())
        .unwrap_or(&signed["snapshot"]);
    Some((
        newest["version"].as_u64()?,
        newest["hash"].as_str()?.to_owned(),
    ))
}

/// Runs follower `id` until `stop`: long-polls, and on each new manifest fetches its newest
/// object and reports the arrival. Reconnects after a failure (counted in `failures`).
pub async fn follow(
    id: usize,
    connector: std::sync::Arc<Connector>,
    arrivals: mpsc::UnboundedSender<Arrival>,
    failures: mpsc::UnboundedSender<Failure>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut tag: Option<String> = None;
    while !*stop.borrow() {
        tokio::select! {
            Err(f) = hold(id, &connector, &mut tag, &arrivals) => {
                let _ = failures.send(f);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            _ = stop.changed() => return,
        }
    }
}

/// One connection's life: long-polls until something fails.
async fn hold(
    id: usize,
    connector: &Connector,
    tag: &mut Option<String>,
    arrivals: &mpsc::UnboundedSender<Arrival>,
) -> Result<std::convert::Infallible, Failure> {
    let path = format!("{MANIFEST}?wait_ms={WAIT_MS}");
    let mut conn = connector.connect().await?;
    loop {
        let answer = get(&mut conn, &path, tag.as_deref(), true).await?;
        match answer.head.status.as_u16() {
            304 => continue,
            200 => {}
            _ => return Err(Failure::Http),
        }
        *tag = answer
            .head
            .headers
            .get(ETAG)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let (version, hash) = manifest_news(&answer.body).ok_or(Failure::Http)?;
        let object = get(&mut conn, &format!("{OBJECTS}{hash}"), None, false).await?;
        if object.head.status != 200 {
            return Err(Failure::Http);
        }
        let _ = arrivals.send(Arrival {
            follower: id,
            version,
            at: Instant::now(),
        });
    }
}

/// What [`download_base`] saw.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Downloads {
    pub downloads: usize,
    pub failed: usize,
    pub bytes_each: u64,
    /// Seconds from the start to each download's last byte, sorted.
    pub seconds: Vec<f64>,
}

/// `n` followers download the base snapshot the relay's manifest names, all at once, each
/// on its own connection; every byte is read and dropped.
pub async fn download_base(connector: std::sync::Arc<Connector>, n: usize) -> Downloads {
    let start = Instant::now();
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let connector = connector.clone();
            tokio::spawn(async move {
                let mut conn = connector.connect().await?;
                let manifest = get(&mut conn, MANIFEST, None, true).await?;
                let v: serde_json::Value =
                    serde_json::from_slice(&manifest.body).map_err(|_| Failure::Http)?;
                let hash = v["signed"]["snapshot"]["hash"]
                    .as_str()
                    .ok_or(Failure::Http)?
                    .to_owned();
                let object = get(&mut conn, &format!("{OBJECTS}{hash}"), None, false).await?;
                if object.head.status != 200 {
                    return Err(Failure::Http);
                }
                Ok::<_, Failure>((object.len, start.elapsed().as_secs_f64()))
            })
        })
        .collect();
    let (mut seconds, mut failed, mut bytes_each) = (Vec::new(), 0, 0);
    for t in tasks {
        match t.await {
            Ok(Ok((len, s))) => {
                bytes_each = len;
                seconds.push(s);
            }
            _ => failed += 1,
        }
    }
    seconds.sort_by(f64::total_cmp);
    Downloads {
        downloads: seconds.len(),
        failed,
        bytes_each,
        seconds,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn news_is_the_newest_delta_or_else_the_base() {
        let with_deltas = br#"{"signed":{"version":9,"snapshot":{"hash":"b","version":1},
            "deltas":[{"hash":"d1","version":2},{"hash":"d2","version":3}]}}"#;
        assert_eq!(manifest_news(with_deltas), Some((3, "d2".into())));
        let base_only =
            br#"{"signed":{"version":4,"snapshot":{"hash":"b","version":4},"deltas":[]}}"#;
        assert_eq!(manifest_news(base_only), Some((4, "b".into())));
        assert_eq!(manifest_news(b"{}"), None);
    }
}
