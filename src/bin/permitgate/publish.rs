//! `permitgate publish`: an export (or change events) signed into the repository.

use std::path::PathBuf;

use time::OffsetDateTime;

use permitgate::key_files::{self, HashKey};
use permitgate::publish::{publish, publish_changes, publish_diff, PublishError, PublishOptions};
use permitgate::snapshot::MANIFEST_FILE;

use crate::output::out;

#[derive(clap::Args)]
pub struct Args {
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
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let (sk, hk) = (
        key_files::load_signing_key(&args.signing_key)?,
        HashKey::load(&args.hash_key)?,
    );
    let opts = PublishOptions {
        version: args.version,
        expires_in: time::Duration::hours(i64::from(args.expires_in_hours)),
        now: OffsetDateTime::now_utc(),
    };
    let out = &args.out;
    let has_repo = out.join(MANIFEST_FILE).exists();
    let report = match (args.input, args.changes) {
        (Some(input), _) if args.delta && has_repo => {
            match publish_diff(&input, out, &sk, &hk, &opts, args.max_deltas) {
                Err(PublishError::NoChanges) => {
                    out!("{}", PublishError::NoChanges)?;
                    return Ok(());
                }
                r => r?,
            }
        }
        (Some(input), _) => publish(&input, out, &sk, &hk, &opts)?,
        (None, Some(changes)) => publish_changes(&changes, out, &sk, &hk, &opts, args.max_deltas)?,
        (None, None) => anyhow::bail!("give --input or --changes"),
    };
    if report.compacted || report.persons > 0 {
        out!(
            "published version {} ({} documents, {} persons) as snapshot objects/{} ({} bytes)",
            report.version,
            report.documents,
            report.persons,
            report.hash,
            report.size
        )?;
    } else {
        out!(
            "published version {} ({} changes) as delta objects/{} ({} bytes)",
            report.version,
            report.documents,
            report.hash,
            report.size
        )?;
    }
    Ok(())
}
