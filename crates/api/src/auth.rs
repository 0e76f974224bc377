//! Authentication as extractors: [`CurrentUser`] for routes that need a caller, [`MaybeUser`]
//! for routes that serve both. Credentials are read from `Authorization: Bearer …` or
//! `X-API-Key`, never from the URL.

use actix_web::dev::Payload;
use actix_web::http::Method;
use actix_web::http::header::{self, HeaderName};
use actix_web::{FromRequest, HttpMessage, HttpRequest, web};
use futures_util::future::LocalBoxFuture;
use sovereign_auth::{AuthError, ClientContext, Principal, Role, Scope};
use sovereign_tenancy::{TenancyError, Tenant, TenantClaims, TenantRef};

use crate::edge::ClientInfo;
use crate::error::ApiError;
use crate::state::AppState;
use crate::tenant::tenant_header;

/// The API-key header.
pub const X_API_KEY: HeaderName = HeaderName::from_static("x-api-key");

/// The authenticated caller, and the tenant the request acts in: the caller's own, or — for a
/// superadmin only — the one `X-Tenant-ID` names.
#[derive(Debug, Clone)]
pub struct CurrentUser {
    pub principal: Principal,
    pub tenant: Tenant,
    /// When the credential expires by itself (the access token's `exp`, an API key's expiry).
    pub expires_at: Option<chrono::DateTime<chrono::Utc>>,
}

impl CurrentUser {
    /// `Forbidden` unless the caller acts with at least `role`.
    pub fn require(&self, role: Role) -> Result<(), ApiError> {
        Ok(self.principal.require(role)?)
    }
}

/// The caller when credentials were sent (and are valid); `None` when none were sent.
#[derive(Debug, Clone)]
pub struct MaybeUser(pub Option<CurrentUser>);

/// The credential a request presents, if any.
pub(crate) fn credential(req: &HttpRequest) -> Result<Option<String>, ApiError> {
    if let Some(value) = req.headers().get(header::AUTHORIZATION) {
        let value = value
            .to_str()
            .map_err(|_| AuthError::InvalidToken("unreadable header"))?;
        let (scheme, token) = value
            .split_once(' ')
            .ok_or(AuthError::InvalidToken("no scheme"))?;
        if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
            return Err(AuthError::InvalidToken("not a bearer credential").into());
        }
        return Ok(Some(token.trim().to_owned()));
    }
    if let Some(value) = req.headers().get(X_API_KEY) {
        let value = value
            .to_str()
            .map_err(|_| AuthError::InvalidToken("unreadable header"))?;
        return Ok(Some(value.trim().to_owned()));
    }
    Ok(None)
}

/// What a 401 says about how to authenticate (RFC 6750).
pub(crate) fn challenge(error: ApiError) -> ApiError {
    if error.status() == actix_web::http::StatusCode::UNAUTHORIZED {
        let value = if error.code() == "not_authenticated" {
            "Bearer"
        } else {
            "Bearer error=\"invalid_token\""
        };
        error.with_header(header::WWW_AUTHENTICATE, value)
    } else {
        error
    }
}

/// The scope an API key needs for a request by its method: `read` for GET, HEAD and OPTIONS,
/// `write` for everything else. Routes that read with a POST (a query too big for a URL) say so
/// by taking [`Reader`] instead of [`CurrentUser`].
fn scope_of(method: &Method) -> Scope {
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        Scope::Read
    } else {
        Scope::Write
    }
}

async fn authenticate(
    state: web::Data<AppState>,
    credential: String,
    scope: Scope,
    tenant_header: Option<String>,
) -> Result<CurrentUser, ApiError> {
    let authenticated = state
        .accounts
        .authenticate(&credential)
        .await
        .map_err(|e| challenge(e.into()))?;
    let principal = authenticated.principal;
    let expires_at = authenticated.expires_at;
    principal.require_scope(scope)?;
    let multi_tenant = state.settings.tenancy.multi_tenant;
    let home = authenticated.tenant;
    let tenant = match tenant_header.as_deref() {
        // Only a superadmin may act in another tenant, by naming it.
        Some(header) if multi_tenant && principal.role == Role::Superadmin => {
            let reference = TenantRef::parse(header)?;
            if home.matches(&reference) {
                home
            } else {
                sovereign_tenancy::find(&state.db, &reference)
                    .await?
                    .ok_or(TenancyError::NotFound)?
            }
        }
        // Everyone else: the tenancy rules, with the credentials' tenant as a claim.
        header => {
            let claims = TenantClaims {
                header,
                credentials: Some(home.id),
            };
            let reference = sovereign_tenancy::resolution::tenant_to_load(multi_tenant, claims)?;
            // Nearly always the credentials' own tenant, already loaded; with multi-tenancy off
            // it is the default tenant, which `accept` then refuses for anyone else's.
            let loaded = if home.matches(&reference) {
                Some(home)
            } else {
                sovereign_tenancy::find(&state.db, &reference).await?
            };
            sovereign_tenancy::resolution::accept(multi_tenant, claims, loaded).inspect_err(|e| {
                if matches!(e, TenancyError::Mismatch) {
                    tracing::warn!(security_event = "tenant_mismatch", user_id = %principal.user.id, "credentials used for another tenant");
                }
            })?
        }
    };

    Ok(CurrentUser {
        principal,
        tenant,
        expires_at,
    })
}

fn extract(
    req: &HttpRequest,
    required: bool,
    scope: Scope,
) -> LocalBoxFuture<'static, Result<Option<CurrentUser>, ApiError>> {
    let state = req.app_data::<web::Data<AppState>>().cloned();
    let credential = credential(req).map_err(challenge);
    let header = tenant_header(req);
    Box::pin(async move {
        let state = state.ok_or_else(|| ApiError::internal("application state is missing"))?;
        let Some(credential) = credential? else {
            return if required {
                Err(challenge(AuthError::NotAuthenticated.into()))
            } else {
                Ok(None)
            };
        };
        Ok(Some(authenticate(state, credential, scope, header?).await?))
    })
}

impl FromRequest for CurrentUser {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        required(req, scope_of(req.method()))
    }
}

/// The authenticated caller of a route that only reads although its method is POST (a search
/// whose query does not fit a URL): an API key needs the `read` scope, not `write`.
#[derive(Debug, Clone)]
pub struct Reader(pub CurrentUser);

impl FromRequest for Reader {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let found = required(req, Scope::Read);
        Box::pin(async move { found.await.map(Self) })
    }
}

pub(crate) fn required(
    req: &HttpRequest,
    scope: Scope,
) -> LocalBoxFuture<'static, Result<CurrentUser, ApiError>> {
    let found = extract(req, true, scope);
    Box::pin(async move {
        found
            .await?
            .ok_or_else(|| challenge(AuthError::NotAuthenticated.into()))
    })
}

impl FromRequest for MaybeUser {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let found = extract(req, false, scope_of(req.method()));
        Box::pin(async move { Ok(Self(found.await?)) })
    }
}

/// Where the request came from, for the sessions it opens.
#[derive(Debug, Clone)]
pub struct Client(pub ClientContext);

impl FromRequest for Client {
    type Error = ApiError;
    type Future = std::future::Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let ip = req.extensions().get::<ClientInfo>().map(|c| c.ip);
        let user_agent = req
            .headers()
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        std::future::ready(Ok(Self(ClientContext { ip, user_agent })))
    }
}
