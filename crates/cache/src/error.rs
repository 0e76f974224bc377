use sovereign_core::{Diagnostic, ErrorKind};

/// Why a cache operation failed. Every variant is bounded in time: a stopped or unreachable
/// server gives [`CacheError::Timeout`] or [`CacheError::Unavailable`] within the configured
/// operation timeout, never a hang.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// The server could not be reached, refused the connection, or failed recently enough that
    /// calls are short-circuited for a moment.
    #[error("cache unavailable: {0}")]
    Unavailable(String),
    /// The server did not answer within the operation timeout.
    #[error("cache operation timed out")]
    Timeout,
    /// A value could not be encoded or decoded as JSON.
    #[error("cache value could not be encoded or decoded: {0}")]
    Serialization(#[from] serde_json::Error),
    /// The server answered with an error (for example, incrementing a key that holds text).
    #[error("cache command failed: {0}")]
    Command(String),
    /// The configuration (URL, pool) is unusable.
    #[error("cache configuration: {0}")]
    Config(String),
    /// A lock was not acquired within the allowed wait.
    #[error("lock `{0}` is held by another owner")]
    LockBusy(String),
}

impl CacheError {
    /// True when the failure is about reaching the server rather than about the request.
    #[must_use]
    pub fn is_connectivity(&self) -> bool {
        matches!(self, Self::Unavailable(_) | Self::Timeout)
    }

    pub(crate) fn from_redis(e: &redis::RedisError) -> Self {
        if e.is_timeout() {
            Self::Timeout
        } else if e.is_io_error()
            || e.is_connection_dropped()
            || e.is_connection_refusal()
            || e.is_unrecoverable_error()
        {
            Self::Unavailable(e.to_string())
        } else {
            Self::Command(e.to_string())
        }
    }
}

impl From<redis::RedisError> for CacheError {
    fn from(e: redis::RedisError) -> Self {
        Self::from_redis(&e)
    }
}

impl Diagnostic for CacheError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::Unavailable(_) | Self::Timeout => ErrorKind::Unavailable,
            Self::LockBusy(_) => ErrorKind::Conflict,
            Self::Serialization(_) | Self::Command(_) | Self::Config(_) => ErrorKind::Internal,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            Self::Unavailable(_) => "cache_unavailable",
            Self::Timeout => "cache_timeout",
            Self::Serialization(_) => "cache_serialization",
            Self::Command(_) => "cache_error",
            Self::Config(_) => "cache_config",
            Self::LockBusy(_) => "lock_busy",
        }
    }

    fn public_detail(&self) -> String {
        match self {
            Self::Unavailable(_) | Self::Timeout => {
                sovereign_core::diagnostics::GENERIC_UNAVAILABLE_DETAIL.to_owned()
            }
            Self::LockBusy(_) => {
                "Another operation on this resource is in progress; retry shortly.".to_owned()
            }
            _ => sovereign_core::diagnostics::GENERIC_INTERNAL_DETAIL.to_owned(),
        }
    }

    fn retry_after(&self) -> Option<std::time::Duration> {
        match self {
            Self::Unavailable(_) | Self::Timeout | Self::LockBusy(_) => {
                Some(std::time::Duration::from_secs(1))
            }
            _ => None,
        }
    }
}
