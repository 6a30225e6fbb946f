//! Where a follower fetches a repository from. Only `file://` for now; HTTPS relays and
//! S3-compatible stores implement the same two calls.

use std::path::PathBuf;

use crate::snapshot::{MANIFEST_FILE, OBJECTS_DIR};

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("replication source {0:?} is not supported (use file:///path)")]
    Unsupported(String),
    #[error("fetching {what}: {source}")]
    Fetch {
        what: String,
        source: std::io::Error,
    },
}

pub enum Fetched {
    /// The manifest has the tag we already hold.
    NotModified,
    Manifest {
        bytes: Vec<u8>,
        tag: String,
    },
}

#[derive(Debug, Clone)]
pub enum Source {
    File(PathBuf),
}

impl Source {
    pub fn parse(url: &str) -> Result<Source, SourceError> {
        match url.strip_prefix("file://") {
            Some(path) if path.starts_with('/') => Ok(Source::File(PathBuf::from(path))),
            _ => Err(SourceError::Unsupported(url.to_owned())),
        }
    }

    /// The manifest, unless it still has tag `held` (a content tag for files, the ETag
    /// for HTTP sources), so an idle poll transfers nothing new.
    pub async fn manifest(&self, held: Option<&str>) -> Result<Fetched, SourceError> {
        match self {
            Source::File(root) => {
                let path = root.join(MANIFEST_FILE);
                let bytes = tokio::fs::read(&path)
                    .await
                    .map_err(|source| SourceError::Fetch {
                        what: path.display().to_string(),
                        source,
                    })?;
                let tag = blake3::hash(&bytes).to_hex()[..32].to_owned();
                if held == Some(tag.as_str()) {
                    return Ok(Fetched::NotModified);
                }
                Ok(Fetched::Manifest { bytes, tag })
            }
        }
    }

    pub async fn object(&self, hash: &str) -> Result<Vec<u8>, SourceError> {
        match self {
            Source::File(root) => {
                let path = root.join(OBJECTS_DIR).join(hash);
                tokio::fs::read(&path)
                    .await
                    .map_err(|source| SourceError::Fetch {
                        what: path.display().to_string(),
                        source,
                    })
            }
        }
    }
}
