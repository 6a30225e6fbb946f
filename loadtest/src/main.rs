//! `permitgate-load`: the command line. `anyhow` only here.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;

mod scenario;
use clap::Parser;

use permitgate_load::{
    run_attack, run_load, Attack, AttackPlan, Keys, Kind, Mode, Plan, PropagationPlan, Protocol,
    Spec, Target,
};

#[derive(Parser, serde::Serialize)]
#[command(
    name = "permitgate-load",
    version,
    about = "Load generator for permitgate over mTLS: closed or open loop, HTTP/1.1 or HTTP/2",
    args_conflicts_with_subcommands = true
)]
struct Args {
    #[command(subcommand)]
    #[serde(skip)]
    command: Option<Command>,
    /// Address of the gateway (or of the baseline server).
    #[arg(long, default_value = "127.0.0.1:8443")]
    target: SocketAddr,
    /// Name the server certificate carries.
    #[arg(long, default_value = "localhost")]
    server_name: String,
    /// A `permitgate demo` directory: supplies --ca, --cert, --key, --export and
    /// --temp-permit-key unless they are given.
    #[arg(long)]
    demo: Option<PathBuf>,
    /// With --demo: the partner whose certificate to use.
    #[arg(long, default_value = "bank")]
    partner: String,
    /// Connect from these local addresses in turn: addresses or networks
    /// (127.0.1.0/26 is 62 hosts), comma-separated. Loopback addresses reach a gateway on
    /// 127.0.0.1 from any of them: attackers on many hosts.
    #[arg(long, value_delimiter = ',')]
    source: Vec<String>,
    #[arg(long)]
    ca: Option<PathBuf>,
    #[arg(long)]
    cert: Option<PathBuf>,
    #[arg(long)]
    key: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "h1")]
    protocol: Protocol,
    /// Connections (HTTP/2: connections, each carrying --h2-streams concurrent streams).
    #[arg(long, default_value_t = 16)]
    connections: usize,
    #[arg(long, default_value_t = 16)]
    h2_streams: usize,
    /// Open loop at this many requests per second in total; closed loop without it.
    #[arg(long)]
    rate: Option<f64>,
    /// Seconds to measure.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Seconds to run before measuring.
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Stop after this many measured requests.
    #[arg(long)]
    requests: Option<u64>,
    /// A request not answered in this time counts as a timeout.
    #[arg(long, default_value_t = 10_000)]
    timeout_ms: u64,
    #[arg(long, value_enum, default_value = "link")]
    workload: Kind,
    /// The export to draw residents from (the demo's export.jsonl).
    #[arg(long)]
    export: Option<PathBuf>,
    /// Zipf exponent for skewed keys; uniform without it.
    #[arg(long)]
    zipf: Option<f64>,
    #[arg(long, default_value_t = 0.0)]
    miss_share: f64,
    #[arg(long, default_value_t = 0.0)]
    invalid_share: f64,
    /// Share of link checks asking for a signed receipt.
    #[arg(long, default_value_t = 0.0)]
    receipt_share: f64,
    #[arg(long, default_value_t = 100)]
    batch_size: usize,
    /// Temporary-permit issuing key, to make tokens.
    #[arg(long)]
    temp_permit_key: Option<PathBuf>,
    /// Distinct prepared requests.
    #[arg(long, default_value_t = 65_536)]
    pool: usize,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Write the report as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write a latency percentile plot (PNG) here.
    #[arg(long)]
    plot: Option<PathBuf>,
    /// TrueType font for the plot's labels.
    #[arg(
        long,
        default_value = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
    )]
    font: PathBuf,
    /// Exit with status 1 when any request failed or got an unexpected status.
    #[arg(long)]
    fail_on_errors: bool,
    /// Play a hostile partner instead of measuring (src/hostile.rs): hold --connections
    /// (HTTP/2: × --h2-streams) for --duration seconds and report what the gateway did.
    #[arg(long, value_enum)]
    hostile: Option<Attack>,
    /// With --hostile: where the attack requests go.
    #[arg(long, default_value = "/v1/link-checks")]
    hostile_path: String,
    /// Measure propagation instead (src/propagation.rs): publish this many status changes
    /// into --repo and time each until --target answers with its version.
    #[arg(long, conflicts_with = "hostile")]
    propagation: Option<usize>,
    /// With --propagation: the repository the origin serves (with --demo: its repo/).
    #[arg(long)]
    repo: Option<PathBuf>,
    /// With --propagation: the publisher's signing key (with --demo: keys/publisher.key).
    #[arg(long)]
    signing_key: Option<PathBuf>,
    /// With --propagation: the identifier hashing key (with --demo: keys/hash.key).
    #[arg(long)]
    hash_key: Option<PathBuf>,
    /// With --propagation: pause after each arrival before the next publication.
    #[arg(long, default_value_t = 500)]
    gap_ms: u64,
    /// With --propagation: this many simulated followers long-poll --target as a relay
    /// (src/followers.rs; use --partner relay) and each arrival is timed, instead of a
    /// status probe.
    #[arg(long, default_value_t = 0)]
    followers: usize,
    /// With --propagation: pause this long once the followers (or the probe) hold the
    /// current manifest, before the first publication.
    #[arg(long, default_value_t = 0)]
    settle_ms: u64,
    /// Instead of measuring: this many followers download the base snapshot --target
    /// relays, all at once, each on its own connection (use --partner relay).
    #[arg(long, conflicts_with_all = ["hostile", "propagation"])]
    download_base: Option<usize>,
}

