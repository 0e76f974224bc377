//! The realtime settings: history, limits, timings of the transport, presence and tickets.

use std::time::Duration;

use sovereign_core::settings::DefaultValue::Value;
use sovereign_core::settings::{ReadSettings, Reader, with_defaults};
use sovereign_core::{Quota, setting};

setting!(
    ENABLE_WEBSOCKETS,
    "ENABLE_WEBSOCKETS",
    Value("true"),
    "Serve realtime websocket channels."
);
setting!(
    REALTIME_HISTORY_SIZE,
    "REALTIME_HISTORY_SIZE",
    Value("100"),
    "Messages each realtime channel keeps, so a client that reconnects gets what it missed."
);
setting!(
    REALTIME_HISTORY_TTL_SECONDS,
    "REALTIME_HISTORY_TTL_SECONDS",
    Value("3600"),
    "How long a channel's history lives after its last message."
);
setting!(
    REALTIME_MAX_SUBSCRIPTIONS,
    "REALTIME_MAX_SUBSCRIPTIONS",
    Value("100"),
    "Channels one websocket connection may subscribe to."
);
setting!(
    REALTIME_MAX_CONNECTIONS_PER_USER,
    "REALTIME_MAX_CONNECTIONS_PER_USER",
    Value("20"),
    "Websocket connections one user may hold on one instance."
);
setting!(
    REALTIME_MAX_MESSAGE_BYTES,
    "REALTIME_MAX_MESSAGE_BYTES",
    Value("16384"),
    "Largest payload of a realtime message, in bytes of JSON."
);
setting!(
    REALTIME_MAX_FRAME_BYTES,
    "REALTIME_MAX_FRAME_BYTES",
    Value("65536"),
    "Largest websocket frame (and message, continuations included) a client may send; a larger one closes the connection with 1009."
);
setting!(
    REALTIME_OUTBOUND_QUEUE,
    "REALTIME_OUTBOUND_QUEUE",
    Value("256"),
    "Frames queued for one connection; a client that falls this far behind is disconnected (close code 4008)."
);
setting!(
    RATE_LIMIT_REALTIME_PUBLISH,
    "RATE_LIMIT_REALTIME_PUBLISH",
    Value("20/1s"),
    "Quota per user on publishing through a websocket."
);
setting!(
    REALTIME_PING_INTERVAL_MS,
    "REALTIME_PING_INTERVAL_MS",
    Value("25000"),
    "How often the server pings each websocket; below the 60 s idle timeout of common proxies."
);
setting!(
    REALTIME_PONG_TIMEOUT_MS,
    "REALTIME_PONG_TIMEOUT_MS",
    Value("10000"),
    "How long after a ping a pong may take before the connection is closed (code 4009)."
);
setting!(
    REALTIME_PRESENCE_TTL_SECONDS,
    "REALTIME_PRESENCE_TTL_SECONDS",
    Value("30"),
    "How long a presence entry outlives an instance that stopped renewing it (a crash)."
);
setting!(
    REALTIME_RECHECK_SECONDS,
    "REALTIME_RECHECK_SECONDS",
    Value("300"),
    "How often every websocket's credential is checked against the database even without a revocation message."
);
setting!(
    REALTIME_TICKET_TTL_SECONDS,
    "REALTIME_TICKET_TTL_SECONDS",
    Value("30"),
    "Lifetime of a single-use websocket ticket."
);
/// Realtime channels: whether they are served, their limits and timings.
#[derive(Debug, Clone)]
pub struct RealtimeSettings {
    /// `ENABLE_WEBSOCKETS`: whether the API serves websockets.
    pub enabled: bool,
    /// Messages each channel keeps for recovery.
    pub history_size: usize,
    /// How long a channel's history lives after its last message.
    pub history_ttl: Duration,
    pub max_subscriptions: usize,
    /// Connections one user may hold on one instance.
    pub max_connections_per_user: usize,
    /// Largest `payload` of a published message, in bytes of JSON.
    pub max_message_bytes: usize,
    /// Largest websocket frame the transport accepts.
    pub max_frame_bytes: usize,
    /// Frames queued for one connection before it is dropped as a slow consumer.
    pub outbound_queue: usize,
    /// Client publishing per user.
    pub publish_quota: Quota,
    /// How often the transport pings; sent to clients in `welcome`.
    pub ping_interval: Duration,
    /// How long a pong may take before the transport closes the connection.
    pub pong_timeout: Duration,
    /// How long a presence entry lives unless renewed (every third of it).
    pub presence_ttl: Duration,
    /// How often every connection's credential is checked against the database even without a
    /// revocation (covers revocations missed while the cache was down).
    pub recheck_interval: Duration,
    /// Lifetime of a single-use websocket ticket.
    pub ticket_ttl: Duration,
}

