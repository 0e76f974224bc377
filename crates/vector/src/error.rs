use std::borrow::Cow;

use sovereign_core::{Diagnostic, ErrorKind, FieldError};
use sovereign_db::DbError;

/// Why an embedder could not embed.
#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    /// The embedding server answered with an error, or not at all, after every retry.
    #[error("embedding server: {0}")]
    Upstream(String),
    /// The embedding server answered something that is not an embeddings response.
    #[error("embedding server sent an unexpected response: {0}")]
    Protocol(String),
    /// The local model failed (shape, tokenizer or numeric errors).
    #[error("local model: {0}")]
    Model(String),
    /// The model or its files could not be loaded.
    #[error("cannot load the embedding model: {0}")]
    Load(String),
}

/// Everything that can go wrong in vector search.
#[derive(Debug, thiserror::Error)]
pub enum VectorError {
    #[error("no such collection")]
    CollectionNotFound,
    #[error("a collection with this name exists")]
    CollectionExists,
    #[error("invalid input")]
    Invalid(Vec<FieldError>),
    /// A vector whose length is not the collection's dimension.
    #[error("vector of {got} dimensions, the collection has {expected}")]
    DimensionMismatch {
        field: String,
        expected: usize,
        got: usize,
    },
    /// Text search on a collection whose dimension is not the embedder's.
    #[error("the embedder makes {embedder} dimensions, the collection has {collection}")]
    EmbedderMismatch { embedder: usize, collection: usize },
    #[error(transparent)]
    Embedding(#[from] EmbedError),
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<diesel::result::Error> for VectorError {
    fn from(e: diesel::result::Error) -> Self {
        Self::Db(DbError::from(e))
    }
}

impl VectorError {
    pub fn invalid(
        field: impl Into<String>,
        code: &'static str,
        message: impl Into<String>,
    ) -> Self {
        Self::Invalid(vec![FieldError::new(field, code, message)])
    }
}

impl Diagnostic for VectorError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::CollectionNotFound => ErrorKind::NotFound,
            Self::CollectionExists => ErrorKind::Conflict,
            Self::Invalid(_) | Self::DimensionMismatch { .. } | Self::EmbedderMismatch { .. } => {
                ErrorKind::Validation
            }
            Self::Embedding(EmbedError::Upstream(_) | EmbedError::Protocol(_)) => {
                ErrorKind::Unavailable
            }
            Self::Embedding(_) => ErrorKind::Internal,
            Self::Db(e) => e.kind(),
        }
    }

    fn code(&self) -> &'static str {
        match self {
            Self::CollectionNotFound => "collection_not_found",
            Self::CollectionExists => "collection_exists",
            Self::Invalid(_) => "validation_failed",
            Self::DimensionMismatch { .. } => "dimension_mismatch",
            Self::EmbedderMismatch { .. } => "embedder_dimension_mismatch",
            Self::Embedding(EmbedError::Upstream(_) | EmbedError::Protocol(_)) => {
                "embedding_unavailable"
            }
            Self::Embedding(_) => "internal_error",
            Self::Db(e) => e.code(),
        }
    }

    fn public_detail(&self) -> String {
        match self {
            Self::CollectionNotFound => "No such collection.".to_owned(),
            Self::CollectionExists => "A collection with this name already exists.".to_owned(),
            Self::Invalid(_) => "Some fields are invalid; see `errors`.".to_owned(),
            Self::DimensionMismatch {
                field,
                expected,
                got,
            } => format!(
                "`{field}` has {got} dimensions; this collection's vectors have {expected}."
            ),
            Self::EmbedderMismatch {
                embedder,
                collection,
            } => format!(
                "Text is embedded into {embedder} dimensions, but this collection's vectors have \
                 {collection}; send vectors, or use a collection of {embedder} dimensions."
            ),
            Self::Embedding(EmbedError::Upstream(_) | EmbedError::Protocol(_)) => {
                "The embedding service is unavailable. Try again shortly.".to_owned()
            }
            Self::Embedding(_) => sovereign_core::diagnostics::GENERIC_INTERNAL_DETAIL.to_owned(),
            Self::Db(e) => e.public_detail(),
        }
    }

    fn suggestion(&self) -> Option<Cow<'static, str>> {
        match self {
            Self::CollectionNotFound => {
                Some("List collections with GET /api/v1/vector/collections.".into())
            }
            Self::CollectionExists => {
                Some("Choose another name, or delete the existing collection first.".into())
            }
            Self::Db(e) => e.suggestion(),
            _ => None,
        }
    }

    fn field_errors(&self) -> Vec<FieldError> {
        match self {
            Self::Invalid(errors) => errors.clone(),
            Self::DimensionMismatch {
                field,
                expected,
                got,
            } => vec![FieldError::new(
                field.clone(),
                "dimension_mismatch",
                format!("expected {expected} numbers, got {got}"),
            )],
            _ => Vec::new(),
        }
    }

    fn retry_after(&self) -> Option<std::time::Duration> {
        match self {
            Self::Db(e) => e.retry_after(),
            Self::Embedding(EmbedError::Upstream(_) | EmbedError::Protocol(_)) => {
                Some(std::time::Duration::from_secs(1))
            }
            _ => None,
        }
    }
}
