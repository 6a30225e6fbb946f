//! `permitgate verify-site`: the verifier page's files with the published keys beside them,
//! for the authority's public web server or CDN.

use std::path::PathBuf;

use permitgate::keyring::Keyring;

use crate::output::out;

#[derive(clap::Args)]
pub struct Args {
    /// The keys document `GET /v1/keys` serves (checked before it is written).
    #[arg(long)]
    keys: PathBuf,
    /// The directory to write (created if missing); serve it at the address that
    /// `[receipts] verify_url` names.
    #[arg(long)]
    out: PathBuf,
    /// The origin's revocation list (repo/temp-permit-revocations.bin), checked against
    /// the keys and written beside them: the page then refuses revoked temporary permits.
    /// Copy a newer list there as the origin renews it (at least daily: the page does not
    /// rely on a list older than 24 hours).
    #[arg(long)]
    revocations: Option<PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let keyring = Keyring::load(&args.keys)?;
    if keyring.verify_url.is_none() {
        eprintln!(
            "note: {} names no verify_url: receipts' QR codes will not lead to this page",
            args.keys.display()
        );
    }
    let list = match &args.revocations {
        Some(path) => {
            use anyhow::Context;
            let bytes =
                std::fs::read(path).with_context(|| format!("--revocations {}", path.display()))?;
            permitgate::revocation_list::read(&bytes, &keyring)
                .map_err(|e| anyhow::anyhow!("--revocations {e}"))?;
            Some(bytes)
        }
        None => None,
    };
    for path in permitgate::verify_site::write(&args.out, &keyring.to_json(), list.as_deref())? {
        out!("wrote {}", path.display())?;
    }
    Ok(())
}
