//! The hub: which connection is subscribed to what, fan-out, history, presence, limits and
//! revocation. Nothing here knows HTTP or websockets; a transport moves [`Event`]s out and text
//! frames in.
//!
//! Every message goes through the cache: one script appends it to the channel's history and
//! publishes it on the bus channel `rt:bus`, which every instance (this one included) listens
//! to and fans out to its local subscribers. The bus is one channel for the whole deployment
//! (see docs/ARCHITECTURE.md for the cost of that choice). When the shared cache fails, the hub
//! appends to an in-process history and bus instead: local delivery goes on under a local
//! epoch, and cross-instance delivery resumes with the next message after Redis returns.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use sovereign_auth::Role;
use sovereign_auth::revocation::{CHANNEL as REVOCATIONS, Revocation};
use sovereign_cache::{BackendKind, Cache, LogEntry, LogPosition, RateKey, RateLimiter, Replay};
use tokio::sync::{Notify, mpsc};
use uuid::Uuid;

use crate::channel::{Action, Channel, authorize};
use crate::error::RealtimeError;
use crate::protocol::{
    ClientFrame, Position, PresenceEvent, PresenceUser, RequestId, ServerFrame, close,
};
use crate::settings::RealtimeSettings;

/// A text frame: cheap to clone (shared bytes), so one message is serialised once for all its
/// receivers and handed to the socket without a copy.
pub type Frame = bytestring::ByteString;

/// Frames received from and queued to clients by every hub of the process: counted in
/// process-wide atomics rather than through the metrics registry on each of the thousands of
/// deliveries a message can cause (see [`frame_counts`]).
static FRAMES_IN: AtomicU64 = AtomicU64::new(0);
static FRAMES_OUT: AtomicU64 = AtomicU64::new(0);

/// (frames received from clients, frames queued to clients) since the process started.
#[must_use]
pub fn frame_counts() -> (u64, u64) {
    (
        FRAMES_IN.load(Ordering::Relaxed),
        FRAMES_OUT.load(Ordering::Relaxed),
    )
}

/// The bus every message travels on, in the cache's `rt` namespace.
const BUS: &str = "bus";
/// The bus presence events travel on.
const PRESENCE_BUS: &str = "presence";
/// Invalid frames a connection may send before it is closed.
const MAX_INVALID_FRAMES: u32 = 10;

/// How a connection authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialRef {
    Session(Uuid),
    ApiKey(Uuid),
}

/// Who is on a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identity {
    pub tenant: Uuid,
    pub user: Uuid,
    /// The role the connection acts with (an API key's may be below its owner's).
    pub role: Role,
    pub credential: CredentialRef,
    /// False for an API key without the write scope: it may subscribe, not publish.
    pub can_write: bool,
    /// When the credential expires; the transport closes the connection then.
    pub expires_at: Option<DateTime<Utc>>,
}

impl Identity {
    /// The identity of an authenticated principal acting in `tenant` (its own, or — for a
    /// superadmin — the one it named), until `expires_at`.
    #[must_use]
    pub fn of(
        principal: &sovereign_auth::Principal,
        tenant: Uuid,
        expires_at: Option<DateTime<Utc>>,
    ) -> Self {
        Self {
            tenant,
            user: principal.user.id,
            role: principal.role,
            credential: match principal.credential {
                sovereign_auth::Credential::Session { id } => CredentialRef::Session(id),
                sovereign_auth::Credential::ApiKey { id, .. } => CredentialRef::ApiKey(id),
            },
            can_write: principal
                .require_scope(sovereign_auth::Scope::Write)
                .is_ok(),
            expires_at,
        }
    }
}

/// How the server closes a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Close {
    pub code: u16,
    pub reason: &'static str,
}

impl Close {
    pub const GOING_AWAY: Self = Self {
        code: close::GOING_AWAY,
        reason: "server shutting down",
    };
    pub const REVOKED: Self = Self {
        code: close::REVOKED,
        reason: "credential revoked",
    };
    pub const TOKEN_EXPIRED: Self = Self {
        code: close::TOKEN_EXPIRED,
        reason: "access token expired",
    };
    pub const ROLE_CHANGED: Self = Self {
        code: close::ROLE_CHANGED,
        reason: "role changed",
    };
    pub const SLOW_CONSUMER: Self = Self {
        code: close::SLOW_CONSUMER,
        reason: "slow consumer",
    };
    pub const HEARTBEAT_TIMEOUT: Self = Self {
        code: close::HEARTBEAT_TIMEOUT,
        reason: "no pong",
    };
    pub const PROTOCOL_VIOLATION: Self = Self {
        code: close::PROTOCOL_VIOLATION,
        reason: "too many invalid frames",
    };
    pub const MESSAGE_TOO_BIG: Self = Self {
        code: close::MESSAGE_TOO_BIG,
        reason: "frame too large",
    };
    pub const UNSUPPORTED_DATA: Self = Self {
        code: close::UNSUPPORTED_DATA,
        reason: "text frames only",
    };
}

