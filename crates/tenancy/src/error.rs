use std::borrow::Cow;

use sovereign_core::{Diagnostic, ErrorKind, FieldError};
use sovereign_db::DbError;

/// Why a tenant could not be resolved or administered.
#[derive(Debug, thiserror::Error)]
pub enum TenancyError {
    /// `X-Tenant-ID` is neither a slug nor a UUID.
    #[error("malformed tenant reference: {0}")]
    Malformed(String),
    /// Multi-tenancy is on and the request names no tenant.
    #[error("the request names no tenant")]
    Required,
    /// No tenant has this slug or id.
    #[error("no such tenant")]
    NotFound,
    /// The tenant exists but is suspended.
    #[error("the tenant is suspended")]
    Suspended,
    /// The header names a different tenant than the credentials belong to.
    #[error("the tenant header does not match the credentials' tenant")]
    Mismatch,
    /// Creating a tenant whose slug is taken.
    #[error("a tenant with this slug already exists")]
    SlugTaken,
    /// Invalid input to tenant administration.
    #[error("invalid {field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<diesel::result::Error> for TenancyError {
    fn from(e: diesel::result::Error) -> Self {
        Self::Db(DbError::from(e))
    }
}

impl Diagnostic for TenancyError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::Malformed(_) | Self::Required => ErrorKind::BadRequest,
            Self::NotFound => ErrorKind::NotFound,
            Self::Suspended | Self::Mismatch => ErrorKind::Forbidden,
            Self::SlugTaken => ErrorKind::Conflict,
            Self::Invalid { .. } => ErrorKind::Validation,
            Self::Db(e) => e.kind(),
        }
    }

    fn code(&self) -> &'static str {
        match self {
            Self::Malformed(_) => "invalid_tenant",
            Self::Required => "tenant_required",
            Self::NotFound => "tenant_not_found",
            Self::Suspended => "tenant_suspended",
            Self::Mismatch => "tenant_mismatch",
            Self::SlugTaken => "tenant_exists",
            Self::Invalid { .. } => "validation_failed",
            Self::Db(e) => e.code(),
        }
    }

    fn public_detail(&self) -> String {
        match self {
            Self::Malformed(why) => format!("X-Tenant-ID is not a tenant reference: {why}."),
            Self::Required => "This request must name its tenant in X-Tenant-ID.".to_owned(),
            Self::NotFound => "No tenant matches X-Tenant-ID.".to_owned(),
            Self::Suspended => "This tenant is suspended.".to_owned(),
            Self::Mismatch => {
                "X-Tenant-ID names a different tenant than your credentials belong to.".to_owned()
            }
            Self::SlugTaken => "A tenant with this slug already exists.".to_owned(),
            Self::Invalid { .. } => "Some fields are invalid; see `errors`.".to_owned(),
            Self::Db(e) => e.public_detail(),
        }
    }

    fn suggestion(&self) -> Option<Cow<'static, str>> {
        match self {
            Self::Malformed(_) | Self::Required => Some(Cow::Borrowed(
                "send X-Tenant-ID with the tenant's slug (e.g. acme) or its UUID",
            )),
            Self::Mismatch => Some(Cow::Borrowed(
                "omit X-Tenant-ID on authenticated requests, or send your own tenant's",
            )),
            Self::Db(e) => e.suggestion(),
            _ => None,
        }
    }

    fn field_errors(&self) -> Vec<FieldError> {
        match self {
            Self::Invalid { field, message } => {
                vec![FieldError::new(*field, "invalid", message.clone())]
            }
            Self::Db(e) => e.field_errors(),
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
