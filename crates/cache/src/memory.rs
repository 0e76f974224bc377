//! The in-process backend: a bounded moka cache with per-entry expiry, and tokio broadcast
//! channels for pub/sub. Atomic operations (set-if-absent, counters, locks, the rate limiter)
//! use moka's per-key `and_compute_with`, which never runs two computations on one key at once.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use moka::Expiry;
use moka::ops::compute::Op;
use tokio::sync::{broadcast, mpsc};

use crate::error::CacheError;
use crate::log::{LogEntry, LogPosition, new_epoch};
use crate::pubsub::{Message, Subscription, SubscriptionState};

/// Messages a slow subscriber may fall behind by before it starts missing them.
const CHANNEL_CAPACITY: usize = 1024;

#[derive(Debug, Clone)]
struct Entry {
    value: Arc<[u8]>,
    expires_at: Option<Instant>,
}

impl Entry {
    fn new(value: &[u8], ttl: Option<Duration>) -> Self {
        Self {
            value: Arc::from(value),
            expires_at: ttl.map(|ttl| Instant::now() + ttl),
        }
    }

    fn is_live(&self, now: Instant) -> bool {
        self.expires_at.is_none_or(|at| at > now)
    }
}

struct EntryExpiry;

impl Expiry<String, Entry> for EntryExpiry {
    fn expire_after_create(&self, _: &String, value: &Entry, now: Instant) -> Option<Duration> {
        value.expires_at.map(|at| at.saturating_duration_since(now))
    }

    fn expire_after_update(
        &self,
        _: &String,
        value: &Entry,
        now: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        value.expires_at.map(|at| at.saturating_duration_since(now))
    }
}

/// A log kept in process (see `crate::log`).
struct Ring {
    epoch: String,
    last: u64,
    entries: VecDeque<(u64, Arc<[u8]>)>,
    expires_at: Instant,
}

impl Ring {
    fn new(ttl: Duration) -> Self {
        Self {
            epoch: new_epoch(),
            last: 0,
            entries: VecDeque::new(),
            expires_at: Instant::now() + ttl,
        }
    }

    fn position(&self) -> LogPosition {
        LogPosition {
            epoch: self.epoch.clone(),
            offset: self.last,
        }
    }
}

pub(crate) struct MemoryBackend {
    entries: moka::future::Cache<String, Entry>,
    channels: Mutex<HashMap<String, broadcast::Sender<Message>>>,
    logs: Mutex<HashMap<String, Ring>>,
    /// Expiring sets: member → expiry.
    sets: Mutex<HashMap<String, HashMap<String, Instant>>>,
    /// Zero point for the rate limiter's clock.
    epoch: Instant,
}

impl std::fmt::Debug for MemoryBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryBackend")
            .field("entries", &self.entries.entry_count())
            .finish_non_exhaustive()
    }
}

impl MemoryBackend {
    pub(crate) fn new(capacity: u64) -> Self {
        Self {
            entries: moka::future::Cache::builder()
                .max_capacity(capacity)
                .expire_after(EntryExpiry)
                .build(),
            channels: Mutex::new(HashMap::new()),
            logs: Mutex::new(HashMap::new()),
            sets: Mutex::new(HashMap::new()),
            epoch: Instant::now(),
        }
    }

    async fn live(&self, key: &str) -> Option<Entry> {
        self.entries
            .get(key)
            .await
            .filter(|e| e.is_live(Instant::now()))
    }

    pub(crate) async fn get(&self, key: &str) -> Option<Vec<u8>> {
        self.live(key).await.map(|e| e.value.to_vec())
    }

    pub(crate) async fn set(&self, key: &str, value: &[u8], ttl: Option<Duration>) {
        self.entries
            .insert(key.to_owned(), Entry::new(value, ttl))
            .await;
    }

    pub(crate) async fn set_if_absent(
        &self,
        key: &str,
        value: &[u8],
        ttl: Option<Duration>,
    ) -> bool {
        let mut stored = false;
        self.entries
            .entry_by_ref(key)
            .and_compute_with(|current| {
                let now = Instant::now();
                let op = match current {
                    Some(e) if e.value().is_live(now) => Op::Nop,
                    _ => {
                        stored = true;
                        Op::Put(Entry::new(value, ttl))
                    }
                };
                std::future::ready(op)
            })
            .await;
        stored
    }

    pub(crate) async fn delete(&self, key: &str) -> bool {
        self.entries
            .remove(key)
            .await
            .is_some_and(|e| e.is_live(Instant::now()))
    }

    pub(crate) async fn take(&self, key: &str) -> Option<Vec<u8>> {
        self.entries
            .remove(key)
            .await
            .filter(|e| e.is_live(Instant::now()))
            .map(|e| e.value.to_vec())
    }

