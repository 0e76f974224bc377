//! The hub's background tasks: a listener per cache channel (the bus, the presence bus, the
//! revocation channel), subscribing again with backoff when its subscription fails or ends,
//! and periodic work. Each holds the hub weakly and ends when the hub is dropped.

use std::pin::Pin;
use std::sync::Weak;
use std::time::Duration;

use sovereign_auth::revocation::CHANNEL as REVOCATIONS;
use sovereign_cache::{Cache, Message};

use super::{Hub, Inner};

/// What a listener does with each message of its channel.
pub(super) type Handler = fn(&Hub, &Message);

/// Subscribes to `channel` of `cache` now, then handles its messages in the background for as
/// long as the hub lives, subscribing again with backoff when the subscription fails or ends.
pub(super) async fn listen(
    weak: Weak<Inner>,
    cache: Cache,
    channel: &'static str,
    handle: Handler,
) {
    let first = cache.subscribe(channel).await;
    tokio::spawn(async move {
        let mut backoff = Duration::from_millis(100);
        let mut attempt = Some(first);
        loop {
            if weak.strong_count() == 0 {
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
                    if channel == REVOCATIONS
                        && !first_attempt
                        && let Some(hub) = Hub::upgrade(&weak)
                    {
                        // Subscribed again after a failure: revocations may have been missed.
                        hub.recheck_all();
                    }
                    let mut gaps = (subscription.dropped(), subscription.resubscribed());
                    while let Some(message) = subscription.next_message().await {
                        let Some(hub) = Hub::upgrade(&weak) else {
                            return;
                        };
                        let now = (subscription.dropped(), subscription.resubscribed());
                        if channel == REVOCATIONS && now != gaps {
                            // Messages were dropped, or the connection was lost and made again:
                            // revocations may have been missed, so check everyone.
                            gaps = now;
                            hub.recheck_all();
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

/// One round of periodic work.
pub(super) type Tick = fn(Hub) -> Pin<Box<dyn Future<Output = ()> + Send>>;

/// Runs `tick` every `every` (at least 100 ms), the first time one period from now.
pub(super) fn spawn_periodic(weak: Weak<Inner>, every: Duration, tick: Tick) {
    let every = every.max(Duration::from_millis(100));
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(every);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        interval.tick().await;
        loop {
            interval.tick().await;
            let Some(hub) = Hub::upgrade(&weak) else {
                return;
            };
            tick(hub).await;
        }
    });
}
