//! `permitgate temp-permit issue | revoke | verify`: the authority's side of temporary
//! permits (through the origin's writer: a desk without the API still cannot bypass the
//! policy) and the offline verifier's (published keys).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::bail;
use time::OffsetDateTime;

use permitgate::clock::SystemClock;
use permitgate::config::{AuthorityScope, Config};
use permitgate::day::{for_people, rfc3339};
use permitgate::document::TravelPermitNo;
use permitgate::issuance::Actor;
use permitgate::keyring::Keyring;
use permitgate::origin::server::open_writer;
use permitgate::origin::{IssueRequest, Origin};
use permitgate::temp_permit::{self, PermitId, Reason, TokenStatus, VerificationView};

use crate::output::{emit, number, out, parse_time};

#[derive(clap::Subcommand)]
pub enum Command {
    /// Issue a temporary permit through the origin's writer (the config's [origin]): the
    /// same policy, journal and publication as the authority API; print its token.
    Issue {
        #[command(flatten)]
        desk: Desk,
        /// The holder's travel permit number.
        #[arg(long)]
        travel_permit: String,
        /// The holder's name as printed on the travel permit.
        #[arg(long)]
        name: String,
        /// lost, damaged or forgotten (or the Chinese terms: 遗失, 损毁, 未随身携带).
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
        /// Also write the printable permit (PDF or PNG, by the file's extension).
        #[cfg(feature = "tools")]
        #[arg(long)]
        print: Option<PathBuf>,
        #[cfg(feature = "tools")]
        #[command(flatten)]
        printing: crate::output::Printing,
    },
    /// Write the printable permit of a token (PDF or PNG, by the file's extension), after
    /// verifying it against the published keys.
    #[cfg(feature = "tools")]
    Render {
        token: String,
        /// The keys file served at GET /v1/keys (its issuing authority is printed too).
        #[arg(long)]
        keys: PathBuf,
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        printing: crate::output::Printing,
    },
    /// Revoke a temporary permit through the origin's writer; published at once.
    Revoke {
        #[command(flatten)]
        desk: Desk,
        /// The permit id (16 hex characters) printed when it was issued.
        #[arg(long)]
        id: String,
    },
    /// Verify a token offline against the published keys (and, with --revocations, the
    /// origin's revocation list).
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
        /// The origin's revocation list (temp-permit-revocations.bin, beside keys.json):
        /// a revoked permit is refused offline too.
        #[arg(long)]
        revocations: Option<PathBuf>,
        /// A revocation list older than this many hours is refused.
        #[arg(long, default_value_t = 24)]
        max_list_age_hours: u32,
    },
}

/// Who writes from the command line: a desk on the origin's host, as one of its callers.
#[derive(clap::Args)]
pub struct Desk {
    /// The config with the [origin] section (repository, keys, callers).
    #[arg(long)]
    config: PathBuf,
    /// The authority caller this desk is ([[origin.callers]] id, with the scope the
    /// command needs: temp_permit_issue or temp_permit_revoke); its office is recorded.
    #[arg(long)]
    caller: String,
    /// The officer making the change (recorded with it).
    #[arg(long)]
    officer: String,
}

impl Desk {
    /// The writer of the config's origin, and the caller's record, if it holds `scope`.
    fn origin(&self, scope: AuthorityScope) -> anyhow::Result<(Origin, Actor)> {
        let config = Config::load(&self.config)?;
        let Some(o) = &config.origin else {
            bail!("--config has no [origin] section: temporary permits are issued by the origin");
        };
        let Some(c) = o.callers.iter().find(|c| c.id == self.caller) else {
            bail!("--caller is not one of [[origin.callers]]");
        };
        if !c.scopes.contains(&scope) {
            bail!(
                "--caller lacks the scope {}",
                permitgate::origin::api::scope_name(scope)
            );
        }
        let Some(officer) = permitgate::issuance::officer_name(&self.officer) else {
            bail!("--officer must be 1-64 characters, no control characters");
        };
        // A desk's command: its metrics are nobody's to scrape.
        let origin = open_writer(
            &config,
            o,
            Arc::new(SystemClock),
            permitgate::origin::OriginMetrics::new(),
        )?;
        Ok((
            origin,
            Actor {
                caller: c.id.clone(),
                office: c.office.clone(),
                officer,
            },
        ))
    }
}

