//! permitgate against its practical ceiling: nginx with mTLS returning, as a static body,
//! the very answer the gateway gives to a link check, driven in turn (nginx, permitgate,
//! nginx, ...) with the same load; then what has no nginx counterpart (open loop at half
//! the gateway's maximum, HTTP/2, batches, receipts). CPU seconds per request of each
//! server come from /proc (nginx's workers included).
//!
//! Like for like: the gateway as shipped writes its audit trail, so the nginx it is
//! compared with writes a buffered access log (one line per request, `buffer=64k
//! flush=1s`); the `audit` case also runs the gateway without its trail against nginx
//! without a log, and reports what the trail costs. The `floor` case runs the gateway's
//! stack with no gateway in it (loadtest/src/floor.rs: hyper and rustls answering the
//! same fixed body) beside both: what part of the gap to nginx is the stack's own. Cases
//! (`--cases`): h1 audit handshake h2 open floor. nginx is installed from Debian's
//! packages when it is missing.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context};
use permitgate_testkit::config_edit;
use permitgate_testkit::process::{free_port, terminate, Running};
use serde_json::{json, Value};

use super::lab::{cpu_seconds, install_if_missing, wait_accepting, Lab, LabArgs, Pin, RoundArgs};
use super::stats::{figure, median, ratios, Table};

#[derive(clap::Args, Debug, Clone, serde::Serialize)]
pub struct Args {
    #[command(flatten)]
    lab: LabArgs,
    #[command(flatten)]
    rounds: RoundArgs,
    #[arg(long, default_value_t = 16)]
    connections: usize,
    #[arg(long, default_value_t = 8)]
    handshake_connections: usize,
    #[arg(long, default_value_t = 2)]
    h2_connections: usize,
    #[arg(long, default_value_t = 32)]
    h2_streams: usize,
    /// nginx's worker processes [default: the CPUs; with --pinned, 1].
    #[arg(long)]
    nginx_workers: Option<usize>,
    /// Core against core: the gateway (whatever threads it runs) and nginx (one worker)
    /// on CPU 0, the generator on CPU 1, so that each server's own costs are seen.
    #[arg(long)]
    pinned: bool,
    /// Only these cases, comma-separated: h1 audit handshake h2 open floor (the last
    /// only with h1, beside it).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "h1,audit,handshake,h2,open"
    )]
    cases: Vec<String>,
}

