//! Writing a blob from a stream: the SHA-256 and the size computed on the way, the limit
//! enforced as soon as it is passed, the bytes sent to the backend in parts — 1 MiB on the local
//! disk, 5 MiB (S3's smallest) on S3 — at most two in flight per write.
//!
//! Every byte a write holds — the part it is filling and the parts in flight — comes out of one
//! memory budget for the whole process (`STORAGE_UPLOAD_MEMORY_MIB`). A write reserves a part's
//! worth (or what is left of a body of known length) before it starts filling one, so it never
//! waits for budget while holding some; when the budget is spent, writes wait, and their clients
//! for TCP to drain, instead of the server growing. A write that holds a reservation and gets no
//! byte for 30 s is cut off, so stalled clients cannot keep the budget. A body that fits in one
//! part is one `PUT`.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use object_store::path::Path;
use object_store::{MultipartUpload, ObjectStoreExt, PutPayload};
use sha2::{Digest, Sha256};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::{JoinError, JoinSet};

use crate::{Storage, StorageError};

/// Budget permits are kibibytes.
const UNIT: u64 = 1 << 10;
/// Parts in flight per write.
const IN_FLIGHT: usize = 2;
/// How long a write holding budget waits for its client's next bytes, and a write for budget.
const IDLE: Duration = Duration::from_secs(30);

/// The shared budget of `bytes`.
pub(crate) fn budget(bytes: u64) -> Arc<Semaphore> {
    let units = usize::try_from(bytes / UNIT).unwrap_or(Semaphore::MAX_PERMITS);
    Arc::new(Semaphore::new(units.min(Semaphore::MAX_PERMITS)))
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
    fn part_bytes(&self) -> u64 {
        if self.s3.is_some() { 5 << 20 } else { 1 << 20 }
    }

    /// Reserves `bytes` of the budget (at least one unit).
    async fn reserve(&self, bytes: u64) -> Result<OwnedSemaphorePermit, StorageError> {
        let units = u32::try_from(bytes.div_ceil(UNIT).max(1)).unwrap_or(u32::MAX);
        // Never a hang: past the wait, `storage_busy` (503, Retry-After).
        tokio::time::timeout(IDLE, Arc::clone(&self.budget).acquire_many_owned(units))
            .await
            .map_err(|_| StorageError::Busy)?
            .map_err(|_| StorageError::Backend("the upload memory budget is closed".to_owned()))
    }

    /// Streams `body` (of `length` bytes, when known) into the blob at `path`: (size, SHA-256);
    /// nothing left behind on failure (a multipart upload is aborted; a staging file on the
    /// local disk goes with the sweeper).
    pub(crate) async fn write_blob<S, E>(
        &self,
        path: &Path,
        mut body: S,
        limit: u64,
        length: Option<u64>,
    ) -> Result<(u64, [u8; 32]), StorageError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let part = self.part_bytes();
        let mut hasher = Sha256::new();
        let mut size: u64 = 0;
        let mut pending: Vec<Bytes> = Vec::new();
        let mut pending_len: u64 = 0;
        let mut held: Option<OwnedSemaphorePermit> = None;
        let mut upload: Option<Box<dyn MultipartUpload>> = None;
        // Spawned: a part lands while this write reads the next one (and gives its budget back).
        let mut in_flight = JoinSet::new();
        let failure = loop {
            if held.is_none() {
                // About to fill a part: its memory first (a part, or what is left of the body).
                let left = length.map_or(part, |l| l.saturating_sub(size).min(part));
                match self.reserve(left).await {
                    Ok(permit) => held = Some(permit),
                    Err(e) => break Some(e),
                }
            }
            let chunk = match tokio::time::timeout(IDLE, body.next()).await {
                Err(_) => {
                    break Some(StorageError::Interrupted(format!(
                        "no bytes for {} s",
                        IDLE.as_secs()
                    )));
                }
                Ok(None) => break None,
                Ok(Some(Err(e))) => break Some(StorageError::Interrupted(e.to_string())),
                Ok(Some(Ok(chunk))) => chunk,
            };
            size += chunk.len() as u64;
            if size > limit {
                break Some(StorageError::TooLarge { limit });
            }
            hasher.update(&chunk);
            pending_len += chunk.len() as u64;
            pending.push(chunk);
            if pending_len < part {
                continue;
            }
            // A full part: this write's share of parts in flight first.
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
            let payload: PutPayload = std::mem::take(&mut pending).into_iter().collect();
            pending_len = 0;
            let sending = writer.put_part(payload);
            let permit = held.take();
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
        drop(held);
        stored.map_err(StorageError::from)?;
        Ok((size, hasher.finalize().into()))
    }
}
