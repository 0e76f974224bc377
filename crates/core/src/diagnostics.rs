//! The diagnostics model: how every Sovereign error describes itself.
//!
//! Each domain crate has one error type (built with `thiserror`) that implements [`Diagnostic`].
//! The trait says *what kind* of failure happened, gives it a stable machine-readable `code`,
//! and may add a suggestion and per-field details. It says nothing about transport: the API
//! crate maps an [`ErrorKind`] to an HTTP status in exactly one place, and renders the RFC 9457
//! problem body there.
//!
//! Server-side kinds ([`ErrorKind::is_server_side`]) never show their `Display` text to clients:
//! the API logs the error chain with the request id and answers with [`Diagnostic::public_detail`],
//! which for those kinds is a generic sentence unless the error supplies a safe one.

use std::borrow::Cow;
use std::time::Duration;

use serde::Serialize;

/// The category of a failure, independent of any transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The request is malformed (unparseable input, bad syntax).
    BadRequest,
    /// The input is well-formed but breaks the rules; carries field errors.
    Validation,
    /// No valid credentials were presented.
    Unauthenticated,
    /// Credentials are valid but the action is not allowed.
    Forbidden,
    /// The object does not exist, or the caller may not know it exists.
    NotFound,
    /// The action conflicts with the current state (duplicate, concurrent change).
    Conflict,
    /// The input exceeds a size limit.
    TooLarge,
    /// The caller sent too many requests; see [`Diagnostic::retry_after`].
    RateLimited,
    /// A dependency (database, cache, embedder) is unreachable or overloaded. Temporary.
    Unavailable,
    /// A bug or an unexpected state. Never explained to the client.
    Internal,
}

impl ErrorKind {
    /// Whether the failure is the server's side (5xx); such errors hide their details from
    /// clients.
    #[must_use]
    pub fn is_server_side(self) -> bool {
        matches!(self, Self::Unavailable | Self::Internal)
    }
}

/// The detail clients see for [`ErrorKind::Internal`] errors.
pub const GENERIC_INTERNAL_DETAIL: &str =
    "An unexpected error occurred. Quote the request id when reporting it.";

/// The default detail clients see for [`ErrorKind::Unavailable`] errors.
pub const GENERIC_UNAVAILABLE_DETAIL: &str =
    "A service this request depends on is temporarily unavailable. Try again shortly.";

/// A problem with one input field, reported in validation errors.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    /// Path of the field in the input, e.g. `email` or `points[3].vector`.
    pub field: String,
    /// Stable machine-readable code, e.g. `too_short`.
    pub code: Cow<'static, str>,
    /// Human-readable explanation.
    pub message: String,
}

impl FieldError {
    #[must_use]
    pub fn new(
        field: impl Into<String>,
        code: impl Into<Cow<'static, str>>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            field: field.into(),
            code: code.into(),
            message: message.into(),
        }
    }
}

/// What every Sovereign error can say about itself.
///
/// `Display` (from `std::error::Error`) is the message for logs. [`Diagnostic::public_detail`]
/// is what a client may see: `Display` for client-side kinds, a generic sentence otherwise.
pub trait Diagnostic: std::error::Error + Send + Sync + 'static {
    /// The category of the failure.
    fn kind(&self) -> ErrorKind;

    /// A stable, machine-readable code in `snake_case` (`email_taken`, `database_unavailable`).
    /// Codes are part of the public API: never rename one.
    fn code(&self) -> &'static str;

    /// The explanation a client may see. Override it for server-side kinds only with text that
    /// reveals nothing internal (no addresses, SQL, or error chains).
    fn public_detail(&self) -> String {
        match self.kind() {
            ErrorKind::Internal => GENERIC_INTERNAL_DETAIL.to_owned(),
            ErrorKind::Unavailable => GENERIC_UNAVAILABLE_DETAIL.to_owned(),
            _ => self.to_string(),
        }
    }

    /// How the caller can fix or avoid the problem, when there is something useful to say.
    fn suggestion(&self) -> Option<Cow<'static, str>> {
        None
    }

    /// Per-field problems for [`ErrorKind::Validation`] errors.
    fn field_errors(&self) -> Vec<FieldError> {
        Vec::new()
    }

    /// When retrying makes sense, how long to wait first.
    fn retry_after(&self) -> Option<Duration> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_unavailable_and_internal_are_server_side() {
        let server_side: Vec<_> = [
            ErrorKind::BadRequest,
            ErrorKind::Validation,
            ErrorKind::Unauthenticated,
            ErrorKind::Forbidden,
            ErrorKind::NotFound,
            ErrorKind::Conflict,
            ErrorKind::TooLarge,
            ErrorKind::RateLimited,
            ErrorKind::Unavailable,
            ErrorKind::Internal,
        ]
        .into_iter()
        .filter(|k| k.is_server_side())
        .collect();
        assert_eq!(server_side, [ErrorKind::Unavailable, ErrorKind::Internal]);
    }

    #[derive(Debug, thiserror::Error)]
    #[error("connection to 10.0.0.5:5432 refused")]
    struct Leaky;

    impl Diagnostic for Leaky {
        fn kind(&self) -> ErrorKind {
            ErrorKind::Unavailable
        }
        fn code(&self) -> &'static str {
            "leaky"
        }
    }

    #[test]
    fn server_side_errors_do_not_publish_their_display_text_by_default() {
        let detail = Leaky.public_detail();
        assert!(!detail.contains("10.0.0.5"), "{detail}");
        assert_eq!(detail, GENERIC_UNAVAILABLE_DETAIL);
    }
}
