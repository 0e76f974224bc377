//! The hub: which connection is subscribed to what, fan-out, history, presence, limits and
//! revocation. Nothing here knows HTTP or websockets; a transport moves [`Event`]s out and text
//! frames in.
//!
//! Every message goes through the cache: one script appends it to the channel's history and
//! publishes it on the bus channel `rt:bus`, which every instance (this one included) listens
//! to and fans out to its local subscribers. The bus is one channel for the whole deployment
//! (see docs/decisions/0025-one-bus-channel.md for the cost of that choice). When the shared
//! cache fails, the hub appends to an in-process history and bus instead: local delivery goes
//! on under a local epoch, and cross-instance delivery resumes with the next message after
//! Redis returns.
//!
//! The parts, one module each: `registry` (this instance's connections and subscriptions,
//! caps, shutdown), `connection` (a connection's queue and signals, the events the transport
//! acts on), `identity` (who is on a connection), `requests` (a client's frames and their
//! answers), `bus` (publishing, fan-out, history and recovery, the local fallback), `presence`,
//! `revocation` (closes and rechecks) and `tasks` (the listeners on cache channels, the
//! periodic work). This module holds the hub itself and how it starts.

mod bus;
mod connection;
mod identity;
mod presence;
mod registry;
mod requests;
mod revocation;
mod tasks;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;

use serde::Serialize;
use sovereign_auth::revocation::{CHANNEL as REVOCATIONS, Revocation};
use sovereign_cache::{BackendKind, Cache, RateLimiter};
use uuid::Uuid;

use crate::settings::RealtimeSettings;

pub use connection::{Close, Connection, Event, Frame, frame_counts};
pub use identity::{CredentialRef, Identity};
pub use requests::Refresh;

use connection::ConnShared;
use registry::Subscriber;
use tasks::{Handler, listen, spawn_periodic};

/// A channel of a tenant, as the registry keys it.
type Key = (Uuid, Arc<str>);

struct Inner {
    settings: RealtimeSettings,
    /// The shared cache's `rt` namespace.
    shared: Cache,
    /// An in-process `rt` namespace, used when the shared cache fails (None when the shared
    /// cache is in-process already).
    local: Option<Cache>,
    limiter: Arc<RateLimiter>,
    instance: Uuid,
    next_id: AtomicU64,
    channels: RwLock<HashMap<Key, HashMap<u64, Arc<Subscriber>>>>,
    /// Connections that asked for a channel's join and leave events (a subset of `channels`,
    /// kept apart so an event costs its listeners, not the channel's size).
    presence_listeners: RwLock<HashMap<Key, HashMap<u64, Arc<ConnShared>>>>,
    connections: Mutex<HashMap<u64, Arc<ConnShared>>>,
    per_user: Mutex<HashMap<Uuid, usize>>,
    closing: AtomicBool,
    /// Set while publishing falls back to the in-process bus.
    falling_back: AtomicBool,
    connection_count: AtomicUsize,
}

/// The realtime hub of one instance. Cloning is cheap; clones share everything.
#[derive(Clone)]
pub struct Hub {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("instance", &self.inner.instance)
            .field("connections", &self.connections())
            .finish_non_exhaustive()
    }
}

/// The hub's state for `/ready`.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct HubStatus {
    pub connections: usize,
    /// Whether messages cross instances (a shared cache is configured).
    pub shared: bool,
    /// True while publishing has fallen back to this instance only.
    pub degraded: bool,
}

impl Hub {
    /// Starts the hub: listens on the bus, the presence bus and the revocation channel of
    /// `cache` (and of the in-process fallback), and renews presence and rechecks credentials
    /// periodically. Returns once the subscriptions are up (or, for a cache that is down, once
    /// the first attempt failed; they are retried in the background).
    pub async fn start(
        cache: &Cache,
        limiter: Arc<RateLimiter>,
        settings: RealtimeSettings,
    ) -> Self {
        let local = (cache.backend() == BackendKind::Redis)
            .then(|| Cache::in_memory(cache.namespace().trim_end_matches(':')).scoped("rt"));
        let hub = Self {
            inner: Arc::new(Inner {
                settings,
                shared: cache.scoped("rt"),
                local,
                limiter,
                instance: Uuid::new_v4(),
                next_id: AtomicU64::new(1),
                channels: RwLock::new(HashMap::new()),
                presence_listeners: RwLock::new(HashMap::new()),
                connections: Mutex::new(HashMap::new()),
                per_user: Mutex::new(HashMap::new()),
                closing: AtomicBool::new(false),
                falling_back: AtomicBool::new(false),
                connection_count: AtomicUsize::new(0),
            }),
        };
        let weak = Arc::downgrade(&hub.inner);
        let mut buses = vec![hub.inner.shared.clone()];
        buses.extend(hub.inner.local.clone());
        let on_bus: Handler = |hub, message| hub.on_bus(message.payload());
        let on_presence: Handler = |hub, message| hub.on_presence(message.payload());
        let on_revocation: Handler = |hub, message| {
            if let Ok(revocation) = message.decode::<Revocation>() {
                hub.on_revocation(revocation);
            }
        };
        let mut listeners = vec![(cache.clone(), REVOCATIONS, on_revocation)];
        for bus in buses {
            listeners.push((bus.clone(), bus::BUS, on_bus));
            listeners.push((bus, presence::PRESENCE_BUS, on_presence));
        }
        // Subscribed together: with the cache down, start-up waits one connect timeout, not one
        // per subscription.
        futures_util::future::join_all(
            listeners
                .into_iter()
                .map(|(cache, channel, handle)| listen(weak.clone(), cache, channel, handle)),
        )
        .await;
        spawn_periodic(weak.clone(), hub.inner.settings.presence_ttl / 3, |hub| {
            Box::pin(async move { hub.renew_presence().await })
        });
        spawn_periodic(weak, hub.inner.settings.recheck_interval, |hub| {
            Box::pin(async move {
                hub.recheck_all();
            })
        });
        hub
    }

    /// The hub behind `inner`, while it lives (background tasks hold it weakly).
    fn upgrade(inner: &Weak<Inner>) -> Option<Self> {
        inner.upgrade().map(|inner| Self { inner })
    }

    #[must_use]
    pub fn settings(&self) -> &RealtimeSettings {
        &self.inner.settings
    }

    /// Open connections on this instance.
    #[must_use]
    pub fn connections(&self) -> usize {
        self.inner.connection_count.load(Ordering::Relaxed)
    }

    #[must_use]
    pub fn status(&self) -> HubStatus {
        HubStatus {
            connections: self.connections(),
            shared: self.inner.local.is_some(),
            degraded: self.inner.falling_back.load(Ordering::Relaxed),
        }
    }
}

/// A duration in whole milliseconds, as frames carry it.
fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
