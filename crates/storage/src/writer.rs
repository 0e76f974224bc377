//! Writing a blob from a stream: the SHA-256 and the size computed on the way, the limit
//! enforced as soon as it is passed, the bytes sent to the backend in parts — 1 MiB on the local
//! disk, 5 MiB (S3's smallest) on S3 — at most two in flight per write. Parts in flight, across
//! every write of the process, share one memory budget: when it is spent, writes wait for parts
//! to land, and their clients for TCP to drain, instead of the server growing. A body that fits
//! in one part is one `PUT`.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use object_store::path::Path;
use object_store::{MultipartUpload, ObjectStoreExt, PutPayload};
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;
use tokio::task::{JoinError, JoinSet};

use crate::{Storage, StorageError};

/// Bytes of parts in flight the process allows, all writes together.
pub(crate) const BUDGET_BYTES: usize = 16 << 20;
/// Budget permits are kibibytes.
const UNIT: usize = 1 << 10;
/// Parts in flight per write.
const IN_FLIGHT: usize = 2;

/// The shared budget.
pub(crate) fn budget() -> Arc<Semaphore> {
    Arc::new(Semaphore::new(BUDGET_BYTES / UNIT))
}

/// A part's outcome, a panicked or cancelled task counted as a failure.
fn joined(done: Result<object_store::Result<()>, JoinError>) -> object_store::Result<()> {
    done.unwrap_or_else(|e| {
        Err(object_store::Error::Generic {
            store: "upload",
            source: Box::new(e),
        })
    })
}

impl Storage {
    /// A part's size on this backend.
    fn part_bytes(&self) -> usize {
        if self.s3.is_some() { 5 << 20 } else { 1 << 20 }
    }

    /// Streams `body` into the blob at `path`: (size, SHA-256); nothing left behind on failure
    /// (a multipart upload is aborted; a staging file on the local disk goes with the sweeper).
    pub(crate) async fn write_blob<S, E>(
        &self,
        path: &Path,
        mut body: S,
        limit: u64,
    ) -> Result<(u64, [u8; 32]), StorageError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let part = self.part_bytes();
        let mut hasher = Sha256::new();
        let mut size: u64 = 0;
        let mut pending: Vec<Bytes> = Vec::new();
        let mut pending_len = 0;
        let mut upload: Option<Box<dyn MultipartUpload>> = None;
        // Spawned: a part lands while this write reads the next one (and gives its budget back).
        let mut in_flight = JoinSet::new();
        let failure = loop {
            let chunk = match body.next().await {
                None => break None,
                Some(Err(e)) => break Some(StorageError::Interrupted(e.to_string())),
                Some(Ok(chunk)) => chunk,
            };
            size += chunk.len() as u64;
            if size > limit {
                break Some(StorageError::TooLarge { limit });
            }
            hasher.update(&chunk);
            pending_len += chunk.len();
            pending.push(chunk);
            if pending_len < part {
                continue;
            }
            // A full part: make room for it (this write's share, then the process's budget).
            let mut landed: object_store::Result<()> = Ok(());
            while in_flight.len() >= IN_FLIGHT && landed.is_ok() {
                if let Some(done) = in_flight.join_next().await {
                    landed = joined(done);
                }
            }
            if let Err(e) = landed {
                break Some(e.into());
            }
            let writer = match &mut upload {
                Some(writer) => writer,
                None => match self.store.put_multipart(path).await {
                    Ok(writer) => upload.insert(writer),
                    Err(e) => break Some(e.into()),
                },
            };
            let units = u32::try_from(pending_len.div_ceil(UNIT)).unwrap_or(u32::MAX);
            let Ok(permit) = Arc::clone(&self.budget).acquire_many_owned(units).await else {
                break Some(StorageError::Backend(
                    "the upload budget is closed".to_owned(),
                ));
            };
            let payload: PutPayload = std::mem::take(&mut pending).into_iter().collect();
            pending_len = 0;
            let sending = writer.put_part(payload);
            in_flight.spawn(async move {
                let done = sending.await;
                drop(permit);
                done
            });
        };
        // The parts already sent must land (or fail) before completing or aborting.
        let mut sent = Ok(());
        while let Some(done) = in_flight.join_next().await {
            if let Err(e) = joined(done) {
                sent = Err(e);
            }
        }
        let outcome = match (failure, sent) {
            (Some(e), _) => Err(e),
            (None, Err(e)) => Err(e.into()),
            (None, Ok(())) => Ok(()),
        };
        let stored = match (outcome, upload) {
            (Err(e), Some(mut writer)) => {
                let _ = writer.abort().await;
                return Err(e);
            }
            (Err(e), None) => return Err(e),
            (Ok(()), None) => {
                let payload: PutPayload = pending.into_iter().collect();
                self.store.put(path, payload).await.map(|_| ())
            }
            (Ok(()), Some(mut writer)) => {
                let last = if pending.is_empty() {
                    Ok(())
                } else {
                    writer.put_part(pending.into_iter().collect()).await
                };
                match last {
                    Ok(()) => writer.complete().await.map(|_| ()),
                    Err(e) => {
                        let _ = writer.abort().await;
                        Err(e)
                    }
                }
            }
        };
        stored.map_err(StorageError::from)?;
        Ok((size, hasher.finalize().into()))
    }
}
