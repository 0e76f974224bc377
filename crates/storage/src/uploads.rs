//! Direct uploads: the client declares the object (key, size, type), gets one signed URL per
//! part — presigned `PUT`s to the S3 store itself, or this server's signed URLs on the local
//! disk — sends the parts in any order, in parallel, again if one failed, then completes. Parts
//! are written under `<tenant>/uploads/<id>/<n>`; `complete` checks every part's size,
//! streams them in order into a new blob (computing the SHA-256) and makes it the object in the
//! same transaction as any other write. Asking for the upload again lists what arrived and
//! gives fresh URLs for the rest (resumable), and renews its expiry; the sweeper removes
//! uploads left past their expiry, parts and all.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use futures_util::{StreamExt, TryStreamExt};
use object_store::ObjectStoreExt;
use object_store::path::Path;
use object_store::signer::{Method, Signer};
use serde::{Deserialize, Serialize};
use sovereign_db::schema::storage_uploads;
use sovereign_db::{RunQueryDsl, ScopedFutureExt};
use uuid::Uuid;

use crate::buckets::BucketRef;
use crate::grants::Grant;
use crate::keys::object_key;
use crate::objects::Put;
use crate::{ObjectInfo, Storage, StorageError};

/// Parts are this size unless the upload asks otherwise (one part up to this size).
pub const DEFAULT_PART_BYTES: u64 = 16 << 20;
/// The smallest part size an upload may ask for (the last part may be smaller).
pub const MIN_PART_BYTES: u64 = 1 << 20;
/// The most parts an upload may have.
pub const MAX_PARTS: u64 = 10_000;
/// The largest part (S3's largest).
pub const MAX_PART_BYTES: u64 = 5 << 30;
/// Uploads in progress one account may have.
pub const MAX_OPEN_UPLOADS: i64 = 100;
/// However often it is renewed, an upload ends this long after it was declared.
const MAX_LIFETIME: chrono::TimeDelta = chrono::TimeDelta::days(7);

/// An upload to declare.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({
    "key": "videos/launch.mp4", "size": 104857600, "content_type": "video/mp4"
})))]
pub struct NewUpload {
    pub key: String,
    /// The object's exact size in bytes.
    pub size: u64,
    pub content_type: String,
    /// User metadata (a JSON object).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub metadata: serde_json::Map<String, serde_json::Value>,
    /// Bytes per part: at least 1 MiB; default 16 MiB (one part up to 16 MiB).
    #[serde(default)]
    pub part_size: Option<u64>,
    /// Refuse to complete if the key exists by then.
    #[serde(default)]
    pub create_only: bool,
}

/// An upload in progress: its parts, which of them arrived, and where to send the others.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Upload {
    pub id: Uuid,
    pub bucket: String,
    pub key: String,
    pub size: u64,
    pub content_type: String,
    pub part_size: u64,
    pub owner_id: Option<Uuid>,
    pub expires_at: DateTime<Utc>,
    pub parts: Vec<Part>,
}

/// One part of an upload.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Part {
    /// From 1.
    pub number: u32,
    /// Its exact size in bytes.
    pub size: u64,
    /// It arrived whole.
    pub received: bool,
    /// Where to `PUT` it while it has not arrived (until `expires_at`).
    pub url: Option<String>,
    /// The token of this server's signed URL for it (`url` is made from it by the HTTP layer);
    /// `None` when `url` is the store's own presigned URL.
    #[serde(skip)]
    pub token: Option<String>,
}

/// id, bucket, key, size, part size, type, metadata, owner, create-only, expiry.
type UploadRow = (
    Uuid,
    Uuid,
    String,
    i64,
    i64,
    String,
    serde_json::Value,
    Option<Uuid>,
    bool,
    DateTime<Utc>,
);

const COLUMNS: (
    storage_uploads::id,
    storage_uploads::bucket_id,
    storage_uploads::key,
    storage_uploads::size,
    storage_uploads::part_size,
    storage_uploads::content_type,
    storage_uploads::metadata,
    storage_uploads::owner_id,
    storage_uploads::create_only,
    storage_uploads::expires_at,
) = (
    storage_uploads::id,
    storage_uploads::bucket_id,
    storage_uploads::key,
    storage_uploads::size,
    storage_uploads::part_size,
    storage_uploads::content_type,
    storage_uploads::metadata,
    storage_uploads::owner_id,
    storage_uploads::create_only,
    storage_uploads::expires_at,
);

