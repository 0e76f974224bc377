//! The storage settings: where the bytes go (the local disk by default, or an S3-compatible
//! store), the largest object, and each tenant's quota.

use std::path::PathBuf;
use std::time::Duration;

use secrecy::SecretString;
use sovereign_core::setting;
use sovereign_core::settings::DefaultValue::{Unset, Value};
use sovereign_core::settings::{ReadSettings, Reader};

setting!(
    ENABLE_FILE_UPLOADS,
    "ENABLE_FILE_UPLOADS",
    Value("true"),
    "Serve the file storage API (`/api/v1/storage`)."
);
setting!(
    STORAGE_BACKEND,
    "STORAGE_BACKEND",
    Value("fs"),
    "Where file bytes are kept: `fs` (a directory on this machine, `STORAGE_DIR`) or `s3` (an S3-compatible store: AWS S3, MinIO, Garage, GCS's S3 interface)."
);
setting!(
    STORAGE_DIR,
    "STORAGE_DIR",
    Value(".sovereign/storage"),
    "The directory of the `fs` backend (created if missing)."
);
setting!(
    S3_ENDPOINT,
    "S3_ENDPOINT",
    Unset,
    "The S3 endpoint URL (unset: AWS for `S3_REGION`)."
);
setting!(S3_REGION, "S3_REGION", Value("us-east-1"), "The S3 region.");
setting!(
    S3_BUCKET,
    "S3_BUCKET",
    Unset,
    "The S3 bucket every tenant's objects are kept in (under a prefix of its own). Required with `STORAGE_BACKEND=s3`."
);
setting!(
    S3_ACCESS_KEY_ID,
    "S3_ACCESS_KEY_ID",
    Unset,
    "The S3 access key id."
);
setting!(
    S3_SECRET_ACCESS_KEY,
    "S3_SECRET_ACCESS_KEY",
    Unset,
    "The S3 secret access key.",
    secret
);
setting!(
    S3_PATH_STYLE,
    "S3_PATH_STYLE",
    Value("true"),
    "Address the bucket in the path (`https://host/bucket/key`, what MinIO and Garage expect) rather than the host name."
);
setting!(
    STORAGE_MAX_OBJECT_BYTES,
    "STORAGE_MAX_OBJECT_BYTES",
    Value("5368709120"),
    "The largest object any bucket accepts, in bytes (a bucket may set less). Default 5 GiB."
);
setting!(
    STORAGE_QUOTA_BYTES,
    "STORAGE_QUOTA_BYTES",
    Value("10737418240"),
    "Bytes each tenant may store. Default 10 GiB."
);
setting!(
    STORAGE_QUOTA_OBJECTS,
    "STORAGE_QUOTA_OBJECTS",
    Value("1000000"),
    "Objects each tenant may store."
);

setting!(
    STORAGE_URL_SECONDS,
    "STORAGE_URL_SECONDS",
    Value("3600"),
    "How long a direct upload and its signed part URLs stay valid, in seconds (signed download URLs choose their own expiry, up to 7 days)."
);
setting!(
    STORAGE_SWEEP_INTERVAL_SECONDS,
    "STORAGE_SWEEP_INTERVAL_SECONDS",
    Value("300"),
    "How often the server removes abandoned uploads and the bytes of replaced or deleted objects, in seconds (0: never; `sovereign storage sweep` does it once)."
);
setting!(
    STORAGE_SWEEP_GRACE_SECONDS,
    "STORAGE_SWEEP_GRACE_SECONDS",
    Value("3600"),
    "How old an unfinished upload must be before the sweeper removes it, in seconds (longer than the slowest upload through the API)."
);

setting!(
    STORAGE_UPLOAD_MEMORY_MIB,
    "STORAGE_UPLOAD_MEMORY_MIB",
    Value("32"),
    "Memory all uploads together may hold (the parts being filled and in flight), in MiB (8 to 4096); past it, uploads wait for their parts to land."
);

/// Where the bytes go.
#[derive(Debug, Clone)]
pub enum Backend {
    Fs { dir: PathBuf },
    S3(S3Settings),
}

