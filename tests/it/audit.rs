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
    let mut link = gw.sample("linked_pair").clone();
    // With receipts: a receipt is signed only for an answer that has its audit place.
    link.body["receipt"] = serde_json::json!(true);
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
    // The place is reserved before any work: no signature for a refused request.
    gw.wait_metric("permitgate_receipts_signed_total", answered as f64)
        .await;
}

/// Rewrites a log as someone who can write its directory would: `keep` the records (by
/// position), numbered again from 1, in one batch sealed from the start of the chain. The
/// result is a consistent chain: `audit verify` alone accepts it.
fn rewrite(dir: &std::path::Path, keep: impl Fn(usize) -> bool) {
    use permitgate::audit::record;
    let mut lines = Vec::new();
    for f in permitgate::audit::verify::log_files(dir).expect("files") {
        for l in std::fs::read_to_string(&f).expect("read").lines() {
            let v: Value = serde_json::from_str(l).expect("json");
            if v.get("seal").is_none() {
                lines.push(l.to_owned());
            }
        }
        std::fs::remove_file(&f).expect("remove");
    }
    let mut out = Vec::new();
    let mut seq = 0u64;
    for (_, l) in lines.iter().enumerate().filter(|(i, _)| keep(*i)) {
        seq += 1;
        // `{"seq":N,` → the new number.
        let rest = &l[l.find(',').expect("fields")..];
        out.extend_from_slice(format!("{{\"seq\":{seq}{rest}\n").as_bytes());
    }
    record::seal(1, seq, &record::GENESIS, 0, &mut out);
    std::fs::write(dir.join("audit-00000000000000000001-1.log"), out).expect("write");
}

/// Signed checkpoints kept outside the log catch what the seals alone cannot: a log
/// rewritten consistently (a record removed and everything sealed again), and its last
/// batches dropped. A batch forged after the last checkpoint passes, and the report says
/// how many records no checkpoint covers.
#[tokio::test]
async fn signed_checkpoints_catch_a_rewritten_or_truncated_log() {
    let keys = tempfile::tempdir().expect("tempdir");
    let key = permitgate::key_files::generate_signing_key();
    let (key_path, pub_path) = (keys.path().join("cp.key"), keys.path().join("cp.pub"));
    permitgate::key_files::save_signing_key(&key, &key_path).expect("key");
    permitgate::key_files::save_verifying_key(&key.verifying_key(), &pub_path).expect("pub");
    let checkpoints = keys.path().join("checkpoints");
    let gw = TestGateway::start_with(Options {
        edit_config: vec![config_edit::merge(
            "audit",
            &format!(
                "checkpoint_key = \"{}\"\ncheckpoint_dir = \"{}\"\ncheckpoint_interval_ms = 100",
                key_path.display(),
                checkpoints.display()
            ),
        )],
        ..Options::default()
    })
    .await;
    let link = gw.sample("linked_pair").clone();
    let mut bank = gw.client("bank").await;
    for i in 0..30 {
        assert_eq!(
            bank.post_json(&link.path, &link.body).await.status,
            200,
            "{i}"
        );
        if i % 10 == 9 {
            tokio::time::sleep(std::time::Duration::from_millis(150)).await;
        }
    }
    gw.gateway.close_audit();
    let audit = gw.audit_dir.to_string_lossy().into_owned();
    let (cps, pubkey) = (
        checkpoints.to_string_lossy().into_owned(),
        pub_path.to_string_lossy().into_owned(),
    );
    let verify = || {
        permitgate(&[
            "audit",
            "verify",
            &audit,
            "--checkpoints",
            &cps,
            "--public-key",
            &pubkey,
        ])
    };
    let out = verify();
    assert_success(&out);
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        said.contains("covers records up to 30") && said.contains("0 records after it"),
        "{said}"
    );
    let good: Vec<(std::path::PathBuf, Vec<u8>)> =
        permitgate::audit::verify::log_files(&gw.audit_dir)
            .expect("files")
            .into_iter()
            .map(|f| {
                let b = std::fs::read(&f).expect("read");
                (f, b)
            })
            .collect();
    let restore = || {
        for f in permitgate::audit::verify::log_files(&gw.audit_dir).expect("files") {
            std::fs::remove_file(f).expect("remove");
        }
        for (f, b) in &good {
            std::fs::write(f, b).expect("restore");
        }
    };

    // Refused by the checkpoints, with `why`; the chain alone is intact.
    let refused = |why: &str| {
        assert_success(&permitgate(&["audit", "verify", &audit]));
        let out = verify();
        assert_eq!(out.status.code(), Some(1));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(why),
            "{out:?}"
        );
    };
    let newest_log = || {
        permitgate::audit::verify::log_files(&gw.audit_dir)
            .expect("files")
            .pop()
            .expect("a file")
    };

    // One record removed, the rest renumbered and sealed again.
    rewrite(&gw.audit_dir, |i| i != 4);
    refused("rewritten");
    restore();

    // The last batches dropped: the log cut after an earlier seal, nothing else touched.
    let newest = newest_log();
    let text = std::fs::read_to_string(&newest).expect("read");
    let mut cut = 0;
    let mut at = 0;
    for l in text.split_inclusive('\n') {
        at += l.len();
        let v: Value = serde_json::from_str(l).expect("json");
        if v["seal"]["last"].as_u64().is_some_and(|last| last <= 25) {
            cut = at;
        }
    }
    assert!(cut > 0 && cut < text.len());
    std::fs::write(&newest, &text[..cut]).expect("truncate");
    refused("removed from its end");
    restore();

    // A batch forged after the last checkpoint: not caught, but counted as uncovered.
    let newest = newest_log();
    let bytes = std::fs::read(&newest).expect("read");
    let last_seal: Value = serde_json::from_str(
        std::str::from_utf8(&bytes)
            .expect("utf8")
            .lines()
            .last()
            .expect("a seal"),
    )
    .expect("json");
    let mut prev = [0u8; 32];
    hex::decode_to_slice(last_seal["hash"].as_str().expect("hash"), &mut prev).expect("hex");
    let mut forged = bytes.clone();
    let start = forged.len();
    forged.extend_from_slice(
        b"{\"seq\":31,\"time\":\"2026-12-05T00:00:00Z\",\"request_id\":\"forged\",\"partner\":\"bank\",\"route\":\"link_check\",\"outcome\":\"ok\",\"documents\":[]}\n",
    );
    permitgate::audit::record::seal(31, 31, &prev, start, &mut forged);
    std::fs::write(&newest, forged).expect("write");
    let out = verify();
    assert_success(&out);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("1 records after it are not covered"),
        "{out:?}"
    );
}

