//! A client's frames: parsing them (closing after too many invalid ones), what each request
//! does (subscribe, unsubscribe, publish, presence, ping) and its answer; a `refresh` goes to
//! the transport, which verifies the token and reports back.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::value::RawValue;
use sovereign_cache::RateKey;

use super::connection::FRAMES_IN;
use super::registry::{Flow, Subscriber};
use super::{Close, Connection, Identity, lock};
use crate::channel::{Action, Channel, authorize};
use crate::error::RealtimeError;
use crate::protocol::{ClientFrame, Position, PresenceEvent, PresenceUser, RequestId, ServerFrame};

/// Invalid frames a connection may send before it is closed.
const MAX_INVALID_FRAMES: u32 = 10;

/// A `refresh` the transport must verify (the hub knows no tokens) and report with
/// [`Connection::refreshed`].
#[derive(Debug)]
pub struct Refresh {
    pub id: Option<RequestId>,
    pub token: String,
}

impl Connection {
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
                    expires_at: None,
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
                    expires_at: None,
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
                let expires_at = identity.expires_at.map(|at| at.timestamp());
                drop(identity);
                self.shared.push_frame(&ServerFrame::Ack {
                    id,
                    expires_at,
                    channel: None,
                    epoch: None,
                    offset: None,
                });
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
            flow: Mutex::new(if since.is_some() {
                Flow::Recovering(Vec::new())
            } else {
                Flow::Live { after: None }
            }),
        });
        hub.add_subscriber(key, &subscriber, presence);

        match since {
            None => {
                let position = hub.position(tenant, &channel).await;
                self.shared.push_frame(&ServerFrame::Ack {
                    id,
                    expires_at: None,
                    channel: Some(channel.as_str()),
                    epoch: Some(&position.epoch),
                    offset: Some(position.offset),
                });
            }
            Some(since) => hub.recover(&subscriber, id, tenant, &channel, &since).await,
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
