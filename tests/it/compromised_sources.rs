//! Replication inputs from a compromised repository or relay: a relay serves nothing its
//! verified manifest does not name, never through a link, never at another size; a
//! follower reads no manifest past its bound and no object past the size the signed
//! manifest names, whatever a directory or a relay offers.

use std::convert::Infallible;
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::Value;

use crate::common::{Options, TestGateway};
use permitgate::replication::RefusalReason;
use permitgate::snapshot::MAX_MANIFEST_BYTES;

fn manifest(repo: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(repo.join("manifest.json")).expect("manifest"))
        .expect("json")
}

/// An origin relaying its repository, where someone with write access to `objects/` has
/// put links (to the receipt key, to `/dev/zero`) and a file of another size than named.
#[tokio::test]
async fn a_relay_serves_only_named_regular_objects_of_the_named_size() {
    // A base larger than the pieces a relay keeps in memory: read from disk each time.
    let gw = TestGateway::start_with(Options {
        records: 3000,
        ..Options::default()
    })
    .await;
    let repo = gw.demo.repo();
    let objects = repo.join("objects");
    let named = manifest(&repo)["signed"]["snapshot"]["hash"]
        .as_str()
        .expect("hash")
        .to_owned();
    let mut c = gw.client("relay").await;
    // The named base is served: the relay works.
    let r = c.get(&format!("/v1/replication/objects/{named}")).await;
    assert_eq!(r.status, 200);
    let base = r.body.clone();

    // A link named like an object, to the receipt signing key: not named, not served.
    let key_link = "ab".repeat(32);
    std::os::unix::fs::symlink(
        gw.demo.dir.join("keys/receipt.key"),
        objects.join(&key_link),
    )
    .expect("link");
    let r = c.get(&format!("/v1/replication/objects/{key_link}")).await;
    r.problem(404, "not-found");
    assert!(!String::from_utf8_lossy(&r.body).contains("PRIVATE"));

    // The named base replaced by a link (to its own copy, or to /dev/zero): not served,
    // and the gateway lives on.
    let copy = gw.dir.path().join("copy-of-base");
    std::fs::write(&copy, &base).expect("copy");
    let path = objects.join(&named);
    for target in [copy.as_path(), Path::new("/dev/zero")] {
        std::fs::remove_file(&path).expect("remove");
        std::os::unix::fs::symlink(target, &path).expect("link");
        let r = c.get(&format!("/v1/replication/objects/{named}")).await;
        r.problem(404, "not-found");
    }
    // A regular file, but not of the size the manifest names.
    std::fs::remove_file(&path).expect("remove");
    let mut longer = base.to_vec();
    longer.extend_from_slice(b"more");
    std::fs::write(&path, &longer).expect("write");
    let r = c.get(&format!("/v1/replication/objects/{named}")).await;
    r.problem(404, "not-found");
    // Put back, it is served again: nothing was remembered of the refusals.
    assert!(
        base.len() > 64 << 10,
        "the base is streamed, not held in memory"
    );
    std::fs::write(&path, &base).expect("restore");
    assert_eq!(
        c.get(&format!("/v1/replication/objects/{named}"))
            .await
            .status,
        200
    );
    assert_eq!(gw.client("bank").await.get("/readyz").await.status, 200);
}

/// A follower of a directory someone else can write: a manifest of 2 GiB (sparse) is
/// refused without being read, and an object that is a link to `/dev/zero` is refused.
#[tokio::test]
async fn a_directory_source_cannot_feed_a_follower_giants_or_links() {
    let keep = tempfile::tempdir().expect("tempdir");
    let demo_dir = keep.path().join("demo");
    let gw = TestGateway::start_with(Options {
        replication: true,
        demo_dir: Some(demo_dir.clone()),
        load_snapshot: false,
        ..Options::default()
    })
    .await;
    let repo = gw.demo.repo();
    let (mut follower, _) = gw.gateway.follower().expect("config").expect("on");

    // The base object a link to /dev/zero.
    let named = manifest(&repo)["signed"]["snapshot"]["hash"]
        .as_str()
        .expect("hash")
        .to_owned();
    let path = repo.join("objects").join(&named);
    let base = std::fs::read(&path).expect("base");
    std::fs::remove_file(&path).expect("remove");
    std::os::unix::fs::symlink("/dev/zero", &path).expect("link");
    let refused = follower.poll_and_record().await.expect_err("a link");
    assert_eq!(refused.reason, RefusalReason::Fetch, "{}", refused.detail());
    assert!(
        refused.detail().contains("symbolic link"),
        "{}",
        refused.detail()
    );
    std::fs::remove_file(&path).expect("remove");
    std::fs::write(&path, &base).expect("restore");

    // The manifest 2 GiB long.
    let mpath = repo.join("manifest.json");
    let good = std::fs::read(&mpath).expect("manifest");
    let f = std::fs::File::create(&mpath).expect("create");
    f.set_len(2 << 30).expect("sparse");
    let started = std::time::Instant::now();
    let refused = follower.poll_and_record().await.expect_err("too large");
    assert_eq!(refused.reason, RefusalReason::Manifest);
    assert!(
        refused.detail().contains("larger than"),
        "{}",
        refused.detail()
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "refused without reading it: {:?}",
        started.elapsed()
    );
    std::fs::write(&mpath, &good).expect("restore");
    follower
        .poll_and_record()
        .await
        .expect("the real repository loads");
    assert_eq!(gw.client("bank").await.get("/readyz").await.status, 200);
}

