//! Relay fan-out: one relay (a gateway as shipped serving the repository it holds), a
//! fleet of simulated followers holding long-polls over mTLS (partner `relay`, one
//! HTTP/1.1 connection each), partner traffic beside them. Steps: the sustainable rate R
//! of link checks (closed loop, 16 connections, bank); bank at R/2 (`--partner-load`)
//! alone, the baseline p99; bank at R/2 again while the followers long-poll and
//! publications land 1 s apart, each follower's time to hold the new manifest and its
//! delta measured; then, on the swap scenario's 10M-document repository when it exists
//! (`scenario swap` makes it), many followers download the base at once while the relay's
//! resident memory is sampled every 50 ms.
//!
//! `--pinned`: the relay on CPU 0 (started under `taskset`: it sizes itself to one CPU),
//! the partner's generator (under SCHED_FIFO, as the victims of `scenario doors`) and the
//! fleet on CPU 1, as `scenario compare --pinned` does (issue 32, target 3); the downloads
//! are left out.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use anyhow::bail;
use serde_json::{json, Value};

use super::lab::{Lab, LabArgs, Pin};
use super::stats::{figure, Table};

#[derive(clap::Args, Debug, Clone, serde::Serialize)]
pub struct Args {
    #[command(flatten)]
    lab: LabArgs,
    #[arg(long, default_value_t = 1000)]
    followers: usize,
    #[arg(long, default_value_t = 20)]
    publications: usize,
    /// Followers downloading the big base at once.
    #[arg(long, default_value_t = 100)]
    downloads: usize,
    /// The swap scenario's data, with its 10M-document repository (skipped without it).
    #[arg(long, default_value = "var/bench-swap")]
    big_dir: PathBuf,
    /// The relay alone on CPU 0, the generators on CPU 1.
    #[arg(long)]
    pinned: bool,
    /// The partner's rate, as a share of the sustainable rate: above 1, the relay is
    /// saturated, and the followers must still hold each publication.
    #[arg(long, default_value_t = 0.5)]
    partner_load: f64,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    if !(a.partner_load > 0.0 && a.partner_load.is_finite()) {
        bail!("--partner-load must be a positive share of the sustainable rate");
    }
    let lab = Lab::new("fanout", &a.lab)?;
    // A fresh base with no delta chain: the publications then stay deltas (a compaction
    // would send every follower the whole base instead).
    lab.publish(&lab.dir.join("export.jsonl"), &lab.dir.join("repo"), None)?;
    let config = lab.config("fanout", Vec::new())?;
    let (relay_pin, clients) = if a.pinned {
        (Pin::cpus("0"), Pin::cpus("1"))
    } else {
        (Pin::ANY, Pin::ANY)
    };
    clients.apply_to_self()?;
    // Pinned, the partner's generator shares CPU 1 with the fleet, which wakes with the
    // relay's answers: without SCHED_FIFO it waited behind the fleet up to 4.9 ms (`perf
    // sched latency`), the fleet's cost on the measuring client, not on the relay. At
    // half the maximum it sleeps between requests, so it starves nothing; past that it
    // would starve the fleet, and stays at normal priority.
    let partner_pin = Pin {
        realtime: a.pinned && a.partner_load <= 0.5,
        ..clients
    };
    let relay = lab.serve("relay", &config, relay_pin, None)?;
    let target = config.ports.listen;
    let max = lab.sustainable_rate(target, clients)?;
    let rate = (max * a.partner_load).floor();
    println!("== sustainable rate {max:.0} req/s; partner traffic at {rate} req/s");
    let window = a.publications + 8;
    let partner = format!("--duration {window} --warmup 1 --connections 16 --rate {rate}");
    let alone = lab.load("partner-alone", target, &partner, partner_pin)?;

