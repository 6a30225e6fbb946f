//! The origin: the authority's API over mTLS (its own CA and listener), the temporary-permit
//! policy decided once for every desk, retries by idempotency key, publication at once to
//! following gateways, several origin processes on one repository, kill -9 while issuing.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use time::macros::datetime;

use crate::common::process::{free_port, Running};
use crate::common::{config_edit, post_idempotent, Client, Options, TestGateway};

use permitgate::clock::{ManualClock, SystemClock};
use permitgate::config::Config;
use permitgate::document::{DocumentKind, TravelPermitNo};
use permitgate::key_files::{load_verifying_key, HashKey};
use permitgate::snapshot::load_repo;
use permitgate::temp_permit::PermitId;

const PERMITS: &str = "/v1/authority/temporary-permits";
const VERIFY: &str = "/v1/temporary-permits/verify";

fn lost_travel_permit(gw: &TestGateway) -> String {
    gw.sample("travel_permit_lost_status").body["number"]
        .as_str()
        .expect("number")
        .to_owned()
}

/// Travel permits recorded valid for years, from the demo's export: holders who may be
/// given a permit for `forgotten`.
fn valid_travel_permits(gw: &TestGateway, n: usize) -> Vec<String> {
    let text = std::fs::read_to_string(gw.demo.export()).expect("export");
    let mut out = Vec::new();
    for line in text.lines() {
        let person: Value = serde_json::from_str(line).expect("line");
        for d in person["documents"].as_array().into_iter().flatten() {
            let number = d["number"].as_str().unwrap_or_default();
            if TravelPermitNo::parse(number).is_ok()
                && d["status"] == "valid"
                && d["valid_until"].as_str().is_some_and(|u| u > "2028-01-01")
                && !out.iter().any(|o| o == number)
            {
                out.push(number.to_owned());
            }
        }
    }
    assert!(out.len() >= n, "the demo has {} such holders", out.len());
    out.truncate(n);
    out
}

fn issue_body(tp: &str, reason: &str) -> Value {
    json!({"travel_permit": tp, "name": "CHAN Tai Man", "reason": reason, "officer": "E1024"})
}

async fn verify_status(gw: &TestGateway, token: &str) -> Value {
    let r = gw
        .client("rail-gate")
        .await
        .post_json(VERIFY, &json!({ "token": token }))
        .await;
    r.assert_ok("verify");
    r.json()["status"].clone()
}

fn body_text(r: &crate::common::Response) -> String {
    String::from_utf8_lossy(&r.body).into_owned()
}

#[tokio::test]
async fn an_office_issues_looks_up_lists_and_revokes_and_a_following_gateway_refuses_at_once() {
    let mut gw = TestGateway::start_with(Options {
        replication: true,
        poll_interval_ms: 50,
        ..Options::default()
    })
    .await;
    let gateway = gw.gateway.clone();
    assert!(gw.running.start_replication(&gateway).expect("follower"));
    let origin = gw.start_origin(Arc::new(SystemClock)).await;
    let mut desk = origin.caller("desk-01").await;
    let tp = lost_travel_permit(&gw);

    let r = post_idempotent(
        &mut desk,
        PERMITS,
        Some("desk-01-a"),
        &issue_body(&tp, "lost"),
    )
    .await;
    assert_eq!(r.status, 201, "{}", body_text(&r));
    assert!(!body_text(&r).contains(&tp), "no full number in the answer");
    let first = r.json();
    let token = first["token"].as_str().expect("token").to_owned();
    assert_eq!(
        first["holder"]["travel_permit"],
        format!("{}****", &tp[..5])
    );
    assert_eq!(first["replayed"], false);

    // A desk that retries after a timeout gets the same permit, not a second one.
    let again = post_idempotent(
        &mut desk,
        PERMITS,
        Some("desk-01-a"),
        &issue_body(&tp, "lost"),
    )
    .await;
    assert_eq!(again.status, 200, "{}", body_text(&again));
    assert_eq!(again.json()["token"], first["token"]);
    assert_eq!(again.json()["replayed"], true);
    // The same key for another request is refused.
    let other = post_idempotent(
        &mut desk,
        PERMITS,
        Some("desk-01-a"),
        &issue_body(&tp, "forgotten"),
    )
    .await;
    other.problem(422, "idempotency-key-reused");

    // Two a calendar month, whichever desk asks.
    let mut app = origin.caller("resident-app").await;
    let second = post_idempotent(&mut app, PERMITS, Some("app-1"), &issue_body(&tp, "lost")).await;
    assert_eq!(second.status, 201, "{}", body_text(&second));
    let third = post_idempotent(
        &mut desk,
        PERMITS,
        Some("desk-01-b"),
        &issue_body(&tp, "lost"),
    )
    .await;
    let p = third.problem(409, "issuance-refused");
    assert_eq!(p["rule"], "monthly-limit");
    assert!(!body_text(&third).contains(&tp));

    assert_eq!(verify_status(&gw, &token).await, "valid");

    // Revoked: published at once, and the following gateway refuses it.
    let id = first["permit_id"].as_str().expect("id").to_owned();
    let revocation = format!("{PERMITS}/{id}/revocation");
    let asked = Instant::now();
    let r = desk
        .post_json(&revocation, &json!({"officer": "E2048"}))
        .await;
    r.assert_ok("revoke");
    assert_eq!(r.json()["revoked"]["by"]["officer"], "E2048");
    let mut status = Value::Null;
    for _ in 0..500 {
        status = verify_status(&gw, &token).await;
        if status == "revoked" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        status, "revoked",
        "the revocation never reached the follower"
    );
    eprintln!("revocation reached the follower in {:?}", asked.elapsed());
    let twice = desk
        .post_json(&revocation, &json!({"officer": "E2048"}))
        .await;
    twice.assert_ok("revoke again");
    assert_eq!(twice.json()["replayed"], true);
    desk.post_json(
        &format!("{PERMITS}/0123456789abcdef/revocation"),
        &json!({"officer": "E2048"}),
    )
    .await
    .problem(404, "permit-not-found");
    let p = desk
        .post_json(
            &format!("{PERMITS}/xyz/revocation"),
            &json!({"officer": "E2048"}),
        )
        .await
        .problem(422, "invalid-field");
    assert_eq!(p["field"], "id");

    // Looked up and listed, with who did what; never the full number.
    let r = desk.get(&format!("{PERMITS}/{id}")).await;
    r.assert_ok("lookup");
    let v = r.json();
    assert_eq!(v["status"], "revoked");
    assert_eq!(v["issued_by"]["officer"], "E1024");
    assert_eq!(v["issued_by"]["caller"], "desk-01");
    assert!(v["issued_by"]["office"]
        .as_str()
        .is_some_and(|o| o.contains("Demo")));
    // Listed by its day of issue (Beijing) and by office: the app's permit is another
    // office's.
    let day = v["issued_on"].as_str().expect("issued_on").to_owned();
    let ids = |listed: &Value| -> Vec<String> {
        listed["permits"]
            .as_array()
            .expect("permits")
            .iter()
            .map(|p| p["permit_id"].as_str().expect("id").to_owned())
            .collect()
    };
    let listed = desk.get(&format!("{PERMITS}?issued_on={day}")).await.json();
    assert!(ids(&listed).contains(&id), "{listed}");
    let office = v["issued_by"]["office"].as_str().expect("office");
    let by_office: String = url_encode(office);
    let listed = desk
        .get(&format!("{PERMITS}?issued_on={day}&office={by_office}"))
        .await
        .json();
    let app_permit = second.json()["permit_id"].as_str().expect("id").to_owned();
    assert_eq!(
        ids(&listed),
        [id.as_str()],
        "only desk-01's office: {listed}"
    );
    assert!(!ids(&listed).contains(&app_permit));
    let r = desk
        .post_json(&format!("{PERMITS}/search"), &json!({"travel_permit": tp}))
        .await;
    r.assert_ok("search");
    assert_eq!(r.json()["count"], 2);
    assert!(!body_text(&r).contains(&tp));

    // Every call is in the origin's audit trail, with office and officer, no number.
    let trail: String = std::fs::read_dir(gw.demo.dir.join("origin-audit"))
        .expect("origin audit")
        .filter_map(|e| std::fs::read_to_string(e.expect("entry").path()).ok())
        .collect();
    for want in [
        "\"outcome\":\"issued\"",
        "\"outcome\":\"replayed\"",
        "\"outcome\":\"revoked\"",
        "\"outcome\":\"issuance-refused\"",
        "officer E2048",
        "Demo immigration office",
    ] {
        assert!(trail.contains(want), "{want} not in the trail");
    }
    assert!(!trail.contains(&tp), "no full number in the trail");
}

fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test]
async fn bad_input_gets_a_problem_naming_the_field_and_rule_never_the_number() {
    let gw = TestGateway::start().await;
    let origin = gw.start_origin(Arc::new(SystemClock)).await;
    let mut desk = origin.caller("desk-01").await;
    let tp = lost_travel_permit(&gw);
    let hour_ago =
        permitgate::day::rfc3339(time::OffsetDateTime::now_utc() - time::Duration::hours(1));
    let cases: Vec<(Value, u16, &str, Option<&str>)> = vec![
        (
            issue_body("M00000001", "forgotten"),
            409,
            "issuance-refused",
            None,
        ),
        (
            issue_body("810000199001011230", "lost"),
            422,
            "invalid-field",
            Some("travel_permit"),
        ),
        (
            issue_body(&tp, "丢失"),
            422,
            "invalid-field",
            Some("reason"),
        ),
        (
            json!({"travel_permit": tp, "name": "CHAN Tai Man", "reason": "lost", "officer": "E1", "issued_at": hour_ago}),
            422,
            "invalid-field",
            Some("issued_at"),
        ),
        (
            json!({"travel_permit": tp, "name": "\u{202e}NAM IAT NAHC", "reason": "lost", "officer": "E1"}),
            422,
            "invalid-field",
            Some("name"),
        ),
        (
            json!({"travel_permit": tp, "name": "A", "reason": "lost", "officer": ""}),
            422,
            "invalid-field",
            Some("officer"),
        ),
        (
            json!({"travel_permit": tp, "name": "A", "reason": "lost", "officer": "E1", "extra": 1}),
            400,
            "unknown-field",
            Some("extra"),
        ),
        (
            json!({"travel_permit": 12345678, "name": "A", "reason": "lost", "officer": "E1"}),
            400,
            "invalid-field",
            None,
        ),
    ];
    for (i, (body, status, slug, field)) in cases.into_iter().enumerate() {
        let r = post_idempotent(&mut desk, PERMITS, Some(&format!("bad-{i}")), &body).await;
        let p = r.problem(status, slug);
        if let Some(f) = field {
            assert_eq!(p["field"], f, "{p}");
        }
        let text = body_text(&r);
        for number in [tp.as_str(), "M00000001", "810000199001011230", "12345678"] {
            assert!(!text.contains(number), "case {i} echoes a number: {text}");
        }
    }
    let r = post_idempotent(&mut desk, PERMITS, None, &issue_body(&tp, "lost")).await;
    let p = r.problem(400, "idempotency-key");
    assert_eq!(p["field"], "Idempotency-Key");
    desk.get(&format!("{PERMITS}/search"))
        .await
        .problem(405, "method-not-allowed");
    desk.get("/v1/link-checks").await.problem(404, "not-found");
    let p = desk
        .get(&format!("{PERMITS}?travel_permit={tp}"))
        .await
        .problem(422, "invalid-field");
    assert_eq!(p["field"], "query");
    // A caller may only do what its scopes say.
    let mut auditor = origin.caller("auditor").await;
    post_idempotent(&mut auditor, PERMITS, Some("a-1"), &issue_body(&tp, "lost"))
        .await
        .problem(403, "scope-missing");
    auditor.get(PERMITS).await.assert_ok("the auditor lists");
}

#[tokio::test]
async fn no_partner_reaches_the_authority_api_and_a_config_mixing_them_is_refused() {
    let gw = TestGateway::start().await;
    let origin = gw.start_origin(Arc::new(SystemClock)).await;
    let pki = &gw.demo.pki;
    // A partner's certificate (another CA) is refused by the origin's handshake...
    let bank = Client::connect(
        origin.addr,
        &pki.ca_cert(),
        Some((&pki.partner_cert("bank"), &pki.partner_key("bank"))),
    )
    .await;
    let answered = match bank {
        Err(_) => None,
        Ok(mut c) => c
            .try_request(http::Method::GET, PERMITS, None, bytes::Bytes::new())
            .await
            .ok(),
    };
    assert!(
        answered.is_none(),
        "a partner certificate reached the origin"
    );
    // ...and an authority caller's by the partners' listener.
    let r = gw
        .attempt(Some((
            &pki.caller_cert("desk-01"),
            &pki.caller_key("desk-01"),
        )))
        .await;
    assert!(
        r.is_err(),
        "an authority certificate reached the gateway: {r:?}"
    );

    // Configs that mix the two are refused, every mistake named at once.
    let text = std::fs::read_to_string(&gw.config_path).expect("config");
    let listen = free_port().to_string();
    let mixed = config_edit::apply(
        &text,
        vec![
            config_edit::set("origin.client_ca", "pki/ca.crt"),
            config_edit::set("server.listen", listen.clone()),
            config_edit::set("origin.listen", listen),
            config_edit::add_partner("desk-01", "scopes = []"),
            // Not a bucket: a repository elsewhere is snapshot.repo's business.
            config_edit::set("origin.bucket", "file:///srv/origin/repo"),
        ],
    );
    let e = Config::parse(&mixed, &gw.config_path)
        .expect_err("mixed")
        .to_string();
    let problems = match Config::parse(&mixed, &gw.config_path) {
        Err(permitgate::config::ConfigError::Invalid { problems, .. }) => problems,
        other => panic!("{other:?}"),
    };
    let fields: Vec<&str> = problems.iter().map(|p| p.field.as_str()).collect();
    for want in [
        "origin.client_ca",
        "origin.listen",
        "origin.callers[0].id",
        "origin.bucket",
    ] {
        assert!(fields.contains(&want), "{want} not in {fields:?} ({e})");
    }
    // The same CA under another name: refused when the origin opens.
    std::fs::copy(
        pki.ca_cert(),
        gw.demo.dir.join("pki/copy-of-partner-ca.crt"),
    )
    .expect("copy");
    let copied = config_edit::apply(
        &text,
        vec![config_edit::set(
            "origin.client_ca",
            "pki/copy-of-partner-ca.crt",
        )],
    );
    let config = Config::parse(&copied, &gw.config_path).expect("parses");
    assert!(matches!(
        permitgate::origin::server::open(&config, Arc::new(SystemClock)),
        Err(permitgate::origin::server::OriginStartError::SharedCa)
    ));
    // No partner can be given an authority scope.
    let scoped = config_edit::apply(
        &text,
        vec![config_edit::add_partner(
            "clerk",
            r#"scopes = ["temp_permit_issue"]"#,
        )],
    );
    assert!(Config::parse(&scoped, &gw.config_path).is_err());
}