pub fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Issue {
            desk,
            travel_permit,
            name,
            reason,
            issued_at,
            idempotency_key,
            #[cfg(feature = "tools")]
            qr,
            #[cfg(feature = "tools")]
            print,
            #[cfg(feature = "tools")]
            printing,
        } => {
            let tp = number("travel-permit", &travel_permit, TravelPermitNo::parse)?;
            let name = permitgate::person_name::normalize(&name)
                .map_err(|e| anyhow::anyhow!("--name {e}"))?;
            let key = idempotency_key.unwrap_or_else(|| hex::encode(rand::random::<[u8; 16]>()));
            let (origin, by) = desk.origin(AuthorityScope::TempPermitIssue)?;
            let issued = origin
                .issue_blocking(IssueRequest {
                    travel_permit: tp,
                    name,
                    reason,
                    issued_at: issued_at.unwrap_or_else(OffsetDateTime::now_utc),
                    idempotency_key: key.clone(),
                    by,
                })
                .map_err(for_the_desk)?;
            #[cfg(feature = "tools")]
            if let Some(path) = &qr {
                use anyhow::Context;
                let png = permitgate::printable::qr_png(&issued.token, 6)?;
                std::fs::write(path, png).with_context(|| path.display().to_string())?;
            }
            #[cfg(feature = "tools")]
            if let Some(path) = &print {
                let page = printed::page(&issued.permit, &issued.token, None);
                crate::output::write_printable(&page, path, "--print", &printing)?;
                eprintln!("wrote {}", path.display());
            }
            emit(&format!("{}\n", issued.token))?;
            let p = &issued.permit;
            let (until_zh, until_en) = for_people(p.expires_at);
            // For the officer: in Chinese, then in English.
            eprintln!(
                "临时通行证 {} {}，有效期至 {until_zh}\npermit {} {}, valid until {until_en} ({}), published as version {}; idempotency key {key}",
                p.permit_id,
                if issued.replayed { "此前已以此幂等键签发" } else { "已签发" },
                p.permit_id,
                if issued.replayed {
                    "was issued before under this key"
                } else {
                    "issued"
                },
                rfc3339(p.expires_at),
                issued.version,
            );
            Ok(())
        }
        Command::Revoke { desk, id } => {
            let Some(id) = PermitId::parse(&id).filter(|_| id.trim().len() == 16) else {
                bail!("--id must be 16 hex characters");
            };
            let (origin, by) = desk.origin(AuthorityScope::TempPermitRevoke)?;
            let revoked = origin.revoke_blocking(id, by).map_err(for_the_desk)?;
            eprintln!(
                "临时通行证 {id} {}\npermit {id} {}, published as version {}",
                if revoked.replayed {
                    "此前已撤销"
                } else {
                    "已撤销"
                },
                if revoked.replayed {
                    "was already revoked"
                } else {
                    "revoked"
                },
                revoked.version
            );
            Ok(())
        }
        #[cfg(feature = "tools")]
        Command::Render {
            token,
            keys,
            out,
            printing,
        } => {
            let keyring = Keyring::load(&keys)?;
            let v = temp_permit::verify(
                &token,
                &keyring,
                OffsetDateTime::now_utc(),
                time::Duration::minutes(5),
                |_| false,
            );
            let Some(permit) = v.permit.filter(|_| {
                !matches!(
                    v.status,
                    TokenStatus::Malformed | TokenStatus::UnknownKey | TokenStatus::BadSignature
                )
            }) else {
                bail!(
                    "the token is {}: not a genuine permit; nothing rendered",
                    v.status.label()
                );
            };
            let page = printed::page(&permit, token.trim(), keyring.authority.as_ref());
            crate::output::write_printable(&page, &out, "--out", &printing)?;
            eprintln!("wrote {}", out.display());
            Ok(())
        }
        Command::Verify {
            keys,
            token,
            at,
            skew_seconds,
            revocations,
            max_list_age_hours,
        } => {
            let keyring = Keyring::load(&keys)?;
            let now = at.unwrap_or_else(OffsetDateTime::now_utc);
            let list = revocations
                .as_deref()
                .map(|path| revocation_list(path, &keyring, now, max_list_age_hours))
                .transpose()?;
            let v = temp_permit::verify(
                &token,
                &keyring,
                now,
                time::Duration::seconds(i64::from(skew_seconds)),
                |id| list.as_ref().is_some_and(|l| l.contains(id)),
            );
            out!(
                "{}",
                serde_json::to_string_pretty(&VerificationView::from(&v))?
            )?;
            if v.status != TokenStatus::Valid {
                bail!("temporary permit is {}", v.status.label());
            }
            Ok(())
        }
    }
}

