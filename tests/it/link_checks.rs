//! Link checks and document status checks answer what the published data says.

use crate::common::{assert_subset, TestGateway};
use serde_json::{json, Value};

use permitgate::key_files::{load_signing_key, HashKey};
use permitgate::publish::{publish, PublishOptions};

#[tokio::test]
async fn every_demo_sample_gets_its_expected_answer() {
    let gw = TestGateway::start().await;
    assert!(gw.samples().len() >= 7);
    for s in gw.samples() {
        let mut c = gw.client(&s.partner).await;
        let r = c.post_json(&s.path, &s.body).await;
        r.assert_ok(&s.name);
        assert_eq!(r.content_type(), "application/json");
        let v = r.json();
        assert_subset(&v, &s.expect, &s.name);
        assert_eq!(v["snapshot"]["version"], 1, "{}", s.name);
        assert!(v["checked_at"].as_str().is_some_and(|t| t.ends_with('Z')));
    }
}

/// Replaces the demo snapshot with a hand-written export whose answers are known.
async fn gateway_with_known_data() -> TestGateway {
    let gw = TestGateway::start().await;
    let export = gw.dir.path().join("known.jsonl");
    let lines = [
        json!({"person": "a", "documents": [
            {"number": "H12345678", "status": "valid", "valid_until": "2099-01-01"},
            {"number": "810000199001011230", "status": "valid", "valid_until": "2098-12-31"}]}),
        json!({"person": "b", "documents": [
            {"number": "M8765432103", "status": "valid", "valid_until": "2099-01-01"},
            {"number": "820000198512310010", "status": "revoked", "valid_until": "2099-01-01"}]}),
        json!({"person": "c", "documents": [
            {"number": "01234567", "status": "valid", "valid_until": "2001-01-01"},
            {"number": "830000200002290023", "status": "valid", "valid_until": "2099-01-01"}]}),
        json!({"person": "d", "documents": [
            {"number": "H22222222", "status": "damaged", "valid_until": "2099-01-01"}]}),
        // Non-Chinese permanent residents: HA/MA numbers, no residence permit.
        json!({"person": "e", "documents": [
            {"number": "HA1234567", "status": "valid", "valid_until": "2029-07-10"}]}),
        json!({"person": "f", "documents": [
            {"number": "ma7654321", "status": "lost", "valid_until": "2029-07-10"}]}),
    ];
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(&export, text).expect("write export");
    publish(
        &export,
        &gw.demo.repo(),
        &load_signing_key(&gw.demo.publisher_key()).expect("key"),
        &HashKey::load(&gw.demo.hash_key()).expect("hash key"),
        &PublishOptions {
            version: None,
            expires_in: time::Duration::hours(1),
            now: time::OffsetDateTime::now_utc(),
        },
    )
    .expect("publish");
    let old = gw
        .gateway
        .store
        .current()
        .as_ref()
        .cloned()
        .expect("v1 loaded");
    let info = gw
        .gateway
        .load_snapshot()
        .expect("reload")
        .expect("local repo");
    assert_eq!(info.version, 2);
    // A request that started on the old state keeps a consistent view of it.
    assert_eq!(old.view().info().version, 1);
    assert!(old.snapshot().len() > 4);
    assert_eq!(
        gw.gateway
            .store
            .current()
            .as_ref()
            .map(|s| s.view().info().version),
        Some(2)
    );
    gw
}

