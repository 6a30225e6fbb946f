//! Scenarios of a victim partner beside attackers, in rounds: a gateway as shipped (demo
//! data, audit trail on), the victims' generators measuring, the attackers' generators
//! (`--hostile` modes, or floods of costly requests) running from before the victims start
//! until after they stop. Each case starts a fresh gateway.
//!
//! Layout on a 2-core machine: the gateway pinned to CPU 0; the victims and the attackers
//! on CPU 1. The attackers stand for other hosts: they run at nice 19, and the victims'
//! generators, whose latency is measured, under SCHED_FIFO, so that the attackers' work on
//! CPU 1 does not delay them. (At nice 0 it did: during idle TCP from many hosts the
//! gateway's request worker waited at most 0.4 ms to run and CPU 0 was 89 % idle, while
//! the victim's client thread waited up to 3.9 ms on CPU 1, `perf sched latency`;
//! `--plain-victims` keeps that layout.) `noisy` and `--shared-cores` put everything on
//! both cores at nice 0, as a gateway on a busy host.
//!
//! - `doors`: before authentication. Victims: rail-gate's keep-alive status checks (open
//!   loop, from 127.0.0.1, a partner network), and new connections with a full handshake
//!   each, from 127.0.0.1 and from 127.0.0.3 (a stranger). Attacks: idle TCP, idle TLS
//!   with a partner certificate, replayed ClientHellos, full-handshake floods; each from
//!   one address (127.0.0.2) and from 4,094 (127.1.0.0/20: 16 /24 prefixes). Targets:
//!   keep-alive p99 within 2x of alone, new connections all answered with p99 <= 100 ms,
//!   in every round.
//! - `costs`: the price of a request. bank sends the most expensive requests it may
//!   (batches of 1,000 link checks, each with a signed receipt, over 8 connections,
//!   closed loop), with the reference config's rate limit and with none. Target: the
//!   victim's p99 within 2x of alone, nothing refused.
//! - `isolation`: after authentication. bank holds 1,100 HTTP/1.1 connections with
//!   unfinished 60,000-byte bodies (slow-body-h1), 9 HTTP/2 connections x 128 such streams
//!   (slow-body-h2), 1,100 connections dribbling a byte a second (dribble); relay holds
//!   8 x 128 replication long-polls (long-poll). Target: the victim refused nothing.
//! - `noisy`: bank floods link checks (closed loop, 16 connections) without a limit and
//!   with `rate_limit = 2000/s`, everything on both cores; bank's share of 429 reported.

use std::time::Duration;

use anyhow::Context;
use permitgate_testkit::config_edit::{self, Edit};
use serde_json::{json, Value};

use super::lab::{Lab, LabArgs, Pin, RoundArgs, Server};
use super::stats::{figure, list, median, not_200, Table};

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    Doors,
    Costs,
    Isolation,
    Noisy,
}

#[derive(clap::Args, Debug, Clone, serde::Serialize)]
pub struct Args {
    #[command(flatten)]
    lab: LabArgs,
    #[command(flatten)]
    rounds: RoundArgs,
    /// rail-gate's keep-alive checks per second [default: 1500; isolation and noisy 2000].
    #[arg(long)]
    victim_rate: Option<f64>,
    /// Only these cases (and `alone`), comma-separated.
    #[arg(long, value_delimiter = ',')]
    cases: Vec<String>,
    /// --pg is a build from before [unauthenticated] and audit checkpoints (for "before"
    /// figures): its config leaves them out.
    #[arg(long)]
    legacy_config: bool,
    /// Pin nothing: the gateway and the generators share both cores.
    #[arg(long)]
    shared_cores: bool,
    /// The victims' generators at nice 0 instead of SCHED_FIFO (the layout before
    /// 2026-12-05, when the attackers' work on CPU 1 delayed the victims' clients).
    #[arg(long)]
    plain_victims: bool,
    /// TOML merged into every gateway's `[unauthenticated]`, such as
    /// 'handshakes_per_second = 250.0' (a limit's price, measured).
    #[arg(long)]
    unauthenticated: Option<String>,
}

const ONE_HOST: &str = "127.0.0.2";
const MANY_HOSTS: &str = "127.1.0.0/20";

/// One case: its name, its attackers' argument lists (one process each), and what it
/// changes in bank's registry entry.
struct Case {
    name: String,
    attackers: Vec<String>,
    bank: Bank,
}

#[derive(Clone, Copy)]
enum Bank {
    AsDemo,
    Unlimited,
    /// The reference config's limit (config/gateway.toml): 5,000 checks a second.
    ReferenceLimit,
    Limited2000,
}

