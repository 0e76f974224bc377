//! The outermost middleware: everything a request gets whatever route it takes.
//!
//! - a request id (see [`crate::request_id`]), echoed in `X-Request-ID`;
//! - a tracing span carrying that id, and one log line when the request completes (method,
//!   route template, status, latency) — the query string is never logged;
//! - panics in handlers become 500 problem bodies instead of dropped connections;
//! - any error response that is not already a problem body (actix's own 404/405, extractor
//!   errors) is replaced by one with the same status, so clients see one error format.

use std::panic::AssertUnwindSafe;
use std::time::Instant;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::http::header::{CONTENT_TYPE, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{HttpMessage, HttpResponse, ResponseError};
use futures_util::FutureExt;
use sovereign_core::diagnostics::GENERIC_INTERNAL_DETAIL;
use tracing::Instrument;

use crate::error::{ApiError, PROBLEM_JSON};
use crate::request_id::{self, RequestId, X_REQUEST_ID};

pub(crate) async fn request_context(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let started = Instant::now();
    let id = request_id::accept(req.headers()).unwrap_or_else(request_id::generate);
    req.extensions_mut().insert(RequestId(id.clone()));
    let http_req = req.request().clone();
    let span = tracing::info_span!(
        "request",
        request_id = %id,
        method = %req.method(),
        route = tracing::field::Empty,
    );

    let outcome = request_id::scope(id.clone(), AssertUnwindSafe(next.call(req)).catch_unwind())
        .instrument(span.clone())
        .await;

    let mut res = match outcome {
        Ok(Ok(res)) => res.map_into_boxed_body(),
        Ok(Err(err)) => {
            let response =
                span.in_scope(|| request_id::sync_scope(id.clone(), || err.error_response()));
            ServiceResponse::new(http_req.clone(), response)
        }
        Err(panic) => {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "non-string panic payload".to_owned());
            let response = span.in_scope(|| {
                request_id::sync_scope(id.clone(), || {
                    ApiError::internal(format!("handler panicked: {message}")).error_response()
                })
            });
            ServiceResponse::new(http_req.clone(), response)
        }
    };

    let status = res.status();
    if (status.is_client_error() || status.is_server_error()) && !is_problem(&res) {
        let response = span
            .in_scope(|| request_id::sync_scope(id.clone(), || problem_for_status(status, &res)));
        res = ServiceResponse::new(http_req.clone(), response);
    }

    if let Ok(value) = HeaderValue::from_str(&id) {
        res.headers_mut().insert(X_REQUEST_ID, value);
    }

    let route = http_req.match_pattern();
    span.record("route", route.as_deref().unwrap_or("<unmatched>"));
    tracing::info!(
        parent: &span,
        status = res.status().as_u16(),
        latency_ms = started.elapsed().as_secs_f64() * 1000.0,
        path = http_req.path(),
        "request completed"
    );
    Ok(res)
}

fn is_problem(res: &ServiceResponse<BoxBody>) -> bool {
    res.headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with(PROBLEM_JSON))
}

/// A problem body for an error response produced outside our error type.
fn problem_for_status(status: StatusCode, original: &ServiceResponse<BoxBody>) -> HttpResponse {
    let (code, detail) = match status {
        StatusCode::NOT_FOUND => ("not_found", "No resource exists at this path."),
        StatusCode::METHOD_NOT_ALLOWED => (
            "method_not_allowed",
            "This resource does not support the request's method.",
        ),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => (
            "unsupported_media_type",
            "The request body's content type is not supported here.",
        ),
        StatusCode::PAYLOAD_TOO_LARGE => (
            "payload_too_large",
            "The request body is larger than this endpoint accepts.",
        ),
        StatusCode::URI_TOO_LONG => ("uri_too_long", "The request URI is too long."),
        s if s.is_server_error() => ("internal_error", GENERIC_INTERNAL_DETAIL),
        _ => ("bad_request", "The request could not be understood."),
    };
    let mut error = ApiError::new(status, code, detail);
    if let Some(cause) = original.response().error() {
        if status.is_server_error() {
            error = error.with_source(cause.to_string());
        } else {
            tracing::debug!(%cause, "client error without a problem body");
        }
    }
    error.error_response()
}
