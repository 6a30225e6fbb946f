//! The `permitgate` command line. The only place `anyhow` is used: each subcommand turns
//! library errors into one readable line and a non-zero exit.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

mod cli_signed;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use time::OffsetDateTime;

use permitgate::clock::SystemClock;
use permitgate::config::Config;
use permitgate::demo::{self, DemoOptions};
use permitgate::key_files::{self, HashKey};
use permitgate::publish::{publish, publish_changes, publish_diff, PublishError, PublishOptions};
use permitgate::server::Gateway;
use permitgate::snapshot::{self, SignedManifest, Snapshot, SnapshotHeader, MANIFEST_FILE};
use permitgate::temp_permit::Reason;

#[derive(Parser)]
#[command(
    name = "permitgate",
    version,
    about = "mTLS verification gateway for Hong Kong, Macao and Taiwan residents' documents"
)]
struct Cli {
    /// Log lines on standard error: `human` (default) or `json` (one object per line, for
    /// log collectors). Level and filters: RUST_LOG (default info).
    #[arg(
        long,
        global = true,
        env = "PERMITGATE_LOG_FORMAT",
        default_value = "human"
    )]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Human,
    Json,
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Load the config, certificates, CA, CRLs and keys as `serve` would (the server
    /// chain verified, keys matched), without binding sockets or reading the snapshot.
    Check {
        #[arg(long)]
        config: PathBuf,
    },
}

#[derive(Subcommand)]
enum Command {
    /// Create demo PKI, keys, data and a signed snapshot under DIR (once), then serve it.
    Demo {
        #[arg(long, default_value = "var/demo")]
        dir: PathBuf,
        #[arg(long, default_value = "127.0.0.1:8443")]
        listen: SocketAddr,
        #[arg(long, default_value = "127.0.0.1:9464")]
        metrics_listen: SocketAddr,
        /// Residents in the synthetic export (only used when the data is first created).
        #[arg(long, default_value_t = 100_000)]
        records: usize,
    },
    /// Serve with a configuration file (see config/gateway.toml).
    Serve {
        #[arg(long)]
        config: PathBuf,
    },
    /// Check a configuration file and every file it names, without serving.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Build and sign a snapshot from an export (or a delta from change events) and make
    /// it current in REPO_DIR.
    Publish {
        /// The authority's full export, JSON Lines (schema in README.md).
        #[arg(long, required_unless_present = "changes", conflicts_with = "changes")]
        input: Option<PathBuf>,
        /// Change events, JSON Lines (docs/replication.md): published as a delta.
        #[arg(long)]
        changes: Option<PathBuf>,
        /// With --input: publish the difference to the current data as a delta (a full
        /// snapshot when the repo is new).
        #[arg(long, requires = "input")]
        delta: bool,
        /// With deltas: the longest delta chain; past it a full snapshot is written.
        #[arg(long, default_value_t = permitgate::publish::DEFAULT_MAX_DELTAS)]
        max_deltas: usize,
        /// Repository directory (manifest.json + objects/).
        #[arg(long)]
        out: PathBuf,
        /// Publisher's Ed25519 private key, PKCS#8 PEM.
        #[arg(long)]
        signing_key: PathBuf,
        /// Identifier hashing key, 64 hex characters.
        #[arg(long)]
        hash_key: PathBuf,
        /// Version to publish; defaults to the current version + 1.
        #[arg(long)]
        version: Option<u64>,
        /// Hours until the manifest expires and gateways flag themselves stale (at least 1).
        #[arg(long, default_value_t = 24, value_parser = clap::value_parser!(u32).range(1..))]
        expires_in_hours: u32,
    },
    /// Look into or verify a snapshot file or repository.
    Snapshot {
        #[command(subcommand)]
        command: SnapshotCommand,
    },
    /// Check the audit trail.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Generate a development PKI (partner CA, server and partner certificates).
    DevPki {
        #[arg(long)]
        out: PathBuf,
    },
    /// Publisher and hashing keys.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// 7-day temporary electronic permits: issue and revoke (authority), verify offline.
    TempPermit {
        #[command(subcommand)]
        command: TempPermitCommand,
    },
    /// Signed verification receipts: verify offline, render the printable document.
    Receipt {
        #[command(subcommand)]
        command: ReceiptCommand,
    },
}

