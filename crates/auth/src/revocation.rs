//! Each instance's memory of live credentials, and how revocations reach every instance.
//!
//! The database is the source of truth: a credential is live while its session (or key) row is
//! unrevoked and its account active. To keep the hot path off the database, each instance
//! remembers what it loaded for [`ENTRY_TTL`]. Whoever revokes something writes the database
//! first, then publishes a [`Revocation`] on the cache's pub/sub channel [`CHANNEL`]; every
//! instance (the publisher included) drops the matching entries on receipt.
//!
//! When delivery cannot be trusted the memory is not used: before the first subscription is
//! established; while the cache is failing (the rate limiter reports degraded); and while this
//! instance's own heartbeat, published every second on the same channel, has not come back for
//! [`HEARTBEAT_GRACE`] (a frozen Redis). Everything is forgotten after a re-subscription, a
//! dropped message, or a lapse of the heartbeat. The TTL bounds the rest.

use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sovereign_cache::{Cache, RateLimiter};
use sovereign_tenancy::Tenant;
use uuid::Uuid;

use crate::model::Principal;

/// The pub/sub channel revocations travel on.
pub const CHANNEL: &str = "auth:revocations";
/// Longest an instance trusts what it remembers without asking the database.
pub const ENTRY_TTL: Duration = Duration::from_secs(15);
/// How often each instance publishes a heartbeat on [`CHANNEL`].
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(1);
/// Memory is not used when the instance's last heartbeat came back longer ago than this.
pub const HEARTBEAT_GRACE: Duration = Duration::from_millis(2500);

/// What travels on [`CHANNEL`]: revocations, and heartbeats that prove the channel works.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(untagged)]
enum Wire {
    Revocation(Revocation),
    Heartbeat { heartbeat: Uuid },
}

/// Something that stopped being valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "id", rename_all = "snake_case")]
pub enum Revocation {
    /// One session ended.
    Session(Uuid),
    /// Anything about this account changed (role, status, password, profile, deletion).
    User(Uuid),
    /// An API key was revoked.
    ApiKey(Uuid),
    /// A tenant was suspended or deleted.
    Tenant(Uuid),
}

/// What a credential is remembered by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CredentialKey {
    Session(Uuid),
    ApiKey([u8; 32]),
}

impl Hash for CredentialKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        match self {
            Self::Session(id) => id.hash(state),
            Self::ApiKey(digest) => digest.hash(state),
        }
    }
}

/// A remembered, verified credential.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub principal: Principal,
    pub tenant: Tenant,
    /// The API key's id, for key revocations.
    pub api_key: Option<Uuid>,
    pub expires_at: Option<DateTime<Utc>>,
}

impl Entry {
    fn matches(&self, revocation: Revocation) -> bool {
        match revocation {
            Revocation::Session(id) => matches!(
                self.principal.credential,
                crate::model::Credential::Session { id: sid } if sid == id
            ),
            Revocation::User(id) => self.principal.user.id == id,
            Revocation::ApiKey(id) => self.api_key == Some(id),
            Revocation::Tenant(id) => self.tenant.id == id,
        }
    }
}

/// The per-instance memory.
#[derive(Clone)]
pub(crate) struct LocalCredentials {
    entries: moka::future::Cache<CredentialKey, Entry>,
    /// Set once the subscription is up, cleared when it ends.
    listening: Arc<AtomicBool>,
    limiter: Option<Arc<RateLimiter>>,
    /// This instance, as its heartbeats name it.
    instance: Uuid,
    /// When this instance's last heartbeat came back, in milliseconds since `epoch`.
    last_heartbeat: Arc<AtomicU64>,
    epoch: Instant,
}

