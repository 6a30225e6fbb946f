//! `permitgate temp-permit issue | revoke | verify`: the authority's side of temporary
//! permits (issuing key, change events) and the offline verifier's (published keys).

use std::path::PathBuf;

use anyhow::bail;
use time::OffsetDateTime;

use permitgate::day::rfc3339;
use permitgate::document::TravelPermitNo;
use permitgate::key_files;
use permitgate::keyring::Keyring;
use permitgate::publish::ChangeEvent;
use permitgate::temp_permit::{self, PermitId, Reason, TokenStatus, VerificationView};

use crate::output::{change_event, number, parse_time};

#[derive(clap::Subcommand)]
pub enum Command {
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
            let issued_at = issued_at.unwrap_or_else(OffsetDateTime::now_utc);
            let (token, permit) = temp_permit::issue(&tp, &name, reason, issued_at, &key)
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
