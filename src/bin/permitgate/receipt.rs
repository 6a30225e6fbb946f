//! `permitgate receipt verify | render`: the verifier's side of signed receipts, offline
//! from the published keys; `render` puts one on paper.

use std::path::PathBuf;

use anyhow::bail;

use permitgate::keyring::Keyring;
use permitgate::receipt::{self, ReceiptView};

use crate::output::{out, pair};

#[derive(clap::Subcommand)]
pub enum Command {
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
    #[cfg(feature = "tools")]
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
        #[command(flatten)]
        printing: crate::output::Printing,
    },
}

pub fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Verify {
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
                    out!(
                        "{}",
                        serde_json::to_string_pretty(&serde_json::json!({ "status": e.status() }))?
                    )?;
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
            out!("{}", serde_json::to_string_pretty(&out)?)?;
            if numbers == Some(false) {
                bail!("the receipt is genuine but not about these two documents");
            }
            Ok(())
        }
        #[cfg(feature = "tools")]
        Command::Render {
            receipt,
            out,
            keys,
            travel_permit,
            residence_permit,
            printing,
        } => render::render(
            &receipt,
            &out,
            keys,
            (travel_permit, residence_permit),
            &printing,
        ),
    }
}

/// The printable verification document.
#[cfg(feature = "tools")]
mod render {
    use std::path::{Path, PathBuf};

    use anyhow::bail;

    use permitgate::keyring::Keyring;
    use permitgate::printable::Page;
    use permitgate::receipt::{self, Receipt, ReceiptView};

    use crate::output::{out, pair};

    pub fn render(
        receipt: &str,
        out: &Path,
        keys: Option<PathBuf>,
        (travel_permit, residence_permit): (Option<String>, Option<String>),
        printing: &crate::output::Printing,
    ) -> anyhow::Result<()> {
        let keyring = keys.as_deref().map(Keyring::load).transpose()?;
        let r = match &keyring {
            Some(k) => receipt::verify(receipt, k)?,
            None => receipt::read(receipt)?,
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
        let page = receipt_page(&r, receipt, numbers, keyring.as_ref());
        crate::output::write_printable(&page, out, "--out", printing)?;
        out!("wrote {}", out.display())?;
        Ok(())
    }

    /// The printable verification document: what the receipt says, in Chinese and English,
    /// with the terms of permitgate::terms (the partner guide's table).
    /// `published`: the keys the receipt was verified against, with the authority's name
    /// and the verifier page's address; `None` when it was not verified.
    fn receipt_page(
        r: &Receipt,
        text: &str,
        numbers: Option<(String, String)>,
        published: Option<&Keyring>,
    ) -> Page {
        use permitgate::checks::LinkResult;
        use permitgate::snapshot::RecordStatus;
        use permitgate::terms;
        let view = ReceiptView::from(r);
        let status = |s: Option<RecordStatus>| match s {
            Some(s) => format!("{} {}", terms::record_status(s), s.label()),
            None => format!("{} not found", terms::NOT_FOUND),
        };
        let meaning = match r.result {
            LinkResult::Linked => "both documents belong to one person",
            LinkResult::NotLinked => "the documents belong to different people",
            LinkResult::TravelPermitNotFound => "the travel permit is not on record",
            LinkResult::ResidencePermitNotFound => "the residence permit is not on record",
            LinkResult::HolderNotEligible => {
                "the travel permit's holder cannot hold a residence permit"
            }
        };
        // The masked numbers when they were given and match; a receipt itself carries none.
        let given = numbers.is_some();
        let (tp, rp) = numbers.map_or((String::new(), String::new()), |(tp, rp)| {
            (format!("{tp}  "), format!("{rp}  "))
        });
        let row = |label: &str, value: String| (label.to_owned(), value);
        let authority = published.and_then(|k| k.authority.as_ref());
        let verify_url = published.and_then(|k| k.verify_url.as_deref());
        let mut rows = Vec::new();
        if let Some(a) = authority {
            rows.push(row("签发机构 Issued by", format!("{} {}", a.zh, a.en)));
        }
        // The two documents by their names: a Taiwan resident's travel permit is not the
        // Hong Kong and Macao residents' one.
        for (i, line) in terms::link_check_documents(r.region)
            .into_iter()
            .enumerate()
        {
            rows.push(row(if i == 0 { "证件 Documents" } else { "" }, line));
        }
        if let Some(name) = &r.holder_name {
            rows.push(row("持证人 Holder", name.clone()));
        }
        rows.extend([
            row(
                "核验结果 Result",
                format!(
                    "{} {} ({meaning})",
                    terms::link_result(r.result),
                    r.result.label()
                ),
            ),
            row(
                "通行证 Travel permit",
                format!("{tp}{}", status(r.travel_permit)),
            ),
            row(
                "居住证 Residence permit",
                format!("{rp}{}", status(r.residence_permit)),
            ),
        ]);
        if !given {
            rows.extend([
                row(
                    "号码 Numbers",
                    "凭证不含证件号码：扫码后输入两份证件的号码即可核对".into(),
                ),
                row(
                    "",
                    "Not in the record: scan it, then type them to check".into(),
                ),
            ]);
        }
        rows.extend([
            row("核验时间 Checked at", {
                let (zh, en) = permitgate::day::for_people(r.checked_at);
                format!("{zh}  {en}")
            }),
            row(
                "说明 Note",
                "以上为核验当时的证件状态；当前状态请向签发机构查询".into(),
            ),
            row(
                "",
                "Statuses when checked; ask the authority for today's".into(),
            ),
            row(
                "数据版本 Records version",
                view.snapshot_version.to_string(),
            ),
            row("核验方 Requested by", requested_by(r)),
            row("编号 Receipt id", view.receipt_id),
            row("签名密钥 Signing key", view.key_id),
            row(
                "签名 Signature",
                if published.is_some() {
                    "已核对 verified against the published keys".into()
                } else {
                    "未核对 not verified here".into()
                },
            ),
        ]);
        Page {
            title: vec![
                terms::LINK_CHECK_TITLE.0.into(),
                terms::LINK_CHECK_TITLE.1.into(),
            ],
            rows,
            note: "扫码核验 Scan to verify".into(),
            qr_text: match verify_url {
                Some(url) => receipt::verify_link(url, text),
                None => text.trim().to_owned(),
            },
            qr_caption: verify_url
                .map(|url| vec![format!("核验网址 Verify at: {url}")])
                .unwrap_or_default(),
        }
    }

    /// Who asked, as people read it: the organisation's names signed into the receipt (format
    /// 3), then its partner id; the id alone for a receipt without names.
    fn requested_by(r: &Receipt) -> String {
        let names: Vec<&str> = [&r.partner_name.zh, &r.partner_name.en]
            .into_iter()
            .flatten()
            .map(String::as_str)
            .collect();
        if names.is_empty() {
            r.partner.clone()
        } else {
            format!("{} ({})", names.join(" "), r.partner)
        }
    }
}
