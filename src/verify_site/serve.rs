//! The demo's plain-HTTP server for the verifier page. For a workstation only: a real
//! deployment puts the files `permitgate verify-site` writes on the authority's web server.

use std::sync::Arc;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;

use super::{SiteFile, PAGE_PATH};

/// The page allows its own files and nothing else (the page repeats it in a meta tag for
/// servers that cannot set headers).
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
                   connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; \
                   frame-ancestors 'none'";

/// Serves the site on `listener` from a thread of its own until the process ends (bound by
/// the caller: the demo writes the page's address into its config first), and the
/// revocation list at `revocations` as it is at each request (the origin renews it).
pub fn serve(
    listener: std::net::TcpListener,
    files: Vec<SiteFile>,
    revocations: Option<std::path::PathBuf>,
) -> std::io::Result<()> {
    listener.set_nonblocking(true)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let files = Arc::new(files);
    let revocations = Arc::new(revocations);
    std::thread::Builder::new()
        .name("verify-page".into())
        .spawn(move || {
            runtime.block_on(async move {
                let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                    return;
                };
                let answer = move |req: &Request<Incoming>| {
                    respond(
                        &files,
                        revocations.as_deref(),
                        req.method(),
                        req.uri().path(),
                    )
                };
                crate::plain_http::serve(listener, answer, None).await;
            })
        })?;
    Ok(())
}

fn respond(
    files: &[SiteFile],
    revocations: Option<&std::path::Path>,
    method: &Method,
    path: &str,
) -> Response<Full<Bytes>> {
    let text = |status, body: &'static str| {
        let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
        *r.status_mut() = status;
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        r
    };
    if method != Method::GET && method != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "GET only\n");
    }
    if path == "/" || path == PAGE_PATH.trim_end_matches('/') {
        // Browsers keep the fragment (the receipt) across a redirect.
        let mut r = text(StatusCode::PERMANENT_REDIRECT, "see /verify/\n");
        r.headers_mut()
            .insert(header::LOCATION, HeaderValue::from_static(PAGE_PATH));
        return r;
    }
    let Some(name) = path.strip_prefix(PAGE_PATH) else {
        return text(StatusCode::NOT_FOUND, "not found\n");
    };
    let name = if name.is_empty() { "index.html" } else { name };
    let live = revocations
        .filter(|_| name == super::REVOCATIONS_FILE)
        .and_then(|p| std::fs::read(p).ok())
        .map(|bytes| SiteFile {
            name: super::REVOCATIONS_FILE,
            content_type: "application/octet-stream",
            bytes,
        });
    let Some(file) = live
        .as_ref()
        .or_else(|| files.iter().find(|f| f.name == name))
    else {
        return text(StatusCode::NOT_FOUND, "not found\n");
    };
    let body = if method == Method::HEAD {
        Bytes::new()
    } else {
        Bytes::from(file.bytes.clone())
    };
    let mut r = Response::new(Full::new(body));
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(file.content_type),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn site() -> Vec<SiteFile> {
        super::super::files(br#"{"keys": []}"#)
    }

    #[test]
    fn serves_the_page_its_files_and_nothing_else() {
        let files = site();
        let get = |path: &str| respond(&files, None, &Method::GET, path);
        let page = get("/verify/");
        assert_eq!(page.status(), StatusCode::OK);
        assert_eq!(
            page.headers()[header::CONTENT_TYPE],
            "text/html; charset=utf-8"
        );
        assert!(page.headers()[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .is_ok_and(|c| c.starts_with("default-src 'none'")));
        for (path, ctype) in [
            ("/verify/index.html", "text/html; charset=utf-8"),
            ("/verify/verify.js", "text/javascript; charset=utf-8"),
            ("/verify/verify.css", "text/css; charset=utf-8"),
            ("/verify/keys.json", "application/json"),
        ] {
            let r = get(path);
            assert_eq!(
                (r.status(), &r.headers()[header::CONTENT_TYPE]),
                (StatusCode::OK, &HeaderValue::from_static(ctype)),
                "{path}"
            );
        }
        for path in ["/verify", "/"] {
            let r = get(path);
            assert_eq!(r.status(), StatusCode::PERMANENT_REDIRECT);
            assert_eq!(r.headers()[header::LOCATION], PAGE_PATH);
        }
        for path in [
            "/verify/../Cargo.toml",
            "/verify/other.js",
            "/keys.json",
            "/verify//keys.json",
        ] {
            assert_eq!(get(path).status(), StatusCode::NOT_FOUND, "{path}");
        }
        let post = respond(&files, None, &Method::POST, "/verify/");
        assert_eq!(post.status(), StatusCode::METHOD_NOT_ALLOWED);
    }

    /// The CSP the demo sends is the one the page carries in its meta tag, plus what only a
    /// header can say.
    #[test]
    fn the_header_and_the_meta_tag_agree() {
        let page = include_str!("page/index.html");
        let meta = page
            .split("http-equiv=\"Content-Security-Policy\" content=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .expect("the page's CSP meta tag");
        assert_eq!(CSP.replace("; frame-ancestors 'none'", ""), meta);
    }
}