    /// Appends to the ring `log` (a new epoch when it expired), then announces the entry on
    /// `channel` — under the lock, so the channel's order is the offsets' order.
    pub(crate) fn log_append(
        &self,
        log: &str,
        data: &[u8],
        retain: usize,
        ttl: Duration,
        channel: Option<(&str, &str)>,
    ) -> LogEntry {
        let mut logs = guard(&self.logs);
        let now = Instant::now();
        if logs.len() > 1024 {
            logs.retain(|_, ring| ring.expires_at > now);
        }
        let ring = logs.entry(log.to_owned()).or_insert_with(|| Ring::new(ttl));
        if ring.expires_at <= now {
            *ring = Ring::new(ttl);
        }
        ring.last += 1;
        ring.expires_at = now + ttl;
        let data: Arc<[u8]> = Arc::from(data);
        ring.entries.push_back((ring.last, Arc::clone(&data)));
        while ring.entries.len() > retain.max(1) {
            ring.entries.pop_front();
        }
        let entry = LogEntry {
            epoch: ring.epoch.clone(),
            offset: ring.last,
            data,
        };
        if let Some((full, name)) = channel {
            self.publish(full, Message::new(name, &entry.encode()));
        }
        entry
    }

    /// The ring's position, its oldest retained offset and the entries after `since`.
    pub(crate) fn log_read(
        &self,
        log: &str,
        since: u64,
        ttl: Duration,
    ) -> (LogPosition, u64, Vec<LogEntry>) {
        let mut logs = guard(&self.logs);
        let now = Instant::now();
        let ring = logs.entry(log.to_owned()).or_insert_with(|| Ring::new(ttl));
        if ring.expires_at <= now {
            *ring = Ring::new(ttl);
        }
        let oldest = ring.entries.front().map_or(0, |(offset, _)| *offset);
        let entries = ring
            .entries
            .iter()
            .filter(|(offset, _)| *offset > since)
            .map(|(offset, data)| LogEntry {
                epoch: ring.epoch.clone(),
                offset: *offset,
                data: Arc::clone(data),
            })
            .collect();
        (ring.position(), oldest, entries)
    }

    pub(crate) fn members_add(&self, set: &str, members: &[String], ttl: Duration) -> u64 {
        let mut sets = guard(&self.sets);
        let now = Instant::now();
        let live = sets.entry(set.to_owned()).or_default();
        live.retain(|_, expires| *expires > now);
        for member in members {
            live.insert(member.clone(), now + ttl);
        }
        live.len() as u64
    }

    pub(crate) fn members_remove(&self, set: &str, members: &[String]) {
        let mut sets = guard(&self.sets);
        if let Some(live) = sets.get_mut(set) {
            for member in members {
                live.remove(member);
            }
            if live.is_empty() {
                sets.remove(set);
            }
        }
    }

