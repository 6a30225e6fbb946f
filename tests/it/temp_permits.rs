//! 7-day temporary electronic permits, end to end: issued by the authority's key, verified
//! by gates over mTLS (every status), revoked through a published delta, verified offline
//! with the published keys, and carried in a QR code.

use std::sync::Arc;

use crate::common::{
    assert_success, config_edit, decode_qr_png, metric_value, permitgate, printing_unavailable,
    Options, TestGateway,
};
use ed25519_dalek::SigningKey;
use serde_json::{json, Value};
use time::{Duration, OffsetDateTime};

use permitgate::clock::ManualClock;
use permitgate::document::TravelPermitNo;
use permitgate::key_files::load_signing_key;
use permitgate::temp_permit::{self, Reason, VALIDITY};

const VERIFY: &str = "/v1/temporary-permits/verify";

/// Now, as the gateway's clock sees it, at whole seconds.
fn t0() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(OffsetDateTime::now_utc().unix_timestamp()).expect("now")
}

async fn gateway_at(
    t: OffsetDateTime,
    edit: Vec<config_edit::Edit>,
) -> (TestGateway, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::at_unix(t.unix_timestamp()));
    let gw = TestGateway::start_with(Options {
        clock: Some(clock.clone()),
        edit_config: edit,
        ..Options::default()
    })
    .await;
    (gw, clock)
}

fn lost_travel_permit(gw: &TestGateway) -> TravelPermitNo {
    let n = gw.sample("travel_permit_lost_status").body["number"]
        .as_str()
        .expect("number");
    TravelPermitNo::parse(n).expect("valid")
}

fn issue_with(
    key: &SigningKey,
    tp: &TravelPermitNo,
    at: OffsetDateTime,
) -> (String, temp_permit::TempPermit) {
    temp_permit::issue(tp, "CHAN Tai Man 陳大文", Reason::Lost, at, key).expect("issue")
}

/// The document status of the demo's lost travel permit, as a gate sees it.
async fn lost_status(gw: &TestGateway) -> Value {
    let s = gw.sample("travel_permit_lost_status");
    gw.client("rail-gate")
        .await
        .post_json(&s.path, &s.body)
        .await
        .json()["status"]
        .clone()
}

/// `permitgate temp-permit issue` from desk-01 of the gateway's origin (reason lost), with
/// `extra` arguments.
fn cli_issue(
    gw: &TestGateway,
    tp: &TravelPermitNo,
    name: &str,
    extra: &[&str],
) -> std::process::Output {
    let config = gw.config_path.to_str().expect("utf8");
    let mut args = vec![
        "temp-permit",
        "issue",
        "--config",
        config,
        "--caller",
        "desk-01",
        "--officer",
        "E1024",
        "--travel-permit",
        tp.canonical(),
        "--name",
        name,
        "--reason",
        "lost",
    ];
    args.extend_from_slice(extra);
    permitgate(&args)
}

async fn verify(gw: &TestGateway, token: &str) -> Value {
    let r = gw
        .client("rail-gate")
        .await
        .post_json(VERIFY, &json!({ "token": token }))
        .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    r.json()
}

