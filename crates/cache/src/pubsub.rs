//! Messages and subscriptions, common to both backends.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use futures_util::Stream;
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;

use crate::error::CacheError;

/// A message received on a channel.
#[derive(Debug, Clone)]
pub struct Message {
    channel: Arc<str>,
    payload: Arc<[u8]>,
}

impl Message {
    pub(crate) fn new(channel: &str, payload: &[u8]) -> Self {
        Self {
            channel: Arc::from(channel),
            payload: Arc::from(payload),
        }
    }

    /// The channel's name, without the cache's namespace.
    #[must_use]
    pub fn channel(&self) -> &str {
        &self.channel
    }

    /// The raw payload (JSON when it was published with [`crate::Cache::publish`]).
    #[must_use]
    pub fn payload(&self) -> &[u8] {
        &self.payload
    }

    /// Decodes the JSON payload.
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T, CacheError> {
        Ok(serde_json::from_slice(&self.payload)?)
    }
}

/// Counters shared between a subscription and the task feeding it.
#[derive(Debug, Default)]
pub(crate) struct SubscriptionState {
    dropped: AtomicU64,
    resubscribed: AtomicU64,
}

impl SubscriptionState {
    /// Hands a message to the subscriber without ever waiting: a subscriber that does not keep
    /// up loses messages (counted) instead of slowing the connection down for everyone.
    pub(crate) fn forward(&self, tx: &mpsc::Sender<Message>, message: Message) {
        if let Err(mpsc::error::TrySendError::Full(message)) = tx.try_send(message) {
            let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if dropped.is_power_of_two() {
                tracing::warn!(
                    channel = message.channel(),
                    dropped,
                    "slow subscriber: messages dropped"
                );
            }
        }
    }

    pub(crate) fn record_dropped(&self, n: u64) {
        self.dropped.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn record_resubscribed(&self) {
        self.resubscribed.fetch_add(1, Ordering::Relaxed);
    }
}

/// A live subscription to one channel: a [`Stream`] of [`Message`]s. Dropping it unsubscribes.
///
/// With Redis, a lost connection is re-established in the background (with backoff) and the
/// channel subscribed again; messages published while it was down are not delivered, and
/// [`Subscription::resubscribed`] counts those gaps so callers that need continuity can
/// recover from their own history.
#[derive(Debug)]
pub struct Subscription {
    channel: String,
    receiver: mpsc::Receiver<Message>,
    state: Arc<SubscriptionState>,
}

impl Subscription {
    pub(crate) fn new(
        channel: String,
        receiver: mpsc::Receiver<Message>,
        state: Arc<SubscriptionState>,
    ) -> Self {
        Self {
            channel,
            receiver,
            state,
        }
    }

    /// The channel's name, without the cache's namespace.
    #[must_use]
    pub fn channel(&self) -> &str {
        &self.channel
    }

    /// The next message; `None` once the subscription has ended.
    pub async fn next_message(&mut self) -> Option<Message> {
        self.receiver.recv().await
    }

    /// Messages dropped because this subscriber did not keep up.
    #[must_use]
    pub fn dropped(&self) -> u64 {
        self.state.dropped.load(Ordering::Relaxed)
    }

    /// How many times the subscription was re-established after losing its connection.
    #[must_use]
    pub fn resubscribed(&self) -> u64 {
        self.state.resubscribed.load(Ordering::Relaxed)
    }
}

impl Stream for Subscription {
    type Item = Message;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Message>> {
        self.get_mut().receiver.poll_recv(cx)
    }
}
