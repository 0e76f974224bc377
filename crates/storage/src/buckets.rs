//! Buckets: a tenant's named containers of objects, public or private, with a size limit and
//! the content types they accept.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use sovereign_db::schema::{storage_buckets, storage_objects, storage_uploads};
use sovereign_db::{RunQueryDsl, ScopedFutureExt};
use uuid::Uuid;

use crate::keys::bucket_name;
use crate::{Storage, StorageError};

/// A bucket by name or by id.
pub(crate) enum BucketRef {
    Name(String),
    Id(Uuid),
}

/// A bucket to create.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({
    "name": "avatars", "public": false, "max_object_bytes": 5242880, "allowed_types": ["image/*"]
})))]
pub struct NewBucket {
    /// 3 to 63 of `a-z`, `0-9`, `-`, `.`, `_`.
    pub name: String,
    /// Readable without credentials.
    #[serde(default)]
    pub public: bool,
    /// The largest object, in bytes (at most `STORAGE_MAX_OBJECT_BYTES`).
    #[serde(default)]
    pub max_object_bytes: Option<i64>,
    /// Content types accepted (`image/*`, `application/pdf`); empty: any.
    #[serde(default)]
    pub allowed_types: Vec<String>,
}

/// A bucket.
#[derive(Debug, Clone, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Bucket {
    #[serde(skip)]
    pub id: Uuid,
    pub name: String,
    pub public: bool,
    pub max_object_bytes: Option<i64>,
    pub allowed_types: Vec<String>,
    pub created_at: DateTime<Utc>,
}

type BucketRow = (
    Uuid,
    String,
    bool,
    Option<i64>,
    Vec<Option<String>>,
    DateTime<Utc>,
);

const COLUMNS: (
    storage_buckets::id,
    storage_buckets::name,
    storage_buckets::public,
    storage_buckets::max_object_bytes,
    storage_buckets::allowed_types,
    storage_buckets::created_at,
) = (
    storage_buckets::id,
    storage_buckets::name,
    storage_buckets::public,
    storage_buckets::max_object_bytes,
    storage_buckets::allowed_types,
    storage_buckets::created_at,
);

fn bucket_of(row: BucketRow) -> Bucket {
    let (id, name, public, max_object_bytes, types, created_at) = row;
    Bucket {
        id,
        name,
        public,
        max_object_bytes,
        allowed_types: types.into_iter().flatten().collect(),
        created_at,
    }
}

impl Storage {
    /// Creates a bucket in `tenant`.
    pub async fn create_bucket(
        &self,
        tenant: Uuid,
        input: &NewBucket,
    ) -> Result<Bucket, StorageError> {
        let name = bucket_name(&input.name)?;
        let limit = self.settings.max_object_bytes;
        if let Some(max) = input.max_object_bytes
            && (max <= 0 || u64::try_from(max).unwrap_or(u64::MAX) > limit)
        {
            return Err(StorageError::invalid(
                "max_object_bytes",
                "range",
                format!("must be from 1 to {limit}"),
            ));
        }
        if input.allowed_types.len() > 50
            || input
                .allowed_types
                .iter()
                .any(|t| t.len() > 100 || !t.contains('/') || t.chars().any(char::is_control))
        {
            return Err(StorageError::invalid(
                "allowed_types",
                "content_type",
                "must be up to 50 types like `image/*` or `application/pdf`",
            ));
        }
        let (public, max, types) = (
            input.public,
            input.max_object_bytes,
            input.allowed_types.clone(),
        );
        let row: Option<BucketRow> = self
            .db
            .tenant_transaction(tenant, |conn| {
                async move {
                    diesel::insert_into(storage_buckets::table)
                        .values((
                            storage_buckets::id.eq(Uuid::now_v7()),
                            storage_buckets::tenant_id.eq(tenant),
                            storage_buckets::name.eq(name),
                            storage_buckets::public.eq(public),
                            storage_buckets::max_object_bytes.eq(max),
                            storage_buckets::allowed_types.eq(types),
                        ))
                        .on_conflict_do_nothing()
                        .returning(COLUMNS)
                        .get_result(conn)
                        .await
                        .optional()
                        .map_err(StorageError::from)
                }
                .scope_boxed()
            })
            .await?;
        row.map(bucket_of).ok_or(StorageError::BucketExists)
    }

    /// The tenant's buckets, by name.
    pub async fn buckets(&self, tenant: Uuid) -> Result<Vec<Bucket>, StorageError> {
        let rows: Vec<BucketRow> = self
            .db
            .tenant_transaction(tenant, |conn| {
                async move {
                    storage_buckets::table
                        .order(storage_buckets::name)
                        .select(COLUMNS)
                        .load(conn)
                        .await
                        .map_err(StorageError::from)
                }
                .scope_boxed()
            })
            .await?;
        Ok(rows.into_iter().map(bucket_of).collect())
    }

    /// One of the tenant's buckets.
    pub async fn bucket(&self, tenant: Uuid, name: &str) -> Result<Bucket, StorageError> {
        self.find_bucket(tenant, BucketRef::Name(name.to_owned()))
            .await
    }

    /// One of the tenant's buckets, by name or id.
    pub(crate) async fn find_bucket(
        &self,
        tenant: Uuid,
        which: BucketRef,
    ) -> Result<Bucket, StorageError> {
        let row: Option<BucketRow> = self
            .db
            .tenant_transaction(tenant, |conn| {
                async move {
                    let query = storage_buckets::table.select(COLUMNS).into_boxed();
                    let query = match which {
                        BucketRef::Name(name) => query.filter(storage_buckets::name.eq(name)),
                        BucketRef::Id(id) => query.filter(storage_buckets::id.eq(id)),
                    };
                    query
                        .first(conn)
                        .await
                        .optional()
                        .map_err(StorageError::from)
                }
                .scope_boxed()
            })
            .await?;
        row.map(bucket_of).ok_or(StorageError::BucketNotFound)
    }

    /// Deletes an empty bucket (no object, no upload in progress).
    pub async fn delete_bucket(&self, tenant: Uuid, name: &str) -> Result<(), StorageError> {
        let bucket = self.bucket(tenant, name).await?;
        self.db
            .tenant_transaction(tenant, |conn| {
                async move {
                    let objects: bool = diesel::select(diesel::dsl::exists(
                        storage_objects::table.filter(storage_objects::bucket_id.eq(bucket.id)),
                    ))
                    .get_result(conn)
                    .await?;
                    let uploads: bool = diesel::select(diesel::dsl::exists(
                        storage_uploads::table.filter(storage_uploads::bucket_id.eq(bucket.id)),
                    ))
                    .get_result(conn)
                    .await?;
                    if objects || uploads {
                        return Err(StorageError::BucketNotEmpty);
                    }
                    diesel::delete(storage_buckets::table.find(bucket.id))
                        .execute(conn)
                        .await?;
                    Ok(())
                }
                .scope_boxed()
            })
            .await
    }
}