/// How many parts of `part_size` make `size` bytes (an empty object is one empty part).
fn part_count(size: u64, part_size: u64) -> u64 {
    size.div_ceil(part_size).max(1)
}

/// The size of part `number` (from 1).
fn part_bytes(size: u64, part_size: u64, number: u64) -> u64 {
    size.saturating_sub((number - 1) * part_size).min(part_size)
}

impl Storage {
    fn part_path(tenant: Uuid, upload: Uuid, number: u32) -> Path {
        Path::from(format!(
            "{}/uploads/{}/{number}",
            tenant.simple(),
            upload.simple()
        ))
    }

    pub(crate) fn parts_prefix(tenant: Uuid, upload: Uuid) -> Path {
        Path::from(format!("{}/uploads/{}", tenant.simple(), upload.simple()))
    }

    /// Declares an upload of `new.key` into `bucket` by `owner`: refused at once when the
    /// bucket would refuse the object (type, size) or the quota has no room for it.
    pub async fn create_upload(
        &self,
        tenant: Uuid,
        bucket: &str,
        new: NewUpload,
        owner: Option<Uuid>,
    ) -> Result<Upload, StorageError> {
        let key = object_key(&new.key)?;
        let bucket = self.bucket(tenant, bucket).await?;
        let limit = self.admits(&bucket, &new.content_type)?;
        if new.size > limit {
            return Err(StorageError::TooLarge { limit });
        }
        let part_size = match new.part_size {
            Some(p) if !(MIN_PART_BYTES..=MAX_PART_BYTES).contains(&p) => {
                return Err(StorageError::invalid(
                    "part_size",
                    "out_of_range",
                    format!("must be {MIN_PART_BYTES} to {MAX_PART_BYTES} bytes"),
                ));
            }
            Some(p) => p,
            None if new.size <= DEFAULT_PART_BYTES => new.size.max(1),
            None => DEFAULT_PART_BYTES,
        };
        if part_count(new.size, part_size) > MAX_PARTS {
            return Err(StorageError::invalid(
                "part_size",
                "too_many_parts",
                format!("makes more than {MAX_PARTS} parts; choose larger parts"),
            ));
        }
        let usage = self.usage(tenant).await?;
        let size = i64::try_from(new.size).map_err(|_| StorageError::TooLarge { limit })?;
        if usage.bytes.saturating_add(size) > usage.quota_bytes
            || usage.objects >= usage.quota_objects
        {
            return Err(StorageError::QuotaExceeded);
        }
        let expires_at = Utc::now() + self.settings.url_lifetime;
        let id = Uuid::now_v7();
        let part_size_i = i64::try_from(part_size).unwrap_or(i64::MAX);
        let row: UploadRow = self
            .db
            .tenant_transaction(tenant, |conn| {
                async move {
                    if let Some(owner) = owner {
                        let open: i64 = storage_uploads::table
                            .filter(storage_uploads::owner_id.eq(owner))
                            .filter(storage_uploads::expires_at.gt(diesel::dsl::now))
                            .count()
                            .get_result(conn)
                            .await?;
                        if open >= MAX_OPEN_UPLOADS {
                            return Err(StorageError::QuotaExceeded);
                        }
                    }
                    diesel::insert_into(storage_uploads::table)
                        .values((
                            storage_uploads::id.eq(id),
                            storage_uploads::tenant_id.eq(tenant),
                            storage_uploads::bucket_id.eq(bucket.id),
                            storage_uploads::key.eq(key),
                            storage_uploads::size.eq(size),
                            storage_uploads::part_size.eq(part_size_i),
                            storage_uploads::content_type.eq(new.content_type),
                            storage_uploads::metadata.eq(serde_json::Value::Object(new.metadata)),
                            storage_uploads::owner_id.eq(owner),
                            storage_uploads::create_only.eq(new.create_only),
                            storage_uploads::expires_at.eq(expires_at),
                        ))
                        .returning(COLUMNS)
                        .get_result(conn)
                        .await
                        .map_err(StorageError::from)
                }
                .scope_boxed()
            })
            .await?;
        self.describe(tenant, bucket.name, row, &BTreeMap::new())
            .await
    }

