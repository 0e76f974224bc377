//! Publishing, and subscriptions: a dedicated connection per subscription (deadpool pools no
//! pub/sub connections), resubscribed with backoff whenever it drops.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use redis::AsyncCommands;
use tokio::sync::mpsc;

use super::{RedisBackend, SUBSCRIBER_QUEUE};
use crate::error::CacheError;
use crate::pubsub::{Message, Subscription, SubscriptionState};

impl RedisBackend {
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