/// What the transport must do next for a connection.
#[derive(Debug)]
pub enum Event {
    /// Send this text frame.
    Send(Frame),
    /// Close with this code.
    Close(Close),
    /// Check the credential again (a revocation concerned it) and report with
    /// [`Connection::rechecked`].
    Recheck,
}

/// A `refresh` the transport must verify (the hub knows no tokens) and report with
/// [`Connection::refreshed`].
#[derive(Debug)]
pub struct Refresh {
    pub id: Option<RequestId>,
    pub token: String,
}

type Key = (Uuid, Arc<str>);

/// What travels on the bus and is kept in history.
#[derive(Serialize, Deserialize)]
struct Envelope<'a> {
    t: Uuid,
    c: &'a str,
    p: Option<Uuid>,
    #[serde(borrow)]
    d: &'a RawValue,
}

#[derive(Serialize, Deserialize)]
struct PresenceNote<'a> {
    t: Uuid,
    c: &'a str,
    u: Uuid,
    e: PresenceEvent,
}

#[derive(Default)]
struct Signals {
    close: Option<Close>,
    recheck: bool,
}

struct ConnShared {
    id: u64,
    uuid: Uuid,
    identity: Mutex<Identity>,
    tx: mpsc::Sender<Frame>,
    signals: Mutex<Signals>,
    notify: Notify,
    /// Channel name → channel, for this connection.
    subscriptions: Mutex<HashMap<Arc<str>, Channel>>,
}

impl ConnShared {
    fn identity(&self) -> Identity {
        *lock(&self.identity)
    }

