//! `permitgate-load scenario NAME`: a measurement that needs more than one process (a
//! gateway, the victim partners' generators, the attackers), run in rounds, summarised as
//! JSON and as the markdown table docs/benchmarks.md shows. Processes are launched here;
//! the figures come from each generator's own JSON report.
//!
//! Layout on a 2-core machine: the gateway as shipped (demo data, audit trail on) pinned
//! to CPU 0; the victims and the attackers on CPU 1, the attackers at nice 19 so that the
//! victims' generators, whose latency is measured, are not delayed by them (the attackers
//! stand for other hosts).
//!
//! - `doors`: before authentication. Victims: rail-gate's keep-alive status checks (open
//!   loop, from 127.0.0.1, a partner network), and new connections with a full handshake
//!   each, from 127.0.0.1 and from 127.0.0.3 (a stranger). Attacks (`--hostile`): idle
//!   TCP, idle TLS with a partner certificate, replayed ClientHellos, full-handshake
//!   floods; each from one address (127.0.0.2) and from 4,094 (127.1.0.0/20: 16 /24
//!   prefixes). Targets: keep-alive p99 within 2x of alone, new connections all
//!   answered with p99 <= 100 ms, in every round.
//! - `costs`: the price of a request. bank sends the most expensive requests it may
//!   (batches of 1,000 link checks, each with a signed receipt, over 8 connections, closed
//!   loop), with the demo's rate limit and with none; rail-gate's keep-alive status checks
//!   are measured. Target: the victim's p99 within 2x of alone, nothing refused.
//! - `revocation`: a temporary permit revoked through the authority API, until a follower
//!   behind a relay refuses it (src/revocation.rs).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::{json, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    Doors,
    Costs,
    /// A revocation through the authority API until a follower behind a relay refuses
    /// the permit (src/revocation.rs).
    Revocation,
}

#[derive(clap::Args, Debug, serde::Serialize)]
pub struct ScenarioArgs {
    #[arg(value_enum)]
    name: Scenario,
    /// Rounds; every case runs once a round, in turn.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Seconds each victim measures.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// rail-gate's keep-alive checks per second.
    #[arg(long, default_value_t = 1500.0)]
    victim_rate: f64,
    /// Only these cases (and `alone`), comma-separated.
    #[arg(long, value_delimiter = ',')]
    cases: Vec<String>,
    /// The gateway binary.
    #[arg(long, default_value = "target/release/permitgate")]
    pg: PathBuf,
    /// Demo data (made here if missing).
    #[arg(long, default_value = "var/bench-scenario")]
    dir: PathBuf,
    /// Where the reports, the summary (summary.json) and the table (table.md) go.
    #[arg(long, default_value = "target/scenario")]
    out: PathBuf,
    /// --pg is a build from before [unauthenticated] and audit checkpoints (for the
    /// "before" figures): its config leaves them out.
    #[arg(long)]
    legacy_config: bool,
    /// Pin nothing: the gateway and the generators share both cores (as a gateway on a
    /// busy host would), instead of the gateway on CPU 0 and the generators on CPU 1.
    #[arg(long)]
    shared_cores: bool,
    /// `revocation`: revocations timed a round.
    #[arg(long, default_value_t = 50)]
    revocations: usize,
}

const ADDR: &str = "127.0.0.1:18843";
const METRICS: &str = "127.0.0.1:19865";
const ONE_HOST: &str = "127.0.0.2";
const MANY_HOSTS: &str = "127.1.0.0/20";

/// One case: its name and its attackers' argument lists (one process each).
struct Case {
    name: String,
    attackers: Vec<Vec<String>>,
    /// A change to the gateway's config: `bank_rate_limit` (the reference config's 5,000
    /// checks a second, burst 10,000), `unlimited_bank`, or none.
    config: String,
}

fn args(s: &str) -> Vec<String> {
    s.split_whitespace().map(str::to_owned).collect()
}

