//! The bus: publishing (appending to the channel's history and publishing on `rt:bus` in one
//! step), fan-out of what arrives on the bus to this instance's subscribers, history for
//! recovery, and the in-process history and bus that stand in while the shared cache fails.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use sovereign_cache::{Cache, CacheError, LogEntry, LogPosition, Replay};
use uuid::Uuid;

use super::registry::{Flow, Subscriber};
use super::{Frame, Hub, Key, lock, read};
use crate::channel::Channel;
use crate::error::RealtimeError;
use crate::protocol::{Position, RequestId, ServerFrame};

/// The bus every message travels on, in the cache's `rt` namespace.
pub(super) const BUS: &str = "bus";

/// What travels on the bus and is kept in history.
#[derive(Serialize, Deserialize)]
struct Envelope<'a> {
    t: Uuid,
    c: &'a str,
    p: Option<Uuid>,
    #[serde(borrow)]
    d: &'a RawValue,
}

impl Hub {
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

    pub(super) async fn publish(
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
        let appended = self.append(&self.inner.shared, &log, &data).await;
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
                self.append(local, &log, &data)
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

    /// Appends `data` to the history `log` in `cache` and publishes it on that cache's bus, in
    /// one step.
    async fn append(&self, cache: &Cache, log: &str, data: &[u8]) -> Result<LogEntry, CacheError> {
        let settings = &self.inner.settings;
        cache
            .log_append(
                log,
                data,
                settings.history_size,
                settings.history_ttl,
                Some(BUS),
            )
            .await
    }

    pub(super) fn check_size(&self, payload: &RawValue) -> Result<(), RealtimeError> {
        let size = payload.get().len();
        let limit = self.inner.settings.max_message_bytes;
        if size > limit {
            return Err(RealtimeError::MessageTooLarge { size, limit });
        }
        Ok(())
    }

    /// A message from a bus: fan it out to this instance's subscribers of its channel.
    pub(super) fn on_bus(&self, payload: &[u8]) {
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

    /// Answers a subscription made with `since`: `recovered`, then the missed messages, then
    /// those `subscriber` buffered meanwhile that come after them; it is live from then on.
    pub(super) async fn recover(
        &self,
        subscriber: &Subscriber,
        id: Option<&RequestId>,
        tenant: Uuid,
        channel: &Channel,
        since: &Position,
    ) {
        let conn = &subscriber.conn;
        let replay = self.replay(tenant, channel, since).await;
        // Under the flow's lock, so nothing new slips between replay and live.
        let mut flow = lock(&subscriber.flow);
        let (entries, position, recovered) = match replay {
            Replay::Complete { entries, position } => (entries, position, true),
            Replay::Gap { position } => (Vec::new(), position, false),
        };
        conn.push_frame(&ServerFrame::Recovered {
            id,
            channel: channel.as_str(),
            recovered,
            epoch: &position.epoch,
            offset: position.offset,
            replayed: entries.len(),
        });
        for entry in &entries {
            if let Some((_, frame)) = message_frame(entry) {
                conn.push(frame);
            }
        }
        // Messages at or before the position were replayed (or, after a gap, are older than
        // where the client was told to start): those buffered meanwhile, and any the bus still
        // brings late.
        let after = (Arc::from(position.epoch.as_str()), position.offset);
        let pending = match std::mem::replace(&mut *flow, Flow::Live { after: None }) {
            Flow::Recovering(pending) => pending,
            Flow::Live { .. } => Vec::new(),
        };
        for (epoch, offset, frame) in pending {
            if *epoch != *after.0 || offset > after.1 {
                conn.push(frame);
            }
        }
        *flow = Flow::Live { after: Some(after) };
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

    /// Where `channel`'s history stands now (for the `ack` of a subscription without `since`).
    pub(super) async fn position(&self, tenant: Uuid, channel: &Channel) -> LogPosition {
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
}

fn log_name(tenant: Uuid, channel: &Channel) -> String {
    format!("log:{tenant}:{channel}")
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
