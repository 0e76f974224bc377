use std::borrow::Cow;
use std::time::Duration;

use diesel::result::{DatabaseErrorKind, Error as DieselError};
use sovereign_core::{Diagnostic, ErrorKind};

/// Everything that can go wrong talking to PostgreSQL.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// No connection could be had in time: the database is down, unreachable, refusing
    /// connections, or the pool is exhausted.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// A transaction or statement ran past its time limit.
    #[error("database operation exceeded its time limit")]
    Timeout,
    /// The pool could not be built from the configuration.
    #[error("invalid database configuration: {0}")]
    Config(String),
    /// A query failed.
    #[error(transparent)]
    Query(DieselError),
}

impl From<DieselError> for DbError {
    fn from(e: DieselError) -> Self {
        match &e {
            // PostgreSQL cancelled the statement at `statement_timeout`; diesel has no kind
            // for SQLSTATE 57014, so recognise the server's message.
            // Likewise at `lock_timeout`, set by work that must not queue behind long locks.
            DieselError::DatabaseError(DatabaseErrorKind::Unknown, info)
                if info.message().contains("statement timeout")
                    || info.message().contains("lock timeout") =>
            {
                Self::Timeout
            }
            DieselError::DatabaseError(DatabaseErrorKind::ClosedConnection, info) => {
                Self::Unavailable(info.message().to_owned())
            }
            _ => Self::Query(e),
        }
    }
}

impl DbError {
    /// The name of the violated constraint, for mapping unique/foreign-key violations to
    /// domain errors (e.g. `users_tenant_email_key` → "email already registered").
    #[must_use]
    pub fn constraint_name(&self) -> Option<&str> {
        match self {
            Self::Query(DieselError::DatabaseError(_, info)) => info.constraint_name(),
            _ => None,
        }
    }

    /// Whether the error is a unique-constraint violation.
    #[must_use]
    pub fn is_unique_violation(&self) -> bool {
        matches!(
            self,
            Self::Query(DieselError::DatabaseError(
                DatabaseErrorKind::UniqueViolation,
                _
            ))
        )
    }
}

impl Diagnostic for DbError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::Unavailable(_) | Self::Timeout => ErrorKind::Unavailable,
            Self::Query(DieselError::NotFound) => ErrorKind::NotFound,
            Self::Query(DieselError::DatabaseError(kind, _)) => match kind {
                DatabaseErrorKind::UniqueViolation
                | DatabaseErrorKind::ForeignKeyViolation
                | DatabaseErrorKind::SerializationFailure => ErrorKind::Conflict,
                DatabaseErrorKind::ClosedConnection => ErrorKind::Unavailable,
                _ => ErrorKind::Internal,
            },
            Self::Config(_) | Self::Query(_) => ErrorKind::Internal,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            Self::Unavailable(_) => "database_unavailable",
            Self::Timeout => "database_timeout",
            Self::Query(DieselError::NotFound) => "not_found",
            Self::Query(DieselError::DatabaseError(kind, _)) => match kind {
                DatabaseErrorKind::UniqueViolation => "conflict",
                DatabaseErrorKind::ForeignKeyViolation => "reference_conflict",
                DatabaseErrorKind::SerializationFailure => "concurrent_update",
                DatabaseErrorKind::ClosedConnection => "database_unavailable",
                _ => "database_error",
            },
            Self::Config(_) | Self::Query(_) => "database_error",
        }
    }

    fn public_detail(&self) -> String {
        match self.code() {
            "database_unavailable" => "The database is unavailable. Try again shortly.".to_owned(),
            "database_timeout" => {
                "The database took too long to answer. Try again shortly.".to_owned()
            }
            "not_found" => "The requested resource does not exist.".to_owned(),
            "conflict" => "The request conflicts with an existing resource.".to_owned(),
            "reference_conflict" => {
                "The request refers to a resource that does not exist or is still in use."
                    .to_owned()
            }
            "concurrent_update" => {
                "The resource was changed concurrently. Retry the request.".to_owned()
            }
            _ => sovereign_core::diagnostics::GENERIC_INTERNAL_DETAIL.to_owned(),
        }
    }

    fn suggestion(&self) -> Option<Cow<'static, str>> {
        match self.kind() {
            ErrorKind::Unavailable => Some("retry after the time given in Retry-After".into()),
            _ => None,
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        match self.kind() {
            ErrorKind::Unavailable => Some(Duration::from_secs(1)),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outages_are_unavailable_and_hide_their_cause() {
        let e = DbError::Unavailable("connect to 10.1.2.3:5432: connection refused".into());
        assert_eq!(e.kind(), ErrorKind::Unavailable);
        assert_eq!(e.code(), "database_unavailable");
        assert!(!e.public_detail().contains("10.1.2.3"));
        assert_eq!(e.retry_after(), Some(Duration::from_secs(1)));
    }

    #[test]
    fn not_found_is_a_client_error() {
        let e = DbError::from(DieselError::NotFound);
        assert_eq!(e.kind(), ErrorKind::NotFound);
        assert_eq!(e.code(), "not_found");
    }

    #[test]
    fn other_query_errors_are_internal() {
        let e = DbError::from(DieselError::BrokenTransactionManager);
        assert_eq!(e.kind(), ErrorKind::Internal);
        assert!(!e.public_detail().contains("transaction"));
    }
}