fn case(name: &str, attackers: Vec<String>, bank: Bank) -> Case {
    Case {
        name: name.into(),
        attackers,
        bank,
    }
}

fn cases(kind: Kind) -> Vec<Case> {
    let mut out = vec![case("alone", Vec::new(), Bank::AsDemo)];
    match kind {
        Kind::Doors => {
            for (place, source) in [("one-host", ONE_HOST), ("many-hosts", MANY_HOSTS)] {
                let attack = |name: &str, each: &str, processes: usize| {
                    let one = format!("{each} --source {source}");
                    case(
                        &format!("{name}/{place}"),
                        vec![one; processes],
                        Bank::AsDemo,
                    )
                };
                out.push(attack(
                    "idle-tcp",
                    "--hostile idle-tcp --connections 10000",
                    2,
                ));
                out.push(attack(
                    "idle-tls",
                    "--hostile idle-tls --partner bank --connections 10000",
                    2,
                ));
                out.push(attack(
                    "hello-replay",
                    "--hostile hello-replay --partner bank --connections 2000",
                    1,
                ));
                out.push(attack(
                    "handshake-flood",
                    "--hostile handshake-flood --partner bank --connections 64",
                    3,
                ));
            }
        }
        Kind::Costs => {
            let flood = "--partner bank --workload batch --batch-size 1000 --receipt-share 1.0 --connections 8 --timeout-ms 60000".to_owned();
            out.push(case(
                "receipt-batches/rate-limited",
                vec![flood.clone()],
                Bank::ReferenceLimit,
            ));
            out.push(case(
                "receipt-batches/unlimited",
                vec![flood],
                Bank::Unlimited,
            ));
        }
        Kind::Isolation => {
            for (name, args) in [
                (
                    "slow-body-h1",
                    "--partner bank --hostile slow-body-h1 --connections 1100",
                ),
                (
                    "slow-body-h2",
                    "--partner bank --hostile slow-body-h2 --connections 9 --h2-streams 128",
                ),
                (
                    "dribble",
                    "--partner bank --hostile dribble --connections 1100",
                ),
                (
                    "long-poll",
                    "--partner relay --hostile long-poll --connections 8 --h2-streams 128",
                ),
            ] {
                out.push(case(name, vec![args.to_owned()], Bank::AsDemo));
            }
        }
        Kind::Noisy => {
            let flood = "--partner bank --workload link --connections 16".to_owned();
            out.push(case("flood", vec![flood.clone()], Bank::Unlimited));
            out.push(case("limited", vec![flood], Bank::Limited2000));
        }
    }
    out
}

pub fn run(kind: Kind, a: Args) -> anyhow::Result<()> {
    let name = match kind {
        Kind::Doors => "doors",
        Kind::Costs => "costs",
        Kind::Isolation => "isolation",
        Kind::Noisy => "noisy",
    };
    let lab = Lab::new(name, &a.lab)?;
    let mut cases = cases(kind);
    if !a.cases.is_empty() {
        cases.retain(|c| c.name == "alone" || a.cases.iter().any(|k| c.name.starts_with(k)));
    }
    let victim_rate = a.victim_rate.unwrap_or(match kind {
        Kind::Doors | Kind::Costs => 1500.0,
        Kind::Isolation | Kind::Noisy => 2000.0,
    });
    let shared = a.shared_cores || kind == Kind::Noisy;
    if !shared {
        Pin::cpus("1").apply_to_self()?;
    }
    let run = Run {
        lab: &lab,
        a: &a,
        kind,
        victim_rate,
        gateway: if shared { Pin::ANY } else { Pin::cpus("0") },
        generators: if shared { "0,1" } else { "1" },
    };
    // The gateway's SYN queue, which decides what idle TCP costs it (docs/operations.md).
    let somaxconn = permitgate_testkit::process::somaxconn();
    if kind == Kind::Doors && somaxconn.is_some_and(|q| q < 65_535) {
        eprintln!(
            "net.core.somaxconn is {}, below the 65535 docs/operations.md asks for: idle TCP \
             past it reaches the gateway by SYN cookies",
            somaxconn.unwrap_or_default()
        );
    }
    let mut rows = Vec::new();
    for round in 1..=a.rounds.rounds {
        for case in &cases {
            let row = run.round(round, case)?;
            println!("{}", serde_json::to_string(&row)?);
            rows.push(row);
        }
    }
    let mut summary = summarise(kind, &a, &cases, &rows);
    summary["somaxconn"] = json!(somaxconn);
    lab.finish(summary, &table(kind, &cases, &rows))
}

struct Run<'a> {
    lab: &'a Lab,
    a: &'a Args,
    kind: Kind,
    victim_rate: f64,
    gateway: Pin,
    generators: &'static str,
}

