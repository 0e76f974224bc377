#![doc = include_str!("../README.md")]

mod error;
mod flight;
pub mod limiter;
mod lock;
pub mod log;
mod memory;
mod pubsub;
mod redis;
mod settings;

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;

pub use error::CacheError;
pub use limiter::{Decision, Quota, RateKey, RateLimiter};
pub use lock::Lock;
pub use log::{LogEntry, LogPosition, Replay};
pub use pubsub::{Message, Subscription};
pub use settings::CacheSettings;

use flight::Flights;
use memory::MemoryBackend;
use redis::RedisBackend;

/// Which backend a cache uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendKind {
    Redis,
    Memory,
}

impl BackendKind {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Redis => "redis",
            Self::Memory => "memory",
        }
    }
}

/// The result of a successful health check.
#[derive(Debug, Clone, Copy)]
pub struct Health {
    pub backend: BackendKind,
    pub latency: Duration,
}

#[derive(Debug, Clone)]
enum Backend {
    Redis(Arc<RedisBackend>),
    Memory(Arc<MemoryBackend>),
}

/// A namespaced handle on the cache. Cloning is cheap; clones share the backend.
///
/// Keys are stored as `<prefix>:<key>`, and under [`Cache::tenant`] as
/// `<prefix>:t:<tenant>:<key>`, so data belonging to one tenant can never be read through
/// another tenant's handle. Values are JSON.
#[derive(Debug, Clone)]
pub struct Cache {
    backend: Backend,
    root: Arc<str>,
    namespace: Arc<str>,
    flights: Arc<Flights>,
}

impl Cache {
    /// Redis when `settings.url` is set, otherwise the in-process backend. Redis connections
    /// are opened lazily: a server that is down now is reported by the first call, not here.
    pub fn new(settings: &CacheSettings) -> Result<Self, CacheError> {
        let backend = match &settings.url {
            Some(url) => Backend::Redis(Arc::new(RedisBackend::new(url, settings)?)),
            None => Backend::Memory(Arc::new(MemoryBackend::new(settings.memory_capacity))),
        };
        Ok(Self::with_backend(backend, &settings.prefix))
    }

    fn with_backend(backend: Backend, prefix: &str) -> Self {
        let root: Arc<str> = Arc::from(format!("{prefix}:"));
        Self {
            backend,
            namespace: Arc::clone(&root),
            root,
            flights: Arc::new(Flights::default()),
        }
    }

    /// An in-process cache with default settings and the given prefix.
    #[must_use]
    pub fn in_memory(prefix: &str) -> Self {
        let capacity = CacheSettings::default().memory_capacity;
        Self::with_backend(
            Backend::Memory(Arc::new(MemoryBackend::new(capacity))),
            prefix,
        )
    }

    /// The backend in use.
    #[must_use]
    pub fn backend(&self) -> BackendKind {
        match self.backend {
            Backend::Redis(_) => BackendKind::Redis,
            Backend::Memory(_) => BackendKind::Memory,
        }
    }

    /// The namespace every key of this handle starts with, e.g. `sovereign:t:42:`.
    #[must_use]
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// A handle whose keys belong to `tenant`: `<prefix>:t:<tenant>:…`. Always derived from the
    /// application prefix, never nested inside another tenant.
    #[must_use]
    pub fn tenant(&self, tenant: impl fmt::Display) -> Self {
        self.with_namespace(format!("{}t:{tenant}:", self.root))
    }

    /// A handle for one part of the application inside this handle's namespace, e.g.
    /// `cache.scoped("sessions")` stores under `<namespace>sessions:`.
    #[must_use]
    pub fn scoped(&self, segment: &str) -> Self {
        self.with_namespace(format!("{}{segment}:", self.namespace))
    }

    fn with_namespace(&self, namespace: String) -> Self {
        Self {
            backend: self.backend.clone(),
            root: Arc::clone(&self.root),
            namespace: Arc::from(namespace),
            flights: Arc::clone(&self.flights),
        }
    }

    fn key(&self, key: &str) -> String {
        let mut full = String::with_capacity(self.namespace.len() + key.len());
        full.push_str(&self.namespace);
        full.push_str(key);
        full
    }

    /// The value stored at `key`, if any and not expired.
    pub async fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, CacheError> {
        let key = self.key(key);
        let bytes = match &self.backend {
            Backend::Redis(r) => r.get(&key).await?,
            Backend::Memory(m) => m.get(&key).await,
        };
        bytes
            .map(|b| serde_json::from_slice(&b).map_err(CacheError::from))
            .transpose()
    }

