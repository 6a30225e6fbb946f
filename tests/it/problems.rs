//! Every failure is an application/problem+json document with a stable type, and bad
//! input names the field and the rule without echoing the number.

use crate::common::{Options, TestGateway};
use http::Method;
use serde_json::json;

const LINK: &str = "/v1/link-checks";

#[tokio::test]
async fn json_shape_errors() {
    let gw = TestGateway::start().await;
    let mut c = gw.client("bank").await;
    c.post_raw(LINK, Some("application/json"), "{\"travel_permit\": ")
        .await
        .problem(400, "malformed-json");
    c.post_raw(LINK, Some("application/json"), "")
        .await
        .problem(400, "malformed-json");
    let v = c
        .post_json(LINK, &json!({"travel_permit": "H12345678", "residence_permit": "810000199001011230", "nmae": 1}))
        .await
        .problem(400, "unknown-field");
    assert_eq!(v["field"], "nmae");
    let v = c
        .post_json(LINK, &json!({"travel_permit": "H12345678"}))
        .await
        .problem(400, "missing-field");
    assert_eq!(v["field"], "residence_permit");
    c.post_json(
        LINK,
        &json!({"travel_permit": 12345678, "residence_permit": "x"}),
    )
    .await
    .problem(400, "invalid-field");
}

