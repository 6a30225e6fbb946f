//! The verifier page: static HTML, CSS and JavaScript that check a receipt or a temporary
//! permit in the reader's browser, against the published keys placed beside it
//! (`keys.json`, what `GET /v1/keys` serves). No server sees what is checked: the receipt
//! travels in the URL's fragment, and the page's Content-Security-Policy lets it load only
//! its own files. docs/verifier.md describes it.
//!
//! The files are compiled in: `permitgate verify-site` writes them for the authority's web
//! server or CDN, and `permitgate demo` serves them ([`serve`]).

use std::path::{Path, PathBuf};

#[cfg(feature = "tools")]
mod serve;
#[cfg(feature = "tools")]
pub use serve::serve;

/// Where the demo serves the page; a receipt's QR code is `<verify_url>#<receipt>`.
pub const PAGE_PATH: &str = "/verify/";

/// One file of the site.
#[derive(Debug, Clone)]
pub struct SiteFile {
    /// Relative to the page's directory.
    pub name: &'static str,
    pub content_type: &'static str,
    pub bytes: Vec<u8>,
}

const PAGE: &[(&str, &str, &str)] = &[
    (
        "index.html",
        "text/html; charset=utf-8",
        include_str!("page/index.html"),
    ),
    (
        "verify.js",
        "text/javascript; charset=utf-8",
        include_str!("page/verify.js"),
    ),
    (
        "verify.css",
        "text/css; charset=utf-8",
        include_str!("page/verify.css"),
    ),
];

/// The origin's revocation list of temporary permits, beside keys.json when published.
pub const REVOCATIONS_FILE: &str = crate::revocation_list::FILE;

/// The page's files with `keys_json` beside them.
pub fn files(keys_json: &[u8]) -> Vec<SiteFile> {
    PAGE.iter()
        .map(|(name, content_type, text)| SiteFile {
            name,
            content_type,
            bytes: text.as_bytes().to_vec(),
        })
        .chain(std::iter::once(SiteFile {
            name: "keys.json",
            content_type: "application/json",
            bytes: keys_json.to_vec(),
        }))
        .collect()
}

#[derive(Debug, thiserror::Error)]
#[error("cannot write {}", path.display())]
pub struct WriteError {
    path: PathBuf,
    #[source]
    source: std::io::Error,
}

/// Writes the site into `dir` (created if missing), with the revocation list when given;
/// returns the paths written.
pub fn write(
    dir: &Path,
    keys_json: &[u8],
    revocations: Option<&[u8]>,
) -> Result<Vec<PathBuf>, WriteError> {
    let err = |path: &Path| {
        let path = path.to_owned();
        move |source| WriteError { path, source }
    };
    std::fs::create_dir_all(dir).map_err(err(dir))?;
    files(keys_json)
        .into_iter()
        .chain(revocations.map(|bytes| SiteFile {
            name: REVOCATIONS_FILE,
            content_type: "application/octet-stream",
            bytes: bytes.to_vec(),
        }))
        .map(|f| {
            let path = dir.join(f.name);
            std::fs::write(&path, &f.bytes).map_err(err(&path))?;
            Ok(path)
        })
        .collect()
}
