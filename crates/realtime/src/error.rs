use std::time::Duration;

use sovereign_core::{Diagnostic, ErrorKind};

/// Why a realtime operation was refused. The `code`s double as the `code` of the protocol's
/// `error` frames.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RealtimeError {
    #[error("`{0}` is not a channel name")]
    InvalidChannel(String),
    #[error("not allowed: {0}")]
    Forbidden(&'static str),
    #[error("the message is {size} bytes; at most {limit} are accepted")]
    MessageTooLarge { size: usize, limit: usize },
    #[error("at most {0} subscriptions per connection")]
    TooManySubscriptions(usize),
    #[error("at most {0} connections per user")]
    TooManyConnections(usize),
    #[error("publishing too fast")]
    RateLimited { retry_after: Duration },
    #[error("not subscribed to this channel")]
    NotSubscribed,
    #[error("the frame is not a valid message: {0}")]
    InvalidMessage(String),
    #[error("the server is shutting down")]
    ShuttingDown,
}

impl Diagnostic for RealtimeError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::InvalidChannel(_) | Self::InvalidMessage(_) | Self::NotSubscribed => {
                ErrorKind::Validation
            }
            Self::Forbidden(_) => ErrorKind::Forbidden,
            Self::MessageTooLarge { .. } => ErrorKind::TooLarge,
            Self::TooManySubscriptions(_)
            | Self::TooManyConnections(_)
            | Self::RateLimited { .. } => ErrorKind::RateLimited,
            Self::ShuttingDown => ErrorKind::Unavailable,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            Self::InvalidChannel(_) => "invalid_channel",
            Self::Forbidden(_) => "forbidden",
            Self::MessageTooLarge { .. } => "message_too_large",
            Self::TooManySubscriptions(_) => "too_many_subscriptions",
            Self::TooManyConnections(_) => "too_many_connections",
            Self::RateLimited { .. } => "rate_limited",
            Self::NotSubscribed => "not_subscribed",
            Self::InvalidMessage(_) => "invalid_message",
            Self::ShuttingDown => "shutting_down",
        }
    }

    fn public_detail(&self) -> String {
        self.to_string()
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::RateLimited { retry_after } => Some(*retry_after),
            Self::ShuttingDown => Some(Duration::from_secs(1)),
            _ => None,
        }
    }
}