#[tokio::test]
async fn the_month_is_beijings_on_both_sides_of_16_00_utc() {
    let gw = TestGateway::start().await;
    let clock = Arc::new(ManualClock::at_unix(
        datetime!(2026-12-31 15:59 UTC).unix_timestamp(),
    ));
    let origin = gw.start_origin(clock.clone()).await;
    let mut desk = origin.caller("desk-01").await;
    let tp = lost_travel_permit(&gw);
    for key in ["dec-1", "dec-2"] {
        let r = post_idempotent(&mut desk, PERMITS, Some(key), &issue_body(&tp, "lost")).await;
        assert_eq!(r.status, 201, "{}", body_text(&r));
    }
    // 23:59:30 on 31 December in Beijing: still December.
    clock.set_unix(datetime!(2026-12-31 15:59:30 UTC).unix_timestamp());
    let r = post_idempotent(&mut desk, PERMITS, Some("dec-3"), &issue_body(&tp, "lost")).await;
    let p = r.problem(409, "issuance-refused");
    assert!(
        p["detail"].as_str().is_some_and(|d| d.contains("2026-12")),
        "{p}"
    );
    // 00:00 on 1 January in Beijing (still 31 December in UTC): a new month.
    clock.set_unix(datetime!(2026-12-31 16:00 UTC).unix_timestamp());
    let r = post_idempotent(&mut desk, PERMITS, Some("jan-1"), &issue_body(&tp, "lost")).await;
    assert_eq!(r.status, 201, "{}", body_text(&r));
    let id = r.json()["permit_id"].as_str().expect("id").to_owned();
    let v = desk.get(&format!("{PERMITS}/{id}")).await.json();
    assert_eq!(v["issued_on"], "2027-01-01", "{v}");
    assert_eq!(v["valid_from"], "2026-12-31T16:00:00Z");
}

/// `permitgate origin` as a process, on a port of its own, with its own audit trail.
struct OriginProcess {
    _child: Running,
    addr: std::net::SocketAddr,
    metrics: std::net::SocketAddr,
    /// Its standard error (warnings and errors), for a failure's story.
    log: std::path::PathBuf,
}

/// Where an origin process reads its config, and listens.
struct OriginSetup {
    config: std::path::PathBuf,
    addr: std::net::SocketAddr,
    metrics: std::net::SocketAddr,
}

fn origin_config(gw: &TestGateway, name: &str) -> OriginSetup {
    origin_config_with(gw, name, Vec::new())
}

fn origin_config_with(
    gw: &TestGateway,
    name: &str,
    mut edits: Vec<config_edit::Edit>,
) -> OriginSetup {
    let (addr, metrics) = (free_port(), free_port());
    edits.extend([
        config_edit::set("origin.listen", addr.to_string()),
        config_edit::set("origin.metrics_listen", metrics.to_string()),
        config_edit::set(
            "origin.audit_dir",
            gw.dir
                .path()
                .join(format!("audit-{name}"))
                .display()
                .to_string(),
        ),
    ]);
    let text = config_edit::apply(
        &std::fs::read_to_string(&gw.config_path).expect("config"),
        edits,
    );
    let config = gw.config_path.with_file_name(format!("{name}.toml"));
    std::fs::write(&config, text).expect("write config");
    OriginSetup {
        config,
        addr,
        metrics,
    }
}