impl ReadSettings for RealtimeSettings {
    fn read(r: &mut Reader<'_>) -> Option<Self> {
        Some(Self::from_reader(r))
    }
}

/// The documented defaults.
impl Default for RealtimeSettings {
    fn default() -> Self {
        with_defaults(Self::from_reader)
    }
}

impl RealtimeSettings {
    fn from_reader(r: &mut Reader<'_>) -> Self {
        r.section("Realtime");
        let enabled = r.value(&ENABLE_WEBSOCKETS);
        let history_size = r.bounded(&REALTIME_HISTORY_SIZE, 1, 100_000);
        let history_ttl = r.seconds(&REALTIME_HISTORY_TTL_SECONDS, 1, 7 * 86_400);
        let max_subscriptions = r.bounded(&REALTIME_MAX_SUBSCRIPTIONS, 1, 10_000);
        let max_connections_per_user = r.bounded(&REALTIME_MAX_CONNECTIONS_PER_USER, 1, 100_000);
        let max_message_bytes = r.bounded(&REALTIME_MAX_MESSAGE_BYTES, 16, 1 << 20);
        let max_frame_bytes = r.bounded(&REALTIME_MAX_FRAME_BYTES, 1024, 16 << 20);
        let outbound_queue = r.bounded(&REALTIME_OUTBOUND_QUEUE, 2, 1 << 20);
        let publish_quota = r.value(&RATE_LIMIT_REALTIME_PUBLISH);
        let ping_interval = r.millis(&REALTIME_PING_INTERVAL_MS, 100, 300_000);
        if ping_interval >= Duration::from_secs(60) {
            r.problem(
                REALTIME_PING_INTERVAL_MS.name,
                "pings 60 s or more apart let proxies close idle connections".to_owned(),
                "use an interval below your proxy's read timeout (nginx: 60 s), e.g. 25000"
                    .to_owned(),
            );
        }
        Self {
            enabled,
            history_size,
            history_ttl,
            max_subscriptions,
            max_connections_per_user,
            max_message_bytes,
            max_frame_bytes,
            outbound_queue,
            publish_quota,
            ping_interval,
            pong_timeout: r.millis(&REALTIME_PONG_TIMEOUT_MS, 100, 300_000),
            presence_ttl: r.seconds(&REALTIME_PRESENCE_TTL_SECONDS, 1, 3600),
            recheck_interval: r.seconds(&REALTIME_RECHECK_SECONDS, 1, 86_400),
            ticket_ttl: r.seconds(&REALTIME_TICKET_TTL_SECONDS, 1, 300),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_declared_once_in_the_specs() {
        let s = RealtimeSettings::default();
        assert!(s.enabled);
        assert_eq!(s.history_size, 100);
        assert_eq!(s.publish_quota.limit(), 20);
        assert_eq!(s.publish_quota.period(), Duration::from_secs(1));
        assert_eq!(s.ping_interval, Duration::from_secs(25));
    }

    #[test]
    fn pings_a_minute_apart_are_refused() {
        let e = sovereign_core::settings::from_vars::<RealtimeSettings, _, _, _>([(
            "REALTIME_PING_INTERVAL_MS",
            "60000",
        )])
        .unwrap_err();
        assert_eq!(e.problems[0].setting, "REALTIME_PING_INTERVAL_MS");
    }
}