    /// Queues a frame without waiting; a full queue closes the connection as a slow consumer.
    fn push(&self, frame: Frame) {
        match self.tx.try_send(frame) {
            Ok(()) => {
                FRAMES_OUT.fetch_add(1, Ordering::Relaxed);
            }
            Err(mpsc::error::TrySendError::Full(_)) => {
                if self.signal_close(Close::SLOW_CONSUMER) {
                    metrics::counter!("sovereign_ws_slow_consumers_total").increment(1);
                    tracing::info!(connection = %self.uuid, "slow consumer disconnected");
                }
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }

    fn push_frame(&self, frame: &ServerFrame<'_>) {
        self.push(Frame::from(frame.to_text()));
    }

    fn push_error(&self, id: Option<&RequestId>, error: &RealtimeError) {
        let retry_after_ms = sovereign_core::Diagnostic::retry_after(error)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        self.push_frame(&ServerFrame::Error {
            id,
            code: sovereign_core::Diagnostic::code(error),
            message: &error.to_string(),
            retry_after_ms,
        });
    }

    /// Asks the transport to close; the first reason wins. True when this call set it.
    fn signal_close(&self, reason: Close) -> bool {
        let set = {
            let mut signals = lock(&self.signals);
            if signals.close.is_some() {
                false
            } else {
                signals.close = Some(reason);
                true
            }
        };
        if set {
            self.notify.notify_one();
        }
        set
    }

    fn signal_recheck(&self) {
        lock(&self.signals).recheck = true;
        self.notify.notify_one();
    }
}

/// A message that arrived while its subscriber was recovering: epoch, offset, frame.
type Pending = (Arc<str>, u64, Frame);

/// A subscription: live, or buffering new messages while missed ones are replayed.
struct Subscriber {
    conn: Arc<ConnShared>,
    /// `Some` while recovering.
    buffer: Mutex<Option<Vec<Pending>>>,
}

impl Subscriber {
    fn deliver(&self, epoch: &Arc<str>, offset: u64, frame: &Frame) {
        let mut buffer = lock(&self.buffer);
        match buffer.as_mut() {
            Some(pending) => pending.push((Arc::clone(epoch), offset, frame.clone())),
            None => self.conn.push(frame.clone()),
        }
    }
}

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
            listeners.push((bus.clone(), BUS, on_bus));
            listeners.push((bus, PRESENCE_BUS, on_presence));
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
                hub.recheck_where(|_| true);
            })
        });
        hub
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

    /// Registers a connection for `identity`; its first frame is `welcome`.
    pub fn connect(&self, identity: Identity) -> Result<Connection, RealtimeError> {
        if self.inner.closing.load(Ordering::Acquire) {
            return Err(RealtimeError::ShuttingDown);
        }
        {
            let mut per_user = lock(&self.inner.per_user);
            let count = per_user.entry(identity.user).or_default();
            if *count >= self.inner.settings.max_connections_per_user {
                return Err(RealtimeError::TooManyConnections(
                    self.inner.settings.max_connections_per_user,
                ));
            }
            *count += 1;
        }
        let (tx, rx) = mpsc::channel(self.inner.settings.outbound_queue.max(2));
        let shared = Arc::new(ConnShared {
            id: self.inner.next_id.fetch_add(1, Ordering::Relaxed),
            uuid: Uuid::now_v7(),
            identity: Mutex::new(identity),
            tx,
            signals: Mutex::new(Signals::default()),
            notify: Notify::new(),
            subscriptions: Mutex::new(HashMap::new()),
        });
        lock(&self.inner.connections).insert(shared.id, Arc::clone(&shared));
        let open = self.inner.connection_count.fetch_add(1, Ordering::Relaxed) + 1;
        metrics::gauge!("sovereign_ws_connections").set(open as f64);
        shared.push_frame(&ServerFrame::Welcome {
            connection: shared.uuid,
            user: identity.user,
            expires_at: identity.expires_at.map(|at| at.timestamp()),
            ping_interval_ms: u64::try_from(self.inner.settings.ping_interval.as_millis())
                .unwrap_or(u64::MAX),
        });
        // A shutdown that began meanwhile still reaches this connection.
        if self.inner.closing.load(Ordering::Acquire) {
            shared.signal_close(Close::GOING_AWAY);
        }
        Ok(Connection {
            hub: self.clone(),
            shared,
            rx,
            invalid_frames: 0,
        })
    }

    /// Publishes as the server (no publisher) to `channel` of `tenant`, whatever its kind.
    /// Authorization is the caller's ([`crate::channel::authorize_server_publish`]).
    pub async fn publish_as_server(
        &self,
        tenant: Uuid,
        channel: &Channel,
        payload: &RawValue,
    ) -> Result<Position, RealtimeError> {
        self.publish(tenant, channel, None, payload).await
    }

    async fn publish(
        &self,
        tenant: Uuid,
        channel: &Channel,
        publisher: Option<Uuid>,
        payload: &RawValue,
    ) -> Result<Position, RealtimeError> {
        self.check_size(payload)?;
        let data = serde_json::to_vec(&Envelope {
            t: tenant,
            c: channel.as_str(),
            p: publisher,
            d: payload,
        })
        .map_err(|e| RealtimeError::InvalidMessage(e.to_string()))?;
        let log = log_name(tenant, channel);
        let settings = &self.inner.settings;
        let appended = self
            .inner
            .shared
            .log_append(
                &log,
                &data,
                settings.history_size,
                settings.history_ttl,
                Some(BUS),
            )
            .await;
        let entry = match (appended, &self.inner.local) {
            (Ok(entry), _) => {
                if self.inner.falling_back.swap(false, Ordering::Relaxed) {
                    tracing::info!("realtime fan-out crosses instances again");
                }
                entry
            }
            (Err(e), Some(local)) => {
                if !self.inner.falling_back.swap(true, Ordering::Relaxed) {
                    tracing::warn!(error = %e, "shared cache failing: realtime messages reach this instance only");
                }
                local
                    .log_append(
                        &log,
                        &data,
                        settings.history_size,
                        settings.history_ttl,
                        Some(BUS),
                    )
                    .await
                    .map_err(|_| RealtimeError::ShuttingDown)?
            }
            (Err(e), None) => {
                tracing::error!(error = %e, "in-process history failed");
                return Err(RealtimeError::ShuttingDown);
            }
        };
        metrics::counter!("sovereign_ws_published_total").increment(1);
        Ok(Position {
            epoch: entry.epoch,
            offset: entry.offset,
        })
    }

    fn check_size(&self, payload: &RawValue) -> Result<(), RealtimeError> {
        let size = payload.get().len();
        let limit = self.inner.settings.max_message_bytes;
        if size > limit {
            return Err(RealtimeError::MessageTooLarge { size, limit });
        }
        Ok(())
    }

    /// A message from a bus: fan it out to this instance's subscribers of its channel.
    fn on_bus(&self, payload: &[u8]) {
        let Some(entry) = LogEntry::decode(payload) else {
            tracing::warn!("unreadable realtime bus message");
            return;
        };
        let Some((key, frame)) = message_frame(&entry) else {
            tracing::warn!("unreadable realtime envelope");
            return;
        };
        let epoch: Arc<str> = Arc::from(entry.epoch.as_str());
        let channels = read(&self.inner.channels);
        if let Some(subscribers) = channels.get(&key) {
            for subscriber in subscribers.values() {
                subscriber.deliver(&epoch, entry.offset, &frame);
            }
        }
    }

    fn on_presence(&self, payload: &[u8]) {
        let Ok(note) = serde_json::from_slice::<PresenceNote<'_>>(payload) else {
            return;
        };
        if read(&self.inner.presence_listeners).is_empty() {
            return;
        }
        let frame = Frame::from(
            ServerFrame::Presence {
                channel: note.c,
                event: note.e,
                user: note.u,
            }
            .to_text(),
        );
        let key = (note.t, Arc::from(note.c));
        let listeners = read(&self.inner.presence_listeners);
        if let Some(listeners) = listeners.get(&key) {
            for conn in listeners.values() {
                conn.push(frame.clone());
            }
        }
    }

    fn on_revocation(&self, revocation: Revocation) {
        match revocation {
            Revocation::Session(id) => self.close_where(
                |i| i.credential == CredentialRef::Session(id),
                Close::REVOKED,
            ),
            Revocation::ApiKey(id) => self.close_where(
                |i| i.credential == CredentialRef::ApiKey(id),
                Close::REVOKED,
            ),
            // Anything about the account changed: the transport asks the database what.
            Revocation::User(id) => self.recheck_where(|i| i.user == id),
            Revocation::Tenant(id) => self.recheck_where(|i| i.tenant == id),
        }
    }

    fn each_connection(&self, mut f: impl FnMut(&Arc<ConnShared>)) {
        let connections: Vec<_> = lock(&self.inner.connections).values().cloned().collect();
        for conn in &connections {
            f(conn);
        }
    }

    fn close_where(&self, matches: impl Fn(&Identity) -> bool, reason: Close) {
        self.each_connection(|conn| {
            if matches(&lock(&conn.identity)) {
                conn.signal_close(reason);
            }
        });
    }

    fn recheck_where(&self, matches: impl Fn(&Identity) -> bool) {
        self.each_connection(|conn| {
            if matches(&lock(&conn.identity)) {
                conn.signal_recheck();
            }
        });
    }

    /// Closes every connection with 1001 and refuses new ones.
    pub fn shutdown(&self) {
        self.inner.closing.store(true, Ordering::Release);
        self.each_connection(|conn| {
            conn.signal_close(Close::GOING_AWAY);
        });
    }

    /// Who is in `channel` of `tenant`, across instances (this instance's view when the shared
    /// cache fails).
    pub async fn presence(&self, tenant: Uuid, channel: &Channel) -> Vec<PresenceUser> {
        let set = presence_name(tenant, channel);
        let members = match self.inner.shared.members(&set).await {
            Ok(members) => members,
            Err(e) => {
                tracing::debug!(error = %e, "presence from this instance only");
                self.local_members(tenant, channel)
            }
        };
        let mut counts: HashMap<Uuid, u32> = HashMap::new();
        for member in members {
            if let Some(user) = member
                .split(':')
                .next()
                .and_then(|u| Uuid::try_parse(u).ok())
            {
                *counts.entry(user).or_default() += 1;
            }
        }
        let mut users: Vec<_> = counts
            .into_iter()
            .map(|(user, connections)| PresenceUser { user, connections })
            .collect();
        users.sort_by_key(|u| u.user);
        users
    }

    fn member(&self, conn: &ConnShared) -> String {
        format!(
            "{}:{}:{}",
            lock(&conn.identity).user,
            self.inner.instance,
            conn.id
        )
    }

    fn local_members(&self, tenant: Uuid, channel: &Channel) -> Vec<String> {
        let key = (tenant, channel.shared_name());
        read(&self.inner.channels)
            .get(&key)
            .map(|subscribers| subscribers.values().map(|s| self.member(&s.conn)).collect())
            .unwrap_or_default()
    }

    async fn announce_presence(
        &self,
        tenant: Uuid,
        channel: &Channel,
        user: Uuid,
        member: String,
        event: PresenceEvent,
    ) {
        let set = presence_name(tenant, channel);
        let stored = match event {
            PresenceEvent::Join => self
                .inner
                .shared
                .members_add(&set, &[member], self.inner.settings.presence_ttl)
                .await
                .map(|_| ()),
            PresenceEvent::Leave => self.inner.shared.members_remove(&set, &[member]).await,
        };
        let note = PresenceNote {
            t: tenant,
            c: channel.as_str(),
            u: user,
            e: event,
        };
        let published = match stored {
            Ok(()) => self
                .inner
                .shared
                .publish(PRESENCE_BUS, &note)
                .await
                .map(|_| ()),
            Err(e) => Err(e),
        };
        if let Err(e) = published {
            tracing::debug!(error = %e, "presence stays on this instance");
            if let Some(local) = &self.inner.local {
                let _ = local.publish(PRESENCE_BUS, &note).await;
            }
        }
    }

    /// Renews this instance's presence entries before they expire.
    async fn renew_presence(&self) {
        let snapshot: Vec<(Key, Vec<String>)> = read(&self.inner.channels)
            .iter()
            .map(|(key, subscribers)| {
                (
                    key.clone(),
                    subscribers.values().map(|s| self.member(&s.conn)).collect(),
                )
            })
            .collect();
        for ((tenant, name), members) in snapshot {
            let set = format!("presence:{tenant}:{name}");
            if let Err(e) = self
                .inner
                .shared
                .members_add(&set, &members, self.inner.settings.presence_ttl)
                .await
            {
                tracing::debug!(error = %e, "presence not renewed");
                return;
            }
        }
    }

    async fn replay(&self, tenant: Uuid, channel: &Channel, since: &Position) -> Replay {
        let log = log_name(tenant, channel);
        let ttl = self.inner.settings.history_ttl;
        match self
            .inner
            .shared
            .log_replay(&log, &since.epoch, since.offset, ttl)
            .await
        {
            Ok(replay) => replay,
            Err(e) => {
                tracing::debug!(error = %e, "history from this instance only");
                match &self.inner.local {
                    Some(local) => local
                        .log_replay(&log, &since.epoch, since.offset, ttl)
                        .await
                        .unwrap_or_else(|_| gap_unknown()),
                    None => gap_unknown(),
                }
            }
        }
    }

    async fn position(&self, tenant: Uuid, channel: &Channel) -> LogPosition {
        let log = log_name(tenant, channel);
        let ttl = self.inner.settings.history_ttl;
        match self.inner.shared.log_position(&log, ttl).await {
            Ok(position) => position,
            Err(_) => match &self.inner.local {
                Some(local) => local
                    .log_position(&log, ttl)
                    .await
                    .unwrap_or_else(|_| unknown_position()),
                None => unknown_position(),
            },
        }
    }

    fn unregister(&self, shared: &Arc<ConnShared>) {
        let identity = shared.identity();
        let subscriptions: Vec<Channel> = lock(&shared.subscriptions)
            .drain()
            .map(|(_, c)| c)
            .collect();
        let member = self.member(shared);
        for channel in &subscriptions {
            self.remove_subscriber(identity.tenant, channel, shared.id);
        }
        lock(&self.inner.connections).remove(&shared.id);
        {
            let mut per_user = lock(&self.inner.per_user);
            if let Some(count) = per_user.get_mut(&identity.user) {
                *count = count.saturating_sub(1);
                if *count == 0 {
                    per_user.remove(&identity.user);
                }
            }
        }
        let open = self
            .inner
            .connection_count
            .fetch_sub(1, Ordering::Relaxed)
            .saturating_sub(1);
        metrics::gauge!("sovereign_ws_connections").set(open as f64);
        if !subscriptions.is_empty()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            let hub = self.clone();
            runtime.spawn(async move {
                for channel in subscriptions {
                    hub.announce_presence(
                        identity.tenant,
                        &channel,
                        identity.user,
                        member.clone(),
                        PresenceEvent::Leave,
                    )
                    .await;
                }
            });
        }
    }

    fn remove_subscriber(&self, tenant: Uuid, channel: &Channel, id: u64) {
        let key = (tenant, channel.shared_name());
        {
            let mut channels = write(&self.inner.channels);
            if let Some(subscribers) = channels.get_mut(&key) {
                subscribers.remove(&id);
                if subscribers.is_empty() {
                    channels.remove(&key);
                }
            }
        }
        self.set_presence_listener(key, &None, id);
    }

    /// Adds (`Some`) or removes (`None`) a connection from a channel's presence listeners.
    fn set_presence_listener(&self, key: Key, conn: &Option<Arc<ConnShared>>, id: u64) {
        let mut listeners = write(&self.inner.presence_listeners);
        match conn {
            Some(conn) => {
                listeners
                    .entry(key)
                    .or_default()
                    .insert(id, Arc::clone(conn));
            }
            None => {
                if let Some(of_channel) = listeners.get_mut(&key) {
                    of_channel.remove(&id);
                    if of_channel.is_empty() {
                        listeners.remove(&key);
                    }
                }
            }
        }
    }
}

