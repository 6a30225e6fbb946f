//! A gateway in this process on ephemeral loopback ports, with the demo's data (copied
//! from the process's template, [`crate::demo_data`]) and a config of its own written
//! beside it; mTLS clients for its partners, its metrics, its origin.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use permitgate::clock::SystemClock;
use permitgate::config::Config;
use permitgate::demo::{self, Demo};
use permitgate::server::{Gateway, Running};

use crate::client::{client_config, Client};
use crate::config_edit;

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
        let demo = crate::demo_data::prepare(
            opts.demo_dir.as_deref().unwrap_or(dir.path()),
            &crate::demo_data::options(opts.records, any, any),
        );
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
        // With its own copy of the partner registry, which its edits change.
        config_edit::write_copy(&demo.config, &config_path, edits).expect("config edits");
        let text = std::fs::read_to_string(&config_path).expect("config");
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
        self.wait_metric_until(series, &format!("reached {want}"), |v| v == want, within)
            .await
    }

    /// Polls `/metrics` until `series` is at least `least` (a counter that keeps
    /// counting, such as a refusal repeated at every poll), for at most about two seconds.
    pub async fn wait_metric_at_least(&self, series: &str, least: f64) -> String {
        let within = std::time::Duration::from_secs(2);
        self.wait_metric_until(series, &format!("reached {least}"), |v| v >= least, within)
            .await
    }

    async fn wait_metric_until(
        &self,
        series: &str,
        what: &str,
        done: impl Fn(f64) -> bool,
        within: std::time::Duration,
    ) -> String {
        let deadline = std::time::Instant::now() + within;
        loop {
            let text = self.metrics().await;
            if done(metric_value(&text, series)) {
                return text;
            }
            if std::time::Instant::now() > deadline {
                panic!("{series} never {what}:\n{text}");
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

/// The demo sample called `name`.
pub fn sample<'a>(demo: &'a Demo, name: &str) -> &'a demo::Sample {
    demo.samples
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no sample {name}"))
}

/// Value of one sample line of `/metrics` text, by exact series name with labels.
pub fn metric_value(text: &str, series: &str) -> f64 {
    metric(text, series).unwrap_or(0.0)
}

/// One sample line of `/metrics` text, by exact series name with labels; `None` when the
/// series is not exported.
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
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
