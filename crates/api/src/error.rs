//! The one place where errors become HTTP: [`ApiError`] and its RFC 9457 problem body.
//!
//! Domain errors implement [`Diagnostic`]; `?` turns them into an [`ApiError`], whose status comes
//! from [`status_for`]. Server-side errors show a generic detail and are logged here, with their
//! whole source chain, inside the request's span (which carries the request id).

use std::borrow::Cow;
use std::fmt;
use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use serde::{Deserialize, Serialize};
use sovereign_core::diagnostics::GENERIC_INTERNAL_DETAIL;
use sovereign_core::{Diagnostic, ErrorKind, FieldError};
use utoipa::ToSchema;

use crate::request_id;

/// Media type of every error body.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// An RFC 9457 problem body. Every error response of the API has this shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({
    "type": "urn:sovereign:problem:not_found",
    "title": "Not Found",
    "status": 404,
    "detail": "The requested resource does not exist.",
    "code": "not_found",
    "request_id": "01936f0e-8c1a-7b3e-9d2f-4a5b6c7d8e9f"
}))]
pub struct Problem {
    /// URI identifying the problem type: `urn:sovereign:problem:<code>`.
    #[serde(rename = "type")]
    pub type_uri: String,
    /// Short summary of the status.
    pub title: String,
    /// The HTTP status code.
    pub status: u16,
    /// Explanation specific to this occurrence.
    pub detail: String,
    /// Stable machine-readable code; see docs/errors.md.
    pub code: String,
    /// The request id, also in the `X-Request-ID` header and the server's logs.
    pub request_id: String,
    /// How to fix or avoid the problem.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suggestion: Option<String>,
    /// Per-field problems (validation errors only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<ProblemField>,
}

/// One invalid input field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ProblemField {
    /// Path of the field, e.g. `email` or `items[2].name`.
    pub field: String,
    /// Stable machine-readable code, e.g. `length`.
    pub code: String,
    /// Explanation.
    pub message: String,
}

impl From<FieldError> for ProblemField {
    fn from(e: FieldError) -> Self {
        Self {
            field: e.field,
            code: e.code.into_owned(),
            message: e.message,
        }
    }
}

/// The HTTP status of each error kind. The only such mapping in the code base.
#[must_use]
pub fn status_for(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::BadRequest => StatusCode::BAD_REQUEST,
        ErrorKind::Validation => StatusCode::UNPROCESSABLE_ENTITY,
        ErrorKind::Unauthenticated => StatusCode::UNAUTHORIZED,
        ErrorKind::Forbidden => StatusCode::FORBIDDEN,
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::Conflict => StatusCode::CONFLICT,
        ErrorKind::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorKind::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// Every error a handler or extractor returns. Boxed, so `Result<T, ApiError>` stays small.
pub struct ApiError(Box<Inner>);

struct Inner {
    status: StatusCode,
    code: Cow<'static, str>,
    detail: String,
    suggestion: Option<Cow<'static, str>>,
    fields: Vec<FieldError>,
    retry_after: Option<Duration>,
    /// Extra response headers (`Allow` on 405 …).
    headers: Vec<(header::HeaderName, HeaderValue)>,
    /// The underlying error, logged for server-side failures and never shown.
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl ApiError {
    /// An error with an explicit status, for HTTP-level failures that have no domain kind
    /// (415, 405 …).
    pub fn new(
        status: StatusCode,
        code: impl Into<Cow<'static, str>>,
        detail: impl Into<String>,
    ) -> Self {
        Self(Box::new(Inner {
            status,
            code: code.into(),
            detail: detail.into(),
            suggestion: None,
            fields: Vec::new(),
            retry_after: None,
            headers: Vec::new(),
            source: None,
        }))
    }

    /// An error of a domain kind.
    pub fn of_kind(
        kind: ErrorKind,
        code: impl Into<Cow<'static, str>>,
        detail: impl Into<String>,
    ) -> Self {
        Self::new(status_for(kind), code, detail)
    }

    /// A bug: logged with `cause`, shown to the client as a generic 500.
    pub fn internal(cause: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self::of_kind(
            ErrorKind::Internal,
            "internal_error",
            GENERIC_INTERNAL_DETAIL,
        )
        .with_source(cause)
    }

    /// Attaches the underlying error, logged (never shown) when the status is 5xx.
    #[must_use]
    pub fn with_source(
        mut self,
        cause: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        self.0.source = Some(cause.into());
        self
    }

    /// Adds a response header; values that are not valid header text are dropped.
    #[must_use]
    pub fn with_header(mut self, name: header::HeaderName, value: &str) -> Self {
        if let Ok(value) = HeaderValue::from_str(value) {
            self.0.headers.push((name, value));
        }
        self
    }

    #[must_use]
    pub fn with_suggestion(mut self, suggestion: impl Into<Cow<'static, str>>) -> Self {
        self.0.suggestion = Some(suggestion.into());
        self
    }

    #[must_use]
    pub fn with_fields(mut self, fields: Vec<FieldError>) -> Self {
        self.0.fields = fields;
        self
    }

    /// The response status.
    #[must_use]
    pub fn status(&self) -> StatusCode {
        self.0.status
    }

    pub fn code(&self) -> &str {
        &self.0.code
    }

    /// The problem body for this error, stamped with `request_id`.
    #[must_use]
    pub fn problem(&self, request_id: &str) -> Problem {
        let e = &self.0;
        Problem {
            type_uri: format!("urn:sovereign:problem:{}", e.code),
            title: e.status.canonical_reason().unwrap_or("Error").to_owned(),
            status: e.status.as_u16(),
            detail: e.detail.clone(),
            code: e.code.to_string(),
            request_id: request_id.to_owned(),
            suggestion: e.suggestion.as_ref().map(ToString::to_string),
            errors: e.fields.iter().cloned().map(ProblemField::from).collect(),
        }
    }

    fn log(&self) {
        let e = &self.0;
        if !e.status.is_server_error() {
            return;
        }
        let mut chain = String::new();
        let mut next: Option<&(dyn std::error::Error + 'static)> = e
            .source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static));
        while let Some(e) = next {
            if !chain.is_empty() {
                chain.push_str(": ");
            }
            chain.push_str(&e.to_string());
            next = e.source();
        }
        if e.status == StatusCode::SERVICE_UNAVAILABLE {
            tracing::warn!(code = %e.code, cause = %chain, "dependency unavailable");
        } else {
            tracing::error!(code = %e.code, cause = %chain, "request failed");
        }
    }
}

impl<E: Diagnostic> From<E> for ApiError {
    fn from(e: E) -> Self {
        let kind = e.kind();
        Self(Box::new(Inner {
            status: status_for(kind),
            code: Cow::Borrowed(e.code()),
            detail: e.public_detail(),
            suggestion: e.suggestion(),
            fields: e.field_errors(),
            retry_after: e.retry_after(),
            headers: Vec::new(),
            source: kind.is_server_side().then(|| Box::new(e) as _),
        }))
    }
}

impl fmt::Debug for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiError")
            .field("status", &self.0.status)
            .field("code", &self.0.code)
            .field("detail", &self.0.detail)
            .field("source", &self.0.source)
            .finish_non_exhaustive()
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.0.status.as_u16(),
            self.0.code,
            self.0.detail
        )
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.0.status
    }

    fn error_response(&self) -> HttpResponse {
        self.log();
        let request_id = request_id::current().unwrap_or_default();
        let mut response = problem_response(
            self.0.status,
            &self.problem(&request_id),
            self.0.retry_after,
        );
        for (name, value) in &self.0.headers {
            response.headers_mut().insert(name.clone(), value.clone());
        }
        response
    }
}

