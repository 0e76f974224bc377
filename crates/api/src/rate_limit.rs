//! Rate limiting at the edge: every request but the probes is counted against the `api` policy
//! by client address (as resolved through trusted proxies), and the authentication routes that
//! take a password or a token also against the stricter `auth` policy: those routes are mounted
//! in a scope wrapped with [`credential_limit`] (see `routes::register`), so the routes
//! themselves say which they are. Responses carry `RateLimit-Limit`, `RateLimit-Remaining`,
//! `RateLimit-Reset` and `RateLimit-Policy` for the tightest policy that applied; refusals are
//! `429 rate_limited` problem bodies with `Retry-After`.
//!
//! Per-account and per-key limits (login attempts, API keys) are checked by the handlers that
//! know the account, through the same [`RateLimiter`](sovereign_cache::RateLimiter).

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue, RETRY_AFTER};
use actix_web::middleware::Next;
use actix_web::{HttpMessage, ResponseError, web};
use sovereign_cache::{Decision, RateKey};
use sovereign_core::ErrorKind;

use crate::edge::ClientInfo;
use crate::error::ApiError;
use crate::state::AppState;

const RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("ratelimit-limit");
const RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("ratelimit-remaining");
const RATELIMIT_RESET: HeaderName = HeaderName::from_static("ratelimit-reset");
const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");

/// The policies requests are counted against.
#[derive(Debug, Clone, Copy)]
enum Policy {
    /// Every request but the probes (`RATE_LIMIT_API`).
    Api,
    /// The routes that take a password or a token (`RATE_LIMIT_AUTH`).
    Auth,
}

impl Policy {
    fn name(self) -> &'static str {
        match self {
            Self::Api => "api",
            Self::Auth => "auth",
        }
    }
}

/// The tightest decision made so far for a request; its response's headers describe it. The
/// app-wide check records it, the credential routes' check replaces it when tighter.
#[derive(Debug, Clone, Copy)]
struct Tightest(Decision);

/// Counts `req` against `policy`; `None` when rate limiting is off or the client is unknown.
async fn check(req: &ServiceRequest, policy: Policy) -> Option<Decision> {
    let state = req.app_data::<web::Data<AppState>>()?;
    let settings = &state.settings.rate_limit;
    if !settings.enabled {
        return None;
    }
    let client = req.extensions().get::<ClientInfo>().copied()?;
    let quota = match policy {
        Policy::Api => settings.api,
        Policy::Auth => settings.auth,
    };
    let decision = state
        .limiter
        .check(policy.name(), RateKey::Ip(client.ip), quota)
        .await;
    if !decision.allowed {
        metrics::counter!("sovereign_rate_limited_total", "policy" => policy.name()).increment(1);
        tracing::info!(
            client_ip = %client.ip,
            policy = policy.name(),
            degraded = decision.degraded,
            "rate limit exceeded"
        );
    }
    Some(decision)
}

/// The app-wide limiter: the `api` policy on every request but the liveness and readiness
/// probes (an orchestrator polling them must never be refused), and the headers of the
/// tightest policy on every counted response.
pub(crate) async fn rate_limit(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let probe = matches!(req.path(), "/health" | "/ready");
    if !probe && let Some(decision) = check(&req, Policy::Api).await {
        if !decision.allowed {
            return Ok(refuse(req, &decision).map_into_right_body());
        }
        req.extensions_mut().insert(Tightest(decision));
    }
    let mut res = next.call(req).await?;
    let tightest = res.request().extensions().get::<Tightest>().copied();
    if let Some(Tightest(decision)) = tightest {
        stamp(res.headers_mut(), &decision);
    }
    Ok(res.map_into_left_body())
}

/// The `auth` policy, for the scope of the routes that take a password or a token: the ones
/// worth guessing at. (Within the scope's prefix, requests no route takes are counted too.)
pub(crate) async fn credential_limit(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    if let Some(decision) = check(&req, Policy::Auth).await {
        {
            let mut extensions = req.extensions_mut();
            let tighter = !decision.allowed
                || extensions
                    .get::<Tightest>()
                    .is_none_or(|t| decision.remaining < t.0.remaining);
            if tighter {
                extensions.insert(Tightest(decision));
            }
        }
        if !decision.allowed {
            return Ok(refuse(req, &decision).map_into_right_body());
        }
    }
    next.call(req)
        .await
        .map(ServiceResponse::map_into_left_body)
}

/// The `429` for a refused request, with the refusing policy's headers.
fn refuse(req: ServiceRequest, decision: &Decision) -> ServiceResponse {
    let response = too_many_requests(decision).error_response();
    let mut res = req.into_response(response);
    stamp(res.headers_mut(), decision);
    res
}

fn too_many_requests(decision: &Decision) -> ApiError {
    let seconds = ceil_seconds(decision.retry_after.unwrap_or_default()).max(1);
    ApiError::of_kind(
        ErrorKind::RateLimited,
        "rate_limited",
        format!("Too many requests. Retry in {seconds} s."),
    )
    .with_header(RETRY_AFTER, &seconds.to_string())
}

fn stamp(headers: &mut HeaderMap, decision: &Decision) {
    let quota = decision.quota;
    let values = [
        (RATELIMIT_LIMIT, quota.limit().to_string()),
        (RATELIMIT_REMAINING, decision.remaining.to_string()),
        (
            RATELIMIT_RESET,
            ceil_seconds(decision.reset_after).to_string(),
        ),
        (
            RATELIMIT_POLICY,
            format!(
                "{};w={}",
                quota.limit(),
                ceil_seconds(quota.period()).max(1)
            ),
        ),
    ];
    for (name, value) in values {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(name, value);
        }
    }
}

fn ceil_seconds(duration: std::time::Duration) -> u64 {
    duration.as_secs() + u64::from(duration.subsec_nanos() > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_times_round_up_to_whole_seconds() {
        assert_eq!(ceil_seconds(std::time::Duration::from_millis(1)), 1);
        assert_eq!(ceil_seconds(std::time::Duration::from_secs(2)), 2);
        assert_eq!(ceil_seconds(std::time::Duration::from_millis(2001)), 3);
    }
}
