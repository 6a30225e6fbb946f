//! Test harness: a gateway on an ephemeral loopback port with a fresh rcgen PKI and demo
//! data, and mTLS clients for named partners. Everything real: sockets, TLS, certificates.
#![allow(dead_code)]

pub mod config_edit;
pub mod process;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, RootCertStore};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use permitgate::clock::SystemClock;
use permitgate::config::Config;

use permitgate::demo::{self, Demo, DemoOptions};
use permitgate::server::{Gateway, Running};
use permitgate::tls::{crypto_provider, load_certs, load_key};

pub struct TestGateway {
    pub demo: Demo,
    /// Where this gateway writes its audit trail.
    pub audit_dir: PathBuf,
    /// The config file this gateway reads (and re-reads on reload).
    pub config_path: PathBuf,
    pub gateway: Arc<Gateway>,
    pub running: Running,
    pub dir: tempfile::TempDir,
}

pub struct Options {
    pub records: usize,
    pub load_snapshot: bool,
    /// TOML keys merged into the generated config's `[server]` table.
    pub server_extra: &'static str,
    pub cache: bool,
    /// Follow the demo repo (as the origin) through `[replication]` into `state/`.
    pub replication: bool,
    /// Replication state directory; a fresh one under the test's directory when `None`.
    pub state_dir: Option<PathBuf>,
    /// Reuse demo data (keys, PKI, repo) from here instead of a fresh directory.
    pub demo_dir: Option<PathBuf>,
    /// TOML keys merged into the generated `[replication]` table.
    pub replication_extra: String,
    /// Source to follow instead of the demo repo (e.g. another gateway's relay URL); the
    /// demo CA and the `relay` partner certificate are used for https.
    pub replication_source: Option<String>,
    pub poll_interval_ms: u64,
    pub clock: Option<Arc<permitgate::clock::ManualClock>>,
    /// Edits of the generated config's tables, in order (config_edit).
    pub edit_config: Vec<config_edit::Edit>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            records: 300,
            load_snapshot: true,
            server_extra: "",
            cache: false,
            replication: false,
            state_dir: None,
            demo_dir: None,
            replication_extra: String::new(),
            replication_source: None,
            poll_interval_ms: 100,
            clock: None,
            edit_config: Vec::new(),
        }
    }
}

impl TestGateway {
    pub async fn start() -> TestGateway {
        Self::start_with(Options::default()).await
    }

    /// A gateway with `server_extra` (TOML keys) in its `[server]` table.
    pub async fn with_server(server_extra: &'static str) -> TestGateway {
        Self::start_with(Options {
            server_extra,
            ..Options::default()
        })
        .await
    }

