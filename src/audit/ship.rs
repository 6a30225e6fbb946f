//! Shipping the audit trail off the machine: its log files and signed checkpoints copied to
//! an object store (the S3-compatible bucket the snapshot comes from, or a directory),
//! each file once, under `<prefix>/audit/` and `<prefix>/checkpoints/`. What was shipped
//! verifies there as on the pod: `permitgate audit verify` on a copy.
//!
//! The newest log file is the one the gateway appends to; it is shipped only when asked
//! (`open_too`: the final pass, once the gateway has stopped). Every other file is closed
//! and shipped as it is; one shipped earlier with another size is shipped again (a file
//! that was the newest when a final pass took it, and grew after a restart).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures_util::TryStreamExt;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use crate::replication::{S3Settings, SourceUrl};

#[derive(Debug, thiserror::Error)]
pub enum ShipError {
    #[error("cannot read {}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the destination {0} is not an s3:// or file:// address")]
    Destination(String),
    #[error("cannot open the destination {url}")]
    Open {
        url: String,
        source: object_store::Error,
    },
    #[error("cannot list what the destination holds")]
    List(#[source] object_store::Error),
    #[error("cannot write {name} to the destination")]
    Put {
        name: String,
        source: object_store::Error,
    },
}

/// Where the trail goes: a store and the prefix in it.
pub struct Destination {
    store: Arc<dyn ObjectStore>,
    prefix: String,
}

impl Destination {
    /// `s3://bucket/prefix` (credentials from `AWS_*`, as replication's) or
    /// `file:///path`.
    pub fn open(url: &str, s3: &S3Settings) -> Result<Destination, ShipError> {
        let opened = |source| ShipError::Open {
            url: url.to_owned(),
            source,
        };
        match url.parse::<SourceUrl>() {
            Ok(SourceUrl::S3 { bucket, prefix }) => Ok(Destination {
                store: crate::replication::s3_store(&bucket, s3).map_err(opened)?,
                prefix,
            }),
            Ok(SourceUrl::File(dir)) => {
                std::fs::create_dir_all(&dir).map_err(|source| ShipError::Read {
                    path: dir.clone(),
                    source,
                })?;
                let store =
                    object_store::local::LocalFileSystem::new_with_prefix(&dir).map_err(opened)?;
                Ok(Destination {
                    store: Arc::new(store),
                    prefix: String::new(),
                })
            }
            _ => Err(ShipError::Destination(url.to_owned())),
        }
    }
}

/// What one pass shipped.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Shipped {
    pub files: usize,
    pub bytes: u64,
    /// Files already there, with the same size.
    pub already: usize,
}

/// Ships the log files of `dir` (all but the newest, unless `open_too`) and the files of
/// `checkpoints` that the destination does not hold yet.
pub async fn ship(
    dir: &Path,
    checkpoints: Option<&Path>,
    to: &Destination,
    open_too: bool,
) -> Result<Shipped, ShipError> {
    let read = |path: &Path| {
        let path = path.to_owned();
        move |source| ShipError::Read { path, source }
    };
    let mut logs = super::verify::log_files(dir).map_err(read(dir))?;
    if !open_too {
        logs.pop();
    }
    let mut wanted: Vec<(String, PathBuf)> = logs
        .into_iter()
        .filter_map(|p| Some((format!("audit/{}", p.file_name()?.to_str()?), p)))
        .collect();
    // No checkpoint written yet: nothing of them to ship.
    if let Some(cdir) = checkpoints.filter(|d| d.exists()) {
        for entry in std::fs::read_dir(cdir).map_err(read(cdir))? {
            let path = entry.map_err(read(cdir))?.path();
            if let Some(name) = path.file_name().and_then(|n| n.to_str()) {
                if name.starts_with("checkpoint-") && name.ends_with(".json") {
                    wanted.push((format!("checkpoints/{name}"), path.clone()));
                }
            }
        }
    }
    let held = held(to).await?;
    let mut shipped = Shipped::default();
    for (name, path) in wanted {
        let size = std::fs::metadata(&path).map_err(read(&path))?.len();
        if held.get(&name) == Some(&size) {
            shipped.already += 1;
            continue;
        }
        let bytes = std::fs::read(&path).map_err(read(&path))?;
        let at = crate::replication::s3_path(&to.prefix, &name);
        (to.store.put(&at, PutPayload::from(bytes)).await).map_err(|source| ShipError::Put {
            name: name.clone(),
            source,
        })?;
        shipped.files += 1;
        shipped.bytes += size;
    }
    Ok(shipped)
}

/// What the destination holds under its prefix: name (`audit/…`, `checkpoints/…`) and size.
async fn held(to: &Destination) -> Result<HashMap<String, u64>, ShipError> {
    let prefix =
        (!to.prefix.is_empty()).then(|| object_store::path::Path::from(to.prefix.as_str()));
    let listed: Vec<_> = to
        .store
        .list(prefix.as_ref())
        .try_collect()
        .await
        .map_err(ShipError::List)?;
    let strip = if to.prefix.is_empty() {
        String::new()
    } else {
        format!("{}/", to.prefix)
    };
    Ok(listed
        .into_iter()
        .filter_map(|o| {
            let name = o.location.as_ref().strip_prefix(&strip)?.to_owned();
            Some((name, o.size))
        })
        .collect())
}
