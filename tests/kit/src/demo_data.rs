//! The demo's data (a PKI, keys, an export and its signed snapshot), made once per process
//! for each size and seed and copied into each test's directory: a copy is a few file
//! copies, a fresh one a PKI, five key pairs and a publication.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use permitgate::demo::{self, Demo, DemoOptions};

/// `demo::prepare` in `dir`, from a copy of this process's template for the same records
/// and seed unless `dir` already holds demo data (which is then used as it is). The
/// config is written for `opts`' addresses, as the demo writes it.
pub fn prepare(dir: &Path, opts: &DemoOptions) -> Demo {
    if !dir.join("samples.json").exists() {
        let template = template(opts.records, opts.seed);
        copy_tree(template.path(), dir)
            .unwrap_or_else(|e| panic!("copying the demo data into {}: {e}", dir.display()));
    }
    demo::prepare(dir, opts).expect("demo data")
}

/// The demo's options with this kit's seed: `records` residents, a config listening on
/// `listen` (partners) and `metrics` (ops); no verifier page, an origin on any port.
pub fn options(records: usize, listen: SocketAddr, metrics: SocketAddr) -> DemoOptions {
    DemoOptions {
        records,
        listen,
        metrics_listen: metrics,
        seed: SEED,
        verify_listen: None,
        origin_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
    }
}

/// One seed for every test: tests of the same size share one template.
const SEED: u64 = 7;

type Templates = Mutex<HashMap<(usize, u64), Arc<tempfile::TempDir>>>;

/// The template for `records` and `seed`, made on first use. Tests that ask for the same
/// one at once wait for the first to make it.
fn template(records: usize, seed: u64) -> Arc<tempfile::TempDir> {
    static TEMPLATES: std::sync::OnceLock<Templates> = std::sync::OnceLock::new();
    let mut made = TEMPLATES
        .get_or_init(Templates::default)
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    made.entry((records, seed))
        .or_insert_with(|| {
            let dir = tempfile::tempdir().expect("tempdir");
            let any = SocketAddr::from(([127, 0, 0, 1], 0));
            let opts = DemoOptions {
                seed,
                ..options(records, any, any)
            };
            demo::prepare(dir.path(), &opts).expect("demo data");
            Arc::new(dir)
        })
        .clone()
}

fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), target)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(records: usize) -> DemoOptions {
        let any = SocketAddr::from(([127, 0, 0, 1], 0));
        options(records, any, any)
    }

    #[test]
    fn copies_share_the_template_and_not_their_files() {
        let (a, b) = (
            tempfile::tempdir().expect("a"),
            tempfile::tempdir().expect("b"),
        );
        let first = prepare(a.path(), &opts(120));
        let second = prepare(b.path(), &opts(120));
        assert_eq!(first.samples.len(), second.samples.len());
        let ca = |d: &Demo| std::fs::read(d.pki.ca_cert()).expect("ca");
        assert_eq!(ca(&first), ca(&second), "one template");
        std::fs::write(first.pki.ca_cert(), b"changed").expect("write");
        assert_ne!(ca(&first), ca(&second), "each its own copy");
        let other = tempfile::tempdir().expect("c");
        let third = prepare(other.path(), &opts(130));
        assert_ne!(ca(&third), ca(&second), "another size, another template");
    }
}
