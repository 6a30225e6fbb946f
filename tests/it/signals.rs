//! The binary under signals: SIGTERM drains (in-flight requests finish, the process exits
//! 0, a client failing over to a second instance loses nothing) and SIGHUP reloads.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::process::{
    free_port, ops_get, signal, start, start_logging, wait_exit, wait_ready,
};
use crate::common::{
    client_config, config_edit, finish_request, metric_value, start_request, Client,
};
use http::Method;
use permitgate::demo::Demo;
use rustls::pki_types::ServerName;

const POST: Method = Method::POST;
use tokio_rustls::TlsConnector;

struct Instance {
    config: PathBuf,
    listen: SocketAddr,
    metrics: SocketAddr,
}

/// Demo data in `dir`, and one config per instance (own ports, same data).
fn instances(dir: &Path, n: usize, server_extra: &str) -> (Demo, Vec<Instance>) {
    let ports: Vec<(SocketAddr, SocketAddr)> = (0..n).map(|_| (free_port(), free_port())).collect();
    let demo = permitgate_testkit::demo_data::prepare(
        dir,
        &permitgate_testkit::demo_data::options(300, ports[0].0, ports[0].1),
    );
    let text = std::fs::read_to_string(&demo.config).expect("config");
    let out = ports
        .iter()
        .enumerate()
        .map(|(i, &(listen, metrics))| {
            let config = demo.config.with_file_name(format!("instance-{i}.toml"));
            let t = config_edit::apply(
                &text,
                vec![
                    config_edit::merge("server", server_extra),
                    // No queue-delay shedding: the machine is shared with other tests
                    // (crate::common::TestGateway).
                    config_edit::set("server.max_queue_delay_ms", 0),
                    config_edit::set("server.listen", listen.to_string()),
                    config_edit::set("server.metrics_listen", metrics.to_string()),
                    config_edit::set("audit.dir", format!("audit-{i}")),
                ],
            );
            std::fs::write(&config, t).expect("write config");
            Instance {
                config,
                listen,
                metrics,
            }
        })
        .collect();
    (demo, out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_and_a_client_failing_over_loses_no_request() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (demo, inst) = instances(
        dir.path(),
        2,
        "drain_timeout_ms = 10000\nreload_poll_interval_ms = 0",
    );
    let mut a = start(&inst[0].config);
    let mut b = start(&inst[1].config);
    for i in &inst {
        assert!(
            wait_ready(i.metrics, Duration::from_secs(30)),
            "instance never ready"
        );
    }
    let sample = crate::common::sample(&demo, "linked_pair");
    let (path, body) = (sample.path.clone(), sample.body.to_string());
    let ca = demo.pki.ca_cert();
    let (cert, key) = (demo.pki.partner_cert("bank"), demo.pki.partner_key("bank"));

    // A request in flight when SIGTERM arrives: head sent, body not finished.
    let cfg = {
        let mut c = (*client_config(&ca, Some((&cert, &key)))).clone();
        c.alpn_protocols = vec![b"http/1.1".to_vec()];
        Arc::new(c)
    };
    let tcp = tokio::net::TcpStream::connect(inst[0].listen)
        .await
        .expect("connect");
    let mut slow = TlsConnector::from(cfg)
        .connect(ServerName::try_from("localhost").expect("name"), tcp)
        .await
        .expect("handshake");
    start_request(&mut slow, &path, &body).await;

    // Clients on keep-alive connections to A; a request that fails there is sent to B,
    // and from then on that client uses B.
    let (ok_a, ok_b, failed) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
    );
    let deadline = Instant::now() + Duration::from_millis(1500);
    let mut workers = Vec::new();
    for _ in 0..3 {
        let (ok_a, ok_b, failed) = (ok_a.clone(), ok_b.clone(), failed.clone());
        let (ca, cert, key, path, body) = (
            ca.clone(),
            cert.clone(),
            key.clone(),
            path.clone(),
            body.clone(),
        );
        let (addr_a, addr_b) = (inst[0].listen, inst[1].listen);
        workers.push(tokio::spawn(async move {
            let mut on_a = Client::connect(addr_a, &ca, Some((&cert, &key))).await.ok();
            let mut on_b: Option<Client> = None;
            for _ in 0..5000 {
                if Instant::now() > deadline {
                    break;
                }
                if let Some(c) = on_a.as_mut() {
                    match c
                        .try_request(POST, &path, Some("application/json"), body.clone())
                        .await
                    {
                        Ok(r) if r.status == 200 => {
                            ok_a.fetch_add(1, Ordering::Relaxed);
                            continue;
                        }
                        _ => on_a = None,
                    }
                }
                if on_b.is_none() {
                    on_b = Client::connect(addr_b, &ca, Some((&cert, &key))).await.ok();
                }
                let answered = match on_b.as_mut() {
                    Some(c) => {
                        c.try_request(POST, &path, Some("application/json"), body.clone())
                            .await
                    }
                    None => {
                        failed.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                };
                match answered {
                    Ok(r) if r.status == 200 => ok_b.fetch_add(1, Ordering::Relaxed),
                    _ => failed.fetch_add(1, Ordering::Relaxed),
                };
            }
        }));
    }
    // The clients are answered by A before it is told to stop.
    for _ in 0..250 {
        if ok_a.load(Ordering::Relaxed) > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(ok_a.load(Ordering::Relaxed) > 0, "A answered nothing");
    signal(&a, "TERM");
    // A has the signal once it stops accepting connections; it must still be running.
    let mut accepting = true;
    for _ in 0..250 {
        accepting = tokio::net::TcpStream::connect(inst[0].listen).await.is_ok();
        if !accepting {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!accepting, "A still accepts connections after SIGTERM");
    assert!(
        a.try_wait().expect("wait").is_none(),
        "A exited with a request in flight"
    );

    // The in-flight request completes on A after SIGTERM.
    let answer = finish_request(&mut slow, &body).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    let status = wait_exit(&mut a, Duration::from_secs(10)).expect("A exits after draining");
    assert!(status.success(), "A exited with {status}");
    for w in workers {
        w.await.expect("worker");
    }
    let _ = b.kill();
    let _ = b.wait();
    let (ok_a, ok_b, failed) = (
        ok_a.load(Ordering::Relaxed),
        ok_b.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed),
    );
    assert_eq!(
        failed, 0,
        "requests lost: {failed} (A served {ok_a}, B {ok_b})"
    );
    assert!(ok_a > 0 && ok_b > 0, "A served {ok_a}, B {ok_b}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_partner_table() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (demo, inst) = instances(dir.path(), 1, "reload_poll_interval_ms = 0");
    let mut gw = start(&inst[0].config);
    assert!(
        wait_ready(inst[0].metrics, Duration::from_secs(30)),
        "never ready"
    );
    let sample = crate::common::sample(&demo, "linked_pair");
    let (cert, key) = (demo.pki.partner_cert("bank"), demo.pki.partner_key("bank"));
    let mut bank = Client::connect(inst[0].listen, &demo.pki.ca_cert(), Some((&cert, &key)))
        .await
        .expect("connect");
    assert_eq!(bank.post_json(&sample.path, &sample.body).await.status, 200);

    config_edit::edit_file(
        &inst[0].config,
        vec![config_edit::partner("bank", |p| {
            p.insert("scopes".into(), config_edit::value("[\"document_status\"]"));
        })],
    );
    signal(&gw, "HUP");

    let mut refused = false;
    for _ in 0..100 {
        let r = bank.post_json(&sample.path, &sample.body).await;
        if r.status == 403 {
            r.problem(403, "scope-missing");
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The reload is counted once it is complete, just after the table is swapped.
    let mut reloads = 0.0;
    for _ in 0..100 {
        let metrics = ops_get(inst[0].metrics, "/metrics").unwrap_or_default();
        reloads = metric_value(&metrics, "permitgate_reloads_total{result=\"ok\"}");
        if reloads >= 1.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    signal(&gw, "TERM");
    let status = wait_exit(&mut gw, Duration::from_secs(10));
    assert!(refused, "SIGHUP did not apply the new partner table");
    assert_eq!(reloads, 1.0);
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_carry_the_request_id_and_never_a_number() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (demo, inst) = instances(dir.path(), 1, "");
    let log = dir.path().join("gateway.log");
    let mut gw = start_logging(
        &inst[0].config,
        &[
            ("PERMITGATE_LOG_FORMAT", "json"),
            ("RUST_LOG", "permitgate=debug"),
        ],
        &log,
    );
    assert!(
        wait_ready(inst[0].metrics, Duration::from_secs(30)),
        "never ready"
    );
    let (cert, key) = (demo.pki.partner_cert("bank"), demo.pki.partner_key("bank"));
    let mut bank = Client::connect(inst[0].listen, &demo.pki.ca_cert(), Some((&cert, &key)))
        .await
        .expect("connect");
    let sample = crate::common::sample(&demo, "linked_pair");
    let travel = sample.body["travel_permit"]
        .as_str()
        .expect("number")
        .to_owned();
    // A valid travel permit with a broken residence permit: refused, and logged.
    let body =
        serde_json::json!({"travel_permit": travel, "residence_permit": "810000199913321234"});
    let req = http::Request::builder()
        .method(POST)
        .uri(&sample.path)
        .header("host", "localhost")
        .header("content-type", "application/json")
        .header("x-request-id", "log-test-1")
        .body(http_body_util::Full::new(bytes::Bytes::from(
            body.to_string(),
        )))
        .expect("request");
    let r = bank.try_request_with(req).await.expect("answer");
    assert_eq!(r.status, 422);
    signal(&gw, "TERM");
    assert!(wait_exit(&mut gw, Duration::from_secs(10)).is_some_and(|s| s.success()));

    let text = std::fs::read_to_string(&log).expect("log");
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(lines.len() >= 3, "{text}");
    let refused = lines
        .iter()
        .find(|l| l["request_id"] == "log-test-1")
        .unwrap_or_else(|| panic!("no log line for the request:\n{text}"));
    assert_eq!(refused["outcome"], "invalid-document-number");
    assert_eq!(refused["partner"], "bank");
    assert_eq!(refused["level"], "DEBUG");
    assert!(!text.contains(&travel), "a document number is in the logs");
    assert!(!text.contains("810000199913321234"));
}

/// A manifest that is a FIFO (a compromised repository's way to hold a reader for ever)
/// is refused at start with the reason, not waited on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fifo_for_a_manifest_stops_the_gateway_with_the_reason() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (demo, inst) = instances(dir.path(), 1, "reload_poll_interval_ms = 0");
    let manifest = demo.repo().join("manifest.json");
    std::fs::remove_file(&manifest).expect("remove manifest");
    let made = std::process::Command::new("mkfifo")
        .arg(&manifest)
        .status()
        .expect("mkfifo");
    assert!(made.success());
    let log = dir.path().join("gateway.log");
    let mut gw = start_logging(&inst[0].config, &[("RUST_LOG", "warn")], &log);
    let status = wait_exit(&mut gw, Duration::from_secs(15));
    let _ = gw.kill();
    let logged = std::fs::read_to_string(&log).expect("log");
    assert!(status.is_some_and(|s| !s.success()), "{logged}");
    assert!(logged.contains("not a regular file"), "{logged}");
}

/// SIGTERM while nothing is served yet (the source is not there): the answers given
/// meanwhile (503 not-ready) keep their audit records.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_before_any_snapshot_is_served_keeps_the_audit_records() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (demo, inst) = instances(dir.path(), 1, "reload_poll_interval_ms = 0");
    follow_nowhere(dir.path(), &inst[0].config);
    let mut gw = start(&inst[0].config);
    let alive = (0..200).any(|_| {
        std::thread::sleep(Duration::from_millis(50));
        ops_get(inst[0].metrics, "/healthz").is_some()
    });
    assert!(alive, "never listening");
    let bank = (demo.pki.partner_cert("bank"), demo.pki.partner_key("bank"));
    let mut c = Client::connect(
        inst[0].listen,
        &demo.pki.ca_cert(),
        Some((&bank.0, &bank.1)),
    )
    .await
    .expect("connect");
    let s = crate::common::sample(&demo, "linked_pair");
    for _ in 0..3 {
        c.post_json(&s.path, &s.body)
            .await
            .problem(503, "not-ready");
    }
    signal(&gw, "TERM");
    let status = wait_exit(&mut gw, Duration::from_secs(15));
    let _ = gw.kill();
    let status = status.expect("exits while loading");
    assert!(status.success(), "{status}");
    let audit = dir.path().join("audit-0");
    let out = crate::common::permitgate(&["audit", "verify", &audit.to_string_lossy()]);
    crate::common::assert_success(&out);
    let logged: String = permitgate::audit::verify::log_files(&audit)
        .expect("files")
        .iter()
        .map(|f| std::fs::read_to_string(f).expect("read"))
        .collect();
    assert_eq!(
        logged.matches("\"outcome\":\"not-ready\"").count(),
        3,
        "{logged}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_says_what_is_served_when_the_source_fails() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_demo, inst) = instances(dir.path(), 1, "reload_poll_interval_ms = 0");
    // A follower whose source is not there and that holds nothing yet.
    follow_nowhere(dir.path(), &inst[0].config);
    let log = dir.path().join("gateway.log");
    let mut gw = start_logging(&inst[0].config, &[("RUST_LOG", "info")], &log);
    let alive = (0..200).any(|_| {
        std::thread::sleep(Duration::from_millis(50));
        std::fs::read_to_string(&log).is_ok_and(|l| l.contains("replication refused"))
    });
    signal(&gw, "TERM");
    let status = wait_exit(&mut gw, Duration::from_secs(15));
    let _ = gw.kill();
    let logged = std::fs::read_to_string(&log).expect("log");
    assert!(alive, "{logged}");
    assert!(status.is_some_and(|s| s.success()), "{logged}");
    assert!(logged.contains("nothing to serve yet"), "{logged}");
    assert!(!logged.contains("serving the last good state"), "{logged}");
    // The start line names the metrics address, not a Rust Option.
    let metrics = inst[0].metrics.to_string();
    assert!(logged.contains(&format!("metrics={metrics}")), "{logged}");
    assert!(!logged.contains("Some("), "{logged}");
}

/// The instance's config follows a directory that is not there, with nothing held yet:
/// it serves, and nothing is ready to serve.
fn follow_nowhere(dir: &Path, config: &Path) {
    config_edit::edit_file(
        config,
        vec![config_edit::merge(
            "replication",
            &format!(
                "source = \"file://{}\"\nstate_dir = \"{}\"\npoll_interval_ms = 100\n",
                dir.join("nowhere").display(),
                dir.join("state").display()
            ),
        )],
    );
}