#[tokio::test]
async fn nothing_submitted_is_echoed_whatever_its_json_type() {
    let gw = TestGateway::start().await;
    let mut bank = gw.client("bank").await;
    let mut rail = gw.client("rail-gate").await;
    let n = "810000199001011237";
    let bodies = [
        (
            LINK,
            format!(r#"{{"travel_permit":"H12345678","residence_permit":{n}}}"#),
        ),
        (
            LINK,
            format!(r#"{{"travel_permit":{n},"residence_permit":"x"}}"#),
        ),
        (
            LINK,
            format!(r#"{{"travel_permit":"H1","residence_permit":[{n}]}}"#),
        ),
        (LINK, format!(r#"{{"travel_permit":"H1","{n}":1}}"#)),
        (
            LINK,
            format!(r#"{{"travel_permit":"H1","residence_permit":"x","receipt":{n}}}"#),
        ),
        (
            "/v1/link-checks:batch",
            format!(r#"{{"checks":[{{"travel_permit":{n},"residence_permit":"x"}},{n},[{n}]]}}"#),
        ),
        ("/v1/link-checks:batch", format!(r#"{{"checks":{n}}}"#)),
    ];
    for (path, body) in bodies {
        let r = bank
            .post_raw(path, Some("application/json"), body.clone())
            .await;
        let text = String::from_utf8_lossy(&r.body);
        assert!(r.status == 400 || r.status == 200, "{body}: {text}");
        assert!(
            !text.contains("810000") && !text.contains("1237"),
            "{body}: {text}"
        );
    }
    let r = rail
        .post_raw(
            "/v1/document-status",
            Some("application/json"),
            format!(r#"{{"number":{n}}}"#),
        )
        .await;
    let text = String::from_utf8_lossy(&r.body);
    assert_eq!(r.status, 400, "{text}");
    assert!(!text.contains("810000") && !text.contains("1237"), "{text}");
}

#[tokio::test]
async fn only_json_objects_are_requests() {
    let gw = TestGateway::start().await;
    let mut bank = gw.client("bank").await;
    let mut rail = gw.client("rail-gate").await;
    let status = gw.sample("travel_permit_lost_status").clone();
    let number = status.body["number"].as_str().expect("number").to_owned();
    // serde's derive would take an array of the fields' values for the object.
    let p = rail
        .post_raw(
            "/v1/document-status",
            Some("application/json"),
            format!(r#"["{number}"]"#),
        )
        .await
        .problem(400, "invalid-field");
    assert!(!p.to_string().contains(&number), "{p}");
    let link = gw.sample("linked_pair").clone();
    let (tp, rp) = (&link.body["travel_permit"], &link.body["residence_permit"]);
    bank.post_raw(LINK, Some("application/json"), format!("[{tp},{rp}]"))
        .await
        .problem(400, "invalid-field");
    let r = bank
        .post_raw(
            "/v1/link-checks:batch",
            Some("application/json"),
            format!(r#"{{"checks":[[{tp},{rp}],{}]}}"#, link.body),
        )
        .await;
    assert_eq!(r.status, 200);
    let v = r.json();
    assert_eq!(v["results"][0]["error"]["field"], "checks[0]");
    assert_eq!(v["results"][1]["result"], "linked", "{v}");
    bank.post_raw(
        "/v1/link-checks:batch",
        Some("application/json"),
        format!("[[[{tp},{rp}]]]"),
    )
    .await
    .problem(400, "invalid-field");
}

#[tokio::test]
async fn the_largest_batch_fits_the_default_body_limit() {
    let gw = TestGateway::start().await;
    // The longest numbers there are (a travel permit with its renewal count), each item
    // with its optional field: the default max_batch_items in the default body limit.
    let item = json!({"travel_permit": "H1234567801", "residence_permit": "810000199001011237", "receipt": false});
    let batch = json!({ "checks": vec![item; 1000] });
    assert!(
        batch.to_string().len() > 64 * 1024,
        "longer than the old limit"
    );
    let r = gw
        .client("bank")
        .await
        .post_json("/v1/link-checks:batch", &batch)
        .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["results"].as_array().map(Vec::len), Some(1000));
}

#[tokio::test]
async fn each_number_rule_is_named() {
    let gw = TestGateway::start().await;
    let mut c = gw.client("bank").await;
    let cases = [
        ("H1234567", "810000199001011230", "travel_permit", "length"),
        (
            "H1234567$",
            "810000199001011230",
            "travel_permit",
            "characters",
        ),
        (
            "X12345678",
            "810000199001011230",
            "travel_permit",
            "region_code",
        ),
        (
            "H12345678",
            "81000019900101123",
            "residence_permit",
            "length",
        ),
        (
            "H12345678",
            "81000019900101123Y",
            "residence_permit",
            "characters",
        ),
        (
            "H12345678",
            "840000199001011230",
            "residence_permit",
            "region_code",
        ),
        (
            "H12345678",
            "81000019900230123X",
            "residence_permit",
            "birth_date",
        ),
        (
            "H12345678",
            "810000199001011231",
            "residence_permit",
            "check_character",
        ),
        (
            "M12345678",
            "810000199001011230",
            "residence_permit",
            "region_mismatch",
        ),
        (
            "12345678",
            "820000198512310010",
            "residence_permit",
            "region_mismatch",
        ),
    ];
    for (tp, rp, field, rule) in cases {
        let r = c
            .post_json(LINK, &json!({"travel_permit": tp, "residence_permit": rp}))
            .await;
        let v = r.problem(422, "invalid-document-number");
        assert_eq!(v["field"], field, "{tp} {rp}");
        assert_eq!(v["rule"], rule, "{tp} {rp}");
        let body = String::from_utf8_lossy(&r.body);
        assert!(!body.contains(tp) && !body.contains(rp), "echoed: {body}");
    }
    let v = c
        .post_json("/v1/document-status", &json!({"number": "H１２３"}))
        .await
        .problem(422, "invalid-document-number");
    assert_eq!(
        (v["field"].as_str(), v["rule"].as_str()),
        (Some("number"), Some("length"))
    );
}

#[tokio::test]
async fn transport_level_errors() {
    let gw = TestGateway::start().await;
    let mut c = gw.client("bank").await;
    let body =
        json!({"travel_permit": "H12345678", "residence_permit": "810000199001011230"}).to_string();

    c.post_raw(LINK, Some("text/plain"), body.clone())
        .await
        .problem(415, "unsupported-media-type");
    c.post_raw(LINK, None, body.clone())
        .await
        .problem(415, "unsupported-media-type");
    // Parameters on the media type are fine.
    assert_eq!(
        c.post_raw(LINK, Some("application/json; charset=utf-8"), body.clone())
            .await
            .status,
        200
    );

    c.post_json("/v1/nothing-here", &json!({}))
        .await
        .problem(404, "not-found");
    let r = c.get(LINK).await;
    r.problem(405, "method-not-allowed");
    assert_eq!(
        r.headers.get("allow").map(|v| v.to_str().ok()),
        Some(Some("POST"))
    );
    let r = c
        .try_request(Method::POST, "/readyz", None, bytes::Bytes::new())
        .await
        .expect("response");
    r.problem(405, "method-not-allowed");
    assert_eq!(
        r.headers.get("allow").map(|v| v.to_str().ok()),
        Some(Some("GET"))
    );

    // 256 KiB default: over it is refused, and the connection stays usable.
    let big = format!("{{\"checks\": [\"{}\"]}}", "a".repeat(256 * 1024));
    c.post_raw("/v1/link-checks:batch", Some("application/json"), big)
        .await
        .problem(413, "body-too-large");
}

#[tokio::test]
async fn body_limit_and_batch_size_are_configurable() {
    let gw = TestGateway::start_with(Options {
        server_extra: "max_body_bytes = 2048\nmax_batch_items = 3",
        ..Options::default()
    })
    .await;
    let mut c = gw.client("bank").await;
    let item = json!({"travel_permit": "H12345678", "residence_permit": "810000199001011230"});
    let v = c
        .post_json(
            "/v1/link-checks:batch",
            &json!({"checks": [item, item, item, item]}),
        )
        .await
        .problem(422, "batch-too-large");
    assert_eq!(
        (v["field"].as_str(), v["rule"].as_str()),
        (Some("checks"), Some("max_items"))
    );
    let r = c
        .post_json(
            "/v1/link-checks:batch",
            &json!({"checks": [item, item, item]}),
        )
        .await;
    assert_eq!(r.status, 200);
    let padded = format!(
        "{{\"travel_permit\": \"H12345678\", \"residence_permit\": \"810000199001011230\"{}}}",
        " ".repeat(2100)
    );
    c.post_raw(LINK, Some("application/json"), padded)
        .await
        .problem(413, "body-too-large");
}

#[tokio::test]
async fn scopes_are_enforced_per_route() {
    let gw = TestGateway::start().await;
    let body = json!({"travel_permit": "H12345678", "residence_permit": "810000199001011230"});
    let mut none = gw.client("no-scopes").await;
    let v = none
        .post_json(LINK, &body)
        .await
        .problem(403, "scope-missing");
    assert!(
        v["detail"]
            .as_str()
            .is_some_and(|d| d.contains("link_check")),
        "{v}"
    );
    none.post_json("/v1/document-status", &json!({"number": "H12345678"}))
        .await
        .problem(403, "scope-missing");
    // rail-gate may ask document status but not link checks.
    let mut rail = gw.client("rail-gate").await;
    rail.post_json(LINK, &body)
        .await
        .problem(403, "scope-missing");
    rail.post_json("/v1/link-checks:batch", &json!({"checks": []}))
        .await
        .problem(403, "scope-missing");
    assert_eq!(
        rail.post_json("/v1/document-status", &json!({"number": "H12345678"}))
            .await
            .status,
        200
    );
    // Health endpoints need no scope.
    assert_eq!(none.get("/healthz").await.status, 200);
}

#[tokio::test]
async fn not_ready_until_a_snapshot_is_loaded() {
    let gw = TestGateway::start_with(Options {
        load_snapshot: false,
        ..Options::default()
    })
    .await;
    let mut c = gw.client("bank").await;
    assert_eq!(c.get("/healthz").await.status, 200);
    let r = c.get("/readyz").await;
    r.problem(503, "not-ready");
    assert!(r.headers.contains_key("retry-after"));
    c.post_json(
        LINK,
        &json!({"travel_permit": "H12345678", "residence_permit": "810000199001011230"}),
    )
    .await
    .problem(503, "not-ready");

    gw.gateway.load_snapshot().expect("load");
    let r = c.get("/readyz").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["snapshot"]["version"], 1);
    let s = &gw.samples()[0];
    assert_eq!(c.post_json(&s.path, &s.body).await.status, 200);
}
