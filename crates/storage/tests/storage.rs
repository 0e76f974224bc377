//! The storage service on the local-disk backend against a real PostgreSQL, as the runtime role
//! under row-level security: buckets, streamed writes with limits, replacement without a mix,
//! listings, quotas, tenant isolation, and the sweeper after an abandoned upload.

#![expect(
    clippy::unwrap_used,
    reason = "test helpers fail loudly, like the tests that call them"
)]

use std::time::Duration;

use std::process::{Child, Command, Stdio};
use std::sync::Arc;

use bytes::Bytes;
use futures_util::{StreamExt, stream};
use object_store::ObjectStore;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use sovereign_db::{Db, PoolSettings};
use sovereign_storage::{
    Backend, NewBucket, Put, S3Settings, Storage, StorageError, StorageSettings,
};
use sovereign_tenancy::TenantAdmin;
use sovereign_test_db::TestDatabase;
use uuid::Uuid;

struct Harness {
    storage: Storage,
    db: Db,
    /// Reads the backend directly, to count the blobs in it.
    inspector: Arc<dyn ObjectStore>,
    _moto: Option<Moto>,
    a: Uuid,
    b: Uuid,
    _db: TestDatabase,
}

fn pool(url: &sovereign_core::settings::SecretUrl) -> Db {
    Db::new(
        url,
        PoolSettings {
            max_size: 4,
            wait_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(5),
            recycle_timeout: Duration::from_secs(2),
            statement_timeout: Duration::from_secs(30),
        },
    )
    .unwrap()
}

/// The backends every test runs on.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Fs,
    S3,
}
const KINDS: [Kind; 2] = [Kind::Fs, Kind::S3];

/// `moto_server` (a real S3 implementation, from the test tools `cargo xtask ci` installs) on a
/// free loopback port, with one bucket; stopped when dropped.
struct Moto {
    child: Child,
    endpoint: String,
}