    /// An upload: which parts arrived, fresh URLs for the others; its expiry renewed (never
    /// past a week after it was declared).
    pub async fn upload(&self, tenant: Uuid, id: Uuid) -> Result<Upload, StorageError> {
        let now = Utc::now();
        let renewed = now + self.settings.url_lifetime;
        let row: Option<UploadRow> = self
            .db
            .tenant_transaction(tenant, |conn| {
                async move {
                    let created: Option<DateTime<Utc>> = storage_uploads::table
                        .find(id)
                        .filter(storage_uploads::expires_at.gt(now))
                        .select(storage_uploads::created_at)
                        .first(conn)
                        .await
                        .optional()?;
                    let Some(created) = created else {
                        return Ok(None);
                    };
                    diesel::update(storage_uploads::table.find(id))
                        .set(storage_uploads::expires_at.eq(renewed.min(created + MAX_LIFETIME)))
                        .returning(COLUMNS)
                        .get_result(conn)
                        .await
                        .optional()
                        .map_err(StorageError::from)
                }
                .scope_boxed()
            })
            .await?;
        let row = row.ok_or(StorageError::UploadNotFound)?;
        let bucket = self.find_bucket(tenant, BucketRef::Id(row.1)).await?;
        let received = self.received_parts(tenant, id).await?;
        self.describe(tenant, bucket.name, row, &received).await
    }

    async fn upload_row(&self, tenant: Uuid, id: Uuid) -> Result<UploadRow, StorageError> {
        let row: Option<UploadRow> = self
            .db
            .tenant_transaction(tenant, |conn| {
                async move {
                    storage_uploads::table
                        .find(id)
                        .select(COLUMNS)
                        .first(conn)
                        .await
                        .optional()
                        .map_err(StorageError::from)
                }
                .scope_boxed()
            })
            .await?;
        match row {
            Some(row) if row.9 > Utc::now() => Ok(row),
            _ => Err(StorageError::UploadNotFound),
        }
    }

    /// The parts in the store, by number, with their sizes.
    async fn received_parts(
        &self,
        tenant: Uuid,
        id: Uuid,
    ) -> Result<BTreeMap<u32, u64>, StorageError> {
        let listed: Vec<object_store::ObjectMeta> = self
            .store
            .list(Some(&Self::parts_prefix(tenant, id)))
            .try_collect()
            .await?;
        Ok(listed
            .into_iter()
            .filter_map(|meta| {
                let number = meta.location.filename()?.parse().ok()?;
                Some((number, meta.size))
            })
            .collect())
    }

    async fn describe(
        &self,
        tenant: Uuid,
        bucket: String,
        row: UploadRow,
        received: &BTreeMap<u32, u64>,
    ) -> Result<Upload, StorageError> {
        let (id, _, key, size, part_size, content_type, _, owner_id, _, expires_at) = row;
        let (size, part_size) = (
            u64::try_from(size).unwrap_or(0),
            u64::try_from(part_size).unwrap_or(1),
        );
        let lifetime = (expires_at - Utc::now()).to_std().unwrap_or_default();
        let mut parts = Vec::new();
        for number in 1..=part_count(size, part_size) {
            let bytes = part_bytes(size, part_size, number);
            let number = u32::try_from(number).unwrap_or(u32::MAX);
            let arrived = received.get(&number) == Some(&bytes);
            let (url, token) = match (&self.s3, arrived) {
                (_, true) => (None, None),
                (Some(s3), false) => {
                    let path = Self::part_path(tenant, id, number);
                    let url = s3.signed_url(Method::PUT, &path, lifetime).await?;
                    (Some(url.to_string()), None)
                }
                (None, false) => {
                    let grant = Grant::Part {
                        tenant,
                        upload: id,
                        part: number,
                    };
                    (None, Some(self.url_key.sign(grant, expires_at)))
                }
            };
            parts.push(Part {
                number,
                size: bytes,
                received: arrived,
                url,
                token,
            });
        }
        Ok(Upload {
            id,
            bucket,
            key,
            size,
            content_type,
            part_size,
            owner_id,
            expires_at,
            parts,
        })
    }