/// One connection's end of the hub. Dropping it unsubscribes everything.
pub struct Connection {
    hub: Hub,
    shared: Arc<ConnShared>,
    rx: mpsc::Receiver<Frame>,
    invalid_frames: u32,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("id", &self.shared.uuid)
            .finish_non_exhaustive()
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.hub.unregister(&self.shared);
    }
}

impl Connection {
    /// The connection's public id (the one in `welcome`).
    #[must_use]
    pub fn id(&self) -> Uuid {
        self.shared.uuid
    }

    #[must_use]
    pub fn identity(&self) -> Identity {
        self.shared.identity()
    }

    /// The next thing to do: a close or a recheck takes precedence over queued frames.
    pub async fn next_event(&mut self) -> Event {
        loop {
            {
                let mut signals = lock(&self.shared.signals);
                if let Some(reason) = signals.close {
                    return Event::Close(reason);
                }
                if std::mem::take(&mut signals.recheck) {
                    return Event::Recheck;
                }
            }
            tokio::select! {
                biased;
                () = self.shared.notify.notified() => {}
                frame = self.rx.recv() => match frame {
                    Some(frame) => return Event::Send(frame),
                    None => return Event::Close(Close::GOING_AWAY),
                },
            }
        }
    }

    /// Asks for this connection to be closed (for example, a missed pong).
    pub fn close(&self, reason: Close) {
        self.shared.signal_close(reason);
    }