#[tokio::test]
async fn gates_get_every_status_online() {
    let now = t0();
    let (gw, _) = gateway_at(now, Vec::new()).await;
    let key = load_signing_key(&gw.demo.temp_permit_key()).expect("issuer key");
    let tp = lost_travel_permit(&gw);

    let (valid, permit) = issue_with(&key, &tp, now - Duration::days(1));
    let v = verify(&gw, &valid).await;
    assert_eq!(v["status"], "valid", "{v}");
    assert_eq!(v["permit_id"], permit.permit_id.to_string());
    assert_eq!(v["holder"]["name"], "CHAN Tai Man 陳大文");
    assert_eq!(v["holder"]["travel_permit"], tp.masked());
    assert_eq!(v["holder"]["region"], "hong_kong");
    assert_eq!(v["reason"], "lost");
    assert_eq!(
        v["valid_from"],
        permitgate::day::rfc3339(now - Duration::days(1))
    );
    assert_eq!(
        v["valid_until"],
        permitgate::day::rfc3339(now + Duration::days(6))
    );
    assert_eq!(v["snapshot"]["version"], 1);
    assert!(
        !String::from_utf8_lossy(&serde_json::to_vec(&v).expect("json")).contains(tp.canonical())
    );

    let (old, _) = issue_with(&key, &tp, now - Duration::days(8));
    assert_eq!(verify(&gw, &old).await["status"], "expired");
    let (early, _) = issue_with(&key, &tp, now + Duration::hours(1));
    assert_eq!(verify(&gw, &early).await["status"], "not_yet_valid");

    let stranger = SigningKey::from_bytes(&[3; 32]);
    let (foreign, _) = issue_with(&stranger, &tp, now);
    let v = verify(&gw, &foreign).await;
    assert_eq!(v["status"], "unknown_key");
    assert_eq!(v["holder"], Value::Null, "unverified content is not shown");

    // A changed letter of the name: same shape, signature no longer matches.
    let raw = base45::decode(&valid[5..]).expect("base45");
    let mut forged = raw.clone();
    let name_at = raw.len() - 64 - 3;
    forged[name_at] ^= 0x01;
    let forged = format!("PGT1:{}", base45::encode(&forged));
    assert_eq!(verify(&gw, &forged).await["status"], "bad_signature");

    for bad in [
        &valid[..valid.len() - 3],
        &valid[..20],
        "PGT1:",
        "hello",
        "",
    ] {
        assert_eq!(verify(&gw, bad).await["status"], "malformed", "{bad:.12}");
    }

    let m = gw
        .wait_metric(
            "permitgate_temp_permit_verifications_total{status=\"malformed\"}",
            5.0,
        )
        .await;
    for (status, n) in [
        ("valid", 1.0),
        ("expired", 1.0),
        ("not_yet_valid", 1.0),
        ("unknown_key", 1.0),
        ("bad_signature", 1.0),
        ("revoked", 0.0),
    ] {
        let series = format!("permitgate_temp_permit_verifications_total{{status=\"{status}\"}}");
        assert_eq!(metric_value(&m, &series), n, "{series}");
    }
}

#[tokio::test]
async fn the_window_is_exactly_seven_days_with_the_configured_skew() {
    let issued = t0() - Duration::days(10);
    let (gw, clock) = gateway_at(
        issued,
        vec![config_edit::set("temp_permits.clock_skew_seconds", 60)],
    )
    .await;
    let key = load_signing_key(&gw.demo.temp_permit_key()).expect("issuer key");
    let (token, _) = issue_with(&key, &lost_travel_permit(&gw), issued);
    let skew = Duration::seconds(60);
    let end = issued + VALIDITY;
    for (at, want) in [
        (issued - skew - Duration::seconds(1), "not_yet_valid"),
        (issued - skew, "valid"),
        (end, "valid"),
        (end + skew - Duration::seconds(1), "valid"),
        (end + skew, "expired"),
    ] {
        clock.set_unix(at.unix_timestamp());
        assert_eq!(verify(&gw, &token).await["status"], want, "at {at}");
    }
}

#[tokio::test]
async fn a_lost_travel_permit_stays_lost_while_its_temporary_permit_is_valid() {
    let gw = TestGateway::start().await;
    let s = gw.sample("temp_permit_valid");
    assert_eq!(
        verify(&gw, s.body["token"].as_str().expect("token")).await["status"],
        "valid"
    );
    assert_eq!(lost_status(&gw).await, "lost");
}

#[tokio::test]
async fn partners_without_the_scope_and_bad_bodies_are_refused() {
    let gw = TestGateway::start().await;
    let token = gw.sample("temp_permit_valid").body["token"].clone();
    for partner in ["bank", "no-scopes"] {
        let r = gw
            .client(partner)
            .await
            .post_json(VERIFY, &json!({ "token": token }))
            .await;
        r.problem(403, "scope-missing");
    }
    let mut c = gw.client("rail-gate").await;
    let p = c
        .post_json(VERIFY, &json!({ "token": token, "extra": 1 }))
        .await
        .problem(400, "unknown-field");
    assert_eq!(p["field"], "extra");
    let p = c
        .post_json(VERIFY, &json!({}))
        .await
        .problem(400, "missing-field");
    assert_eq!(p["field"], "token");
    c.post_json(VERIFY, &json!({ "token": 5 }))
        .await
        .problem(400, "invalid-field");
    c.get(VERIFY).await.problem(405, "method-not-allowed");
}