/// An S3-compatible store.
#[derive(Debug, Clone)]
pub struct S3Settings {
    pub endpoint: Option<String>,
    pub region: String,
    pub bucket: String,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<SecretString>,
    pub path_style: bool,
}

/// File storage.
#[derive(Debug, Clone)]
pub struct StorageSettings {
    pub enabled: bool,
    pub backend: Backend,
    pub max_object_bytes: u64,
    pub quota_bytes: i64,
    pub quota_objects: i64,
    /// Lifetime of a direct upload and its part URLs.
    pub url_lifetime: Duration,
    /// `None`: no periodic sweep.
    pub sweep_interval: Option<Duration>,
    pub sweep_grace: Duration,
    /// Bytes all writes together may hold.
    pub upload_memory: u64,
}

impl Default for StorageSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            backend: Backend::Fs {
                dir: PathBuf::from(".sovereign/storage"),
            },
            max_object_bytes: 5 << 30,
            quota_bytes: 10 << 30,
            quota_objects: 1_000_000,
            url_lifetime: Duration::from_secs(3600),
            sweep_interval: Some(Duration::from_secs(300)),
            sweep_grace: Duration::from_secs(3600),
            upload_memory: 32 << 20,
        }
    }
}

impl ReadSettings for StorageSettings {
    fn read(r: &mut Reader<'_>) -> Option<Self> {
        r.section("File storage");
        let enabled: bool = r.value(&ENABLE_FILE_UPLOADS);
        let kind: String = r.value(&STORAGE_BACKEND);
        let dir: String = r.value(&STORAGE_DIR);
        let endpoint = r.raw(&S3_ENDPOINT).map(str::to_owned);
        let region: String = r.value(&S3_REGION);
        let bucket = r.raw(&S3_BUCKET).map(str::to_owned);
        let access_key_id = r.raw(&S3_ACCESS_KEY_ID).map(str::to_owned);
        let secret_access_key = r.secret(&S3_SECRET_ACCESS_KEY);
        let path_style: bool = r.value(&S3_PATH_STYLE);
        let backend = match kind.as_str() {
            "fs" => Backend::Fs {
                dir: PathBuf::from(dir),
            },
            "s3" => {
                if bucket.is_none() {
                    r.problem(
                        S3_BUCKET.name,
                        "is required with STORAGE_BACKEND=s3",
                        "name the S3 bucket to keep objects in".to_owned(),
                    );
                }
                Backend::S3(S3Settings {
                    endpoint,
                    region,
                    bucket: bucket.unwrap_or_default(),
                    access_key_id,
                    secret_access_key,
                    path_style,
                })
            }
            other => {
                r.problem(
                    STORAGE_BACKEND.name,
                    format!("`{other}` is not a storage backend"),
                    "use `fs` or `s3`".to_owned(),
                );
                Backend::Fs {
                    dir: PathBuf::from(dir),
                }
            }
        };
        Some(Self {
            enabled,
            backend,
            max_object_bytes: r.bounded(&STORAGE_MAX_OBJECT_BYTES, 1, 5 << 40),
            quota_bytes: i64::try_from(r.bounded::<u64>(&STORAGE_QUOTA_BYTES, 0, 1 << 62))
                .unwrap_or(i64::MAX),
            quota_objects: i64::try_from(r.bounded::<u64>(&STORAGE_QUOTA_OBJECTS, 0, 1 << 40))
                .unwrap_or(i64::MAX),
            url_lifetime: Duration::from_secs(r.bounded(&STORAGE_URL_SECONDS, 60, 7 * 86_400)),
            sweep_interval: match r.bounded::<u64>(&STORAGE_SWEEP_INTERVAL_SECONDS, 0, 86_400) {
                0 => None,
                secs => Some(Duration::from_secs(secs)),
            },
            sweep_grace: Duration::from_secs(r.bounded(
                &STORAGE_SWEEP_GRACE_SECONDS,
                0,
                30 * 86_400,
            )),
            upload_memory: r.bounded::<u64>(&STORAGE_UPLOAD_MEMORY_MIB, 8, 4096) << 20,
        })
    }
}
