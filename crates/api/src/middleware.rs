//! The outermost middleware: everything a request gets whatever route it takes.
//!
//! - a request id (see [`crate::request_id`]), echoed in `X-Request-ID`;
//! - the client's address and scheme, resolved through trusted proxies ([`crate::edge`]) and
//!   stored in the request's extensions for the rate limiter and the log;
//! - the security headers, on every response including errors;
//! - a tracing span carrying that id, and one log line when the request completes (method,
//!   route template, status, latency) — the query string is never logged;
//! - panics in handlers become 500 problem bodies instead of dropped connections;
//! - any error response without a JSON body (actix's own plain-text 404/405, extractor
//!   errors) is replaced by a problem body with the same status, so clients see one error
//!   format. JSON error bodies are left alone: they are problem bodies or deliberate reports
//!   such as `/ready`'s;
//! - HEAD is served wherever GET is (RFC 9110 §9.3.2): the request is routed as a GET, and the
//!   HTTP layer, which remembers the request was HEAD, sends the GET's status and headers
//!   without the body. Logs and metrics keep the method HEAD.

use std::net::{IpAddr, Ipv4Addr};
use std::panic::AssertUnwindSafe;
use std::time::Instant;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::error::InternalError;
use actix_web::http::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderMap, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::middleware::Next;
use actix_web::{HttpMessage, HttpResponse, ResponseError, web};
use futures_util::FutureExt;
use sovereign_core::diagnostics::GENERIC_INTERNAL_DETAIL;
use tracing::Instrument;

use crate::edge::{self, ClientInfo, EdgeConfig};
use crate::error::ApiError;
use crate::fallback::KnownRoutes;
use crate::request_id::{self, RequestId, X_REQUEST_ID};

pub(crate) async fn request_context(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let started = Instant::now();
    crate::metrics::request_started();
    let id = request_id::accept(req.headers()).unwrap_or_else(request_id::generate);
    let edge = req.app_data::<web::Data<EdgeConfig>>().cloned();
    let client = match &edge {
        Some(edge) => edge.client(req.peer_addr().map(|a| a.ip()), req.headers()),
        None => ClientInfo {
            ip: req
                .peer_addr()
                .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |a| a.ip()),
            https: false,
        },
    };
    let user_agent = req
        .headers()
        .get(actix_web::http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    req.extensions_mut().insert(RequestId(id.clone()));
    req.extensions_mut().insert(client);
    // Routing needs the only reference to the request, so nothing here may clone it before the
    // inner service has run; keep what the log line needs instead.
    let path = req.path().to_owned();
    // The span carries only the id, which every event inside the request inherits; the
    // request's own facts go on the single completion line below.
    let span = tracing::info_span!("request", request_id = %id);
    let method = req.method().clone();
    if method == Method::HEAD
        && req
            .app_data::<web::Data<KnownRoutes>>()
            .is_some_and(|routes| routes.serves_get(&path))
    {
        req.head_mut().method = Method::GET;
    }
    let in_scope =
        |f: &dyn Fn() -> HttpResponse| span.in_scope(|| request_id::sync_scope(id.clone(), f));

    let inner = async move {
        match crate::nul::check_uri(req.uri()) {
            Err(refusal) => Ok(req.into_response(refusal.error_response())),
            Ok(()) => next
                .call(req)
                .await
                .map(ServiceResponse::map_into_boxed_body),
        }
    };
    // Events written while handling the request record where it came from.
    let origin = sovereign_events::origin::Origin {
        request_id: Some(id.clone()),
        ip: Some(client.ip),
        user_agent: user_agent.clone(),
    };
    let outcome = request_id::scope(
        id.clone(),
        sovereign_events::origin::scope(origin, AssertUnwindSafe(inner).catch_unwind()),
    )
    .instrument(span.clone())
    .await;

    let mut route = None;
    let result: Result<ServiceResponse<BoxBody>, actix_web::Error> = match outcome {
        Ok(Ok(res)) => {
            let res = res.map_into_boxed_body();
            let status = res.status();
            let mut res =
                if (status.is_client_error() || status.is_server_error()) && !is_json(&res) {
                    let (http_req, original) = res.into_parts();
                    let mut response = in_scope(&|| problem_for_status(status, original.error()));
                    keep_headers(original.headers(), response.headers_mut());
                    ServiceResponse::new(http_req, response)
                } else {
                    res
                };
            route = res.request().match_pattern();
            stamp(res.headers_mut(), &id);
            if let Some(edge) = &edge {
                edge::apply_security_headers(res.headers_mut(), &path, client, edge);
            }
            Ok(res)
        }
        // An inner service failed instead of answering: answer its problem body ourselves.
        Ok(Err(err)) => {
            let mut response = in_scope(&|| err.error_response());
            stamp(response.headers_mut(), &id);
            if let Some(edge) = &edge {
                edge::apply_security_headers(response.headers_mut(), &path, client, edge);
            }
            Err(InternalError::from_response(err, response).into())
        }
        Err(panic) => {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "non-string panic payload".to_owned());
            let mut response = in_scope(&|| {
                ApiError::internal(format!("handler panicked: {message}")).error_response()
            });
            stamp(response.headers_mut(), &id);
            if let Some(edge) = &edge {
                edge::apply_security_headers(response.headers_mut(), &path, client, edge);
            }
            Err(InternalError::from_response("handler panicked", response).into())
        }
    };

    let status = match &result {
        Ok(res) => res.status(),
        Err(err) => err.as_response_error().status_code(),
    };
    crate::metrics::request_finished(route.as_deref(), &method, status, started.elapsed());
    tracing::info!(
        parent: &span,
        method = %method,
        route = route.as_deref().unwrap_or("<unmatched>"),
        path,
        client_ip = %client.ip,
        status = status.as_u16(),
        latency_ms = started.elapsed().as_secs_f64() * 1000.0,
        "request completed"
    );
    result
}

fn stamp(headers: &mut HeaderMap, id: &str) {
    if let Ok(value) = HeaderValue::from_str(id) {
        headers.insert(X_REQUEST_ID, value);
    }
}

/// Headers of a replaced error response that still apply (CORS, `Allow`, rate limits), minus
/// those describing the old body.
fn keep_headers(from: &HeaderMap, to: &mut HeaderMap) {
    for (name, value) in from {
        if name != CONTENT_TYPE && name != CONTENT_LENGTH && !to.contains_key(name) {
            to.append(name.clone(), value.clone());
        }
    }
}

fn is_json(res: &ServiceResponse<BoxBody>) -> bool {
    res.headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|essence| essence == "application/json" || essence.ends_with("+json"))
}

/// A problem body for an error response produced outside our error type.
fn problem_for_status(status: StatusCode, cause: Option<&actix_web::Error>) -> HttpResponse {
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
    if let Some(cause) = cause {
        if status.is_server_error() {
            error = error.with_source(cause.to_string());
        } else {
            tracing::debug!(%cause, "client error without a problem body");
        }
    }
    error.error_response()
}
