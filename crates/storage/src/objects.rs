//! Objects: streamed in with their size, type and SHA-256 checked on the way, made visible only
//! once their bytes are stored (one transaction swaps the key to the new blob, counts the quota
//! and marks the replaced blob as garbage), streamed out whole or by range, listed by prefix.

use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use futures_util::stream::BoxStream;
use futures_util::{Stream, StreamExt, TryStreamExt};
use object_store::{GetOptions, GetRange, GetResultPayload, ObjectStoreExt};
use sovereign_db::schema::{storage_blobs, storage_objects, storage_usage};
use sovereign_db::{RunQueryDsl, ScopedFutureExt};
use uuid::Uuid;

use crate::keys::{object_key, prefix as checked_prefix, type_allowed};
use crate::{Bucket, Storage, StorageError};

/// How an object is written.
#[derive(Debug, Clone, Default)]
pub struct Put {
    pub content_type: String,
    pub owner: Option<Uuid>,
    pub metadata: serde_json::Map<String, serde_json::Value>,
    /// Refuse if the key exists (`If-None-Match: *`).
    pub create_only: bool,
    /// Refuse to replace an object that is not this account's (`NotOwner`), checked in the
    /// same transaction as the write.
    pub only_owner: Option<Uuid>,
    /// The body's length when known (`Content-Length`): a small body reserves only that much
    /// of the upload memory budget.
    pub length: Option<u64>,
}

/// An object's metadata.
#[derive(Debug, Clone, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ObjectInfo {
    pub key: String,
    pub size: i64,
    pub content_type: String,
    /// Hex SHA-256 of the bytes (also the `ETag`).
    pub sha256: String,
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub metadata: serde_json::Value,
    pub owner_id: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A page of a listing.
#[derive(Debug, Clone, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ObjectPage {
    pub objects: Vec<ObjectInfo>,
    /// Pass as `after` for the next page; absent on the last.
    pub next: Option<String>,
}

/// A tenant's usage.
#[derive(Debug, Clone, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Usage {
    pub bytes: i64,
    pub objects: i64,
    pub quota_bytes: i64,
    pub quota_objects: i64,
}

/// Bytes written to a pending blob, checked, not yet an object.
pub(crate) struct Stored {
    pub(crate) blob: Uuid,
    pub(crate) size: i64,
    pub(crate) sha256: Vec<u8>,
}

/// An object's bytes, as they come from the backend.
pub type ObjectStream = BoxStream<'static, Result<Bytes, StorageError>>;

/// blob, key, size, content_type, sha256, metadata, owner, created, updated.
pub(crate) type ObjectRow = (
    Uuid,
    String,
    i64,
    String,
    Vec<u8>,
    serde_json::Value,
    Option<Uuid>,
    DateTime<Utc>,
    DateTime<Utc>,
);

pub(crate) const COLUMNS: (
    storage_objects::blob,
    storage_objects::key,
    storage_objects::size,
    storage_objects::content_type,
    storage_objects::sha256,
    storage_objects::metadata,
    storage_objects::owner_id,
    storage_objects::created_at,
    storage_objects::updated_at,
) = (
    storage_objects::blob,
    storage_objects::key,
    storage_objects::size,
    storage_objects::content_type,
    storage_objects::sha256,
    storage_objects::metadata,
    storage_objects::owner_id,
    storage_objects::created_at,
    storage_objects::updated_at,
);

pub(crate) fn info_of(row: ObjectRow) -> (Uuid, ObjectInfo) {
    let (blob, key, size, content_type, sha256, metadata, owner_id, created_at, updated_at) = row;
    let sha256 = sha256.iter().map(|b| format!("{b:02x}")).collect();
    (
        blob,
        ObjectInfo {
            key,
            size,
            content_type,
            sha256,
            metadata,
            owner_id,
            created_at,
            updated_at,
        },
    )
}

