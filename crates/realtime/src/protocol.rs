//! The wire protocol: JSON text frames, one object per frame, told apart by `type`.
//! docs/realtime.md describes it for client authors; the OpenAPI document carries these types
//! as components (`openapi` feature).

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use uuid::Uuid;

/// The id a client gives a request; echoed in the `ack`, `error` or reply it causes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(untagged)]
pub enum RequestId {
    Number(u64),
    Text(String),
}

/// A position in a channel's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Position {
    /// The history's epoch; a new one starts when the history is lost.
    pub epoch: String,
    /// The offset of the last message received.
    pub offset: u64,
}

/// What a client sends. Parsed with [`ClientFrame::parse`].
#[derive(Debug)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", serde(tag = "type", rename_all = "snake_case"))]
pub enum ClientFrame {
    /// Start receiving a channel's messages; with `since`, first replay what was missed; with
    /// `presence: true`, also the channel's `presence` join and leave events.
    Subscribe {
        id: Option<RequestId>,
        channel: String,
        since: Option<Position>,
        presence: Option<bool>,
    },
    /// Stop receiving a channel's messages.
    Unsubscribe {
        id: Option<RequestId>,
        channel: String,
    },
    /// Send a message to everyone subscribed to a channel (where the channel's rule allows).
    Publish {
        id: Option<RequestId>,
        channel: String,
        #[cfg_attr(feature = "openapi", schema(value_type = Value))]
        payload: Box<RawValue>,
    },
    /// Who is in a channel the client may subscribe to.
    Presence {
        id: Option<RequestId>,
        channel: String,
    },
    /// A new access token of the same account, before the current one expires.
    Refresh {
        id: Option<RequestId>,
        token: String,
    },
    /// Application-level liveness check; answered with `pong`.
    Ping { id: Option<RequestId> },
}

/// Every field any client frame has; serde cannot buffer a raw payload inside an internally
/// tagged enum, so frames are read flat and checked per type.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FlatFrame<'a> {
    #[serde(rename = "type")]
    kind: String,
    id: Option<RequestId>,
    channel: Option<String>,
    since: Option<Position>,
    #[serde(borrow)]
    payload: Option<&'a RawValue>,
    token: Option<String>,
    presence: Option<bool>,
}

impl ClientFrame {
    /// Parses one text frame; the error says what is wrong.
    pub fn parse(text: &str) -> Result<Self, String> {
        let flat: FlatFrame<'_> = serde_json::from_str(text).map_err(|e| e.to_string())?;
        let kind = flat.kind.as_str();
        let allowed: &[&str] = match kind {
            "subscribe" => &["channel", "since", "presence"],
            "unsubscribe" | "presence" => &["channel"],
            "publish" => &["channel", "payload"],
            "refresh" => &["token"],
            "ping" => &[],
            other => return Err(format!("unknown frame type `{other}`")),
        };
        let present = [
            ("channel", flat.channel.is_some()),
            ("since", flat.since.is_some()),
            ("payload", flat.payload.is_some()),
            ("token", flat.token.is_some()),
            ("presence", flat.presence.is_some()),
        ];
        if let Some((field, _)) = present.iter().find(|(f, p)| *p && !allowed.contains(f)) {
            return Err(format!(
                "field `{field}` does not belong in a `{kind}` frame"
            ));
        }
        let required = |value: Option<String>, field: &str| {
            value.ok_or_else(|| format!("a `{kind}` frame needs `{field}`"))
        };
        let id = flat.id;
        Ok(match kind {
            "subscribe" => Self::Subscribe {
                id,
                channel: required(flat.channel, "channel")?,
                since: flat.since,
                presence: flat.presence,
            },
            "unsubscribe" => Self::Unsubscribe {
                id,
                channel: required(flat.channel, "channel")?,
            },
            "presence" => Self::Presence {
                id,
                channel: required(flat.channel, "channel")?,
            },
            "publish" => Self::Publish {
                id,
                channel: required(flat.channel, "channel")?,
                payload: flat
                    .payload
                    .ok_or_else(|| "a `publish` frame needs `payload`".to_owned())?
                    .to_owned(),
            },
            "refresh" => Self::Refresh {
                id,
                token: required(flat.token, "token")?,
            },
            _ => Self::Ping { id },
        })
    }
}

/// One user in a presence answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PresenceUser {
    pub user: Uuid,
    /// How many of the user's connections are subscribed, across every instance.
    pub connections: u32,
}

/// Join or leave.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum PresenceEvent {
    Join,
    Leave,
}

