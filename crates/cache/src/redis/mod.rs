//! The Redis/Valkey backend: a deadpool-redis pool of multiplexed connections with bounded
//! waits, every command under the operation timeout, Lua scripts for the compare-and-act
//! operations, and a dedicated connection per subscription (deadpool pools no pub/sub
//! connections).
//!
//! After a connectivity failure the backend short-circuits calls for [`COOLDOWN`], so a
//! stopped server costs one timeout, not one per request; health checks always go through.
//!
//! Here: the connections, the bounded call every operation goes through, and the key-value,
//! counter, lock and rate-limit operations. The Lua sources are in [`scripts`], logs and
//! expiring sets in [`streams`], publishing and subscriptions in [`subscribe`].

mod scripts;
mod streams;
mod subscribe;

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use deadpool_redis::{Connection, Pool, PoolConfig, Runtime, Timeouts};
use redis::aio::MultiplexedConnection;
use redis::{AsyncCommands, AsyncConnectionConfig};
use sovereign_core::settings::SecretUrl;

use crate::CacheSettings;
use crate::error::CacheError;
use scripts::Scripts;

/// How long calls are refused after a connectivity failure before the server is tried again.
pub(crate) const COOLDOWN: Duration = Duration::from_millis(500);
/// Keys per SCAN step and per UNLINK when clearing by pattern.
const CLEAR_BATCH: usize = 1000;
/// Messages a slow subscriber may fall behind by before it starts missing them.
const SUBSCRIBER_QUEUE: usize = 1024;

pub(crate) struct RedisBackend {
    pool: Pool,
    client: redis::Client,
    timeout: Duration,
    connect_timeout: Duration,
    scripts: Scripts,
    epoch: Instant,
    /// Milliseconds since `epoch` until which calls are short-circuited.
    open_until_ms: AtomicU64,
    /// Multiplexed connections taken from the pool once and shared by every call, round robin.
    /// A pooled checkout would cost a PING per call (deadpool-redis recycles with one), halving
    /// throughput; the pool remains the bounded factory that refills a slot after a failure.
    slots: Box<[Mutex<Option<MultiplexedConnection>>]>,
    next_slot: AtomicUsize,
}