impl Storage {
    /// Writes `key` in `bucket` from `body`, streamed: never held whole in memory; refused as
    /// soon as it passes the size limit. The object appears only once stored and counted.
    pub async fn put<S, E>(
        &self,
        tenant: Uuid,
        bucket: &str,
        key: &str,
        put: Put,
        body: S,
    ) -> Result<ObjectInfo, StorageError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let key = object_key(key)?;
        let bucket = self.bucket(tenant, bucket).await?;
        let limit = self.admits(&bucket, &put.content_type)?;
        let stored = self.store_blob(tenant, body, limit, put.length).await?;
        self.commit(tenant, bucket.id, key, stored, put).await
    }

    /// The largest object `bucket` takes, if it takes `content_type` at all.
    pub(crate) fn admits(&self, bucket: &Bucket, content_type: &str) -> Result<u64, StorageError> {
        // It becomes a response header: visible ASCII and spaces, `type/subtype`, bounded.
        let well_formed = content_type.len() <= 255
            && content_type.contains('/')
            && content_type.bytes().all(|b| (0x20..0x7f).contains(&b));
        if !well_formed {
            return Err(StorageError::invalid(
                "content_type",
                "invalid",
                "must be a media type like `image/png`: up to 255 visible ASCII characters",
            ));
        }
        if !type_allowed(&bucket.allowed_types, content_type) {
            return Err(StorageError::TypeNotAllowed(content_type.to_owned()));
        }
        Ok(bucket
            .max_object_bytes
            .and_then(|m| u64::try_from(m).ok())
            .unwrap_or(u64::MAX)
            .min(self.settings.max_object_bytes))
    }

    /// Streams `body` into a new blob recorded as pending: removed again if the body fails.
    pub(crate) async fn store_blob<S, E>(
        &self,
        tenant: Uuid,
        body: S,
        limit: u64,
        length: Option<u64>,
    ) -> Result<Stored, StorageError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let blob = Uuid::now_v7();
        self.mark_blob(tenant, blob, "pending").await?;
        let path = Self::blob_path(tenant, blob);
        match self.write_blob(&path, body, limit, length).await {
            Ok((size, digest)) => Ok(Stored {
                blob,
                size: i64::try_from(size).map_err(|_| StorageError::TooLarge { limit })?,
                sha256: digest.to_vec(),
            }),
            Err(e) => {
                self.forget_blob(tenant, blob).await;
                Err(e)
            }
        }
    }

    /// Makes `stored` (a blob recorded as pending) the object at `key`: in one transaction, the
    /// usage row locked first, the key pointed at the blob, the quota counted and the replaced
    /// blob marked as garbage (then removed). On failure the blob is removed instead.
    pub(crate) async fn commit(
        &self,
        tenant: Uuid,
        bucket_id: Uuid,
        key: String,
        stored: Stored,
        put: Put,
    ) -> Result<ObjectInfo, StorageError> {
        let Stored { blob, size, sha256 } = stored;
        let (quota_bytes, quota_objects) = (self.settings.quota_bytes, self.settings.quota_objects);
        let row_key = key;
        let metadata = serde_json::Value::Object(put.metadata);
        let (content_type, owner, create_only) = (put.content_type, put.owner, put.create_only);
        let only_owner = put.only_owner;
        let committed = self
            .db
            .tenant_transaction(tenant, |conn| {
                async move {
                    lock_usage(conn, tenant).await?;
                    let found: Option<(Uuid, i64, Option<Uuid>)> = storage_objects::table
                        .filter(storage_objects::bucket_id.eq(bucket_id))
                        .filter(storage_objects::key.eq(&row_key))
                        .select((
                            storage_objects::blob,
                            storage_objects::size,
                            storage_objects::owner_id,
                        ))
                        .for_update()
                        .first(conn)
                        .await
                        .optional()?;
                    if found.is_some() && create_only {
                        return Err(StorageError::ObjectExists);
                    }
                    if let (Some((_, _, holder)), Some(me)) = (&found, only_owner)
                        && *holder != Some(me)
                    {
                        return Err(StorageError::NotOwner);
                    }
                    let old = found.map(|(blob, size, _)| (blob, size));
                    let (bytes_delta, objects_delta) = match old {
                        Some((_, old_size)) => (size - old_size, 0),
                        None => (size, 1),
                    };
                    count_usage(
                        conn,
                        tenant,
                        bytes_delta,
                        objects_delta,
                        quota_bytes,
                        quota_objects,
                    )
                    .await?;
                    let row: ObjectRow = diesel::insert_into(storage_objects::table)
                        .values((
                            storage_objects::tenant_id.eq(tenant),
                            storage_objects::bucket_id.eq(bucket_id),
                            storage_objects::key.eq(&row_key),
                            storage_objects::blob.eq(blob),
                            storage_objects::size.eq(size),
                            storage_objects::content_type.eq(&content_type),
                            storage_objects::sha256.eq(&sha256),
                            storage_objects::metadata.eq(&metadata),
                            storage_objects::owner_id.eq(owner),
                        ))
                        .on_conflict((
                            storage_objects::tenant_id,
                            storage_objects::bucket_id,
                            storage_objects::key,
                        ))
                        .do_update()
                        .set((
                            storage_objects::blob.eq(blob),
                            storage_objects::size.eq(size),
                            storage_objects::content_type.eq(&content_type),
                            storage_objects::sha256.eq(&sha256),
                            storage_objects::metadata.eq(&metadata),
                            storage_objects::owner_id.eq(owner),
                            storage_objects::updated_at.eq(diesel::dsl::now),
                        ))
                        .returning(COLUMNS)
                        .get_result(conn)
                        .await?;
                    // The new blob is the object's now; the old one is garbage.
                    diesel::delete(storage_blobs::table.find(blob))
                        .execute(conn)
                        .await?;
                    if let Some((old_blob, _)) = old {
                        mark_garbage(conn, tenant, old_blob).await?;
                    }
                    Ok((row, old.map(|(b, _)| b)))
                }
                .scope_boxed()
            })
            .await;
        match committed {
            Ok((row, replaced)) => {
                if let Some(old) = replaced {
                    self.remove_blob(tenant, old).await;
                }
                Ok(info_of(row).1)
            }
            Err(e) => {
                self.forget_blob(tenant, blob).await;
                Err(e)
            }
        }
    }

    /// An object's metadata.
    pub async fn head(
        &self,
        tenant: Uuid,
        bucket: &str,
        key: &str,
    ) -> Result<ObjectInfo, StorageError> {
        Ok(self.row(tenant, bucket, key).await?.1)
    }

    pub(crate) async fn row(
        &self,
        tenant: Uuid,
        bucket: &str,
        key: &str,
    ) -> Result<(Uuid, ObjectInfo), StorageError> {
        let key = object_key(key)?;
        let bucket = self.bucket(tenant, bucket).await?;
        let row: Option<ObjectRow> = self
            .db
            .tenant_transaction(tenant, |conn| {
                async move {
                    storage_objects::table
                        .filter(storage_objects::bucket_id.eq(bucket.id))
                        .filter(storage_objects::key.eq(key))
                        .select(COLUMNS)
                        .first(conn)
                        .await
                        .optional()
                        .map_err(StorageError::from)
                }
                .scope_boxed()
            })
            .await?;
        row.map(info_of).ok_or(StorageError::ObjectNotFound)
    }

    /// An object and its bytes (`range`: a byte range within it).
    pub async fn get(
        &self,
        tenant: Uuid,
        bucket: &str,
        key: &str,
        range: Option<Range<u64>>,
    ) -> Result<(ObjectInfo, ObjectStream), StorageError> {
        let (blob, info) = self.row(tenant, bucket, key).await?;
        let options = GetOptions {
            range: range.map(GetRange::Bounded),
            ..GetOptions::default()
        };
        let result = self
            .store
            .get_opts(&Self::blob_path(tenant, blob), options)
            .await?;
        let stream = match result.payload {
            GetResultPayload::File(file, _) => file_stream(file, result.range),
            GetResultPayload::Stream(stream) => stream.map_err(StorageError::from).boxed(),
        };
        Ok((info, stream))
    }

    /// Deletes an object (its bytes go with it, or with the sweeper). With `only_owner`, an
    /// object of another account is `ObjectNotFound` — checked in the deleting statement.
    pub async fn delete(
        &self,
        tenant: Uuid,
        bucket: &str,
        key: &str,
        only_owner: Option<Uuid>,
    ) -> Result<(), StorageError> {
        let key = object_key(key)?;
        let bucket = self.bucket(tenant, bucket).await?;
        let blob = self
            .db
            .tenant_transaction(tenant, |conn| {
                async move {
                    lock_usage(conn, tenant).await?;
                    let mut query = diesel::delete(storage_objects::table)
                        .filter(storage_objects::bucket_id.eq(bucket.id))
                        .filter(storage_objects::key.eq(key))
                        .into_boxed();
                    if let Some(owner) = only_owner {
                        query = query.filter(storage_objects::owner_id.eq(owner));
                    }
                    let gone: Option<(Uuid, i64)> = query
                        .returning((storage_objects::blob, storage_objects::size))
                        .get_result(conn)
                        .await
                        .optional()?;
                    let (blob, size) = gone.ok_or(StorageError::ObjectNotFound)?;
                    count_usage(conn, tenant, -size, -1, i64::MAX, i64::MAX).await?;
                    mark_garbage(conn, tenant, blob).await?;
                    Ok::<_, StorageError>(blob)
                }
                .scope_boxed()
            })
            .await?;
        self.remove_blob(tenant, blob).await;
        Ok(())
    }

    /// Objects of `bucket` whose keys start with `prefix`, in byte order, after `after` (only
    /// those of `owner`, when given).
    pub async fn list(
        &self,
        tenant: Uuid,
        bucket: &str,
        prefix: &str,
        after: Option<&str>,
        limit: i64,
        owner: Option<Uuid>,
    ) -> Result<ObjectPage, StorageError> {
        let prefix = checked_prefix(prefix)?;
        let limit = limit.clamp(1, 1000);
        let bucket = self.bucket(tenant, bucket).await?;
        let after = after.map(str::to_owned);
        let rows: Vec<ObjectRow> = self
            .db
            .tenant_transaction(tenant, |conn| {
                async move {
                    let mut query = storage_objects::table
                        .filter(storage_objects::bucket_id.eq(bucket.id))
                        .into_boxed();
                    if !prefix.is_empty() {
                        // A range of the primary key: [prefix, prefix + U+10FFFF).
                        query = query
                            .filter(storage_objects::key.ge(prefix.clone()))
                            .filter(storage_objects::key.lt(format!("{prefix}\u{10FFFF}")));
                    }
                    if let Some(after) = after {
                        query = query.filter(storage_objects::key.gt(after));
                    }
                    if let Some(owner) = owner {
                        query = query.filter(storage_objects::owner_id.eq(owner));
                    }
                    query
                        .order(storage_objects::key)
                        .limit(limit + 1)
                        .select(COLUMNS)
                        .load(conn)
                        .await
                        .map_err(StorageError::from)
                }
                .scope_boxed()
            })
            .await?;
        let mut objects: Vec<ObjectInfo> = rows.into_iter().map(|r| info_of(r).1).collect();
        let more = objects.len() > usize::try_from(limit).unwrap_or(1000);
        objects.truncate(usize::try_from(limit).unwrap_or(1000));
        let next = more
            .then(|| objects.last().map(|o| o.key.clone()))
            .flatten();
        Ok(ObjectPage { objects, next })
    }

    /// The tenant's usage and quota.
    pub async fn usage(&self, tenant: Uuid) -> Result<Usage, StorageError> {
        let used: Option<(i64, i64)> = self
            .db
            .tenant_transaction(tenant, |conn| {
                async move {
                    storage_usage::table
                        .select((storage_usage::bytes, storage_usage::objects))
                        .first(conn)
                        .await
                        .optional()
                        .map_err(StorageError::from)
                }
                .scope_boxed()
            })
            .await?;
        let (bytes, objects) = used.unwrap_or((0, 0));
        Ok(Usage {
            bytes,
            objects,
            quota_bytes: self.settings.quota_bytes,
            quota_objects: self.settings.quota_objects,
        })
    }

    /// Records a blob that may exist in the backend without an object.
    pub(crate) async fn mark_blob(
        &self,
        tenant: Uuid,
        blob: Uuid,
        state: &'static str,
    ) -> Result<(), StorageError> {
        self.db
            .tenant_transaction(tenant, |conn| {
                async move {
                    diesel::insert_into(storage_blobs::table)
                        .values((
                            storage_blobs::blob.eq(blob),
                            storage_blobs::tenant_id.eq(tenant),
                            storage_blobs::state.eq(state),
                        ))
                        .execute(conn)
                        .await
                        .map_err(StorageError::from)
                }
                .scope_boxed()
            })
            .await?;
        Ok(())
    }

    /// After a failed upload: the blob goes to garbage (the sweeper finishes if this fails).
    pub(crate) async fn forget_blob(&self, tenant: Uuid, blob: Uuid) {
        self.remove_blob(tenant, blob).await;
    }

    /// Removes a blob's bytes, then its record; on failure the sweeper retries later.
    pub(crate) async fn remove_blob(&self, tenant: Uuid, blob: Uuid) {
        let path = Self::blob_path(tenant, blob);
        match self.store.delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => {
                tracing::warn!(error = %e, %blob, "blob not removed; the sweeper will retry");
                return;
            }
        }
        // On the local disk, a write cut off mid-way leaves its staging file (`<blob>#1`: each
        // blob is written once), which the store neither lists nor deletes.
        if let Some(staged) = self.local_file(&format!("{path}#1"))
            && let Err(e) = tokio::fs::remove_file(&staged).await
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(error = %e, %blob, "staging file not removed; the sweeper will retry");
            return;
        }
        let removed = self
            .db
            .tenant_transaction(tenant, |conn| {
                async move {
                    diesel::delete(storage_blobs::table.find(blob))
                        .execute(conn)
                        .await
                        .map_err(StorageError::from)
                }
                .scope_boxed()
            })
            .await;
        if let Err(e) = removed {
            tracing::warn!(error = %e, %blob, "blob record not removed; the sweeper will retry");
        }
    }
}

