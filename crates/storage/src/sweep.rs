//! The sweeper: blobs recorded as pending (an upload that never finished: the server stopped,
//! the client went away) or garbage (replaced or deleted, whose removal failed) are removed from
//! the backend, then forgotten. Uploads still running are left alone: only records older than
//! `older_than` are taken. Direct uploads past their expiry go the same way, parts and all, and
//! so do parts left under `<tenant>/uploads/` with no upload record (a presigned `PUT` that
//! landed after its upload ended).

use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use futures_util::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStoreExt};
use sovereign_db::schema::{storage_blobs, storage_uploads, tenants};
use sovereign_db::{RunQueryDsl, ScopedFutureExt};
use uuid::Uuid;

use crate::{Storage, StorageError};

/// What a sweep removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Swept {
    pub blobs: usize,
    pub uploads: usize,
    /// Parts of uploads that have no record any more (a presigned `PUT` that landed after its
    /// upload was completed, aborted or swept).
    pub orphan_parts: usize,
}

impl Storage {
    /// Removes the parts under `<tenant>/uploads/` of uploads without a record whose every part
    /// is older than `cutoff`: how many.
    async fn sweep_orphan_parts(
        &self,
        tenant: Uuid,
        cutoff: DateTime<Utc>,
    ) -> Result<usize, StorageError> {
        let root = Path::from(format!("{}/uploads", tenant.simple()));
        let listed = self.store.list_with_delimiter(Some(&root)).await?;
        let ids: Vec<Uuid> = listed
            .common_prefixes
            .iter()
            .filter_map(|prefix| Uuid::try_parse(prefix.filename()?).ok())
            .collect();
        if ids.is_empty() {
            return Ok(0);
        }
        let wanted = ids.clone();
        let live: Vec<Uuid> = self
            .db
            .tenant_transaction(tenant, |conn| {
                async move {
                    storage_uploads::table
                        .filter(storage_uploads::id.eq_any(wanted))
                        .select(storage_uploads::id)
                        .load(conn)
                        .await
                        .map_err(StorageError::from)
                }
                .scope_boxed()
            })
            .await?;
        let mut removed = 0;
        for id in ids.into_iter().filter(|id| !live.contains(id)) {
            let parts: Vec<ObjectMeta> = self
                .store
                .list(Some(&Self::parts_prefix(tenant, id)))
                .try_collect()
                .await?;
            if parts.iter().any(|part| part.last_modified >= cutoff) {
                continue;
            }
            for part in &parts {
                match self.store.delete(&part.location).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => removed += 1,
                    Err(e) => tracing::warn!(error = %e, upload = %id, "orphan part not removed"),
                }
            }
            if let Some(dir) = self.local_file(Self::parts_prefix(tenant, id).as_ref()) {
                let _ = tokio::fs::remove_dir_all(dir).await;
            }
        }
        Ok(removed)
    }

    /// Removes every pending or garbage blob recorded more than `older_than` ago, and every
    /// upload expired for longer than that (its parts too), in every tenant.
    pub async fn sweep(&self, older_than: Duration) -> Result<Swept, StorageError> {
        let cutoff =
            Utc::now() - chrono::Duration::from_std(older_than).unwrap_or(chrono::Duration::zero());
        let tenant_ids: Vec<Uuid> = self
            .db
            .transaction(|conn| {
                async move {
                    tenants::table
                        .select(tenants::id)
                        .load(conn)
                        .await
                        .map_err(StorageError::from)
                }
                .scope_boxed()
            })
            .await?;
        let mut swept = Swept::default();
        for tenant in tenant_ids {
            // Blobs recorded before the cutoff, and uploads expired before it.
            let (blobs, uploads): (Vec<Uuid>, Vec<Uuid>) = self
                .db
                .tenant_transaction(tenant, |conn| {
                    async move {
                        let blobs = storage_blobs::table
                            .filter(storage_blobs::created_at.lt(cutoff))
                            .select(storage_blobs::blob)
                            .limit(10_000)
                            .load(conn)
                            .await?;
                        // Not one a completion is assembling.
                        let uploads = storage_uploads::table
                            .filter(storage_uploads::expires_at.lt(cutoff))
                            .filter(
                                storage_uploads::completing_until
                                    .is_null()
                                    .or(storage_uploads::completing_until.lt(diesel::dsl::now)),
                            )
                            .select(storage_uploads::id)
                            .limit(10_000)
                            .load(conn)
                            .await?;
                        Ok::<_, StorageError>((blobs, uploads))
                    }
                    .scope_boxed()
                })
                .await?;
            for blob in blobs {
                self.remove_blob(tenant, blob).await;
                swept.blobs += 1;
            }
            for upload in uploads {
                self.remove_upload(tenant, upload).await;
                swept.uploads += 1;
            }
            swept.orphan_parts += self.sweep_orphan_parts(tenant, cutoff).await?;
        }
        if swept != Swept::default() {
            tracing::info!(
                blobs = swept.blobs,
                uploads = swept.uploads,
                orphan_parts = swept.orphan_parts,
                "storage sweep removed abandoned bytes"
            );
        }
        Ok(swept)
    }
}