    /// The transport's answer to [`Event::Recheck`]: the identity the credential has now, or
    /// `None` when it is no longer valid.
    pub fn rechecked(&self, now: Option<Identity>) {
        let current = self.shared.identity();
        match now {
            None => {
                self.shared.signal_close(Close::REVOKED);
            }
            Some(now) if now.role != current.role || now.can_write != current.can_write => {
                self.shared.signal_close(Close::ROLE_CHANGED);
            }
            Some(_) => {}
        }
    }

    /// The transport's answer to a [`Refresh`]: the identity the new token proves, if valid.
    /// It must be the same account, tenant and role. Returns whether it was accepted (the
    /// transport then rechecks with the new token).
    pub fn refreshed(&self, id: Option<&RequestId>, verified: Option<Identity>) -> bool {
        let mut identity = lock(&self.shared.identity);
        match verified {
            Some(new)
                if new.user == identity.user
                    && new.tenant == identity.tenant
                    && new.role == identity.role =>
            {
                *identity = new;
                let expires = identity.expires_at.map(|at| at.timestamp());
                drop(identity);
                self.shared.push(Frame::from(
                    serde_json::json!({"type": "ack", "id": id, "expires_at": expires}).to_string(),
                ));
                true
            }
            _ => {
                drop(identity);
                self.shared.push_frame(&ServerFrame::Error {
                    id,
                    code: "invalid_token",
                    message: "the token is not a valid access token of this connection's account",
                    retry_after_ms: None,
                });
                false
            }
        }
    }

