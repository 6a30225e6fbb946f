//! kill -9 at any point of a download, apply or swap leaves a state directory that a
//! restarted gateway loads and serves.

use std::time::{Duration, Instant};

use crate::common::config_edit;
use crate::common::process::{free_port, ready, start};

use permitgate::key_files::{load_signing_key, load_verifying_key, HashKey};
use permitgate::publish::{publish_changes, PublishOptions};
use permitgate::snapshot::{load_repo, MANIFEST_FILE};

#[test]
fn kill_9_during_downloads_and_swaps_leaves_a_servable_state() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (listen, metrics) = (free_port(), free_port());
    // Big enough that fetching, verifying and installing take a while in a debug build.
    let demo = permitgate_testkit::demo_data::prepare(
        &dir.path().join("origin"),
        &permitgate_testkit::demo_data::options(200_000, listen, metrics),
    );
    let state = dir.path().join("state");
    // Next to the demo's config: its relative paths (pki/, keys/) resolve alike.
    let config = demo.config.with_file_name("follower.toml");
    let base = std::fs::read_to_string(&demo.config).expect("config");
    let text = config_edit::apply(
        &base,
        vec![
            config_edit::remove("snapshot.repo"),
            config_edit::remove("origin"),
            config_edit::merge(
                "replication",
                &format!(
                    "source = \"file://{}\"\nstate_dir = \"{}\"\npoll_interval_ms = 50\n",
                    demo.repo().display(),
                    state.display()
                ),
            ),
        ],
    );
    std::fs::write(&config, text).expect("write config");

    let trusted = [load_verifying_key(&demo.publisher_pub()).expect("pub")];
    let hk = HashKey::load(&demo.hash_key()).expect("hash key");
    let sk = load_signing_key(&demo.publisher_key()).expect("key");
    let tp = demo.samples[0].body["travel_permit"]
        .as_str()
        .expect("tp")
        .to_owned();
    let changes = dir.path().join("changes.jsonl");

    for (i, delay_ms) in [0u64, 5, 15, 30, 60, 100, 150, 220, 300, 450, 600, 800]
        .into_iter()
        .enumerate()
    {
        // New data at the origin every round: deltas, and a full snapshot every third.
        let status = if i % 2 == 0 { "lost" } else { "valid" };
        std::fs::write(
            &changes,
            format!(r#"{{"op":"status","number":"{tp}","status":"{status}"}}"#),
        )
        .expect("write");
        publish_changes(
            &changes,
            &demo.repo(),
            &sk,
            &hk,
            &PublishOptions {
                version: None,
                expires_in: time::Duration::hours(1),
                now: time::OffsetDateTime::now_utc(),
            },
            2,
        )
        .expect("publish");

        let mut child = start(&config);
        std::thread::sleep(Duration::from_millis(delay_ms));
        child.kill().expect("kill -9");
        let _ = child.wait();
        // Whatever the moment, the state directory is empty or a valid repository.
        if state.join(MANIFEST_FILE).exists() {
            let repo = load_repo(&state, &trusted, Some(&hk)).unwrap_or_else(|e| {
                panic!("round {i} (killed after {delay_ms} ms): state unusable: {e}")
            });
            assert!(repo.manifest.manifest.version >= 1);
        }
    }

    // A last restart becomes ready and catches up with the origin.
    let mut child = start(&config);
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut ok = false;
    while Instant::now() < deadline {
        if ready(metrics) {
            ok = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let origin = load_repo(&demo.repo(), &trusted, Some(&hk)).expect("origin");
    let mut caught_up = false;
    while ok && Instant::now() < deadline {
        if let Ok(r) = load_repo(&state, &trusted, Some(&hk)) {
            if r.manifest.manifest.version == origin.manifest.manifest.version {
                caught_up = true;
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().expect("kill");
    let _ = child.wait();
    assert!(ok, "the restarted gateway never became ready");
    assert!(
        caught_up,
        "the restarted gateway never caught up with the origin"
    );
}

/// kill -9 under load, again and again on one audit directory: every request answered
/// (200 seen by the client) has its record, and the trail verifies. An answer leaves only
/// once its batch is written; it used to leave first, and five to nine answered requests a
/// kill had no record while `audit verify` said the chain was intact. The request workers
/// write the batches themselves, the writer thread (nice 10) only fsyncs and takes what
/// they leave; every other round the gateway runs on one CPU, with a single worker: the
/// promise holds there too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_load_leaves_no_answered_request_unrecorded() {
    use crate::common::process::{free_port, wait_ready};
    use crate::common::Client;
    use std::sync::{Arc, Mutex};

    let dir = tempfile::tempdir().expect("tempdir");
    let (listen, metrics) = (free_port(), free_port());
    let demo = permitgate_testkit::demo_data::prepare(
        dir.path(),
        &permitgate_testkit::demo_data::options(300, listen, metrics),
    );
    config_edit::edit_file(
        &demo.config,
        vec![config_edit::set("server.max_queue_delay_ms", 0)],
    );
    let link = crate::common::sample(&demo, "linked_pair").clone();
    let body = bytes::Bytes::from(serde_json::to_vec(&link.body).expect("json"));
    let answered = Arc::new(Mutex::new(Vec::<String>::new()));
    for round in 0..10u32 {
        let one_cpu = round % 2 == 1;
        let mut gw = if one_cpu {
            crate::common::process::start_on_one_cpu(&demo.config)
        } else {
            start(&demo.config)
        };
        assert!(wait_ready(metrics, Duration::from_secs(30)), "not ready");
        let writer_nice = crate::common::process::thread_nice(gw.id(), "audit-writer");
        assert_eq!(
            writer_nice,
            Some(10),
            "the audit writer's nice value, round {round}"
        );
        let stop = Instant::now() + Duration::from_millis(200 + 37 * u64::from(round));
        let mut clients = Vec::new();
        for c in 0..16u32 {
            let (answered, body, path) = (answered.clone(), body.clone(), link.path.clone());
            let (ca, cert, key) = (
                demo.pki.ca_cert(),
                demo.pki.partner_cert("bank"),
                demo.pki.partner_key("bank"),
            );
            clients.push(tokio::spawn(async move {
                let Ok(mut client) = Client::connect(listen, &ca, Some((&cert, &key))).await else {
                    return;
                };
                // Until the gateway is killed under it (bounded: it stops answering).
                for i in 0..1_000_000u32 {
                    let id = format!("k{round}-{c}-{i}");
                    let req = http::Request::post(path.as_str())
                        .header("host", "localhost")
                        .header("content-type", "application/json")
                        .header("x-request-id", id.as_str())
                        .body(http_body_util::Full::new(body.clone()))
                        .expect("request");
                    match client.try_request_with(req).await {
                        Ok(r) if r.status == 200 => answered.lock().expect("answered").push(id),
                        _ => return,
                    }
                }
            }));
        }
        while Instant::now() < stop {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        gw.kill().expect("kill -9");
        let _ = gw.wait();
        for c in clients {
            let _ = c.await;
        }
    }
    let answered = answered.lock().expect("answered").clone();
    assert!(answered.len() > 100, "load ran: {} answers", answered.len());
    let audit = dir.path().join("audit");
    let logged: std::collections::HashSet<String> = permitgate::audit::verify::log_files(&audit)
        .expect("files")
        .iter()
        .flat_map(|f| {
            std::fs::read_to_string(f)
                .expect("read")
                .lines()
                .filter_map(|l| {
                    let v: serde_json::Value = serde_json::from_str(l).ok()?;
                    v["request_id"].as_str().map(str::to_owned)
                })
                .collect::<Vec<_>>()
        })
        .collect();
    let missing: Vec<&String> = answered.iter().filter(|id| !logged.contains(*id)).collect();
    assert!(
        missing.is_empty(),
        "{} of {} answered requests have no record: {:?}",
        missing.len(),
        answered.len(),
        &missing[..missing.len().min(10)]
    );
    let out = crate::common::permitgate(&["audit", "verify", &audit.to_string_lossy()]);
    crate::common::assert_success(&out);
}
