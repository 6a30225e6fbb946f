//! `temp-permit` and `receipt` subcommands: the authority's and the verifiers' side of the
//! two signed objects, working offline from key files.

use std::io::Write;
use std::path::Path;

use anyhow::{bail, Context};
use time::OffsetDateTime;

use permitgate::checks::DocumentPair;
use permitgate::day::rfc3339;
use permitgate::document::{NumberError, ResidencePermitNo, TravelPermitNo};
use permitgate::key_files;
use permitgate::keyring::Keyring;
use permitgate::printable::{self, Page};
use permitgate::publish::ChangeEvent;
use permitgate::receipt::{self, Receipt, ReceiptView};
use permitgate::temp_permit::{self, PermitId, TokenStatus, VerificationView};

use crate::{ReceiptCommand, TempPermitCommand};

/// A number from the command line; the error names the argument and the rule, never the
/// number.
fn number<T>(
    arg: &str,
    text: &str,
    parse: fn(&str) -> Result<T, NumberError>,
) -> anyhow::Result<T> {
    parse(text).map_err(|e| anyhow::anyhow!("--{arg} breaks rule {}: {e}", e.rule()))
}

fn pair(tp: &str, rp: &str) -> anyhow::Result<DocumentPair> {
    let tp = number("travel-permit", tp, TravelPermitNo::parse)?;
    let rp = number("residence-permit", rp, ResidencePermitNo::parse)?;
    DocumentPair::new(tp, rp)
        .map_err(|e| anyhow::anyhow!("--residence-permit breaks rule {}: {e}", e.rule()))
}

/// Appends one change event to `path`, or prints it on standard error.
fn emit(event: &ChangeEvent, path: Option<&Path>) -> anyhow::Result<()> {
    let line = serde_json::to_string(event)?;
    match path {
        Some(p) => {
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .with_context(|| p.display().to_string())?;
            writeln!(f, "{line}").with_context(|| p.display().to_string())?;
        }
        None => eprintln!("{line}"),
    }
    Ok(())
}

pub fn temp_permit(command: TempPermitCommand) -> anyhow::Result<()> {
    match command {
        TempPermitCommand::Issue {
            signing_key,
            travel_permit,
            name,
            reason,
            issued_at,
            qr,
            events,
        } => {
            let key = key_files::load_signing_key(&signing_key)?;
            let tp = number("travel-permit", &travel_permit, TravelPermitNo::parse)?;
            let issued_at = issued_at.unwrap_or_else(OffsetDateTime::now_utc);
            let (token, permit) = temp_permit::issue(&tp, &name, reason, issued_at, &key)
                .map_err(|e| anyhow::anyhow!("--{e}"))?;
            if let Some(path) = &qr {
                let png = printable::qr_png(&token, 6)?;
                std::fs::write(path, png).with_context(|| path.display().to_string())?;
            }
            emit(
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
        TempPermitCommand::Revoke { id, events } => {
            let Some(id) = PermitId::parse(&id) else {
                bail!("--id must be 16 hex characters");
            };
            emit(
                &ChangeEvent::TempPermitRevoke {
                    permit_id: id.to_string(),
                },
                events.as_deref(),
            )
        }
        TempPermitCommand::Verify {
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

pub fn receipt(command: ReceiptCommand) -> anyhow::Result<()> {
    match command {
        ReceiptCommand::Verify {
            keys,
            receipt,
            travel_permit,
            residence_permit,
        } => {
            let keyring = Keyring::load(&keys)?;
            // Like `temp-permit verify`: a verdict in `status` whatever it is.
            let r = match receipt::verify(&receipt, &keyring) {
                Ok(r) => r,
                Err(e) => {
                    println!(
                        "{}",
                        serde_json::to_string_pretty(&serde_json::json!({ "status": e.status() }))?
                    );
                    return Err(e.into());
                }
            };
            let numbers = match travel_permit.as_deref().zip(residence_permit.as_deref()) {
                Some((tp, rp)) => Some(r.refers_to(&pair(tp, rp)?)),
                None => None,
            };
            let mut out = serde_json::to_value(ReceiptView::from(&r))?;
            out["status"] = "genuine".into();
            out["numbers"] = match numbers {
                Some(true) => "match",
                Some(false) => "mismatch",
                None => "not_checked",
            }
            .into();
            println!("{}", serde_json::to_string_pretty(&out)?);
            if numbers == Some(false) {
                bail!("the receipt is genuine but not about these two documents");
            }
            Ok(())
        }
        ReceiptCommand::Render {
            receipt,
            out,
            keys,
            travel_permit,
            residence_permit,
        } => {
            let (r, verified) = match &keys {
                Some(k) => (receipt::verify(&receipt, &Keyring::load(k)?)?, true),
                None => (receipt::read(&receipt)?, false),
            };
            let numbers = match travel_permit.as_deref().zip(residence_permit.as_deref()) {
                Some((tp, rp)) => {
                    let p = pair(tp, rp)?;
                    if !r.refers_to(&p) {
                        bail!("the receipt is not about these two documents; nothing rendered");
                    }
                    Some((p.travel().masked(), p.residence().masked()))
                }
                None => None,
            };
            let page = receipt_page(&r, &receipt, numbers, verified);
            let bytes = match out.extension().and_then(|e| e.to_str()) {
                Some(e) if e.eq_ignore_ascii_case("pdf") => printable::pdf(&page)?,
                Some(e) if e.eq_ignore_ascii_case("png") => printable::png(&page)?,
                _ => bail!("--out must end in .pdf or .png"),
            };
            std::fs::write(&out, bytes).with_context(|| out.display().to_string())?;
            println!("wrote {}", out.display());
            Ok(())
        }
    }
}

/// The wire name of an enum value (`linked`, `lost`...).
fn label(v: impl serde::Serialize) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// The printable verification document: what the receipt says, in words.
fn receipt_page(
    r: &Receipt,
    text: &str,
    numbers: Option<(String, String)>,
    verified: bool,
) -> Page {
    let view = ReceiptView::from(r);
    let status =
        |s: Option<permitgate::snapshot::RecordStatus>| s.map_or("not found".into(), label);
    let result = label(view.result);
    let meaning = match r.result {
        permitgate::checks::LinkResult::Linked => "both documents belong to one person",
        permitgate::checks::LinkResult::NotLinked => "the documents belong to different people",
        permitgate::checks::LinkResult::TravelPermitNotFound => {
            "the travel permit is not on record"
        }
        permitgate::checks::LinkResult::ResidencePermitNotFound => {
            "the residence permit is not on record"
        }
    };
    let (tp, rp) =
        numbers.unwrap_or_else(|| ("(number not shown)".into(), "(number not shown)".into()));
    let row = |label: &str, value: String| (label.to_owned(), value);
    Page {
        title: "Dual-document verification receipt".into(),
        rows: vec![
            row("Result", format!("{result} ({meaning})")),
            row(
                "Travel permit",
                format!("{tp}  {}", status(r.travel_permit)),
            ),
            row(
                "Residence permit",
                format!("{rp}  {}", status(r.residence_permit)),
            ),
            row("Checked at", view.checked_at),
            row("Records version", view.snapshot_version.to_string()),
            row("Requested by", view.partner),
            row("Receipt id", view.receipt_id),
            row("Signing key", view.key_id),
            row(
                "Signature",
                if verified {
                    "verified against the published keys".into()
                } else {
                    "not verified here (no --keys given)".into()
                },
            ),
        ],
        note: "Scan the code, or run: permitgate receipt verify --keys KEYS.json RECEIPT".into(),
        qr_text: text.trim().to_owned(),
    }
}