#[derive(clap::Subcommand)]
enum Command {
    /// A measurement of several processes in rounds, summarised as JSON and a markdown
    /// table (src/scenario/): doors, costs, isolation, noisy, compare, ab, overload,
    /// propagation, fanout, swap, audit-writer, publish-memory, revocation.
    Scenario(scenario::ScenarioArgs),
    /// The stack's floor: hyper and rustls as the gateway uses them, answering every
    /// request with one fixed body on one thread (loadtest/src/floor.rs), until killed.
    Floor(FloorArgs),
}

#[derive(clap::Args, Debug)]
struct FloorArgs {
    #[arg(long)]
    listen: SocketAddr,
    /// A `permitgate demo` directory: its server certificate and key, and the partner CA.
    #[arg(long)]
    demo: PathBuf,
    /// The body of every answer.
    #[arg(long)]
    answer_file: PathBuf,
}

/// Serves on a current-thread runtime: one thread, the cheapest way tokio runs on a core.
fn floor(a: FloorArgs) -> anyhow::Result<()> {
    let pki = a.demo.join("pki");
    let tls = permitgate_load::floor::tls_config(
        &pki.join("server.crt"),
        &pki.join("server.key"),
        &pki.join("ca.crt"),
    )?;
    let answer = std::fs::read(&a.answer_file)
        .with_context(|| format!("--answer-file {}", a.answer_file.display()))?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind(a.listen)
            .await
            .with_context(|| format!("--listen {}", a.listen))?;
        permitgate_load::floor::serve(listener, tls, answer.into()).await;
        Ok(())
    })
}

