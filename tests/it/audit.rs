//! The audit trail over real mTLS: one record per answered partner request, carrying the
//! request id (the partner's or a generated one, echoed), partner, route, outcome and
//! keyed hashes of the numbers, never the numbers; `permitgate audit verify` accepts the
//! log and catches an altered record; a full audit queue sheds instead of answering
//! unrecorded.

use crate::common::{assert_success, config_edit, permitgate, Options, TestGateway};
use bytes::Bytes;
use http::{Method, Request};
use http_body_util::Full;
use permitgate::document::TravelPermitNo;
use permitgate::key_files::HashKey;
use permitgate::snapshot::DocKey;
use serde_json::Value;

/// The records of a log (every line is JSON; the seals between batches left out).
fn records(dir: &std::path::Path) -> Vec<Value> {
    let files = permitgate::audit::verify::log_files(dir).expect("files");
    files
        .iter()
        .flat_map(|f| {
            std::fs::read_to_string(f)
                .expect("read")
                .lines()
                .map(|l| serde_json::from_str::<Value>(l).expect("a line is JSON"))
                .filter(|v| v.get("seal").is_none())
                .collect::<Vec<Value>>()
        })
        .collect()
}

fn post(path: &str, body: &Value, request_id: Option<&str>) -> Request<Full<Bytes>> {
    let mut r = Request::builder()
        .method(Method::POST)
        .uri(path)
        .header("host", "localhost")
        .header("content-type", "application/json");
    if let Some(id) = request_id {
        r = r.header("x-request-id", id);
    }
    r.body(Full::new(Bytes::from(body.to_string())))
        .expect("request")
}

#[tokio::test]
async fn every_answer_is_recorded_with_its_request_id_and_hashed_numbers() {
    let gw = TestGateway::start().await;
    let link = gw.sample("linked_pair").clone();
    let status = gw.sample("travel_permit_lost_status").clone();
    let mut bank = gw.client("bank").await;

    let r = bank
        .try_request_with(post(&link.path, &link.body, Some("ticket-42")))
        .await
        .expect("answer");
    assert_eq!(r.status, 200);
    assert_eq!(r.headers["x-request-id"], "ticket-42");
    let r = bank
        .try_request_with(post(&status.path, &status.body, None))
        .await
        .expect("answer");
    let generated = r.headers["x-request-id"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert!(generated.starts_with("pg-"), "{generated}");
    // An id that is not a sane token is replaced, not refused.
    let r = bank
        .try_request_with(post(&link.path, &link.body, Some("has space")))
        .await
        .expect("answer");
    assert_eq!(r.status, 200);
    assert_ne!(r.headers["x-request-id"], "has space");
    let bad = serde_json::json!({"travel_permit": "H12", "residence_permit": "810000199408230013"});
    let r = bank
        .try_request_with(post(&link.path, &bad, Some("bad-1")))
        .await
        .expect("answer");
    assert_eq!(r.status, 422);
    // Probes are not partner checks: no record.
    assert_eq!(bank.get("/healthz").await.status, 200);

    gw.gateway.close_audit();
    let all = records(&gw.audit_dir);
    assert_eq!(all.len(), 4, "{all:#?}");
    let by_id = |id: &str| {
        all.iter()
            .find(|r| r["request_id"] == id)
            .unwrap_or_else(|| panic!("no record {id}: {all:#?}"))
    };
    let hk = HashKey::load(&gw.demo.hash_key()).expect("hash key");
    let hashed = |n: &str| {
        let tp = TravelPermitNo::parse(n).expect("sample number");
        hex::encode(DocKey::of(&hk, tp.canonical()).0)
    };
    let r = by_id("ticket-42");
    assert_eq!(r["partner"], "bank");
    assert_eq!(r["route"], "link_check");
    assert_eq!(r["outcome"], "ok");
    let tp = link.body["travel_permit"].as_str().expect("tp");
    assert_eq!(r["documents"][0], hashed(tp));
    assert_eq!(r["documents"].as_array().map(Vec::len), Some(2));
    assert_eq!(by_id(&generated)["route"], "document_status");
    assert_eq!(by_id("bad-1")["outcome"], "invalid-document-number");
    assert_eq!(by_id("bad-1")["documents"], serde_json::json!([]));

    let text: String = permitgate::audit::verify::log_files(&gw.audit_dir)
        .expect("files")
        .iter()
        .map(|f| std::fs::read_to_string(f).expect("read"))
        .collect();
    for number in [tp, link.body["residence_permit"].as_str().expect("rp")] {
        assert!(!text.contains(number), "a plain number is in the audit log");
    }

    let dir = gw.audit_dir.to_string_lossy().into_owned();
    let out = permitgate(&["audit", "verify", &dir]);
    assert_success(&out);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("OK: 4 records (seq 1..4)"), "{stdout}");

    // One altered outcome (record 4's), and the seal of its batch says so.
    let file = permitgate::audit::verify::log_files(&gw.audit_dir)
        .expect("files")
        .pop()
        .expect("a file");
    let altered = text.replacen(
        "\"outcome\":\"invalid-document-number\"",
        "\"outcome\":\"ok\"",
        1,
    );
    std::fs::write(&file, altered).expect("alter");
    let out = permitgate(&["audit", "verify", &dir]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("altered"), "{stderr}");
    let range = stderr
        .split("records ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|r| r.split_once(".."))
        .and_then(|(a, b)| Some((a.parse::<u64>().ok()?, b.parse::<u64>().ok()?)))
        .unwrap_or_else(|| panic!("names the records: {stderr}"));
    assert!(range.0 <= 4 && 4 <= range.1, "{stderr}");
}

#[tokio::test]
async fn a_full_audit_queue_sheds_rather_than_answer_unrecorded() {
    let gw = TestGateway::start_with(Options {
        edit_config: vec![config_edit::set("audit.queue_capacity", 1)],
        ..Options::default()
    })
    .await;
    let link = gw.sample("linked_pair").clone();
    // Eight clients at once against a queue of one: some answers find it full.
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let mut c = gw.client("bank").await;
        let link = link.clone();
        tasks.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            for _ in 0..60 {
                let r = c.post_json(&link.path, &link.body).await;
                let detail = r.json()["detail"].as_str().unwrap_or_default().to_owned();
                seen.push((r.status, detail));
            }
            seen
        }));
    }
    let mut answered = 0;
    let mut shed = 0;
    for t in tasks {
        for (status, detail) in t.await.expect("client") {
            match status.as_u16() {
                200 => answered += 1,
                503 => {
                    assert!(detail.contains("audit"), "{detail}");
                    shed += 1;
                }
                s => panic!("unexpected {s}: {detail}"),
            }
        }
    }
    assert!(shed > 0, "never shed while the audit queue was full");
    assert!(answered > 0);
    gw.gateway.close_audit();
    let all = records(&gw.audit_dir);
    assert_eq!(
        all.len(),
        answered,
        "every answer has its record, and sheds none"
    );
    assert!(all.iter().all(|r| r["outcome"] == "ok"));
    gw.wait_metric(
        "permitgate_refused_total{reason=\"audit_backlog\"}",
        shed as f64,
    )
    .await;
}
