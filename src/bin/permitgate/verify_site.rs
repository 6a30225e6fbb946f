//! `permitgate verify-site`: the verifier page's files with the published keys beside them,
//! for the authority's public web server or CDN.

use std::path::PathBuf;

use permitgate::keyring::Keyring;

#[derive(clap::Args)]
pub struct Args {
    /// The keys document `GET /v1/keys` serves (checked before it is written).
    #[arg(long)]
    keys: PathBuf,
    /// The directory to write (created if missing); serve it at the address that
    /// `[receipts] verify_url` names.
    #[arg(long)]
    out: PathBuf,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let keyring = Keyring::load(&args.keys)?;
    if keyring.verify_url.is_none() {
        eprintln!(
            "note: {} names no verify_url: receipts' QR codes will not lead to this page",
            args.keys.display()
        );
    }
    for path in permitgate::verify_site::write(&args.out, &keyring.to_json())? {
        println!("wrote {}", path.display());
    }
    Ok(())
}