/// A server under measurement: its process (CPU from /proc) and address.
struct Served {
    pid: u32,
    addr: SocketAddr,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let lab = Lab::new("compare", &a.lab)?;
    let wants = |c: &str| a.cases.iter().any(|x| x == c);
    install_if_missing("nginx", "-v", "nginx")?;
    let config = lab.config("compare", Vec::new())?;
    let (server_pin, generator_pin) = if a.pinned {
        (Pin::cpus("0"), Pin::cpus("1"))
    } else {
        (Pin::ANY, Pin::ANY)
    };
    generator_pin.apply_to_self()?;
    let pg = lab.serve("permitgate", &config, server_pin, None)?;
    let noaudit = if wants("audit") {
        let c = lab.config("compare-noaudit", vec![config_edit::remove("audit")])?;
        Some((
            lab.serve("permitgate-noaudit", &c, server_pin, None)?,
            c.ports.listen,
        ))
    } else {
        None
    };
    let answer = link_check_answer(&lab, config.ports.listen)?;
    println!("   answer body: {} bytes", answer.len());
    let (nginx_log, nginx_nolog) = (free_port(), free_port());
    let mut nginx = start_nginx(&lab, &a, server_pin, &answer, nginx_log, nginx_nolog)?;
    let ng = Served {
        pid: nginx.id(),
        addr: nginx_log,
    };
    let ng_nolog = Served {
        pid: nginx.id(),
        addr: nginx_nolog,
    };
    let pgs = Served {
        pid: pg.pid(),
        addr: config.ports.listen,
    };
    // Measured in the h1 rounds, beside nginx and the gateway: with no h1, not started.
    let floor = if wants("floor") && wants("h1") {
        Some(start_floor(&lab, server_pin, &answer)?)
    } else {
        None
    };
    let fl = floor.as_ref().map(|(f, addr)| Served {
        pid: f.id(),
        addr: *addr,
    });
    let run = |name: &str, s: &Served, args: String| -> anyhow::Result<Value> {
        let before = cpu_seconds(s.pid);
        let load = format!(
            "--duration {} --warmup 1 --fail-on-errors {args}",
            a.rounds.duration
        );
        let mut r = lab.load(name, s.addr, &load, generator_pin)?;
        let cpu = cpu_seconds(s.pid) - before;
        // Over the whole run (warm-up included) per measured request: an upper bound.
        r["server_cpu_seconds"] = json!(cpu);
        r["server_cpu_us_per_request"] = json!(1e6 * cpu / figure(&r, "requests").max(1.0));
        std::fs::write(
            lab.out.join(format!("{name}.json")),
            serde_json::to_vec_pretty(&r)?,
        )?;
        println!(
            "   {name:<28} {:>9.0} req/s  p99 {:>7.3} ms  cpu {:>6.1} us/req  generator {:.2} cores",
            figure(&r, "requests_per_second"),
            figure(&r, "latency.p99_ms"),
            figure(&r, "server_cpu_us_per_request"),
            figure(&r, "generator_cpu")
        );
        Ok(r)
    };
    let mut runs: Vec<(String, Value)> = Vec::new();
    let conns = format!("--connections {}", a.connections);
    for round in 1..=a.rounds.rounds {
        let mut one = |case: &str, s: &Served, args: &str| -> anyhow::Result<()> {
            let r = run(&format!("{case}-{round}"), s, args.to_owned())?;
            runs.push((case.to_owned(), r));
            Ok(())
        };
        // Every server of a round runs within seconds of the others: the machine drifts
        // by 10-20 % over minutes.
        if wants("h1") {
            one("nginx-h1", &ng, &conns)?;
            one("permitgate-h1", &pgs, &conns)?;
            if let Some(fl) = &fl {
                one("floor-h1", fl, &conns)?;
            }
        }
        if let Some((gw, addr)) = &noaudit {
            let s = Served {
                pid: gw.pid(),
                addr: *addr,
            };
            one("nginx-nolog-h1", &ng_nolog, &conns)?;
            one("permitgate-noaudit-h1", &s, &conns)?;
        }
        if wants("handshake") {
            let h = format!(
                "--protocol h1-new --connections {}",
                a.handshake_connections
            );
            one("nginx-handshake", &ng, &h)?;
            one("permitgate-handshake", &pgs, &h)?;
        }
        if wants("h2") {
            let h = format!(
                "--protocol h2 --connections {} --h2-streams {}",
                a.h2_connections, a.h2_streams
            );
            one("nginx-h2", &ng, &h)?;
            one("permitgate-h2", &pgs, &h)?;
        }
    }
    let of = |runs: &[(String, Value)], case: &str, field: &str| -> Vec<f64> {
        runs.iter()
            .filter(|(c, _)| c == case)
            .map(|(_, r)| figure(r, field))
            .collect()
    };
    if wants("open") && wants("h1") {
        let half = (median(of(&runs, "permitgate-h1", "requests_per_second")) / 2.0).floor();
        println!("== open loop at half the gateway's maximum ({half} req/s; nginx at the same rate); batches, receipts");
        for round in 1..=a.rounds.rounds {
            let open = format!("{conns} --rate {half}");
            for (case, s, args) in [
                ("nginx-open-half", &ng, open.clone()),
                ("permitgate-open-half", &pgs, open.clone()),
                (
                    "permitgate-batch100",
                    &pgs,
                    "--workload batch --batch-size 100 --connections 4".to_owned(),
                ),
                (
                    "permitgate-receipts",
                    &pgs,
                    format!("{conns} --receipt-share 1"),
                ),
            ] {
                let r = run(&format!("{case}-{round}"), s, args)?;
                runs.push((case.to_owned(), r));
            }
        }
    }
    terminate(&mut nginx, Duration::from_secs(10));
    drop((pg, noaudit, floor));
    // Written for the cost of writing them (about 1 GB a run each): not kept.
    let _ = std::fs::remove_file(lab.out.join("nginx-access.log"));
    let _ = std::fs::remove_dir_all(lab.dir.join("audit-compare"));

