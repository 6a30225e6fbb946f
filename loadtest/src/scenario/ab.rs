//! Two gateway builds side by side on the same demo data and config (audit trail on),
//! driven in turn (A B A B ...) with the same closed-loop load: for "did this change cost
//! anything". Per run: throughput, p99, and the server's CPU time per request (user and
//! system, from /proc, over the measured run and its warm-up); B's ratios to the A run
//! just before it, round by round, and their medians.
//!
//! Build the old one from a worktree: `git worktree add /tmp/old COMMIT && (cd /tmp/old &&
//! CARGO_TARGET_DIR=/tmp/old-target cargo build --release -p permitgate)`.

use std::path::PathBuf;

use serde_json::json;

use super::lab::{Lab, LabArgs, Pin, RoundArgs};
use super::stats::{figure, list, median, ratios, Table};

#[derive(clap::Args, Debug, Clone, serde::Serialize)]
pub struct Args {
    /// Build A (the baseline).
    old: PathBuf,
    /// Build B.
    new: PathBuf,
    #[command(flatten)]
    lab: LabArgs,
    #[command(flatten)]
    rounds: RoundArgs,
    #[arg(long, default_value_t = 16)]
    connections: usize,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let lab = Lab::new("ab", &a.lab)?;
    let mut runs = Vec::new();
    for round in 1..=a.rounds.rounds {
        for (side, bin) in [("A", &a.old), ("B", &a.new)] {
            let config = lab.config("ab", Vec::new())?;
            let gw = lab.serve(
                &format!("gateway-{side}-{round}"),
                &config,
                Pin::ANY,
                Some(bin),
            )?;
            let before = gw.cpu_seconds();
            let name = format!("{side}-{round}");
            let load = format!(
                "--connections {} --duration {} --warmup 1",
                a.connections, a.rounds.duration
            );
            let r = lab.load(&name, config.ports.listen, &load, Pin::ANY)?;
            let cpu = gw.cpu_seconds() - before;
            drop(gw);
            let row = json!({
                "side": side,
                "round": round,
                "requests_per_second": r["requests_per_second"],
                "p99_ms": r["latency"]["p99_ms"],
                "errors": r["errors"],
                "cpu_us_per_request": 1e6 * cpu / figure(&r, "requests").max(1.0),
            });
            println!("{row}");
            runs.push(row);
        }
    }
    let of = |side: &str, field: &str| -> Vec<f64> {
        runs.iter()
            .filter(|r| r["side"] == side)
            .map(|r| figure(r, field))
            .collect()
    };
    let mut t = Table::new(&[
        "build",
        "req/s (rounds)",
        "median req/s",
        "p99 ms (median)",
        "CPU us/req (median)",
        "B/A req/s per round (median)",
        "B/A CPU/req per round (median)",
    ]);
    let rps_ratio = ratios(
        &of("B", "requests_per_second"),
        &of("A", "requests_per_second"),
    );
    let cpu_ratio = ratios(
        &of("B", "cpu_us_per_request"),
        &of("A", "cpu_us_per_request"),
    );
    for side in ["A", "B"] {
        let rps = of(side, "requests_per_second");
        let (rr, cr) = if side == "B" {
            (
                format!("{} ({:.3})", list(&rps_ratio, 3), median(rps_ratio.clone())),
                format!("{} ({:.3})", list(&cpu_ratio, 3), median(cpu_ratio.clone())),
            )
        } else {
            ("".into(), "".into())
        };
        t.row(&[
            side.into(),
            list(&rps, 0),
            format!("{:.0}", median(rps.clone())),
            format!("{:.3}", median(of(side, "p99_ms"))),
            format!("{:.2}", median(of(side, "cpu_us_per_request"))),
            rr,
            cr,
        ]);
    }
    let summary = json!({
        "scenario": "ab",
        "settings": a,
        "runs": runs,
        "b_over_a_requests_per_second": rps_ratio,
        "b_over_a_cpu_per_request": cpu_ratio,
        "b_over_a_requests_per_second_median": median(rps_ratio.clone()),
        "b_over_a_cpu_per_request_median": median(cpu_ratio.clone()),
    });
    lab.finish(summary, t.markdown())
}