    /// Handles one text frame from the client. Replies are queued on this connection; a
    /// `refresh` is handed back for the transport to verify.
    pub async fn handle_text(&mut self, text: &str) -> Option<Refresh> {
        FRAMES_IN.fetch_add(1, Ordering::Relaxed);
        let frame = match ClientFrame::parse(text) {
            Ok(frame) => frame,
            Err(e) => {
                self.invalid_frames += 1;
                self.shared
                    .push_error(None, &RealtimeError::InvalidMessage(e));
                if self.invalid_frames >= MAX_INVALID_FRAMES {
                    self.shared.signal_close(Close::PROTOCOL_VIOLATION);
                }
                return None;
            }
        };
        match frame {
            ClientFrame::Subscribe {
                id,
                channel,
                since,
                presence,
            } => {
                let presence = presence.unwrap_or(false);
                if let Err(e) = self.subscribe(id.as_ref(), &channel, since, presence).await {
                    self.shared.push_error(id.as_ref(), &e);
                }
            }
            ClientFrame::Unsubscribe { id, channel } => match self.unsubscribe(&channel).await {
                Ok(()) => self.shared.push_frame(&ServerFrame::Ack {
                    id: id.as_ref(),
                    channel: Some(&channel),
                    epoch: None,
                    offset: None,
                }),
                Err(e) => self.shared.push_error(id.as_ref(), &e),
            },
            ClientFrame::Publish {
                id,
                channel,
                payload,
            } => match self.publish(&channel, &payload).await {
                Ok(position) => self.shared.push_frame(&ServerFrame::Ack {
                    id: id.as_ref(),
                    channel: Some(&channel),
                    epoch: Some(&position.epoch),
                    offset: Some(position.offset),
                }),
                Err(e) => self.shared.push_error(id.as_ref(), &e),
            },
            ClientFrame::Presence { id, channel } => match self.presence(&channel).await {
                Ok(users) => self.shared.push_frame(&ServerFrame::PresenceState {
                    id: id.as_ref(),
                    channel: &channel,
                    users,
                }),
                Err(e) => self.shared.push_error(id.as_ref(), &e),
            },
            ClientFrame::Refresh { id, token } => return Some(Refresh { id, token }),
            ClientFrame::Ping { id } => self
                .shared
                .push_frame(&ServerFrame::Pong { id: id.as_ref() }),
        }
        None
    }