fn doors_cases() -> Vec<Case> {
    let mut cases = vec![Case {
        name: "alone".into(),
        attackers: Vec::new(),
        config: String::new(),
    }];
    for (place, source) in [("one-host", ONE_HOST), ("many-hosts", MANY_HOSTS)] {
        let attack = |name: &str, each: &str, processes: usize| Case {
            name: format!("{name}/{place}"),
            attackers: (0..processes)
                .map(|_| args(&format!("{each} --source {source}")))
                .collect(),
            config: String::new(),
        };
        cases.push(attack(
            "idle-tcp",
            "--hostile idle-tcp --connections 10000",
            2,
        ));
        cases.push(attack(
            "idle-tls",
            "--hostile idle-tls --partner bank --connections 10000",
            2,
        ));
        cases.push(attack(
            "hello-replay",
            "--hostile hello-replay --partner bank --connections 2000",
            1,
        ));
        cases.push(attack(
            "handshake-flood",
            "--hostile handshake-flood --partner bank --connections 64",
            3,
        ));
    }
    cases
}

fn costs_cases() -> Vec<Case> {
    let flood = vec![args(
        "--partner bank --workload batch --batch-size 1000 --receipt-share 1.0 --connections 8 --timeout-ms 60000",
    )];
    vec![
        Case {
            name: "alone".into(),
            attackers: Vec::new(),
            config: String::new(),
        },
        Case {
            name: "receipt-batches/rate-limited".into(),
            attackers: flood.clone(),
            config: "bank_rate_limit".into(),
        },
        Case {
            name: "receipt-batches/unlimited".into(),
            attackers: flood,
            config: "unlimited_bank".into(),
        },
    ]
}

struct Env {
    load: PathBuf,
    a: ScenarioArgs,
}

pub fn run(a: ScenarioArgs) -> anyhow::Result<()> {
    let load = std::env::current_exe().context("this program's path")?;
    std::fs::create_dir_all(&a.out).with_context(|| a.out.display().to_string())?;
    let env = Env { load, a };
    env.demo_once()?;
    let mut cases = match env.a.name {
        Scenario::Doors => doors_cases(),
        Scenario::Costs => costs_cases(),
        Scenario::Revocation => {
            return crate::revocation::run(&crate::revocation::Setup {
                pg: env.a.pg.clone(),
                dir: env.a.dir.clone(),
                out: env.a.out.clone(),
                rounds: env.a.rounds,
                revocations: env.a.revocations,
            })
        }
    };
    if !env.a.cases.is_empty() {
        cases.retain(|c| {
            c.name == "alone" || env.a.cases.iter().any(|k| c.name.starts_with(k.as_str()))
        });
    }
    let mut rows = Vec::new();
    for round in 1..=env.a.rounds {
        for case in &cases {
            let row = env.round(round, case)?;
            println!("{}", serde_json::to_string(&row)?);
            rows.push(row);
        }
    }
    let summary = summarise(&env.a, &cases, &rows);
    std::fs::write(
        env.a.out.join("summary.json"),
        serde_json::to_vec_pretty(&summary)?,
    )?;
    let table = table(&env.a, &cases, &rows);
    std::fs::write(env.a.out.join("table.md"), &table)?;
    print!("{table}");
    Ok(())
}

impl Env {
    fn dir(&self) -> &Path {
        &self.a.dir
    }

    /// The demo's data and config, made once.
    fn demo_once(&self) -> anyhow::Result<()> {
        // A directory made by an earlier release (no origin in its config) is brought up
        // to date by starting the demo once more: it keeps the data.
        let config = std::fs::read_to_string(self.dir().join("gateway.toml")).unwrap_or_default();
        if config.contains("[origin]") {
            return Ok(());
        }
        let log = self.a.out.join("demo.log");
        let mut demo = Command::new(&self.a.pg)
            .args(["demo", "--dir"])
            .arg(self.dir())
            .args([
                "--listen",
                ADDR,
                "--metrics-listen",
                METRICS,
                "--verify-listen",
                "127.0.0.1:0",
                "--origin-listen",
                "127.0.0.1:0",
            ])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .context("starting the demo")?;
        let ready = wait_ready(Duration::from_secs(120));
        terminate(&mut demo);
        if !ready {
            bail!("the demo did not become ready (see {})", log.display());
        }
        Ok(())
    }