impl Run<'_> {
    fn serve(&self, case: &Case, tag: &str) -> anyhow::Result<Server> {
        let mut edits: Vec<Edit> = Vec::new();
        if self.a.legacy_config {
            edits.push(config_edit::remove("unauthenticated"));
            edits.push(config_edit::remove("audit.checkpoint_key"));
            edits.push(config_edit::remove("audit.checkpoint_dir"));
        }
        if let Some(toml) = &self.a.unauthenticated {
            edits.push(config_edit::merge("unauthenticated", toml));
        }
        let limit = match case.bank {
            Bank::AsDemo => None,
            Bank::Unlimited => Some(None),
            Bank::ReferenceLimit => Some(Some("{ per_second = 5000, burst = 10000 }")),
            Bank::Limited2000 => Some(Some("{ per_second = 2000, burst = 2000 }")),
        };
        if let Some(limit) = limit {
            edits.push(config_edit::partner("bank", move |p| {
                match limit {
                    Some(l) => p.insert("rate_limit".into(), config_edit::value(l)),
                    None => p.remove("rate_limit"),
                };
            }));
        }
        let config = self.lab.config(&case.name.replace('/', "-"), edits)?;
        self.lab
            .serve(&format!("gateway-{tag}"), &config, self.gateway, None)
    }

    fn round(&self, round: usize, case: &Case) -> anyhow::Result<Value> {
        let tag = format!("{}-{round}", case.name.replace('/', "-"));
        let gw = self.serve(case, &tag)?;
        let d = self.a.rounds.duration;
        // A flooding partner is a partner on the same footing; attackers stand for other
        // hosts.
        let attacker = Pin {
            cpus: Some(self.generators),
            nice: if self.kind == Kind::Noisy { 0 } else { 19 },
            realtime: false,
        };
        let victim = Pin {
            cpus: Some(self.generators),
            realtime: self.kind != Kind::Noisy && !self.a.shared_cores && !self.a.plain_victims,
            ..Pin::ANY
        };
        let mut attackers = Vec::new();
        for (i, args) in case.attackers.iter().enumerate() {
            // The attack outlasts the victims': it starts first and ends after.
            let args = format!("{args} --duration {} --warmup 0", d + 6.0);
            let name = format!("attack-{tag}-{i}");
            attackers.push((
                self.lab
                    .spawn_load(&name, gw.ports.listen, &args, attacker)?,
                name,
            ));
        }
        if !attackers.is_empty() {
            std::thread::sleep(Duration::from_secs(3));
        }
        let keepalive = format!(
            "--partner rail-gate --workload status --connections 16 --rate {}",
            self.victim_rate
        );
        let mut victims = vec![("keepalive", keepalive)];
        if self.kind == Kind::Doors {
            let new =
                "--partner rail-gate --workload status --protocol h1-new --connections 4 --rate 5";
            victims.push(("new-partner-net", new.to_owned()));
            victims.push(("new-stranger", format!("{new} --source 127.0.0.3")));
        }
        let mut running = Vec::new();
        for (name, args) in &victims {
            let run = format!("victim-{name}-{tag}");
            let args = format!("{args} --duration {d} --warmup 1");
            running.push((
                *name,
                self.lab.spawn_load(&run, gw.ports.listen, &args, victim)?,
                run,
            ));
        }
        let mut row = json!({"round": round, "case": case.name});
        for (name, mut child, run) in running {
            child.wait().context("waiting for a victim")?;
            let r = self.lab.report(&run)?;
            row[name] = json!({
                "requests": r["requests"],
                "not_200": not_200(&r),
                "errors": r["errors_by_kind"],
                "p50_ms": r["latency"]["p50_ms"],
                "p99_ms": r["latency"]["p99_ms"],
                "p999_ms": r["latency"]["p999_ms"],
                "max_ms": r["latency"]["max_ms"],
            });
        }
        let mut attack = Vec::new();
        for (mut child, run) in attackers {
            child.wait().context("waiting for an attacker")?;
            let r = self.lab.report(&run).unwrap_or(Value::Null);
            attack.push(json!({
                "connections": r["connections"],
                "statuses": r["statuses"],
                "requests_per_second": r["requests_per_second"],
                "errors": r["errors_by_kind"],
            }));
        }
        row["attack"] = Value::Array(attack);
        row["gateway"] = rejections(&gw);
        Ok(row)
    }
}

