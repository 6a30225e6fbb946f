//! `permitgate config check`: what `serve` would load, loaded, without binding sockets or
//! reading the snapshot (pingora's `-t`).

use std::path::PathBuf;

use permitgate::config::Config;

use crate::output::{out, unix_time_text};

#[derive(clap::Subcommand)]
pub enum Command {
    /// Load the config, certificates, CA, CRLs and keys as `serve` would (the server
    /// chain verified, keys matched), without binding sockets or reading the snapshot.
    Check {
        #[arg(long)]
        config: PathBuf,
    },
}

pub fn run(command: Command) -> anyhow::Result<()> {
    let Command::Check { config: path } = command;
    let checked = permitgate::server::check_config(&Config::load(&path)?)?;
    out!(
        "OK: {}: {} partners, {} publisher keys, {} receipt keys; server certificate valid until {}",
        path.display(),
        checked.partners,
        checked.publisher_keys,
        checked.receipt_keys,
        unix_time_text(checked.server_certificate_expires)
    )?;
    Ok(())
}
