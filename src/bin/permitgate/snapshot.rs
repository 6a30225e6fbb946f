//! `permitgate snapshot inspect | verify`: a snapshot file or a repository, looked into
//! (nothing checked) or verified (the gateway's own verification path).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context;

use permitgate::key_files::{self, HashKey};
use permitgate::snapshot::{self, SignedManifest, Snapshot, SnapshotHeader, MANIFEST_FILE};

use crate::output::{emit, out, unix_time_text};

#[derive(clap::Subcommand)]
pub enum Command {
    /// Print what a snapshot file or repository holds (no signature check).
    Inspect { path: PathBuf },
    /// Verify signatures and hashes of a snapshot file or repository.
    Verify {
        path: PathBuf,
        /// Publisher public key (SPKI PEM).
        #[arg(long)]
        public_key: PathBuf,
        /// Also check that the snapshot was built with this hashing key.
        #[arg(long)]
        hash_key: Option<PathBuf>,
    },
}

pub fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Inspect { path } => inspect(&path),
        Command::Verify {
            path,
            public_key,
            hash_key,
        } => verify(&path, &public_key, hash_key.as_deref()),
    }
}

fn inspect(path: &Path) -> anyhow::Result<()> {
    let mut out = String::new();
    let file = if path.is_dir() {
        let mpath = path.join(MANIFEST_FILE);
        let bytes = std::fs::read(&mpath).with_context(|| mpath.display().to_string())?;
        let v: serde_json::Value =
            serde_json::from_slice(&bytes).context("manifest is not JSON")?;
        writeln!(out, "manifest (signature not checked):")?;
        writeln!(out, "{}", serde_json::to_string_pretty(&v["signed"])?)?;
        let hash = v["signed"]["snapshot"]["hash"]
            .as_str()
            .context("manifest names no snapshot hash")?;
        snapshot::object_path(path, hash)
    } else {
        path.to_owned()
    };
    let bytes = std::fs::read(&file).with_context(|| file.display().to_string())?;
    let h: SnapshotHeader = SnapshotHeader::decode(&bytes, &file.display().to_string())?;
    writeln!(out, "snapshot file:    {}", file.display())?;
    writeln!(out, "content hash:     {}", blake3::hash(&bytes).to_hex())?;
    writeln!(out, "size:             {} bytes", bytes.len())?;
    writeln!(out, "version:          {}", h.meta.version)?;
    writeln!(
        out,
        "published at:     {}",
        unix_time_text(h.meta.published_at)
    )?;
    writeln!(out, "documents:        {}", h.documents)?;
    writeln!(out, "persons:          {}", h.persons)?;
    writeln!(out, "signing key id:   {}", h.signing_key_id)?;
    writeln!(out, "hashing key id:   {}", h.meta.hash_key_id)?;
    emit(&out)
}

fn verify(path: &Path, public_key: &Path, hash_key: Option<&Path>) -> anyhow::Result<()> {
    let trusted = [key_files::load_verifying_key(public_key)?];
    let hk = hash_key.map(HashKey::load).transpose()?;
    if path.is_dir() {
        let repo = snapshot::load_repo(path, &trusted, hk.as_ref())?;
        let m: &SignedManifest = &repo.manifest;
        out!(
            "OK: manifest version {} signed by {}, snapshot {} ({} documents) and {} deltas verified; data version {}; manifest expires {}",
            m.manifest.version,
            m.key_id,
            repo.snapshot.content_hash().to_hex(),
            repo.snapshot.len(),
            repo.deltas.len(),
            m.manifest.data_version(),
            permitgate::day::rfc3339(m.manifest.expires_at)
        )?;
    } else {
        let s = Snapshot::load(path, &trusted, hk.as_ref())?;
        out!(
            "OK: snapshot version {} ({} documents) signed by {}, content hash {}",
            s.header().meta.version,
            s.len(),
            s.header().signing_key_id,
            s.content_hash().to_hex()
        )?;
    }
    Ok(())
}