    println!(
        "== {} followers, {} publications, partner traffic alongside",
        a.followers, a.publications
    );
    let rss_before = relay.rss_kib();
    // The fleet connects first and downloads the base it does not hold yet (handshakes and
    // downloads: storms of their own); then it holds still for 3 s while the partner
    // traffic starts, so that the publications fall in the partner's measured time.
    let fleet_args = format!(
        "--partner relay --propagation {} --followers {} --settle-ms 3000 --gap-ms 1000 --timeout-ms 5000",
        a.publications, a.followers
    );
    let mut fleet = lab.spawn_load("followers", target, &fleet_args, clients)?;
    let fleet_log = lab.out.join("followers.log");
    let mut holding = false;
    for _ in 0..1200 {
        holding =
            std::fs::read_to_string(&fleet_log).is_ok_and(|l| l.contains("hold the manifest"));
        if holding || fleet.try_wait()?.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    if !holding {
        bail!(
            "the followers never held the manifest (see {})",
            fleet_log.display()
        );
    }
    let mut busy = lab.spawn_load("partner-with-followers", target, &partner, partner_pin)?;
    fleet.wait()?;
    let rss_followers = relay.rss_kib();
    busy.wait()?;
    let busy = lab.report("partner-with-followers")?;
    let followers = lab.report("followers")?;
    drop(relay);

    let downloads = if a.pinned { None } else { downloads(&lab, &a)? };
    let n = |v: &Value, f: &str| figure(v, f);
    let samples: Vec<f64> = followers["samples_ms"]
        .as_array()
        .map(|s| s.iter().filter_map(Value::as_f64).collect())
        .unwrap_or_default();
    let within = samples.iter().filter(|s| **s <= 1000.0).count();
    let lost = n(&followers, "lost");
    let slowest = followers["slowest_ms"]
        .as_array()
        .and_then(|s| s.iter().filter_map(Value::as_f64).reduce(f64::max))
        .unwrap_or(f64::NAN);
    let mut t = Table::new(&["measurement", "value"]);
    let (pa, pb) = (n(&alone, "latency.p99_ms"), n(&busy, "latency.p99_ms"));
    t.row(&[
        format!("partner p99 alone / with {} followers", a.followers),
        format!("{pa:.3} ms / {pb:.3} ms ({:.2}x)", pb / pa),
    ]);
    t.row(&[
        "partner errors alone / with followers".into(),
        format!("{} / {}", alone["errors"], busy["errors"]),
    ]);
    t.row(&[
        "follower sightings within 1 s".into(),
        format!("{within} of {} ({lost} lost)", samples.len() as f64 + lost),
    ]);
    t.row(&[
        "time to a follower, median / p90 / p99 / max".into(),
        format!(
            "{:.1} / {:.1} / {:.1} / {:.1} ms",
            n(&followers, "median_ms"),
            n(&followers, "p90_ms"),
            n(&followers, "p99_ms"),
            n(&followers, "max_ms")
        ),
    ]);
    t.row(&[
        "slowest follower per publication, max".into(),
        format!("{slowest:.1} ms"),
    ]);
    t.row(&[
        "relay RSS before followers / after the publications".into(),
        format!(
            "{:.0} / {:.0} MiB",
            rss_before as f64 / 1024.0,
            rss_followers as f64 / 1024.0
        ),
    ]);
    if let Some(d) = &downloads {
        t.row(&[
            format!(
                "{} downloads of the base at once: failed, slowest",
                d["downloads"]
            ),
            format!(
                "{}, {:.1} s",
                d["failed"],
                d["slowest_s"].as_f64().unwrap_or(f64::NAN)
            ),
        ]);
        t.row(&[
            "relay RSS idle / peak during the downloads".into(),
            format!(
                "{:.0} / {:.0} MiB",
                n(d, "rss_idle_kib") / 1024.0,
                n(d, "rss_peak_kib") / 1024.0
            ),
        ]);
    }
    let summary = json!({
        "scenario": "fanout",
        "settings": a,
        "partner_alone_p99_ms": pa,
        "partner_with_followers_p99_ms": pb,
        "followers": followers,
        "rss_before_kib": rss_before,
        "rss_after_kib": rss_followers,
        "downloads": downloads,
    });
    lab.finish(summary, t.markdown())
}

/// The relay on the big repository, `downloads` followers fetching its base at once,
/// its memory sampled; `None` without the big data.
fn downloads(lab: &Lab, a: &Args) -> anyhow::Result<Option<Value>> {
    let big = std::path::absolute(&a.big_dir)?;
    if !big.join("export-big.jsonl").exists() {
        println!(
            "== no {}/export-big.jsonl (run `scenario swap` once): downloads skipped",
            big.display()
        );
        return Ok(None);
    }
    let big_lab = lab.with_dir(&big);
    let config = big_lab.config("fanout", Vec::new())?;
    let relay = big_lab.serve("relay-big", &config, Pin::ANY, None)?;
    println!(
        "== {} followers download the base of {} at once",
        a.downloads,
        big.display()
    );
    let idle = relay.rss_kib();
    let peak = AtomicU64::new(idle);
    let done = AtomicBool::new(false);
    let report = std::thread::scope(|s| {
        s.spawn(|| {
            while !done.load(Ordering::Relaxed) {
                peak.fetch_max(relay.rss_kib(), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        let r = big_lab.load(
            "downloads",
            config.ports.listen,
            &format!(
                "--partner relay --download-base {} --fail-on-errors",
                a.downloads
            ),
            Pin::ANY,
        );
        done.store(true, Ordering::Relaxed);
        r
    })?;
    drop(relay);
    let slowest = report["seconds"]
        .as_array()
        .and_then(|s| s.iter().filter_map(Value::as_f64).reduce(f64::max));
    Ok(Some(json!({
        "downloads": report["downloads"],
        "failed": report["failed"],
        "bytes_each": report["bytes_each"],
        "slowest_s": slowest,
        "rss_idle_kib": idle,
        "rss_peak_kib": peak.load(Ordering::Relaxed),
    })))
}
