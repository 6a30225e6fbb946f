//! Signed verification receipts, end to end: asked for on a link check over mTLS, checked
//! offline against `GET /v1/keys` with and without the two numbers, refused when altered,
//! printed as PDF and PNG whose QR code verifies, and signing keys rotated.

use std::sync::Arc;

use crate::common::{
    assert_success, config_edit, decode_qr_png, permitgate, printing_unavailable, Options,
    TestGateway,
};
use serde_json::{json, Value};
use time::{Duration, OffsetDateTime};

use permitgate::checks::DocumentPair;
use permitgate::clock::ManualClock;
use permitgate::document::{ResidencePermitNo, TravelPermitNo};
use permitgate::keyring::KeyUse;
use permitgate::receipt::{self, ReceiptError};

fn pair_of(body: &Value) -> DocumentPair {
    DocumentPair::new(
        TravelPermitNo::parse(body["travel_permit"].as_str().expect("tp")).expect("tp"),
        ResidencePermitNo::parse(body["residence_permit"].as_str().expect("rp")).expect("rp"),
    )
    .expect("pair")
}

fn with_receipt(body: &Value) -> Value {
    let mut b = body.clone();
    b["receipt"] = json!(true);
    b
}

/// A link check with a receipt; returns the answer.
async fn checked(gw: &TestGateway, partner: &str, body: &Value) -> Value {
    let r = gw
        .client(partner)
        .await
        .post_json("/v1/link-checks", &with_receipt(body))
        .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    r.json()
}

fn encoded(answer: &Value) -> String {
    answer["receipt"]["encoded"]
        .as_str()
        .unwrap_or_else(|| panic!("no receipt in {answer}"))
        .to_owned()
}

#[tokio::test]
async fn a_receipt_states_the_answer_and_binds_the_numbers() {
    let gw = TestGateway::start().await;
    let (_, keys) = gw.keys_file().await;
    for name in [
        "linked_pair",
        "travel_permit_lost",
        "unknown_residence_permit",
    ] {
        let s = gw.sample(name);
        let a = checked(&gw, "bank", &s.body).await;
        let r = receipt::verify(&encoded(&a), &keys).expect("verifies offline");
        assert_eq!(r.partner, "bank");
        assert_eq!(json!(r.result), a["result"], "{name}");
        assert_eq!(
            json!(r.travel_permit),
            a["travel_permit"]["status"],
            "{name}"
        );
        assert_eq!(
            json!(r.residence_permit),
            a["residence_permit"]["status"],
            "{name}"
        );
        assert_eq!(json!(r.snapshot_version), a["snapshot"]["version"]);
        assert_eq!(
            permitgate::day::rfc3339(r.checked_at),
            a["checked_at"].as_str().expect("t")
        );
        assert_eq!(a["receipt"]["id"], r.id.to_string());
        assert_eq!(a["receipt"]["key_id"], r.key_id.to_string());
        assert!(r.refers_to(&pair_of(&s.body)), "{name}");
        let other = gw.sample("valid_but_not_linked");
        assert!(!r.refers_to(&pair_of(&other.body)), "{name}");
        let text = encoded(&a);
        for number in [&s.body["travel_permit"], &s.body["residence_permit"]] {
            assert!(!text.contains(number.as_str().expect("n")));
        }
    }
    // The receipt key is published for receipts only, next to the issuing and publishing keys.
    let uses: Vec<KeyUse> = keys.keys().iter().map(|k| k.key_use).collect();
    for u in [KeyUse::Receipt, KeyUse::TempPermit, KeyUse::Snapshot] {
        assert!(uses.contains(&u), "{u:?} missing from {uses:?}");
    }
}

