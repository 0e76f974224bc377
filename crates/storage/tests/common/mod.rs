//! The harness of the storage tests: a migrated database with two tenants, and the service on
//! either backend — a temporary directory, or `moto_server` (a real S3 implementation).

#![allow(dead_code, reason = "each test file uses part of the harness")]
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
use sovereign_storage::{Backend, NewBucket, Put, S3Settings, Storage, StorageSettings};
use sovereign_tenancy::TenantAdmin;
use sovereign_test_db::TestDatabase;
use uuid::Uuid;

pub struct Harness {
    pub storage: Storage,
    pub db: Db,
    /// Reads the backend directly, to count the blobs in it.
    pub inspector: Arc<dyn ObjectStore>,
    _moto: Option<Moto>,
    pub a: Uuid,
    pub b: Uuid,
    _db: TestDatabase,
}

pub fn pool(url: &sovereign_core::settings::SecretUrl) -> Db {
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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Fs,
    S3,
}
pub const KINDS: [Kind; 2] = [Kind::Fs, Kind::S3];

/// `moto_server` (a real S3 implementation, from the test tools `cargo xtask ci` installs) on a
/// free loopback port, with one bucket; stopped when dropped.
pub struct Moto {
    child: Child,
    pub endpoint: String,
}

impl Moto {
    pub async fn start() -> Self {
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

    pub fn settings(&self) -> S3Settings {
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

pub const BUCKET: &str = "sovereign-tests";

pub async fn harness(kind: Kind, quota_bytes: i64) -> Harness {
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
            max_object_bytes: 16 << 20,
            quota_bytes,
            quota_objects: 100,
            // The smallest budget: on S3 one part's reservation at a time.
            upload_memory: 8 << 20,
            ..StorageSettings::default()
        },
        &[9; 32],
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

pub fn bucket(name: &str, types: &[&str], max: Option<i64>) -> NewBucket {
    NewBucket {
        name: name.to_owned(),
        public: false,
        max_object_bytes: max,
        allowed_types: types.iter().map(|t| (*t).to_owned()).collect(),
    }
}

pub fn body(
    chunks: &[&'static [u8]],
) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> + Unpin {
    stream::iter(
        chunks
            .iter()
            .map(|c| Ok(Bytes::from_static(c)))
            .collect::<Vec<_>>(),
    )
}

pub fn typed(content_type: &str) -> Put {
    Put {
        content_type: content_type.to_owned(),
        ..Put::default()
    }
}

pub async fn read(storage: &Storage, tenant: Uuid, bucket: &str, key: &str) -> Vec<u8> {
    let (_, mut stream) = storage.get(tenant, bucket, key, None).await.unwrap();
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        out.extend_from_slice(&chunk.unwrap());
    }
    out
}

/// Blobs recorded as pending in tenant A.
pub async fn pending(h: &Harness) -> i64 {
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
pub async fn blobs(h: &Harness) -> usize {
    h.inspector.list(None).collect::<Vec<_>>().await.len()
}