    /// The gateway's config for `case`: the demo's, on this scenario's ports, its audit
    /// trail of its own, 127.0.0.1 alone a partner network (the attackers are strangers).
    fn config(&self, case: &Case) -> anyhow::Result<PathBuf> {
        let demo = self.dir().join("gateway.toml");
        let mut t: toml::Table = toml::from_str(&std::fs::read_to_string(&demo)?)?;
        let table = |t: &mut toml::Table, name: &str| -> anyhow::Result<toml::Table> {
            Ok(t.remove(name)
                .and_then(|v| v.as_table().cloned())
                .unwrap_or_default())
        };
        let mut server = table(&mut t, "server")?;
        server.insert("listen".into(), ADDR.into());
        server.insert("metrics_listen".into(), METRICS.into());
        t.insert("server".into(), server.into());
        let mut unauth = table(&mut t, "unauthenticated")?;
        unauth.insert(
            "partner_networks".into(),
            toml::Value::Array(vec!["127.0.0.1/32".into()]),
        );
        if !self.a.legacy_config {
            t.insert("unauthenticated".into(), unauth.into());
        }
        let mut audit = table(&mut t, "audit")?;
        let name = case.name.replace('/', "-");
        audit.insert("dir".into(), format!("audit-{name}").into());
        if self.a.legacy_config {
            audit.remove("checkpoint_key");
            audit.remove("checkpoint_dir");
        }
        t.insert("audit".into(), audit.into());
        // bank is in the partner registry: this case gets a copy of it, edited.
        let registry = self.dir().join("pki/partners.toml");
        let mut r: toml::Table = toml::from_str(&std::fs::read_to_string(&registry)?)?;
        if let Some(ps) = r.get_mut("partners").and_then(toml::Value::as_array_mut) {
            for p in ps.iter_mut().filter_map(toml::Value::as_table_mut) {
                if p.get("id").and_then(toml::Value::as_str) != Some("bank") {
                    continue;
                }
                match case.config.as_str() {
                    "unlimited_bank" => {
                        p.remove("rate_limit");
                    }
                    // The reference config's limit for bank (config/gateway.toml).
                    "bank_rate_limit" => {
                        let limit: toml::Table =
                            toml::from_str("per_second = 5000\nburst = 10000")?;
                        p.insert("rate_limit".into(), limit.into());
                    }
                    _ => {}
                }
            }
        }
        let registry_copy = self.dir().join(format!("scenario-{name}-partners.toml"));
        std::fs::write(&registry_copy, toml::to_string(&r)?)?;
        t.insert(
            "partners_file".into(),
            registry_copy.display().to_string().into(),
        );
        let path = self.dir().join(format!("scenario-{name}.toml"));
        let _ = std::fs::remove_dir_all(self.dir().join(format!("audit-{name}")));
        std::fs::write(&path, toml::to_string(&t)?)?;
        Ok(path)
    }