    pub async fn start_with(opts: Options) -> TestGateway {
        let dir = tempfile::tempdir().expect("tempdir");
        let any: SocketAddr = "127.0.0.1:0".parse().expect("addr");
        let demo = demo::prepare(
            opts.demo_dir.as_deref().unwrap_or(dir.path()),
            &DemoOptions {
                records: opts.records,
                listen: any,
                metrics_listen: any,
                seed: 7,
                verify_listen: None,
                origin_listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
            },
        )
        .expect("demo data");
        let text = std::fs::read_to_string(&demo.config).expect("config");
        let mut edits = vec![config_edit::merge("server", opts.server_extra)];
        // Queue-delay shedding reacts to the machine as a whole: on a CI machine running
        // many tests at once it would shed requests tests expect answered. Off unless asked.
        if !opts.server_extra.contains("max_queue_delay_ms") {
            edits.push(config_edit::set("server.max_queue_delay_ms", 0));
        }
        // Every test client connects from 127.0.0.1: a partner network, so that tests
        // opening many connections at once are not held to one stranger's budget. The
        // door's own tests come from other loopback addresses (127.0.0.2 and up).
        edits.push(config_edit::merge(
            "unauthenticated",
            r#"partner_networks = ["127.0.0.1/32"]"#,
        ));
        if opts.replication {
            let state = opts
                .state_dir
                .clone()
                .unwrap_or_else(|| dir.path().join("state"));
            let source = opts
                .replication_source
                .clone()
                .unwrap_or_else(|| format!("file://{}", demo.repo().display()));
            let path = |p: PathBuf| p.display().to_string();
            edits.extend([
                config_edit::set("replication.source", source),
                config_edit::set("replication.state_dir", path(state)),
                config_edit::set(
                    "replication.poll_interval_ms",
                    i64::try_from(opts.poll_interval_ms).expect("interval"),
                ),
                config_edit::set("replication.ca", path(demo.pki.ca_cert())),
                config_edit::set(
                    "replication.client_cert",
                    path(demo.pki.partner_cert("relay")),
                ),
                config_edit::set(
                    "replication.client_key",
                    path(demo.pki.partner_key("relay")),
                ),
                config_edit::merge("replication", &opts.replication_extra),
            ]);
        }
        if opts.cache {
            edits.push(config_edit::set("cache.enabled", true));
            edits.push(config_edit::set("cache.max_entries", 1000));
        }
        edits.extend(opts.edit_config);
        // Written out, so that a reload reads what this gateway started with.
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let config_path = demo.config.with_file_name(format!("gateway-test-{n}.toml"));
        // Each gateway its own audit trail, even when demo data is shared.
        edits.push(config_edit::set(
            "audit.dir",
            dir.path().join(format!("audit-{n}")).display().to_string(),
        ));
        // Its own copy of the partner registry, which its edits change.
        let registry = demo.pki.registry();
        let registry_text = std::fs::read_to_string(&registry).expect("registry");
        let registry_copy = demo
            .config
            .with_file_name(format!("partners-test-{n}.toml"));
        edits.push(config_edit::set(
            "partners_file",
            registry_copy.display().to_string(),
        ));
        let (text, registry_text) =
            config_edit::apply_with_registry(&text, Some(&registry_text), edits);
        std::fs::write(&registry_copy, registry_text.expect("registry")).expect("write registry");
        std::fs::write(&config_path, &text).expect("write config");
        let config = Config::parse(&text, &config_path).expect("config parses");
        let clock: Arc<dyn permitgate::clock::Clock> = match &opts.clock {
            Some(c) => c.clone(),
            None => Arc::new(SystemClock),
        };
        let gateway = Arc::new(Gateway::from_config(config, clock).expect("gateway"));
        if opts.load_snapshot {
            gateway.load_snapshot().expect("snapshot loads");
        }
        let running = gateway.bind().await.expect("bind");
        TestGateway {
            demo,
            audit_dir: dir.path().join(format!("audit-{n}")),
            config_path,
            gateway,
            running,
            dir,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.running.addr
    }

    /// Makes the demo CA's CRL `pki/partners.crl` listing `revoked` (number 1) and names it
    /// in this gateway's `tls.crls`; the gateway loads it at its next reload.
    pub fn use_partner_crl(&self, revoked: &[&Path]) -> PathBuf {
        let crl = self.demo.pki.dir.join("partners.crl");
        permitgate::demo::pki::revoke(&self.demo.pki, revoked, 1, &crl).expect("crl");
        config_edit::edit_file(
            &self.config_path,
            vec![config_edit::set(
                "tls.crls",
                config_edit::value("[\"pki/partners.crl\"]"),
            )],
        );
        crl
    }

    /// A client certificate from the demo CA for `id` (a partner the test added to the
    /// config), where [`TestGateway::client`] and the other helpers look for it.
    pub fn issue_partner(&self, id: &str) {
        let (cert, key) = self.cert_paths(id);
        permitgate::demo::pki::issue_client(
            &self.demo.pki,
            Some(id),
            permitgate::demo::pki::Usage::ClientAuth,
            &cert,
            &key,
        )
        .expect("issue a partner certificate");
    }

    pub fn cert_paths(&self, partner: &str) -> (PathBuf, PathBuf) {
        (
            self.demo.pki.partner_cert(partner),
            self.demo.pki.partner_key(partner),
        )
    }

    pub async fn client(&self, partner: &str) -> Client {
        let (c, k) = self.cert_paths(partner);
        Client::connect(self.addr(), &self.demo.pki.ca_cert(), Some((&c, &k)))
            .await
            .expect("client connects")
    }

    pub async fn metrics(&self) -> String {
        let addr = self.running.metrics_addr.expect("metrics listener");
        let stream = TcpStream::connect(addr).await.expect("connect metrics");
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .expect("handshake");
        tokio::spawn(conn);
        let resp = send
            .send_request(
                Request::get("/metrics")
                    .header("host", "metrics")
                    .body(Full::new(Bytes::new()))
                    .expect("request"),
            )
            .await
            .expect("metrics response");
        let body = resp.into_body().collect().await.expect("body").to_bytes();
        String::from_utf8(body.to_vec()).expect("utf8")
    }

    /// Polls `/metrics` until `series` has `want` (counters are bumped by the server task
    /// after the client has seen the outcome), for at most about two seconds.
    pub async fn wait_metric(&self, series: &str, want: f64) -> String {
        self.wait_metric_within(series, want, std::time::Duration::from_secs(2))
            .await
    }

    /// [`Self::wait_metric`] for something that takes longer than a poll or two.
    pub async fn wait_metric_within(
        &self,
        series: &str,
        want: f64,
        within: std::time::Duration,
    ) -> String {
        let deadline = std::time::Instant::now() + within;
        loop {
            let text = self.metrics().await;
            if metric_value(&text, series) == want {
                return text;
            }
            if std::time::Instant::now() > deadline {
                panic!("{series} never reached {want}:\n{text}");
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// Publishes change events (JSON Lines) into the demo repo, the origin of followers;
    /// the manifest expires in an hour.
    pub fn publish_changes(
        &self,
        events: &str,
        max_deltas: usize,
    ) -> permitgate::publish::PublishReport {
        let path = self.dir.path().join("changes.jsonl");
        std::fs::write(&path, events).expect("write changes");
        permitgate::publish::publish_changes(
            &path,
            &self.demo.repo(),
            &permitgate::key_files::load_signing_key(&self.demo.publisher_key()).expect("key"),
            &permitgate::key_files::HashKey::load(&self.demo.hash_key()).expect("hash key"),
            &permitgate::publish::PublishOptions {
                version: None,
                expires_in: time::Duration::hours(1),
                now: time::OffsetDateTime::now_utc(),
            },
            max_deltas,
        )
        .expect("publish changes")
    }

    pub fn samples(&self) -> &[demo::Sample] {
        &self.demo.samples
    }

    pub fn sample(&self, name: &str) -> &demo::Sample {
        sample(&self.demo, name)
    }

    /// Connects with `identity` and tries one request; refused handshakes surface as an
    /// error on either step (TLS 1.3 reports a rejected client certificate after the
    /// client thinks it is done).
    pub async fn attempt(&self, identity: Option<(&Path, &Path)>) -> Result<u16, String> {
        let mut c = Client::connect(self.addr(), &self.demo.pki.ca_cert(), identity)
            .await
            .map_err(|e| e.to_string())?;
        c.try_request(Method::GET, "/healthz", None, Bytes::new())
            .await
            .map(|r| r.status.as_u16())
            .map_err(|e| e.to_string())
    }

    /// The certificate a new handshake (as `bank`) is shown.
    pub async fn server_certificate(&self) -> rustls::pki_types::CertificateDer<'static> {
        let tls = self.raw_tls("bank").await.expect("connect");
        let certs = tls
            .get_ref()
            .1
            .peer_certificates()
            .expect("server certificate");
        certs[0].clone().into_owned()
    }

    /// A bare mTLS stream as `partner` (ALPN http/1.1), for writing requests byte by byte.
    pub async fn raw_tls(
        &self,
        partner: &str,
    ) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
        self.tls_with_alpn(partner, b"http/1.1").await
    }

    /// A bare mTLS stream as `partner` that negotiated HTTP/2 (for the h2 crate).
    pub async fn h2_tls(&self, partner: &str) -> tokio_rustls::client::TlsStream<TcpStream> {
        let tls = self.tls_with_alpn(partner, b"h2").await.expect("handshake");
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
        tls
    }

    async fn tls_with_alpn(
        &self,
        partner: &str,
        alpn: &[u8],
    ) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
        let (c, k) = self.cert_paths(partner);
        let mut cfg = (*client_config(&self.demo.pki.ca_cert(), Some((&c, &k)))).clone();
        cfg.alpn_protocols = vec![alpn.to_vec()];
        let tcp = TcpStream::connect(self.addr()).await?;
        let name = ServerName::try_from("localhost").map_err(std::io::Error::other)?;
        TlsConnector::from(Arc::new(cfg)).connect(name, tcp).await
    }

    /// `GET /v1/keys` as a partner, written to a file for the offline tools; also parsed.
    pub async fn keys_file(&self) -> (PathBuf, permitgate::keyring::Keyring) {
        let r = self.client("rail-gate").await.get("/v1/keys").await;
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        let path = self.dir.path().join("keys.json");
        std::fs::write(&path, &r.body).expect("write keys");
        let ring = permitgate::keyring::Keyring::from_json(&r.body).expect("keys parse");
        (path, ring)
    }
}

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

/// The demo sample called `name`.
pub fn sample<'a>(demo: &'a Demo, name: &str) -> &'a demo::Sample {
    demo.samples
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no sample {name}"))
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

