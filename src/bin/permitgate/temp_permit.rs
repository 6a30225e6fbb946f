//! `permitgate temp-permit issue | revoke | verify`: the authority's side of temporary
//! permits (through the origin's writer: a desk without the API still cannot bypass the
//! policy) and the offline verifier's (published keys).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::bail;
use time::OffsetDateTime;

use permitgate::clock::SystemClock;
use permitgate::config::{AuthorityScope, Config};
use permitgate::day::{beijing_minute, rfc3339};
use permitgate::document::TravelPermitNo;
use permitgate::issuance::Actor;
use permitgate::keyring::Keyring;
use permitgate::origin::server::open_writer;
use permitgate::origin::{IssueRequest, Origin};
use permitgate::temp_permit::{self, PermitId, Reason, TokenStatus, VerificationView};

use crate::output::{emit, number, parse_time};

#[derive(clap::Subcommand)]
pub enum Command {
    /// Issue a temporary permit through the origin's writer (the config's [origin]): the
    /// same policy, journal and publication as the authority API; print its token.
    Issue {
        /// The config with the [origin] section (repository, keys, callers).
        #[arg(long)]
        config: PathBuf,
        /// The authority caller this desk is ([[origin.callers]] id, with the scope
        /// temp_permit_issue): its office is recorded.
        #[arg(long)]
        caller: String,
        /// The officer issuing (recorded with the permit).
        #[arg(long)]
        officer: String,
        /// The holder's travel permit number.
        #[arg(long)]
        travel_permit: String,
        /// The holder's name as printed on the travel permit.
        #[arg(long)]
        name: String,
        /// lost, damaged or forgotten.
        #[arg(long)]
        reason: Reason,
        /// Issue time, RFC 3339 (default: now; at most the origin's clock skew away).
        #[arg(long, value_parser = parse_time)]
        issued_at: Option<OffsetDateTime>,
        /// Run the command again with the same key after a failure: it gets the same
        /// permit, never a second one (default: a new key).
        #[arg(long)]
        idempotency_key: Option<String>,
        /// Also write the token as a QR code image (PNG).
        #[cfg(feature = "tools")]
        #[arg(long)]
        qr: Option<PathBuf>,
    },
    /// Revoke a temporary permit through the origin's writer; published at once.
    Revoke {
        #[arg(long)]
        config: PathBuf,
        /// The authority caller ([[origin.callers]] id, scope temp_permit_revoke).
        #[arg(long)]
        caller: String,
        #[arg(long)]
        officer: String,
        /// The permit id (16 hex characters) printed when it was issued.
        #[arg(long)]
        id: String,
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

/// The writer of the config's origin, and the caller's record, if it holds `scope`.
fn origin_for(
    config: &Path,
    caller: &str,
    officer: &str,
    scope: AuthorityScope,
) -> anyhow::Result<(Origin, Actor)> {
    let config = Config::load(config)?;
    let Some(o) = &config.origin else {
        bail!("--config has no [origin] section: temporary permits are issued by the origin");
    };
    let Some(c) = o.callers.iter().find(|c| c.id == caller) else {
        bail!("--caller is not one of [[origin.callers]]");
    };
    if !c.scopes.contains(&scope) {
        bail!(
            "--caller lacks the scope {}",
            permitgate::origin::api::scope_name(scope)
        );
    }
    let officer = officer.trim();
    if officer.is_empty() || officer.chars().count() > 64 || officer.chars().any(char::is_control) {
        bail!("--officer must be 1-64 characters, no control characters");
    }
    let origin = open_writer(&config, o, Arc::new(SystemClock))?;
    Ok((
        origin,
        Actor {
            caller: c.id.clone(),
            office: c.office.clone(),
            officer: officer.to_owned(),
        },
    ))
}

pub fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Issue {
            config,
            caller,
            officer,
            travel_permit,
            name,
            reason,
            issued_at,
            idempotency_key,
            #[cfg(feature = "tools")]
            qr,
        } => {
            let tp = number("travel-permit", &travel_permit, TravelPermitNo::parse)?;
            let name = permitgate::person_name::normalize(&name)
                .map_err(|e| anyhow::anyhow!("--name {e}"))?;
            let key = idempotency_key.unwrap_or_else(|| hex::encode(rand::random::<[u8; 16]>()));
            let (origin, by) =
                origin_for(&config, &caller, &officer, AuthorityScope::TempPermitIssue)?;
            let issued = origin.issue_blocking(IssueRequest {
                travel_permit: tp,
                name,
                reason,
                issued_at: issued_at.unwrap_or_else(OffsetDateTime::now_utc),
                idempotency_key: key.clone(),
                by,
            })?;
            #[cfg(feature = "tools")]
            if let Some(path) = &qr {
                use anyhow::Context;
                let png = permitgate::printable::qr_png(&issued.token, 6)?;
                std::fs::write(path, png).with_context(|| path.display().to_string())?;
            }
            emit(&format!("{}\n", issued.token))?;
            let p = &issued.permit;
            eprintln!(
                "permit {} {}, valid until {} Beijing time ({}), published as version {}; idempotency key {key}",
                p.permit_id,
                if issued.replayed { "was issued before under this key" } else { "issued" },
                beijing_minute(p.expires_at),
                rfc3339(p.expires_at),
                issued.version,
            );
            Ok(())
        }
        Command::Revoke {
            config,
            caller,
            officer,
            id,
        } => {
            let Some(id) = PermitId::parse(&id).filter(|_| id.trim().len() == 16) else {
                bail!("--id must be 16 hex characters");
            };
            let (origin, by) =
                origin_for(&config, &caller, &officer, AuthorityScope::TempPermitRevoke)?;
            let revoked = origin.revoke_blocking(id, by)?;
            eprintln!(
                "permit {id} {}, published as version {}",
                if revoked.replayed {
                    "was already revoked"
                } else {
                    "revoked"
                },
                revoked.version
            );
            Ok(())
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