    pub(crate) fn members(&self, set: &str) -> Vec<String> {
        let sets = guard(&self.sets);
        let now = Instant::now();
        sets.get(set)
            .map(|live| {
                live.iter()
                    .filter(|(_, expires)| **expires > now)
                    .map(|(member, _)| member.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    pub(crate) async fn exists(&self, key: &str) -> bool {
        self.live(key).await.is_some()
    }

    /// Removes every key that starts with `namespace` and whose remainder matches `pattern`.
    pub(crate) async fn clear(&self, namespace: &str, pattern: &str) -> u64 {
        let matcher = wildmatch::WildMatch::new(pattern);
        let now = Instant::now();
        let doomed: Vec<Arc<String>> = self
            .entries
            .iter()
            .filter(|(key, entry)| {
                entry.is_live(now)
                    && key
                        .strip_prefix(namespace)
                        .is_some_and(|rest| matcher.matches(rest))
            })
            .map(|(key, _)| key)
            .collect();
        let mut removed = 0;
        for key in doomed {
            if self.entries.remove(key.as_str()).await.is_some() {
                removed += 1;
            }
        }
        removed
    }

    pub(crate) async fn increment(
        &self,
        key: &str,
        by: i64,
        ttl: Option<Duration>,
    ) -> Result<i64, CacheError> {
        let mut outcome = Ok(0);
        self.entries
            .entry_by_ref(key)
            .and_compute_with(|current| {
                let now = Instant::now();
                let current = current
                    .map(moka::Entry::into_value)
                    .filter(|e| e.is_live(now));
                let op = match &current {
                    None => {
                        outcome = Ok(by);
                        Op::Put(Entry::new(by.to_string().as_bytes(), ttl))
                    }
                    Some(entry) => match parse_integer(&entry.value)
                        .and_then(|n| n.checked_add(by).ok_or_else(overflow))
                    {
                        Ok(n) => {
                            outcome = Ok(n);
                            Op::Put(Entry {
                                value: Arc::from(n.to_string().as_bytes()),
                                // Like Redis: the expiry is set when the counter is created.
                                expires_at: match entry.expires_at {
                                    Some(at) => Some(at),
                                    None => ttl.map(|ttl| now + ttl),
                                },
                            })
                        }
                        Err(e) => {
                            outcome = Err(e);
                            Op::Nop
                        }
                    },
                };
                std::future::ready(op)
            })
            .await;
        outcome
    }

    pub(crate) async fn release_if_owner(&self, key: &str, token: &[u8]) -> bool {
        self.replace_if_owner(key, token, None).await
    }

    pub(crate) async fn extend_if_owner(&self, key: &str, token: &[u8], lease: Duration) -> bool {
        self.replace_if_owner(key, token, Some(Entry::new(token, Some(lease))))
            .await
    }

    /// Compare-and-act on a lock: when `key` holds `token`, removes it (`None`) or replaces
    /// it; true when it did.
    async fn replace_if_owner(&self, key: &str, token: &[u8], replacement: Option<Entry>) -> bool {
        let mut owned = false;
        self.entries
            .entry_by_ref(key)
            .and_compute_with(|current| {
                let op = match current {
                    Some(e) if e.value().is_live(Instant::now()) && &*e.value().value == token => {
                        owned = true;
                        replacement.map_or(Op::Remove, Op::Put)
                    }
                    _ => Op::Nop,
                };
                std::future::ready(op)
            })
            .await;
        owned
    }

    /// One GCRA step (see [`crate::limiter`]): returns `(allowed, used_us, retry_us)`.
    pub(crate) async fn gcra(
        &self,
        key: &str,
        emission_us: u64,
        tolerance_us: u64,
        cost: u64,
    ) -> (bool, u64, u64) {
        let mut outcome = (false, 0, 0);
        let epoch = self.epoch;
        self.entries
            .entry_by_ref(key)
            .and_compute_with(|current| {
                let now_instant = Instant::now();
                let now = u64::try_from(now_instant.duration_since(epoch).as_micros())
                    .unwrap_or(u64::MAX);
                let stored = current
                    .map(moka::Entry::into_value)
                    .filter(|e| e.is_live(now_instant))
                    .and_then(|e| std::str::from_utf8(&e.value).ok()?.parse::<u64>().ok());
                let tat = stored.unwrap_or(now).max(now);
                let new_tat = tat.saturating_add(emission_us.saturating_mul(cost));
                let allow_at = new_tat.saturating_sub(tolerance_us);
                let op = if now < allow_at {
                    outcome = (false, tat - now, allow_at - now);
                    Op::Nop
                } else {
                    outcome = (true, new_tat - now, 0);
                    Op::Put(Entry::new(
                        new_tat.to_string().as_bytes(),
                        Some(Duration::from_micros(new_tat - now)),
                    ))
                };
                std::future::ready(op)
            })
            .await;
        outcome
    }

    pub(crate) fn publish(&self, channel: &str, message: Message) -> u64 {
        let mut channels = self
            .channels
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        channels.retain(|_, sender| sender.receiver_count() > 0);
        channels
            .get(channel)
            .and_then(|sender| sender.send(message).ok())
            .map_or(0, |n| n as u64)
    }

    pub(crate) fn subscribe(&self, channel: &str, name: String) -> Subscription {
        let mut receiver = {
            let mut channels = self
                .channels
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            channels
                .entry(channel.to_owned())
                .or_insert_with(|| broadcast::channel(CHANNEL_CAPACITY).0)
                .subscribe()
        };
        let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
        let state = Arc::new(SubscriptionState::default());
        let task_state = Arc::clone(&state);
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = tx.closed() => return,
                    received = receiver.recv() => match received {
                        Ok(message) => task_state.forward(&tx, message),
                        Err(broadcast::error::RecvError::Lagged(missed)) => {
                            task_state.record_dropped(missed);
                        }
                        Err(broadcast::error::RecvError::Closed) => return,
                    },
                }
            }
        });
        Subscription::new(name, rx, state)
    }
}

fn guard<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn parse_integer(bytes: &[u8]) -> Result<i64, CacheError> {
    std::str::from_utf8(bytes)
        .ok()
        .and_then(|s| s.parse::<i64>().ok())
        .ok_or_else(|| CacheError::Command("value is not an integer".to_owned()))
}

fn overflow() -> CacheError {
    CacheError::Command("increment or decrement would overflow".to_owned())
}
