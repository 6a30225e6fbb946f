//! What the audit trail costs under a closed-loop load: how many records each write(2)
//! carries (one batch, one seal, one write), and the CPU per record of the writer thread
//! and of the whole gateway. The request workers write the batches (src/audit/writer.rs),
//! so writes are counted process-wide: write(2) calls of more than 8 bytes, which leaves
//! out the runtime's eventfd wake-ups (answers go out by writev). Builds alternate within
//! each round. Measures 5 s of an 8 s run: CPU from /proc, writes from perf's syscall
//! tracepoint (Debian's linux-perf, installed when missing).

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::Context;
use serde_json::json;

use permitgate_testkit::process::{cpu_seconds, threads_named};

use super::lab::{install_if_missing, Lab, LabArgs, Pin};
use super::stats::{figure, Table};

#[derive(clap::Args, Debug, Clone, serde::Serialize)]
pub struct Args {
    /// Builds to measure [default: --pg].
    binaries: Vec<PathBuf>,
    #[command(flatten)]
    lab: LabArgs,
    #[arg(long, default_value_t = 2)]
    rounds: usize,
    #[arg(long, default_value_t = 16)]
    connections: usize,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let lab = Lab::new("audit-writer", &a.lab)?;
    install_if_missing("perf", "--version", "linux-perf")?;
    let binaries = if a.binaries.is_empty() {
        vec![lab.pg.clone()]
    } else {
        a.binaries.clone()
    };
    let mut rows = Vec::new();
    for round in 1..=a.rounds {
        for bin in &binaries {
            let config = lab.config("writer", Vec::new())?;
            let gw = lab.serve("gateway", &config, Pin::ANY, Some(bin))?;
            let writer = threads_named(gw.pid(), "audit-writer")
                .into_iter()
                .next()
                .context("the gateway has no audit-writer thread")?
                .join("stat");
            let process = PathBuf::from(format!("/proc/{}/stat", gw.pid()));
            let cpu = |stat: &PathBuf| cpu_seconds(stat).unwrap_or(0.0);
            let load = format!("--connections {} --duration 8 --warmup 1", a.connections);
            let mut run = lab.spawn_load("load", config.ports.listen, &load, Pin::ANY)?;
            std::thread::sleep(Duration::from_secs(2));
            let (writer0, all0) = (cpu(&writer), cpu(&process));
            let records0 = gw.metric("permitgate_audit_records_total");
            let perf = Command::new("perf")
                .args(["stat", "-x,", "-e", "syscalls:sys_enter_write"])
                .args(["--filter", "count > 8", "-p"])
                .arg(gw.pid().to_string())
                .args(["--", "sleep", "5"])
                .stdout(Stdio::null())
                .output()
                .context("running perf stat")?;
            let (writer1, all1) = (cpu(&writer), cpu(&process));
            let records1 = gw.metric("permitgate_audit_records_total");
            run.wait()?;
            drop(gw);
            let writes: f64 = String::from_utf8_lossy(&perf.stderr)
                .lines()
                .find_map(|l| l.split(',').next()?.trim().parse().ok())
                .context("perf counted no writes (is the tracepoint available?)")?;
            let records = records1.unwrap_or(0.0) - records0.unwrap_or(0.0);
            let row = json!({
                "round": round,
                "build": bin,
                "records": records,
                "writer_cpu_us_per_record": 1e6 * (writer1 - writer0) / records.max(1.0),
                "gateway_cpu_us_per_record": 1e6 * (all1 - all0) / records.max(1.0),
                "writes": writes,
                "records_per_write": records / writes.max(1.0),
            });
            println!("{row}");
            rows.push(row);
        }
    }
    let mut t = Table::new(&[
        "round",
        "build",
        "records",
        "writer thread CPU us per record",
        "gateway CPU us per record",
        "batch write(2) calls",
        "records per write",
    ]);
    for r in &rows {
        t.row(&[
            r["round"].to_string(),
            r["build"].as_str().unwrap_or_default().to_owned(),
            format!("{:.0}", figure(r, "records")),
            format!("{:.3}", figure(r, "writer_cpu_us_per_record")),
            format!("{:.1}", figure(r, "gateway_cpu_us_per_record")),
            format!("{:.0}", figure(r, "writes")),
            format!("{:.1}", figure(r, "records_per_write")),
        ]);
    }
    lab.finish(
        json!({"scenario": "audit-writer", "settings": a, "rounds": rows}),
        t.markdown(),
    )
}