/// Locks the tenant's usage row (made if missing) — first, in every transaction that changes
/// objects, so that they all take their locks in one order (usage, then the object) and two of
/// them can never wait on each other.
pub(crate) async fn lock_usage(
    conn: &mut sovereign_db::AsyncPgConnection,
    tenant: Uuid,
) -> Result<(), StorageError> {
    diesel::insert_into(storage_usage::table)
        .values(storage_usage::tenant_id.eq(tenant))
        .on_conflict_do_nothing()
        .execute(conn)
        .await?;
    storage_usage::table
        .find(tenant)
        .select(storage_usage::bytes)
        .for_update()
        .first::<i64>(conn)
        .await?;
    Ok(())
}

/// A range of a local file in chunks of 1 MiB, read by tasks of the blocking pool at their
/// offsets, the next one read while the current one is sent. (The store's own stream reads
/// 8 KiB at a time, and `tokio::fs::File` copies through a buffer of its own: downloads were
/// several times slower than the disk.)
fn file_stream(file: std::fs::File, range: Range<u64>) -> ObjectStream {
    const CHUNK: u64 = 1 << 20;
    let file = Arc::new(file);
    let offsets = (range.start..range.end).step_by(usize::try_from(CHUNK).unwrap_or(1 << 20));
    futures_util::stream::iter(offsets)
        .map(move |at| {
            let file = Arc::clone(&file);
            let wanted = (range.end - at).min(CHUNK);
            async move {
                tokio::task::spawn_blocking(move || -> std::io::Result<Bytes> {
                    let mut buffer = vec![0; usize::try_from(wanted).unwrap_or(0)];
                    std::os::unix::fs::FileExt::read_exact_at(&*file, &mut buffer, at)?;
                    Ok(Bytes::from(buffer))
                })
                .await
                .map_err(|e| StorageError::Backend(e.to_string()))?
                .map_err(|e| StorageError::Backend(format!("read: {e}")))
            }
        })
        .buffered(2)
        .boxed()
}

