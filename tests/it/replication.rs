//! Following a repository: deltas reach answers, every refusal keeps the last good state,
//! and a restarted gateway serves its persisted state before reaching the source.

use std::path::Path;
use std::time::Duration;
use strum::VariantArray;

use crate::common::{metric_value, Options, TestGateway};
use permitgate::key_files::load_signing_key;
use permitgate::publish::DEFAULT_MAX_DELTAS;
use permitgate::replication::{PollOutcome, RefusalReason};
use permitgate::snapshot::SignedManifest;
use serde_json::json;

fn publish_events(gw: &TestGateway, events: &str) -> u64 {
    gw.publish_changes(events, DEFAULT_MAX_DELTAS).version
}

async fn follower_gateway(state_dir: Option<&Path>) -> TestGateway {
    TestGateway::start_with(Options {
        replication: true,
        state_dir: state_dir.map(Path::to_owned),
        ..Options::default()
    })
    .await
}

fn linked_sample(gw: &TestGateway) -> permitgate::demo::Sample {
    gw.sample("linked_pair").clone()
}

/// Two publications into the origin (the linked pair's travel permit lost, then its
/// residence permit revoked): the manifest after them, and the second delta's object.
fn two_publications(gw: &TestGateway) -> (serde_json::Value, std::path::PathBuf) {
    let s = linked_sample(gw);
    let tp = s.body["travel_permit"].as_str().expect("tp");
    let rp = s.body["residence_permit"].as_str().expect("rp");
    publish_events(
        gw,
        &json!({"op": "status", "number": tp, "status": "lost"}).to_string(),
    );
    publish_events(
        gw,
        &json!({"op": "status", "number": rp, "status": "revoked"}).to_string(),
    );
    let m: serde_json::Value = serde_json::from_slice(
        &std::fs::read(gw.demo.repo().join("manifest.json")).expect("manifest"),
    )
    .expect("json");
    let second = gw
        .demo
        .repo()
        .join("objects")
        .join(m["signed"]["deltas"][1]["hash"].as_str().expect("hash"));
    (m, second)
}

/// A gateway serving the demo repository (in `demo_dir`, or a fresh one) and watching it,
/// so that publications reach its answers and its relay clients.
pub(crate) async fn watching_origin(demo_dir: Option<&Path>) -> TestGateway {
    let mut origin = TestGateway::start_with(Options {
        demo_dir: demo_dir.map(Path::to_owned),
        ..Options::default()
    })
    .await;
    let gw = origin.gateway.clone();
    assert!(origin.running.start_replication(&gw).expect("watch"));
    origin
}

/// A gateway on the same demo data following `from` over mTLS (as the demo's relay
/// partner), keeping its state in `state_dir`.
pub(crate) fn following(
    from: &TestGateway,
    demo_dir: &Path,
    state_dir: &Path,
    poll_interval_ms: u64,
) -> Options {
    Options {
        replication: true,
        demo_dir: Some(demo_dir.to_owned()),
        state_dir: Some(state_dir.to_owned()),
        replication_source: Some(format!(
            "https://localhost:{}/v1/replication",
            from.addr().port()
        )),
        poll_interval_ms,
        ..Options::default()
    }
}

#[tokio::test]
async fn a_status_change_published_at_the_origin_reaches_answers() {
    let gw = follower_gateway(None).await;
    assert!(!gw.gateway.store.is_ready(), "nothing local yet");
    let (mut follower, _) = gw
        .gateway
        .follower()
        .expect("config")
        .expect("replication on");
    assert!(matches!(
        follower.poll_and_record().await.map_err(|r| r.detail()),
        Ok(PollOutcome::Swapped(1))
    ));
    assert!(matches!(
        follower.poll_and_record().await.map_err(|r| r.detail()),
        Ok(PollOutcome::NotModified)
    ));

    let s = linked_sample(&gw);
    let mut c = gw.client("bank").await;
    assert_eq!(
        c.post_json(&s.path, &s.body).await.json()["travel_permit"]["status"],
        "valid"
    );

    let tp = s.body["travel_permit"].as_str().expect("tp");
    let v = publish_events(
        &gw,
        &json!({"op": "status", "number": tp, "status": "lost"}).to_string(),
    );
    assert_eq!(v, 2);
    assert_eq!(
        follower.poll_and_record().await.map_err(|r| r.detail()),
        Ok(PollOutcome::Applied(2))
    );
    let answer = c.post_json(&s.path, &s.body).await.json();
    assert_eq!(answer["travel_permit"]["status"], "lost");
    assert_eq!(answer["snapshot"]["version"], 2);
    assert!(answer["snapshot"].get("stale").is_none());

    let m = gw.metrics().await;
    assert_eq!(
        metric_value(&m, "permitgate_replication_polls_total{result=\"applied\"}"),
        1.0
    );
    assert_eq!(
        metric_value(&m, "permitgate_replication_polls_total{result=\"swapped\"}"),
        1.0
    );
    assert_eq!(metric_value(&m, "permitgate_overlay_entries"), 1.0);
    assert_eq!(metric_value(&m, "permitgate_snapshot_version"), 2.0);
    assert_eq!(metric_value(&m, "permitgate_snapshot_stale"), 0.0);
    assert!(metric_value(&m, "permitgate_replication_last_success_timestamp_seconds") > 1.7e9);
}

