//! Copy, move, delete by prefix, and metadata changes. A copy writes a new blob (the store
//! copies it, the bytes never pass through here) and commits it like any write; a move changes
//! only the metadata row, in one transaction with the replaced object's removal. Every change
//! locks the tenant's usage row first (as writes do), so rows read here cannot change under it.

use diesel::prelude::*;
use object_store::ObjectStoreExt;
use sovereign_db::schema::storage_objects;
use sovereign_db::{RunQueryDsl, ScopedFutureExt};
use uuid::Uuid;

use crate::keys::{object_key, prefix as checked_prefix};
use crate::objects::{
    COLUMNS, ObjectRow, Put, Stored, count_usage, info_of, lock_usage, mark_garbage,
};
use crate::{ObjectInfo, Storage, StorageError};

/// Where a copy or a move goes, and how.
#[derive(Debug, Clone, Default)]
pub struct Destination {
    /// The bucket (default: the source's).
    pub bucket: Option<String>,
    pub key: String,
    /// Refuse if the key exists.
    pub create_only: bool,
    /// Refuse to replace an object that is not this account's.
    pub only_owner: Option<Uuid>,
    /// The new object's owner (a copy; a move keeps its owner).
    pub owner: Option<Uuid>,
}

/// Changes to an object's metadata.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({"metadata": {"caption": "At the launch"}})))]
pub struct ObjectChanges {
    /// Replaces the user metadata (a JSON object).
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub metadata: Option<serde_json::Map<String, serde_json::Value>>,
    /// A new content type (one the bucket accepts).
    pub content_type: Option<String>,
}

fn sha256_bytes(hex: &str) -> Vec<u8> {
    (0..hex.len() / 2)
        .filter_map(|i| u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok())
        .collect()
}

impl Storage {
    /// Copies `key` of `bucket` to `to` (the source must be readable by the caller).
    pub async fn copy(
        &self,
        tenant: Uuid,
        bucket: &str,
        key: &str,
        to: Destination,
    ) -> Result<ObjectInfo, StorageError> {
        let (source_blob, info) = self.row(tenant, bucket, key).await?;
        let target = self
            .bucket(tenant, to.bucket.as_deref().unwrap_or(bucket))
            .await?;
        let target_key = object_key(&to.key)?;
        let limit = self.admits(&target, &info.content_type)?;
        if u64::try_from(info.size).unwrap_or(u64::MAX) > limit {
            return Err(StorageError::TooLarge { limit });
        }
        let blob = Uuid::now_v7();
        self.mark_blob(tenant, blob, "pending").await?;
        let copied = self
            .store
            .copy(
                &Self::blob_path(tenant, source_blob),
                &Self::blob_path(tenant, blob),
            )
            .await;
        if let Err(e) = copied {
            self.forget_blob(tenant, blob).await;
            return Err(e.into());
        }
        let stored = Stored {
            blob,
            size: info.size,
            sha256: sha256_bytes(&info.sha256),
        };
        let metadata = match info.metadata {
            serde_json::Value::Object(map) => map,
            _ => serde_json::Map::new(),
        };
        let put = Put {
            content_type: info.content_type,
            owner: to.owner,
            metadata,
            create_only: to.create_only,
            only_owner: to.only_owner,
            length: None,
        };
        self.commit(tenant, target.id, target_key, stored, put)
            .await
    }

    /// Moves `key` of `bucket` to `to`: the same bytes under another name, in one transaction
    /// (an object replaced at the destination is removed). `only_owner` also limits the source.
    pub async fn rename(
        &self,
        tenant: Uuid,
        bucket: &str,
        key: &str,
        to: Destination,
    ) -> Result<ObjectInfo, StorageError> {
        let source_key = object_key(key)?;
        let source = self.bucket(tenant, bucket).await?;
        let target = match &to.bucket {
            Some(name) if name != bucket => self.bucket(tenant, name).await?,
            _ => source.clone(),
        };
        let target_key = object_key(&to.key)?;
        let target_rules = target.clone();
        let this = self.clone();
        let (row, replaced) = self
            .db
            .tenant_transaction(tenant, |conn| {
                async move {
                    lock_usage(conn, tenant).await?;
                    let mut query = storage_objects::table
                        .filter(storage_objects::bucket_id.eq(source.id))
                        .filter(storage_objects::key.eq(&source_key))
                        .select(COLUMNS)
                        .into_boxed();
                    if let Some(me) = to.only_owner {
                        query = query.filter(storage_objects::owner_id.eq(me));
                    }
                    let found: ObjectRow = query
                        .first(conn)
                        .await
                        .optional()?
                        .ok_or(StorageError::ObjectNotFound)?;
                    let (_, info) = info_of(found.clone());
                    let max = this.admits(&target_rules, &info.content_type)?;
                    if u64::try_from(info.size).unwrap_or(u64::MAX) > max {
                        return Err(StorageError::TooLarge { limit: max });
                    }
                    if source.id == target_rules.id && source_key == target_key {
                        return Ok((found, None));
                    }
                    let existing: Option<(Uuid, i64, Option<Uuid>)> = storage_objects::table
                        .filter(storage_objects::bucket_id.eq(target_rules.id))
                        .filter(storage_objects::key.eq(&target_key))
                        .select((
                            storage_objects::blob,
                            storage_objects::size,
                            storage_objects::owner_id,
                        ))
                        .for_update()
                        .first(conn)
                        .await
                        .optional()?;
                    let mut replaced = None;
                    if let Some((old_blob, old_size, holder)) = existing {
                        if to.create_only {
                            return Err(StorageError::ObjectExists);
                        }
                        if to.only_owner.is_some_and(|me| holder != Some(me)) {
                            return Err(StorageError::NotOwner);
                        }
                        diesel::delete(
                            storage_objects::table
                                .filter(storage_objects::bucket_id.eq(target_rules.id))
                                .filter(storage_objects::key.eq(&target_key)),
                        )
                        .execute(conn)
                        .await?;
                        count_usage(conn, tenant, -old_size, -1, i64::MAX, i64::MAX).await?;
                        mark_garbage(conn, tenant, old_blob).await?;
                        replaced = Some(old_blob);
                    }
                    let row: ObjectRow = diesel::update(
                        storage_objects::table
                            .filter(storage_objects::bucket_id.eq(source.id))
                            .filter(storage_objects::key.eq(&source_key)),
                    )
                    .set((
                        storage_objects::bucket_id.eq(target_rules.id),
                        storage_objects::key.eq(&target_key),
                        storage_objects::updated_at.eq(diesel::dsl::now),
                    ))
                    .returning(COLUMNS)
                    .get_result(conn)
                    .await?;
                    Ok((row, replaced))
                }
                .scope_boxed()
            })
            .await?;
        if let Some(old) = replaced {
            self.remove_blob(tenant, old).await;
        }
        Ok(info_of(row).1)
    }

