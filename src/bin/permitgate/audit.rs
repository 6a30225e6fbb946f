//! `permitgate audit verify`: the hash chain through an audit log directory, and the
//! signed checkpoints kept outside it.

use std::path::PathBuf;

use anyhow::Context;

use crate::output::out;

#[derive(clap::Subcommand)]
pub enum Command {
    /// Verify the hash chain through every file of an audit log directory. Exit 0 when
    /// intact (a record cut off by a crash is reported, not fatal), 1 when not.
    Verify {
        dir: PathBuf,
        /// The signed checkpoints (`[audit] checkpoint_dir`): the log must hold the seal
        /// each one signed, so a rewrite or truncation up to the last one is caught.
        #[arg(long, requires = "public_key")]
        checkpoints: Option<PathBuf>,
        /// The checkpoint key's public half (PEM), for --checkpoints.
        #[arg(long, requires = "checkpoints")]
        public_key: Option<PathBuf>,
    },
}

pub fn run(command: Command) -> anyhow::Result<()> {
    let Command::Verify {
        dir,
        checkpoints,
        public_key,
    } = command;
    if !dir.is_dir() {
        anyhow::bail!("{}: not a directory", dir.display());
    }
    let signed = match (&checkpoints, &public_key) {
        (Some(cdir), Some(key)) => {
            let key = permitgate::key_files::load_verifying_key(key)?;
            Some(
                permitgate::audit::checkpoint::load(cdir, &key)
                    .context("the checkpoints cannot be trusted")?,
            )
        }
        _ => None,
    };
    let wanted = signed.iter().flatten().map(|c| c.seq).collect();
    let r = permitgate::audit::verify::verify_dir_at(&dir, wanted)
        .context("audit log is not intact")?;
    for (file, bytes) in &r.truncated {
        out!(
            "warning: {} ends in a partial line ({bytes} bytes): cut off by a crash; the chain resumes after it",
            file.display()
        )?;
    }
    for (file, records) in &r.unsealed {
        out!(
            "warning: {} ends with {records} records without their seal (a crash cut the batch): they cannot be verified",
            file.display()
        )?;
    }
    match (r.first_seq, r.last_seq) {
        (Some(first), Some(last)) => {
            out!(
                "OK: {} records (seq {first}..{last}) in {} files, hash chain intact",
                r.records,
                r.files
            )?;
            if first > 1 {
                out!("note: starts at seq {first}; earlier files were archived or removed")?;
            }
        }
        _ => out!("OK: no records ({} files)", r.files)?,
    }
    if let Some(signed) = signed {
        let coverage = permitgate::audit::checkpoint::check(&signed, &r.sealed, r.last_seq)
            .context("the log does not match its checkpoints")?;
        match coverage.last {
            Some((seq, time)) => out!(
                "OK: {} checkpoints hold; the last, of {time}, covers records up to {seq}; {} records after it are not covered by a checkpoint yet",
                signed.len(),
                coverage.after
            )?,
            None => out!(
                "warning: no checkpoints: none of the {} records is covered",
                coverage.after
            )?,
        }
    }
    Ok(())
}
