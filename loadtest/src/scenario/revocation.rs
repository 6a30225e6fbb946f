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

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::Bytes;
use http::header::{HeaderName, CONTENT_TYPE};
use http::Method;
use serde_json::{json, Value};

use permitgate_load::client::{Conn, Connector, Protocol, Target};
use permitgate_load::propagation::rank;
use permitgate_testkit::config_edit;
use permitgate_testkit::process::{free_port, Running};

use super::lab::{wait_accepting, Config, Lab, LabArgs, Pin};
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
#[derive(clap::Args, Debug, Clone, serde::Serialize)]
pub struct Args {
    #[command(flatten)]
    lab: LabArgs,
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Revocations timed a round.
    #[arg(long, default_value_t = 50)]
    revocations: usize,
}

fn connector(addr: SocketAddr, dir: &Path, cert: &str, key: &str) -> anyhow::Result<Connector> {
    Ok(Connector::new(
        Target {
            addr,
            server_name: "localhost".into(),
            ca: dir.join("pki/ca.crt"),
            cert: dir.join(cert),
            key: dir.join(key),
            sources: Vec::new(),
        },
        Protocol::H1,
    )?)
}

/// `permitgate origin` on the gateway's config, once it accepts connections.
fn start_origin(
    lab: &Lab,
    config: &Config,
    addr: SocketAddr,
    log: &Path,
) -> anyhow::Result<Running> {
    let child = Command::new(&lab.pg)
        .args(["origin", "--config"])
        .arg(&config.path)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log)?)
        .spawn()
        .context("starting permitgate origin")?;
    let mut origin = Running(child);
    if wait_accepting(&mut origin, &[addr], Duration::from_secs(60)) {
        return Ok(origin);
    }
    bail!("the origin did not start (see {})", log.display())
}

/// Runs the rounds; writes each round's JSON, summary.json and table.md to the lab's
/// output directory.
pub fn run(a: Args) -> anyhow::Result<()> {
    let lab = Lab::new("revocation", &a.lab)?;
    let dir = &lab.dir;
    let holders = holders(&dir.join("export.jsonl"))?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut rounds = Vec::new();
    let stamp = time::OffsetDateTime::now_utc().unix_timestamp();
    for round in 1..=a.rounds {
        let origin_addr = free_port();
        let gateway = lab.config(
            "rev-gateway",
            vec![
                config_edit::set("origin.listen", origin_addr.to_string()),
                config_edit::set("origin.audit_dir", "audit-rev-origin-api"),
            ],
        )?;
        let gw = lab.serve(
            &format!("revocation-gateway-{round}"),
            &gateway,
            Pin::ANY,
            None,
        )?;
        let origin = start_origin(
            &lab,
            &gateway,
            origin_addr,
            &lab.out.join(format!("revocation-origin-{round}.log")),
        )?;
        let relay_config = lab.config(
            "rev-relay",
            super::propagation::follow(&lab, "rev-relay", gateway.ports.listen),
        )?;
        let relay = lab.serve(
            &format!("revocation-relay-{round}"),
            &relay_config,
            Pin::ANY,
            None,
        )?;
        let follower_config = lab.config(
            "rev-follower",
            super::propagation::follow(&lab, "rev-follower", relay_config.ports.listen),
        )?;
        let follower = lab.serve(
            &format!("revocation-follower-{round}"),
            &follower_config,
            Pin::ANY,
            None,
        )?;
        // Every hop in its long-poll before the first revocation.
        super::propagation::holds_a_long_poll(&gw);
        super::propagation::holds_a_long_poll(&relay);
        let measured = (|| {
            let origin = connector(
                origin_addr,
                dir,
                "pki/authority/desk-01.crt",
                "pki/authority/desk-01.key",
            )?;
            let gate = connector(
                follower_config.ports.listen,
                dir,
                "pki/partners/rail-gate.crt",
                "pki/partners/rail-gate.key",
            )?;
            rt.block_on(measure(
                origin,
                gate,
                &holders,
                a.revocations,
                &format!("rev-{stamp}-{round}"),
            ))
        })();
        drop((follower, relay, origin, gw));
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
            lab.out.join(format!("revocation-{round}.json")),
            serde_json::to_vec_pretty(&r)?,
        )?;
        rounds.push(r);
    }
    let all: Vec<f64> = rounds.iter().flat_map(|r| r.samples_ms.clone()).collect();
    let all_sorted = sorted(&all);
    let summary = json!({
        "scenario": "revocation",
        "revocations_per_round": a.revocations,
        "rounds": rounds,
        "median_ms_per_round": rounds.iter().map(|r| r.median_ms).collect::<Vec<_>>(),
        "p99_ms_per_round": rounds.iter().map(|r| r.p99_ms).collect::<Vec<_>>(),
        "median_ms_all": rank(&all_sorted, 0.5),
        "p99_ms_all": rank(&all_sorted, 0.99),
        "met_every_round": rounds.iter().all(|r| r.lost == 0 && r.median_ms <= 100.0 && r.p99_ms <= 500.0),
    });

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
    lab.finish(summary, &table)
}
