//! Overload: the gateway pinned to CPU 0 (its workers follow the affinity), the generator
//! to CPU 1, batches of 100 checks (heavy for the server, cheap to send). Each round: the
//! sustainable rate R (closed loop, 16 connections), then open loop at R/2 (the baseline)
//! and at 3R over 1,024 connections, so that the generator's own queue does not hide the
//! server's: p99 of the admitted requests (from when each was due, coordinated omission
//! corrected, and from when it was sent) and the share shed.

use permitgate_testkit::config_edit;
use serde_json::json;

use super::lab::{Lab, LabArgs, Pin, RoundArgs};
use super::stats::{figure, median, Table};

#[derive(clap::Args, Debug, Clone, serde::Serialize)]
pub struct Args {
    #[command(flatten)]
    lab: LabArgs,
    #[command(flatten)]
    rounds: RoundArgs,
    /// TOML keys added to the gateway's [server] table (e.g. `max_queue_delay_ms = 0`, to
    /// see it without lag shedding).
    #[arg(long, default_value = "")]
    server_extra: String,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let lab = Lab::new("overload", &a.lab)?;
    let generator = Pin::cpus("1");
    generator.apply_to_self()?;
    let batches = "--workload batch --batch-size 100";
    let mut rows = Vec::new();
    for round in 1..=a.rounds.rounds {
        let config = lab.config(
            "overload",
            vec![config_edit::merge("server", &a.server_extra)],
        )?;
        let gw = lab.serve(&format!("gateway-{round}"), &config, Pin::cpus("0"), None)?;
        let load = |name: &str, args: String| {
            let args = format!(
                "{args} {batches} --duration {} --warmup 1",
                a.rounds.duration
            );
            lab.load(
                &format!("{name}-{round}"),
                gw.ports.listen,
                &args,
                generator,
            )
        };
        let closed = load("closed", "--connections 16".into())?;
        let r = figure(&closed, "requests_per_second").round();
        let half = load(
            "half",
            format!("--connections 1024 --rate {}", (r / 2.0).floor()),
        )?;
        let triple = load("triple", format!("--connections 1024 --rate {}", r * 3.0))?;
        drop(gw);
        let shed = triple["statuses"]["503"].as_f64().unwrap_or(0.0)
            / figure(&triple, "requests").max(1.0);
        let row = json!({
            "round": round,
            "sustainable_batches_per_second": r,
            "half_p99_ms": half["latency"]["p99_ms"],
            "half_p999_ms": half["latency"]["p999_ms"],
            "triple_offered_per_second": triple["requests_per_second"],
            "triple_admitted_p99_ms_from_due": triple["latency_expected"]["p99_ms"],
            "triple_admitted_p99_ms_from_send": triple["latency_expected_sent"]["p99_ms"],
            "triple_share_shed": shed,
        });
        println!("{row}");
        rows.push(row);
    }
    let col = |f: &str| median(rows.iter().map(|r| figure(r, f)));
    let mut t = Table::new(&[
        "round",
        "sustainable R, batches/s",
        "p99 ms at R/2",
        "p99.9 ms at R/2",
        "offered at 3R, req/s",
        "p99 ms of admitted at 3R (from due)",
        "p99 ms of admitted at 3R (from send)",
        "share shed at 3R",
    ]);
    let fields = [
        "sustainable_batches_per_second",
        "half_p99_ms",
        "half_p999_ms",
        "triple_offered_per_second",
        "triple_admitted_p99_ms_from_due",
        "triple_admitted_p99_ms_from_send",
        "triple_share_shed",
    ];
    for r in &rows {
        let mut cells = vec![r["round"].to_string()];
        cells.extend(fields.iter().map(|f| format!("{:.3}", figure(r, f))));
        t.row(&cells);
    }
    let mut cells = vec!["median".to_owned()];
    cells.extend(fields.iter().map(|f| format!("{:.3}", col(f))));
    t.row(&cells);
    lab.finish(
        json!({"scenario": "overload", "settings": a, "rounds": rows}),
        t.markdown(),
    )
}