#[derive(Subcommand)]
enum TempPermitCommand {
    /// Sign a temporary permit; print its token and emit its issuance event.
    Issue {
        /// The authority's temporary-permit issuing key (Ed25519, PKCS#8 PEM).
        #[arg(long)]
        signing_key: PathBuf,
        /// The holder's travel permit number.
        #[arg(long)]
        travel_permit: String,
        /// The holder's name as printed on the travel permit.
        #[arg(long)]
        name: String,
        /// lost, damaged or forgotten.
        #[arg(long)]
        reason: Reason,
        /// Issue time, RFC 3339 (default: now). Valid for seven days from it.
        #[arg(long, value_parser = parse_time)]
        issued_at: Option<OffsetDateTime>,
        /// Also write the token as a QR code image (PNG).
        #[arg(long)]
        qr: Option<PathBuf>,
        /// Append the issuance event to this change file (for `publish --changes`);
        /// without it the event is printed on standard error.
        #[arg(long)]
        events: Option<PathBuf>,
    },
    /// Emit the revocation event of a temporary permit (for `publish --changes`).
    Revoke {
        /// The permit id (16 hex characters) printed when it was issued.
        #[arg(long)]
        id: String,
        /// Append the event to this change file; without it it is printed.
        #[arg(long)]
        events: Option<PathBuf>,
    },
    /// Verify a token offline against the published keys (revocations need the gateway).
    Verify {
        /// The keys file served at GET /v1/keys.
        #[arg(long)]
        keys: PathBuf,
        token: String,
        /// Verify as of this time, RFC 3339 (default: now).
        #[arg(long, value_parser = parse_time)]
        at: Option<OffsetDateTime>,
        /// Tolerated clock difference in seconds.
        #[arg(long, default_value_t = 300)]
        skew_seconds: u32,
    },
}

#[derive(Subcommand)]
enum ReceiptCommand {
    /// Verify a receipt offline; with both numbers, also that it is about them.
    Verify {
        /// The keys file served at GET /v1/keys.
        #[arg(long)]
        keys: PathBuf,
        receipt: String,
        #[arg(long, requires = "residence_permit")]
        travel_permit: Option<String>,
        #[arg(long, requires = "travel_permit")]
        residence_permit: Option<String>,
    },
    /// Render the printable verification document (PDF or PNG, by the file's extension).
    Render {
        receipt: String,
        #[arg(long)]
        out: PathBuf,
        /// Verify against these published keys first, and say so on the page.
        #[arg(long)]
        keys: Option<PathBuf>,
        /// With --residence-permit: check the receipt is about them and print them masked.
        #[arg(long, requires = "residence_permit")]
        travel_permit: Option<String>,
        #[arg(long, requires = "travel_permit")]
        residence_permit: Option<String>,
    },
}