#[tokio::test]
async fn a_rotated_issuing_key_keeps_earlier_permits_valid() {
    let dir = tempfile::tempdir().expect("tempdir");
    let new_key = SigningKey::from_bytes(&[0x5A; 32]);
    let new_pub = dir.path().join("temp-permit-2.pub");
    permitgate::key_files::save_verifying_key(&new_key.verifying_key(), &new_pub).expect("save");
    let (gw, _) = gateway_at(
        t0(),
        vec![config_edit::set(
            "temp_permits.issuer_keys",
            config_edit::value(&format!(
                "[{{ path = \"keys/temp-permit.pub\" }}, {{ path = \"{}\" }}]",
                new_pub.display()
            )),
        )],
    )
    .await;
    let old_key = load_signing_key(&gw.demo.temp_permit_key()).expect("issuer key");
    let tp = lost_travel_permit(&gw);
    for key in [&old_key, &new_key] {
        let (token, _) = issue_with(key, &tp, t0());
        assert_eq!(verify(&gw, &token).await["status"], "valid");
    }
    let (_, ring) = gw.keys_file().await;
    let uses: Vec<_> = ring.keys().iter().map(|k| k.key_use.as_str()).collect();
    assert_eq!(
        uses.iter().filter(|u| **u == "temp_permit").count(),
        2,
        "{uses:?}"
    );
}

#[tokio::test]
async fn an_office_issues_with_the_cli_and_gates_verify_offline_and_from_the_qr_code() {
    let gw = TestGateway::start().await;
    let (keys, _) = gw.keys_file().await;
    let qr = gw.dir.path().join("permit.png");
    let tp = lost_travel_permit(&gw);
    let config = gw.config_path.to_str().expect("utf8").to_owned();
    let qr_arg = qr.to_str().expect("utf8");
    let issue = |key: &str| {
        cli_issue(
            &gw,
            &tp,
            "LEE Siu Ming",
            &["--idempotency-key", key, "--qr", qr_arg],
        )
    };
    let out = issue("desk-01-cli-1");
    assert_success(&out);
    let token = String::from_utf8(out.stdout)
        .expect("utf8")
        .trim()
        .to_owned();
    assert!(token.starts_with("PGT1:"), "{token}");
    let said = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        said.contains("Beijing time")
            && said.contains("published as version")
            && said.contains("已签发")
            && said.contains("北京时间"),
        "for the officer, in Chinese and in English: {said}"
    );
    assert!(!said.contains(tp.canonical()), "{said}");
    // Run again after a failure, with the same key: the same permit, not a second one.
    let again = issue("desk-01-cli-1");
    assert_success(&again);
    assert_eq!(String::from_utf8_lossy(&again.stdout).trim(), token);
    assert!(String::from_utf8_lossy(&again.stderr).contains("was issued before"));

    // The QR code carries exactly the token.
    let scanned = decode_qr_png(&std::fs::read(&qr).expect("png"));
    assert_eq!(scanned, token);

    // Offline: valid now, expired in eight days, and a foreign keys file knows no key.
    let verify_at = |at: Option<&str>| {
        let mut args = vec![
            "temp-permit",
            "verify",
            "--keys",
            keys.to_str().expect("utf8"),
        ];
        if let Some(at) = at {
            args.extend(["--at", at]);
        }
        args.push(&scanned);
        permitgate(&args)
    };
    let out = verify_at(None);
    assert_success(&out);
    // `temp-permit verify … | head`: no panic when the reader goes away.
    crate::common::permitgate_into_a_closed_pipe(&[
        "temp-permit",
        "verify",
        "--keys",
        keys.to_str().expect("utf8"),
        &scanned,
    ]);
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(
        (v["status"].as_str(), v["reason"].as_str()),
        (Some("valid"), Some("lost"))
    );
    let later = permitgate::day::rfc3339(OffsetDateTime::now_utc() + Duration::days(8));
    let out = verify_at(Some(&later));
    assert_eq!(out.status.code(), Some(1));
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["status"], "expired");
    assert!(String::from_utf8_lossy(&out.stderr).contains("temporary permit is expired"));

    // Revoked from the CLI: published at once; an id never issued is refused.
    let id = v["permit_id"].as_str().expect("id").to_owned();
    let revoke = |id: &str| {
        permitgate(&[
            "temp-permit",
            "revoke",
            "--config",
            &config,
            "--caller",
            "desk-01",
            "--officer",
            "E2048",
            "--id",
            id,
        ])
    };
    assert_success(&revoke(&id));
    let out = revoke("0123456789abcdef");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        err.contains("没有此编号的临时通行证") && err.contains("no temporary permit has this id"),
        "for the officer, in Chinese and in English: {err}"
    );
    // The reason in Chinese, as the paper prints it; the refusal in both languages.
    let out = permitgate(&[
        "temp-permit",
        "issue",
        "--config",
        &config,
        "--caller",
        "desk-01",
        "--officer",
        "E1024",
        "--travel-permit",
        tp.canonical(),
        "--name",
        "LEE Siu Ming",
        "--reason",
        "损毁",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        err.contains("未签发临时通行证：原因“损毁”需要通行证记录为损毁，实为挂失")
            && err.contains("no temporary permit issued: reason damaged needs"),
        "{err}"
    );
    gw.gateway.load_snapshot().expect("reload");
    assert_eq!(verify(&gw, &token).await["status"], "revoked");
    // Offline without the revocation list a verifier cannot know it...
    assert!(verify_at(None).status.success());
    // ...with the list the origin wrote beside the repository, it refuses the permit, and
    // says how old the list is; a list older than accepted is refused with the reason.
    let list = gw.demo.repo().join("temp-permit-revocations.bin");
    let with_list = |extra: &[&str]| {
        let mut args = vec![
            "temp-permit",
            "verify",
            "--keys",
            keys.to_str().expect("utf8"),
            "--revocations",
            list.to_str().expect("utf8"),
        ];
        args.extend_from_slice(extra);
        args.push(&scanned);
        permitgate(&args)
    };
    let out = with_list(&[]);
    assert_eq!(out.status.code(), Some(1));
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["status"], "revoked");
    assert!(String::from_utf8_lossy(&out.stderr).contains("revocation list issued"));
    let two_days = permitgate::day::rfc3339(OffsetDateTime::now_utc() + Duration::days(2));
    let out = with_list(&["--at", &two_days]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("too old"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stdout.is_empty(), "no verdict on a stale list");

    // A caller without the scope, or not configured, cannot issue from the CLI either.
    for (caller, want) in [
        ("auditor", "lacks the scope temp_permit_issue"),
        ("nobody", "not one of"),
    ] {
        let out = permitgate(&[
            "temp-permit",
            "issue",
            "--config",
            &config,
            "--caller",
            caller,
            "--officer",
            "E1",
            "--travel-permit",
            tp.canonical(),
            "--name",
            "A",
            "--reason",
            "lost",
        ]);
        assert_eq!(out.status.code(), Some(1));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(want),
            "{caller}"
        );
    }
}

