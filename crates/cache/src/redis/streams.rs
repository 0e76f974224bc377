//! Capped expiring logs (a stream, a counter and an epoch per log) and expiring sets (sorted
//! sets scored by expiry on the Redis clock).

use std::sync::Arc;
use std::time::Duration;

use redis::AsyncCommands;

use super::{RedisBackend, millis};
use crate::error::CacheError;
use crate::log::{LogEntry, LogPosition, new_epoch};

impl RedisBackend {
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