impl Moto {
    async fn start() -> Self {
        let venv = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../.sovereign/venv/bin/moto_server");
        let program = std::env::var("TEST_MOTO_SERVER").map_or(venv, Into::into);
        assert!(
            program.exists(),
            "no moto_server: run `cargo xtask ci` once (it installs the test tools), or set TEST_MOTO_SERVER"
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(program)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let endpoint = format!("http://127.0.0.1:{port}");
        let client = reqwest::Client::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            // Creating the bucket is also the readiness check.
            if let Ok(r) = client.put(format!("{endpoint}/{BUCKET}")).send().await
                && r.status().is_success()
            {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "moto_server did not start"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Self { child, endpoint }
    }

    fn settings(&self) -> S3Settings {
        S3Settings {
            endpoint: Some(self.endpoint.clone()),
            region: "us-east-1".to_owned(),
            bucket: BUCKET.to_owned(),
            access_key_id: Some("test".to_owned()),
            secret_access_key: Some("test".to_owned().into()),
            path_style: true,
        }
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const BUCKET: &str = "sovereign-tests";

async fn harness(kind: Kind, quota_bytes: i64) -> Harness {
    let db = TestDatabase::migrated().await;
    let admin = TenantAdmin::new(pool(db.tenant_admin_url()));
    let a = admin.create("tenant-a", "Tenant A").await.unwrap().id;
    let b = admin.create("tenant-b", "Tenant B").await.unwrap().id;
    let (backend, moto, inspector): (Backend, Option<Moto>, Arc<dyn ObjectStore>) = match kind {
        Kind::Fs => {
            let dir = std::env::temp_dir().join(format!("sovereign-storage-{}", Uuid::now_v7()));
            std::fs::create_dir_all(&dir).unwrap();
            let inspector = Arc::new(LocalFileSystem::new_with_prefix(&dir).unwrap());
            (Backend::Fs { dir }, None, inspector)
        }
        Kind::S3 => {
            let moto = Moto::start().await;
            let s3 = moto.settings();
            let inspector = Arc::new(
                AmazonS3Builder::new()
                    .with_endpoint(&moto.endpoint)
                    .with_allow_http(true)
                    .with_region("us-east-1")
                    .with_bucket_name(BUCKET)
                    .with_access_key_id("test")
                    .with_secret_access_key("test")
                    .build()
                    .unwrap(),
            );
            (Backend::S3(s3), Some(moto), inspector)
        }
    };
    let runtime = pool(db.url());
    let storage = Storage::new(
        runtime.clone(),
        StorageSettings {
            enabled: true,
            backend,
            max_object_bytes: 1 << 20,
            quota_bytes,
            quota_objects: 100,
        },
    )
    .unwrap();
    Harness {
        storage,
        db: runtime,
        inspector,
        _moto: moto,
        a,
        b,
        _db: db,
    }
}

fn bucket(name: &str, types: &[&str], max: Option<i64>) -> NewBucket {
    NewBucket {
        name: name.to_owned(),
        public: false,
        max_object_bytes: max,
        allowed_types: types.iter().map(|t| (*t).to_owned()).collect(),
    }
}

fn body(
    chunks: &[&'static [u8]],
) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> + Unpin {
    stream::iter(
        chunks
            .iter()
            .map(|c| Ok(Bytes::from_static(c)))
            .collect::<Vec<_>>(),
    )
}

fn typed(content_type: &str) -> Put {
    Put {
        content_type: content_type.to_owned(),
        ..Put::default()
    }
}

async fn read(storage: &Storage, tenant: Uuid, bucket: &str, key: &str) -> Vec<u8> {
    let (_, mut stream) = storage.get(tenant, bucket, key, None).await.unwrap();
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        out.extend_from_slice(&chunk.unwrap());
    }
    out
}

/// Blobs recorded as pending in tenant A.
async fn pending(h: &Harness) -> i64 {
    use diesel::prelude::*;
    use sovereign_db::schema::storage_blobs;
    use sovereign_db::{RunQueryDsl, ScopedFutureExt};
    h.db.tenant_transaction(h.a, |conn| {
        async move {
            storage_blobs::table
                .filter(storage_blobs::state.eq("pending"))
                .count()
                .get_result::<i64>(conn)
                .await
                .map_err(sovereign_db::DbError::from)
        }
        .scope_boxed()
    })
    .await
    .unwrap()
}

/// The blobs in the backend.
async fn blobs(h: &Harness) -> usize {
    h.inspector.list(None).collect::<Vec<_>>().await.len()
}

#[tokio::test]
async fn objects_are_streamed_checked_replaced_whole_and_listed() {
    for kind in KINDS {
        objects_are_streamed_checked_replaced_whole_and_listed_on(kind).await;
    }
}

async fn objects_are_streamed_checked_replaced_whole_and_listed_on(kind: Kind) {
    let h = harness(kind, 1 << 30).await;
    let s = &h.storage;
    s.create_bucket(h.a, &bucket("docs", &["text/*"], Some(64)))
        .await
        .unwrap();
    assert!(matches!(
        s.create_bucket(h.a, &bucket("docs", &[], None)).await,
        Err(StorageError::BucketExists)
    ));
    let info = s
        .put(
            h.a,
            "docs",
            "notes/a.txt",
            typed("text/plain"),
            body(&[b"hello ", b"world"]),
        )
        .await
        .unwrap();
    assert_eq!(info.size, 11);
    assert_eq!(
        info.sha256,
        "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9"
    );
    assert_eq!(read(s, h.a, "docs", "notes/a.txt").await, b"hello world");
    let (_, mut part) = s
        .get(h.a, "docs", "notes/a.txt", Some(6..11))
        .await
        .unwrap();
    assert_eq!(&part.next().await.unwrap().unwrap()[..], b"world");

    // Limits: too large mid-stream, wrong type, hostile keys; nothing stored.
    let before = blobs(&h).await;
    let big = s
        .put(
            h.a,
            "docs",
            "big.txt",
            typed("text/plain"),
            body(&[&[b'x'; 40], &[b'y'; 40]]),
        )
        .await;
    assert!(
        matches!(big, Err(StorageError::TooLarge { limit: 64 })),
        "{big:?}"
    );
    let html = s
        .put(
            h.a,
            "docs",
            "x.html",
            typed("application/javascript"),
            body(&[b"x"]),
        )
        .await;
    assert!(matches!(html, Err(StorageError::TypeNotAllowed(_))));
    for key in ["../escape", "/abs", "a//b", "a\\b", "a\u{7}b"] {
        let refused = s
            .put(h.a, "docs", key, typed("text/plain"), body(&[b"x"]))
            .await;
        assert!(matches!(refused, Err(StorageError::Invalid(_))), "{key:?}");
    }
    assert_eq!(blobs(&h).await, before, "no bytes left behind");
    assert!(matches!(
        s.head(h.a, "docs", "big.txt").await,
        Err(StorageError::ObjectNotFound)
    ));

    // A replacement is whole: the new bytes, the old blob removed; create-only refuses.
    s.put(
        h.a,
        "docs",
        "notes/a.txt",
        typed("text/plain"),
        body(&[b"second"]),
    )
    .await
    .unwrap();
    assert_eq!(read(s, h.a, "docs", "notes/a.txt").await, b"second");
    assert_eq!(blobs(&h).await, before, "one blob per object");
    let create_only = Put {
        create_only: true,
        ..typed("text/plain")
    };
    assert!(matches!(
        s.put(h.a, "docs", "notes/a.txt", create_only, body(&[b"third"]))
            .await,
        Err(StorageError::ObjectExists)
    ));
    assert_eq!(read(s, h.a, "docs", "notes/a.txt").await, b"second");

    // Listing by prefix, in pages.
    for key in ["notes/b.txt", "notes/c.txt", "notesx.txt", "other/d.txt"] {
        s.put(h.a, "docs", key, typed("text/plain"), body(&[b"."]))
            .await
            .unwrap();
    }
    let page = s.list(h.a, "docs", "notes/", None, 2, None).await.unwrap();
    let keys: Vec<_> = page.objects.iter().map(|o| o.key.as_str()).collect();
    assert_eq!(keys, ["notes/a.txt", "notes/b.txt"]);
    let rest = s
        .list(h.a, "docs", "notes/", page.next.as_deref(), 2, None)
        .await
        .unwrap();
    let keys: Vec<_> = rest.objects.iter().map(|o| o.key.as_str()).collect();
    assert_eq!(keys, ["notes/c.txt"]);
    assert!(rest.next.is_none());

    let usage = s.usage(h.a).await.unwrap();
    assert_eq!((usage.objects, usage.bytes), (5, 6 + 4));
    let someone = Some(Uuid::now_v7());
    assert!(matches!(
        s.delete(h.a, "docs", "notes/a.txt", someone).await,
        Err(StorageError::ObjectNotFound)
    ));
    s.delete(h.a, "docs", "notes/a.txt", None).await.unwrap();
    assert_eq!(s.usage(h.a).await.unwrap().bytes, 4);
    assert!(matches!(
        s.delete_bucket(h.a, "docs").await,
        Err(StorageError::BucketNotEmpty)
    ));
}

#[tokio::test]
async fn tenants_see_only_their_own_buckets_and_objects() {
    for kind in KINDS {
        tenants_see_only_their_own_buckets_and_objects_on(kind).await;
    }
}

async fn tenants_see_only_their_own_buckets_and_objects_on(kind: Kind) {
    let h = harness(kind, 1 << 30).await;
    let s = &h.storage;
    s.create_bucket(h.a, &bucket("shared-name", &[], None))
        .await
        .unwrap();
    s.put(
        h.a,
        "shared-name",
        "secret.txt",
        typed("text/plain"),
        body(&[b"a's"]),
    )
    .await
    .unwrap();
    assert!(matches!(
        s.get(h.b, "shared-name", "secret.txt", None).await,
        Err(StorageError::BucketNotFound)
    ));
    s.create_bucket(h.b, &bucket("shared-name", &[], None))
        .await
        .unwrap();
    assert!(matches!(
        s.get(h.b, "shared-name", "secret.txt", None).await,
        Err(StorageError::ObjectNotFound)
    ));
    assert!(
        s.list(h.b, "shared-name", "", None, 10, None)
            .await
            .unwrap()
            .objects
            .is_empty()
    );
}

#[tokio::test]
async fn the_quota_refuses_what_would_pass_it_and_keeps_nothing() {
    for kind in KINDS {
        the_quota_refuses_what_would_pass_it_and_keeps_nothing_on(kind).await;
    }
}

async fn the_quota_refuses_what_would_pass_it_and_keeps_nothing_on(kind: Kind) {
    let h = harness(kind, 10).await;
    let s = &h.storage;
    s.create_bucket(h.a, &bucket("quota", &[], None))
        .await
        .unwrap();
    s.put(h.a, "quota", "a", typed("text/plain"), body(&[b"12345678"]))
        .await
        .unwrap();
    let over = s
        .put(h.a, "quota", "b", typed("text/plain"), body(&[b"123"]))
        .await;
    assert!(matches!(over, Err(StorageError::QuotaExceeded)), "{over:?}");
    assert!(matches!(
        s.head(h.a, "quota", "b").await,
        Err(StorageError::ObjectNotFound)
    ));
    assert_eq!(blobs(&h).await, 1, "the refused upload's bytes are gone");
    // Replacing within the quota counts the difference.
    s.put(
        h.a,
        "quota",
        "a",
        typed("text/plain"),
        body(&[b"1234567890"]),
    )
    .await
    .unwrap();
    assert_eq!(s.usage(h.a).await.unwrap().bytes, 10);
}

#[tokio::test]
async fn an_upload_whose_client_goes_away_leaves_nothing_and_the_sweeper_clears_the_abandoned() {
    for kind in KINDS {
        an_upload_whose_client_goes_away_leaves_nothing_and_the_sweeper_clears_the_abandoned_on(
            kind,
        )
        .await;
    }
}

async fn an_upload_whose_client_goes_away_leaves_nothing_and_the_sweeper_clears_the_abandoned_on(
    kind: Kind,
) {
    let h = harness(kind, 1 << 30).await;
    let s = &h.storage;
    s.create_bucket(h.a, &bucket("uploads", &[], None))
        .await
        .unwrap();
    let broken = stream::iter(vec![
        Ok(Bytes::from_static(b"partial")),
        Err(std::io::Error::other("connection reset")),
    ]);
    let failed = s
        .put(h.a, "uploads", "x", typed("text/plain"), broken)
        .await;
    assert!(
        matches!(failed, Err(StorageError::Interrupted(_))),
        "{failed:?}"
    );
    assert!(matches!(
        s.head(h.a, "uploads", "x").await,
        Err(StorageError::ObjectNotFound)
    ));
    assert_eq!(blobs(&h).await, 0);

    // An upload cut off for good (the server stopped): its blob stays recorded as pending,
    // with no object, until the sweeper removes it.
    let (release, never) = tokio::sync::oneshot::channel::<()>();
    let chunks =
        stream::iter(vec![Ok(Bytes::from_static(b"partial"))]).chain(stream::once(async move {
            let _ = never.await;
            Err(std::io::Error::other("never sent"))
        }));
    let task = tokio::spawn({
        let s = s.clone();
        let a = h.a;
        async move {
            s.put(a, "uploads", "y", typed("text/plain"), Box::pin(chunks))
                .await
        }
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while pending(&h).await == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the upload never started"
        );
        tokio::task::yield_now().await;
    }
    task.abort();
    let _ = task.await;
    drop(release);
    assert!(matches!(
        s.head(h.a, "uploads", "y").await,
        Err(StorageError::ObjectNotFound)
    ));
    assert_eq!(pending(&h).await, 1);
    // A sweep leaves uploads younger than its age alone, then takes the abandoned one.
    assert_eq!(s.sweep(Duration::from_secs(3600)).await.unwrap().blobs, 0);
    assert_eq!(s.sweep(Duration::ZERO).await.unwrap().blobs, 1);
    assert_eq!(pending(&h).await, 0);
    assert_eq!(blobs(&h).await, 0, "no orphan bytes after the sweep");
    assert_eq!(s.sweep(Duration::ZERO).await.unwrap().blobs, 0);
}

#[tokio::test]
async fn concurrent_writes_to_one_key_leave_one_whole_version() {
    for kind in KINDS {
        concurrent_writes_to_one_key_leave_one_whole_version_on(kind).await;
    }
}

async fn concurrent_writes_to_one_key_leave_one_whole_version_on(kind: Kind) {
    let h = harness(kind, 1 << 30).await;
    let s = &h.storage;
    s.create_bucket(h.a, &bucket("race", &[], None))
        .await
        .unwrap();
    let versions: Vec<Vec<u8>> = (0u8..8).map(|i| vec![b'a' + i; 50_000]).collect();
    let writes = versions.iter().map(|bytes| {
        let chunks: Vec<Result<Bytes, std::io::Error>> = bytes
            .chunks(4096)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        s.put(
            h.a,
            "race",
            "same-key",
            typed("application/octet-stream"),
            stream::iter(chunks),
        )
    });
    for written in futures_util::future::join_all(writes).await {
        written.unwrap();
    }
    let got = read(s, h.a, "race", "same-key").await;
    assert!(versions.contains(&got), "one whole version, never a mix");
    let info = s.head(h.a, "race", "same-key").await.unwrap();
    assert_eq!(info.size, 50_000);
    assert_eq!(blobs(&h).await, 1, "the replaced versions' bytes are gone");
    let usage = s.usage(h.a).await.unwrap();
    assert_eq!((usage.objects, usage.bytes), (1, 50_000));
}
