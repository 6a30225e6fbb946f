//! docs/openapi.yaml against the real thing: every route and problem type the gateway has
//! is in the spec, and real answers over mTLS (successes and problems, every route) match
//! the spec's schema for their path, method, status and content type.

use std::path::Path;
use strum::VariantArray;

use crate::common::{config_edit, Options, Response, TestGateway};
use bytes::Bytes;
use http::{Method, Request};
use http_body_util::Full;
use permitgate::http::problem::ProblemKind;
use permitgate::http::Route;
use serde_json::{json, Value};

fn spec() -> Value {
    spec_file("docs/openapi.yaml")
}

/// An OpenAPI document of the repository, parsed.
pub(crate) fn spec_file(path: &str) -> Value {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(path))
        .unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_yaml::from_str(&text).expect("the spec is YAML")
}

/// Follows a `$ref` inside the spec.
fn resolve<'a>(spec: &'a Value, v: &'a Value) -> &'a Value {
    match v.get("$ref").and_then(Value::as_str) {
        Some(r) => spec
            .pointer(r.trim_start_matches('#'))
            .unwrap_or_else(|| panic!("dangling $ref {r}")),
        None => v,
    }
}

/// Checks one answer against the spec's schema for `template` + `method`.
pub(crate) fn conforms(spec: &Value, template: &str, method: &str, r: &Response) {
    let op = &spec["paths"][template][method];
    assert!(op.is_object(), "no {method} {template} in the spec");
    let responses = &op["responses"];
    let status = r.status.as_str();
    let declared = if responses.get(status).is_some() {
        &responses[status]
    } else {
        &responses["default"]
    };
    let declared = resolve(spec, declared);
    assert!(
        declared.is_object(),
        "{method} {template}: status {status} is not in the spec"
    );
    let ctype = r.content_type();
    let schema = &declared["content"][ctype]["schema"];
    assert!(
        schema.is_object(),
        "{method} {template} {status}: content type {ctype} is not in the spec"
    );
    // The schema with the spec's components beside it, so that its $refs resolve.
    let mut root = schema.clone();
    root["components"] = spec["components"].clone();
    let validator = jsonschema::draft202012::new(&root).expect("a valid schema");
    let body: Value = serde_json::from_slice(&r.body).expect("a JSON body");
    let errors: Vec<String> = validator
        .iter_errors(&body)
        .map(|e| format!("{} at {}", e, e.instance_path))
        .collect();
    assert!(
        errors.is_empty(),
        "{method} {template} {status} does not match the spec:\n{}\n{body:#}",
        errors.join("\n")
    );
    assert!(
        r.headers.contains_key("x-request-id")
            || template.starts_with("/v1/keys")
            || template.ends_with("z"),
        "{method} {template}: no x-request-id"
    );
}

#[test]
fn every_route_and_problem_type_is_in_the_spec() {
    let spec = spec();
    let paths: Vec<&String> = spec["paths"].as_object().expect("paths").keys().collect();
    for &route in Route::VARIANTS {
        if route == Route::Unknown {
            continue;
        }
        let concrete = |p: &str| p.replace("{hash}", &"0".repeat(64));
        assert!(
            paths.iter().any(|p| Route::of(&concrete(p)) == route),
            "route {} is not in docs/openapi.yaml",
            route.label()
        );
    }
    for p in &paths {
        let concrete = p.replace("{hash}", &"0".repeat(64));
        assert_ne!(
            Route::of(&concrete),
            Route::Unknown,
            "{p} is in the spec but not served"
        );
    }
    let types: Vec<&str> = spec["components"]["schemas"]["Problem"]["properties"]["type"]["enum"]
        .as_array()
        .expect("problem types")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for kind in ProblemKind::VARIANTS {
        assert!(
            types.contains(&kind.type_uri()),
            "{} is not in the spec",
            kind.type_uri()
        );
    }
    assert_eq!(
        types.len(),
        ProblemKind::VARIANTS.len(),
        "the spec lists types that do not exist"
    );
}

