#![doc = include_str!("../README.md")]

mod buckets;
mod error;
mod grants;
pub mod keys;
mod manage;
mod objects;
mod settings;
mod sweep;
mod uploads;
mod writer;

use std::sync::Arc;

use object_store::ObjectStore;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::local::LocalFileSystem;
use secrecy::ExposeSecret;
use sovereign_db::Db;
use uuid::Uuid;

pub use buckets::{Bucket, NewBucket};
pub use error::StorageError;
pub use manage::{Destination, ObjectChanges};
pub use objects::{ObjectInfo, ObjectPage, ObjectStream, Put, Usage};
pub use settings::{Backend, S3Settings, StorageSettings};
pub use sweep::Swept;
pub use uploads::{DEFAULT_PART_BYTES, MAX_PARTS, MIN_PART_BYTES, NewUpload, Part, Upload};

/// The storage service: metadata in PostgreSQL (every query in the tenant's transaction, under
/// row-level security), bytes in the backend under `<tenant>/<blob id>`. Cheap to clone.
#[derive(Clone)]
pub struct Storage {
    db: Db,
    store: Arc<dyn ObjectStore>,
    /// The same store when it is S3, to presign its URLs.
    s3: Option<Arc<AmazonS3>>,
    url_key: grants::UrlKey,
    /// Memory for parts in flight, shared by every write of the process.
    budget: Arc<tokio::sync::Semaphore>,
    settings: Arc<StorageSettings>,
}

impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Storage")
            .field("store", &self.store.to_string())
            .finish_non_exhaustive()
    }
}

impl Storage {
    /// The service on the backend the settings name (the `fs` directory is created);
    /// `secret` (the server's `SECRET_KEY`) is the root of the key that signs this server's URLs
    /// (signed downloads, upload parts on the local disk).
    pub fn new(db: Db, settings: StorageSettings, secret: &[u8]) -> Result<Self, StorageError> {
        let mut presigner = None;
        let store: Arc<dyn ObjectStore> = match &settings.backend {
            Backend::Fs { dir } => {
                std::fs::create_dir_all(dir).map_err(|e| {
                    StorageError::Backend(format!("cannot create {}: {e}", dir.display()))
                })?;
                Arc::new(LocalFileSystem::new_with_prefix(dir)?)
            }
            Backend::S3(s3) => {
                let mut builder = AmazonS3Builder::new()
                    .with_region(&s3.region)
                    .with_bucket_name(&s3.bucket)
                    .with_virtual_hosted_style_request(!s3.path_style);
                if let Some(endpoint) = &s3.endpoint {
                    builder = builder
                        .with_endpoint(endpoint)
                        .with_allow_http(endpoint.starts_with("http://"));
                }
                if let (Some(id), Some(secret)) = (&s3.access_key_id, &s3.secret_access_key) {
                    builder = builder
                        .with_access_key_id(id)
                        .with_secret_access_key(secret.expose_secret());
                }
                let store = Arc::new(builder.build()?);
                presigner = Some(Arc::clone(&store));
                store
            }
        };
        Ok(Self {
            db,
            store,
            s3: presigner,
            url_key: grants::UrlKey::derive(secret),
            budget: writer::budget(settings.upload_memory),
            settings: Arc::new(settings),
        })
    }

    /// The settings it runs with.
    #[must_use]
    pub fn settings(&self) -> &StorageSettings {
        &self.settings
    }

    /// The file of `path` under the local-disk backend's directory (`None` on S3).
    fn local_file(&self, path: &str) -> Option<std::path::PathBuf> {
        match &self.settings.backend {
            Backend::Fs { dir } => Some(dir.join(path)),
            Backend::S3(_) => None,
        }
    }

    /// Where a blob's bytes are.
    fn blob_path(tenant: Uuid, blob: Uuid) -> object_store::path::Path {
        object_store::path::Path::from(format!("{}/{}", tenant.simple(), blob.simple()))
    }
}
