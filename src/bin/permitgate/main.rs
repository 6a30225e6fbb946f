//! The `permitgate` command line: one module per subcommand, each with its own clap
//! `Args` and `run`. The only place `anyhow` is used: library errors become one line on
//! standard error and a non-zero exit.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// jemalloc rather than glibc's malloc (Cargo.toml says why).
#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

mod audit;
mod config;
#[cfg(feature = "tools")]
mod demo;
mod keys;
mod origin;
mod output;
#[cfg(feature = "tools")]
mod partners;
mod publish;
mod receipt;
mod serve;
mod snapshot;
mod temp_permit;
mod verify_site;

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
enum Command {
    /// Create demo PKI, keys, data and a signed snapshot under DIR (once), then serve it.
    #[cfg(feature = "tools")]
    Demo(demo::Args),
    /// Serve with a configuration file (see config/gateway.toml).
    Serve(serve::Args),
    /// Serve the authority's API (the config's [origin]): issue and revoke temporary
    /// permits, published at once.
    Origin(origin::Args),
    /// Check a configuration file and every file it names, without serving.
    Config {
        #[command(subcommand)]
        command: config::Command,
    },
    /// Build and sign a snapshot from an export (or a delta from change events) and make
    /// it current in REPO_DIR.
    Publish(publish::Args),
    /// Look into or verify a snapshot file or repository.
    Snapshot {
        #[command(subcommand)]
        command: snapshot::Command,
    },
    /// Check the audit trail.
    Audit {
        #[command(subcommand)]
        command: audit::Command,
    },
    /// Generate a development PKI (partner CA, server and partner certificates).
    #[cfg(feature = "tools")]
    DevPki(demo::DevPkiArgs),
    /// Partners: enrol (CSR in, certificate out, registry updated), list, revoke.
    #[cfg(feature = "tools")]
    Partners {
        #[command(subcommand)]
        command: partners::Command,
    },
    /// Publisher and hashing keys.
    Keys {
        #[command(subcommand)]
        command: keys::Command,
    },
    /// 7-day temporary electronic permits: issue and revoke (authority), verify offline.
    TempPermit {
        #[command(subcommand)]
        command: temp_permit::Command,
    },
    /// Write the verifier page (HTML, CSS, JavaScript) and the keys it checks against.
    VerifySite(verify_site::Args),
    /// Signed verification receipts: verify offline, render the printable document.
    Receipt {
        #[command(subcommand)]
        command: receipt::Command,
    },
}

fn main() -> ExitCode {
    let cli: Cli = match permitgate::command_line::parse_args() {
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
    let result = match cli.command {
        #[cfg(feature = "tools")]
        Command::Demo(args) => demo::run(args),
        Command::Serve(args) => serve::run(args),
        Command::Origin(args) => origin::run(args),
        Command::Config { command } => config::run(command),
        Command::Publish(args) => publish::run(args),
        Command::Snapshot { command } => snapshot::run(command),
        Command::Audit { command } => audit::run(command),
        #[cfg(feature = "tools")]
        Command::DevPki(args) => demo::dev_pki(args),
        Command::Keys { command } => keys::run(command),
        #[cfg(feature = "tools")]
        Command::Partners { command } => partners::run(command),
        Command::TempPermit { command } => temp_permit::run(command),
        Command::Receipt { command } => receipt::run(command),
        Command::VerifySite(args) => verify_site::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Each error says what failed and keeps its cause as its source: `{:#}` prints
            // the chain once, on one line.
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
