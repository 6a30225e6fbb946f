//! Peak memory and time of `permitgate publish --input` for an export of N documents. The
//! export is generated on the fly into a FIFO (a 100M-document export is about 9 GB): one
//! person per line with one travel permit each, as many persons as documents, the most the
//! person check has to spill. Peak resident memory and elapsed time come from GNU time
//! (`/usr/bin/time -v`), for --pg and, with --old, another build in the same run. Needs
//! free disk of about 1.6 x 32 bytes x N.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};
use serde_json::json;

use super::stats::{figure, Table};

#[derive(clap::Args, Debug, Clone, serde::Serialize)]
pub struct Args {
    /// Documents in each export.
    #[arg(required = true)]
    documents: Vec<u64>,
    /// The gateway binary.
    #[arg(long, default_value = "target/release/permitgate")]
    pg: PathBuf,
    /// Another build, measured in the same run.
    #[arg(long)]
    old: Option<PathBuf>,
    /// summary.json and table.md.
    #[arg(long, default_value = "target/scenario/publish-memory")]
    out: PathBuf,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    std::fs::create_dir_all(&a.out)?;
    let work = tempfile::tempdir().context("a work directory")?;
    let keys = work.path().join("keys");
    let out = Command::new(&a.pg)
        .args(["keys", "generate", "--out"])
        .arg(&keys)
        .output()
        .context("running permitgate keys generate")?;
    if !out.status.success() {
        bail!("keys generate: {}", String::from_utf8_lossy(&out.stderr));
    }
    let mut rows = Vec::new();
    for &n in &a.documents {
        let builds = a
            .old
            .iter()
            .map(|o| ("old", o))
            .chain([("this build", &a.pg)]);
        for (label, bin) in builds {
            let (kib, elapsed) = measure(bin, work.path(), &keys, n)?;
            let row = json!({
                "build": label,
                "binary": bin,
                "documents": n,
                "peak_rss_kib": kib,
                "bytes_per_document": kib * 1024.0 / n as f64,
                "elapsed": elapsed,
            });
            println!("{row}");
            rows.push(row);
        }
    }
    let mut t = Table::new(&[
        "build",
        "documents",
        "peak RSS",
        "per document",
        "elapsed (generator on the same cores)",
    ]);
    for r in &rows {
        t.row(&[
            r["build"].as_str().unwrap_or_default().to_owned(),
            r["documents"].to_string(),
            format!("{:.1} MiB", figure(r, "peak_rss_kib") / 1024.0),
            format!("{:.1} B", figure(r, "bytes_per_document")),
            r["elapsed"].as_str().unwrap_or_default().to_owned(),
        ]);
    }
    std::fs::write(
        a.out.join("summary.json"),
        serde_json::to_vec_pretty(
            &json!({"scenario": "publish-memory", "settings": a, "runs": rows}),
        )?,
    )?;
    std::fs::write(a.out.join("table.md"), t.markdown())?;
    print!("{}", t.markdown());
    Ok(())
}

/// Peak RSS (KiB) and elapsed time of one publication of `n` generated documents.
fn measure(bin: &Path, work: &Path, keys: &Path, n: u64) -> anyhow::Result<(f64, String)> {
    let (repo, fifo) = (work.join("repo"), work.join("fifo"));
    let _ = std::fs::remove_dir_all(&repo);
    let _ = std::fs::remove_file(&fifo);
    if !Command::new("mkfifo").arg(&fifo).status()?.success() {
        bail!("mkfifo {}", fifo.display());
    }
    let writer = {
        let fifo = fifo.clone();
        std::thread::spawn(move || -> std::io::Result<()> {
            let mut w = std::io::BufWriter::new(std::fs::File::create(&fifo)?);
            for i in 0..n {
                writeln!(
                    w,
                    r#"{{"person":"p{i}","documents":[{{"number":"H{i:08}","status":"valid","valid_until":"2031-01-01"}}]}}"#
                )?;
            }
            w.flush()
        })
    };
    let out = Command::new("/usr/bin/time")
        .arg("-v")
        .arg(bin)
        .arg("publish")
        .arg("--input")
        .arg(&fifo)
        .arg("--out")
        .arg(&repo)
        .arg("--signing-key")
        .arg(keys.join("publisher.key"))
        .arg("--hash-key")
        .arg(keys.join("hash.key"))
        .output()
        .context("running /usr/bin/time (Debian's time package)")?;
    let _ = writer.join();
    let text = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        bail!("publish failed: {text}");
    }
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(name)?.strip_prefix(": "))
            .map(str::to_owned)
    };
    let kib: f64 = field("Maximum resident set size (kbytes)")
        .and_then(|v| v.parse().ok())
        .context("GNU time gave no maximum resident set size")?;
    let elapsed = field("Elapsed (wall clock) time (h:mm:ss or m:ss)").unwrap_or_default();
    Ok((kib, elapsed))
}