#[derive(Subcommand)]
enum SnapshotCommand {
    /// Print what a snapshot file or repository holds (no signature check).
    Inspect { path: PathBuf },
    /// Verify signatures and hashes of a snapshot file or repository.
    Verify {
        path: PathBuf,
        /// Publisher public key (SPKI PEM).
        #[arg(long)]
        public_key: PathBuf,
        /// Also check that the snapshot was built with this hashing key.
        #[arg(long)]
        hash_key: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Verify the hash chain through every file of an audit log directory. Exit 0 when
    /// intact (a record cut off by a crash is reported, not fatal), 1 when not.
    Verify { dir: PathBuf },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Write publisher.key, publisher.pub and hash.key into DIR (refuses to overwrite).
    Generate {
        #[arg(long)]
        out: PathBuf,
    },
    /// Write an Ed25519 key pair PREFIX.key (PKCS#8 PEM) and PREFIX.pub (SPKI PEM), for
    /// receipt signing or temporary-permit issuing (refuses to overwrite).
    Ed25519 {
        #[arg(long)]
        out: PathBuf,
    },
}

fn parse_time(s: &str) -> Result<OffsetDateTime, String> {
    permitgate::day::parse_rfc3339(s)
        .ok_or_else(|| "must be an RFC 3339 time such as 2026-11-25T08:00:00Z".to_owned())
}

fn main() -> ExitCode {
    let cli: Cli = match permitgate::cli::parse_args() {
        Ok(c) => c,
        Err(code) => return code,
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Human => logs
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        LogFormat::Json => logs.json().flatten_event(true).init(),
    }
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Each error says what failed and keeps its cause as its source: `{:#}` prints
            // the chain once, on one line.
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Demo {
            dir,
            listen,
            metrics_listen,
            records,
        } => {
            let demo = demo::prepare(
                &dir,
                &DemoOptions {
                    records,
                    listen,
                    metrics_listen,
                    seed: 2026,
                },
            )?;
            if demo.created {
                println!(
                    "Created demo data in {} ({records} residents).",
                    dir.display()
                );
            } else {
                println!(
                    "Reusing demo data in {} (delete it to start afresh).",
                    dir.display()
                );
            }
            print_tour(&demo, listen, metrics_listen);
            serve(Config::load(&demo.config)?)
        }
        Command::Serve { config } => serve(Config::load(&config)?),
        Command::Config {
            command: ConfigCommand::Check { config },
        } => config_check(&config),
        Command::Publish {
            input,
            changes,
            delta,
            max_deltas,
            out,
            signing_key,
            hash_key,
            version,
            expires_in_hours,
        } => {
            let (sk, hk) = (
                key_files::load_signing_key(&signing_key)?,
                HashKey::load(&hash_key)?,
            );
            let opts = PublishOptions {
                version,
                expires_in: time::Duration::hours(i64::from(expires_in_hours)),
                now: OffsetDateTime::now_utc(),
            };
            let has_repo = out.join(MANIFEST_FILE).exists();
            let report = match (input, changes) {
                (Some(input), _) if delta && has_repo => {
                    match publish_diff(&input, &out, &sk, &hk, &opts, max_deltas) {
                        Err(PublishError::NoChanges) => {
                            println!("{}", PublishError::NoChanges);
                            return Ok(());
                        }
                        r => r?,
                    }
                }
                (Some(input), _) => publish(&input, &out, &sk, &hk, &opts)?,
                (None, Some(changes)) => {
                    publish_changes(&changes, &out, &sk, &hk, &opts, max_deltas)?
                }
                (None, None) => bail!("give --input or --changes"),
            };
            if report.compacted || report.persons > 0 {
                println!(
                    "published version {} ({} documents, {} persons) as snapshot objects/{} ({} bytes)",
                    report.version, report.documents, report.persons, report.hash, report.size
                );
            } else {
                println!(
                    "published version {} ({} changes) as delta objects/{} ({} bytes)",
                    report.version, report.documents, report.hash, report.size
                );
            }
            Ok(())
        }
        Command::Snapshot { command } => match command {
            SnapshotCommand::Inspect { path } => inspect(&path),
            SnapshotCommand::Verify {
                path,
                public_key,
                hash_key,
            } => verify(&path, &public_key, hash_key.as_deref()),
        },
        Command::DevPki { out } => {
            demo::pki::generate(&out)?;
            println!(
                "wrote partner CA, server and partner certificates to {}",
                out.display()
            );
            Ok(())
        }
        Command::Keys {
            command: KeysCommand::Generate { out },
        } => {
            let paths = ["publisher.key", "publisher.pub", "hash.key"].map(|f| out.join(f));
            if let Some(p) = paths.iter().find(|p| p.exists()) {
                bail!("{} exists; refusing to overwrite a key", p.display());
            }
            std::fs::create_dir_all(&out).with_context(|| out.display().to_string())?;
            let sk = key_files::generate_signing_key();
            key_files::save_signing_key(&sk, &paths[0])?;
            key_files::save_verifying_key(&sk.verifying_key(), &paths[1])?;
            HashKey::generate().save(&paths[2])?;
            println!(
                "wrote {} (key id {})",
                out.display(),
                key_files::verifying_key_id(&sk.verifying_key())
            );
            Ok(())
        }
        Command::Keys {
            command: KeysCommand::Ed25519 { out },
        } => {
            // Appended, not `with_extension`: `receipt.2027` must become `receipt.2027.key`.
            let paths = [".key", ".pub"].map(|ext| {
                let mut p = out.clone().into_os_string();
                p.push(ext);
                PathBuf::from(p)
            });
            if let Some(p) = paths.iter().find(|p| p.exists()) {
                bail!("{} exists; refusing to overwrite a key", p.display());
            }
            if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).with_context(|| dir.display().to_string())?;
            }
            let sk = key_files::generate_signing_key();
            key_files::save_signing_key(&sk, &paths[0])?;
            key_files::save_verifying_key(&sk.verifying_key(), &paths[1])?;
            println!(
                "wrote {} and {} (key id {})",
                paths[0].display(),
                paths[1].display(),
                key_files::verifying_key_id(&sk.verifying_key())
            );
            Ok(())
        }
        Command::Audit {
            command: AuditCommand::Verify { dir },
        } => audit_verify(&dir),
        Command::TempPermit { command } => cli_signed::temp_permit(command),
        Command::Receipt { command } => cli_signed::receipt(command),
    }
}