async fn link(gw: &TestGateway, tp: &str, rp: &str) -> Value {
    let mut c = gw.client("bank").await;
    let r = c
        .post_json(
            "/v1/link-checks",
            &json!({"travel_permit": tp, "residence_permit": rp}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    r.json()
}

#[tokio::test]
async fn link_checks_follow_the_published_records() {
    let gw = gateway_with_known_data().await;

    let v = link(&gw, "H12345678", "810000199001011230").await;
    assert_eq!(
        v,
        json!({
            "result": "linked",
            "travel_permit": {"status": "valid", "valid_until": "2099-01-01"},
            "residence_permit": {"status": "valid", "valid_until": "2098-12-31"},
            "snapshot": v["snapshot"].clone(),
            "checked_at": v["checked_at"].clone(),
        })
    );
    assert_eq!(v["snapshot"]["version"], 2);

    // Normalisation: spaces, lower case and full-width characters reach the same record.
    let v = link(
        &gw,
        " ｈ１２３４５６７８ ",
        "８１００００１９９００１０１１２３０",
    )
    .await;
    assert_eq!(v["result"], "linked");

    // Revoked residence permit: still the same person, status says why it is not usable.
    let v = link(&gw, "M87654321", "820000198512310010").await;
    assert_eq!(v["result"], "linked");
    assert_eq!(v["residence_permit"]["status"], "revoked");

    // Recorded valid but past its date.
    let v = link(&gw, "01234567", "830000200002290023").await;
    assert_eq!(v["travel_permit"]["status"], "expired");
    assert_eq!(v["travel_permit"]["valid_until"], "2001-01-01");

    // Different people of one region.
    let v = link(&gw, "H22222222", "810000199001011230").await;
    assert_eq!(v["result"], "not_linked");
    assert_eq!(v["travel_permit"]["status"], "damaged");

    // Unknown documents: their fields are null, the other one is still reported.
    let v = link(&gw, "H12345678", "810000197002030012").await;
    assert_eq!(v["result"], "residence_permit_not_found");
    assert_eq!(
        v["residence_permit"],
        json!({"status": null, "valid_until": null})
    );
    assert_eq!(v["travel_permit"]["status"], "valid");
    let v = link(&gw, "H99999999", "810000199001011230").await;
    assert_eq!(v["result"], "travel_permit_not_found");
    assert_eq!(
        v["travel_permit"],
        json!({"status": null, "valid_until": null})
    );
}

#[tokio::test]
async fn non_chinese_permanent_residents_get_their_own_answer() {
    let gw = gateway_with_known_data().await;
    // Never "not_linked": no residence permit can belong with this travel permit.
    let v = link(&gw, "HA1234567", "810000199001011230").await;
    assert_subset(
        &v,
        &json!({"result": "holder_not_eligible", "travel_permit": {"status": "valid"}, "residence_permit": {"status": "valid"}}),
        "HA with someone's residence permit",
    );
    let v = link(&gw, "Ｍａ７６５４３２１", "820000198512310010").await;
    assert_eq!(v["result"], "holder_not_eligible", "{v}");
    assert_eq!(v["travel_permit"]["status"], "lost", "{v}");
    // Unknown HA numbers are unknown first.
    let v = link(&gw, "HA7777777", "810000199001011230").await;
    assert_eq!(v["result"], "travel_permit_not_found", "{v}");
    // Document status, and a batch item alike.
    let mut c = gw.client("bank").await;
    let r = c
        .post_json("/v1/document-status", &json!({"number": "ha1234567"}))
        .await;
    assert_subset(
        &r.json(),
        &json!({"result": "found", "document_type": "travel_permit", "region": "hong_kong", "status": "valid"}),
        "HA status",
    );
    let r = c
        .post_json(
            "/v1/link-checks:batch",
            &json!({"checks": [
                {"travel_permit": "H12345678", "residence_permit": "810000199001011230"},
                {"travel_permit": "HA1234567", "residence_permit": "810000199001011230"},
                {"travel_permit": "HA123456", "residence_permit": "810000199001011230"}]}),
        )
        .await;
    let results = r.json()["results"].clone();
    assert_eq!(results[0]["result"], "linked");
    assert_eq!(results[1]["result"], "holder_not_eligible");
    assert_eq!(results[2]["error"]["rule"], "length", "{results}");
    // A receipt says so too.
    let r = c
        .post_json(
            "/v1/link-checks",
            &json!({"travel_permit": "HA1234567", "residence_permit": "810000199001011230", "receipt": true}),
        )
        .await;
    let encoded = r.json()["receipt"]["encoded"]
        .as_str()
        .expect("receipt")
        .to_owned();
    let receipt = permitgate::receipt::read(&encoded).expect("receipt reads");
    assert_eq!(
        receipt.result,
        permitgate::checks::LinkResult::HolderNotEligible
    );
}

#[tokio::test]
async fn renewal_counts_tell_cards_apart() {
    let gw = gateway_with_known_data().await;
    let rp = "820000198512310010";
    assert_eq!(
        link(&gw, "M8765432103", rp).await["travel_permit"]["status"],
        "valid"
    );
    assert_eq!(
        link(&gw, "M8765432102", rp).await["travel_permit"]["status"],
        "replaced"
    );
    assert_eq!(
        link(&gw, "M8765432104", rp).await["result"],
        "travel_permit_not_found"
    );
}

#[tokio::test]
async fn document_status_for_both_kinds() {
    let gw = gateway_with_known_data().await;
    let mut c = gw.client("rail-gate").await;
    let r = c
        .post_json(
            "/v1/document-status",
            &json!({"number": "810000199001011230"}),
        )
        .await;
    assert_eq!(r.status, 200);
    let v = r.json();
    assert_subset(
        &v,
        &json!({"result": "found", "document_type": "residence_permit", "region": "hong_kong",
                "status": "valid", "valid_until": "2098-12-31", "snapshot": {"version": 2}}),
        "rp",
    );
    let v = c
        .post_json("/v1/document-status", &json!({"number": "01234567"}))
        .await
        .json();
    assert_subset(
        &v,
        &json!({"result": "found", "document_type": "travel_permit", "region": "taiwan", "status": "expired"}),
        "tp",
    );
    let v = c
        .post_json("/v1/document-status", &json!({"number": "M00000001"}))
        .await
        .json();
    assert_subset(
        &v,
        &json!({"result": "not_found", "document_type": "travel_permit", "region": "macao",
                "status": null, "valid_until": null}),
        "unknown",
    );
}

#[tokio::test]
async fn batch_answers_each_item_in_order_and_isolates_bad_ones() {
    let gw = gateway_with_known_data().await;
    let mut c = gw.client("bank").await;
    let r = c
        .post_json(
            "/v1/link-checks:batch",
            &json!({"checks": [
                {"travel_permit": "H12345678", "residence_permit": "810000199001011230"},
                {"travel_permit": "H12345678", "residence_permit": "810000199001011231"},
                {"travel_permit": "H12345678", "residence_permit": "810000199001011230", "extra": 1},
                5,
                {"travel_permit": "M87654321", "residence_permit": "810000199001011230"},
                {"residence_permit": "810000199001011230"},
                {"travel_permit": "H22222222", "residence_permit": "810000199001011230"}
            ]}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let v = r.json();
    let results = v["results"].as_array().expect("results");
    assert_eq!(results.len(), 7);
    assert_eq!(results[0]["result"], "linked");
    let err = |i: usize| &results[i]["error"];
    assert_eq!(
        err(1)["type"],
        "urn:permitgate:problem:invalid-document-number"
    );
    assert_eq!(err(1)["field"], "checks[1].residence_permit");
    assert_eq!(err(1)["rule"], "check_character");
    assert_eq!(err(2)["type"], "urn:permitgate:problem:unknown-field");
    assert_eq!(err(2)["field"], "checks[2].extra");
    assert_eq!(err(3)["type"], "urn:permitgate:problem:invalid-field");
    assert_eq!(err(4)["rule"], "region_mismatch");
    assert_eq!(err(5)["type"], "urn:permitgate:problem:missing-field");
    assert_eq!(err(5)["field"], "checks[5].travel_permit");
    assert_eq!(results[6]["result"], "not_linked");
    assert_eq!(v["snapshot"]["version"], 2);
    // Errors never echo the submitted numbers.
    assert!(!String::from_utf8_lossy(&r.body).contains("810000199001011231"));
}

#[tokio::test]
async fn http2_is_negotiated_and_answers_concurrent_streams() {
    use http_body_util::BodyExt;
    let gw = TestGateway::start().await;
    let (cert, key) = gw.cert_paths("bank");
    let mut cfg =
        (*crate::common::client_config(&gw.demo.pki.ca_cert(), Some((&cert, &key)))).clone();
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = tokio::net::TcpStream::connect(gw.addr())
        .await
        .expect("connect");
    let tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(cfg))
        .connect(
            rustls::pki_types::ServerName::try_from("localhost").expect("name"),
            tcp,
        )
        .await
        .expect("handshake");
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tls),
    )
    .await
    .expect("h2 handshake");
    tokio::spawn(conn);
    let s = gw.samples()[0].clone();
    let mut streams = tokio::task::JoinSet::new();
    for _ in 0..16 {
        let mut send = send.clone();
        let req = http::Request::post(format!("https://localhost{}", s.path))
            .header("content-type", "application/json")
            .body(http_body_util::Full::new(bytes::Bytes::from(
                serde_json::to_vec(&s.body).expect("json"),
            )))
            .expect("request");
        streams.spawn(async move {
            let resp = send.send_request(req).await.expect("response");
            assert_eq!(resp.status(), 200);
            let body = resp.into_body().collect().await.expect("body").to_bytes();
            serde_json::from_slice::<Value>(&body).expect("json")
        });
    }
    let answers = streams.join_all().await;
    assert_eq!(answers.len(), 16);
    for v in answers {
        assert_subset(&v, &s.expect, "h2");
    }
}