    let mut t = Table::new(&[
        "case",
        "nginx",
        "permitgate",
        "ratio",
        "ratio per round (median)",
    ]);
    let rps = "requests_per_second";
    let cpu = "server_cpu_us_per_request";
    for (label, n, p, field) in [
        (
            "keep-alive HTTP/1.1, audit trail / access log on, req/s",
            "nginx-h1",
            "permitgate-h1",
            rps,
        ),
        (
            "keep-alive HTTP/1.1, audit trail / access log on, server CPU us/req",
            "nginx-h1",
            "permitgate-h1",
            cpu,
        ),
        (
            "keep-alive HTTP/1.1, audit trail / access log on, the generator's CPU (cores)",
            "nginx-h1",
            "permitgate-h1",
            "generator_cpu",
        ),
        (
            "keep-alive HTTP/1.1, no trail / no log, req/s",
            "nginx-nolog-h1",
            "permitgate-noaudit-h1",
            rps,
        ),
        (
            "keep-alive HTTP/1.1, no trail / no log, server CPU us/req",
            "nginx-nolog-h1",
            "permitgate-noaudit-h1",
            cpu,
        ),
        (
            "new connection + full handshake, req/s",
            "nginx-handshake",
            "permitgate-handshake",
            rps,
        ),
        ("HTTP/2, req/s", "nginx-h2", "permitgate-h2", rps),
        (
            "open loop at half the max, p99 ms",
            "nginx-open-half",
            "permitgate-open-half",
            "latency.p99_ms",
        ),
        (
            "open loop at half the max, p99.9 ms",
            "nginx-open-half",
            "permitgate-open-half",
            "latency.p999_ms",
        ),
    ] {
        against(&mut t, label, &of(&runs, n, field), &of(&runs, p, field));
    }
    let mut floor_t = Table::new(&[
        "the stack's floor (loadtest/src/floor.rs)",
        "baseline",
        "floor",
        "ratio",
        "ratio per round (median)",
    ]);
    for (label, base, field) in [
        ("against nginx with its access log, req/s", "nginx-h1", rps),
        (
            "against nginx with its access log, server CPU us/req",
            "nginx-h1",
            cpu,
        ),
        (
            "against nginx with its access log, the generator's CPU (cores)",
            "nginx-h1",
            "generator_cpu",
        ),
        (
            "against the gateway (audit on), req/s",
            "permitgate-h1",
            rps,
        ),
        (
            "against the gateway (audit on), server CPU us/req",
            "permitgate-h1",
            cpu,
        ),
    ] {
        against(
            &mut floor_t,
            label,
            &of(&runs, base, field),
            &of(&runs, "floor-h1", field),
        );
    }
    let mut extra = Table::new(&["permitgate alone", "measured"]);
    let (on, off) = (
        of(&runs, "permitgate-h1", rps),
        of(&runs, "permitgate-noaudit-h1", rps),
    );
    if !on.is_empty() && !off.is_empty() {
        let cost = 1.0 - median(ratios(&on, &off));
        let cpu_cost = median(ratios(
            &of(&runs, "permitgate-h1", cpu),
            &of(&runs, "permitgate-noaudit-h1", cpu),
        )) - 1.0;
        extra.row(&[
            "audit trail's cost: throughput, per round (median)".into(),
            format!("{:.1} %", 100.0 * cost),
        ]);
        extra.row(&[
            "audit trail's cost: server CPU per request, per round (median)".into(),
            format!("{:+.1} %", 100.0 * cpu_cost),
        ]);
    }
    let single = median(of(&runs, "permitgate-h1", "items_per_second"));
    for (label, case, field) in [
        (
            "batch of 100: checks/s over single checks/s",
            "permitgate-batch100",
            "items_per_second",
        ),
        (
            "receipts on every link check: req/s over without",
            "permitgate-receipts",
            rps,
        ),
    ] {
        let v = of(&runs, case, field);
        if !v.is_empty() {
            extra.row(&[
                label.into(),
                format!("{:.2}x ({:.0})", median(v.clone()) / single, median(v)),
            ]);
        }
    }
    let floor_md = if fl.is_some() {
        format!("\n{}", floor_t.markdown())
    } else {
        String::new()
    };
    let table = format!(
        "medians of {} rounds each; ratio of the medians, and the median of the ratios round by round\n\n{}\n{}{floor_md}",
        a.rounds.rounds,
        t.markdown(),
        extra.markdown()
    );
    let summary = json!({
        "scenario": "compare",
        "settings": a,
        "runs": runs.iter().map(|(c, r)| json!({"case": c, "requests_per_second": r[rps], "p99_ms": r["latency"]["p99_ms"], "p999_ms": r["latency"]["p999_ms"], "server_cpu_us_per_request": r[cpu], "generator_cpu": r["generator_cpu"]})).collect::<Vec<_>>(),
    });
    lab.finish(summary, &table)
}

/// A row of `t`: `label`, the medians of `base` and of `measured` (runs of the same
/// rounds), their ratio, and the median of the ratios round by round; none if either
/// case did not run.
fn against(t: &mut Table, label: &str, base: &[f64], measured: &[f64]) {
    if base.is_empty() || measured.is_empty() {
        return;
    }
    let (bm, mm) = (median(base.to_vec()), median(measured.to_vec()));
    // Small figures (cores, milliseconds) keep two decimals; req/s and µs/req one.
    let places = if bm.max(mm) < 2.0 { 2 } else { 1 };
    t.row(&[
        label.into(),
        format!("{bm:.places$}"),
        format!("{mm:.places$}"),
        format!("{:.2}x", mm / bm),
        format!("{:.2}x", median(ratios(measured, base))),
    ]);
}