    /// Writes part `number` of upload `id` with the token [`Upload`] gave for it: exactly the
    /// part's size (413 past it). A token for any other part is refused before a byte is read.
    pub async fn put_part<S, E>(
        &self,
        token: &str,
        id: Uuid,
        number: u32,
        body: S,
    ) -> Result<(), StorageError>
    where
        S: futures_util::Stream<Item = Result<bytes::Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let Grant::Part {
            tenant,
            upload,
            part,
        } = self.url_key.verify(token, Utc::now())?
        else {
            return Err(StorageError::SignatureInvalid);
        };
        if (upload, part) != (id, number) {
            return Err(StorageError::SignatureInvalid);
        }
        let row = self.upload_row(tenant, upload).await?;
        let (size, part_size) = (
            u64::try_from(row.3).unwrap_or(0),
            u64::try_from(row.4).unwrap_or(1),
        );
        if u64::from(part) > part_count(size, part_size) || part == 0 {
            return Err(StorageError::SignatureInvalid);
        }
        let expected = part_bytes(size, part_size, u64::from(part));
        let path = Self::part_path(tenant, upload, part);
        match self.write_blob(&path, body, expected, Some(expected)).await {
            Ok((written, _)) if written == expected => {
                // Aborted, completed or swept while the part arrived: it is nobody's now.
                if let Err(e) = self.upload_row(tenant, upload).await {
                    let _ = self.store.delete(&path).await;
                    return Err(e);
                }
                Ok(())
            }
            Ok((written, _)) => {
                let _ = self.store.delete(&path).await;
                Err(StorageError::invalid(
                    "body",
                    "part_size",
                    format!("part {part} is {expected} bytes, not {written}"),
                ))
            }
            Err(e) => Err(e),
        }
    }

    /// Makes the upload the object, once every part arrived whole: the bucket's name and the
    /// object. `only_owner`: refuse to replace another account's object, as with
    /// [`Put::only_owner`].
    pub async fn complete_upload(
        &self,
        tenant: Uuid,
        id: Uuid,
        only_owner: Option<Uuid>,
    ) -> Result<(String, ObjectInfo), StorageError> {
        let (row, until) = self.claim(tenant, id).await?;
        let completed = self.assemble(tenant, id, row, only_owner).await;
        if completed.is_err() {
            self.release(tenant, id, until).await;
        }
        completed
    }

    /// Claims the upload for one completion: refused while another one runs (its claim lapses
    /// after 15 minutes, should it die).
    async fn claim(
        &self,
        tenant: Uuid,
        id: Uuid,
    ) -> Result<(UploadRow, DateTime<Utc>), StorageError> {
        let now = Utc::now();
        let until = now + chrono::Duration::minutes(15);
        let claimed: Option<UploadRow> = self
            .db
            .tenant_transaction(tenant, |conn| {
                async move {
                    diesel::update(storage_uploads::table.find(id))
                        .filter(storage_uploads::expires_at.gt(now))
                        .filter(
                            storage_uploads::completing_until
                                .is_null()
                                .or(storage_uploads::completing_until.lt(now)),
                        )
                        .set(storage_uploads::completing_until.eq(until))
                        .returning(COLUMNS)
                        .get_result(conn)
                        .await
                        .optional()
                        .map_err(StorageError::from)
                }
                .scope_boxed()
            })
            .await?;
        match claimed {
            Some(row) => Ok((row, until)),
            None => {
                // Missing or expired, or claimed by a completion that is running.
                self.upload_row(tenant, id).await?;
                Err(StorageError::UploadBusy)
            }
        }
    }

    /// Gives up this completion's claim, `until` (the completion failed; the upload stays for
    /// another try) — not a later one's.
    async fn release(&self, tenant: Uuid, id: Uuid, until: DateTime<Utc>) {
        let released = self
            .db
            .tenant_transaction(tenant, |conn| {
                async move {
                    diesel::update(storage_uploads::table.find(id))
                        .filter(storage_uploads::completing_until.eq(until))
                        .set(storage_uploads::completing_until.eq(None::<DateTime<Utc>>))
                        .execute(conn)
                        .await
                        .map_err(StorageError::from)
                }
                .scope_boxed()
            })
            .await;
        if let Err(e) = released {
            tracing::warn!(error = %e, upload = %id, "completion claim not released; it lapses");
        }
    }

    async fn assemble(
        &self,
        tenant: Uuid,
        id: Uuid,
        row: UploadRow,
        only_owner: Option<Uuid>,
    ) -> Result<(String, ObjectInfo), StorageError> {
        let (_, bucket_id, key, size, part_size, content_type, metadata, owner, create_only, _) =
            row;
        let (total, part_size) = (
            u64::try_from(size).unwrap_or(0),
            u64::try_from(part_size).unwrap_or(1),
        );
        let received = self.received_parts(tenant, id).await?;
        let count = part_count(total, part_size);
        let missing: Vec<String> = (1..=count)
            .filter(|&n| {
                let number = u32::try_from(n).unwrap_or(u32::MAX);
                received.get(&number) != Some(&part_bytes(total, part_size, n))
            })
            .map(|n| n.to_string())
            .collect();
        if !missing.is_empty() {
            return Err(StorageError::UploadIncomplete(format!(
                "parts {} have not arrived whole",
                missing.join(", ")
            )));
        }
        let bucket = self.find_bucket(tenant, BucketRef::Id(bucket_id)).await?;
        let limit = self.admits(&bucket, &content_type)?;
        let store = self.store.clone();
        let parts = futures_util::stream::iter(1..=count)
            .then(move |n| {
                let store = store.clone();
                let path = Self::part_path(tenant, id, u32::try_from(n).unwrap_or(u32::MAX));
                async move { store.get(&path).await.map(|r| r.into_stream()) }
            })
            .try_flatten()
            .boxed();
        let stored = self.store_blob(tenant, parts, limit, Some(total)).await?;
        if stored.size != size {
            self.forget_blob(tenant, stored.blob).await;
            return Err(StorageError::UploadIncomplete(
                "the parts changed while completing".to_owned(),
            ));
        }
        let metadata = match metadata {
            serde_json::Value::Object(map) => map,
            _ => serde_json::Map::new(),
        };
        let put = Put {
            content_type,
            owner,
            metadata,
            create_only,
            only_owner,
            length: Some(total),
        };
        let info = self.commit(tenant, bucket.id, key, stored, put).await?;
        self.remove_upload(tenant, id).await;
        Ok((bucket.name, info))
    }

    /// Abandons an upload: its parts and its record go.
    pub async fn abort_upload(&self, tenant: Uuid, id: Uuid) -> Result<(), StorageError> {
        self.upload_row(tenant, id).await?;
        self.remove_upload(tenant, id).await;
        Ok(())
    }

    /// Removes an upload's parts, then its record (kept for the sweeper if the parts stay).
    pub(crate) async fn remove_upload(&self, tenant: Uuid, id: Uuid) {
        let received = match self.received_parts(tenant, id).await {
            Ok(parts) => parts,
            Err(e) => {
                tracing::warn!(error = %e, upload = %id, "parts not listed; the sweeper will retry");
                return;
            }
        };
        for number in received.keys() {
            match self
                .store
                .delete(&Self::part_path(tenant, id, *number))
                .await
            {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => {
                    tracing::warn!(error = %e, upload = %id, "part not removed; the sweeper will retry");
                    return;
                }
            }
        }
        // On the local disk, the directory goes too, with the staging file of a part cut off
        // mid-way (which the store does not list).
        if let Some(dir) = self.local_file(Self::parts_prefix(tenant, id).as_ref())
            && let Err(e) = tokio::fs::remove_dir_all(&dir).await
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(error = %e, upload = %id, "parts not removed; the sweeper will retry");
            return;
        }
        let removed = self
            .db
            .tenant_transaction(tenant, |conn| {
                async move {
                    diesel::delete(storage_uploads::table.find(id))
                        .execute(conn)
                        .await
                        .map_err(StorageError::from)
                }
                .scope_boxed()
            })
            .await;
        if let Err(e) = removed {
            tracing::warn!(error = %e, upload = %id, "upload record not removed");
        }
    }

    /// The owner of an upload (for the caller's authorization).
    pub async fn upload_owner(&self, tenant: Uuid, id: Uuid) -> Result<Option<Uuid>, StorageError> {
        Ok(self.upload_row(tenant, id).await?.7)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_cover_the_object_exactly() {
        assert_eq!(part_count(0, 5), 1);
        assert_eq!(part_bytes(0, 5, 1), 0);
        assert_eq!(part_count(10, 5), 2);
        assert_eq!(part_count(11, 5), 3);
        assert_eq!(
            (1..=3).map(|n| part_bytes(11, 5, n)).collect::<Vec<_>>(),
            [5, 5, 1]
        );
    }
}
