//! `permitgate audit verify`: the hash chain through an audit log directory, and the
//! signed checkpoints kept outside it. `permitgate audit ship`: the trail copied off the
//! machine (src/audit/ship.rs), once or as a sidecar.

use std::path::PathBuf;

use anyhow::Context;

use crate::output::out;
use permitgate::audit::ship::Destination;

#[derive(clap::Subcommand)]
pub enum Command {
    /// Verify the hash chain through every file of an audit log directory. Exit 0 when
    /// intact (a record cut off by a crash is reported, not fatal), 1 when not.
    Verify {
        dir: PathBuf,
        /// The signed checkpoints (`[audit] checkpoint_dir`): the log must hold the seal
        /// each one signed, so a rewrite or truncation up to the last one is caught.
        #[arg(long, requires = "public_key")]
        checkpoints: Option<PathBuf>,
        /// The checkpoint key's public half (PEM), for --checkpoints.
        #[arg(long, requires = "checkpoints")]
        public_key: Option<PathBuf>,
    },
    /// Copy the audit trail's files to an object store, each once: every log file but the
    /// newest (the one being written; --all takes it too) and the signed checkpoints.
    /// Verify a shipped copy with `audit verify`.
    Ship {
        /// The audit log directory (`[audit] dir`).
        dir: PathBuf,
        /// `s3://bucket/prefix` (credentials from AWS_*, as replication's) or
        /// `file:///path`. Files land under `<prefix>/audit/` and `<prefix>/checkpoints/`:
        /// give each gateway a prefix of its own (the pod's name).
        #[arg(long)]
        to: String,
        /// The signed checkpoints (`[audit] checkpoint_dir`).
        #[arg(long)]
        checkpoints: Option<PathBuf>,
        /// An S3-compatible endpoint (`replication.s3_endpoint`).
        #[arg(long)]
        s3_endpoint: Option<String>,
        #[arg(long)]
        s3_region: Option<String>,
        /// Ship the newest log file too: the gateway has stopped.
        #[arg(long)]
        all: bool,
        /// Ship again every this many seconds (a sidecar); on SIGTERM or SIGINT, a last
        /// pass that takes the newest file too, then exit.
        #[arg(long)]
        every: Option<u64>,
    },
}

pub fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Verify {
            dir,
            checkpoints,
            public_key,
        } => verify(dir, checkpoints, public_key),
        Command::Ship {
            dir,
            to,
            checkpoints,
            s3_endpoint,
            s3_region,
            all,
            every,
        } => {
            let s3 = permitgate::replication::S3Settings {
                endpoint: s3_endpoint,
                region: s3_region,
            };
            let to = Destination::open(&to, &s3)?;
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("cannot start the shipping runtime")?;
            runtime.block_on(ship(dir, checkpoints, to, all, every))
        }
    }
}

async fn ship(
    dir: PathBuf,
    checkpoints: Option<PathBuf>,
    to: Destination,
    all: bool,
    every: Option<u64>,
) -> anyhow::Result<()> {
    let pass = |open_too: bool| {
        let (dir, checkpoints, to) = (&dir, &checkpoints, &to);
        async move {
            let shipped = permitgate::audit::ship::ship(dir, checkpoints.as_deref(), to, open_too)
                .await
                .context("shipping the audit trail")?;
            out!(
                "shipped {} files ({} bytes); {} were there already",
                shipped.files,
                shipped.bytes,
                shipped.already
            )?;
            anyhow::Ok(())
        }
    };
    let Some(every) = every else {
        return pass(all).await;
    };
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("SIGINT handler")?;
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(every.max(1)));
    loop {
        tokio::select! {
            _ = tick.tick() => {
                // A sidecar keeps going: the next pass tries again.
                if let Err(e) = pass(all).await {
                    tracing::warn!(error = format!("{e:#}"), "audit shipping failed; trying again");
                }
            }
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    // The gateway stops with the pod: its newest file is complete now.
    pass(true).await
}

fn verify(
    dir: PathBuf,
    checkpoints: Option<PathBuf>,
    public_key: Option<PathBuf>,
) -> anyhow::Result<()> {
    if !dir.is_dir() {
        anyhow::bail!("{}: not a directory", dir.display());
    }
    let signed = match (&checkpoints, &public_key) {
        (Some(cdir), Some(key)) => {
            let key = permitgate::key_files::load_verifying_key(key)?;
            Some(
                permitgate::audit::checkpoint::load(cdir, &key)
                    .context("the checkpoints cannot be trusted")?,
            )
        }
        _ => None,
    };
    let wanted = signed.iter().flatten().map(|c| c.seq).collect();
    let r = permitgate::audit::verify::verify_dir_at(&dir, wanted)
        .context("audit log is not intact")?;
    for (file, bytes) in &r.truncated {
        out!(
            "warning: {} ends in a partial line ({bytes} bytes): cut off by a crash; the chain resumes after it",
            file.display()
        )?;
    }
    for (file, records) in &r.unsealed {
        out!(
            "warning: {} ends with {records} records without their seal (a crash cut the batch): they cannot be verified",
            file.display()
        )?;
    }
    match (r.first_seq, r.last_seq) {
        (Some(first), Some(last)) => {
            out!(
                "OK: {} records (seq {first}..{last}) in {} files, hash chain intact",
                r.records,
                r.files
            )?;
            if first > 1 {
                out!("note: starts at seq {first}; earlier files were archived or removed")?;
            }
        }
        _ => out!("OK: no records ({} files)", r.files)?,
    }
    if let Some(signed) = signed {
        let coverage = permitgate::audit::checkpoint::check(&signed, &r.sealed, r.last_seq)
            .context("the log does not match its checkpoints")?;
        match coverage.last {
            Some((seq, time)) => out!(
                "OK: {} checkpoints hold; the last, of {time}, covers records up to {seq}; {} records after it are not covered by a checkpoint yet",
                signed.len(),
                coverage.after
            )?,
            None => out!(
                "warning: no checkpoints: none of the {} records is covered",
                coverage.after
            )?,
        }
    }
    Ok(())
}