    async fn subscribe(
        &self,
        id: Option<&RequestId>,
        name: &str,
        since: Option<Position>,
        presence: bool,
    ) -> Result<(), RealtimeError> {
        let channel = Channel::parse(name)?;
        let identity = self.shared.identity();
        authorize(&identity, &channel, Action::Subscribe)?;
        let hub = &self.hub;
        let tenant = identity.tenant;
        let key = (tenant, channel.shared_name());
        let fresh = {
            let mut subscriptions = lock(&self.shared.subscriptions);
            if !subscriptions.contains_key(channel.as_str())
                && subscriptions.len() >= hub.inner.settings.max_subscriptions
            {
                return Err(RealtimeError::TooManySubscriptions(
                    hub.inner.settings.max_subscriptions,
                ));
            }
            subscriptions
                .insert(channel.shared_name(), channel.clone())
                .is_none()
        };
        let subscriber = Arc::new(Subscriber {
            conn: Arc::clone(&self.shared),
            buffer: Mutex::new(since.is_some().then(Vec::new)),
        });
        write(&hub.inner.channels)
            .entry(key.clone())
            .or_default()
            .insert(self.shared.id, Arc::clone(&subscriber));
        hub.set_presence_listener(
            key,
            &presence.then(|| Arc::clone(&self.shared)),
            self.shared.id,
        );

        match since {
            None => {
                let position = hub.position(tenant, &channel).await;
                self.shared.push_frame(&ServerFrame::Ack {
                    id,
                    channel: Some(channel.as_str()),
                    epoch: Some(&position.epoch),
                    offset: Some(position.offset),
                });
            }
            Some(since) => {
                let replay = hub.replay(tenant, &channel, &since).await;
                // Under the buffer's lock, so nothing new slips between replay and live.
                let mut buffer = lock(&subscriber.buffer);
                let pending = buffer.take().unwrap_or_default();
                let (entries, position, recovered) = match replay {
                    Replay::Complete { entries, position } => (entries, position, true),
                    Replay::Gap { position } => (Vec::new(), position, false),
                };
                self.shared.push_frame(&ServerFrame::Recovered {
                    id,
                    channel: channel.as_str(),
                    recovered,
                    epoch: &position.epoch,
                    offset: position.offset,
                    replayed: entries.len(),
                });
                for entry in &entries {
                    if let Some((_, frame)) = message_frame(entry) {
                        self.shared.push(frame);
                    }
                }
                // Buffered messages at or before the position were replayed (or, after a gap,
                // are older than where the client was told to start).
                for (epoch, offset, frame) in pending {
                    if *epoch != *position.epoch || offset > position.offset {
                        self.shared.push(frame);
                    }
                }
            }
        }
        if fresh {
            hub.announce_presence(
                tenant,
                &channel,
                identity.user,
                hub.member(&self.shared),
                PresenceEvent::Join,
            )
            .await;
        }
        Ok(())
    }

    async fn unsubscribe(&self, name: &str) -> Result<(), RealtimeError> {
        let channel = Channel::parse(name)?;
        let removed = lock(&self.shared.subscriptions).remove(channel.as_str());
        if removed.is_none() {
            return Err(RealtimeError::NotSubscribed);
        }
        let identity = self.shared.identity();
        self.hub
            .remove_subscriber(identity.tenant, &channel, self.shared.id);
        self.hub
            .announce_presence(
                identity.tenant,
                &channel,
                identity.user,
                self.hub.member(&self.shared),
                PresenceEvent::Leave,
            )
            .await;
        Ok(())
    }

