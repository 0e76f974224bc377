//! A held distributed lock.

use std::time::Duration;

use crate::{Cache, CacheError};

/// A lock held until [`Lock::release`], until its lease runs out, or until it is dropped
/// (which releases it in the background). Only the random owner token it carries can release
/// or extend it, so a holder whose lease expired cannot release a lock someone else took since.
#[derive(Debug)]
#[must_use = "dropping a Lock releases it"]
pub struct Lock {
    cache: Cache,
    key: String,
    token: String,
    released: bool,
}

impl Lock {
    pub(crate) fn new(cache: Cache, key: String, token: String) -> Self {
        Self {
            cache,
            key,
            token,
            released: false,
        }
    }

    /// The owner token (random, 128 bits).
    #[must_use]
    pub fn token(&self) -> &str {
        &self.token
    }

    /// Renews the lease to `lease` from now; false when the lock is no longer ours (the lease
    /// ran out and someone else may hold it).
    pub async fn extend(&self, lease: Duration) -> Result<bool, CacheError> {
        self.cache.extend_key(&self.key, &self.token, lease).await
    }

    /// Releases the lock; false when it was no longer ours.
    pub async fn release(mut self) -> Result<bool, CacheError> {
        self.released = true;
        self.cache.release_key(&self.key, &self.token).await
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        if self.released {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            // Outside a runtime the lease expiry releases it.
            return;
        };
        let cache = self.cache.clone();
        let key = std::mem::take(&mut self.key);
        let token = std::mem::take(&mut self.token);
        runtime.spawn(async move {
            if let Err(e) = cache.release_key(&key, &token).await {
                tracing::warn!(error = %e, "releasing a dropped lock failed; its lease will expire");
            }
        });
    }
}
