//! `permitgate config check`: what `serve` would load, loaded, without binding sockets or
//! reading the snapshot (pingora's `-t`).

use std::path::PathBuf;

use permitgate::config::{Config, ConfigError, Invalid};
use permitgate::report::Report;
use permitgate::server::StartError;

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
    let config = match Config::load(&path) {
        Ok(c) => c,
        // Every problem at once: the file's, then those of the files it names as far as
        // it could be read.
        Err(ConfigError::Invalid {
            path,
            mut problems,
            partial: Some(partial),
        }) => {
            if let Err(e) = permitgate::server::check_config_as_read(&partial) {
                problems.extend(file_problems(e));
            }
            anyhow::bail!(ConfigError::Invalid {
                path,
                problems,
                partial: None
            })
        }
        Err(e) => return Err(e.into()),
    };
    let checked = permitgate::server::check_config(&config)?;
    out!(
        "OK: {}: {} partners, {} publisher keys, {} receipt keys; server certificate valid until {}",
        path.display(),
        checked.partners,
        checked.publisher_keys,
        checked.receipt_keys,
        unix_time_text(checked.server_certificate_expires)
    )?;
    out!(
        "A running gateway reloads [tls], the partners, [receipts] and [temp_permits] when they \
         change (SIGHUP or the file watcher); other sections take effect at a restart."
    )?;
    Ok(())
}

/// Files that do not load, as the config's problems read (the file is in the message).
fn file_problems(e: StartError) -> Vec<Invalid> {
    let each = match e {
        StartError::Files(several) => several,
        one => vec![one],
    };
    each.iter()
        .map(|e| Invalid {
            field: "file".to_owned(),
            rule: Report(e).to_string(),
            at: None,
        })
        .collect()
}
