//! `permitgate temp-permit issue | revoke | verify`: the authority's side of temporary
//! permits (issuing key, change events) and the offline verifier's (published keys).

use std::path::{Path, PathBuf};

use anyhow::bail;
use time::OffsetDateTime;

use permitgate::day::rfc3339;
use permitgate::document::TravelPermitNo;
use permitgate::issuance;
use permitgate::key_files::{self, HashKey};
use permitgate::keyring::Keyring;
use permitgate::publish::ChangeEvent;
use permitgate::snapshot::{load_repo, DocKey, Record, RepoData};
use permitgate::temp_permit::{self, PermitId, Reason, TokenStatus, VerificationView};

use crate::output::{change_event, number, parse_time};

#[derive(clap::Subcommand)]
pub enum Command {
    /// Sign a temporary permit, if the issuance policy allows it (the published data: the
    /// travel permit's record, the holder's permits this month); print its token and emit
    /// its issuance event.
    Issue {
        /// The authority's temporary-permit issuing key (Ed25519, PKCS#8 PEM).
        #[arg(long)]
        signing_key: PathBuf,
        /// The published repository (manifest.json + objects/) the policy reads.
        #[arg(long)]
        repo: PathBuf,
        /// The publisher's public key (SPKI PEM), to verify the repository.
        #[arg(long)]
        publisher_key: PathBuf,
        /// The identifier hashing key the repository was built with.
        #[arg(long)]
        hash_key: PathBuf,
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
        #[cfg(feature = "tools")]
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

pub fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Issue {
            signing_key,
            repo,
            publisher_key,
            hash_key,
            travel_permit,
            name,
            reason,
            issued_at,
            #[cfg(feature = "tools")]
            qr,
            events,
        } => {
            let key = key_files::load_signing_key(&signing_key)?;
            let tp = number("travel-permit", &travel_permit, TravelPermitNo::parse)?;
            let name = permitgate::person_name::normalize(&name)
                .map_err(|e| anyhow::anyhow!("--name {e}"))?;
            let issued_at = issued_at.unwrap_or_else(OffsetDateTime::now_utc);
            let hash_key = HashKey::load(&hash_key)?;
            let published = load_repo(
                &repo,
                &[key_files::load_verifying_key(&publisher_key)?],
                Some(&hash_key),
            )?
            .into_data();
            let holder = published.get(&DocKey::of(&hash_key, tp.canonical()));
            let this_month = holder.map_or(0, |h| {
                let pending = pending_issuances(events.as_deref(), &published, &hash_key);
                issuance::issued_in_month(
                    published.records().iter().chain(pending.iter()),
                    h.person,
                    issued_at,
                )
            });
            let until = issuance::decide(reason, holder.as_ref(), issued_at, this_month)
                .map_err(|e| anyhow::anyhow!("no temporary permit issued: {e}"))?;
            let (token, permit) =
                temp_permit::issue_until(&tp, &name, reason, issued_at, Some(until), &key)
                    .map_err(|e| anyhow::anyhow!("--{e}"))?;
            #[cfg(feature = "tools")]
            if let Some(path) = &qr {
                use anyhow::Context;
                let png = permitgate::printable::qr_png(&token, 6)?;
                std::fs::write(path, png).with_context(|| path.display().to_string())?;
            }
            change_event(
                &ChangeEvent::TempPermitIssue {
                    permit_id: permit.permit_id.to_string(),
                    travel_permit: tp.canonical().to_owned(),
                    issued_at: Some(permit.issued_at),
                    expires_at: permit.expires_at,
                },
                events.as_deref(),
            )?;
            println!("{token}");
            if let Some(p) = &events {
                eprintln!(
                    "permit {} valid until {}; issuance event appended to {}",
                    permit.permit_id,
                    rfc3339(permit.expires_at),
                    p.display()
                );
            }
            Ok(())
        }
        Command::Revoke { id, events } => {
            let Some(id) = PermitId::parse(&id) else {
                bail!("--id must be 16 hex characters");
            };
            change_event(
                &ChangeEvent::TempPermitRevoke {
                    permit_id: id.to_string(),
                },
                events.as_deref(),
            )
        }
        Command::Verify {
            keys,
            token,
            at,
            skew_seconds,
        } => {
            let keyring = Keyring::load(&keys)?;
            let v = temp_permit::verify(
                &token,
                &keyring,
                at.unwrap_or_else(OffsetDateTime::now_utc),
                time::Duration::seconds(i64::from(skew_seconds)),
                |_| false,
            );
            println!(
                "{}",
                serde_json::to_string_pretty(&VerificationView::from(&v))?
            );
            if v.status != TokenStatus::Valid {
                bail!("temporary permit is {}", v.status.label());
            }
            Ok(())
        }
    }
}

/// Issuances appended to the change file and not published yet, as the records publishing
/// them will make (so that they count towards the monthly limit).
fn pending_issuances(
    events: Option<&Path>,
    published: &RepoData,
    hash_key: &HashKey,
) -> Vec<Record> {
    let Some(text) = events.and_then(|p| std::fs::read_to_string(p).ok()) else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|line| serde_json::from_str::<ChangeEvent>(line).ok())
        .filter_map(|e| match e {
            ChangeEvent::TempPermitIssue {
                travel_permit,
                issued_at,
                expires_at,
                ..
            } => {
                let tp = TravelPermitNo::parse(&travel_permit).ok()?;
                let key = DocKey::of(hash_key, tp.canonical());
                let holder = published.get(&key)?;
                // Keyed by the travel permit: only counted, never published from here.
                Some(issuance::issuance_record(
                    key, &holder, issued_at, expires_at,
                ))
            }
            _ => None,
        })
        .collect()
}