/// Serialises a problem with its media type and, when given, `Retry-After` (whole seconds).
pub(crate) fn problem_response(
    status: StatusCode,
    problem: &Problem,
    retry_after: Option<Duration>,
) -> HttpResponse {
    let mut response = HttpResponse::build(status);
    response.insert_header((header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON)));
    if let Some(wait) = retry_after {
        let secs = wait.as_secs().max(1);
        response.insert_header((header::RETRY_AFTER, secs.to_string()));
    }
    // A Problem is plain strings and numbers; serialising it cannot fail.
    response.body(serde_json::to_vec(problem).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("pool exhausted while talking to 10.9.8.7")]
    struct Outage;

    impl Diagnostic for Outage {
        fn kind(&self) -> ErrorKind {
            ErrorKind::Unavailable
        }
        fn code(&self) -> &'static str {
            "thing_unavailable"
        }
        fn retry_after(&self) -> Option<Duration> {
            Some(Duration::from_secs(2))
        }
    }

    #[test]
    fn every_kind_maps_to_the_expected_status() {
        let expected = [
            (ErrorKind::BadRequest, 400),
            (ErrorKind::Validation, 422),
            (ErrorKind::Unauthenticated, 401),
            (ErrorKind::Forbidden, 403),
            (ErrorKind::NotFound, 404),
            (ErrorKind::Conflict, 409),
            (ErrorKind::TooLarge, 413),
            (ErrorKind::RateLimited, 429),
            (ErrorKind::Unavailable, 503),
            (ErrorKind::Internal, 500),
        ];
        for (kind, status) in expected {
            assert_eq!(status_for(kind).as_u16(), status, "{kind:?}");
        }
    }

    #[test]
    fn domain_errors_keep_code_and_retry_but_not_internal_text() {
        let err = ApiError::from(Outage);
        let problem = err.problem("req-1");
        assert_eq!(problem.status, 503);
        assert_eq!(problem.code, "thing_unavailable");
        assert_eq!(problem.type_uri, "urn:sovereign:problem:thing_unavailable");
        assert_eq!(problem.title, "Service Unavailable");
        assert_eq!(problem.request_id, "req-1");
        assert!(!problem.detail.contains("10.9.8.7"));

        let response = problem_response(err.0.status, &problem, err.0.retry_after);
        assert_eq!(response.headers().get(header::RETRY_AFTER).unwrap(), "2");
        assert_eq!(
            response.headers().get(header::CONTENT_TYPE).unwrap(),
            PROBLEM_JSON
        );
    }

    #[test]
    fn internal_errors_show_a_generic_detail() {
        let err = ApiError::internal("SELECT secret FROM table failed");
        let problem = err.problem("req-2");
        assert_eq!(problem.status, 500);
        assert_eq!(problem.detail, GENERIC_INTERNAL_DETAIL);
        assert!(!serde_json::to_string(&problem).unwrap().contains("SELECT"));
    }
}
