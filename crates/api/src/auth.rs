//! Authentication as extractors: [`CurrentUser`] for routes that need a caller, [`Reader`] for
//! POST routes that only read, [`MaybeUser`] for routes that serve both. Credentials are read
//! from `Authorization: Bearer …` or `X-API-Key`, never from the URL, by [`Presented`], which
//! the websocket handshake uses too.

use actix_web::dev::Payload;
use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::{FromRequest, HttpMessage, HttpRequest, web};
use futures_util::future::LocalBoxFuture;
use sovereign_auth::{AuthError, ClientContext, Principal, Role, Scope};
use sovereign_tenancy::{ActingTenant, TenancyError, Tenant, resolution};

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

/// A request's credential, read once from its headers: the bearer token or API key, and the
/// tenant the request names. [`Presented::authenticate`] turns it into the caller; the
/// extractors and the websocket handshake share both steps.
#[derive(Debug)]
pub(crate) struct Presented {
    credential: String,
    tenant_header: Option<String>,
}

impl Presented {
    /// The credential of `req`: `Authorization: Bearer …` or `X-API-Key`, never the URL; `None`
    /// when neither is sent. Each header is single-valued, and a request presents one
    /// credential: a repeated header (`400 duplicate_header`) or both at once
    /// (`400 ambiguous_credentials`) is refused whatever the values, rather than one of them
    /// chosen silently.
    pub(crate) fn read(req: &HttpRequest) -> Result<Option<Self>, ApiError> {
        let authorization = single(req, &header::AUTHORIZATION)?;
        let api_key = single(req, &X_API_KEY)?;
        let credential = match (authorization, api_key) {
            (None, None) => return Ok(None),
            (Some(_), Some(_)) => return Err(ambiguous_credentials("Authorization and X-API-Key")),
            (Some(value), None) => bearer(value).map_err(challenge)?,
            (None, Some(value)) => value
                .to_str()
                .map_err(|_| challenge(AuthError::InvalidToken("unreadable header").into()))?
                .trim()
                .to_owned(),
        };
        Ok(Some(Self {
            credential,
            tenant_header: tenant_header(req)?,
        }))
    }

    /// The token or key itself.
    pub(crate) fn credential(&self) -> &str {
        &self.credential
    }

    /// The caller this credential proves, or the refusal: verified by
    /// [`Accounts::authenticate`](sovereign_auth::Accounts::authenticate) into an active user
    /// with its session or key, an API key's scope checked against `scope`, and the tenant the
    /// request acts in decided by [`resolution::tenant_to_act_in`] (only a superadmin may name
    /// another tenant).
    pub(crate) async fn authenticate(
        self,
        state: &AppState,
        scope: Scope,
    ) -> Result<CurrentUser, ApiError> {
        let authenticated = state
            .accounts
            .authenticate(&self.credential)
            .await
            .map_err(|e| challenge(e.into()))?;
        let principal = authenticated.principal;
        principal.require_scope(scope)?;
        let acting = resolution::tenant_to_act_in(
            state.settings.tenancy.multi_tenant,
            principal.role == Role::Superadmin,
            authenticated.tenant,
            self.tenant_header.as_deref(),
        )
        .inspect_err(|e| {
            if matches!(e, TenancyError::Mismatch) {
                tracing::warn!(security_event = "tenant_mismatch", user_id = %principal.user.id, "credentials used for another tenant");
            }
        })?;
        let tenant = match acting {
            ActingTenant::Own(tenant) => tenant,
            ActingTenant::Named(reference) => {
                resolution::accept_named(sovereign_tenancy::find(&state.db, &reference).await?)?
            }
        };
        Ok(CurrentUser {
            principal,
            tenant,
            expires_at: authenticated.expires_at,
        })
    }
}

/// The value of a single-valued header, if sent; `400 duplicate_header` if sent more than once.
fn single<'r>(
    req: &'r HttpRequest,
    name: &HeaderName,
) -> Result<Option<&'r HeaderValue>, ApiError> {
    let mut values = req.headers().get_all(name);
    let first = values.next();
    match values.next() {
        None => Ok(first),
        Some(_) => Err(invalid_request(
            "duplicate_header",
            format!("The {name} header was sent more than once; it takes one value."),
        )),
    }
}

/// The token of an `Authorization: Bearer <token>` value.
fn bearer(value: &HeaderValue) -> Result<String, ApiError> {
    let value = value
        .to_str()
        .map_err(|_| AuthError::InvalidToken("unreadable header"))?;
    let (scheme, token) = value
        .split_once(' ')
        .ok_or(AuthError::InvalidToken("no scheme"))?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(AuthError::InvalidToken("not a bearer credential").into());
    }
    Ok(token.trim().to_owned())
}

/// `400 ambiguous_credentials`: the request presents more than one credential (`what`).
pub(crate) fn ambiguous_credentials(what: &str) -> ApiError {
    invalid_request(
        "ambiguous_credentials",
        format!("The request presents two credentials ({what}); send one."),
    )
}

/// A malformed authentication request (RFC 6750 §3.1 `invalid_request`: a repeated parameter,
/// or more than one way of sending a credential).
fn invalid_request(code: &'static str, detail: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, code, detail)
        .with_suggestion(
            "send one credential: `Authorization: Bearer <token or key>` or `X-API-Key: <key>`",
        )
        .with_header(header::WWW_AUTHENTICATE, "Bearer error=\"invalid_request\"")
}

/// What a 401 says about how to authenticate (RFC 6750).
pub(crate) fn challenge(error: ApiError) -> ApiError {
    if error.status() == StatusCode::UNAUTHORIZED {
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

/// The caller of `req`, authenticated for `scope`; `None` when no credential was sent.
fn extract(
    req: &HttpRequest,
    scope: Scope,
) -> LocalBoxFuture<'static, Result<Option<CurrentUser>, ApiError>> {
    let state = req.app_data::<web::Data<AppState>>().cloned();
    let presented = Presented::read(req);
    Box::pin(async move {
        let Some(presented) = presented? else {
            return Ok(None);
        };
        let state = state.ok_or_else(|| ApiError::internal("application state is missing"))?;
        presented.authenticate(&state, scope).await.map(Some)
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

fn required(
    req: &HttpRequest,
    scope: Scope,
) -> LocalBoxFuture<'static, Result<CurrentUser, ApiError>> {
    let found = extract(req, scope);
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
        let found = extract(req, scope_of(req.method()));
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