/// Records `blob` as garbage: bytes no object points at any more, removed after the commit (or
/// by the sweeper).
pub(crate) async fn mark_garbage(
    conn: &mut sovereign_db::AsyncPgConnection,
    tenant: Uuid,
    blob: Uuid,
) -> Result<(), StorageError> {
    diesel::insert_into(storage_blobs::table)
        .values((
            storage_blobs::blob.eq(blob),
            storage_blobs::tenant_id.eq(tenant),
            storage_blobs::state.eq("garbage"),
        ))
        .on_conflict_do_nothing()
        .execute(conn)
        .await?;
    Ok(())
}

/// Adds to the tenant's usage (locked by [`lock_usage`]), refusing what would pass a quota.
pub(crate) async fn count_usage(
    conn: &mut sovereign_db::AsyncPgConnection,
    tenant: Uuid,
    bytes: i64,
    objects: i64,
    quota_bytes: i64,
    quota_objects: i64,
) -> Result<(), StorageError> {
    let updated = diesel::update(storage_usage::table.find(tenant))
        .filter((storage_usage::bytes + bytes).le(quota_bytes))
        .filter((storage_usage::objects + objects).le(quota_objects))
        .set((
            storage_usage::bytes.eq(storage_usage::bytes + bytes),
            storage_usage::objects.eq(storage_usage::objects + objects),
        ))
        .execute(conn)
        .await?;
    if updated == 0 {
        return Err(StorageError::QuotaExceeded);
    }
    Ok(())
}