async fn start_origin_process(o: &OriginSetup) -> OriginProcess {
    let (addr, metrics) = (o.addr, o.metrics);
    let child = Running(
        std::process::Command::new(env!("CARGO_BIN_EXE_permitgate"))
            .args(["origin", "--config", &o.config.to_string_lossy()])
            .env("RUST_LOG", "warn")
            .envs(crate::s3::CREDENTIALS)
            .stdout(std::process::Stdio::null())
            // Kept beside the config, for a failure's story.
            .stderr(std::fs::File::create(o.config.with_extension("log")).expect("log file"))
            .spawn()
            .expect("start origin"),
    );
    for _ in 0..400 {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return OriginProcess {
                _child: child,
                addr,
                metrics,
                log: o.config.with_extension("log"),
            };
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let log = std::fs::read_to_string(o.config.with_extension("log")).unwrap_or_default();
    panic!("the origin never listened on {addr}:\n{log}");
}

async fn caller_at(gw: &TestGateway, addr: std::net::SocketAddr, id: &str) -> Option<Client> {
    let pki = &gw.demo.pki;
    Client::connect(
        addr,
        &pki.ca_cert(),
        Some((&pki.caller_cert(id), &pki.caller_key(id))),
    )
    .await
    .ok()
}

/// Temporary-permit records per holder (person) in the repository at `repo`.
fn permits_per_holder(gw: &TestGateway, repo: &std::path::Path) -> HashMap<u64, usize> {
    let trusted = [load_verifying_key(&gw.demo.publisher_pub()).expect("pub")];
    let hk = HashKey::load(&gw.demo.hash_key()).expect("hash key");
    let repo = load_repo(repo, &trusted, Some(&hk)).expect("repo");
    let mut per: HashMap<u64, usize> = HashMap::new();
    for r in repo.into_data().records() {
        if r.kind == DocumentKind::TemporaryPermit {
            *per.entry(r.person).or_default() += 1;
        }
    }
    per
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_origins_never_exceed_the_monthly_limit_nor_fork_the_chain() {
    let gw = TestGateway::start().await;
    let mut origins = Vec::new();
    for name in ["origin-a", "origin-b"] {
        origins.push(start_origin_process(&origin_config(&gw, name)).await);
    }
    let repo = gw.demo.repo();
    two_origins_race(Arc::new(gw), &origins, &repo).await;
}

/// As above, with the repository in an S3-compatible bucket (s3s-fs on loopback), each
/// origin on a local copy of its own that starts empty.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_origins_on_one_bucket_never_exceed_the_monthly_limit_nor_fork_the_chain() {
    let gw = TestGateway::start().await;
    let (s3_root, endpoint) = bucket_with_the_demo_repo(&gw).await;
    let mut origins = Vec::new();
    for name in ["bucket-origin-a", "bucket-origin-b"] {
        let (setup, _) = bucket_origin_config(&gw, &endpoint, name);
        origins.push(start_origin_process(&setup).await);
    }
    let bucket_dir = s3_root.path().join(crate::s3::BUCKET).join("repo");
    two_origins_race(Arc::new(gw), &origins, &bucket_dir).await;
}

/// An S3-compatible bucket (s3s-fs on loopback, its files under the returned directory)
/// holding the demo's repository; its endpoint.
async fn bucket_with_the_demo_repo(gw: &TestGateway) -> (tempfile::TempDir, String) {
    let s3_root = tempfile::tempdir().expect("tempdir");
    let endpoint = crate::s3::start_s3(s3_root.path()).await;
    crate::s3::upload(&crate::s3::client(&endpoint), &gw.demo.repo()).await;
    (s3_root, endpoint)
}

/// An origin `name` on the bucket at `endpoint`, with a local copy of its own that starts
/// empty; the copy's directory.
fn bucket_origin_config(
    gw: &TestGateway,
    endpoint: &str,
    name: &str,
) -> (OriginSetup, std::path::PathBuf) {
    let copy = gw.dir.path().join(format!("copy-{name}"));
    let setup = origin_config_with(
        gw,
        name,
        vec![
            config_edit::set("snapshot.repo", copy.display().to_string()),
            config_edit::set("origin.bucket", format!("s3://{}/repo", crate::s3::BUCKET)),
            config_edit::set("origin.s3_endpoint", endpoint),
            config_edit::set("origin.s3_region", "us-east-1"),
        ],
    );
    (setup, copy)
}

/// The state a race of two origins on one bucket could leave a copy in: its manifest is
/// the chain's newest link, claimed from the bucket, but an object that link names never
/// came down (another origin claimed the link after this one's pull had read the
/// bucket's older manifest; the copy's own settle then installed the link). The origin
/// used to find its copy "up to date" at every pull and refuse every write with 503,
/// for good. It now brings the missing object down and writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_that_lacks_an_object_its_manifest_names_is_mended_from_the_bucket() {
    let gw = TestGateway::start().await;
    let (_s3_root, endpoint) = bucket_with_the_demo_repo(&gw).await;
    let (setup_a, copy_a) = bucket_origin_config(&gw, &endpoint, "bucket-origin-a");
    let (setup_b, copy_b) = bucket_origin_config(&gw, &endpoint, "bucket-origin-b");
    let holders = valid_travel_permits(&gw, 2);
    let issue = |addr, holder: String, key: &'static str| {
        let gw = &gw;
        async move {
            let mut c = caller_at(gw, addr, "desk-01").await.expect("connects");
            post_idempotent(
                &mut c,
                PERMITS,
                Some(key),
                &issue_body(&holder, "forgotten"),
            )
            .await
        }
    };
    // B's copy is made, at the bucket's version; then B stops.
    {
        let b = start_origin_process(&setup_b).await;
        let r = issue(b.addr, holders[0].clone(), "b-first").await;
        assert_eq!(
            r.status.as_u16(),
            201,
            "{}",
            String::from_utf8_lossy(&r.body)
        );
    }
    // A publishes once more: a new link, naming a new object.
    let installed_at = |copy: &std::path::Path| -> Value {
        serde_json::from_slice::<Value>(
            &std::fs::read(copy.join("manifest.json")).expect("manifest"),
        )
        .expect("json")
    };
    {
        let a = start_origin_process(&setup_a).await;
        let r = issue(a.addr, holders[1].clone(), "a-first").await;
        assert_eq!(
            r.status.as_u16(),
            201,
            "{}",
            String::from_utf8_lossy(&r.body)
        );
    }
    let b_version = installed_at(&copy_b)["signed"]["version"]
        .as_u64()
        .expect("version");
    // B's copy takes A's link and its manifest, as its settle would, without the objects.
    let link = std::fs::read_dir(copy_a.join("chain"))
        .expect("chain")
        .map(|e| e.expect("entry").path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n == format!("{b_version:020}.json").as_str())
        })
        .expect("A's link on top of B's version");
    std::fs::copy(
        &link,
        copy_b.join("chain").join(link.file_name().expect("name")),
    )
    .expect("copy link");
    std::fs::copy(copy_a.join("manifest.json"), copy_b.join("manifest.json"))
        .expect("copy manifest");
    let newest = installed_at(&copy_b);
    let missing: Vec<String> = newest["signed"]["deltas"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(std::iter::once(&newest["signed"]["snapshot"]))
        .filter_map(|o| o["hash"].as_str().map(str::to_owned))
        .filter(|h| !copy_b.join("objects").join(h).exists())
        .collect();
    assert!(
        !missing.is_empty(),
        "the copy must lack an object for this test to mean anything"
    );

    let b = start_origin_process(&setup_b).await;
    let r = issue(b.addr, holders[0].clone(), "b-second").await;
    assert_eq!(
        r.status.as_u16(),
        201,
        "{}\nB's log:\n{}",
        String::from_utf8_lossy(&r.body),
        std::fs::read_to_string(&b.log).unwrap_or_default()
    );
    for h in &missing {
        assert!(
            copy_b.join("objects").join(h).exists(),
            "object {h} brought down"
        );
    }
}