/// What the server sends.
#[derive(Debug, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame<'a> {
    /// First frame of every connection.
    Welcome {
        connection: Uuid,
        user: Uuid,
        /// When the credential expires (seconds since the epoch); `refresh` before then.
        expires_at: Option<i64>,
        /// How often the server pings, in milliseconds.
        ping_interval_ms: u64,
    },
    /// A message published on a subscribed channel.
    Message {
        channel: &'a str,
        epoch: &'a str,
        offset: u64,
        /// The publishing user; `null` for server-side publishing.
        publisher: Option<Uuid>,
        #[cfg_attr(feature = "openapi", schema(value_type = Value))]
        payload: &'a RawValue,
    },
    /// A request succeeded. For `subscribe` and `publish`, the channel's position; for
    /// `refresh`, when the new credential expires (seconds since the epoch).
    Ack {
        id: Option<&'a RequestId>,
        #[serde(skip_serializing_if = "Option::is_none")]
        expires_at: Option<i64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        channel: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        epoch: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        offset: Option<u64>,
    },
    /// A subscription with `since`: whether the history covered the gap. When it did,
    /// `replayed` messages follow, in order, before any new one.
    Recovered {
        id: Option<&'a RequestId>,
        channel: &'a str,
        recovered: bool,
        epoch: &'a str,
        offset: u64,
        replayed: usize,
    },
    /// A request failed; `code` is stable.
    Error {
        id: Option<&'a RequestId>,
        code: &'a str,
        message: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        retry_after_ms: Option<u64>,
    },
    /// Someone joined or left a channel subscribed with `presence: true`.
    Presence {
        channel: &'a str,
        event: PresenceEvent,
        user: Uuid,
    },
    /// The answer to a `presence` request.
    PresenceState {
        id: Option<&'a RequestId>,
        channel: &'a str,
        users: Vec<PresenceUser>,
    },
    /// The answer to a `ping`.
    Pong { id: Option<&'a RequestId> },
}

impl ServerFrame<'_> {
    /// The frame as JSON text.
    #[must_use]
    pub fn to_text(&self) -> String {
        // Serialising these types cannot fail: string keys, no maps, no floats.
        serde_json::to_string(self).unwrap_or_else(|e| {
            tracing::error!(error = %e, "unserialisable frame");
            String::from("{\"type\":\"error\",\"id\":null,\"code\":\"internal\",\"message\":\"internal error\"}")
        })
    }
}

/// Close codes the server uses. 1000–1011 are the standard ones; 4000–4999 are ours.
pub mod close {
    /// The server is shutting down (or restarting): reconnect, to another instance if needed.
    pub const GOING_AWAY: u16 = 1001;
    /// A binary frame: this protocol is text only.
    pub const UNSUPPORTED_DATA: u16 = 1003;
    /// A frame over the size limit.
    pub const MESSAGE_TOO_BIG: u16 = 1009;
    /// The session, key or account was revoked, or the account was deactivated.
    pub const REVOKED: u16 = 4001;
    /// The access token expired without a `refresh`.
    pub const TOKEN_EXPIRED: u16 = 4002;
    /// The account's role changed: reconnect to get the new role's channels.
    pub const ROLE_CHANGED: u16 = 4003;
    /// The connection's outbound queue filled up: the client reads too slowly.
    pub const SLOW_CONSUMER: u16 = 4008;
    /// No pong came back in time.
    pub const HEARTBEAT_TIMEOUT: u16 = 4009;
    /// Too many invalid frames.
    pub const PROTOCOL_VIOLATION: u16 = 4010;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_frames_parse_and_unknown_fields_are_refused() {
        let frame = ClientFrame::parse(
            r#"{"type":"subscribe","id":1,"channel":"public:a","since":{"epoch":"e","offset":3}}"#,
        )
        .unwrap();
        assert!(matches!(
            frame,
            ClientFrame::Subscribe {
                id: Some(RequestId::Number(1)),
                since: Some(Position { offset: 3, .. }),
                ..
            }
        ));
        let frame = ClientFrame::parse(
            r#"{"type":"publish","id":"x","channel":"public:a","payload":[1,{"b":2}]}"#,
        )
        .unwrap();
        let ClientFrame::Publish { payload, .. } = frame else {
            panic!("not a publish");
        };
        assert_eq!(payload.get(), r#"[1,{"b":2}]"#);
        for bad in [
            r#"{"type":"subscribe","channel":"public:a","extra":1}"#,
            r#"{"type":"shout"}"#,
            r#"{"type":"subscribe","channel":"public:a","token":"t"}"#,
            r#"{"type":"publish","channel":"public:a"}"#,
            r#"{"channel":"public:a"}"#,
            "[]",
        ] {
            assert!(ClientFrame::parse(bad).is_err(), "{bad} parsed");
        }
    }

    #[test]
    fn server_frames_serialise_with_their_type() {
        let payload = RawValue::from_string("{\"a\":1}".to_owned()).unwrap();
        let text = ServerFrame::Message {
            channel: "public:a",
            epoch: "e",
            offset: 9,
            publisher: None,
            payload: &payload,
        }
        .to_text();
        assert_eq!(
            text,
            r#"{"type":"message","channel":"public:a","epoch":"e","offset":9,"publisher":null,"payload":{"a":1}}"#
        );
    }
}