#[test]
fn cli_mistakes_are_one_line_and_name_the_argument() {
    // A valid issue command with one argument replaced (or added).
    let issue = |arg: &'static str, value: &'static str| {
        let mut args = vec![
            "temp-permit",
            "issue",
            "--config",
            "/nonexistent/gateway.toml",
            "--caller",
            "desk-01",
            "--officer",
            "E1",
            "--travel-permit",
            "H12345678",
            "--name",
            "A",
            "--reason",
            "lost",
        ];
        match args.iter().position(|a| *a == arg) {
            Some(i) => args[i + 1] = value,
            None => args.extend([arg, value]),
        }
        args
    };
    for (args, code, want) in [
        (
            issue("--travel-permit", "H1234"),
            1,
            "--travel-permit breaks rule length",
        ),
        (issue("--name", " "), 1, "--name"),
        (issue("--reason", "stolen"), 2, "lost, damaged or forgotten"),
        (issue("--issued-at", "today"), 2, "RFC 3339"),
        (
            vec![
                "temp-permit",
                "revoke",
                "--config",
                "/nonexistent/gateway.toml",
                "--caller",
                "desk-01",
                "--officer",
                "E1",
                "--id",
                "zz",
            ],
            1,
            "--id must be 16 hex",
        ),
    ] {
        let out = permitgate(&args);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(code), "{args:?}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
        assert!(!err.contains("H1234"), "the number is never echoed: {err}");
    }
}

