use std::borrow::Cow;

use sovereign_core::{Diagnostic, ErrorKind, FieldError};
use sovereign_db::DbError;

/// Everything that can go wrong with buckets and objects.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("no such bucket")]
    BucketNotFound,
    #[error("a bucket with this name exists")]
    BucketExists,
    #[error("the bucket is not empty")]
    BucketNotEmpty,
    #[error("no such object")]
    ObjectNotFound,
    /// The object belongs to another account.
    #[error("the object belongs to another account")]
    NotOwner,
    /// The key exists and the write was create-only.
    #[error("the object exists")]
    ObjectExists,
    #[error("invalid input")]
    Invalid(Vec<FieldError>),
    /// More bytes than the bucket (or the server) allows for one object.
    #[error("the object exceeds {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("content type `{0}` is not allowed in this bucket")]
    TypeNotAllowed(String),
    /// The tenant's quota of bytes or objects would be exceeded.
    #[error("storage quota exceeded")]
    QuotaExceeded,
    /// The upload's body ended with an error (the client went away).
    #[error("the upload was interrupted: {0}")]
    Interrupted(String),
    #[error("no such upload")]
    UploadNotFound,
    /// Another `complete` of the same upload is running.
    #[error("the upload is being completed")]
    UploadBusy,
    /// `complete` before every part arrived whole.
    #[error("the upload is incomplete: {0}")]
    UploadIncomplete(String),
    /// A signed URL that this server did not sign, or signed for something else.
    #[error("the signature of this URL is invalid")]
    SignatureInvalid,
    #[error("this signed URL has expired")]
    SignatureExpired,
    /// Uploads hold all the memory they may: try again shortly.
    #[error("the server is receiving too many uploads")]
    Busy,
    /// The backend (disk or S3) failed.
    #[error("storage backend: {0}")]
    Backend(String),
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<diesel::result::Error> for StorageError {
    fn from(e: diesel::result::Error) -> Self {
        Self::Db(DbError::from(e))
    }
}

impl From<object_store::Error> for StorageError {
    fn from(e: object_store::Error) -> Self {
        match e {
            object_store::Error::NotFound { .. } => Self::ObjectNotFound,
            other => Self::Backend(other.to_string()),
        }
    }
}

impl StorageError {
    /// One invalid field.
    pub fn invalid(field: &str, code: &'static str, message: impl Into<String>) -> Self {
        Self::Invalid(vec![FieldError::new(field, code, message)])
    }
}

impl Diagnostic for StorageError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::BucketNotFound | Self::ObjectNotFound | Self::UploadNotFound => {
                ErrorKind::NotFound
            }
            Self::UploadIncomplete(_) | Self::UploadBusy => ErrorKind::Conflict,
            Self::SignatureInvalid | Self::SignatureExpired => ErrorKind::Forbidden,
            Self::BucketExists | Self::BucketNotEmpty | Self::ObjectExists => ErrorKind::Conflict,
            Self::Invalid(_) | Self::TypeNotAllowed(_) => ErrorKind::Validation,
            Self::TooLarge { .. } => ErrorKind::TooLarge,
            Self::QuotaExceeded | Self::NotOwner => ErrorKind::Forbidden,
            Self::Interrupted(_) => ErrorKind::BadRequest,
            Self::Backend(_) | Self::Busy => ErrorKind::Unavailable,
            Self::Db(e) => e.kind(),
        }
    }

    fn code(&self) -> &'static str {
        match self {
            Self::BucketNotFound => "bucket_not_found",
            Self::BucketExists => "bucket_exists",
            Self::BucketNotEmpty => "bucket_not_empty",
            Self::ObjectNotFound => "object_not_found",
            Self::ObjectExists => "object_exists",
            Self::NotOwner => "not_owner",
            Self::Invalid(_) => "validation_failed",
            Self::TooLarge { .. } => "object_too_large",
            Self::TypeNotAllowed(_) => "content_type_not_allowed",
            Self::QuotaExceeded => "quota_exceeded",
            Self::Interrupted(_) => "upload_interrupted",
            Self::UploadNotFound => "upload_not_found",
            Self::UploadIncomplete(_) => "upload_incomplete",
            Self::UploadBusy => "upload_completing",
            Self::SignatureInvalid => "invalid_signature",
            Self::SignatureExpired => "signed_url_expired",
            Self::Backend(_) => "storage_unavailable",
            Self::Busy => "storage_busy",
            Self::Db(e) => e.code(),
        }
    }

    fn public_detail(&self) -> String {
        match self {
            Self::Backend(_) => {
                "The file store is temporarily unavailable. Try again shortly.".to_owned()
            }
            Self::Invalid(_) => "Some fields are invalid; see `errors`.".to_owned(),
            Self::Db(e) => e.public_detail(),
            other => format!("{}.", capitalised(&other.to_string())),
        }
    }

    fn suggestion(&self) -> Option<Cow<'static, str>> {
        match self {
            Self::QuotaExceeded => Some(Cow::Borrowed("delete objects, or ask for a larger quota")),
            Self::UploadIncomplete(_) => Some(Cow::Borrowed(
                "GET the upload for fresh URLs of the missing parts, send them, then complete",
            )),
            Self::SignatureExpired => Some(Cow::Borrowed("ask for a new signed URL")),
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
            Self::Busy => Some(std::time::Duration::from_secs(5)),
            Self::Db(e) => e.retry_after(),
            _ => None,
        }
    }
}

fn capitalised(text: &str) -> String {
    let mut chars = text.chars();
    chars
        .next()
        .map(|c| c.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}