/// 200 concurrent issuances for 50 holders through the two `origins`: each holder gets
/// exactly its two a month, and `repo` holds one chain whose end is its manifest.
async fn two_origins_race(gw: Arc<TestGateway>, origins: &[OriginProcess], repo: &std::path::Path) {
    let holders = valid_travel_permits(&gw, 50);
    let tasks: Vec<_> = (0..200)
        .map(|j| {
            let (gw, holder) = (gw.clone(), holders[j % 50].clone());
            let addr = origins[j % 2].addr;
            tokio::spawn(async move {
                let mut c = caller_at(&gw, addr, "desk-01").await.expect("connects");
                // As a desk application does (docs/temporary-permit.md): a 503 ("send the
                // same request again") is sent again with the same Idempotency-Key after
                // its Retry-After, a bounded number of times.
                let mut r = None;
                for _ in 0..20 {
                    let answer = post_idempotent(
                        &mut c,
                        PERMITS,
                        Some(&format!("k{j}")),
                        &issue_body(&holder, "forgotten"),
                    )
                    .await;
                    let again = (answer.status.as_u16() == 503).then(|| {
                        answer
                            .headers
                            .get("retry-after")
                            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
                            .unwrap_or(1)
                            .min(5)
                    });
                    r = Some(answer);
                    let Some(seconds) = again else {
                        break;
                    };
                    tokio::time::sleep(std::time::Duration::from_secs(seconds)).await;
                }
                let r = r.expect("an answer");
                (r.status.as_u16(), r.json())
            })
        })
        .collect();
    let mut by_status: HashMap<u16, usize> = HashMap::new();
    for t in tasks {
        let (status, body) = t.await.expect("task");
        if status == 409 {
            assert_eq!(body["rule"], "monthly-limit", "{body}");
        }
        *by_status.entry(status).or_default() += 1;
    }
    if by_status.get(&201) != Some(&100) || by_status.get(&409) != Some(&100) {
        let logs: Vec<String> = origins
            .iter()
            .map(|o| std::fs::read_to_string(&o.log).unwrap_or_default())
            .collect();
        panic!(
            "answers by status {by_status:?}, expected 100 issued (201) and 100 refused (409); the origins' logs:\n{}",
            logs.join("\n---\n")
        );
    }
    // What SREs see: the two origins' calls add up to the same.
    let count = |outcome: &str| -> f64 {
        origins
            .iter()
            .map(|o| {
                let text = crate::common::process::ops_get(o.metrics, "/metrics")
                    .expect("the origin's metrics");
                crate::common::metric_value(
                    &text,
                    &format!("permitgate_origin_calls_total{{outcome=\"{outcome}\",route=\"authority_temp_permit_issue\"}}"),
                )
            })
            .sum()
    };
    assert_eq!((count("issued"), count("issuance-refused")), (100.0, 100.0));

    let per = permits_per_holder(&gw, repo);
    assert_eq!(per.values().sum::<usize>(), 100);
    assert!(per.values().all(|n| *n == 2), "{per:?}");

    // One chain: from the first, each link names the next, and every link is on it.
    let links: HashMap<u64, u64> = std::fs::read_dir(repo.join("chain"))
        .expect("chain")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .map(|p| {
            let v: Value = serde_json::from_slice(&std::fs::read(p).expect("read")).expect("link");
            (
                v["from"].as_u64().expect("from"),
                v["version"].as_u64().expect("version"),
            )
        })
        .collect();
    let (mut at, mut walked) = (*links.keys().min().expect("links"), 0);
    while let Some(next) = links.get(&at) {
        at = *next;
        walked += 1;
    }
    assert_eq!(walked, links.len(), "every link is on the one chain");
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(repo.join("manifest.json")).expect("manifest"))
            .expect("json");
    assert_eq!(
        manifest["signed"]["version"], at,
        "the manifest is the chain's end"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_origin_loses_no_returned_permit_and_issues_none_twice() {
    let gw = Arc::new(TestGateway::start().await);
    let holders = Arc::new(valid_travel_permits(&gw, 60));
    let setup = origin_config(&gw, "origin-crash");
    let addr = setup.addr;
    // key -> (holder, permit id) of every permit a desk was told of.
    let mut answered: HashMap<String, (String, String)> = HashMap::new();
    // Requests cut off by a kill (no answer at all): key -> holder.
    let mut cut_off: HashMap<String, String> = HashMap::new();
    for (round, kill_after_ms) in [(0u32, 150u64), (1, 300), (2, 500)] {
        let process = start_origin_process(&setup).await;
        let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        // Eight desks issue without a pause until the origin dies under them.
        let desks: Vec<_> = (0..8)
            .map(|_| {
                let (gw, holders, next) = (gw.clone(), holders.clone(), next.clone());
                tokio::spawn(async move {
                    let mut seen = Vec::new();
                    let Some(mut c) = caller_at(&gw, addr, "desk-01").await else {
                        return seen;
                    };
                    loop {
                        let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let key = format!("r{round}-{n}");
                        let holder = holders[n % holders.len()].clone();
                        let answer = tokio::time::timeout(
                            Duration::from_secs(10),
                            c.try_request_with(issue_request(&key, &holder)),
                        )
                        .await;
                        match answer {
                            Ok(Ok(r)) => {
                                let permit = r.status.is_success().then(|| {
                                    serde_json::from_slice::<Value>(&r.body).expect("json")
                                        ["permit_id"]
                                        .as_str()
                                        .expect("id")
                                        .to_owned()
                                });
                                seen.push((key, holder, Some(permit)));
                            }
                            // Killed: this request is cut off, and so is this desk.
                            _ => {
                                seen.push((key, holder, None));
                                return seen;
                            }
                        }
                    }
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(kill_after_ms)).await;
        drop(process); // SIGKILL, then wait
        for d in desks {
            for (key, holder, outcome) in d.await.expect("desk") {
                match outcome {
                    Some(Some(permit)) => {
                        answered.insert(key, (holder, permit));
                    }
                    Some(None) => {} // refused: the monthly limit
                    None => {
                        cut_off.insert(key, holder);
                    }
                }
            }
        }
    }
    assert!(
        !answered.is_empty(),
        "no issuance was answered before the kills"
    );
    assert!(
        !cut_off.is_empty(),
        "no kill landed while requests were in flight"
    );
    // After a restart every answered permit is there, and a retry of any request (answered
    // or cut off by a kill) names the permit its key names: never a second one.
    let _process = start_origin_process(&setup).await;
    let mut desk = caller_at(&gw, addr, "desk-01").await.expect("connects");
    for (key, (holder, permit)) in &answered {
        let r = desk
            .try_request_with(issue_request(key, holder))
            .await
            .expect("retry");
        assert_eq!(r.status, 200, "{key}: {}", String::from_utf8_lossy(&r.body));
        let v: Value = serde_json::from_slice(&r.body).expect("json");
        assert_eq!(v["permit_id"].as_str(), Some(permit.as_str()), "{key}");
        desk.get(&format!("{PERMITS}/{permit}"))
            .await
            .assert_ok(key);
    }
    let hash_key = HashKey::load(&gw.demo.hash_key()).expect("hash key");
    // A cut-off request that was committed before the kill is answered from the journal
    // (200, the same permit); one that was not is decided now.
    let mut committed_unanswered = 0;
    for (key, holder) in &cut_off {
        let r = desk
            .try_request_with(issue_request(key, holder))
            .await
            .expect("retry");
        if r.status == 200 {
            committed_unanswered += 1;
            let v: Value = serde_json::from_slice(&r.body).expect("json");
            assert_eq!(
                v["permit_id"].as_str(),
                Some(
                    PermitId::for_request(&hash_key, "desk-01", key)
                        .to_string()
                        .as_str()
                )
            );
        } else {
            assert!(
                [201, 409].contains(&r.status.as_u16()),
                "{key}: {}",
                r.status
            );
        }
    }
    let per = permits_per_holder(&gw, &gw.demo.repo());
    assert!(per.values().all(|n| *n <= 2), "{per:?}");
    // Each permit in the repository is the one its request's key names.
    for (key, (_, permit)) in &answered {
        assert_eq!(
            PermitId::for_request(&hash_key, "desk-01", key).to_string(),
            *permit
        );
    }
    eprintln!(
        "3 kills under load: {} permits answered, all there after the restart; {} requests cut off, {committed_unanswered} of them committed (their retry got that permit)",
        answered.len(),
        cut_off.len()
    );
}

fn issue_request(key: &str, holder: &str) -> http::Request<http_body_util::Full<bytes::Bytes>> {
    http::Request::builder()
        .method(http::Method::POST)
        .uri(PERMITS)
        .header("host", "localhost")
        .header("content-type", "application/json")
        .header("idempotency-key", key)
        .body(http_body_util::Full::new(bytes::Bytes::from(
            issue_body(holder, "forgotten").to_string(),
        )))
        .expect("request")
}

/// The policy as the origin's writer applies it, on published data of our own making: each
/// reason needs its status, unusable permits get none, never past the travel permit's own
/// last day (its end in Beijing), two a calendar month (Beijing), counted again after a
/// restart from what was published.
#[test]
fn the_writer_applies_the_policy_to_published_data() {
    use permitgate::issuance::{Actor, Refusal};
    use permitgate::key_files::generate_signing_key;
    use permitgate::origin::{IssueRequest, Keys, Origin, OriginError, Settings};
    use permitgate::publish::{publish, PublishOptions};
    use permitgate::snapshot::RecordStatus;
    use permitgate::temp_permit::Reason;

    let dir = tempfile::tempdir().expect("tempdir");
    let (publisher, issuer, hash_key) = (
        generate_signing_key(),
        generate_signing_key(),
        HashKey::generate(),
    );
    let doc = |number: &str, status: &str, until: &str| json!({"number": number, "status": status, "valid_until": until});
    let people = [
        ("valid", doc("H11111111", "valid", "2099-01-01")),
        ("lost", doc("H22222222", "lost", "2099-01-01")),
        ("revoked", doc("H33333333", "revoked", "2099-01-01")),
        ("expired", doc("H44444444", "valid", "2020-01-01")),
        ("ends-soon", doc("H55555555", "valid", "2026-03-12")),
        ("non-chinese", doc("HA1234567", "valid", "2029-07-10")),
    ];
    let export: String = people
        .iter()
        .map(|(p, d)| format!("{}\n", json!({"person": p, "documents": [d]})))
        .collect();
    let (export_path, repo) = (dir.path().join("export.jsonl"), dir.path().join("repo"));
    std::fs::write(&export_path, export).expect("export");
    let opts = PublishOptions {
        version: None,
        expires_in: time::Duration::days(3650),
        now: time::OffsetDateTime::now_utc(),
    };
    publish(&export_path, &repo, &publisher, &hash_key, &opts).expect("publish");
    let clock = Arc::new(ManualClock::at_unix(0));
    let start = || {
        Origin::start(
            Settings {
                repo: repo.clone(),
                bucket: None,
                batch_window: Duration::ZERO,
                manifest_expires_in: time::Duration::days(1),
                max_deltas: 32,
                clock_skew: time::Duration::minutes(5),
                metrics: permitgate::origin::OriginMetrics::new(),
                idle_tick: Duration::from_secs(60),
            },
            Keys {
                publisher: publisher.clone(),
                issuer: issuer.clone(),
                hash_key: hash_key.clone(),
            },
            clock.clone(),
        )
        .expect("origin")
    };
    let origin = start();
    let issue = |origin: &Origin, tp: &str, reason: Reason, at: time::OffsetDateTime| {
        clock.set_unix(at.unix_timestamp());
        origin.issue_blocking(IssueRequest {
            travel_permit: TravelPermitNo::parse(tp).expect("number"),
            name: "CHAN Tai Man".into(),
            reason,
            issued_at: at,
            idempotency_key: format!("{tp}-{}", at.unix_timestamp()),
            by: Actor {
                caller: "desk-01".into(),
                office: "test office".into(),
                officer: "E1".into(),
            },
        })
    };
    let mar10 = datetime!(2026-03-10 09:30 UTC);
    for (tp, reason, want) in [
        ("H11111111", Reason::Lost, "Reason"),
        ("H22222222", Reason::Forgotten, "Reason"),
        ("H33333333", Reason::Lost, "Revoked"),
        ("H44444444", Reason::Forgotten, "Expired"),
        ("H99999999", Reason::Forgotten, "NotPublished"),
    ] {
        match issue(&origin, tp, reason, mar10) {
            Err(OriginError::Refused(r)) => {
                let said = format!("{r:?}");
                assert!(said.contains(want), "{tp}: {said}");
                if want == "Revoked" {
                    assert_eq!(r, Refusal::Unusable(RecordStatus::Revoked));
                }
            }
            other => panic!("{tp}: {other:?}"),
        }
    }
    let lost = issue(&origin, "H22222222", Reason::Lost, mar10).expect("lost");
    assert_eq!(lost.permit.expires_at, datetime!(2026-03-17 09:30 UTC));
    // Never beyond the travel permit's own last day (2026-03-12): its end in Beijing.
    let soon = issue(&origin, "H55555555", Reason::Forgotten, mar10).expect("soon");
    assert_eq!(soon.permit.expires_at, datetime!(2026-03-12 16:00 UTC));
    issue(&origin, "HA1234567", Reason::Forgotten, mar10).expect("non-chinese");

    // Two a calendar month, in Beijing.
    for at in [
        datetime!(2026-03-30 10:00 UTC),
        datetime!(2026-03-31 10:00 UTC),
    ] {
        issue(&origin, "H11111111", Reason::Forgotten, at).expect("within the limit");
    }
    assert!(matches!(
        issue(
            &origin,
            "H11111111",
            Reason::Forgotten,
            datetime!(2026-03-31 12:00 UTC)
        ),
        Err(OriginError::Refused(Refusal::MonthlyLimit { .. }))
    ));
    // A restarted origin counts from what was published.
    drop(origin);
    let origin = start();
    assert!(matches!(
        issue(
            &origin,
            "H11111111",
            Reason::Forgotten,
            datetime!(2026-03-31 15:59:59 UTC)
        ),
        Err(OriginError::Refused(Refusal::MonthlyLimit { .. }))
    ));
    // 16:00 UTC on 31 March is 1 April in Beijing: a new month.
    issue(
        &origin,
        "H11111111",
        Reason::Forgotten,
        datetime!(2026-03-31 16:00 UTC),
    )
    .expect("April in Beijing");
    // issued_at far from the origin's clock is refused.
    clock.set_unix(mar10.unix_timestamp());
    let far = origin.issue_blocking(IssueRequest {
        travel_permit: TravelPermitNo::parse("H22222222").expect("number"),
        name: "CHAN Tai Man".into(),
        reason: Reason::Lost,
        issued_at: mar10 - time::Duration::hours(1),
        idempotency_key: "far".into(),
        by: Actor {
            caller: "desk-01".into(),
            office: "test office".into(),
            officer: "E1".into(),
        },
    });
    assert!(matches!(far, Err(OriginError::IssuedAt { .. })), "{far:?}");
}

/// docs/openapi-authority.yaml against the real thing: every path and method in it is
/// served, and real answers (successes and problems) match its schemas.
#[tokio::test]
async fn real_answers_match_the_authority_spec() {
    use crate::openapi::{conforms, spec_file};
    let spec = spec_file("docs/openapi-authority.yaml");
    let gw = TestGateway::start().await;
    let origin = gw.start_origin(Arc::new(SystemClock)).await;
    let mut desk = origin.caller("desk-01").await;
    let tp = lost_travel_permit(&gw);
    let item = "/v1/authority/temporary-permits/{id}";
    let revocation = "/v1/authority/temporary-permits/{id}/revocation";
    let search = "/v1/authority/temporary-permits/search";

    let issued =
        post_idempotent(&mut desk, PERMITS, Some("spec-1"), &issue_body(&tp, "lost")).await;
    conforms(&spec, PERMITS, "post", &issued);
    let id = issued.json()["permit_id"].as_str().expect("id").to_owned();
    for r in [
        post_idempotent(&mut desk, PERMITS, Some("spec-1"), &issue_body(&tp, "lost")).await,
        post_idempotent(
            &mut desk,
            PERMITS,
            Some("spec-1"),
            &issue_body(&tp, "damaged"),
        )
        .await,
        post_idempotent(&mut desk, PERMITS, None, &issue_body(&tp, "lost")).await,
        post_idempotent(
            &mut desk,
            PERMITS,
            Some("spec-2"),
            &issue_body("H1234", "lost"),
        )
        .await,
        post_idempotent(
            &mut desk,
            PERMITS,
            Some("spec-3"),
            &issue_body(&tp, "forgotten"),
        )
        .await,
        post_idempotent(&mut desk, PERMITS, Some("spec-4"), &json!({"name": "A"})).await,
        desk.post_raw(PERMITS, Some("application/json"), "{").await,
    ] {
        conforms(&spec, PERMITS, "post", &r);
    }
    let today = permitgate::day::Day::in_beijing(time::OffsetDateTime::now_utc()).to_string();
    for path in [
        format!("{PERMITS}?issued_on={today}"),
        format!("{PERMITS}?issued_on=tomorrow"),
    ] {
        conforms(&spec, PERMITS, "get", &desk.get(&path).await);
    }
    conforms(
        &spec,
        search,
        "post",
        &desk.post_json(search, &json!({"travel_permit": tp})).await,
    );
    for r in [
        desk.get(&format!("{PERMITS}/{id}")).await,
        desk.get(&format!("{PERMITS}/0123456789abcdef")).await,
    ] {
        conforms(&spec, item, "get", &r);
    }
    for _ in 0..2 {
        let r = desk
            .post_json(
                &format!("{PERMITS}/{id}/revocation"),
                &json!({"officer": "E2"}),
            )
            .await;
        r.assert_ok("revoke");
        conforms(&spec, revocation, "post", &r);
    }
    conforms(
        &spec,
        item,
        "get",
        &desk.get(&format!("{PERMITS}/{id}")).await,
    );
    let mut auditor = origin.caller("auditor").await;
    conforms(
        &spec,
        revocation,
        "post",
        &auditor
            .post_json(
                &format!("{PERMITS}/{id}/revocation"),
                &json!({"officer": "E2"}),
            )
            .await,
    );
    // Every operation the spec lists is served (not a 404 or 405 of routing).
    let paths = spec["paths"].as_object().expect("paths");
    assert_eq!(paths.len(), 4);
    for (template, ops) in paths {
        for method in ops.as_object().expect("operations").keys() {
            let path = template.replace("{id}", &id);
            let r = match method.as_str() {
                "get" => desk.get(&path).await,
                _ => desk.post_json(&path, &json!({})).await,
            };
            assert!(
                ![404, 405].contains(&r.status.as_u16())
                    || r.json()["type"] == "urn:permitgate:problem:permit-not-found",
                "{method} {template}: {}",
                body_text(&r)
            );
        }
    }
}

/// Nobody writes for a while: the origin signs its manifest again before followers would
/// call the data stale (the same data, the next version), and keeps the revocation list's
/// issue time fresh.
#[test]
fn an_idle_origin_keeps_what_it_publishes_fresh() {
    use permitgate::clock::Clock;
    use permitgate::key_files::load_signing_key;
    use permitgate::origin::{Keys, Origin, Settings};
    use permitgate::snapshot::SignedManifest;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let gw = rt.block_on(TestGateway::start());
    let repo = gw.demo.repo();
    let publisher = load_signing_key(&gw.demo.publisher_key()).expect("key");
    let manifest = |repo: &std::path::Path| {
        let bytes = std::fs::read(repo.join("manifest.json")).expect("manifest");
        SignedManifest::verify(&bytes, &[publisher.verifying_key()])
            .expect("verifies")
            .manifest
    };
    let before = manifest(&repo);
    // An hour before the demo's manifest expires: less than half of a day's freshness.
    let clock = Arc::new(ManualClock::at_unix(
        (before.expires_at - time::Duration::hours(1)).unix_timestamp(),
    ));
    let _origin = Origin::start(
        Settings {
            repo: repo.clone(),
            bucket: None,
            batch_window: Duration::ZERO,
            manifest_expires_in: time::Duration::hours(24),
            max_deltas: 32,
            clock_skew: time::Duration::minutes(5),
            metrics: permitgate::origin::OriginMetrics::new(),
            idle_tick: Duration::from_millis(20),
        },
        Keys {
            publisher: publisher.clone(),
            issuer: load_signing_key(&gw.demo.temp_permit_key()).expect("key"),
            hash_key: HashKey::load(&gw.demo.hash_key()).expect("hash key"),
        },
        clock.clone(),
    )
    .expect("origin");
    let mut after = manifest(&repo);
    for _ in 0..200 {
        if after.version > before.version {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
        after = manifest(&repo);
    }
    assert_eq!(after.version, before.version + 1, "signed again once");
    assert_eq!(after.snapshot, before.snapshot, "the same data");
    assert_eq!(after.deltas, before.deltas);
    assert_eq!(
        after.expires_at,
        clock.now() + time::Duration::hours(24),
        "fresh for a day from now"
    );
    // Fresh again: the next ticks leave it alone.
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(manifest(&repo).version, after.version);
    // The revocation list carries the origin's clock.
    let keys = permitgate::keyring::Keyring::new(vec![permitgate::keyring::PublicKey::new(
        permitgate::keyring::KeyUse::TempPermit,
        load_signing_key(&gw.demo.temp_permit_key())
            .expect("key")
            .verifying_key(),
        permitgate::keyring::Validity::default(),
    )]);
    let list = permitgate::revocation_list::read(
        &std::fs::read(repo.join("temp-permit-revocations.bin")).expect("list"),
        &keys,
    )
    .expect("a genuine list");
    assert_eq!(list.issued_at, clock.now());
}

/// A `GET` of the revocation list with the given entity tag and delta wish.
async fn get_list(
    c: &mut Client,
    if_none_match: Option<&str>,
    delta: bool,
) -> crate::common::Response {
    let mut req =
        http::Request::get("/v1/temporary-permits/revocations").header("host", "localhost");
    if let Some(tag) = if_none_match {
        req = req.header("if-none-match", tag);
    }
    if delta {
        req = req.header("a-im", "pgrl-delta");
    }
    let req = req
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .expect("request");
    c.try_request_with(req).await.expect("answer")
}

fn header<'a>(r: &'a crate::common::Response, name: &str) -> &'a str {
    r.headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

/// origin API → repository → gateway watching it → relay following that one over mTLS:
/// a gate asking the relay gets the signed list of revoked permits, `304` while it holds
/// the current one, and after the next revocation only what changed (RFC 3229), which it
/// applies to its own list and checks the origin's signature on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gates_get_the_revocation_list_through_a_relay_with_etags_and_deltas() {
    let keep = tempfile::tempdir().expect("tempdir");
    let demo_dir = keep.path().join("demo");
    let source = crate::replication::watching_origin(Some(&demo_dir)).await;
    let origin = source.start_origin(Arc::new(SystemClock)).await;
    let relay = TestGateway::start_with(crate::replication::following(
        &source,
        &demo_dir,
        &keep.path().join("relay-state"),
        1000,
    ))
    .await;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let (f, interval) = relay.gateway.follower().expect("config").expect("on");
    let relay_task = tokio::spawn(f.run(interval, stop_rx));
    let keyring = permitgate::keyring::Keyring::from_json(
        &relay.client("rail-gate").await.get("/v1/keys").await.body,
    )
    .expect("keys");

    let mut desk = origin.caller("desk-01").await;
    let holders = valid_travel_permits(&source, 9);
    let mut revoke = async |key: &str, holder: &str| -> PermitId {
        let r = post_idempotent(
            &mut desk,
            PERMITS,
            Some(key),
            &issue_body(holder, "forgotten"),
        )
        .await;
        assert_eq!(r.status, 201, "{}", body_text(&r));
        let id = r.json()["permit_id"].as_str().expect("id").to_owned();
        desk.post_json(
            &format!("{PERMITS}/{id}/revocation"),
            &json!({"officer": "E2048"}),
        )
        .await
        .assert_ok("revoke");
        PermitId::parse(&id).expect("id")
    };
    // A delta is sent only where it is smaller than the list: eight permits make one.
    let mut revoked = Vec::new();
    for (i, holder) in holders[..8].iter().enumerate() {
        revoked.push(revoke(&format!("list-{i}"), holder).await);
    }

    let mut gate = relay.client("rail-gate").await;
    let mut list = None;
    for _ in 0..300 {
        let r = get_list(&mut gate, None, false).await;
        if r.status == 200 {
            let read = permitgate::revocation_list::read(&r.body, &keyring).expect("signed");
            if revoked.iter().all(|id| read.contains(*id)) {
                list = Some(r);
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let list = list.expect("the revoked permit never reached the relay's list");
    assert_eq!(
        header(&list, "content-type"),
        "application/vnd.permitgate.revocation-list"
    );
    assert!(!header(&list, "last-modified").is_empty());
    let tag = header(&list, "etag").to_owned();
    assert_eq!(tag, permitgate::revocation_list::etag(&list.body));
    // Held: nothing sent again, also when a delta is asked for.
    for delta in [false, true] {
        let r = get_list(&mut gate, Some(&tag), delta).await;
        assert_eq!(r.status, 304, "{}", body_text(&r));
        assert!(r.body.is_empty());
    }
    // Kept by the relay for a restart.
    assert!(keep
        .path()
        .join("relay-state")
        .join(permitgate::revocation_list::FILE)
        .exists());

    let ninth = revoke("list-8", &holders[8]).await;
    let answered = Instant::now();
    // Delta after delta, as a gate polling would: each applied to the list it holds.
    let (mut held, mut held_tag, mut deltas) = (list.body.to_vec(), tag.clone(), 0);
    for _ in 0..300 {
        let r = get_list(&mut gate, Some(&held_tag), true).await;
        if r.status == 226 {
            assert_eq!(header(&r, "im"), "pgrl-delta");
            assert_eq!(header(&r, "delta-base"), held_tag);
            assert!(r.body.len() < list.body.len(), "{}", r.body.len());
            held = permitgate::revocation_list::apply_delta(&held, &r.body).expect("applies");
            held_tag = header(&r, "etag").to_owned();
            assert_eq!(held_tag, permitgate::revocation_list::etag(&held));
            deltas += 1;
            let now =
                permitgate::revocation_list::read(&held, &keyring).expect("the origin's signature");
            if now.contains(ninth) {
                assert!(revoked.iter().all(|id| now.contains(*id)));
                // Printed for docs/benchmarks.md; the poll adds up to 20 ms.
                eprintln!(
                    "revocation answered -> on the relay's list: {} ms",
                    answered.elapsed().as_millis()
                );
                break;
            }
        } else {
            assert_eq!(r.status, 304, "{}", body_text(&r));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(deltas > 0);
    let rebuilt = held;
    let now = permitgate::revocation_list::read(&rebuilt, &keyring).expect("signed");
    assert!(
        now.contains(ninth),
        "the ninth revocation never reached the relay's list"
    );
    // A gate that asks without a delta, or from a list the relay never held, gets it whole.
    let whole = get_list(&mut gate, Some("\"not-a-list-we-held\""), true).await;
    assert_eq!(whole.status, 200);
    assert_eq!(whole.body, rebuilt);

    // Gates only: a partner without the temporary-permit scope is refused.
    relay
        .client("bank")
        .await
        .get("/v1/temporary-permits/revocations")
        .await
        .problem(403, "scope-missing");
    let m = relay.metrics().await;
    assert_eq!(
        crate::common::metric_value(&m, "permitgate_revocation_list_permits"),
        9.0,
        "{m}"
    );
    let _ = stop_tx.send(true);
    relay_task.abort();
}