impl std::fmt::Debug for RedisBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBackend")
            .field("pool", &self.pool.status())
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl RedisBackend {
    /// Builds the pool; connects lazily, so a server that is down at start-up is not an error.
    pub(crate) fn new(url: &SecretUrl, options: &CacheSettings) -> Result<Self, CacheError> {
        let client =
            redis::Client::open(url.expose()).map_err(|e| CacheError::Config(e.to_string()))?;
        let connection_config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(options.connect_timeout))
            .set_response_timeout(Some(options.timeout));
        let manager = deadpool_redis::Manager::new_with_config(url.expose(), connection_config)
            .map_err(|e| CacheError::Config(e.to_string()))?;
        let mut pool_config = PoolConfig::new(options.pool_max_size.max(1));
        pool_config.timeouts = Timeouts {
            wait: Some(options.timeout),
            create: Some(options.connect_timeout),
            recycle: Some(options.timeout),
        };
        let pool = Pool::builder(manager)
            .config(pool_config)
            .runtime(Runtime::Tokio1)
            .build()
            .map_err(|e| CacheError::Config(e.to_string()))?;
        Ok(Self {
            pool,
            client,
            timeout: options.timeout,
            connect_timeout: options.connect_timeout,
            scripts: Scripts::new(),
            epoch: Instant::now(),
            open_until_ms: AtomicU64::new(0),
            slots: (0..options.pool_max_size.max(1))
                .map(|_| Mutex::new(None))
                .collect(),
            next_slot: AtomicUsize::new(0),
        })
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn trip(&self) {
        let until = self.now_ms() + u64::try_from(COOLDOWN.as_millis()).unwrap_or(500);
        self.open_until_ms.store(until, Ordering::Relaxed);
    }

    async fn connection(&self) -> Result<MultiplexedConnection, CacheError> {
        let slot = &self.slots[self.next_slot.fetch_add(1, Ordering::Relaxed) % self.slots.len()];
        if let Some(conn) = lock(slot).as_ref() {
            return Ok(conn.clone());
        }
        let pooled = self.pool.get().await.map_err(|e| match e {
            deadpool_redis::PoolError::Timeout(_) => CacheError::Timeout,
            deadpool_redis::PoolError::Backend(e) => CacheError::from_redis(&e),
            other => CacheError::Unavailable(other.to_string()),
        })?;
        let conn = Connection::take(pooled);
        *lock(slot) = Some(conn.clone());
        Ok(conn)
    }

    /// Drops every shared connection, so the next calls open fresh ones.
    fn forget_connections(&self) {
        for slot in &self.slots {
            *lock(slot) = None;
        }
    }

    /// Runs one operation under the timeout and the short-circuit.
    async fn call<T>(
        &self,
        operation: impl Future<Output = Result<T, CacheError>>,
    ) -> Result<T, CacheError> {
        if self.now_ms() < self.open_until_ms.load(Ordering::Relaxed) {
            metrics::counter!("sovereign_cache_operations_total", "outcome" => "short_circuited")
                .increment(1);
            return Err(CacheError::Unavailable(
                "failed moments ago; not retried until the cooldown ends".to_owned(),
            ));
        }
        let result = self.bounded(operation).await;
        let outcome = match &result {
            Ok(_) => "ok",
            Err(e) if e.is_connectivity() => "unavailable",
            Err(_) => "error",
        };
        metrics::counter!("sovereign_cache_operations_total", "outcome" => outcome).increment(1);
        result
    }

    async fn bounded<T>(
        &self,
        operation: impl Future<Output = Result<T, CacheError>>,
    ) -> Result<T, CacheError> {
        let result = match tokio::time::timeout(self.timeout, operation).await {
            Ok(result) => result,
            Err(_) => Err(CacheError::Timeout),
        };
        if let Err(e) = &result
            && e.is_connectivity()
        {
            self.trip();
            self.forget_connections();
        }
        result
    }

    pub(crate) async fn ping(&self) -> Result<Duration, CacheError> {
        let started = Instant::now();
        self.bounded(async {
            let mut conn = self.connection().await?;
            let _: String = redis::cmd("PING").query_async(&mut conn).await?;
            Ok(())
        })
        .await?;
        // A successful probe closes the short-circuit early.
        self.open_until_ms.store(0, Ordering::Relaxed);
        Ok(started.elapsed())
    }

    pub(crate) async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, CacheError> {
        self.call(async {
            let mut conn = self.connection().await?;
            Ok(conn.get(key).await?)
        })
        .await
    }

    pub(crate) async fn set(
        &self,
        key: &str,
        value: &[u8],
        ttl: Option<Duration>,
    ) -> Result<(), CacheError> {
        self.call(async {
            let mut conn = self.connection().await?;
            let mut cmd = redis::cmd("SET");
            cmd.arg(key).arg(value);
            if let Some(ttl) = ttl {
                cmd.arg("PX").arg(millis(ttl));
            }
            let () = cmd.query_async(&mut conn).await?;
            Ok(())
        })
        .await
    }

    pub(crate) async fn set_if_absent(
        &self,
        key: &str,
        value: &[u8],
        ttl: Option<Duration>,
    ) -> Result<bool, CacheError> {
        self.call(async {
            let mut conn = self.connection().await?;
            let mut cmd = redis::cmd("SET");
            cmd.arg(key).arg(value).arg("NX");
            if let Some(ttl) = ttl {
                cmd.arg("PX").arg(millis(ttl));
            }
            let reply: Option<String> = cmd.query_async(&mut conn).await?;
            Ok(reply.is_some())
        })
        .await
    }

    pub(crate) async fn delete(&self, key: &str) -> Result<bool, CacheError> {
        self.call(async {
            let mut conn = self.connection().await?;
            let removed: u64 = conn.unlink(key).await?;
            Ok(removed > 0)
        })
        .await
    }

    pub(crate) async fn exists(&self, key: &str) -> Result<bool, CacheError> {
        self.call(async {
            let mut conn = self.connection().await?;
            Ok(conn.exists(key).await?)
        })
        .await
    }

    /// SCAN + UNLINK in bounded batches; each round trip has its own timeout.
    pub(crate) async fn clear(&self, pattern: &str) -> Result<u64, CacheError> {
        let mut cursor: u64 = 0;
        let mut removed = 0;
        loop {
            let (next, keys): (u64, Vec<String>) = self
                .call(async {
                    let mut conn = self.connection().await?;
                    Ok(redis::cmd("SCAN")
                        .arg(cursor)
                        .arg("MATCH")
                        .arg(pattern)
                        .arg("COUNT")
                        .arg(CLEAR_BATCH)
                        .query_async(&mut conn)
                        .await?)
                })
                .await?;
            for batch in keys.chunks(CLEAR_BATCH) {
                removed += self
                    .call(async {
                        let mut conn = self.connection().await?;
                        let n: u64 = conn.unlink(batch).await?;
                        Ok(n)
                    })
                    .await?;
            }
            if next == 0 {
                return Ok(removed);
            }
            cursor = next;
        }
    }

    pub(crate) async fn increment(
        &self,
        key: &str,
        by: i64,
        ttl: Option<Duration>,
    ) -> Result<i64, CacheError> {
        self.call(async {
            let mut conn = self.connection().await?;
            Ok(self
                .scripts
                .increment
                .key(key)
                .arg(by)
                .arg(ttl.map_or(0, millis))
                .invoke_async(&mut conn)
                .await?)
        })
        .await
    }

    pub(crate) async fn release_if_owner(
        &self,
        key: &str,
        token: &[u8],
    ) -> Result<bool, CacheError> {
        self.call(async {
            let mut conn = self.connection().await?;
            let n: u64 = self
                .scripts
                .release
                .key(key)
                .arg(token)
                .invoke_async(&mut conn)
                .await?;
            Ok(n > 0)
        })
        .await
    }

    pub(crate) async fn extend_if_owner(
        &self,
        key: &str,
        token: &[u8],
        lease: Duration,
    ) -> Result<bool, CacheError> {
        self.call(async {
            let mut conn = self.connection().await?;
            let n: u64 = self
                .scripts
                .extend
                .key(key)
                .arg(token)
                .arg(millis(lease))
                .invoke_async(&mut conn)
                .await?;
            Ok(n > 0)
        })
        .await
    }

    pub(crate) async fn gcra(
        &self,
        key: &str,
        emission_us: u64,
        tolerance_us: u64,
        cost: u64,
    ) -> Result<(bool, u64, u64), CacheError> {
        self.call(async {
            let mut conn = self.connection().await?;
            let (allowed, used, retry): (i64, i64, i64) = self
                .scripts
                .gcra
                .key(key)
                .arg(emission_us)
                .arg(tolerance_us)
                .arg(cost)
                .invoke_async(&mut conn)
                .await?;
            Ok((
                allowed == 1,
                u64::try_from(used).unwrap_or(0),
                u64::try_from(retry).unwrap_or(0),
            ))
        })
        .await
    }

    /// `GETDEL`: the value, removed in the same step.
    pub(crate) async fn take(&self, key: &str) -> Result<Option<Vec<u8>>, CacheError> {
        self.call(async {
            let mut conn = self.connection().await?;
            Ok(redis::cmd("GETDEL").arg(key).query_async(&mut conn).await?)
        })
        .await
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis())
        .unwrap_or(u64::MAX)
        .max(1)
}
