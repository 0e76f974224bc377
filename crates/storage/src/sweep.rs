//! The sweeper: blobs recorded as pending (an upload that never finished: the server stopped,
//! the client went away) or garbage (replaced or deleted, whose removal failed) are removed from
//! the backend, then forgotten. Uploads still running are left alone: only records older than
//! `older_than` are taken. Direct uploads past their expiry go the same way, parts and all.

use std::time::Duration;

use chrono::Utc;
use diesel::prelude::*;
use sovereign_db::schema::{storage_blobs, storage_uploads, tenants};
use sovereign_db::{RunQueryDsl, ScopedFutureExt};
use uuid::Uuid;

use crate::{Storage, StorageError};

/// What a sweep removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Swept {
    pub blobs: usize,
    pub uploads: usize,
}

impl Storage {
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
        }
        if swept != Swept::default() {
            tracing::info!(
                blobs = swept.blobs,
                uploads = swept.uploads,
                "storage sweep removed abandoned bytes"
            );
        }
        Ok(swept)
    }
}
