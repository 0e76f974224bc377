//! The Redis/Valkey backend: a deadpool-redis pool of multiplexed connections with bounded
//! waits, every command under the operation timeout, Lua scripts for the compare-and-act
//! operations, and a dedicated connection per subscription (deadpool pools no pub/sub
//! connections).
//!
//! After a connectivity failure the backend short-circuits calls for [`COOLDOWN`], so a
//! stopped server costs one timeout, not one per request; health checks always go through.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use deadpool_redis::{Connection, Pool, PoolConfig, Runtime, Timeouts};
use futures_util::StreamExt;
use redis::aio::MultiplexedConnection;
use redis::{AsyncCommands, AsyncConnectionConfig, Script};
use sovereign_core::settings::SecretUrl;
use tokio::sync::mpsc;

use crate::CacheSettings;
use crate::error::CacheError;
use crate::log::{LogEntry, LogPosition, new_epoch};
use crate::pubsub::{Message, Subscription, SubscriptionState};

/// How long calls are refused after a connectivity failure before the server is tried again.
pub(crate) const COOLDOWN: Duration = Duration::from_millis(500);
/// Keys per SCAN step and per UNLINK when clearing by pattern.
const CLEAR_BATCH: usize = 1000;
/// Messages a slow subscriber may fall behind by before it starts missing them.
const SUBSCRIBER_QUEUE: usize = 1024;

const INCREMENT: &str = r"
local value = redis.call('INCRBY', KEYS[1], ARGV[1])
local ttl = tonumber(ARGV[2])
if ttl > 0 and redis.call('PTTL', KEYS[1]) == -1 then
  redis.call('PEXPIRE', KEYS[1], ttl)
end
return value
";

const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
";

const EXTEND: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
";

/// GCRA on the server's clock, so every instance agrees. Stores the theoretical arrival time
/// (microseconds) and returns {allowed, used_us, retry_us}; see `crate::limiter`.
const GCRA: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local emission = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + emission * cost
local allow_at = new_tat - tolerance
if now < allow_at then
  return {0, tat - now, allow_at - now}
end
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', math.max(1, math.ceil((new_tat - now) / 1000)))
return {1, new_tat - now, 0}
";

/// Appends to a log (see `crate::log`): starts a new epoch when the log is gone, takes the next
/// offset, trims the stream to `retain`, renews the TTL of all three keys and, when a channel is
/// given, publishes the entry there — one script, so the channel's order is the offsets' order.
/// KEYS: epoch, seq, stream. ARGV: new epoch, retain, ttl ms, data, channel ('' for none).
const LOG_APPEND: &str = r"
local epoch = redis.call('GET', KEYS[1])
if not epoch then
  epoch = ARGV[1]
  redis.call('DEL', KEYS[2], KEYS[3])
  redis.call('SET', KEYS[1], epoch)
end
local offset = redis.call('INCR', KEYS[2])
redis.call('XADD', KEYS[3], 'MAXLEN', ARGV[2], '0-' .. offset, 'd', ARGV[4])
local ttl = tonumber(ARGV[3])
redis.call('PEXPIRE', KEYS[1], ttl)
redis.call('PEXPIRE', KEYS[2], ttl)
redis.call('PEXPIRE', KEYS[3], ttl)
if ARGV[5] ~= '' then
  redis.call('PUBLISH', ARGV[5], epoch .. ' ' .. offset .. ' ' .. ARGV[4])
end
return {epoch, offset}
";

/// Reads a log after an offset: {epoch, last offset, oldest retained offset (0: none),
/// offset1, data1, offset2, data2, …}. A log that does not exist is started (empty, new epoch),
/// so every reader gets a position it can resume from later.
/// KEYS: epoch, seq, stream. ARGV: new epoch, ttl ms, since offset.
const LOG_READ: &str = r"
local epoch = redis.call('GET', KEYS[1])
if not epoch then
  epoch = ARGV[1]
  redis.call('DEL', KEYS[2], KEYS[3])
  redis.call('SET', KEYS[1], epoch, 'PX', ARGV[2])
end
local last = tonumber(redis.call('GET', KEYS[2]) or '0')
local oldest = 0
local first = redis.call('XRANGE', KEYS[3], '-', '+', 'COUNT', 1)
if #first > 0 then
  oldest = tonumber(string.sub(first[1][1], 3))
