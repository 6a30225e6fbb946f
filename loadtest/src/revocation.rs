//! `permitgate-load scenario revocation`: how long a temporary permit's revocation takes
//! from the authority API's answer to a follower behind a relay refusing the permit.
//!
//! Four processes, release build, on loopback, nothing pinned: the origin gateway serving
//! the demo repository (it watches the directory), `permitgate origin` writing into that
//! repository, a relay following the origin gateway over mTLS, and a follower following
//! the relay (both `[replication]` with default settings, long-polling). Each sample: a
//! desk (`desk-01`) issues a permit (reason `forgotten`, a holder whose travel permit is
//! valid), waits `GAP`, revokes it; from the revocation's answer, rail-gate asks the
//! follower to verify the token every millisecond until it answers `revoked`. Targets
//! (issue 27): median <= 100 ms, p99 <= 500 ms.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::Bytes;
use http::header::{HeaderName, CONTENT_TYPE};
use http::Method;
use serde_json::{json, Value};

use permitgate_load::client::{Conn, Connector, Protocol, Target};
use permitgate_load::propagation::rank;

const GATEWAY: &str = "127.0.0.1:18943";
const RELAY: &str = "127.0.0.1:18944";
const FOLLOWER: &str = "127.0.0.1:18945";
const ORIGIN: &str = "127.0.0.1:18946";
const METRICS: [&str; 3] = ["127.0.0.1:19965", "127.0.0.1:19966", "127.0.0.1:19967"];
/// Between an issuance and its revocation: every hop back in its long-poll.
const GAP: Duration = Duration::from_millis(300);
const TIMEOUT: Duration = Duration::from_secs(10);

/// What one round measured.
#[derive(Debug, serde::Serialize)]
pub struct Round {
    /// Revocation answered -> the follower answers `revoked`, ms, in order.
    pub samples_ms: Vec<f64>,
    /// The revocation call itself (decide, publish, fsync, audit), ms.
    pub api_ms: Vec<f64>,
    pub median_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// Revocations the follower never refused within the timeout.
    pub lost: usize,
}

fn sorted(v: &[f64]) -> Vec<f64> {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    s
}

/// Travel permits recorded valid for years in the demo's export.
fn holders(export: &Path) -> anyhow::Result<Vec<String>> {
    let text = std::fs::read_to_string(export).with_context(|| export.display().to_string())?;
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let person: Value = serde_json::from_str(line)?;
        for d in person["documents"].as_array().into_iter().flatten() {
            let number = d["number"].as_str().unwrap_or_default();
            if permitgate::document::TravelPermitNo::parse(number).is_ok()
                && d["status"] == "valid"
                && d["valid_until"].as_str().is_some_and(|u| u > "2028-01-01")
            {
                out.push(number.to_owned());
            }
        }
    }
    Ok(out)
}

async fn call(
    conn: &mut Conn,
    method: Method,
    path: &str,
    headers: &[(HeaderName, &str)],
    body: Value,
) -> anyhow::Result<(u16, Value)> {
    let answer = tokio::time::timeout(
        TIMEOUT,
        conn.request(method, path, headers, Bytes::from(body.to_string()), true),
    )
    .await
    .context("timed out")?
    .map_err(|f| anyhow::anyhow!("{}", f.label()))?;
    let v = serde_json::from_slice(&answer.body).unwrap_or(Value::Null);
    Ok((answer.head.status.as_u16(), v))
}