    async fn publish(&self, name: &str, payload: &RawValue) -> Result<Position, RealtimeError> {
        let channel = Channel::parse(name)?;
        let identity = self.shared.identity();
        authorize(&identity, &channel, Action::Publish)?;
        self.hub.check_size(payload)?;
        let user = identity.user.to_string();
        let decision = self
            .hub
            .inner
            .limiter
            .check(
                "realtime_publish",
                RateKey::Account(&user),
                self.hub.inner.settings.publish_quota,
            )
            .await;
        if !decision.allowed {
            metrics::counter!("sovereign_rate_limited_total", "policy" => "realtime_publish")
                .increment(1);
            return Err(RealtimeError::RateLimited {
                retry_after: decision.retry_after.unwrap_or(Duration::from_secs(1)),
            });
        }
        self.hub
            .publish(identity.tenant, &channel, Some(identity.user), payload)
            .await
    }

    async fn presence(&self, name: &str) -> Result<Vec<PresenceUser>, RealtimeError> {
        let channel = Channel::parse(name)?;
        let identity = self.shared.identity();
        authorize(&identity, &channel, Action::Subscribe)?;
        Ok(self.hub.presence(identity.tenant, &channel).await)
    }
}

fn log_name(tenant: Uuid, channel: &Channel) -> String {
    format!("log:{tenant}:{channel}")
}

fn presence_name(tenant: Uuid, channel: &Channel) -> String {
    format!("presence:{tenant}:{channel}")
}

fn unknown_position() -> LogPosition {
    LogPosition {
        epoch: String::from("unavailable"),
        offset: 0,
    }
}

fn gap_unknown() -> Replay {
    Replay::Gap {
        position: unknown_position(),
    }
}

/// The channel key and the `message` frame of a history entry.
fn message_frame(entry: &LogEntry) -> Option<(Key, Frame)> {
    let envelope: Envelope<'_> = serde_json::from_slice(&entry.data).ok()?;
    let frame = ServerFrame::Message {
        channel: envelope.c,
        epoch: &entry.epoch,
        offset: entry.offset,
        publisher: envelope.p,
        payload: envelope.d,
    }
    .to_text();
    Some(((envelope.t, Arc::from(envelope.c)), Frame::from(frame)))
}

/// What a listener does with each message of its channel.
type Handler = fn(&Hub, &sovereign_cache::Message);

/// Subscribes to `channel` of `cache` now, then handles its messages in the background for as
/// long as the hub lives, subscribing again with backoff when the subscription fails or ends.
async fn listen(hub: std::sync::Weak<Inner>, cache: Cache, channel: &'static str, handle: Handler) {
    let first = cache.subscribe(channel).await;
    tokio::spawn(async move {
        let mut backoff = Duration::from_millis(100);
        let mut attempt = Some(first);
        loop {
            if hub.strong_count() == 0 {
                return;
            }
            let first_attempt = attempt.is_some();
            let subscribed = match attempt.take() {
                Some(result) => result,
                None => cache.subscribe(channel).await,
            };
            match subscribed {
                Ok(mut subscription) => {
                    backoff = Duration::from_millis(100);
                    if channel == REVOCATIONS && !first_attempt {
                        // Subscribed again after a failure: revocations may have been missed.
                        recheck_all(&hub);
                    }
                    let mut gaps = (subscription.dropped(), subscription.resubscribed());
                    while let Some(message) = subscription.next_message().await {
                        let Some(inner) = hub.upgrade() else { return };
                        let hub = Hub { inner };
                        let now = (subscription.dropped(), subscription.resubscribed());
                        if channel == REVOCATIONS && now != gaps {
                            // Messages were dropped, or the connection was lost and made again:
                            // revocations may have been missed, so check everyone.
                            gaps = now;
                            hub.recheck_where(|_| true);
                        }
                        handle(&hub, &message);
                    }
                }
                Err(e) => {
                    tracing::debug!(error = %e, channel, "realtime subscription failed; retrying");
                }
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    });
}

fn recheck_all(hub: &std::sync::Weak<Inner>) {
    if let Some(inner) = hub.upgrade() {
        Hub { inner }.recheck_where(|_| true);
    }
}

type Tick = fn(Hub) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>>;

fn spawn_periodic(hub: std::sync::Weak<Inner>, every: Duration, tick: Tick) {
    let every = every.max(Duration::from_millis(100));
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(every);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        interval.tick().await;
        loop {
            interval.tick().await;
            let Some(inner) = hub.upgrade() else { return };
            tick(Hub { inner }).await;
        }
    });
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
