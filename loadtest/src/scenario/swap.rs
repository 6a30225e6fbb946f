//! A new 10M-document base swapped in under load. The gateway as shipped (audit on)
//! serves its repository (watched) holding a base of `--docs` documents: the demo's
//! residents plus filler travel permits. First the sustainable rate R (closed loop, 16
//! connections, link checks); then, each round, two open-loop windows at R/2: one without
//! a swap, and one during which a new publication lands 1 s into the window (its objects
//! copied in before the runs; the manifest renamed over the old one, as a sync from the
//! publisher ends). The publications are prepared before any load. Reported per round:
//! p99 and p99.9 of both windows, their ratio, failed requests, that the version moved,
//! and how long the swap took (`permitgate_base_swap_duration_seconds`, waited for up to
//! 30 s when it outlasts the window). Disk: about (rounds + 2) x 0.33 GB, and a 0.9 GB
//! export.

use std::io::{BufRead, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::{json, Value};

use super::lab::{Lab, LabArgs, Pin, Server};
use super::stats::{figure, Table};

#[derive(clap::Args, Debug, Clone, serde::Serialize)]
pub struct Args {
    #[command(flatten)]
    lab: LabArgs,
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Seconds each window measures.
    #[arg(long, default_value_t = 4.0)]
    window: f64,
    /// Documents in the base.
    #[arg(long, default_value_t = 10_000_000)]
    docs: u64,
    /// Leave the objects wherever the page cache left them (this VM pages out cold file
    /// pages within the hour), instead of reading them in before each round as the sync
    /// that brought them would have.
    #[arg(long)]
    cold: bool,
    /// In round 1, record the scheduler's events over each window (`perf sched record
    /// -a`) into sched-calm.data and sched-swap.data.
    #[arg(long)]
    perf_sched: bool,
}

const SWAP_SUM: &str = "permitgate_base_swap_duration_seconds_sum";
const VERSION: &str = "permitgate_snapshot_version";

pub fn run(a: Args) -> anyhow::Result<()> {
    let lab = Lab::new("swap", &a.lab)?;
    let big = lab.dir.join("export-big.jsonl");
    if !big.exists() {
        println!("== writing an export of {} documents", a.docs);
        write_big_export(&lab.dir.join("export.jsonl"), &big, a.docs)?;
    }
    println!(
        "== publishing the base and {} staged publications",
        a.rounds
    );
    let stage = lab.dir.join("stage");
    let _ = std::fs::remove_dir_all(&stage);
    lab.publish(&big, &lab.dir.join("repo"), None)?;
    let base = manifest_version(&lab.dir.join("repo/manifest.json"))?;
    for r in 1..=a.rounds {
        let version = base + u64::try_from(r)?;
        lab.publish(&big, &stage.join(r.to_string()), Some(version))?;
    }
    // Objects first, long before the manifests that name them (as a sync copies them):
    // copying 0.33 GB must not run on these cores during a measured window.
    for r in 1..=a.rounds {
        for o in objects(&stage.join(r.to_string()))? {
            let name = o.file_name().context("object name")?;
            std::fs::copy(&o, lab.dir.join("repo/objects").join(name))?;
        }
    }
    let config = lab.config("swap", Vec::new())?;
    let gw = lab.serve("gateway", &config, Pin::ANY, None)?;
    let target = config.ports.listen;
    let max = lab.sustainable_rate(target, Pin::ANY)?;
    let half = (max / 2.0).floor();
    println!(
        "== sustainable rate {max:.0} req/s; open loop at {half} req/s, {} s windows",
        a.window
    );
    let window = format!(
        "--duration {} --warmup 1 --connections 16 --rate {half}",
        a.window
    );
    let mut rows = Vec::new();
    for r in 1..=a.rounds {
        let staged = stage.join(r.to_string());
        if !a.cold {
            for o in objects(&staged)? {
                let name = o.file_name().context("object name")?;
                let _ = std::fs::read(lab.dir.join("repo/objects").join(name))?;
            }
        }
        let recorder = |name: &str| sched_recorder(&lab, &a, r, name);
        let sched = recorder("calm")?;
        let calm = lab.load(&format!("calm-{r}"), target, &window, Pin::ANY)?;
        finish_recording(sched);
        let before = gw.metric(VERSION);
        let spent = gw.metric(SWAP_SUM);
        let sched = recorder("swap")?;
        let mut run = lab.spawn_load(&format!("swap-{r}"), target, &window, Pin::ANY)?;
        // The generator's 1 s warm-up, then 1 s into the measured window.
        std::thread::sleep(Duration::from_secs(2));
        std::fs::rename(
            staged.join("manifest.json"),
            lab.dir.join("repo/manifest.json"),
        )?;
        run.wait()?;
        finish_recording(sched);
        let swapped = lab.report(&format!("swap-{r}"))?;
        let (after, took) = wait_swapped(&gw, before, spent);
        if after == before {
            bail!("round {r}: the gateway did not swap ({before:?})");
        }
        let row = json!({
            "round": r,
            "calm": latency(&calm),
            "swap": latency(&swapped),
            "failed": swapped["errors"],
            "requests": swapped["requests"],
            "version_before": before,
            "version_after": after,
            "swap_seconds": took,
        });
        println!("{row}");
        rows.push(row);
    }
    drop(gw);
    let _ = std::fs::remove_dir_all(&stage);
    let mut t = Table::new(&[
        "round",
        "p99 no swap",
        "p99 with swap",
        "ratio",
        "p99.9 no swap",
        "p99.9 with swap",
        "failed (with swap)",
        "version",
        "swap took",
    ]);
    for r in &rows {
        let (c99, s99) = (figure(r, "calm.p99_ms"), figure(r, "swap.p99_ms"));
        t.row(&[
            r["round"].to_string(),
            format!("{c99:.3} ms"),
            format!("{s99:.3} ms"),
            format!("{:.2}x", s99 / c99),
            format!("{:.3} ms", figure(r, "calm.p999_ms")),
            format!("{:.3} ms", figure(r, "swap.p999_ms")),
            format!("{} of {}", r["failed"], r["requests"]),
            format!(
                "{:.0} -> {:.0}",
                figure(r, "version_before"),
                figure(r, "version_after")
            ),
            format!("{:.2} s", figure(r, "swap_seconds")),
        ]);
    }
    lab.finish(
        json!({"scenario": "swap", "settings": a, "rounds": rows}),
        t.markdown(),
    )
}

/// With --perf-sched, in round 1: `perf sched record` over the next window.
fn sched_recorder(
    lab: &Lab,
    a: &Args,
    round: usize,
    name: &str,
) -> anyhow::Result<Option<std::process::Child>> {
    if !a.perf_sched || round != 1 {
        return Ok(None);
    }
    let child = std::process::Command::new("perf")
        .args(["sched", "record", "-a", "-o"])
        .arg(lab.out.join(format!("sched-{name}.data")))
        .args(["--", "sleep", &format!("{}", a.window.ceil() + 1.0)])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .context("running perf sched record (Debian's linux-perf)")?;
    Ok(Some(child))
}

fn finish_recording(recorder: Option<std::process::Child>) {
    if let Some(mut c) = recorder {
        let _ = c.wait();
    }
}

fn latency(r: &Value) -> Value {
    json!({"p99_ms": r["latency"]["p99_ms"], "p999_ms": r["latency"]["p999_ms"]})
}

/// The served version once it moved, and the seconds the swap took (a paced swap may
/// outlast the window: waited for up to 30 s).
fn wait_swapped(gw: &Server, before: Option<f64>, spent: Option<f64>) -> (Option<f64>, f64) {
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let (version, sum) = (gw.metric(VERSION), gw.metric(SWAP_SUM));
        if (version != before && sum != spent) || Instant::now() > until {
            return (version, sum.unwrap_or(0.0) - spent.unwrap_or(0.0));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn manifest_version(path: &Path) -> anyhow::Result<u64> {
    let m: Value = serde_json::from_slice(&std::fs::read(path)?)?;
    m["signed"]["version"]
        .as_u64()
        .context("the manifest has no version")
}

fn objects(repo: &Path) -> anyhow::Result<Vec<std::path::PathBuf>> {
    let dir = repo.join("objects");
    let mut out = Vec::new();
    for e in std::fs::read_dir(&dir).with_context(|| dir.display().to_string())? {
        out.push(e?.path());
    }
    Ok(out)
}

/// The demo's residents (what the generator asks about), then filler travel permits
/// numbered past every demo number, up to `docs` documents.
fn write_big_export(demo: &Path, out: &Path, docs: u64) -> anyhow::Result<()> {
    let mut used = std::collections::HashSet::new();
    let mut w = std::io::BufWriter::new(std::fs::File::create(out)?);
    let mut n = 0u64;
    for line in std::io::BufReader::new(std::fs::File::open(demo)?).lines() {
        let line = line?;
        let person: Value = serde_json::from_str(&line)?;
        for d in person["documents"].as_array().into_iter().flatten() {
            // A travel permit's renewal count is not part of its identity: H12345678 and
            // H1234567803 are one document.
            if let Some(number) = d["number"].as_str() {
                used.insert(number.chars().take(9).collect::<String>());
            }
            n += 1;
        }
        writeln!(w, "{line}")?;
    }
    let mut i = 0u64;
    while n < docs {
        let number = format!("H{i:08}");
        i += 1;
        if used.contains(&number) {
            continue;
        }
        writeln!(
            w,
            r#"{{"person":"filler{i}","documents":[{{"number":"{number}","status":"valid","valid_until":"2031-01-01"}}]}}"#
        )?;
        n += 1;
    }
    w.flush()?;
    Ok(())
}