    /// A generator: this program with `args`, pinned to CPU 1, at `nice`.
    fn generator(
        &self,
        nice: i32,
        args: &[String],
        json: &Path,
        log: &Path,
    ) -> anyhow::Result<Child> {
        let cpus = if self.a.shared_cores { "0,1" } else { "1" };
        let mut c = Command::new("taskset");
        c.args(["-c", cpus, "nice", "-n", &nice.to_string()])
            .arg(&self.load)
            .arg("--demo")
            .arg(self.dir())
            .args(["--target", ADDR, "--json"])
            .arg(json)
            .args(args)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log)?);
        c.spawn().context("starting a generator")
    }

    fn round(&self, round: usize, case: &Case) -> anyhow::Result<Value> {
        let config = self.config(case)?;
        let tag = format!("{}-{round}", case.name.replace('/', "-"));
        let gw_log = self.a.out.join(format!("gateway-{tag}.log"));
        let mut gw = Command::new("taskset")
            .args(["-c", if self.a.shared_cores { "0,1" } else { "0" }])
            .arg(&self.a.pg)
            .args(["serve", "--config"])
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&gw_log)?)
            .spawn()
            .context("starting the gateway")?;
        if !wait_ready(Duration::from_secs(60)) {
            terminate(&mut gw);
            bail!(
                "the gateway did not become ready (see {})",
                gw_log.display()
            );
        }
        let d = self.a.duration;
        let mut attackers = Vec::new();
        for (i, a) in case.attackers.iter().enumerate() {
            let mut a = a.clone();
            // The attack outlasts the victims': it starts first and ends after.
            a.extend(args(&format!("--duration {} --warmup 0", d + 6.0)));
            let json = self.a.out.join(format!("attack-{tag}-{i}.json"));
            let log = self.a.out.join(format!("attack-{tag}-{i}.log"));
            attackers.push((self.generator(19, &a, &json, &log)?, json));
        }
        if !attackers.is_empty() {
            std::thread::sleep(Duration::from_secs(3));
        }
        let victims: Vec<(&str, String)> = match self.a.name {
            Scenario::Doors => vec![
                (
                    "keepalive",
                    format!("--partner rail-gate --workload status --connections 16 --rate {}", self.a.victim_rate),
                ),
                (
                    "new-partner-net",
                    "--partner rail-gate --workload status --protocol h1-new --connections 4 --rate 5".into(),
                ),
                (
                    "new-stranger",
                    "--partner rail-gate --workload status --protocol h1-new --connections 4 --rate 5 --source 127.0.0.3".into(),
                ),
            ],
            // (revocation has rounds of its own: src/revocation.rs)
            Scenario::Costs | Scenario::Revocation => vec![(
                "keepalive",
                format!("--partner rail-gate --workload status --connections 16 --rate {}", self.a.victim_rate),
            )],
        };
        let mut running = Vec::new();
        for (name, v) in &victims {
            let mut v = args(v);
            v.extend(args(&format!("--duration {d} --warmup 1")));
            let json = self.a.out.join(format!("victim-{name}-{tag}.json"));
            let log = self.a.out.join(format!("victim-{name}-{tag}.log"));
            running.push((*name, self.generator(0, &v, &json, &log)?, json));
        }
        let mut row = json!({"round": round, "case": case.name});
        for (name, mut child, json) in running {
            child.wait()?;
            let r: Value = serde_json::from_slice(
                &std::fs::read(&json).with_context(|| json.display().to_string())?,
            )?;
            let ok = r["statuses"]["200"].as_u64().unwrap_or(0);
            row[name] = json!({
                "requests": r["requests"],
                "not_200": r["requests"].as_u64().unwrap_or(0).saturating_sub(ok),
                "errors": r["errors_by_kind"],
                "p50_ms": r["latency"]["p50_ms"],
                "p99_ms": r["latency"]["p99_ms"],
                "p999_ms": r["latency"]["p999_ms"],
                "max_ms": r["latency"]["max_ms"],
            });
        }
        let mut attack = Vec::new();
        for (mut child, json) in attackers {
            child.wait()?;
            let r: Value = std::fs::read(&json)
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok())
                .unwrap_or(Value::Null);
            attack.push(json!({
                "connections": r["connections"],
                "statuses": r["statuses"],
                "requests_per_second": r["requests_per_second"],
                "errors": r["errors_by_kind"],
            }));
        }
        row["attack"] = Value::Array(attack);
        row["gateway"] = scrape_rejections();
        terminate(&mut gw);
        Ok(row)
    }
}

/// `permitgate_connections_rejected_total` and `permitgate_refused_total` by reason, from
/// the gateway's metrics.
fn scrape_rejections() -> Value {
    let text = http_get(METRICS, "/metrics").unwrap_or_default();
    let mut out = serde_json::Map::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        for family in [
            "permitgate_connections_rejected_total",
            "permitgate_refused_total",
        ] {
            if let Some(rest) = line.strip_prefix(family) {
                if let Some((labels, value)) = rest.rsplit_once(' ') {
                    let v: f64 = value.parse().unwrap_or(0.0);
                    if v > 0.0 {
                        out.insert(format!("{family}{labels}"), json!(v));
                    }
                }
            }
        }
    }
    Value::Object(out)
}

pub(crate) fn http_get(addr: &str, path: &str) -> Option<String> {
    let addr: SocketAddr = addr.parse().ok()?;
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nhost: metrics\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    text.starts_with("HTTP/1.0 200")
        .then(|| text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()))
        .flatten()
}

