//! The registry of one instance: its connections (at most so many per user, none once shutting
//! down), each channel's subscribers and presence listeners, and shutdown.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use tokio::sync::{Notify, mpsc};
use uuid::Uuid;

use super::connection::{ConnShared, Signals};
use super::{Close, Connection, Frame, Hub, Identity, Key, lock, millis, write};
use crate::channel::Channel;
use crate::error::RealtimeError;
use crate::protocol::{PresenceEvent, ServerFrame};

/// A message that arrived while its subscriber was recovering: epoch, offset, frame.
pub(super) type Pending = (Arc<str>, u64, Frame);

/// Where a subscription's messages go.
pub(super) enum Flow {
    /// Missed messages are being replayed: new ones wait.
    Recovering(Vec<Pending>),
    /// Straight to the connection — except, right after a recovery, messages of the epoch it
    /// ended in at or before the offset it ended at: the client has them (or was told they
    /// are gone). The bus can hand this instance a message a moment after it was appended, so
    /// one published before the recovery may arrive after it.
    Live { after: Option<(Arc<str>, u64)> },
}

/// A subscription: live, or buffering new messages while missed ones are replayed.
pub(super) struct Subscriber {
    pub(super) conn: Arc<ConnShared>,
    pub(super) flow: Mutex<Flow>,
}

impl Subscriber {
    pub(super) fn deliver(&self, epoch: &Arc<str>, offset: u64, frame: &Frame) {
        let mut flow = lock(&self.flow);
        match &mut *flow {
            Flow::Recovering(pending) => pending.push((Arc::clone(epoch), offset, frame.clone())),
            Flow::Live { after } => {
                if let Some((seen_epoch, seen)) = after {
                    if **seen_epoch == **epoch && offset <= *seen {
                        return;
                    }
                    // Past the recovered position: nothing older can follow.
                    *after = None;
                }
                self.conn.push(frame.clone());
            }
        }
    }
}

impl Hub {
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
            ping_interval_ms: millis(self.inner.settings.ping_interval),
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

    /// Closes every connection with 1001 and refuses new ones.
    pub fn shutdown(&self) {
        self.inner.closing.store(true, Ordering::Release);
        self.each_connection(|conn| {
            conn.signal_close(Close::GOING_AWAY);
        });
    }

    pub(super) fn each_connection(&self, mut f: impl FnMut(&Arc<ConnShared>)) {
        let connections: Vec<_> = lock(&self.inner.connections).values().cloned().collect();
        for conn in &connections {
            f(conn);
        }
    }

    /// Forgets a dropped connection: its subscriptions (announcing that it left them), its
    /// place in the per-user count.
    pub(super) fn unregister(&self, shared: &Arc<ConnShared>) {
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

    /// Adds `subscriber` to the channel `key`, and to its presence listeners when `presence`.
    pub(super) fn add_subscriber(&self, key: Key, subscriber: &Arc<Subscriber>, presence: bool) {
        let conn = &subscriber.conn;
        write(&self.inner.channels)
            .entry(key.clone())
            .or_default()
            .insert(conn.id, Arc::clone(subscriber));
        self.set_presence_listener(key, &presence.then(|| Arc::clone(conn)), conn.id);
    }

    pub(super) fn remove_subscriber(&self, tenant: Uuid, channel: &Channel, id: u64) {
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