end
local out = {epoch, last, oldest}
local since = tonumber(ARGV[3])
if since < last then
  local entries = redis.call('XRANGE', KEYS[3], '0-' .. (since + 1), '+')
  for _, entry in ipairs(entries) do
    table.insert(out, string.sub(entry[1], 3))
    table.insert(out, entry[2][2])
  end
end
return out
";

/// Adds members to an expiring set (a sorted set scored by expiry on the server's clock) and
/// drops the expired ones. KEYS: set. ARGV: ttl ms, members….
const MEMBERS_ADD: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
for i = 2, #ARGV do
  redis.call('ZADD', KEYS[1], now + ttl, ARGV[i])
end
redis.call('PEXPIRE', KEYS[1], ttl * 2)
return redis.call('ZCARD', KEYS[1])
";

/// The live members of an expiring set. KEYS: set.
const MEMBERS_LIVE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now, '+inf')
";

struct Scripts {
    increment: Script,
    release: Script,
    extend: Script,
    gcra: Script,
    log_append: Script,
    log_read: Script,
    members_add: Script,
    members_live: Script,
}

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
            scripts: Scripts {
                increment: Script::new(INCREMENT),
                release: Script::new(RELEASE),
                extend: Script::new(EXTEND),
                gcra: Script::new(GCRA),
                log_append: Script::new(LOG_APPEND),
                log_read: Script::new(LOG_READ),
                members_add: Script::new(MEMBERS_ADD),
                members_live: Script::new(MEMBERS_LIVE),
            },
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

    pub(crate) async fn log_append(
        &self,
        log: &str,
        data: &[u8],
        retain: usize,
        ttl: Duration,
        channel: Option<&str>,
    ) -> Result<LogEntry, CacheError> {
        self.call(async {
            let mut conn = self.connection().await?;
            let [epoch, seq, stream] = log_keys(log);
            let (epoch_name, offset): (String, u64) = self
                .scripts
                .log_append
                .key(epoch)
                .key(seq)
                .key(stream)
                .arg(new_epoch())
                .arg(retain.max(1))
                .arg(millis(ttl).max(1))
                .arg(data)
                .arg(channel.unwrap_or(""))
                .invoke_async(&mut conn)
                .await?;
            Ok(LogEntry {
                epoch: epoch_name,
                offset,
                data: Arc::from(data),
            })
        })
        .await
    }

    pub(crate) async fn log_read(
        &self,
        log: &str,
        since: u64,
        ttl: Duration,
    ) -> Result<(LogPosition, u64, Vec<LogEntry>), CacheError> {
        self.call(async {
            let mut conn = self.connection().await?;
            let [epoch, seq, stream] = log_keys(log);
            let reply: Vec<redis::Value> = self
                .scripts
                .log_read
                .key(epoch)
                .key(seq)
                .key(stream)
                .arg(new_epoch())
                .arg(millis(ttl).max(1))
                .arg(since)
                .invoke_async(&mut conn)
                .await?;
            parse_log_read(reply)
        })
        .await
    }

    pub(crate) async fn members_add(
        &self,
        set: &str,
        members: &[String],
        ttl: Duration,
    ) -> Result<u64, CacheError> {
        self.call(async {
            let mut conn = self.connection().await?;
            let mut invocation = self.scripts.members_add.key(set);
            invocation.arg(millis(ttl).max(1));
            for member in members {
                invocation.arg(member);
            }
            Ok(invocation.invoke_async(&mut conn).await?)
        })
        .await
    }

    pub(crate) async fn members_remove(
        &self,
        set: &str,
        members: &[String],
    ) -> Result<(), CacheError> {
        if members.is_empty() {
            return Ok(());
        }
        self.call(async {
            let mut conn = self.connection().await?;
            let _: u64 = conn.zrem(set, members).await?;
            Ok(())
        })
        .await
    }

    pub(crate) async fn members(&self, set: &str) -> Result<Vec<String>, CacheError> {
        self.call(async {
            let mut conn = self.connection().await?;
            Ok(self
                .scripts
                .members_live
                .key(set)
                .invoke_async(&mut conn)
                .await?)
        })
        .await
    }

    pub(crate) async fn publish(&self, channel: &str, payload: &[u8]) -> Result<u64, CacheError> {
        self.call(async {
            let mut conn = self.connection().await?;
            Ok(conn.publish(channel, payload).await?)
        })
        .await
    }

    async fn open_pubsub(
        client: &redis::Client,
        channel: &str,
        limit: Duration,
    ) -> Result<redis::aio::PubSub, CacheError> {
        let subscribe = async {
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(channel).await?;
            Ok::<_, redis::RedisError>(pubsub)
        };
        match tokio::time::timeout(limit, subscribe).await {
            Ok(result) => Ok(result?),
            Err(_) => Err(CacheError::Timeout),
        }
    }

    /// Subscribes before returning, so a message published after this call is delivered; the
    /// feeding task then resubscribes by itself whenever the connection is lost.
    pub(crate) async fn subscribe(
        &self,
        channel: &str,
        name: String,
    ) -> Result<Subscription, CacheError> {
        let limit = self.timeout + self.connect_timeout;
        let pubsub = Self::open_pubsub(&self.client, channel, limit).await?;
        let (tx, rx) = mpsc::channel(SUBSCRIBER_QUEUE);
        let state = Arc::new(SubscriptionState::default());
        let task_state = Arc::clone(&state);
        let client = self.client.clone();
        let channel = channel.to_owned();
        let message_name: Arc<str> = Arc::from(name.as_str());
        tokio::spawn(async move {
            let mut stream = pubsub.into_on_message();
            loop {
                tokio::select! {
                    () = tx.closed() => return,
                    next = stream.next() => match next {
                        Some(msg) => task_state.forward(
                            &tx,
                            Message::new(&message_name, msg.get_payload_bytes()),
                        ),
                        None => {
                            tracing::warn!(channel = %message_name, "subscription lost; reconnecting");
                            let reconnect = reconnect(&client, &channel, limit);
                            let pubsub = tokio::select! {
                                () = tx.closed() => return,
                                pubsub = reconnect => pubsub,
                            };
                            stream = pubsub.into_on_message();
                            task_state.record_resubscribed();
                            tracing::info!(channel = %message_name, "subscription re-established");
                        }
                    },
                }
            }
        });
        Ok(Subscription::new(name, rx, state))
    }
}

