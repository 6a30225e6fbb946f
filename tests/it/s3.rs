//! An S3-compatible source: a real S3 server (s3s-fs, in process, on loopback), a repo
//! uploaded through the S3 API, followed, a delta published and applied; and two origins
//! sharing one bucket as their repository.

use std::path::Path;
use std::sync::Arc;

use crate::common::{Options, TestGateway};
use object_store::{ObjectStore, ObjectStoreExt};

use permitgate::publish::DEFAULT_MAX_DELTAS;
use permitgate::replication::PollOutcome;
use s3s::{S3Request, S3Response, S3Result};
use serde_json::json;

pub const BUCKET: &str = "permitgate";
const AK: &str = "test-access-key";
const SK: &str = "test-secret-key-0123456789";
/// For a process that reaches the bucket: the usual AWS variables.
pub const CREDENTIALS: [(&str, &str); 2] =
    [("AWS_ACCESS_KEY_ID", AK), ("AWS_SECRET_ACCESS_KEY", SK)];

/// s3s-fs with S3's promise for conditional writes: s3s-fs checks `If-None-Match` and
/// `If-Match` and then writes, so two racing writes could both pass the check; S3 decides
/// them one at a time. Here they are taken one at a time.
struct Atomic {
    fs: s3s_fs::FileSystem,
    conditional: tokio::sync::Mutex<()>,
}

#[async_trait::async_trait]
impl s3s::S3 for Atomic {
    async fn put_object(
        &self,
        req: S3Request<s3s::dto::PutObjectInput>,
    ) -> S3Result<S3Response<s3s::dto::PutObjectOutput>> {
        if req.input.if_none_match.is_some() || req.input.if_match.is_some() {
            let _one_at_a_time = self.conditional.lock().await;
            self.fs.put_object(req).await
        } else {
            self.fs.put_object(req).await
        }
    }
    async fn get_object(
        &self,
        req: S3Request<s3s::dto::GetObjectInput>,
    ) -> S3Result<S3Response<s3s::dto::GetObjectOutput>> {
        self.fs.get_object(req).await
    }
    async fn head_object(
        &self,
        req: S3Request<s3s::dto::HeadObjectInput>,
    ) -> S3Result<S3Response<s3s::dto::HeadObjectOutput>> {
        self.fs.head_object(req).await
    }
    async fn list_objects_v2(
        &self,
        req: S3Request<s3s::dto::ListObjectsV2Input>,
    ) -> S3Result<S3Response<s3s::dto::ListObjectsV2Output>> {
        self.fs.list_objects_v2(req).await
    }
    async fn delete_object(
        &self,
        req: S3Request<s3s::dto::DeleteObjectInput>,
    ) -> S3Result<S3Response<s3s::dto::DeleteObjectOutput>> {
        self.fs.delete_object(req).await
    }
}

/// Starts s3s-fs on an ephemeral loopback port; returns its endpoint URL.
pub async fn start_s3(root: &Path) -> String {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    std::fs::create_dir_all(root.join(BUCKET)).expect("bucket dir");
    let fs = Atomic {
        fs: s3s_fs::FileSystem::new(root).expect("s3s-fs"),
        conditional: tokio::sync::Mutex::new(()),
    };
    let mut b = s3s::service::S3ServiceBuilder::new(fs);
    b.set_auth(s3s::auth::SimpleAuth::from_single(AK, SK));
    let service = b.build();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let http = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
        while let Ok((socket, _)) = listener.accept().await {
            let conn = http
                .serve_connection(TokioIo::new(socket), service.clone())
                .into_owned();
            tokio::spawn(async move {
                let _ = conn.await;
            });
        }
    });
    format!("http://{addr}")
}

/// Uploads a repo directory through the S3 API: objects first, then the manifest.
pub async fn upload(store: &Arc<dyn ObjectStore>, repo: &Path) {
    for entry in std::fs::read_dir(repo.join("objects"))
        .expect("objects")
        .flatten()
    {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        let bytes = std::fs::read(entry.path()).expect("read object");
        store
            .put(&format!("repo/objects/{name}").into(), bytes.into())
            .await
            .expect("put object");
    }
    let manifest = std::fs::read(repo.join("manifest.json")).expect("manifest");
    store
        .put(&"repo/manifest.json".into(), manifest.into())
        .await
        .expect("put manifest");
}

/// A client of the bucket at `endpoint`.
pub fn client(endpoint: &str) -> Arc<dyn ObjectStore> {
    Arc::new(
        object_store::aws::AmazonS3Builder::new()
            .with_http_connector(permitgate::replication::HyperConnector)
            .with_bucket_name(BUCKET)
            .with_endpoint(endpoint)
            .with_allow_http(true)
            .with_region("us-east-1")
            .with_access_key_id(AK)
            .with_secret_access_key(SK)
            .build()
            .expect("client"),
    )
}

#[tokio::test]
async fn follows_an_s3_compatible_bucket() {
    // The usual AWS variables carry the credentials; this test binary has one test, so
    // setting them does not race with anything.
    std::env::set_var("AWS_ACCESS_KEY_ID", AK);
    std::env::set_var("AWS_SECRET_ACCESS_KEY", SK);
    let s3_root = tempfile::tempdir().expect("tempdir");
    let endpoint = start_s3(s3_root.path()).await;
    let store = client(&endpoint);

    let gw = TestGateway::start_with(Options {
        replication: true,
        replication_source: Some(format!("s3://{BUCKET}/repo")),
        replication_extra: format!("s3_endpoint = \"{endpoint}\"\ns3_region = \"us-east-1\""),
        ..Options::default()
    })
    .await;
    upload(&store, &gw.demo.repo()).await;

    let (mut follower, _) = gw.gateway.follower().expect("config").expect("on");
    assert_eq!(
        follower.poll_and_record().await.map_err(|r| r.detail()),
        Ok(PollOutcome::Swapped(1))
    );
    assert_eq!(
        follower.poll_and_record().await.map_err(|r| r.detail()),
        Ok(PollOutcome::NotModified)
    );

    let s = gw.sample("linked_pair").clone();
    let tp = s.body["travel_permit"].as_str().expect("tp");
    gw.publish_changes(
        &json!({"op": "status", "number": tp, "status": "lost"}).to_string(),
        DEFAULT_MAX_DELTAS,
    );
    upload(&store, &gw.demo.repo()).await;

    assert_eq!(
        follower.poll_and_record().await.map_err(|r| r.detail()),
        Ok(PollOutcome::Applied(2))
    );
    let mut c = gw.client("bank").await;
    let v = c.post_json(&s.path, &s.body).await.json();
    assert_eq!(v["travel_permit"]["status"], "lost");
    assert_eq!(v["snapshot"]["version"], 2);
}
