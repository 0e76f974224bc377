//! Rate limiting at the edge: every request but the probes is counted against the `api` policy
//! by client address (as resolved through trusted proxies), and authentication routes also
//! against the stricter `auth` policy. Responses carry `RateLimit-Limit`, `RateLimit-Remaining`,
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
use sovereign_cache::{Decision, Quota, RateKey};
use sovereign_core::ErrorKind;

use crate::edge::ClientInfo;
use crate::error::ApiError;
use crate::state::AppState;

const RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("ratelimit-limit");
const RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("ratelimit-remaining");
const RATELIMIT_RESET: HeaderName = HeaderName::from_static("ratelimit-reset");
const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");

/// Authentication routes that take a password or a token: the ones worth guessing at. The
/// authenticated reads (`me`, `sessions`) and `logout` count only against the API policy.
const CREDENTIAL_ROUTES: &[&str] = &[
    "register",
    "login",
    "token",
    "refresh",
    "password/forgot",
    "password/reset",
    "password/change",
    "verify-email/request",
    "verify-email/confirm",
];

/// The policies a path is counted against, by name. Liveness and readiness probes are exempt:
/// an orchestrator polling them must never be refused.
fn policies_for(
    path: &str,
    api: Quota,
    auth: Quota,
) -> impl Iterator<Item = (&'static str, Quota)> + use<> {
    let limited = !matches!(path, "/health" | "/ready");
    let auth_route = path
        .strip_prefix("/api/v1/auth/")
        .is_some_and(|rest| CREDENTIAL_ROUTES.contains(&rest));
    [("api", api, limited), ("auth", auth, limited && auth_route)]
        .into_iter()
        .filter_map(|(name, quota, applies)| applies.then_some((name, quota)))
}

pub(crate) async fn rate_limit(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let Some(state) = req.app_data::<web::Data<AppState>>().cloned() else {
        return next
            .call(req)
            .await
            .map(ServiceResponse::map_into_left_body);
    };
    let settings = state.settings.rate_limit;
    let mut policies = policies_for(req.path(), settings.api, settings.auth).peekable();
    if !settings.enabled || policies.peek().is_none() {
        return next
            .call(req)
            .await
            .map(ServiceResponse::map_into_left_body);
    }
    let Some(client) = req.extensions().get::<ClientInfo>().copied() else {
        return next
            .call(req)
            .await
            .map(ServiceResponse::map_into_left_body);
    };

    let mut tightest: Option<Decision> = None;
    for (policy, quota) in policies {
        let decision = state
            .limiter
            .check(policy, RateKey::Ip(client.ip), quota)
            .await;
        if !decision.allowed {
            metrics::counter!("sovereign_rate_limited_total", "policy" => policy).increment(1);
            tracing::info!(
                client_ip = %client.ip,
                policy,
                degraded = decision.degraded,
                "rate limit exceeded"
            );
            let response = too_many_requests(&decision).error_response();
            let mut res = req.into_response(response);
            stamp(res.headers_mut(), &decision);
            return Ok(res.map_into_right_body());
        }
        if tightest.is_none_or(|t| decision.remaining < t.remaining) {
            tightest = Some(decision);
        }
    }
    let mut res = next.call(req).await?;
    if let Some(decision) = tightest {
        stamp(res.headers_mut(), &decision);
    }
    Ok(res.map_into_left_body())
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
    fn probes_are_exempt_and_auth_routes_get_both_policies() {
        let api = Quota::per_minute(600).unwrap();
        let auth = Quota::per_minute(20).unwrap();
        let names = |path| {
            policies_for(path, api, auth)
                .map(|(name, _)| name)
                .collect::<Vec<_>>()
        };
        assert!(names("/health").is_empty());
        assert!(names("/ready").is_empty());
        assert_eq!(names("/"), ["api"]);
        assert_eq!(names("/api/v1/users/me"), ["api"]);
        assert_eq!(names("/api/v1/auth/login"), ["api", "auth"]);
        assert_eq!(names("/api/v1/auth/refresh"), ["api", "auth"]);
        assert_eq!(names("/api/v1/auth/password/reset"), ["api", "auth"]);
        assert_eq!(names("/api/v1/auth/me"), ["api"]);
        assert_eq!(names("/api/v1/authors"), ["api"]);
        assert_eq!(names("/health/extra"), ["api"]);
    }

    #[test]
    fn retry_times_round_up_to_whole_seconds() {
        assert_eq!(ceil_seconds(std::time::Duration::from_millis(1)), 1);
        assert_eq!(ceil_seconds(std::time::Duration::from_secs(2)), 2);
        assert_eq!(ceil_seconds(std::time::Duration::from_millis(2001)), 3);
    }
}
