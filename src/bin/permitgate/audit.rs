//! `permitgate audit verify`: the hash chain through an audit log directory.

use std::path::PathBuf;

use anyhow::Context;

#[derive(clap::Subcommand)]
pub enum Command {
    /// Verify the hash chain through every file of an audit log directory. Exit 0 when
    /// intact (a record cut off by a crash is reported, not fatal), 1 when not.
    Verify { dir: PathBuf },
}

pub fn run(command: Command) -> anyhow::Result<()> {
    let Command::Verify { dir } = command;
    if !dir.is_dir() {
        anyhow::bail!("{}: not a directory", dir.display());
    }
    let r = permitgate::audit::verify::verify_dir(&dir).context("audit log is not intact")?;
    for (file, bytes) in &r.truncated {
        println!(
            "warning: {} ends in a partial line ({bytes} bytes): cut off by a crash; the chain resumes after it",
            file.display()
        );
    }
    for (file, records) in &r.unsealed {
        println!(
            "warning: {} ends with {records} records without their seal (a crash cut the batch): they cannot be verified",
            file.display()
        );
    }
    match (r.first_seq, r.last_seq) {
        (Some(first), Some(last)) => {
            println!(
                "OK: {} records (seq {first}..{last}) in {} files, hash chain intact",
                r.records, r.files
            );
            if first > 1 {
                println!("note: starts at seq {first}; earlier files were archived or removed");
            }
        }
        _ => println!("OK: no records ({} files)", r.files),
    }
    Ok(())
}