    /// Deletes every object of `bucket` under `prefix` (only `only_owner`'s, when given), in
    /// batches of 1,000, each one transaction; how many went.
    pub async fn delete_prefix(
        &self,
        tenant: Uuid,
        bucket: &str,
        prefix: &str,
        only_owner: Option<Uuid>,
    ) -> Result<u64, StorageError> {
        let prefix = checked_prefix(prefix)?;
        let bucket = self.bucket(tenant, bucket).await?;
        let mut deleted = 0;
        loop {
            let prefix = prefix.clone();
            let gone: Vec<(Uuid, i64)> = self
                .db
                .tenant_transaction(tenant, |conn| {
                    async move {
                        lock_usage(conn, tenant).await?;
                        let mut query = storage_objects::table
                            .filter(storage_objects::bucket_id.eq(bucket.id))
                            .filter(storage_objects::key.ge(prefix.clone()))
                            .filter(storage_objects::key.lt(format!("{prefix}\u{10FFFF}")))
                            .select(storage_objects::key)
                            .order(storage_objects::key)
                            .limit(1000)
                            .into_boxed();
                        if let Some(me) = only_owner {
                            query = query.filter(storage_objects::owner_id.eq(me));
                        }
                        let keys: Vec<String> = query.load(conn).await?;
                        let gone: Vec<(Uuid, i64)> = diesel::delete(
                            storage_objects::table
                                .filter(storage_objects::bucket_id.eq(bucket.id))
                                .filter(storage_objects::key.eq_any(&keys)),
                        )
                        .returning((storage_objects::blob, storage_objects::size))
                        .get_results(conn)
                        .await?;
                        let bytes: i64 = gone.iter().map(|(_, size)| size).sum();
                        let count = i64::try_from(gone.len()).unwrap_or(i64::MAX);
                        count_usage(conn, tenant, -bytes, -count, i64::MAX, i64::MAX).await?;
                        for (blob, _) in &gone {
                            mark_garbage(conn, tenant, *blob).await?;
                        }
                        Ok::<_, StorageError>(gone)
                    }
                    .scope_boxed()
                })
                .await?;
            for (blob, _) in &gone {
                self.remove_blob(tenant, *blob).await;
            }
            deleted += gone.len() as u64;
            if gone.len() < 1000 {
                return Ok(deleted);
            }
        }
    }

    /// Changes an object's metadata or content type (`only_owner`: only that account's).
    pub async fn update(
        &self,
        tenant: Uuid,
        bucket: &str,
        key: &str,
        changes: ObjectChanges,
        only_owner: Option<Uuid>,
    ) -> Result<ObjectInfo, StorageError> {
        let key = object_key(key)?;
        let bucket = self.bucket(tenant, bucket).await?;
        if let Some(content_type) = &changes.content_type {
            self.admits(&bucket, content_type)?;
        }
        let row: Option<ObjectRow> = self
            .db
            .tenant_transaction(tenant, |conn| {
                async move {
                    lock_usage(conn, tenant).await?;
                    let target = storage_objects::table
                        .filter(storage_objects::bucket_id.eq(bucket.id))
                        .filter(storage_objects::key.eq(&key));
                    let mut query = storage_objects::table
                        .filter(storage_objects::bucket_id.eq(bucket.id))
                        .filter(storage_objects::key.eq(&key))
                        .select(COLUMNS)
                        .into_boxed();
                    if let Some(me) = only_owner {
                        query = query.filter(storage_objects::owner_id.eq(me));
                    }
                    let Some(found) = query.first::<ObjectRow>(conn).await.optional()? else {
                        return Ok(None);
                    };
                    let metadata = changes.metadata.map_or(found.5, serde_json::Value::Object);
                    let content_type = changes.content_type.unwrap_or(found.3);
                    diesel::update(target)
                        .set((
                            storage_objects::metadata.eq(metadata),
                            storage_objects::content_type.eq(content_type),
                            storage_objects::updated_at.eq(diesel::dsl::now),
                        ))
                        .returning(COLUMNS)
                        .get_result(conn)
                        .await
                        .optional()
                        .map_err(StorageError::from)
                }
                .scope_boxed()
            })
            .await?;
        row.map(|r| info_of(r).1)
            .ok_or(StorageError::ObjectNotFound)
    }
}
