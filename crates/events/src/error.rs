use std::borrow::Cow;

use sovereign_core::{Diagnostic, ErrorKind, FieldError};
use sovereign_db::DbError;

/// Everything that can go wrong with events, the audit log and webhooks.
#[derive(Debug, thiserror::Error)]
pub enum EventsError {
    #[error("invalid input")]
    Invalid(Vec<FieldError>),
    /// A sink could not take a batch; the batch stays pending and is tried again.
    #[error("a sink refused a batch: {0}")]
    Sink(String),
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<diesel::result::Error> for EventsError {
    fn from(e: diesel::result::Error) -> Self {
        Self::Db(DbError::from(e))
    }
}

impl EventsError {
    /// One invalid field.
    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        Self::Invalid(vec![FieldError::new(field, "invalid", message)])
    }
}

impl Diagnostic for EventsError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::Invalid(_) => ErrorKind::Validation,
            Self::Sink(_) => ErrorKind::Unavailable,
            Self::Db(e) => e.kind(),
        }
    }

    fn code(&self) -> &'static str {
        match self {
            Self::Invalid(_) => "validation_failed",
            Self::Sink(_) => "events_unavailable",
            Self::Db(e) => e.code(),
        }
    }

    fn public_detail(&self) -> String {
        match self {
            Self::Invalid(_) => "Some fields are invalid; see `errors`.".to_owned(),
            Self::Sink(_) => "Events cannot be delivered right now.".to_owned(),
            Self::Db(e) => e.public_detail(),
        }
    }

    fn suggestion(&self) -> Option<Cow<'static, str>> {
        match self {
            Self::Db(e) => e.suggestion(),
            _ => None,
        }
    }

    fn field_errors(&self) -> Vec<FieldError> {
        match self {
            Self::Invalid(fields) => fields.clone(),
            _ => Vec::new(),
        }
    }

    fn retry_after(&self) -> Option<std::time::Duration> {
        match self {
            Self::Db(e) => e.retry_after(),
            _ => None,
        }
    }
}