/// `permitgate-load floor` (this program) serving `answer` with the demo's PKI, pinned
/// as the servers are, once it accepts.
fn start_floor(lab: &Lab, pin: Pin, answer: &str) -> anyhow::Result<(Running, SocketAddr)> {
    let (file, addr) = (lab.out.join("floor-answer.json"), free_port());
    std::fs::write(&file, answer).with_context(|| file.display().to_string())?;
    let child = pin
        .command(&lab.load)
        .arg("floor")
        .arg("--listen")
        .arg(addr.to_string())
        .arg("--demo")
        .arg(&lab.dir)
        .arg("--answer-file")
        .arg(&file)
        .stdout(Stdio::null())
        .spawn()
        .context("starting the floor")?;
    let mut floor = Running(child);
    if wait_accepting(&mut floor, &[addr], Duration::from_secs(5)) {
        return Ok((floor, addr));
    }
    terminate(&mut floor, Duration::from_secs(5));
    bail!("the floor (permitgate-load floor) did not start")
}

/// The gateway's answer to the demo's linked pair, byte for byte (curl, as a partner
/// would ask).
fn link_check_answer(lab: &Lab, addr: SocketAddr) -> anyhow::Result<String> {
    let samples: Value = serde_json::from_slice(&std::fs::read(lab.dir.join("samples.json"))?)?;
    let body = samples
        .as_array()
        .and_then(|s| s.iter().find(|s| s["name"] == "linked_pair"))
        .map(|s| s["body"].to_string())
        .context("the demo's samples have no linked_pair")?;
    let pki = lab.dir.join("pki");
    let out = Command::new("curl")
        .arg("-sf")
        .arg("--cacert")
        .arg(pki.join("ca.crt"))
        .arg("--cert")
        .arg(pki.join("partners/bank.crt"))
        .arg("--key")
        .arg(pki.join("partners/bank.key"))
        .args(["-H", "content-type: application/json", "-d", &body])
        .arg(format!("https://localhost:{}/v1/link-checks", addr.port()))
        .output()
        .context("running curl")?;
    if !out.status.success() {
        bail!("curl could not get a link-check answer from the gateway");
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn start_nginx(
    lab: &Lab,
    a: &Args,
    pin: Pin,
    answer: &str,
    with_log: SocketAddr,
    without_log: SocketAddr,
) -> anyhow::Result<Running> {
    let (out, pki) = (&lab.out, lab.dir.join("pki"));
    let workers = a
        .nginx_workers
        .or(a.pinned.then_some(1))
        .or_else(|| std::thread::available_parallelism().ok().map(Into::into))
        .unwrap_or(1);
    let p = |x: &Path| x.display().to_string();
    let server = |addr: SocketAddr, log: &str| {
        format!(
            "    server {{\n        listen {addr} ssl http2;\n        access_log {log};\n        location / {{\n            default_type application/json;\n            return 200 '{answer}';\n        }}\n    }}\n"
        )
    };
    let conf = format!(
        "worker_processes {workers};\ndaemon off;\npid {pid};\nerror_log {err} warn;\nevents {{ worker_connections 8192; }}\nhttp {{\n    keepalive_requests 100000000;\n    ssl_certificate {crt};\n    ssl_certificate_key {key};\n    ssl_client_certificate {ca};\n    ssl_verify_client on;\n    ssl_protocols TLSv1.2 TLSv1.3;\n    ssl_session_cache shared:SSL:10m;\n    # As the gateway audits every answer: one line per request, buffered.\n{with}{without}}}\n",
        pid = p(&out.join("nginx.pid")),
        err = p(&out.join("nginx-error.log")),
        crt = p(&pki.join("server.crt")),
        key = p(&pki.join("server.key")),
        ca = p(&pki.join("ca.crt")),
        with = server(
            with_log,
            &format!("{} combined buffer=64k flush=1s", p(&out.join("nginx-access.log")))
        ),
        without = server(without_log, "off"),
    );
    let conf_path = out.join("nginx.conf");
    std::fs::write(&conf_path, conf)?;
    let child = pin
        .command(Path::new("nginx"))
        .arg("-c")
        .arg(&conf_path)
        .arg("-p")
        .arg(out)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting nginx")?;
    let mut nginx = Running(child);
    if wait_accepting(&mut nginx, &[with_log, without_log], Duration::from_secs(5)) {
        let version = Command::new("nginx").arg("-v").output()?;
        println!(
            "== nginx {}",
            String::from_utf8_lossy(&version.stderr).trim()
        );
        return Ok(nginx);
    }
    terminate(&mut nginx, Duration::from_secs(5));
    bail!(
        "nginx did not start (see {})",
        out.join("nginx-error.log").display()
    )
}