fn wait_ready(within: Duration) -> bool {
    let until = Instant::now() + within;
    while Instant::now() < until {
        if http_get(METRICS, "/readyz").is_some() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

pub(crate) fn terminate(child: &mut Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let until = Instant::now() + Duration::from_secs(30);
    while Instant::now() < until {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn figures(rows: &[Value], case: &str, victim: &str, field: &str) -> Vec<f64> {
    rows.iter()
        .filter(|r| r["case"] == case)
        .filter_map(|r| r[victim][field].as_f64())
        .collect()
}

fn summarise(a: &ScenarioArgs, cases: &[Case], rows: &[Value]) -> Value {
    let alone = median(figures(rows, "alone", "keepalive", "p99_ms"));
    let mut out = serde_json::Map::new();
    for c in cases {
        let p99 = figures(rows, &c.name, "keepalive", "p99_ms");
        let ratios: Vec<f64> = p99.iter().map(|p| p / alone).collect();
        let mut entry = json!({
            "keepalive_p99_ms": p99,
            "keepalive_p99_ratio_to_alone_median": ratios.iter().all(|r| r.is_finite()).then(|| median(ratios.clone())),
            "keepalive_within_2x_every_round": ratios.iter().all(|r| *r <= 2.0),
            "keepalive_not_200": figures(rows, &c.name, "keepalive", "not_200"),
        });
        if a.name == Scenario::Doors {
            for v in ["new-partner-net", "new-stranger"] {
                let p99 = figures(rows, &c.name, v, "p99_ms");
                let failed = figures(rows, &c.name, v, "not_200");
                entry[v] = json!({
                    "p99_ms": p99,
                    "not_200": failed,
                    "met_every_round": p99.iter().all(|p| *p <= 100.0) && failed.iter().all(|f| *f == 0.0),
                });
            }
        }
        out.insert(c.name.clone(), entry);
    }
    json!({"scenario": a, "cases": out, "rounds": rows})
}

fn table(a: &ScenarioArgs, cases: &[Case], rows: &[Value]) -> String {
    let alone = median(figures(rows, "alone", "keepalive", "p99_ms"));
    let list = |v: Vec<f64>| {
        v.iter()
            .map(|x| format!("{x:.1}"))
            .collect::<Vec<_>>()
            .join(" / ")
    };
    let counts = |v: Vec<f64>| {
        v.iter()
            .map(|x| format!("{x:.0}"))
            .collect::<Vec<_>>()
            .join(" / ")
    };
    let mut s = String::new();
    match a.name {
        Scenario::Doors => {
            s.push_str("| case | keep-alive p99 ms (rounds) | ratio to alone (median) | keep-alive not 200 | new conn. p99 ms, partner network | failed | new conn. p99 ms, stranger | failed |\n|---|---|---|---|---|---|---|---|\n");
            for c in cases {
                let p99 = figures(rows, &c.name, "keepalive", "p99_ms");
                let ratio = median(p99.iter().map(|p| p / alone).collect());
                s.push_str(&format!(
                    "| {} | {} | {:.2}x | {} | {} | {} | {} | {} |\n",
                    c.name,
                    list(p99),
                    ratio,
                    counts(figures(rows, &c.name, "keepalive", "not_200")),
                    list(figures(rows, &c.name, "new-partner-net", "p99_ms")),
                    counts(figures(rows, &c.name, "new-partner-net", "not_200")),
                    list(figures(rows, &c.name, "new-stranger", "p99_ms")),
                    counts(figures(rows, &c.name, "new-stranger", "not_200")),
                ));
            }
        }
        Scenario::Revocation => {}
        Scenario::Costs => {
            s.push_str("| case | victim p99 ms (rounds) | ratio to alone (median) | victim not 200 |\n|---|---|---|---|\n");
            for c in cases {
                let p99 = figures(rows, &c.name, "keepalive", "p99_ms");
                let ratio = median(p99.iter().map(|p| p / alone).collect());
                s.push_str(&format!(
                    "| {} | {} | {:.2}x | {} |\n",
                    c.name,
                    list(p99),
                    ratio,
                    counts(figures(rows, &c.name, "keepalive", "not_200")),
                ));
            }
        }
    }
    s
}