fn main() -> ExitCode {
    let args: Args = match permitgate::command_line::parse_args() {
        Ok(a) => a,
        Err(code) => return code,
    };
    match run(args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The addresses `--source` names: each an address or a network (its hosts).
fn sources(given: &[String]) -> anyhow::Result<Vec<std::net::IpAddr>> {
    let mut out = Vec::new();
    for s in given {
        if let Ok(ip) = s.parse::<std::net::IpAddr>() {
            out.push(ip);
            continue;
        }
        let net: ipnet::IpNet = s.parse().with_context(|| {
            format!("--source {s}: an address or a network such as 127.0.1.0/26")
        })?;
        out.extend(net.hosts());
    }
    Ok(out)
}

/// Runs and reports; `Ok(false)` when --fail-on-errors and there were errors.
fn run(args: Args) -> anyhow::Result<bool> {
    match args.command {
        Some(Command::Scenario(s)) => {
            scenario::run(s)?;
            return Ok(true);
        }
        Some(Command::Floor(f)) => {
            floor(f)?;
            return Ok(true);
        }
        None => {}
    }
    let from_demo = |given: &Option<PathBuf>, rel: String| -> anyhow::Result<PathBuf> {
        match (given, &args.demo) {
            (Some(p), _) => Ok(p.clone()),
            (None, Some(d)) => Ok(d.join(rel)),
            (None, None) => anyhow::bail!("give --demo DIR, or --ca, --cert, --key and --export"),
        }
    };
    let target = Target {
        addr: args.target,
        server_name: args.server_name.clone(),
        ca: from_demo(&args.ca, "pki/ca.crt".into())?,
        cert: from_demo(&args.cert, format!("pki/partners/{}.crt", args.partner))?,
        key: from_demo(&args.key, format!("pki/partners/{}.key", args.partner))?,
        sources: sources(&args.source)?,
    };
    let secs = |s: f64, name: &str| {
        Duration::try_from_secs_f64(s)
            .with_context(|| format!("--{name} must be a number of seconds"))
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    if let Some(attack) = args.hostile {
        let plan = AttackPlan {
            attack,
            connections: args.connections,
            h2_streams: args.h2_streams,
            duration: secs(args.duration, "duration")?,
            path: args.hostile_path.clone(),
        };
        let report = rt.block_on(run_attack(target, plan))?;
        print!("{}", report.summary());
        if let Some(p) = &args.json {
            std::fs::write(p, serde_json::to_vec_pretty(&report)?)
                .with_context(|| p.display().to_string())?;
        }
        return Ok(true);
    }
    if let Some(n) = args.download_base {
        let connector = permitgate_load::client::Connector::new(target, Protocol::H1)?;
        let report = rt.block_on(permitgate_load::followers::download_base(
            std::sync::Arc::new(connector),
            n,
        ));
        let json = serde_json::to_vec_pretty(&report)?;
        println!("{}", String::from_utf8_lossy(&json));
        if let Some(p) = &args.json {
            std::fs::write(p, json).with_context(|| p.display().to_string())?;
        }
        return Ok(report.failed == 0 || !args.fail_on_errors);
    }
    if let Some(publications) = args.propagation {
        let plan = PropagationPlan {
            publications,
            repo: from_demo(&args.repo, "repo".into())?,
            signing_key: from_demo(&args.signing_key, "keys/publisher.key".into())?,
            hash_key: from_demo(&args.hash_key, "keys/hash.key".into())?,
            export: from_demo(&args.export, "export.jsonl".into())?,
            gap: Duration::from_millis(args.gap_ms),
            timeout: Duration::from_millis(args.timeout_ms),
            followers: args.followers,
            settle: Duration::from_millis(args.settle_ms),
        };
        let connector = permitgate_load::client::Connector::new(target, Protocol::H1)?;
        let report = rt.block_on(permitgate_load::propagation::measure(connector, plan))?;
        print!("{}", report.summary());
        if let Some(p) = &args.json {
            std::fs::write(p, serde_json::to_vec_pretty(&report)?)
                .with_context(|| p.display().to_string())?;
        }
        return Ok(report.lost == 0 || !args.fail_on_errors);
    }
    let temp_permit_key = match (&args.temp_permit_key, &args.demo) {
        (Some(k), _) => Some(k.clone()),
        // Mix only includes temporary permits when a key is given explicitly: no demo
        // partner holds all three scopes.
        (None, Some(d)) if args.workload == Kind::TempPermit => {
            Some(d.join("keys/temp-permit.key"))
        }
        _ => None,
    };
    let spec = Spec {
        kind: args.workload,
        export: from_demo(&args.export, "export.jsonl".into())?,
        keys: args.zipf.map_or(Keys::Uniform, Keys::Zipf),
        miss_share: args.miss_share,
        invalid_share: args.invalid_share,
        receipt_share: args.receipt_share,
        batch_size: args.batch_size,
        temp_permit_key,
        pool: args.pool,
        seed: args.seed,
    };
    let plan = Plan {
        protocol: args.protocol,
        mode: args.rate.map_or(Mode::Closed, |rate| Mode::Open { rate }),
        connections: args.connections,
        h2_streams: args.h2_streams,
        duration: secs(args.duration, "duration")?,
        warmup: secs(args.warmup, "warmup")?,
        max_requests: args.requests,
        timeout: Duration::from_millis(args.timeout_ms),
    };
    let settings = serde_json::to_value(&args)?;
    let report = rt.block_on(run_load(target, &spec, plan, settings))?;
    print!("{}", report.summary());
    if let Some(p) = &args.json {
        report.write_json(p)?;
    }
    if let Some(p) = &args.plot {
        report.plot(p, &args.font)?;
    }
    Ok(!(args.fail_on_errors && report.errors > 0))
}