    /// Stores `value` at `key`, replacing what was there; `ttl: None` keeps it until deleted
    /// or evicted.
    pub async fn set<T: Serialize + ?Sized>(
        &self,
        key: &str,
        value: &T,
        ttl: Option<Duration>,
    ) -> Result<(), CacheError> {
        let key = self.key(key);
        let bytes = serde_json::to_vec(value)?;
        match &self.backend {
            Backend::Redis(r) => r.set(&key, &bytes, ttl).await,
            Backend::Memory(m) => {
                m.set(&key, &bytes, ttl).await;
                Ok(())
            }
        }
    }

    /// Stores `value` only when `key` holds nothing; true when it was stored.
    pub async fn set_if_absent<T: Serialize + ?Sized>(
        &self,
        key: &str,
        value: &T,
        ttl: Option<Duration>,
    ) -> Result<bool, CacheError> {
        let key = self.key(key);
        let bytes = serde_json::to_vec(value)?;
        self.raw_set_if_absent(&key, &bytes, ttl).await
    }

    async fn raw_set_if_absent(
        &self,
        full_key: &str,
        bytes: &[u8],
        ttl: Option<Duration>,
    ) -> Result<bool, CacheError> {
        match &self.backend {
            Backend::Redis(r) => r.set_if_absent(full_key, bytes, ttl).await,
            Backend::Memory(m) => Ok(m.set_if_absent(full_key, bytes, ttl).await),
        }
    }

    /// Removes `key`; true when something was removed.
    pub async fn delete(&self, key: &str) -> Result<bool, CacheError> {
        let key = self.key(key);
        match &self.backend {
            Backend::Redis(r) => r.delete(&key).await,
            Backend::Memory(m) => Ok(m.delete(&key).await),
        }
    }

    /// True when `key` holds a live value.
    pub async fn exists(&self, key: &str) -> Result<bool, CacheError> {
        let key = self.key(key);
        match &self.backend {
            Backend::Redis(r) => r.exists(&key).await,
            Backend::Memory(m) => Ok(m.exists(&key).await),
        }
    }