#[tokio::test]
async fn a_gateway_serving_its_repo_applies_what_is_published_into_it() {
    let gw = watching_origin(None).await;
    let s = linked_sample(&gw);
    let mut bank = gw.client("bank").await;
    assert_eq!(
        bank.post_json(&s.path, &s.body).await.json()["travel_permit"]["status"],
        "valid"
    );
    // A follower of this gateway waits for the next manifest.
    let mut relay = gw.client("relay").await;
    let first = relay.get("/v1/replication/manifest").await;
    let tag = first.headers["etag"].to_str().expect("etag").to_owned();
    let waiting = tokio::spawn(async move {
        let req = http::Request::get("/v1/replication/manifest?wait_ms=30000")
            .header("if-none-match", tag)
            .header("host", "localhost")
            .body(http_body_util::Full::new(bytes::Bytes::new()))
            .expect("request");
        let started = std::time::Instant::now();
        let r = relay.try_request_with(req).await.expect("answer");
        (r.status, started.elapsed())
    });
    gw.wait_metric("permitgate_admission_in_use{pool=\"relay_places\"}", 1.0)
        .await;

    let tp = s.body["travel_permit"].as_str().expect("tp");
    let version = publish_events(
        &gw,
        &json!({"op": "status", "number": tp, "status": "lost"}).to_string(),
    );
    let mut seen = None;
    for _ in 0..250 {
        let v = bank.post_json(&s.path, &s.body).await.json();
        if v["travel_permit"]["status"] == "lost" {
            seen = Some(v);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let v = seen.expect("the gateway never applied the publication to its own repo");
    assert_eq!(v["snapshot"]["version"], version);
    gw.wait_metric("permitgate_snapshot_version", version as f64)
        .await;
    // The waiting follower heard of it at once, not at the end of its long-poll.
    let (status, waited) = waiting.await.expect("long-poll");
    assert_eq!(status, 200);
    assert!(waited < Duration::from_secs(10), "{waited:?}");
}

#[tokio::test]
async fn snapshot_age_is_the_age_of_the_data_served_at_scrape_time() {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let clock = std::sync::Arc::new(permitgate::clock::ManualClock::at_unix(now));
    let gw = TestGateway::start_with(Options {
        clock: Some(clock.clone()),
        ..Options::default()
    })
    .await;
    let age = |m: &str| metric_value(m, "permitgate_snapshot_age_seconds");
    // After the demo data was published (making it may take longer than a second on a busy
    // machine): an age below zero would be shown as 0.
    let now = time::OffsetDateTime::now_utc().unix_timestamp() + 1;
    clock.set_unix(now);
    let first = age(&gw.metrics().await);
    assert!(first >= 1.0, "{first}");
    clock.set_unix(now + 100);
    let later = age(&gw.metrics().await);
    assert!((later - first - 100.0).abs() < 1.0, "{first} then {later}");
}

#[tokio::test]
async fn the_background_follower_applies_changes_within_seconds() {
    let gw = follower_gateway(None).await;
    let mut running_follower = gw.gateway.follower().expect("config").expect("on").0;
    running_follower
        .poll_and_record()
        .await
        .expect("first load");
    drop(running_follower);
    // Now the real loop, as `serve` runs it.
    let gw = std::sync::Arc::new(gw);
    let (follower, interval) = gw.gateway.follower().expect("config").expect("on");
    let (_stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(follower.run(interval, stop_rx));

    let seen = revocation_answered_within_5s(&gw).await;
    task.abort();
    assert!(seen, "change not applied within 5 s");
}

/// Publishes the linked sample's residence permit as revoked, then asks (every 50 ms, for
/// 5 s at most) until an answer says so.
async fn revocation_answered_within_5s(gw: &TestGateway) -> bool {
    status_answered_within_5s(gw, gw, "revoked").await
}

/// Publishes `status` for the linked sample's residence permit into `origin`'s
/// repository, then asks `asked` (every 50 ms, for 5 s at most) until an answer says so.
async fn status_answered_within_5s(
    origin: &TestGateway,
    asked: &TestGateway,
    status: &str,
) -> bool {
    let s = linked_sample(origin);
    let rp = s.body["residence_permit"].as_str().expect("rp");
    publish_events(
        origin,
        &json!({"op": "status", "number": rp, "status": status}).to_string(),
    );
    let mut c = asked.client("bank").await;
    for _ in 0..100 {
        let v = c.post_json(&s.path, &s.body).await.json();
        if v["residence_permit"]["status"] == status {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// A file:// source is watched: a publication wakes the follower, not its next poll (a
/// minute away here).
#[tokio::test]
async fn a_file_source_is_followed_as_publications_land_not_at_the_next_poll() {
    let gw = TestGateway::start_with(Options {
        replication: true,
        poll_interval_ms: 60_000,
        ..Options::default()
    })
    .await;
    let gw = std::sync::Arc::new(gw);
    let (follower, interval) = gw.gateway.follower().expect("config").expect("on");
    assert_eq!(interval, Duration::from_secs(60));
    let (_stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(follower.run(interval, stop_rx));
    // The loop's first poll (at once) must be over before the publication: else that poll
    // could pick it up, and the watch would go untested.
    let polls = |m: &str| {
        ["not_modified", "applied", "swapped"]
            .map(|r| {
                metric_value(
                    m,
                    &format!("permitgate_replication_polls_total{{result=\"{r}\"}}"),
                )
            })
            .iter()
            .sum::<f64>()
    };
    // The first poll loads the data; the next one, at once after a change, finds nothing.
    let settled = |m: &str| {
        metric_value(
            m,
            "permitgate_replication_polls_total{result=\"not_modified\"}",
        ) >= 1.0
    };
    for _ in 0..100 {
        if settled(&gw.metrics().await) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let m = gw.metrics().await;
    assert!(settled(&m), "no poll after the first load: {m}");
    // Its own reads of the source wake it no more: left alone, it polls no more.
    let before = polls(&m);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        polls(&gw.metrics().await),
        before,
        "polled again without a change"
    );
    let seen = revocation_answered_within_5s(&gw).await;
    task.abort();
    assert!(seen, "the publication was not applied before the next poll");
}

#[tokio::test]
async fn refusals_keep_the_last_good_state() {
    let gw = follower_gateway(None).await;
    let (mut follower, _) = gw.gateway.follower().expect("config").expect("on");
    follower.poll_and_record().await.expect("first load");
    let s = linked_sample(&gw);
    let tp = s.body["travel_permit"].as_str().expect("tp");
    let manifest_path = gw.demo.repo().join("manifest.json");
    let good_v1 = std::fs::read(&manifest_path).expect("manifest");

    // Version 2 is accepted; then the origin misbehaves in every way we know.
    publish_events(
        &gw,
        &json!({"op": "status", "number": tp, "status": "lost"}).to_string(),
    );
    assert_eq!(
        follower.poll_and_record().await.map_err(|r| r.detail()),
        Ok(PollOutcome::Applied(2))
    );
    let good_v2 = std::fs::read(&manifest_path).expect("manifest");

    let mut refused = Vec::new();
    // Rollback: the older, validly signed manifest.
    std::fs::write(&manifest_path, &good_v1).expect("write");
    refused.push(
        follower
            .poll_and_record()
            .await
            .expect_err("rollback")
            .reason,
    );
    // Bad signature: version bumped by hand.
    let text = String::from_utf8(good_v2.clone()).expect("utf8");
    std::fs::write(
        &manifest_path,
        text.replace("\"version\": 2", "\"version\": 9"),
    )
    .expect("write");
    refused.push(
        follower
            .poll_and_record()
            .await
            .expect_err("signature")
            .reason,
    );
    // Truncated manifest.
    std::fs::write(&manifest_path, &good_v2[..good_v2.len() / 2]).expect("write");
    refused.push(
        follower
            .poll_and_record()
            .await
            .expect_err("truncated")
            .reason,
    );
    // A new delta whose object was altered after signing.
    std::fs::write(&manifest_path, &good_v2).expect("write");
    publish_events(
        &gw,
        &json!({"op": "status", "number": tp, "status": "damaged"}).to_string(),
    );
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&manifest_path).expect("m")).expect("json");
    let hash = m["signed"]["deltas"][1]["hash"]
        .as_str()
        .expect("delta hash")
        .to_owned();
    let obj = gw.demo.repo().join("objects").join(&hash);
    let mut bytes = std::fs::read(&obj).expect("object");
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&obj, &bytes).expect("write");
    refused.push(follower.poll_and_record().await.expect_err("hash").reason);
    // The object is missing altogether.
    std::fs::remove_file(&obj).expect("rm");
    refused.push(
        follower
            .poll_and_record()
            .await
            .expect_err("missing")
            .reason,
    );

    // Signed by a key nobody trusts.
    let good_v3 = std::fs::read(&manifest_path).expect("manifest");
    let mut m3: permitgate::snapshot::Manifest = serde_json::from_value(
        serde_json::from_slice::<serde_json::Value>(&good_v3).expect("json")["signed"].clone(),
    )
    .expect("manifest");
    let stranger = permitgate::key_files::generate_signing_key();
    std::fs::write(
        &manifest_path,
        SignedManifest::sign(&m3, &stranger).expect("sign"),
    )
    .expect("write");
    refused.push(
        follower
            .poll_and_record()
            .await
            .expect_err("unknown key")
            .reason,
    );
    // Validly signed, the object intact, but the delta claims to start from a version we
    // do not hold.
    bytes[last] ^= 1;
    std::fs::write(&obj, &bytes).expect("restore object");
    m3.deltas[1].from_version = 7;
    let real = load_signing_key(&gw.demo.publisher_key()).expect("key");
    std::fs::write(
        &manifest_path,
        SignedManifest::sign(&m3, &real).expect("sign"),
    )
    .expect("write");
    refused.push(follower.poll_and_record().await.expect_err("chain").reason);

    const REASONS: [RefusalReason; 7] = [
        RefusalReason::Rollback,
        RefusalReason::BadSignature,
        RefusalReason::Manifest,
        RefusalReason::HashMismatch,
        RefusalReason::Fetch,
        RefusalReason::UnknownKey,
        RefusalReason::Chain,
    ];
    assert_eq!(refused, REASONS);
    let mut c = gw.client("bank").await;
    let v = c.post_json(&s.path, &s.body).await.json();
    assert_eq!(
        v["travel_permit"]["status"], "lost",
        "still the last good state"
    );
    assert_eq!(v["snapshot"]["version"], 2);
    let m = gw.metrics().await;
    for reason in REASONS.map(RefusalReason::label) {
        assert_eq!(
            metric_value(
                &m,
                &format!("permitgate_replication_failures_total{{reason=\"{reason}\"}}")
            ),
            1.0,
            "{reason}"
        );
    }
    // Every reason exists at 0 from the start.
    for reason in RefusalReason::VARIANTS.iter().map(|r| r.label()) {
        assert!(
            m.contains(&format!(
                "permitgate_replication_failures_total{{reason=\"{reason}\"}}"
            )),
            "{reason}"
        );
    }
}

#[tokio::test]
async fn a_restarted_gateway_serves_its_persisted_state_at_once() {
    let keep = tempfile::tempdir().expect("tempdir");
    let (demo_dir, state) = (keep.path().join("demo"), keep.path().join("state"));
    let opts = || Options {
        replication: true,
        state_dir: Some(state.clone()),
        demo_dir: Some(demo_dir.clone()),
        ..Options::default()
    };
    let first = TestGateway::start_with(opts()).await;
    let (mut follower, _) = first.gateway.follower().expect("config").expect("on");
    follower.poll_and_record().await.expect("load");
    let s = linked_sample(&first);
    let tp = s.body["travel_permit"].as_str().expect("tp").to_owned();
    publish_events(
        &first,
        &json!({"op": "status", "number": tp, "status": "lost"}).to_string(),
    );
    assert_eq!(
        follower.poll_and_record().await.map_err(|r| r.detail()),
        Ok(PollOutcome::Applied(2))
    );
    drop(follower);
    drop(first);

    // The origin moves on to version 3 while no gateway runs. A new gateway with the same
    // state directory is ready before any poll, from its own state: version 2.
    let v3 = publish_events(
        &TestGateway::start_with(Options {
            demo_dir: Some(demo_dir.clone()),
            ..Options::default()
        })
        .await,
        &json!({"op": "status", "number": tp, "status": "damaged"}).to_string(),
    );
    assert_eq!(v3, 3);
    let second = TestGateway::start_with(opts()).await;
    assert!(second.gateway.store.is_ready());
    let mut c = second.client("bank").await;
    let v = c
        .post_json("/v1/document-status", &json!({"number": tp}))
        .await
        .json();
    assert_eq!(v["snapshot"]["version"], 2);
    assert_eq!(v["status"], "lost");
    // Then the origin disappears: polls fail, answers go on.
    std::fs::rename(demo_dir.join("repo"), keep.path().join("origin-gone")).expect("rename");
    let (mut follower, _) = second.gateway.follower().expect("config").expect("on");
    assert_eq!(
        follower.poll_and_record().await.map_err(|r| r.reason),
        Err(RefusalReason::Fetch)
    );
    assert_eq!(
        c.post_json("/v1/document-status", &json!({"number": tp}))
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn twenty_swaps_under_load_fail_no_request_and_mix_no_versions() {
    use std::collections::HashMap;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    let gw = Arc::new(follower_gateway(None).await);
    let (mut follower, _) = gw.gateway.follower().expect("config").expect("on");
    follower.poll_and_record().await.expect("first load");
    let s = linked_sample(&gw);
    let tp = s.body["travel_permit"].as_str().expect("tp").to_owned();

    let stop = Arc::new(AtomicBool::new(false));
    let client = {
        let (gw, stop, s) = (gw.clone(), stop.clone(), s.clone());
        tokio::spawn(async move {
            let mut c = gw.client("bank").await;
            let mut seen = Vec::new();
            // Bounded: stops when told, or after 20 000 requests at the latest.
            for _ in 0..20_000 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let r = c.post_json(&s.path, &s.body).await;
                assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
                let v = r.json();
                seen.push((
                    v["snapshot"]["version"].as_u64().expect("version"),
                    v["travel_permit"]["status"]
                        .as_str()
                        .expect("status")
                        .to_owned(),
                ));
            }
            seen
        })
    };

    let mut expected: HashMap<u64, &str> = HashMap::from([(1, "valid")]);
    let mut kinds = Vec::new();
    for i in 0..20 {
        let status = if i % 2 == 0 { "lost" } else { "valid" };
        // A chain of at most 3 deltas: every 4th publication is a full snapshot.
        let report = gw.publish_changes(
            &json!({"op": "status", "number": tp, "status": status}).to_string(),
            3,
        );
        expected.insert(report.version, status);
        let outcome = follower.poll_and_record().await.expect("accepted");
        kinds.push(outcome);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let seen = client.await.expect("client task");

    assert!(
        kinds
            .iter()
            .filter(|k| matches!(k, PollOutcome::Swapped(_)))
            .count()
            >= 4,
        "{kinds:?}"
    );
    assert!(
        kinds
            .iter()
            .filter(|k| matches!(k, PollOutcome::Applied(_)))
            .count()
            >= 10,
        "{kinds:?}"
    );
    assert!(
        seen.len() > 20,
        "the client kept asking: {} answers",
        seen.len()
    );
    for (version, status) in &seen {
        assert_eq!(
            expected.get(version).copied(),
            Some(status.as_str()),
            "version {version}"
        );
    }
    let versions: std::collections::BTreeSet<u64> = seen.iter().map(|(v, _)| *v).collect();
    assert!(
        versions.len() > 2,
        "answers spanned several versions: {versions:?}"
    );
}

#[tokio::test]
async fn an_expired_manifest_marks_answers_stale_and_can_fail_readiness() {
    use permitgate::clock::ManualClock;
    use std::sync::Arc;

    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let clock = Arc::new(ManualClock::at_unix(now));
    let keep = tempfile::tempdir().expect("tempdir");
    let gw = TestGateway::start_with(Options {
        replication: true,
        demo_dir: Some(keep.path().join("demo")),
        replication_extra: "unready_when_stale_for_ms = 1800000".into(),
        clock: Some(clock.clone()),
        ..Options::default()
    })
    .await;
    let (mut follower, _) = gw.gateway.follower().expect("config").expect("on");
    follower.poll_and_record().await.expect("load");
    let s = linked_sample(&gw);
    let tp = s.body["travel_permit"].as_str().expect("tp");
    // This publication's manifest expires in one hour.
    publish_events(
        &gw,
        &json!({"op": "status", "number": tp, "status": "lost"}).to_string(),
    );
    follower.poll_and_record().await.expect("delta");

    let mut c = gw.client("bank").await;
    assert!(c.post_json(&s.path, &s.body).await.json()["snapshot"]
        .get("stale")
        .is_none());
    assert_eq!(c.get("/readyz").await.status, 200);

    // 80 minutes later the origin has said nothing: stale, still ready (grace 30 min
    // after expiry not yet over).
    clock.set_unix(now + 80 * 60);
    let v = c.post_json(&s.path, &s.body).await.json();
    assert_eq!(v["snapshot"]["stale"], true, "{v}");
    assert_eq!(
        v["travel_permit"]["status"], "lost",
        "stale data is still served"
    );
    assert_eq!(c.get("/readyz").await.status, 200);
    follower.poll_and_record().await.expect("nothing new");
    assert_eq!(
        metric_value(&gw.metrics().await, "permitgate_snapshot_stale"),
        1.0
    );

    // Past the grace period: readiness fails so a balancer drains this gateway.
    clock.set_unix(now + 100 * 60);
    c.get("/readyz").await.problem(503, "not-ready");
    assert_eq!(c.post_json(&s.path, &s.body).await.status, 200);
}

/// origin (serves the publisher's repo) → relay (follows the origin over mTLS) → follower
/// (follows the relay over mTLS), default poll interval. Asserts the change arrives;
/// prints the propagation time (docs/benchmarks.md records it).
#[tokio::test]
async fn a_change_propagates_through_a_relay_chain() {
    let keep = tempfile::tempdir().expect("tempdir");
    let demo_dir = keep.path().join("demo");
    let origin = watching_origin(Some(&demo_dir)).await;
    let hop = |from: &TestGateway, state: &str| {
        following(from, &demo_dir, &keep.path().join(state), 1000)
    };
    let relay = TestGateway::start_with(hop(&origin, "relay-state")).await;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let (f, interval) = relay.gateway.follower().expect("config").expect("on");
    let relay_task = tokio::spawn(f.run(interval, stop_rx.clone()));
    let follower = TestGateway::start_with(hop(&relay, "follower-state")).await;
    let (f, interval) = follower.gateway.follower().expect("config").expect("on");
    let follower_task = tokio::spawn(f.run(interval, stop_rx));

    let s = linked_sample(&origin);
    let mut c = follower.client("bank").await;
    let mut ready = false;
    for _ in 0..100 {
        if c.get("/readyz").await.status == 200 {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        ready,
        "the follower never loaded the origin's data through the relay"
    );
    assert_eq!(
        c.post_json(&s.path, &s.body).await.json()["travel_permit"]["status"],
        "valid"
    );
    // Both followers in their long-polls: the relay's at the origin, the follower's at
    // the relay.
    for hop in [&origin, &relay] {
        hop.wait_metric_within(
            "permitgate_admission_in_use{pool=\"relay_places\"}",
            1.0,
            Duration::from_secs(5),
        )
        .await;
    }

    let tp = s.body["travel_permit"].as_str().expect("tp");
    publish_events(
        &origin,
        &json!({"op": "status", "number": tp, "status": "lost"}).to_string(),
    );
    let published = std::time::Instant::now();
    let mut elapsed = None;
    for _ in 0..200 {
        let v = c.post_json(&s.path, &s.body).await.json();
        if v["travel_permit"]["status"] == "lost" {
            elapsed = Some(published.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = stop_tx.send(true);
    relay_task.abort();
    follower_task.abort();
    let elapsed = elapsed.expect("the change never reached the follower");
    println!(
        "propagation origin -> relay -> follower: {} ms",
        elapsed.as_millis()
    );
    // The relay's metrics show it served the follower over the relay endpoints.
    let m = relay.metrics().await;
    assert!(
        metric_value(&m, "permitgate_requests_total{outcome=\"ok\",partner=\"relay\",route=\"replication_object\"}") >= 1.0,
        "{m}"
    );
}

#[tokio::test]
async fn relay_endpoints_need_the_replicate_scope_and_speak_http_caching() {
    let gw = TestGateway::start().await;
    let mut bank = gw.client("bank").await;
    bank.get("/v1/replication/manifest")
        .await
        .problem(403, "scope-missing");

    let mut relay = gw.client("relay").await;
    let r = relay.get("/v1/replication/manifest").await;
    assert_eq!(r.status, 200);
    let tag = r
        .headers
        .get("etag")
        .and_then(|v| v.to_str().ok())
        .expect("etag")
        .to_owned();
    let manifest: serde_json::Value = r.json();
    let hash = manifest["signed"]["snapshot"]["hash"]
        .as_str()
        .expect("hash");

    // Same tag: 304 at once without wait_ms, and after the wait with it.
    let cond = |wait: &str| {
        http::Request::get(format!("/v1/replication/manifest{wait}"))
            .header("host", "localhost")
            .header("if-none-match", tag.clone())
            .body(http_body_util::Full::new(bytes::Bytes::new()))
            .expect("request")
    };
    let r = relay.try_request_with(cond("")).await.expect("response");
    assert_eq!(r.status, 304);
    let started = std::time::Instant::now();
    let r = relay
        .try_request_with(cond("?wait_ms=300"))
        .await
        .expect("response");
    assert_eq!(r.status, 304);
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "the request was held"
    );

    let r = relay.get(&format!("/v1/replication/objects/{hash}")).await;
    assert_eq!(r.status, 200);
    assert_eq!(blake3::hash(&r.body).to_hex().as_str(), hash);
    relay
        .get(&format!("/v1/replication/objects/{}", "0".repeat(64)))
        .await
        .problem(404, "not-found");
    relay
        .get("/v1/replication/objects/..%2F..%2Fetc%2Fpasswd")
        .await
        .problem(404, "not-found");
}

#[tokio::test]
async fn a_poll_that_fails_halfway_through_a_chain_resumes_where_it_stopped() {
    let gw = follower_gateway(None).await;
    let (mut follower, _) = gw.gateway.follower().expect("config").expect("on");
    follower.poll_and_record().await.expect("first load");
    let s = linked_sample(&gw);
    // Two publications between polls; the second delta's object is damaged in transit.
    let (_, second) = two_publications(&gw);
    let good = std::fs::read(&second).expect("object");
    std::fs::write(&second, &good[..good.len() - 1]).expect("truncate");

    let refused = follower
        .poll_and_record()
        .await
        .expect_err("second delta broken");
    assert_eq!(refused.reason, RefusalReason::HashMismatch);
    let mut c = gw.client("bank").await;
    let v = c.post_json(&s.path, &s.body).await.json();
    assert_eq!(v["snapshot"]["version"], 2, "the first delta was applied");
    assert_eq!(v["travel_permit"]["status"], "lost");

    std::fs::write(&second, &good).expect("repair");
    assert_eq!(
        follower.poll_and_record().await.map_err(|r| r.detail()),
        Ok(PollOutcome::Applied(3))
    );
    let v = c.post_json(&s.path, &s.body).await.json();
    assert_eq!(v["residence_permit"]["status"], "revoked");
}

/// A source that withholds the second of two new deltas: the first is applied, but the
/// data served is as fresh as the last manifest whose whole chain is in, not as the newest
/// manifest, which it is behind. Once the chain is complete, the new expiry holds.
#[tokio::test]
async fn a_withheld_delta_leaves_the_expiry_of_the_last_complete_chain() {
    let gw = follower_gateway(None).await;
    let (mut follower, _) = gw.gateway.follower().expect("config").expect("on");
    follower.poll_and_record().await.expect("first load");
    let served = || {
        (*gw.gateway
            .store
            .current()
            .as_ref()
            .expect("served")
            .view()
            .info())
        .clone()
    };
    let expiry = || served().expires_at;
    let held = expiry();
    let (m, second) = two_publications(&gw);
    let newest = time::OffsetDateTime::parse(
        m["signed"]["expires_at"].as_str().expect("expires_at"),
        &time::format_description::well_known::Rfc3339,
    )
    .expect("rfc3339");
    assert_ne!(newest, held, "the test needs two different expiries");
    let good = std::fs::read(&second).expect("object");
    std::fs::remove_file(&second).expect("withhold");

    follower
        .poll_and_record()
        .await
        .expect_err("second delta withheld");
    let version = served().version;
    assert_eq!(version, 2, "the first delta was applied");
    assert_eq!(expiry(), held, "a partial chain does not extend the expiry");

    std::fs::write(&second, &good).expect("publish it after all");
    assert_eq!(
        follower.poll_and_record().await.map_err(|r| r.detail()),
        Ok(PollOutcome::Applied(3))
    );
    assert_eq!(expiry(), newest);
}

/// Publications in quick succession through a relay's long-poll: each reaches the
/// follower at once, the second not only at the follower's next poll (a minute away here;
/// a follower used to wait out the rest of its interval after a poll that brought news).
#[tokio::test]
async fn back_to_back_publications_pass_a_relay_without_waiting_for_the_interval() {
    let keep = tempfile::tempdir().expect("tempdir");
    let demo_dir = keep.path().join("demo");
    let origin = watching_origin(Some(&demo_dir)).await;
    let follower = TestGateway::start_with(following(
        &origin,
        &demo_dir,
        &keep.path().join("follower-state"),
        60_000,
    ))
    .await;
    let (f, interval) = follower.gateway.follower().expect("config").expect("on");
    let (_stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(f.run(interval, stop_rx));

    let mut seen = Vec::new();
    for status in ["lost", "revoked", "valid"] {
        seen.push((
            status,
            status_answered_within_5s(&origin, &follower, status).await,
        ));
    }
    task.abort();
    assert!(seen.iter().all(|(_, ok)| *ok), "{seen:?}");
}

/// A relay answers with the manifest its own follower accepted (read once per accepted
/// change, then from memory), never with whatever the file holds: a manifest written over
/// the repository's that does not verify is not passed on; a good one is, once accepted.
/// Small objects (deltas) are served from memory once read, byte for byte.
#[tokio::test]
async fn a_relay_passes_on_only_the_manifests_it_accepted() {
    let gw = watching_origin(None).await;
    let mut relay = gw.client("relay").await;
    let manifest_path = gw.demo.repo().join("manifest.json");
    let before = relay.get("/v1/replication/manifest").await;
    assert_eq!(before.status, 200);

    // Not signed by the publisher: the origin's follower refuses it, the relay keeps the
    // manifest it had.
    let forged = String::from_utf8(before.body.to_vec())
        .expect("utf8")
        .replace("\"version\": 1", "\"version\": 99");
    assert_ne!(
        forged.as_bytes(),
        &before.body[..],
        "the forgery changed something"
    );
    std::fs::write(&manifest_path, forged).expect("write");
    gw.wait_metric_at_least(
        "permitgate_replication_failures_total{reason=\"bad_signature\"}",
        1.0,
    )
    .await;
    let r = relay.get("/v1/replication/manifest").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, before.body, "the forged manifest was relayed");

    // A real publication is accepted and relayed, with its delta.
    std::fs::write(&manifest_path, &before.body).expect("restore");
    let version = publish_events(
        &gw,
        &json!({"op": "status", "number": linked_sample(&gw).body["travel_permit"], "status": "lost"})
            .to_string(),
    );
    let mut relayed = None;
    for _ in 0..100 {
        let r = relay.get("/v1/replication/manifest").await;
        let m: serde_json::Value = r.json();
        if m["signed"]["deltas"][0]["version"] == version {
            relayed = Some(m);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let m = relayed.expect("the publication was never relayed");
    let hash = m["signed"]["deltas"][0]["hash"]
        .as_str()
        .expect("delta hash");
    for _ in 0..2 {
        let r = relay.get(&format!("/v1/replication/objects/{hash}")).await;
        assert_eq!(r.status, 200);
        assert_eq!(blake3::hash(&r.body).to_hex().as_str(), hash);
    }
}

/// A source that cannot be reached says why, the whole chain: not hyper's "client error
/// (Connect)" alone but the refusal under it.
#[tokio::test]
async fn an_unreachable_source_says_why() {
    use permitgate::replication::{S3Settings, Source};
    let closed = crate::common::process::free_port();
    let gw = TestGateway::start().await;
    let tls = permitgate::tls::client_config(&gw.demo.pki.ca_cert(), None).expect("tls");
    let https: permitgate::replication::SourceUrl = format!("https://{closed}/v1/replication")
        .parse()
        .expect("url");
    let source = Source::new(&https, Some(tls), &S3Settings::default()).expect("source");
    let e = source.manifest(None).await.err().expect("refused");
    let said = permitgate::report::Report(&e).to_string();
    assert!(
        said.contains("client error (Connect)") && said.contains("Connection refused"),
        "{said}"
    );
}
