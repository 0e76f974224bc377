//! Presence: who is subscribed to a channel across instances (an expiring set per channel in
//! the cache, renewed by each instance for its own connections), and the join and leave
//! events, carried on their own bus to the connections that asked for them.

use std::collections::HashMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::connection::ConnShared;
use super::{Frame, Hub, Key, lock, read};
use crate::channel::Channel;
use crate::protocol::{PresenceEvent, PresenceUser, ServerFrame};

/// The bus presence events travel on.
pub(super) const PRESENCE_BUS: &str = "presence";

#[derive(Serialize, Deserialize)]
struct PresenceNote<'a> {
    t: Uuid,
    c: &'a str,
    u: Uuid,
    e: PresenceEvent,
}

impl Hub {
    /// A note from the presence bus: hand its event to this instance's listeners of its
    /// channel.
    pub(super) fn on_presence(&self, payload: &[u8]) {
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

    /// Who is in `channel` of `tenant`, across instances (this instance's view when the shared
    /// cache fails).
    pub async fn presence(&self, tenant: Uuid, channel: &Channel) -> Vec<PresenceUser> {
        let set = presence_name(tenant, channel.as_str());
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

    /// A connection's entry in presence sets: `user:instance:connection`.
    pub(super) fn member(&self, conn: &ConnShared) -> String {
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

    /// Records `member` joining or leaving `channel` and tells every instance (this one only
    /// when the shared cache fails).
    pub(super) async fn announce_presence(
        &self,
        tenant: Uuid,
        channel: &Channel,
        user: Uuid,
        member: String,
        event: PresenceEvent,
    ) {
        let set = presence_name(tenant, channel.as_str());
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
    pub(super) async fn renew_presence(&self) {
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
            let set = presence_name(tenant, &name);
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
}

/// The presence set of `channel` of `tenant`, in the cache's `rt` namespace.
fn presence_name(tenant: Uuid, channel: &str) -> String {
    format!("presence:{tenant}:{channel}")
}