/// Value of one sample line of `/metrics` text, by exact series name with labels.
pub fn metric_value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

pub fn client_config(ca: &Path, identity: Option<(&Path, &Path)>) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    for c in load_certs(ca).expect("ca") {
        roots.add(c).expect("add root");
    }
    let builder = ClientConfig::builder_with_provider(crypto_provider())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots);
    let cfg = match identity {
        Some((cert, key)) => builder
            .with_client_auth_cert(load_certs(cert).expect("cert"), load_key(key).expect("key"))
            .expect("client auth"),
        None => builder.with_no_client_auth(),
    };
    Arc::new(cfg)
}

pub struct Response {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Response {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn content_type(&self) -> &str {
        self.headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// Asserts a 200 answer (`what` and the body say which, when not).
    pub fn assert_ok(&self, what: impl std::fmt::Display) {
        assert_eq!(
            self.status,
            200,
            "{what}: {}",
            String::from_utf8_lossy(&self.body)
        );
    }

    /// Asserts a problem document of the given slug and returns it.
    pub fn problem(&self, status: u16, slug: &str) -> Value {
        assert_eq!(
            self.status.as_u16(),
            status,
            "body: {}",
            String::from_utf8_lossy(&self.body)
        );
        assert_eq!(self.content_type(), "application/problem+json");
        let v = self.json();
        assert_eq!(v["type"], format!("urn:permitgate:problem:{slug}"), "{v}");
        assert_eq!(v["status"], status);
        assert!(v["title"].as_str().is_some_and(|t| !t.is_empty()));
        v
    }
}

/// One HTTP/1.1 keep-alive connection over mTLS.
pub struct Client {
    send: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
}

impl Client {
    pub async fn connect(
        addr: SocketAddr,
        ca: &Path,
        identity: Option<(&Path, &Path)>,
    ) -> Result<Client, Box<dyn std::error::Error + Send + Sync>> {
        let mut cfg = (*client_config(ca, identity)).clone();
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        let tcp = TcpStream::connect(addr).await?;
        let tls = TlsConnector::from(Arc::new(cfg))
            .connect(ServerName::try_from("localhost")?, tcp)
            .await?;
        let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
        tokio::spawn(conn);
        Ok(Client { send })
    }