#[tokio::test]
async fn receipts_are_signed_only_when_asked_and_only_for_the_receipt_scope() {
    let gw = TestGateway::start_with(Options {
        edit_config: vec![config_edit::partner("rail-gate", |p| {
            let scopes = p
                .get_mut("scopes")
                .and_then(toml::Value::as_array_mut)
                .expect("scopes");
            scopes.insert(0, "link_check".into());
        })],
        ..Options::default()
    })
    .await;
    let s = gw.sample("linked_pair");
    let plain = gw
        .client("bank")
        .await
        .post_json(&s.path, &s.body)
        .await
        .json();
    assert_eq!(plain["receipt"], Value::Null, "{plain}");

    // rail-gate may check links but not get receipts.
    let mut c = gw.client("rail-gate").await;
    assert_eq!(c.post_json(&s.path, &s.body).await.status, 200);
    let p = c
        .post_json(&s.path, &with_receipt(&s.body))
        .await
        .problem(403, "scope-missing");
    assert_eq!(p["field"], "receipt");

    // In a batch, each item asks for itself.
    let batch = json!({"checks": [with_receipt(&s.body), s.body, with_receipt(&gw.sample("travel_permit_lost").body)]});
    let b = gw
        .client("bank")
        .await
        .post_json("/v1/link-checks:batch", &batch)
        .await
        .json();
    let (_, keys) = gw.keys_file().await;
    assert!(receipt::verify(&encoded(&b["results"][0]), &keys).is_ok());
    assert_eq!(b["results"][1]["receipt"], Value::Null);
    assert!(receipt::verify(&encoded(&b["results"][2]), &keys).is_ok());
    let denied = c.post_json("/v1/link-checks:batch", &batch).await.json();
    assert_eq!(denied["results"][0]["error"]["field"], "checks[0].receipt");
    assert_eq!(denied["results"][1]["result"], "linked");

    gw.wait_metric("permitgate_receipts_signed_total", 2.0)
        .await;
}

#[tokio::test]
async fn without_a_receipt_key_receipts_are_unavailable() {
    let gw = TestGateway::start_with(Options {
        edit_config: vec![config_edit::remove("receipts")],
        ..Options::default()
    })
    .await;
    let s = gw.sample("linked_pair");
    let mut c = gw.client("bank").await;
    c.post_json(&s.path, &with_receipt(&s.body))
        .await
        .problem(503, "receipts-unavailable");
    assert_eq!(c.post_json(&s.path, &s.body).await.status, 200);
    let (_, keys) = gw.keys_file().await;
    assert!(keys.keys().iter().all(|k| k.key_use != KeyUse::Receipt));
}

#[tokio::test]
async fn a_rotated_key_signs_new_receipts_and_old_receipts_keep_verifying() {
    let t0 = OffsetDateTime::now_utc();
    let first = TestGateway::start_with(Options {
        clock: Some(Arc::new(ManualClock::at_unix(t0.unix_timestamp()))),
        ..Options::default()
    })
    .await;
    let s = first.sample("linked_pair").clone();
    let old = encoded(&checked(&first, "bank", &s.body).await);

    // A day later: a new key from noon, the old one retired at noon.
    let noon = permitgate::day::rfc3339(t0 + Duration::hours(12));
    let new_key = first.dir.path().join("keys/receipt-2");
    let out = permitgate(&["keys", "ed25519", "--out", new_key.to_str().expect("utf8")]);
    assert_success(&out);
    let second = TestGateway::start_with(Options {
        demo_dir: Some(first.dir.path().to_owned()),
        clock: Some(Arc::new(ManualClock::at_unix(
            (t0 + Duration::days(1)).unix_timestamp(),
        ))),
        edit_config: vec![config_edit::set(
            "receipts.signing_keys",
            config_edit::value(&format!(
                "[{{ path = \"keys/receipt.key\", not_after = \"{noon}\" }}, {{ path = \"keys/receipt-2.key\", not_before = \"{noon}\" }}]"
            )),
        )],
        ..Options::default()
    })
    .await;
    let new = encoded(&checked(&second, "bank", &s.body).await);
    let (_, keys) = second.keys_file().await;
    let (old_r, new_r) = (
        receipt::verify(&old, &keys).expect("old receipt still verifies"),
        receipt::verify(&new, &keys).expect("new receipt verifies"),
    );
    assert_ne!(old_r.key_id, new_r.key_id, "the new key signs");
    assert_eq!(
        keys.keys()
            .iter()
            .filter(|k| k.key_use == KeyUse::Receipt)
            .count(),
        2
    );

    // A receipt the retired key signed after its not_after is refused, though genuine.
    let late = TestGateway::start_with(Options {
        demo_dir: Some(first.dir.path().to_owned()),
        clock: Some(Arc::new(ManualClock::at_unix(
            (t0 + Duration::days(1)).unix_timestamp(),
        ))),
        ..Options::default()
    })
    .await;
    let stale = encoded(&checked(&late, "bank", &s.body).await);
    assert_eq!(
        receipt::verify(&stale, &keys).map(|r| r.id),
        Err(ReceiptError::KeyNotValid(old_r.key_id))
    );
}