/// The printable permit: what an officer hands the holder, and what a gate scans.
#[cfg(feature = "tools")]
mod printed {
    use permitgate::day::{for_people, rfc3339};
    use permitgate::keyring::Authority;
    use permitgate::printable::Page;
    use permitgate::temp_permit::TempPermit;
    use permitgate::terms;

    /// The page, in Chinese and English, with the terms of permitgate::terms.
    pub fn page(p: &TempPermit, token: &str, authority: Option<&Authority>) -> Page {
        let (name_zh, name_en) = terms::travel_permit_name(p.region());
        let row = |label: &str, value: String| (label.to_owned(), value);
        // Beijing time in both languages, a line each: an A6 card is narrow.
        let when = |label: &str, t| {
            let (zh, en) = for_people(t);
            [row(label, zh), row("", en)]
        };
        let mut rows = Vec::new();
        if let Some(a) = authority {
            rows.push(row("签发机构 Issued by", a.zh.clone()));
            rows.push(row("", a.en.clone()));
        }
        rows.extend([
            row("持证人 Holder", p.holder_name.clone()),
            row("通行证 Travel permit", p.travel_permit.masked()),
            row(
                "原因 Reason",
                format!("{} {}", terms::reason(p.reason), <&str>::from(p.reason)),
            ),
        ]);
        rows.extend(when("生效 Valid from", p.issued_at));
        rows.extend(when("截止 Valid until", p.expires_at));
        rows.extend([
            row("编号 Permit id", p.permit_id.to_string()),
            row("用途 Use", terms::TEMP_PERMIT_USE.0.to_owned()),
        ]);
        // Two lines: an A6 card is narrow.
        let (head, tail) = terms::TEMP_PERMIT_USE
            .1
            .split_once("; ")
            .unwrap_or((terms::TEMP_PERMIT_USE.1, ""));
        rows.push(row("", format!("{head};")));
        rows.push(row("", tail.to_owned()));
        Page {
            title: vec![
                name_zh.to_owned(),
                "临时电子证件 Temporary electronic permit".to_owned(),
                name_en.to_owned(),
            ],
            rows,
            note: "闸机扫码核验 Gates scan this code".into(),
            qr_text: token.trim().to_owned(),
            qr_caption: vec![
                "请同时出示持证人其他身份证件".into(),
                "Show it with another identity document of the holder".into(),
                format!("(UTC {} – {})", rfc3339(p.issued_at), rfc3339(p.expires_at)),
            ],
        }
    }
}

/// The revocation list at `path`, verified with the published keys, and not older than
/// `max_age_hours` at `now`; says on standard error how old it is.
fn revocation_list(
    path: &Path,
    keys: &Keyring,
    now: OffsetDateTime,
    max_age_hours: u32,
) -> anyhow::Result<permitgate::revocation_list::RevocationList> {
    use anyhow::Context;
    let bytes = std::fs::read(path).with_context(|| format!("--revocations {}", path.display()))?;
    let list = permitgate::revocation_list::read(&bytes, keys)
        .map_err(|e| anyhow::anyhow!("--revocations {e}"))?;
    let age = list.age(now);
    let minutes = age.whole_minutes();
    if age > time::Duration::hours(i64::from(max_age_hours)) {
        bail!(
            "--revocations was issued {} ({minutes} minutes ago): older than {max_age_hours} hours, too old to tell whether the permit was revoked; fetch a newer list",
            rfc3339(list.issued_at)
        );
    }
    eprintln!(
        "revocation list issued {} ({minutes} minutes ago), {} revoked permits",
        rfc3339(list.issued_at),
        list.len()
    );
    Ok(list)
}

/// An origin's refusal as the officer at the desk reads it: in Chinese, then in English.
fn for_the_desk(e: permitgate::origin::OriginError) -> anyhow::Error {
    match e.zh() {
        Some(zh) => anyhow::anyhow!("{zh}\n{e}"),
        None => anyhow::Error::new(e),
    }
}