fn serve(config: Config) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let result = rt.block_on(async move {
        let gw = Arc::new(Gateway::from_config(config, Arc::new(SystemClock))?);
        let mut running = gw.bind().await?;
        match running.metrics_addr {
            Some(m) => tracing::info!(addr = %running.addr, metrics = %m, "listening; loading snapshot"),
            None => tracing::info!(addr = %running.addr, "listening; loading snapshot"),
        }
        let loader = gw.clone();
        let load = tokio::task::spawn_blocking(move || loader.load_snapshot());
        tokio::select! {
            r = load => {
                match r.context("snapshot loader")?.context("refusing to serve")? {
                    Some(info) => tracing::info!(version = info.version, published_at = %info.published_at_text, "snapshot loaded; ready"),
                    None => tracing::info!("no local state yet; not ready until the replication source answers"),
                }
                if running.start_replication(&gw)? {
                    tracing::info!("following the repository for new publications");
                }
            }
            _ = shutdown_signal() => {
                // Requests answered while loading (not-ready) have audit records too.
                tracing::info!("stopping before the snapshot loaded");
                running.drain().await;
                close_audit(&gw).await?;
                return Ok(());
            }
        }
        let reloader = gw.clone();
        let hangups = tokio::spawn(async move {
            let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            else {
                tracing::warn!("no SIGHUP handler; reload by changing the files");
                return;
            };
            while hup.recv().await.is_some() {
                let gw = reloader.clone();
                // Refusals are logged and counted inside; the old state stays in use.
                let _ = tokio::task::spawn_blocking(move || gw.reload()).await;
            }
        });
        shutdown_signal().await;
        hangups.abort();
        tracing::info!("draining: no new connections; open ones finish their requests");
        let left = running.drain().await;
        if left > 0 {
            tracing::warn!(connections = left, "drain time is up; closing the rest");
        }
        close_audit(&gw).await?;
        tracing::info!("stopped");
        Ok(())
    });
    // A snapshot load still reading a large file has nothing left to do once the audit
    // log is closed: do not wait for it.
    rt.shutdown_timeout(std::time::Duration::from_secs(1));
    result
}