#[tokio::test]
async fn offline_verification_and_the_printable_document() {
    const PAGE: &str = "https://verify.example.gov/verify/";
    let gw = TestGateway::start_with(Options {
        edit_config: vec![config_edit::set("receipts.verify_url", PAGE)],
        ..Options::default()
    })
    .await;
    let (keys, ring) = gw.keys_file().await;
    assert_eq!(
        ring.verify_url.as_deref(),
        Some(PAGE),
        "published with the keys"
    );
    let authority = ring
        .authority
        .clone()
        .expect("the demo names its authority");
    let keys = keys.to_str().expect("utf8").to_owned();
    let s = gw.sample("linked_pair");
    let mut asked = s.body.clone();
    asked["holder_name"] = json!("陳大文 CHAN Tai Man");
    let answer = checked(&gw, "bank", &asked).await;
    let text = encoded(&answer);
    assert!(text.starts_with("PGR3:"), "{text}");
    let link = receipt::verify_link(PAGE, &text);
    assert_eq!(answer["receipt"]["url"].as_str(), Some(link.as_str()));
    let (tp, rp) = (
        s.body["travel_permit"].as_str().expect("tp"),
        s.body["residence_permit"].as_str().expect("rp"),
    );
    let other_rp = gw.sample("valid_but_not_linked").body["residence_permit"]
        .as_str()
        .expect("rp")
        .to_owned();

    let verify = |receipt: &str, numbers: Option<(&str, &str)>| {
        let mut args = vec!["receipt", "verify", "--keys", &keys, receipt];
        if let Some((tp, rp)) = numbers {
            args.extend(["--travel-permit", tp, "--residence-permit", rp]);
        }
        let out = permitgate(&args);
        let json = serde_json::from_slice::<Value>(&out.stdout).unwrap_or(Value::Null);
        (
            out.status.code(),
            json,
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, v, err) = verify(&text, None);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(
        (
            v["status"].as_str(),
            v["result"].as_str(),
            v["numbers"].as_str(),
            v["format"].as_u64(),
            v["holder_name"].as_str(),
            v["partner_name_zh"].as_str(),
            v["partner_name_en"].as_str(),
        ),
        (
            Some("genuine"),
            Some("linked"),
            Some("not_checked"),
            Some(3),
            Some("陳大文 CHAN Tai Man"),
            Some("演示银行（非真实机构）"),
            Some("Demo Bank (not a real bank)"),
        )
    );
    let (code, v, err) = verify(&text, Some((tp, rp)));
    assert_eq!(
        (code, v["numbers"].as_str()),
        (Some(0), Some("match")),
        "{err}"
    );
    let (code, v, err) = verify(&text, Some((tp, &other_rp)));
    assert_eq!((code, v["numbers"].as_str()), (Some(1), Some("mismatch")));
    assert!(err.contains("not about these two documents"), "{err}");
    assert!(!err.contains(tp) && !err.contains(&other_rp), "{err}");

    // One changed character anywhere after the prefix: refused.
    let alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:";
    for at in [5, text.len() / 3, text.len() / 2, text.len() - 1] {
        let c = text.as_bytes()[at] as char;
        let swap = alphabet.chars().find(|x| *x != c).expect("other");
        let mut altered = text.clone();
        altered.replace_range(at..at + 1, &swap.to_string());
        let (code, v, err) = verify(&altered, None);
        assert_eq!(code, Some(1), "altered at {at}");
        assert!(err.starts_with("error: receipt"), "{err}");
        let status = v["status"].as_str().unwrap_or_default();
        assert!(
            ["malformed", "unknown_key", "bad_signature"].contains(&status),
            "altered at {at}: {v}"
        );
    }

    // Printable forms, in Chinese and English: the PNG's QR code is the receipt; the PDF
    // embeds its font (a subset) and its text reads back, numbers masked.
    if printing_unavailable() {
        return;
    }
    let png = gw.dir.path().join("receipt.png");
    let pdf = gw.dir.path().join("receipt.pdf");
    for out_path in [&png, &pdf] {
        let out = permitgate(&[
            "receipt",
            "render",
            &text,
            "--out",
            out_path.to_str().expect("utf8"),
            "--keys",
            &keys,
            "--travel-permit",
            tp,
            "--residence-permit",
            rp,
        ]);
        assert_success(&out);
    }
    // Both QR codes open the verifier page with the receipt (the PDF's read from poppler's
    // rendering of the page), and what they carry verifies.
    let rendered = gw.dir.path().join("pdf-page");
    let out = std::process::Command::new("pdftoppm")
        .args(["-png", "-gray", "-r", "300", "-singlefile"])
        .arg(&pdf)
        .arg(&rendered)
        .output()
        .expect("pdftoppm");
    assert_success(&out);
    for image in [png.clone(), rendered.with_extension("png")] {
        let scanned = decode_qr_png(&std::fs::read(&image).expect("png"));
        assert_eq!(scanned, link, "{}", image.display());
        let fragment = scanned.split_once('#').expect("fragment").1;
        let receipt_text = fragment.replace("%20", " ").replace("%25", "%");
        assert!(receipt::verify(&receipt_text, &ring).is_ok());
    }
    let bytes = std::fs::read(&pdf).expect("pdf");
    assert!(bytes.starts_with(b"%PDF-"));
    assert!(bytes.windows(5).any(|w| w == b"%%EOF"));
    let poppler = |tool: &str| {
        let out = std::process::Command::new(tool)
            .arg(&pdf)
            .args(if tool == "pdftotext" {
                vec!["-"]
            } else {
                vec![]
            })
            .output()
            .expect("poppler-utils");
        assert!(out.status.success(), "{tool}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let words = poppler("pdftotext");
    // When it was checked, in Beijing time as people write it: not UTC's date.
    let (when_zh, when_en) =
        permitgate::day::for_people(receipt::read(&text).expect("the receipt reads").checked_at);
    for want in [
        when_zh.as_str(),
        when_en.as_str(),
        "港澳台居民通行证与居住证关联核验结果",
        // A Hong Kong resident's documents, by their names.
        "港澳居民来往内地通行证、港澳台居民居住证",
        "Mainland Travel Permit for Hong Kong and Macao Residents",
        "关联一致",
        "有效",
        "扫码核验",
        "Verification of travel permit and residence permit link",
        &authority.zh,
        &authority.en,
        "陳大文 CHAN Tai Man",
        // The statuses are those of the time of the check.
        "以上为核验当时的证件状态",
        // Who asked, by the names the partner registry gives it: not only "bank".
        "演示银行（非真实机构） Demo Bank (not a real bank) (bank)",
        PAGE,
    ] {
        assert!(words.contains(want), "{want:?} not in:\n{words}");
    }
    assert!(
        words.contains(&TravelPermitNo::parse(tp).expect("tp").masked()),
        "{words}"
    );
    assert!(
        !words.contains(tp) && !words.contains(rp),
        "numbers masked only: {words}"
    );
    assert!(
        !words.contains("permitgate") && !words.contains("--keys"),
        "no command-line instructions on paper: {words}"
    );
    let fonts = poppler("pdffonts");
    let font = fonts.lines().nth(2).unwrap_or_default();
    assert!(font.contains("CID TrueType"), "{fonts}");
    let flags: Vec<&str> = font.split_whitespace().collect();
    assert!(
        flags.windows(3).any(|w| w == ["yes", "yes", "yes"]),
        "embedded, subset, with a Unicode map: {fonts}"
    );

    assert!(!words.contains("台湾居民"), "{words}");

    // A Taiwan resident's pair: the paper names a Taiwan resident's travel permit.
    let taiwan = gw.sample("linked_pair_taiwan").clone();
    let mut asked = taiwan.body.clone();
    asked["receipt"] = json!(true);
    let tw_text = encoded(&checked(&gw, "bank", &asked).await);
    let tw_pdf = gw.dir.path().join("receipt-taiwan.pdf");
    assert_success(&permitgate(&[
        "receipt",
        "render",
        &tw_text,
        "--out",
        tw_pdf.to_str().expect("utf8"),
        "--keys",
        &keys,
    ]));
    let out = std::process::Command::new("pdftotext")
        .arg(&tw_pdf)
        .arg("-")
        .output()
        .expect("pdftotext");
    let tw_words = String::from_utf8_lossy(&out.stdout);
    assert!(
        tw_words.contains("台湾居民来往大陆通行证、港澳台居民居住证")
            && tw_words.contains("Mainland Travel Permit for Taiwan Residents"),
        "{tw_words}"
    );
    assert!(
        !tw_words.contains("港澳居民来往内地通行证") && !tw_words.contains("往来内地"),
        "{tw_words}"
    );
    // Printed without the numbers: said plainly why there are none, not "(未显示)".
    assert!(
        tw_words.contains("凭证不含证件号码") && !tw_words.contains("未显示"),
        "{tw_words}"
    );

    let out = permitgate(&["receipt", "render", &text, "--out", "receipt.txt"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains(".pdf or .png"));
    let out = permitgate(&[
        "receipt",
        "render",
        &text,
        "--out",
        png.to_str().expect("utf8"),
        "--travel-permit",
        tp,
        "--residence-permit",
        &other_rp,
    ]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "a receipt is not printed for other numbers"
    );
}

/// `POST /v1/receipts/verify`: a bank shown a receipt learns whether it is genuine, whether
/// it is about the documents in front of it, and what a link check says today.
#[tokio::test]
async fn a_partner_verifies_a_receipt_online_and_learns_what_holds_now() {
    let gw = TestGateway::start().await;
    let s = gw.sample("linked_pair").clone();
    let text = encoded(&checked(&gw, "bank", &s.body).await);
    let (tp, rp) = (
        s.body["travel_permit"].as_str().expect("tp").to_owned(),
        s.body["residence_permit"].as_str().expect("rp").to_owned(),
    );
    let ask = |body: Value| {
        let gw = &gw;
        async move {
            gw.client("bank")
                .await
                .post_json("/v1/receipts/verify", &body)
                .await
        }
    };
    // Genuine and about these numbers: what it said, and a link check now.
    let r = ask(json!({"receipt": text, "travel_permit": tp, "residence_permit": rp})).await;
    r.assert_ok("genuine");
    let v = r.json();
    assert_eq!(
        (v["status"].as_str(), v["numbers"].as_str()),
        (Some("genuine"), Some("match")),
        "{v}"
    );
    assert_eq!(v["receipt"]["result"], "linked");
    assert_eq!(v["now"]["result"], "linked");
    assert_eq!(v["now"]["travel_permit"]["status"], "valid");
    // Without numbers: genuine, nothing checked now.
    let v = ask(json!({"receipt": text})).await.json();
    assert_eq!(
        (v["numbers"].as_str(), v["now"].clone()),
        (Some("not_checked"), Value::Null)
    );
    // Other documents: genuine but not about them, and nothing said of them.
    let other = gw.sample("valid_but_not_linked").body["residence_permit"].clone();
    let v = ask(json!({"receipt": text, "travel_permit": tp, "residence_permit": other}))
        .await
        .json();
    assert_eq!(
        (v["status"].as_str(), v["numbers"].as_str()),
        (Some("genuine"), Some("mismatch")),
        "{v}"
    );
    assert_eq!(v["now"], Value::Null);
    // One character changed: not genuine, and the receipt's claims are not shown.
    let mut tampered = text.clone();
    let at = tampered.len() - 3;
    let swap = if &tampered[at..at + 1] == "A" {
        "B"
    } else {
        "A"
    };
    tampered.replace_range(at..at + 1, swap);
    let v = ask(json!({"receipt": tampered, "travel_permit": tp, "residence_permit": rp}))
        .await
        .json();
    assert_ne!(v["status"], "genuine", "{v}");
    assert_eq!(
        (v["receipt"].clone(), v["now"].clone()),
        (Value::Null, Value::Null)
    );
    let v = ask(json!({"receipt": "not a receipt"})).await.json();
    assert_eq!(v["status"], "malformed");
    // Changed since: the travel permit is reported lost; the same receipt, today.
    gw.publish_changes(
        &json!({"op": "status", "number": tp, "status": "lost"}).to_string(),
        32,
    );
    gw.gateway.load_snapshot().expect("reload");
    let v = ask(json!({"receipt": text, "travel_permit": tp, "residence_permit": rp}))
        .await
        .json();
    assert_eq!(
        v["receipt"]["travel_permit"], "valid",
        "what it said then: {v}"
    );
    assert_eq!(
        v["now"]["travel_permit"]["status"], "lost",
        "what holds now: {v}"
    );
    // The numbers go together; a partner without the scope is refused.
    let r = ask(json!({"receipt": text, "travel_permit": tp})).await;
    assert_eq!(r.problem(400, "missing-field")["field"], "residence_permit");
    gw.client("rail-gate")
        .await
        .post_json("/v1/receipts/verify", &json!({"receipt": text}))
        .await
        .problem(403, "scope-missing");
}

/// A holder name goes only with a receipt, and keeps to the name rule; the problem names
/// the field and the rule and never repeats the name.
#[tokio::test]
async fn a_holder_name_needs_a_receipt_and_a_sane_length() {
    let gw = TestGateway::start().await;
    let mut client = gw.client("bank").await;
    let s = gw.sample("linked_pair");
    let long = "陳".repeat(34);
    for (receipt, name, rule) in [
        (false, "陳大文", "requires_receipt"),
        (true, long.as_str(), "length"),
        (true, "  ", "empty"),
        (true, "陳\u{7}大文", "characters"),
        (true, "陳大文\u{feff}", "characters"),
        (true, "\u{202e}文大陳", "characters"),
        (true, "陳\u{200b}大文", "characters"),
        (true, "\u{2714} 关联一致 陳大文", "characters"),
    ] {
        let mut body = s.body.clone();
        body["receipt"] = json!(receipt);
        body["holder_name"] = json!(name);
        let r = client.post_json("/v1/link-checks", &body).await;
        let p = r.problem(400, "invalid-field");
        assert_eq!(
            (p["field"].as_str(), p["rule"].as_str()),
            (Some("holder_name"), Some(rule)),
            "{p}"
        );
        assert!(!String::from_utf8_lossy(&r.body).contains("陳"), "{p}");
        let batch = json!({ "checks": [body] });
        let r = client.post_json("/v1/link-checks:batch", &batch).await;
        assert_eq!(r.status, 200);
        assert_eq!(
            r.json()["results"][0]["error"]["field"].as_str(),
            Some("checks[0].holder_name")
        );
    }
    let mut body = with_receipt(&s.body);
    body["holder_name"] = json!(" 陳大文 ");
    let r = client.post_json("/v1/link-checks", &body).await;
    let text = encoded(&r.json());
    let (_, ring) = gw.keys_file().await;
    let got = receipt::verify(&text, &ring).expect("genuine");
    assert_eq!(
        got.holder_name.as_deref(),
        Some("陳大文"),
        "trimmed and signed"
    );
}

/// Keys rotated while serving: a new receipt key and a new temporary-permit issuing key
/// named in the running config are put in use by the reload and published at
/// `GET /v1/keys`, while two clients ask for receipts throughout. No request fails, and
/// every receipt, signed before or after, verifies against the keys published after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_rotate_while_serving_under_load() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let gw = Arc::new(TestGateway::with_server("reload_poll_interval_ms = 100").await);
    let body = with_receipt(&gw.sample("linked_pair").body);
    let stop = Arc::new(AtomicBool::new(false));
    let signed_by_new = Arc::new(AtomicUsize::new(0));
    let new_receipt_pub = gw.dir.path().join("keys/receipt-2.pub");
    let mut load = Vec::new();
    for _ in 0..2 {
        let (gw, body, stop) = (gw.clone(), body.clone(), stop.clone());
        load.push(tokio::spawn(async move {
            let mut client = gw.client("bank").await;
            let mut answers = Vec::new();
            // Bounded: stops when told, or after 20,000 requests at most.
            for _ in 0..20_000 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let r = client.post_json("/v1/link-checks", &body).await;
                answers.push((r.status, r.body));
            }
            answers
        }));
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;

    let new_receipt = gw.dir.path().join("keys/receipt-2");
    let new_issuer = gw.dir.path().join("keys/temp-permit-2");
    for key in [&new_receipt, &new_issuer] {
        assert_success(&permitgate(&[
            "keys",
            "ed25519",
            "--out",
            key.to_str().expect("utf8"),
        ]));
    }
    let since = permitgate::day::rfc3339(OffsetDateTime::now_utc() - Duration::minutes(1));
    crate::common::config_edit::edit_file(
        &gw.config_path,
        vec![
            config_edit::set(
                "receipts.signing_keys",
                config_edit::value(&format!(
                    "[{{ path = \"keys/receipt.key\" }}, {{ path = \"keys/receipt-2.key\", not_before = \"{since}\" }}]"
                )),
            ),
            config_edit::set(
                "temp_permits.issuer_keys",
                config_edit::value(
                    "[{ path = \"keys/temp-permit.pub\" }, { path = \"keys/temp-permit-2.pub\" }]",
                ),
            ),
        ],
    );
    gw.wait_metric("permitgate_reloads_total{result=\"ok\"}", 1.0)
        .await;
    let new_id = permitgate::key_files::verifying_key_id(
        &permitgate::key_files::load_verifying_key(&new_receipt_pub).expect("new key"),
    );
    // Load on until receipts signed by the new key have come back (bounded by the load).
    let (_, keys) = gw.keys_file().await;
    for _ in 0..200 {
        let a = checked(&gw, "bank", &gw.sample("linked_pair").body).await;
        if receipt::verify(&encoded(&a), &keys).map(|r| r.key_id) == Ok(new_id) {
            signed_by_new.fetch_add(1, Ordering::Relaxed);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);

    let (_, keys) = gw.keys_file().await;
    let published: Vec<_> = keys.keys().iter().map(|k| (k.key_use, k.id)).collect();
    assert!(
        published.contains(&(KeyUse::Receipt, new_id)),
        "{published:?}"
    );
    assert_eq!(
        keys.keys()
            .iter()
            .filter(|k| k.key_use == KeyUse::TempPermit)
            .count(),
        2,
        "the new issuing key is published"
    );
    let mut by_key = std::collections::HashMap::<String, usize>::new();
    for task in load {
        for (status, body) in task.await.expect("load") {
            assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
            let a: Value = serde_json::from_slice(&body).expect("json");
            let r = receipt::verify(&encoded(&a), &keys).expect("every receipt verifies");
            *by_key.entry(r.key_id.to_string()).or_default() += 1;
        }
    }
    assert!(signed_by_new.load(Ordering::Relaxed) > 0, "{by_key:?}");
    assert_eq!(by_key.len(), 2, "signed before and after: {by_key:?}");

    // A temporary permit issued with the new key verifies at the gate.
    let lost = gw.sample("travel_permit_lost_status").body["number"]
        .as_str()
        .expect("number")
        .to_owned();
    let (token, _) = permitgate::temp_permit::issue(
        &TravelPermitNo::parse(&lost).expect("number"),
        "CHAN Tai Man",
        permitgate::temp_permit::Reason::Lost,
        OffsetDateTime::now_utc(),
        &permitgate::key_files::load_signing_key(&gw.dir.path().join("keys/temp-permit-2.key"))
            .expect("key"),
    )
    .expect("issue");
    let r = gw
        .client("rail-gate")
        .await
        .post_json("/v1/temporary-permits/verify", &json!({ "token": token }))
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.json()["status"],
        "valid",
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    let m = gw.metrics().await;
    assert_eq!(
        crate::common::metric_value(&m, "permitgate_config_restart_needed"),
        0.0,
        "keys need no restart"
    );
}