/// What the hostile relay below has sent, in bytes.
#[derive(Default)]
struct Sent(AtomicU64);

/// A body that never ends: 64 KiB of spaces at a time, counted.
struct Endless(Arc<Sent>);

impl hyper::body::Body for Endless {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        const PIECE: &[u8] = &[b' '; 64 << 10];
        self.0 .0.fetch_add(PIECE.len() as u64, Ordering::Relaxed);
        Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(PIECE)))))
    }
}

type Answer = Response<http_body_util::Either<http_body_util::Full<Bytes>, Endless>>;

/// An HTTPS server with the demo's server certificate that answers every request with
/// `answer`; its address.
async fn hostile_relay(
    gw: &TestGateway,
    answer: impl Fn(Request<Incoming>) -> Answer + Send + Sync + 'static,
) -> std::net::SocketAddr {
    let certs = permitgate::tls::load_certs(&gw.demo.pki.server_cert()).expect("cert");
    let key = permitgate::tls::load_key(&gw.demo.pki.server_key()).expect("key");
    let mut cfg = rustls::ServerConfig::builder_with_provider(permitgate::tls::crypto_provider())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("server config");
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let answer = Arc::new(answer);
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, answer) = (acceptor.clone(), answer.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let svc = hyper::service::service_fn(move |req| {
                    let a = answer(req);
                    async move { Ok::<_, Infallible>(a) }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    addr
}

/// A relay that answers the manifest with a body that never ends, or an object with its
/// bytes and then more: the follower stops reading at the bound and keeps nothing.
#[tokio::test]
async fn a_hostile_relay_cannot_grow_a_follower() {
    let keep = tempfile::tempdir().expect("tempdir");
    let demo_dir = keep.path().join("demo");
    // Made first, for its demo data (the relay below serves that repository's bytes).
    let origin = TestGateway::start_with(Options {
        demo_dir: Some(demo_dir.clone()),
        ..Options::default()
    })
    .await;
    let repo = origin.demo.repo();
    let sent = Arc::new(Sent::default());
    let (endless_manifest, manifest_bytes) = (
        Arc::new(AtomicU64::new(1)),
        std::fs::read(repo.join("manifest.json")).expect("manifest"),
    );
    let addr = {
        let (sent, endless, repo) = (sent.clone(), endless_manifest.clone(), repo.clone());
        hostile_relay(&origin, move |req| {
            let path = req.uri().path().to_owned();
            let full = |b: Vec<u8>| {
                Response::new(http_body_util::Either::Left(http_body_util::Full::new(
                    Bytes::from(b),
                )))
            };
            if path.ends_with("manifest.json") {
                if endless.load(Ordering::Relaxed) == 1 {
                    return Response::new(http_body_util::Either::Right(Endless(sent.clone())));
                }
                return full(manifest_bytes.clone());
            }
            let name = path.rsplit('/').next().unwrap_or_default().to_owned();
            match std::fs::read(repo.join("objects").join(&name)) {
                Ok(mut bytes) => {
                    // The object, and then 8 MiB more.
                    bytes.extend(std::iter::repeat_n(0u8, 8 << 20));
                    sent.0.fetch_add(bytes.len() as u64, Ordering::Relaxed);
                    full(bytes)
                }
                Err(_) => {
                    let mut r = full(Vec::new());
                    *r.status_mut() = http::StatusCode::NOT_FOUND;
                    r
                }
            }
        })
        .await
    };
    let follower_gw = TestGateway::start_with(Options {
        replication: true,
        demo_dir: Some(demo_dir.clone()),
        load_snapshot: false,
        replication_source: Some(format!("https://localhost:{}/repo", addr.port())),
        ..Options::default()
    })
    .await;
    let (mut follower, _) = follower_gw.gateway.follower().expect("config").expect("on");

    let refused = follower
        .poll_and_record()
        .await
        .expect_err("endless manifest");
    assert_eq!(refused.reason, RefusalReason::Manifest);
    assert!(
        refused.detail().contains("larger than"),
        "{}",
        refused.detail()
    );
    // What the relay got to send before the follower hung up: the bound, and what the
    // kernel's buffers took on both sides.
    let read = sent.0.load(Ordering::Relaxed);
    assert!(
        read < MAX_MANIFEST_BYTES + (32 << 20),
        "the follower read on: {read} bytes sent"
    );

    endless_manifest.store(0, Ordering::Relaxed);
    let refused = follower
        .poll_and_record()
        .await
        .expect_err("oversized object");
    assert_eq!(refused.reason, RefusalReason::HashMismatch);
    assert!(
        refused.detail().contains("more than the"),
        "{}",
        refused.detail()
    );
    let objects = follower_gw.dir.path().join("state").join("objects");
    let kept: Vec<_> = std::fs::read_dir(&objects)
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(kept.is_empty(), "nothing kept of the object: {kept:?}");
    assert!(!follower_gw.gateway.store.is_ready());
}