fn raw(method: Method, path: &str, ctype: Option<&str>, body: &str) -> Request<Full<Bytes>> {
    let mut r = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "localhost");
    if let Some(c) = ctype {
        r = r.header("content-type", c);
    }
    r.body(Full::new(Bytes::from(body.to_owned())))
        .expect("request")
}

#[tokio::test]
async fn real_answers_match_the_spec() {
    let spec = spec();
    let gw = TestGateway::start_with(Options {
        edit_config: vec![
            config_edit::partner("rail-gate", |p| {
                p.insert(
                    "rate_limit".into(),
                    config_edit::value("{ per_second = 1, burst = 1 }"),
                );
            }),
            config_edit::set("receipts.verify_url", "https://verify.example/v/"),
        ],
        ..Options::default()
    })
    .await;
    let mut bank = gw.client("bank").await;
    let mut gate = gw.client("rail-gate").await;
    let mut nobody = gw.client("no-scopes").await;
    let json = Some("application/json");

    // Every demo sample (all routes, all answers), as the partner it is meant for.
    for s in gw.samples().to_vec() {
        // rail-gate (1 request/s) takes the temporary permit; bank the rest.
        let r = if s.path == "/v1/temporary-permits/verify" {
            gate.post_json(&s.path, &s.body).await
        } else {
            bank.post_json(&s.path, &s.body).await
        };
        r.assert_ok(&s.name);
        conforms(&spec, &s.path, "post", &r);
    }
    let link = gw.sample("linked_pair").clone();
    let with_receipt = json!({"travel_permit": link.body["travel_permit"], "residence_permit": link.body["residence_permit"], "receipt": true, "holder_name": "陳大文"});
    let r = bank.post_json("/v1/link-checks", &with_receipt).await;
    assert!(r.json()["receipt"]["encoded"].is_string());
    assert!(r.json()["receipt"]["url"].is_string(), "the verifier link");
    conforms(&spec, "/v1/link-checks", "post", &r);
    let receipt = r.json()["receipt"]["encoded"].clone();
    for body in [
        json!({"receipt": receipt, "travel_permit": link.body["travel_permit"], "residence_permit": link.body["residence_permit"]}),
        json!({"receipt": "not a receipt"}),
    ] {
        let r = bank.post_json("/v1/receipts/verify", &body).await;
        assert_eq!(r.status, 200);
        conforms(&spec, "/v1/receipts/verify", "post", &r);
    }
    let batch = json!({"checks": [link.body, {"travel_permit": "H1", "residence_permit": "x"}, {"oops": 1}]});
    let r = bank.post_json("/v1/link-checks:batch", &batch).await;
    assert_eq!(r.status, 200);
    conforms(&spec, "/v1/link-checks:batch", "post", &r);
    let missing = json!({"number": "H00000000"});
    let r = bank.post_json("/v1/document-status", &missing).await;
    conforms(&spec, "/v1/document-status", "post", &r);
    for token in ["PGT1:NOTATOKEN", "garbage"] {
        let r = gw
            .client("bank")
            .await
            .post_json("/v1/temporary-permits/verify", &json!({ "token": token }))
            .await;
        // bank lacks temp_permit: a problem, also in the spec.
        r.problem(403, "scope-missing");
        conforms(&spec, "/v1/temporary-permits/verify", "post", &r);
    }
    for (path, partner) in [
        ("/v1/keys", "bank"),
        ("/healthz", "no-scopes"),
        ("/readyz", "no-scopes"),
        ("/v1/replication/manifest", "relay"),
    ] {
        let r = gw.client(partner).await.get(path).await;
        let template = path;
        assert_eq!(r.status, 200, "{path}");
        conforms(&spec, template, "get", &r);
    }

    // Problems, each from a real request (all documented under the POST operation).
    let link_checks = |ctype, body: &str| raw(Method::POST, "/v1/link-checks", ctype, body);
    let too_many = json!({ "checks": vec![json!({}); 1001] }).to_string();
    let problems = [
        (link_checks(json, "{"), 400),
        (
            link_checks(
                json,
                r#"{"travel_permit":"H1","residence_permit":"1","x":1}"#,
            ),
            400,
        ),
        (link_checks(json, r#"{"travel_permit":"H1"}"#), 400),
        (
            link_checks(json, r#"{"travel_permit":5,"residence_permit":"1"}"#),
            400,
        ),
        (
            link_checks(json, r#"{"travel_permit":"H1","residence_permit":"1"}"#),
            422,
        ),
        (link_checks(Some("text/plain"), "{}"), 415),
        (raw(Method::GET, "/v1/link-checks", None, ""), 405),
        (link_checks(json, &"x".repeat(300_000)), 413),
        (
            raw(Method::POST, "/v1/link-checks:batch", json, &too_many),
            422,
        ),
    ];
    for (req, status) in problems {
        let template = req.uri().path().to_owned();
        // A fresh connection each: some refusals (413) close theirs.
        let r = gw
            .client("bank")
            .await
            .try_request_with(req)
            .await
            .expect("answer");
        assert_eq!(
            r.status.as_u16(),
            status,
            "{}",
            String::from_utf8_lossy(&r.body)
        );
        conforms(&spec, &template, "post", &r);
    }
    let r = nobody.post_json("/v1/link-checks", &link.body).await;
    r.problem(403, "scope-missing");
    conforms(&spec, "/v1/link-checks", "post", &r);
    let status = gw.sample("travel_permit_lost_status").clone();
    let mut limited = None;
    for _ in 0..5 {
        let r = gate.post_json(&status.path, &status.body).await;
        if r.status == 429 {
            limited = Some(r);
            break;
        }
    }
    let r = limited.expect("rail-gate was never rate limited");
    conforms(&spec, "/v1/document-status", "post", &r);
}

/// A validator for the spec's schema `name` (components beside it, for its $refs).
fn schema_validator(spec: &Value, name: &str) -> jsonschema::Validator {
    let mut root = spec["components"]["schemas"][name].clone();
    assert!(root.is_object(), "no schema {name}");
    root["components"] = spec["components"].clone();
    jsonschema::draft202012::new(&root).expect("a valid schema")
}

/// Inputs around the number rules: valid numbers, and their case, width, whitespace,
/// length and character variants.
fn number_inputs() -> impl proptest::strategy::Strategy<Value = String> {
    use proptest::prelude::*;
    let piece = prop_oneof![
        Just("H".to_owned()),
        Just("M".to_owned()),
        Just("h".to_owned()),
        Just("Ｈ".to_owned()),
        Just("ｍ".to_owned()),
        Just("X".to_owned()),
        Just("HA".to_owned()),
        Just("ｍａ".to_owned()),
        Just("A".to_owned()),
        Just("ｘ".to_owned()),
        Just("-".to_owned()),
        Just(" ".to_owned()),
        Just("\u{3000}".to_owned()),
        Just("\t".to_owned()),
        Just("\u{a0}".to_owned()),
        Just("810000".to_owned()),
        Just("８２００００".to_owned()),
        Just("19660403".to_owned()),
        Just("19661340".to_owned()),
        "[0-9]{1,4}",
        "[０-９]{1,3}",
    ];
    let known = prop_oneof![
        Just("H03399243".to_owned()),
        Just("M1234567801".to_owned()),
        Just("01234567".to_owned()),
        Just("HA1234567".to_owned()),
        Just("810000196604037962".to_owned()),
        Just("830000200002290023".to_owned()),
    ];
    prop_oneof![
        known,
        proptest::collection::vec(piece, 0..7).prop_map(|p| p.concat()),
    ]
}

#[test]
fn number_patterns_accept_what_the_gateway_accepts() {
    use permitgate::document::{DocumentNo, NumberError, ResidencePermitNo, TravelPermitNo};
    use proptest::test_runner::{Config, TestRunner};
    let spec = spec();
    let travel = schema_validator(&spec, "TravelPermitNumber");
    let residence = schema_validator(&spec, "ResidencePermitNumber");
    let status = schema_validator(&spec, "DocumentStatusRequest");
    // Rules a pattern cannot hold: the shape is right, the value is not.
    let semantic =
        |e: NumberError| matches!(e, NumberError::BirthDate | NumberError::CheckCharacter);
    let mut runner = TestRunner::new(Config {
        cases: 4000,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&number_inputs(), |input| {
            let v = Value::String(input.clone());
            let tp = TravelPermitNo::parse(&input);
            proptest::prop_assert_eq!(travel.is_valid(&v), tp.is_ok(), "travel permit {:?}", input);
            let rp = ResidencePermitNo::parse(&input);
            proptest::prop_assert_eq!(
                residence.is_valid(&v),
                rp.is_ok() || rp.err().is_some_and(semantic),
                "residence permit {:?}",
                input
            );
            let any = DocumentNo::parse(&input);
            proptest::prop_assert_eq!(
                status.is_valid(&json!({ "number": input })),
                any.is_ok() || any.err().is_some_and(semantic),
                "document-status number {:?}",
                input
            );
            Ok(())
        })
        .expect("the spec's patterns and the gateway's parsers agree");
    // Spot checks of what the generator may miss.
    for (input, ok) in [
        ("", false),
        ("  h03399243\u{3000}", true),
        ("Ｈ０３３９９２４３", true),
        ("H0339924", false),
        ("H03399243\u{a0}", false),
    ] {
        assert_eq!(travel.is_valid(&json!(input)), ok, "{input:?}");
        assert_eq!(TravelPermitNo::parse(input).is_ok(), ok, "{input:?}");
    }
}

#[test]
fn every_problem_type_has_its_status_in_the_spec() {
    let spec = spec();
    // As if/then pairs under allOf: one model for generated clients, and still a schema
    // that refuses a type with another type's status.
    let branches = spec["components"]["schemas"]["Problem"]["allOf"]
        .as_array()
        .expect("Problem.allOf");
    for kind in ProblemKind::VARIANTS {
        let status = branches
            .iter()
            .find(|b| b["if"]["properties"]["type"]["const"] == kind.type_uri())
            .map(|b| b["then"]["properties"]["status"]["const"].clone());
        assert_eq!(
            status,
            Some(json!(kind.status())),
            "{} and its status in Problem.allOf",
            kind.type_uri()
        );
    }
    assert_eq!(branches.len(), ProblemKind::VARIANTS.len());
    let problem = schema_validator(&spec, "Problem");
    let wrong = json!({"type": "urn:permitgate:problem:rate-limited", "title": "t", "status": 503, "detail": "d"});
    assert!(
        !problem.is_valid(&wrong),
        "a type with another type's status"
    );
}

#[tokio::test]
async fn headers_and_query_parameters_do_what_the_spec_says() {
    let spec = spec();
    let gw = TestGateway::start().await;
    let request_id =
        jsonschema::draft202012::new(&spec["components"]["headers"]["RequestId"]["schema"])
            .expect("schema");
    let link = gw.sample("linked_pair").clone();
    // Kept when acceptable, replaced (never refused) when not.
    for (sent, kept) in [
        ("ticket-4711", true),
        (&*"x".repeat(65), false),
        ("no spaces", false),
    ] {
        let req = Request::builder()
            .method(Method::POST)
            .uri(&link.path)
            .header("host", "localhost")
            .header("content-type", "application/json")
            .header("x-request-id", sent)
            .body(Full::new(Bytes::from(link.body.to_string())))
            .expect("request");
        let r = gw
            .client("bank")
            .await
            .try_request_with(req)
            .await
            .expect("answer");
        r.assert_ok(sent);
        let echoed = r.headers["x-request-id"].to_str().expect("ascii");
        assert_eq!(echoed == sent, kept, "{sent:?} -> {echoed:?}");
        assert!(request_id.is_valid(&json!(echoed)), "{echoed:?}");
    }
    // wait_ms within 0..=30000, or 400 naming it.
    let mut relay = gw.client("relay").await;
    for bad in ["-1", "30001", "soon", "1e3"] {
        let r = relay
            .get(&format!("/v1/replication/manifest?wait_ms={bad}"))
            .await;
        let p = r.problem(400, "invalid-field");
        assert_eq!(
            (p["field"].as_str(), p["rule"].as_str()),
            (Some("wait_ms"), Some("range"))
        );
        conforms(&spec, "/v1/replication/manifest", "get", &r);
    }
    let r = relay.get("/v1/replication/manifest?wait_ms=0").await;
    r.assert_ok("wait_ms=0");
}
