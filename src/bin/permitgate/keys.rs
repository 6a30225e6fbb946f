//! `permitgate keys generate | ed25519`: key files, never overwritten.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

use permitgate::key_files::{self, HashKey};

use crate::output::out;

#[derive(clap::Subcommand)]
pub enum Command {
    /// Write publisher.key, publisher.pub and hash.key into DIR (refuses to overwrite).
    Generate {
        #[arg(long)]
        out: PathBuf,
    },
    /// Write an Ed25519 key pair PREFIX.key (PKCS#8 PEM) and PREFIX.pub (SPKI PEM), for
    /// receipt signing or temporary-permit issuing (refuses to overwrite).
    Ed25519 {
        #[arg(long)]
        out: PathBuf,
    },
}

pub fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Generate { out } => {
            let paths = ["publisher.key", "publisher.pub", "hash.key"].map(|f| out.join(f));
            refuse_overwrite(&paths)?;
            std::fs::create_dir_all(&out).with_context(|| out.display().to_string())?;
            let sk = key_files::generate_signing_key();
            key_files::save_signing_key(&sk, &paths[0])?;
            key_files::save_verifying_key(&sk.verifying_key(), &paths[1])?;
            HashKey::generate().save(&paths[2])?;
            out!(
                "wrote {} (key id {})",
                out.display(),
                key_files::verifying_key_id(&sk.verifying_key())
            )?;
        }
        Command::Ed25519 { out } => {
            // Appended, not `with_extension`: `receipt.2027` must become `receipt.2027.key`.
            let paths = [".key", ".pub"].map(|ext| {
                let mut p = out.clone().into_os_string();
                p.push(ext);
                PathBuf::from(p)
            });
            refuse_overwrite(&paths)?;
            if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).with_context(|| dir.display().to_string())?;
            }
            let sk = key_files::generate_signing_key();
            key_files::save_signing_key(&sk, &paths[0])?;
            key_files::save_verifying_key(&sk.verifying_key(), &paths[1])?;
            out!(
                "wrote {} and {} (key id {})",
                paths[0].display(),
                paths[1].display(),
                key_files::verifying_key_id(&sk.verifying_key())
            )?;
        }
    }
    Ok(())
}

fn refuse_overwrite(paths: &[PathBuf]) -> anyhow::Result<()> {
    if let Some(p) = paths.iter().map(PathBuf::as_path).find(|p| Path::exists(p)) {
        bail!("{} exists; refusing to overwrite a key", p.display());
    }
    Ok(())
}