/// The three keys of a log: inside the log's namespace, with the log's name again as a hash tag
/// so a cluster keeps them in one slot.
fn log_keys(log: &str) -> [String; 3] {
    ["epoch", "seq", "log"].map(|part| format!("{log}:{{{log}}}:{part}"))
}

fn parse_log_read(
    reply: Vec<redis::Value>,
) -> Result<(LogPosition, u64, Vec<LogEntry>), CacheError> {
    fn value<T: redis::FromRedisValue>(v: redis::Value) -> Result<T, CacheError> {
        redis::from_redis_value(v).map_err(|e| CacheError::Command(e.to_string()))
    }
    let malformed = || CacheError::Command("unexpected log reply".to_owned());
    let mut values = reply.into_iter();
    let epoch: String = value(values.next().ok_or_else(malformed)?)?;
    let last: u64 = value(values.next().ok_or_else(malformed)?)?;
    let oldest: u64 = value(values.next().ok_or_else(malformed)?)?;
    let mut entries = Vec::new();
    while let Some(offset) = values.next() {
        let offset: u64 = value(offset)?;
        let data: Vec<u8> = value(values.next().ok_or_else(malformed)?)?;
        entries.push(LogEntry {
            epoch: epoch.clone(),
            offset,
            data: Arc::from(data),
        });
    }
    Ok((
        LogPosition {
            epoch,
            offset: last,
        },
        oldest,
        entries,
    ))
}

/// Retries with capped exponential backoff until the channel is subscribed again.
async fn reconnect(client: &redis::Client, channel: &str, limit: Duration) -> redis::aio::PubSub {
    let mut delay = Duration::from_millis(50);
    loop {
        match RedisBackend::open_pubsub(client, channel, limit).await {
            Ok(pubsub) => return pubsub,
            Err(e) => {
                tracing::debug!(error = %e, "resubscribe failed; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(2));
            }
        }
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