/// `n` revocations, each timed until the follower refuses the permit.
pub async fn measure(
    origin: Connector,
    follower: Connector,
    holders: &[String],
    n: usize,
    run: &str,
) -> anyhow::Result<Round> {
    let mut desk = origin
        .connect()
        .await
        .map_err(|f| anyhow::anyhow!("origin: {}", f.label()))?;
    let mut gate = follower
        .connect()
        .await
        .map_err(|f| anyhow::anyhow!("follower: {}", f.label()))?;
    let json_type = (CONTENT_TYPE, "application/json");
    let idempotency = HeaderName::from_static("idempotency-key");
    let (mut samples, mut api, mut lost) = (Vec::new(), Vec::new(), 0);
    let mut next = holders.iter();
    for i in 0..n {
        // A holder still below the monthly limit (earlier runs used some).
        let (id, token) = loop {
            let Some(holder) = next.next() else {
                bail!("no holder left below the monthly limit");
            };
            let key = format!("{run}-{i}");
            let (status, v) = call(
                &mut desk,
                Method::POST,
                "/v1/authority/temporary-permits",
                &[json_type.clone(), (idempotency.clone(), &key)],
                json!({"travel_permit": holder, "name": "CHAN Tai Man", "reason": "forgotten", "officer": "load"}),
            )
            .await?;
            match status {
                201 | 200 => {
                    break (
                        v["permit_id"].as_str().unwrap_or_default().to_owned(),
                        v["token"].as_str().unwrap_or_default().to_owned(),
                    )
                }
                409 => continue,
                s => bail!("issuance answered {s}: {v}"),
            }
        };
        tokio::time::sleep(GAP).await;
        let asked = Instant::now();
        let (status, v) = call(
            &mut desk,
            Method::POST,
            &format!("/v1/authority/temporary-permits/{id}/revocation"),
            std::slice::from_ref(&json_type),
            json!({"officer": "load"}),
        )
        .await?;
        if status != 200 {
            bail!("revocation answered {status}: {v}");
        }
        let answered = Instant::now();
        api.push((answered - asked).as_secs_f64() * 1e3);
        let mut seen = None;
        while answered.elapsed() < TIMEOUT {
            let (status, v) = call(
                &mut gate,
                Method::POST,
                "/v1/temporary-permits/verify",
                std::slice::from_ref(&json_type),
                json!({ "token": token }),
            )
            .await?;
            if status == 200 && v["status"] == "revoked" {
                seen = Some(answered.elapsed());
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        match seen {
            Some(d) => samples.push(d.as_secs_f64() * 1e3),
            None => lost += 1,
        }
    }
    let s = sorted(&samples);
    Ok(Round {
        median_ms: rank(&s, 0.5),
        p99_ms: rank(&s, 0.99),
        max_ms: s.last().copied().unwrap_or(f64::NAN),
        samples_ms: samples,
        api_ms: api,
        lost,
    })
}

/// The scenario's arguments it uses.
pub struct Setup {
    pub pg: PathBuf,
    pub dir: PathBuf,
    pub out: PathBuf,
    pub rounds: usize,
    pub revocations: usize,
}

fn config(
    dir: &Path,
    name: &str,
    listen: &str,
    metrics: &str,
    follow: Option<&str>,
) -> anyhow::Result<PathBuf> {
    let mut t: toml::Table = toml::from_str(&std::fs::read_to_string(dir.join("gateway.toml"))?)?;
    let mut table = |name: &str| -> toml::Table {
        t.remove(name)
            .and_then(|v| v.as_table().cloned())
            .unwrap_or_default()
    };
    let mut server = table("server");
    server.insert("listen".into(), listen.into());
    server.insert("metrics_listen".into(), metrics.into());
    let mut audit = table("audit");
    audit.insert("dir".into(), format!("audit-rev-{name}").into());
    let mut snapshot = table("snapshot");
    let mut origin = table("origin");
    match follow {
        Some(source) => {
            snapshot.remove("repo");
            let r: toml::Table = toml::from_str(&format!(
                "source = \"https://localhost:{}/v1/replication\"\nstate_dir = \"state-rev-{name}\"\nca = \"pki/ca.crt\"\nclient_cert = \"pki/partners/relay.crt\"\nclient_key = \"pki/partners/relay.key\"\n",
                source.rsplit(':').next().unwrap_or_default()
            ))?;
            t.insert("replication".into(), r.into());
            let _ = std::fs::remove_dir_all(dir.join(format!("state-rev-{name}")));
        }
        None => {
            origin.insert("listen".into(), ORIGIN.into());
            origin.insert("audit_dir".into(), "audit-rev-origin-api".into());
            t.insert("origin".into(), origin.into());
        }
    }
    t.insert("server".into(), server.into());
    t.insert("audit".into(), audit.into());
    t.insert("snapshot".into(), snapshot.into());
    let _ = std::fs::remove_dir_all(dir.join(format!("audit-rev-{name}")));
    let path = dir.join(format!("revocation-{name}.toml"));
    std::fs::write(&path, toml::to_string(&t)?)?;
    Ok(path)
}

fn ready(metrics: &str, within: Duration) -> bool {
    let until = Instant::now() + within;
    while Instant::now() < until {
        if crate::scenario::http_get(metrics, "/readyz").is_some() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

fn spawn(pg: &Path, args: &[&str], config: &Path, log: &Path) -> anyhow::Result<Child> {
    Command::new(pg)
        .args(args)
        .arg("--config")
        .arg(config)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log)?)
        .spawn()
        .with_context(|| format!("starting {}", pg.display()))
}

fn connector(addr: &str, dir: &Path, cert: &str, key: &str) -> anyhow::Result<Connector> {
    Ok(Connector::new(
        Target {
            addr: addr.parse()?,
            server_name: "localhost".into(),
            ca: dir.join("pki/ca.crt"),
            cert: dir.join(cert),
            key: dir.join(key),
            sources: Vec::new(),
        },
        Protocol::H1,
    )?)
}

/// Runs the rounds; writes each round's JSON, summary.json and table.md to `out`.
pub fn run(s: &Setup) -> anyhow::Result<()> {
    let dir = &s.dir;
    let holders = holders(&dir.join("export.jsonl"))?;
    let gateway = config(dir, "gateway", GATEWAY, METRICS[0], None)?;
    let relay = config(dir, "relay", RELAY, METRICS[1], Some(GATEWAY))?;
    let follower = config(dir, "follower", FOLLOWER, METRICS[2], Some(RELAY))?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut rounds = Vec::new();
    let stamp = time::OffsetDateTime::now_utc().unix_timestamp();
    for round in 1..=s.rounds {
        let log = |n: &str| s.out.join(format!("revocation-{n}-{round}.log"));
        let mut children = Vec::new();
        let started = (|| -> anyhow::Result<()> {
            children.push(spawn(&s.pg, &["serve"], &gateway, &log("gateway"))?);
            if !ready(METRICS[0], Duration::from_secs(60)) {
                bail!("the origin gateway did not become ready");
            }
            children.push(spawn(&s.pg, &["origin"], &gateway, &log("origin"))?);
            children.push(spawn(&s.pg, &["serve"], &relay, &log("relay"))?);
            if !ready(METRICS[1], Duration::from_secs(120)) {
                bail!("the relay did not become ready");
            }
            children.push(spawn(&s.pg, &["serve"], &follower, &log("follower"))?);
            if !ready(METRICS[2], Duration::from_secs(120)) {
                bail!("the follower did not become ready");
            }
            Ok(())
        })();
        let measured = started.and_then(|()| {
            // Every hop in its long-poll before the first revocation.
            std::thread::sleep(Duration::from_secs(2));
            let origin = connector(
                ORIGIN,
                dir,
                "pki/authority/desk-01.crt",
                "pki/authority/desk-01.key",
            )?;
            let gate = connector(
                FOLLOWER,
                dir,
                "pki/partners/rail-gate.crt",
                "pki/partners/rail-gate.key",
            )?;
            rt.block_on(measure(
                origin,
                gate,
                &holders,
                s.revocations,
                &format!("rev-{stamp}-{round}"),
            ))
        });
        for c in &mut children {
            crate::scenario::terminate(c);
        }
        let r = measured?;
        println!(
            "round {round}: revocation -> follower refuses: median {:.1} ms, p99 {:.1} ms, max {:.1} ms, lost {}; the API call itself median {:.1} ms",
            r.median_ms,
            r.p99_ms,
            r.max_ms,
            r.lost,
            rank(&sorted(&r.api_ms), 0.5)
        );
        std::fs::write(
            s.out.join(format!("revocation-{round}.json")),
            serde_json::to_vec_pretty(&r)?,
        )?;
        rounds.push(r);
    }
    let all: Vec<f64> = rounds.iter().flat_map(|r| r.samples_ms.clone()).collect();
    let all_sorted = sorted(&all);
    let summary = json!({
        "scenario": "revocation",
        "revocations_per_round": s.revocations,
        "rounds": rounds,
        "median_ms_per_round": rounds.iter().map(|r| r.median_ms).collect::<Vec<_>>(),
        "p99_ms_per_round": rounds.iter().map(|r| r.p99_ms).collect::<Vec<_>>(),
        "median_ms_all": rank(&all_sorted, 0.5),
        "p99_ms_all": rank(&all_sorted, 0.99),
        "met_every_round": rounds.iter().all(|r| r.lost == 0 && r.median_ms <= 100.0 && r.p99_ms <= 500.0),
    });
    std::fs::write(
        s.out.join("summary.json"),
        serde_json::to_vec_pretty(&summary)?,
    )?;
    let mut table = String::from("| round | revocations | median ms | p99 ms | max ms | not seen | API call median ms |\n|---|---|---|---|---|---|---|\n");
    for (i, r) in rounds.iter().enumerate() {
        table.push_str(&format!(
            "| {} | {} | {:.1} | {:.1} | {:.1} | {} | {:.1} |\n",
            i + 1,
            r.samples_ms.len() + r.lost,
            r.median_ms,
            r.p99_ms,
            r.max_ms,
            r.lost,
            rank(&sorted(&r.api_ms), 0.5)
        ));
    }
    std::fs::write(s.out.join("table.md"), &table)?;
    print!("{table}");
    Ok(())
}
