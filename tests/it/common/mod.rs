//! The integration tests' harness: the shared kit (tests/kit: gateways on loopback with
//! the demo's data, mTLS clients, the config editor) and what only these tests use
//! (requests left hanging, the `permitgate` binary, optional tools, QR codes).
#![allow(dead_code)]

pub mod process;

use std::path::{Path, PathBuf};

use http::Request;
use serde_json::Value;

pub use permitgate_testkit::client::{client_config, post_idempotent, Client, Response};
pub use permitgate_testkit::config_edit;
pub use permitgate_testkit::gateway::{metric_value, sample, Options, TestGateway};

/// Changes one base64 character of the certificate's signature in a PEM file (the
/// second-to-last line of the body holds its tail): the certificate still parses but no
/// longer verifies.
pub fn alter_certificate_signature(path: &Path) {
    let pem = std::fs::read_to_string(path).expect("read certificate");
    let mut lines: Vec<String> = pem.lines().map(str::to_owned).collect();
    let at = lines.len() - 3;
    let mut chars: Vec<char> = lines[at].chars().collect();
    chars[10] = if chars[10] == 'A' { 'B' } else { 'A' };
    lines[at] = chars.into_iter().collect();
    std::fs::write(path, lines.join("\n") + "\n").expect("alter certificate");
}

/// Leaves a request hanging: its head and all of `body` but the last byte, so that the
/// gateway has admitted it and waits. [`finish_request`] sends the rest.
pub async fn start_request(
    s: &mut (impl tokio::io::AsyncWriteExt + Unpin),
    path: &str,
    body: &str,
) {
    let head = format!(
        "POST {path} HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await.expect("head");
    s.write_all(&body.as_bytes()[..body.len() - 1])
        .await
        .expect("body");
    s.flush().await.expect("flush");
}

/// A POST head for an HTTP/2 stream (`h2` crate); its body follows separately, or never.
pub fn h2_post(path: &str) -> Request<()> {
    Request::builder()
        .method("POST")
        .uri(format!("https://localhost{path}"))
        .header("content-type", "application/json")
        .body(())
        .expect("request")
}

/// Sends the last byte of a [`start_request`] and returns the start of the answer.
pub async fn finish_request(
    s: &mut (impl tokio::io::AsyncWriteExt + tokio::io::AsyncReadExt + Unpin),
    body: &str,
) -> String {
    s.write_all(&body.as_bytes()[body.len() - 1..])
        .await
        .expect("last byte");
    read_answer(s).await
}

/// The first bytes the server sends (at most 8 KiB), within 5 s.
pub async fn read_answer(s: &mut (impl tokio::io::AsyncReadExt + Unpin)) -> String {
    let mut buf = vec![0u8; 8192];
    let n = tokio::time::timeout(std::time::Duration::from_secs(5), s.read(&mut buf))
        .await
        .expect("answer in time")
        .expect("read");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// Sends `body` until the answer has `status` (at most 100 tries, 20 ms apart).
pub async fn until_status(
    c: &mut Client,
    path: &str,
    body: &Value,
    status: u16,
) -> Option<Response> {
    for _ in 0..100 {
        let r = c.post_json(path, body).await;
        if r.status == status {
            return Some(r);
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    None
}

/// Reads until the server closes the connection (or 5 s pass, which fails the test).
pub async fn read_until_closed(s: &mut (impl tokio::io::AsyncReadExt + Unpin)) -> String {
    let mut out = Vec::new();
    let r = tokio::time::timeout(std::time::Duration::from_secs(5), s.read_to_end(&mut out)).await;
    assert!(r.is_ok(), "the server kept the connection open");
    String::from_utf8_lossy(&out).into_owned()
}

/// The path of an optional tool a test needs (Debian's prometheus, poppler-utils,
/// schemathesis from pip...), or `None`: the test then says SKIPPED, unless `required_by`
/// is set (CI sets it, and there a missing tool fails the test).
pub fn optional_tool(name: &str, required_by: &str, install: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        assert!(
            std::env::var_os(required_by).is_none(),
            "{name} is required here ({required_by}): {install}"
        );
        eprintln!("SKIPPED: {name} not installed ({install})");
    }
    found
}

/// The default font (Debian's fonts-wqy-microhei) and poppler's pdftotext and pdffonts
/// (poppler-utils), which rendering and its checks need: `.ci/run` installs them and sets
/// PERMITGATE_REQUIRE_PRINTING=1, where their absence fails; elsewhere the check is skipped.
pub fn printing_unavailable() -> bool {
    const REQUIRED_BY: &str = "PERMITGATE_REQUIRE_PRINTING";
    let font = std::path::Path::new(permitgate::printable::DEFAULT_FONT).exists();
    if !font {
        assert!(
            std::env::var_os(REQUIRED_BY).is_none(),
            "apt-get install fonts-wqy-microhei"
        );
        eprintln!("SKIPPED: rendering needs fonts-wqy-microhei");
    }
    let poppler = ["pdftotext", "pdffonts", "pdftoppm"]
        .map(|t| optional_tool(t, REQUIRED_BY, "apt-get install poppler-utils"));
    !font || poppler.iter().any(Option::is_none)
}

/// Runs the `permitgate` binary (logging warnings only) and returns what it did.
pub fn permitgate(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_permitgate"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run permitgate")
}

/// Runs the `permitgate` binary with its standard output closed before it writes, as
/// `permitgate … | head -0` would, and asserts it neither panicked nor failed for it.
pub fn permitgate_into_a_closed_pipe(args: &[&str]) {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_permitgate"))
        .args(args)
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn permitgate");
    drop(child.stdout.take());
    let out = child.wait_with_output().expect("wait");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{args:?}: {err}");
    assert_ne!(out.status.code(), Some(101), "{args:?}: {err}");
}

/// Asserts that a command succeeded, showing its standard error when it did not.
pub fn assert_success(out: &std::process::Output) {
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The text of the one QR code in a PNG image (8-bit grey, ours; or RGB, poppler's).
pub fn decode_qr_png(png_bytes: &[u8]) -> String {
    let decoder = png::Decoder::new(std::io::Cursor::new(png_bytes));
    let mut reader = decoder.read_info().expect("png header");
    let mut buf = vec![0; reader.output_buffer_size().expect("size")];
    let info = reader.next_frame(&mut buf).expect("png frame");
    assert_eq!(info.bit_depth, png::BitDepth::Eight);
    let channels = match info.color_type {
        png::ColorType::Grayscale => 1,
        png::ColorType::Rgb => 3,
        other => panic!("unexpected PNG colour type {other:?}"),
    };
    let (w, h) = (info.width as usize, info.height as usize);
    // Grey images have one channel; in RGB ones of black and white, any channel will do.
    let mut img =
        rqrr::PreparedImage::prepare_from_greyscale(w, h, |x, y| buf[(y * w + x) * channels]);
    let grids = img.detect_grids();
    assert_eq!(grids.len(), 1, "one QR code");
    grids[0].decode().expect("QR decodes").1
}

/// Asserts that every key in `expect` (recursively) has the same value in `actual`.
pub fn assert_subset(actual: &Value, expect: &Value, ctx: &str) {
    match expect {
        Value::Object(m) => {
            for (k, v) in m {
                assert_subset(&actual[k], v, &format!("{ctx}.{k}"));
            }
        }
        _ => assert_eq!(actual, expect, "at {ctx}"),
    }
}