/// `permitgate_connections_rejected_total` and `permitgate_refused_total` by reason, from
/// the gateway's metrics.
fn rejections(gw: &Server) -> Value {
    let mut out = serde_json::Map::new();
    for line in gw.metrics().lines().filter(|l| !l.starts_with('#')) {
        for family in [
            "permitgate_connections_rejected_total",
            "permitgate_refused_total",
        ] {
            let Some((series, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let v: f64 = value.parse().unwrap_or(0.0);
            if series.starts_with(family) && v > 0.0 {
                out.insert(series.to_owned(), json!(v));
            }
        }
    }
    Value::Object(out)
}

fn figures(rows: &[Value], case: &str, victim: &str, field: &str) -> Vec<f64> {
    rows.iter()
        .filter(|r| r["case"] == case)
        .map(|r| figure(&r[victim], field))
        .collect()
}

/// The victim's keep-alive p99 in each round of `case` over its p99 alone in the same
/// round (the gateway and the machine as they were then: the spread from round to round
/// is as large as an attack's effect).
fn over_alone(rows: &[Value], case: &str) -> Vec<f64> {
    let p99 = |r: &Value| figure(&r["keepalive"], "p99_ms");
    rows.iter()
        .filter(|r| r["case"] == case)
        .map(|r| {
            let alone = rows
                .iter()
                .find(|a| a["case"] == "alone" && a["round"] == r["round"])
                .map_or(f64::NAN, p99);
            p99(r) / alone
        })
        .collect()
}

fn summarise(kind: Kind, a: &Args, cases: &[Case], rows: &[Value]) -> Value {
    let mut out = serde_json::Map::new();
    for c in cases {
        let p99 = figures(rows, &c.name, "keepalive", "p99_ms");
        let ratios = over_alone(rows, &c.name);
        let not_200 = figures(rows, &c.name, "keepalive", "not_200");
        let mut entry = json!({
            "keepalive_p99_ms": p99,
            "keepalive_p99_over_alone_per_round": ratios,
            "keepalive_p99_over_alone_median": median(ratios.clone()),
            "keepalive_within_2x_every_round": ratios.iter().all(|r| *r <= 2.0),
            "keepalive_not_200": not_200,
        });
        if kind == Kind::Doors {
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
    json!({"scenario": kind, "settings": a, "cases": out, "rounds": rows})
}

fn table(kind: Kind, cases: &[Case], rows: &[Value]) -> String {
    let keepalive = |c: &Case| {
        let p99 = figures(rows, &c.name, "keepalive", "p99_ms");
        (list(&p99, 2), list(&over_alone(rows, &c.name), 2))
    };
    let counts = |c: &Case, victim: &str| list(&figures(rows, &c.name, victim, "not_200"), 0);
    let mut t = match kind {
        Kind::Doors => Table::new(&[
            "case",
            "keep-alive p99 ms (rounds)",
            "over alone (rounds)",
            "keep-alive not 200",
            "new conn. p99 ms, partner network",
            "failed",
            "new conn. p99 ms, stranger",
            "failed",
        ]),
        _ => Table::new(&[
            "case",
            "victim p99 ms (rounds)",
            "over alone (rounds)",
            "victim p99.9 ms",
            "victim not 200",
            "attacker's answers (last round)",
        ]),
    };
    for c in cases {
        let (p99, ratio) = keepalive(c);
        let mut cells = vec![c.name.clone(), p99, ratio];
        if kind == Kind::Doors {
            cells.push(counts(c, "keepalive"));
            for v in ["new-partner-net", "new-stranger"] {
                cells.push(list(&figures(rows, &c.name, v, "p99_ms"), 1));
                cells.push(counts(c, v));
            }
        } else {
            cells.push(list(&figures(rows, &c.name, "keepalive", "p999_ms"), 1));
            cells.push(counts(c, "keepalive"));
            let last = rows.iter().rev().find(|r| r["case"] == c.name.as_str());
            let statuses = last
                .and_then(|r| r["attack"].as_array())
                .map(|a| {
                    a.iter()
                        .map(|x| x["statuses"].to_string())
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .unwrap_or_default();
            cells.push(if statuses.is_empty() {
                "-".into()
            } else {
                statuses
            });
        }
        t.row(&cells);
    }
    t.markdown().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each round's p99 is set against that round's alone, not against the median alone.
    #[test]
    fn a_case_is_set_against_its_own_rounds_alone() {
        let row = |case: &str, round: u32, p99: f64| json!({"case": case, "round": round, "keepalive": {"p99_ms": p99}});
        let rows = [
            row("alone", 1, 0.5),
            row("flood", 1, 1.0),
            row("alone", 2, 0.25),
            row("flood", 2, 1.0),
            row("alone", 3, 1.0),
            row("flood", 3, 1.0),
        ];
        assert_eq!(over_alone(&rows, "flood"), vec![2.0, 4.0, 1.0]);
    }
}