#[tokio::test]
async fn the_gate_learns_what_the_permit_is_for_and_its_travel_permits_status_now() {
    let now = t0();
    let (gw, _) = gateway_at(now, Vec::new()).await;
    let key = load_signing_key(&gw.demo.temp_permit_key()).expect("issuer key");
    let (token, _) = issue_with(&key, &lost_travel_permit(&gw), now);
    let v = verify(&gw, &token).await;
    assert_eq!(v["status"], "valid", "{v}");
    assert_eq!(v["valid_for"], json!(["rail", "air"]), "{v}");
    assert_eq!(v["travel_permit_status"], "lost", "{v}");
    let v = verify(&gw, "PGT1:NOTATOKEN").await;
    assert_eq!(
        (v["valid_for"].clone(), v["travel_permit_status"].clone()),
        (Value::Null, Value::Null)
    );
}

/// The printable permit an officer hands the holder: both languages, the name, the masked
/// number, validity in Beijing time, what it is for, and the QR code a gate scans; on A6
/// or A4.
#[tokio::test]
async fn an_officer_prints_the_permit_in_both_languages_with_beijing_times() {
    if printing_unavailable() {
        return;
    }
    let gw = TestGateway::start().await;
    let (keys, ring) = gw.keys_file().await;
    let tp = lost_travel_permit(&gw);
    let a6 = gw.dir.path().join("permit.pdf");
    let a6_arg = a6.to_str().expect("utf8");
    let issue = |extra: &[&str]| {
        let mut args = vec!["--print", a6_arg, "--paper", "a6"];
        args.extend_from_slice(extra);
        cli_issue(&gw, &tp, "CHAN Tai Man 陳大文", &args)
    };
    let out = issue(&["--issued-at", "2026-12-31T16:30:00Z"]);
    // Far from now: refused by the origin's clock rule, nothing printed.
    assert_eq!(out.status.code(), Some(1));
    assert!(!a6.exists());
    let out = issue(&[]);
    assert_success(&out);
    let token = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let permit = temp_permit::verify(&token, &ring, t0(), Duration::ZERO, |_| false)
        .permit
        .expect("a genuine token");
    let (beijing_zh, beijing_en) = permitgate::day::for_people(permit.expires_at);

    let text = |pdf: &std::path::Path| {
        let out = std::process::Command::new("pdftotext")
            .args([pdf.to_str().expect("utf8"), "-"])
            .output()
            .expect("pdftotext");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let page_size = |pdf: &std::path::Path| {
        let out = std::process::Command::new("pdfinfo")
            .arg(pdf)
            .output()
            .expect("pdfinfo");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .find(|l| l.starts_with("Page size:"))
            .unwrap_or_default()
            .to_owned()
    };
    let a4 = gw.dir.path().join("permit-a4.pdf");
    let png = gw.dir.path().join("permit.png");
    for (out_path, paper) in [(&a4, "a4"), (&png, "a6")] {
        assert_success(&permitgate(&[
            "temp-permit",
            "render",
            &token,
            "--keys",
            keys.to_str().expect("utf8"),
            "--out",
            out_path.to_str().expect("utf8"),
            "--paper",
            paper,
        ]));
    }
    assert!(page_size(&a6).contains("298 x 420"), "{}", page_size(&a6));
    assert!(page_size(&a4).contains("595 x 842"), "{}", page_size(&a4));
    for pdf in [&a6, &a4] {
        let t = text(pdf);
        for want in [
            "港澳居民来往内地通行证",
            "临时电子证件 Temporary electronic permit",
            "CHAN Tai Man 陳大文",
            &tp.masked(),
            "遗失 lost",
            // Beijing time, as people write it (the date is Beijing's too).
            &beijing_zh,
            &beijing_en,
            "not for crossing the border",
            &permit.permit_id.to_string(),
        ] {
            assert!(t.contains(want), "{want:?} not on the page: {t}");
        }
        assert!(
            !t.contains(tp.canonical()),
            "the full number is printed: {t}"
        );
    }
    // With the published keys, the issuing authority is printed.
    assert!(text(&a4).contains("Demo issuing authority"));
    // The QR code carries exactly the token a gate verifies.
    assert_eq!(decode_qr_png(&std::fs::read(&png).expect("png")), token);
    // A token that does not verify is not rendered.
    // The last character changed (to another one of base45's).
    let last = if token.ends_with('A') { "B" } else { "A" };
    let forged = format!("{}{last}", &token[..token.len() - 1]);
    assert_ne!(forged, token);
    let out = permitgate(&[
        "temp-permit",
        "render",
        &forged,
        "--keys",
        keys.to_str().expect("utf8"),
        "--out",
        png.to_str().expect("utf8"),
    ]);
    assert_eq!(out.status.code(), Some(1));
}