impl LocalCredentials {
    pub fn new(limiter: Option<Arc<RateLimiter>>) -> Self {
        Self {
            entries: moka::future::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(ENTRY_TTL)
                .support_invalidation_closures()
                .build(),
            listening: Arc::new(AtomicBool::new(false)),
            limiter,
            instance: Uuid::new_v4(),
            last_heartbeat: Arc::new(AtomicU64::new(0)),
            epoch: Instant::now(),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn heartbeat_fresh(&self) -> bool {
        let grace = u64::try_from(HEARTBEAT_GRACE.as_millis()).unwrap_or(u64::MAX);
        self.now_ms()
            .saturating_sub(self.last_heartbeat.load(Ordering::Acquire))
            < grace
    }

    /// Records that the channel works now; after a lapse, forgets everything first.
    fn heartbeat_seen(&self) {
        if !self.heartbeat_fresh() {
            self.forget_all();
        }
        self.last_heartbeat.store(self.now_ms(), Ordering::Release);
    }

    /// Whether remembered entries may be used now.
    pub fn trusted(&self) -> bool {
        self.listening.load(Ordering::Acquire)
            && self.heartbeat_fresh()
            && !self.limiter.as_ref().is_some_and(|l| l.is_degraded())
    }

    pub async fn get(&self, key: &CredentialKey) -> Option<Entry> {
        if !self.trusted() {
            return None;
        }
        self.entries.get(key).await
    }

    pub async fn remember(&self, key: CredentialKey, entry: Entry) {
        if self.trusted() {
            self.entries.insert(key, entry).await;
        }
    }

    /// Drops every entry `revocation` concerns. moka applies the predicate to later reads at
    /// once, and removes the entries in the background.
    pub fn forget(&self, revocation: Revocation) {
        if let Err(e) = self
            .entries
            .invalidate_entries_if(move |_, e| e.matches(revocation))
        {
            tracing::error!(error = %e, "cannot drop remembered credentials; forgetting all");
            self.forget_all();
        }
    }

    fn forget_all(&self) {
        self.entries.invalidate_all();
    }

    /// Subscribes to [`CHANNEL`] and applies revocations until the cache handle is gone.
    /// Re-subscribes with backoff when the subscription cannot be made or ends.
    pub fn listen(&self, cache: Cache) {
        let beating = self.clone();
        let beat_cache = cache.clone();
        tokio::spawn(async move {
            let beat = Wire::Heartbeat {
                heartbeat: beating.instance,
            };
            loop {
                tokio::time::sleep(HEARTBEAT_EVERY).await;
                if let Err(e) = beat_cache.publish(CHANNEL, &beat).await {
                    tracing::debug!(error = %e, "revocation heartbeat not published");
                }
            }
        });
        let local = self.clone();
        tokio::spawn(async move {
            let mut backoff = Duration::from_millis(100);
            loop {
                match cache.subscribe(CHANNEL).await {
                    Ok(mut subscription) => {
                        backoff = Duration::from_millis(100);
                        local.heartbeat_seen();
                        local.forget_all();
                        local.listening.store(true, Ordering::Release);
                        let (mut resubscribed, mut dropped) =
                            (subscription.resubscribed(), subscription.dropped());
                        while let Some(message) = subscription.next_message().await {
                            if subscription.resubscribed() != resubscribed
                                || subscription.dropped() != dropped
                            {
                                // Revocations may have been missed: trust nothing remembered.
                                local.forget_all();
                                resubscribed = subscription.resubscribed();
                                dropped = subscription.dropped();
                            }
                            match message.decode::<Wire>() {
                                Ok(Wire::Revocation(revocation)) => local.forget(revocation),
                                Ok(Wire::Heartbeat { heartbeat }) => {
                                    if heartbeat == local.instance {
                                        local.heartbeat_seen();
                                    }
                                }
                                Err(e) => {
                                    tracing::warn!(error = %e, "unreadable revocation message");
                                    local.forget_all();
                                }
                            }
                        }
                        local.listening.store(false, Ordering::Release);
                        local.forget_all();
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot subscribe to revocations; not remembering credentials");
                    }
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        });
    }
}