    /// The cached value, or the result of `compute`, stored for `ttl`. Concurrent callers for
    /// one key in this process wait for a single computation instead of each running it.
    ///
    /// The cache is an accelerator here, not a dependency: when it fails, the failure is logged
    /// and `compute` runs anyway, so only `compute`'s own errors reach the caller.
    pub async fn get_or_compute<T, E, F, Fut>(
        &self,
        key: &str,
        ttl: Option<Duration>,
        compute: F,
    ) -> Result<T, E>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        if let Some(value) = self.cached(key).await {
            return Ok(value);
        }
        let full_key = self.key(key);
        let _flight = self.flights.enter(&full_key).await;
        // Whoever held the flight before us may have filled the key.
        if let Some(value) = self.cached(key).await {
            return Ok(value);
        }
        let value = compute().await?;
        if let Err(e) = self.set(key, &value, ttl).await {
            tracing::warn!(error = %e, "cache: storing a computed value failed");
        }
        Ok(value)
    }

    async fn cached<T: DeserializeOwned>(&self, key: &str) -> Option<T> {
        self.get(key)
            .await
            .inspect_err(|e| tracing::warn!(error = %e, "cache: read failed; computing instead"))
            .ok()
            .flatten()
    }

    /// Removes every key of this namespace matching the glob `pattern` (`*` and `?`), with
    /// SCAN and UNLINK in bounded batches on Redis (never `KEYS`). Returns how many were removed.
    pub async fn clear(&self, pattern: &str) -> Result<u64, CacheError> {
        match &self.backend {
            Backend::Redis(r) => {
                let full = format!("{}{pattern}", escape_glob(&self.namespace));
                r.clear(&full).await
            }
            Backend::Memory(m) => Ok(m.clear(&self.namespace, pattern).await),
        }
    }

    /// Adds `by` to the integer at `key` atomically and returns the new value. A missing key
    /// counts from 0; `ttl` is applied when the counter is created (a fixed window), and
    /// later increments do not extend it.
    pub async fn increment(
        &self,
        key: &str,
        by: i64,
        ttl: Option<Duration>,
    ) -> Result<i64, CacheError> {
        let key = self.key(key);
        match &self.backend {
            Backend::Redis(r) => r.increment(&key, by, ttl).await,
            Backend::Memory(m) => m.increment(&key, by, ttl).await,
        }
    }

    /// Subtracts `by` atomically; see [`Cache::increment`].
    pub async fn decrement(
        &self,
        key: &str,
        by: i64,
        ttl: Option<Duration>,
    ) -> Result<i64, CacheError> {
        let by = by
            .checked_neg()
            .ok_or_else(|| CacheError::Command("decrement would overflow".to_owned()))?;
        self.increment(key, by, ttl).await
    }

    /// Takes the lock `name` for `lease` if nobody holds it. The returned [`Lock`] carries a
    /// random owner token; only that token releases or extends it, and dropping the lock
    /// releases it.
    pub async fn try_lock(&self, name: &str, lease: Duration) -> Result<Option<Lock>, CacheError> {
        let key = self.key(&format!("lock:{name}"));
        let token = uuid::Uuid::new_v4().simple().to_string();
        if self
            .raw_set_if_absent(&key, token.as_bytes(), Some(lease))
            .await?
        {
            Ok(Some(Lock::new(self.clone(), key, token)))
        } else {
            Ok(None)
        }
    }

    /// Takes the lock `name`, retrying with jittered backoff for up to `wait`;
    /// [`CacheError::LockBusy`] when it stays held.
    pub async fn lock(
        &self,
        name: &str,
        lease: Duration,
        wait: Duration,
    ) -> Result<Lock, CacheError> {
        let deadline = Instant::now() + wait;
        let mut delay = Duration::from_millis(5);
        loop {
            if let Some(lock) = self.try_lock(name, lease).await? {
                return Ok(lock);
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(CacheError::LockBusy(name.to_owned()));
            }
            let jitter = Duration::from_micros(rand::random_range(0..=delay.as_micros() as u64));
            tokio::time::sleep((delay / 2 + jitter).min(deadline - now)).await;
            delay = (delay * 2).min(Duration::from_millis(100));
        }
    }

    /// Runs `work` while holding the lock `name`, and releases it afterwards — also when
    /// `work` panics or the future is dropped.
    pub async fn with_lock<T, F, Fut>(
        &self,
        name: &str,
        lease: Duration,
        wait: Duration,
        work: F,
    ) -> Result<T, CacheError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = T>,
    {
        let lock = self.lock(name, lease, wait).await?;
        let result = work().await;
        lock.release().await?;
        Ok(result)
    }

    /// Releases the lock `name` only if `token` owns it (compare-and-delete); true when released.
    pub async fn release_lock(&self, name: &str, token: &str) -> Result<bool, CacheError> {
        let key = self.key(&format!("lock:{name}"));
        self.release_key(&key, token).await
    }

    pub(crate) async fn release_key(
        &self,
        full_key: &str,
        token: &str,
    ) -> Result<bool, CacheError> {
        match &self.backend {
            Backend::Redis(r) => r.release_if_owner(full_key, token.as_bytes()).await,
            Backend::Memory(m) => Ok(m.release_if_owner(full_key, token.as_bytes()).await),
        }
    }

    pub(crate) async fn extend_key(
        &self,
        full_key: &str,
        token: &str,
        lease: Duration,
    ) -> Result<bool, CacheError> {
        match &self.backend {
            Backend::Redis(r) => r.extend_if_owner(full_key, token.as_bytes(), lease).await,
            Backend::Memory(m) => Ok(m.extend_if_owner(full_key, token.as_bytes(), lease).await),
        }
    }

    /// Publishes `message` (as JSON) on `channel` in this namespace; returns how many
    /// subscribers received it (on Redis: across every instance).
    pub async fn publish<T: Serialize + ?Sized>(
        &self,
        channel: &str,
        message: &T,
    ) -> Result<u64, CacheError> {
        let full = self.key(channel);
        let payload = serde_json::to_vec(message)?;
        match &self.backend {
            Backend::Redis(r) => r.publish(&full, &payload).await,
            Backend::Memory(m) => Ok(m.publish(&full, Message::new(channel, &payload))),
        }
    }

    /// Subscribes to `channel` in this namespace. The subscription is active when this
    /// returns; see [`Subscription`] for what happens when the connection is lost.
    pub async fn subscribe(&self, channel: &str) -> Result<Subscription, CacheError> {
        let full = self.key(channel);
        match &self.backend {
            Backend::Redis(r) => r.subscribe(&full, channel.to_owned()).await,
            Backend::Memory(m) => Ok(m.subscribe(&full, channel.to_owned())),
        }
    }

    /// Takes the value at `key`: returns it and removes it in one atomic step, so of several
    /// concurrent callers exactly one gets it (single-use tokens).
    pub async fn take<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, CacheError> {
        let full = self.key(key);
        let bytes = match &self.backend {
            Backend::Redis(r) => r.take(&full).await?,
            Backend::Memory(m) => m.take(&full).await,
        };
        bytes
            .map(|b| serde_json::from_slice(&b))
            .transpose()
            .map_err(CacheError::from)
    }

    /// Appends `data` to the log `log` (see [`log`]), keeping its newest `retain` entries for
    /// `ttl` after this append, and — when `channel` is given — publishes the entry there in its
    /// [`LogEntry::encode`] form, atomically with the append, so subscribers see entries in
    /// offset order.
    pub async fn log_append(
        &self,
        log: &str,
        data: &[u8],
        retain: usize,
        ttl: Duration,
        channel: Option<&str>,
    ) -> Result<LogEntry, CacheError> {
        let full = self.key(log);
        match &self.backend {
            Backend::Redis(r) => {
                let channel = channel.map(|c| self.key(c));
                r.log_append(&full, data, retain, ttl, channel.as_deref())
                    .await
            }
            Backend::Memory(m) => {
                let channel = channel.map(|c| (self.key(c), c));
                Ok(m.log_append(
                    &full,
                    data,
                    retain,
                    ttl,
                    channel.as_ref().map(|(full, c)| (full.as_str(), *c)),
                ))
            }
        }
    }

    /// What a reader at `(since_epoch, since_offset)` missed: every later entry in order, or a
    /// gap when the log no longer covers it. A log that does not exist yet is started empty
    /// (with a new epoch) and lives `ttl`, so the position returned can be resumed from.
    pub async fn log_replay(
        &self,
        log: &str,
        since_epoch: &str,
        since_offset: u64,
        ttl: Duration,
    ) -> Result<Replay, CacheError> {
        let full = self.key(log);
        let (position, oldest, entries) = match &self.backend {
            Backend::Redis(r) => r.log_read(&full, since_offset, ttl).await?,
            Backend::Memory(m) => m.log_read(&full, since_offset, ttl),
        };
        Ok(log::replay(
            position,
            oldest,
            since_epoch,
            since_offset,
            entries,
        ))
    }

    /// The log's current position (starting it empty when it does not exist).
    pub async fn log_position(&self, log: &str, ttl: Duration) -> Result<LogPosition, CacheError> {
        let full = self.key(log);
        let (position, ..) = match &self.backend {
            Backend::Redis(r) => r.log_read(&full, u64::MAX >> 11, ttl).await?,
            Backend::Memory(m) => m.log_read(&full, u64::MAX, ttl),
        };
        Ok(position)
    }

    /// Adds (or renews) `members` of the expiring set `set`: each stays for `ttl` unless renewed.
    /// Returns how many live members the set has.
    pub async fn members_add(
        &self,
        set: &str,
        members: &[String],
        ttl: Duration,
    ) -> Result<u64, CacheError> {
        let full = self.key(set);
        match &self.backend {
            Backend::Redis(r) => r.members_add(&full, members, ttl).await,
            Backend::Memory(m) => Ok(m.members_add(&full, members, ttl)),
        }
    }

    /// Removes `members` from the expiring set `set`.
    pub async fn members_remove(&self, set: &str, members: &[String]) -> Result<(), CacheError> {
        let full = self.key(set);
        match &self.backend {
            Backend::Redis(r) => r.members_remove(&full, members).await,
            Backend::Memory(m) => {
                m.members_remove(&full, members);
                Ok(())
            }
        }
    }

    /// The live members of the expiring set `set`, in no particular order.
    pub async fn members(&self, set: &str) -> Result<Vec<String>, CacheError> {
        let full = self.key(set);
        match &self.backend {
            Backend::Redis(r) => r.members(&full).await,
            Backend::Memory(m) => Ok(m.members(&full)),
        }
    }

    /// Round-trip check; bypasses the short-circuit that follows failures, so it is also how
    /// recovery is noticed early.
    pub async fn health(&self) -> Result<Health, CacheError> {
        let backend = self.backend();
        let latency = match &self.backend {
            Backend::Redis(r) => r.ping().await?,
            Backend::Memory(_) => Duration::ZERO,
        };
        Ok(Health { backend, latency })
    }

    pub(crate) async fn gcra(
        &self,
        full_key: &str,
        emission_us: u64,
        tolerance_us: u64,
        cost: u64,
    ) -> Result<(bool, u64, u64), CacheError> {
        match &self.backend {
            Backend::Redis(r) => r.gcra(full_key, emission_us, tolerance_us, cost).await,
            Backend::Memory(m) => Ok(m.gcra(full_key, emission_us, tolerance_us, cost).await),
        }
    }
}

/// Escapes Redis glob metacharacters so a namespace matches only itself.
fn escape_glob(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_nest_under_the_prefix_and_tenants_never_nest() {
        let cache = Cache::in_memory("app");
        assert_eq!(cache.namespace(), "app:");
        let a = cache.tenant("a");
        assert_eq!(a.namespace(), "app:t:a:");
        assert_eq!(a.tenant("b").namespace(), "app:t:b:");
        assert_eq!(a.scoped("sessions").namespace(), "app:t:a:sessions:");
        assert_eq!(a.key("x"), "app:t:a:x");
    }

    #[test]
    fn glob_metacharacters_in_namespaces_are_escaped() {
        assert_eq!(escape_glob("a*b?[c]\\:"), "a\\*b\\?\\[c\\]\\\\:");
    }
}