    pub async fn try_request(
        &mut self,
        method: Method,
        path: &str,
        content_type: Option<&str>,
        body: impl Into<Bytes>,
    ) -> Result<Response, hyper::Error> {
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header("host", "localhost");
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        let req = req.body(Full::new(body.into())).expect("request");
        self.try_request_with(req).await
    }

    /// Sends a request built by the caller (custom headers).
    pub async fn try_request_with(
        &mut self,
        req: Request<Full<Bytes>>,
    ) -> Result<Response, hyper::Error> {
        // The connection task takes the previous exchange's end on its own thread; a
        // request sent before it has is refused with "connection was not ready".
        self.send.ready().await?;
        let resp = self.send.send_request(req).await?;
        let (parts, body) = resp.into_parts();
        let body = body.collect().await?.to_bytes();
        Ok(Response {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }

    pub async fn post_json(&mut self, path: &str, body: &Value) -> Response {
        self.try_request(
            Method::POST,
            path,
            Some("application/json"),
            serde_json::to_vec(body).expect("json"),
        )
        .await
        .expect("response")
    }

    pub async fn post_raw(
        &mut self,
        path: &str,
        content_type: Option<&str>,
        body: impl Into<Bytes>,
    ) -> Response {
        self.try_request(Method::POST, path, content_type, body)
            .await
            .expect("response")
    }

    pub async fn get(&mut self, path: &str) -> Response {
        self.try_request(Method::GET, path, None, Bytes::new())
            .await
            .expect("response")
    }
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

/// The origin (the authority's API) of a test gateway's config, served in this process
/// on an ephemeral loopback port; stopped on drop.
pub struct TestOrigin {
    pub addr: SocketAddr,
    pub pki: permitgate::demo::PkiLayout,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TestOrigin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TestGateway {
    /// Serves the `[origin]` of this gateway's config with `clock`.
    pub async fn start_origin(&self, clock: Arc<dyn permitgate::clock::Clock>) -> TestOrigin {
        let config = Config::load(&self.config_path).expect("config");
        let service = permitgate::origin::server::open(&config, clock).expect("origin opens");
        let listener = service.bind().await.expect("bind origin");
        let addr = listener.local_addr().expect("addr");
        let task = tokio::spawn(async move { service.serve(listener).await });
        TestOrigin {
            addr,
            pki: self.demo.pki.clone(),
            task,
        }
    }
}

impl TestOrigin {
    /// An mTLS connection as the demo's authority caller `id`.
    pub async fn caller(&self, id: &str) -> Client {
        Client::connect(
            self.addr,
            &self.pki.ca_cert(),
            Some((&self.pki.caller_cert(id), &self.pki.caller_key(id))),
        )
        .await
        .expect("caller connects")
    }
}

/// `POST` of JSON with an `Idempotency-Key` (`None`: without one).
pub async fn post_idempotent(
    client: &mut Client,
    path: &str,
    key: Option<&str>,
    body: &Value,
) -> Response {
    let mut req = Request::builder()
        .method(Method::POST)
        .uri(path)
        .header("host", "localhost")
        .header("content-type", "application/json");
    if let Some(k) = key {
        req = req.header("idempotency-key", k);
    }
    let req = req
        .body(Full::new(Bytes::from(
            serde_json::to_vec(body).expect("json"),
        )))
        .expect("request");
    client.try_request_with(req).await.expect("response")
}
