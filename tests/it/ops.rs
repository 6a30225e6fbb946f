//! What SREs rely on: every metric the dashboard and the alert rules name is one the
//! gateway exports; the alert rules pass promtool's unit tests; a real Prometheus scrapes a
//! real gateway and has its series.
//!
//! promtool and prometheus come from Debian's `prometheus` package (.ci/run installs it).
//! Without them the two tests that need them say so and pass, unless
//! PERMITGATE_REQUIRE_PROMETHEUS=1 (set by CI), where their absence fails.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::process::free_port;
use crate::common::TestGateway;

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// `permitgate_…` identifiers in `text`.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("permitgate_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        out.insert(tail[..end].to_owned());
        rest = &tail[end..];
    }
    out
}

/// Families the gateway exports (`# TYPE` lines), with histogram series names.
fn exported(metrics: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in metrics.lines() {
        let mut parts = line.split_whitespace();
        if let (Some("#"), Some("TYPE"), Some(name), Some(kind)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        {
            out.insert(name.to_owned());
            if kind == "histogram" {
                for suffix in ["_bucket", "_sum", "_count"] {
                    out.insert(format!("{name}{suffix}"));
                }
            }
        }
    }
    out
}

#[tokio::test]
async fn every_metric_in_the_dashboard_and_alert_rules_is_exported() {
    let gw = TestGateway::start().await;
    // Request series exist from their first use on.
    assert_eq!(gw.client("bank").await.get("/v1/keys").await.status, 200);
    let exported = exported(&gw.metrics().await);
    let dashboard =
        std::fs::read_to_string(repo("config/grafana/permitgate.json")).expect("dashboard");
    let dash: serde_json::Value = serde_json::from_str(&dashboard).expect("dashboard is JSON");
    let exprs: Vec<&str> = dash["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .flat_map(|p| p["targets"].as_array().into_iter().flatten())
        .filter_map(|t| t["expr"].as_str())
        .collect();
    assert!(exprs.len() >= 16, "the dashboard lost panels");
    let alerts = std::fs::read_to_string(repo("config/prometheus/alerts.yml")).expect("alerts");
    let named: BTreeSet<String> = metric_names(&exprs.join("\n"))
        .into_iter()
        .chain(metric_names(&alerts))
        .collect();
    let missing: Vec<&String> = named.iter().filter(|n| !exported.contains(*n)).collect();
    assert!(missing.is_empty(), "named but not exported: {missing:?}");
    // And the other way round: the dashboard shows every family the gateway has.
    let shown = metric_names(&exprs.join("\n"));
    let unshown: Vec<&String> = exported
        .iter()
        .filter(|n| !n.ends_with("_sum") && !n.ends_with("_count"))
        .filter(|n| {
            !shown.contains(*n)
                && !shown.contains(&format!("{n}_bucket"))
                && !n.ends_with("_bucket")
                && *n != "permitgate_build_info"
        })
        .collect();
    assert!(unshown.is_empty(), "exported but on no panel: {unshown:?}");
}

/// The path of a Debian `prometheus` package tool, or `None` (test skipped) when it is not
/// installed and CI does not require it.
fn tool(name: &str) -> Option<PathBuf> {
    crate::common::optional_tool(
        name,
        "PERMITGATE_REQUIRE_PROMETHEUS",
        "apt-get install prometheus",
    )
}

#[test]
fn the_alert_rules_and_scrape_config_pass_promtool() {
    let Some(promtool) = tool("promtool") else {
        return;
    };
    let dir = repo("config/prometheus");
    for args in [
        vec!["check", "config", "prometheus.yml"],
        vec!["check", "rules", "alerts.yml"],
        vec!["test", "rules", "alerts_test.yml"],
    ] {
        let out = Command::new(&promtool)
            .args(&args)
            .current_dir(&dir)
            .output()
            .expect("run promtool");
        assert!(
            out.status.success(),
            "promtool {args:?}:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// GET on Prometheus' HTTP API; the JSON body.
fn api(addr: SocketAddr, path_and_query: &str) -> Option<serde_json::Value> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.write_all(format!("GET {path_and_query} HTTP/1.0\r\nHost: localhost\r\n\r\n").as_bytes())
        .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let body = out.split_once("\r\n\r\n")?.1;
    serde_json::from_str(body).ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_scrapes_the_gateway() {
    let Some(prometheus) = tool("prometheus") else {
        return;
    };
    let gw = TestGateway::start().await;
    // Traffic first, so labelled series exist.
    let link = gw.sample("linked_pair").clone();
    let mut bank = gw.client("bank").await;
    assert_eq!(bank.post_json(&link.path, &link.body).await.status, 200);

    let target = gw.running.metrics_addr.expect("metrics listener");
    let web = free_port();
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: permitgate\n    static_configs:\n      - targets: [\"{target}\"]\n"
        ),
    )
    .expect("config");
    let mut child = Command::new(prometheus)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address={web}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start prometheus");

    let deadline = Instant::now() + Duration::from_secs(60);
    let mut names = BTreeSet::new();
    let mut up = None;
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let Some(v) = api(web, "/api/v1/query?query=permitgate_requests_total") else {
            continue;
        };
        let found = v["data"]["result"].as_array().is_some_and(|r| {
            r.iter().any(|s| {
                s["metric"]["partner"] == "bank"
                    && s["metric"]["route"] == "link_check"
                    && s["metric"]["outcome"] == "ok"
                    && s["value"][1] == "1"
            })
        });
        if found {
            up = api(web, "/api/v1/query?query=up%7Bjob%3D%22permitgate%22%7D");
            if let Some(v) = api(web, "/api/v1/label/__name__/values") {
                names = v["data"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|n| n.as_str())
                    .filter(|n| n.starts_with("permitgate_"))
                    .map(str::to_owned)
                    .collect();
            }
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let up = up.expect("Prometheus never had the gateway's request counter");
    assert_eq!(up["data"]["result"][0]["value"][1], "1", "{up}");
    let exported = exported(&gw.metrics().await);
    let missing: Vec<&String> = exported
        .iter()
        .filter(|n| !n.ends_with("_bucket") && !n.ends_with("_sum") && !n.ends_with("_count"))
        .filter(|n| !names.contains(*n) && !names.contains(&format!("{n}_count")))
        .collect();
    assert!(
        missing.is_empty(),
        "exported but not in Prometheus: {missing:?}"
    );
}

/// The ops listener runs on the control runtime (src/server/side.rs): probes and metrics
/// are answered while every request worker is busy. Here the request runtime (this test's
/// own thread) is blocked outright while another thread asks for /readyz and /metrics.
#[tokio::test]
async fn probes_are_answered_while_the_request_workers_are_stuck() {
    let gw = TestGateway::start().await;
    let ops = gw.running.metrics_addr.expect("ops listener");
    let (tx, rx) = std::sync::mpsc::channel();
    let asker = std::thread::spawn(move || {
        for path in ["/readyz", "/metrics"] {
            let answer = crate::common::process::ops_get(ops, path).unwrap_or_default();
            let _ = tx.send((path, answer));
        }
    });
    // Blocking, on purpose: nothing on the request runtime runs until both answers came
    // (or ten seconds passed).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let answered: Vec<(&str, String)> = (0..2)
        .map_while(|_| {
            rx.recv_timeout(deadline.saturating_duration_since(std::time::Instant::now()))
                .ok()
        })
        .collect();
    assert_eq!(answered.len(), 2, "answered while stuck: {answered:?}");
    for (path, answer) in &answered {
        let status = answer.split_whitespace().nth(1);
        assert_eq!(status, Some("200"), "{path}: {answer:.80}");
    }
    assert!(
        answered[1].1.contains("permitgate_requests_total")
            || answered[1].1.contains("permitgate_build_info")
    );
    asker.join().expect("asker");
}