/// `audit ship` copies the trail to the snapshot's S3-compatible bucket (a real S3 server
/// on loopback) and to a directory: closed files while the gateway runs, the newest once it
/// has stopped, each file once. The shipped copy verifies with `audit verify`, checkpoints
/// included, and holds every record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shipped_trail_verifies_where_it_was_shipped() {
    use object_store::{ObjectStore, ObjectStoreExt};
    let gw = TestGateway::start_with(Options {
        edit_config: vec![
            config_edit::set("audit.max_file_bytes", 4096),
            config_edit::set("audit.checkpoint_interval_ms", 100),
        ],
        ..Options::default()
    })
    .await;
    let link = gw.sample("linked_pair").clone();
    let mut bank = gw.client("bank").await;
    let mut sent = 0;
    // Enough records for several 4 KiB files.
    while permitgate::audit::verify::log_files(&gw.audit_dir)
        .expect("files")
        .len()
        < 4
        && sent < 2000
    {
        assert_eq!(bank.post_json(&link.path, &link.body).await.status, 200);
        sent += 1;
    }
    let s3_root = tempfile::tempdir().expect("s3 root");
    let endpoint = crate::s3::start_s3(s3_root.path()).await;
    let checkpoints = gw.demo.dir.join("audit-checkpoints");
    let ship = |extra: &[&str]| {
        let mut args = vec![
            "audit".to_owned(),
            "ship".to_owned(),
            gw.audit_dir.display().to_string(),
            "--to".to_owned(),
            format!("s3://{}/gw-1", crate::s3::BUCKET),
            "--s3-endpoint".to_owned(),
            endpoint.clone(),
            "--checkpoints".to_owned(),
            checkpoints.display().to_string(),
        ];
        args.extend(extra.iter().map(|a| a.to_string()));
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_permitgate"))
            .args(&args)
            .envs(crate::s3::CREDENTIALS)
            .env("RUST_LOG", "warn")
            .output()
            .expect("run");
        assert_success(&out);
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let files_then = permitgate::audit::verify::log_files(&gw.audit_dir)
        .expect("files")
        .len();
    let said = ship(&[]);
    let count = |said: &str| -> usize {
        said.strip_prefix("shipped ")
            .and_then(|r| r.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{said}"))
    };
    // The closed files (and any checkpoint), not the one being written.
    assert!(count(&said) >= files_then - 1, "{said}");
    let s3_audit = |root: &std::path::Path| {
        std::fs::read_dir(root.join(crate::s3::BUCKET).join("gw-1/audit")).map_or(0, |d| d.count())
    };
    assert_eq!(s3_audit(s3_root.path()), files_then - 1, "{said}");

    gw.gateway.close_audit();
    let said = ship(&["--all"]);
    assert!(said.contains("were there already"), "{said}");
    let again = ship(&["--all"]);
    assert!(
        again.starts_with("shipped 0 files"),
        "each file once: {again}"
    );

    // Fetched back from the bucket, the copy verifies, checkpoints and all.
    let store = crate::s3::client(&endpoint);
    let copy = tempfile::tempdir().expect("copy");
    let listed: Vec<_> = futures_util::TryStreamExt::try_collect(
        store.list(Some(&object_store::path::Path::from("gw-1"))),
    )
    .await
    .expect("list");
    for o in &listed {
        let name = o.location.as_ref().strip_prefix("gw-1/").expect("prefix");
        let bytes = store
            .get(&o.location)
            .await
            .expect("get")
            .bytes()
            .await
            .expect("bytes");
        let path = copy.path().join(name);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("dir");
        std::fs::write(path, bytes).expect("write");
    }
    let verify = |dir: &std::path::Path| {
        let out = permitgate(&[
            "audit",
            "verify",
            &dir.join("audit").display().to_string(),
            "--checkpoints",
            &dir.join("checkpoints").display().to_string(),
            "--public-key",
            &gw.demo
                .dir
                .join("keys/audit-checkpoint.pub")
                .display()
                .to_string(),
        ]);
        assert_success(&out);
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let said = verify(copy.path());
    assert!(said.contains(&format!("OK: {sent} records")), "{said}");
    assert!(said.contains("checkpoints hold"), "{said}");

    // To a directory as well (file://), where it verifies in place.
    let dir = tempfile::tempdir().expect("dir");
    let out = permitgate(&[
        "audit",
        "ship",
        &gw.audit_dir.display().to_string(),
        "--to",
        &format!("file://{}", dir.path().display()),
        "--checkpoints",
        &checkpoints.display().to_string(),
        "--all",
    ]);
    assert_success(&out);
    assert!(verify(dir.path()).contains(&format!("OK: {sent} records")));
}