/// Writes and fsyncs the audit records of everything answered (off the async workers).
async fn close_audit(gw: &Arc<Gateway>) -> anyhow::Result<()> {
    let closer = gw.clone();
    tokio::task::spawn_blocking(move || closer.close_audit())
        .await
        .context("closing the audit log")
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

fn print_tour(demo: &demo::Demo, listen: SocketAddr, metrics: SocketAddr) {
    let pki = &demo.pki;
    let host = if listen.ip().is_loopback() {
        "localhost".to_owned()
    } else {
        listen.ip().to_string()
    };
    println!("\nTry it (samples.json lists these with their expected answers):\n");
    for s in &demo.samples {
        println!("# {}: {}", s.name, s.description);
        println!(
            "curl --cacert {} --cert {} --key {} -H 'content-type: application/json' -d '{}' https://{host}:{}{}\n",
            pki.ca_cert().display(),
            pki.partner_cert(&s.partner).display(),
            pki.partner_key(&s.partner).display(),
            s.body,
            listen.port(),
            s.path
        );
    }
    println!(
        "# refused: a certificate from another CA\ncurl --cacert {} --cert {} --key {} https://{host}:{}/healthz\n",
        pki.ca_cert().display(),
        pki.rogue_cert().display(),
        pki.rogue_key().display(),
        listen.port()
    );
    println!("Metrics: curl http://{metrics}/metrics");
    println!(
        "Config:  {} (serve it with: permitgate serve --config {})\n",
        demo.config.display(),
        demo.config.display()
    );
}

fn audit_verify(dir: &Path) -> anyhow::Result<()> {
    if !dir.is_dir() {
        anyhow::bail!("{}: not a directory", dir.display());
    }
    let r = permitgate::audit::verify::verify_dir(dir).context("audit log is not intact")?;
    for (file, bytes) in &r.truncated {
        println!(
            "warning: {} ends in a partial record ({bytes} bytes): cut off by a crash; the chain resumes after it",
            file.display()
        );
    }
    match (r.first_seq, r.last_seq) {
        (Some(first), Some(last)) => {
            println!(
                "OK: {} records (seq {first}..{last}) in {} files, hash chain intact",
                r.records, r.files
            );
            if first > 1 {
                println!("note: starts at seq {first}; earlier files were archived or removed");
            }
        }
        _ => println!("OK: no records ({} files)", r.files),
    }
    Ok(())
}

fn config_check(path: &Path) -> anyhow::Result<()> {
    let checked = permitgate::server::check_config(&Config::load(path)?)?;
    println!(
        "OK: {}: {} partners, {} publisher keys, {} receipt keys; server certificate valid until {}",
        path.display(),
        checked.partners,
        checked.publisher_keys,
        checked.receipt_keys,
        unix_time_text(checked.server_certificate_expires)
    );
    Ok(())
}

/// RFC 3339 for Unix seconds, or the number itself where it is out of range.
fn unix_time_text(secs: i64) -> String {
    OffsetDateTime::from_unix_timestamp(secs)
        .map(permitgate::day::rfc3339)
        .unwrap_or_else(|_| secs.to_string())
}

fn inspect(path: &Path) -> anyhow::Result<()> {
    use std::fmt::Write as _;
    let mut out = String::new();
    let file = if path.is_dir() {
        let mpath = path.join(MANIFEST_FILE);
        let bytes = std::fs::read(&mpath).with_context(|| mpath.display().to_string())?;
        let v: serde_json::Value =
            serde_json::from_slice(&bytes).context("manifest is not JSON")?;
        writeln!(out, "manifest (signature not checked):")?;
        writeln!(out, "{}", serde_json::to_string_pretty(&v["signed"])?)?;
        let hash = v["signed"]["snapshot"]["hash"]
            .as_str()
            .context("manifest names no snapshot hash")?;
        snapshot::object_path(path, hash)
    } else {
        path.to_owned()
    };
    let bytes = std::fs::read(&file).with_context(|| file.display().to_string())?;
    let h: SnapshotHeader = SnapshotHeader::decode(&bytes, &file.display().to_string())?;
    writeln!(out, "snapshot file:    {}", file.display())?;
    writeln!(out, "content hash:     {}", blake3::hash(&bytes).to_hex())?;
    writeln!(out, "size:             {} bytes", bytes.len())?;
    writeln!(out, "version:          {}", h.meta.version)?;
    writeln!(
        out,
        "published at:     {}",
        unix_time_text(h.meta.published_at)
    )?;
    writeln!(out, "documents:        {}", h.documents)?;
    writeln!(out, "persons:          {}", h.persons)?;
    writeln!(out, "signing key id:   {}", h.signing_key_id)?;
    writeln!(out, "hashing key id:   {}", h.meta.hash_key_id)?;
    emit(&out)
}

/// Writes to standard output; a reader that stopped reading (`| head -1`) is not an
/// error (println! would panic on the broken pipe).
fn emit(text: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => r.context("writing to standard output"),
    }
}

fn verify(path: &Path, public_key: &Path, hash_key: Option<&Path>) -> anyhow::Result<()> {
    let trusted = [key_files::load_verifying_key(public_key)?];
    let hk = hash_key.map(HashKey::load).transpose()?;
    if path.is_dir() {
        let repo = snapshot::load_repo(path, &trusted, hk.as_ref())?;
        let m: &SignedManifest = &repo.manifest;
        println!(
            "OK: manifest version {} signed by {}, snapshot {} ({} documents) and {} deltas verified; data version {}; manifest expires {}",
            m.manifest.version,
            m.key_id,
            repo.snapshot.content_hash().to_hex(),
            repo.snapshot.len(),
            repo.deltas.len(),
            m.manifest.data_version(),
            permitgate::day::rfc3339(m.manifest.expires_at)
        );
    } else {
        let s = Snapshot::load(path, &trusted, hk.as_ref())?;
        println!(
            "OK: snapshot version {} ({} documents) signed by {}, content hash {}",
            s.header().meta.version,
            s.len(),
            s.header().signing_key_id,
            s.content_hash().to_hex()
        );
    }
    Ok(())
}
