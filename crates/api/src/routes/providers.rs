//! `/api/v1/auth/providers`, `/redirect-urls` and `/identities`: sign-in with OpenID Connect
//! and OAuth providers, their administration, and the identities linked to an account. The
//! rules are `sovereign_auth::providers`'s; this maps them to HTTP (redirects included).

#![expect(
    unused_qualifications,
    reason = "utoipa's actix extras spell out the path of a documented query type"
)]

use actix_web::cookie::{Cookie, SameSite};
use actix_web::http::header;
use actix_web::web::Query;
use actix_web::{HttpRequest, HttpResponse, delete, get, patch, post, put, web};
use serde::{Deserialize, Serialize};
use sovereign_auth::{
    CallbackParams, FlowCookie, Identity, LinkConfirmation, NewProvider, ProviderDetails,
    ProviderGrant, ProviderInfo, ProviderUpdate, SignIn, flow_cookie_name,
};
use sovereign_tenancy::TenantClaims;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;
use validator::Validate;

use super::auth::SignedIn;
use crate::auth::{Client, CurrentUser};
use crate::error::ApiError;
use crate::extract::{Json, Unchecked};
use crate::state::AppState;
use crate::tenant::{CurrentTenant, TenantHeader, tenant_header};

/// Where to start a sign-in from a browser.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuthorizeQuery {
    /// Where the browser comes back to, with `code` (or `error`): one of the tenant's redirect
    /// URLs, matched exactly. (Not with `link`.)
    pub redirect_to: Option<String>,
    /// The link flow `POST …/link` made (its `authorize_url` carries it).
    pub link: Option<String>,
    /// The tenant's slug or id (a link cannot send `X-Tenant-ID`); the header works too.
    pub tenant: Option<String>,
}

/// What the provider sends the browser back with.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CallbackQuery {
    pub state: Option<String>,
    pub code: Option<String>,
    pub error: Option<String>,
    pub error_description: Option<String>,
    pub iss: Option<String>,
}

/// Where to come back to after linking.
#[derive(Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LinkRequest {
    /// One of the tenant's redirect URLs; the browser comes back with `linked={provider}` (or
    /// `error`).
    #[validate(length(max = 2000))]
    pub redirect_to: String,
}

/// The provider's page to send the browser to.
#[derive(Serialize, ToSchema)]
pub struct AuthorizeUrl {
    pub authorize_url: String,
}

/// The tenant's redirect URLs.
#[derive(Serialize, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RedirectUrls {
    /// Absolute URLs, matched exactly: `https`, or `http` on a loopback host.
    #[validate(length(max = 50))]
    pub urls: Vec<String>,
}

/// The tenant's enabled providers, for a sign-in page.
#[utoipa::path(
    tag = "auth",
    params(TenantHeader),
    responses((status = 200, description = "Providers", body = Vec<ProviderInfo>))
)]
#[get("/api/v1/auth/providers")]
pub(super) async fn list_providers(
    state: web::Data<AppState>,
    tenant: CurrentTenant,
) -> Result<web::Json<Vec<ProviderInfo>>, ApiError> {
    Ok(web::Json(
        state.accounts.public_providers(tenant.0.id).await?,
    ))
}

/// Adds a sign-in provider to the caller's tenant. Administrators, signed in within the last
/// 10 minutes (or at `aal2`). The client secret is stored sealed and never returned.
#[utoipa::path(
    tag = "auth",
    security(("bearer" = [])),
    request_body = NewProvider,
    responses(
        (status = 201, description = "Added", body = ProviderDetails),
        (status = 401, description = "`reauthentication_required`"),
        (status = 403, description = "`forbidden`: administrators only"),
        (status = 409, description = "`slug_taken`"),
    )
)]
#[post("/api/v1/auth/providers")]
pub(super) async fn create_provider(
    state: web::Data<AppState>,
    user: CurrentUser,
    body: Json<Unchecked<NewProvider>>,
) -> Result<HttpResponse, ApiError> {
    let details = state
        .accounts
        .create_provider(&user.principal, &body.into_inner().0)
        .await?;
    Ok(HttpResponse::Created().json(details))
}

/// A provider's configuration, without its secret (administrators).
#[utoipa::path(
    tag = "auth",
    security(("bearer" = [])),
    params(("provider" = String, Path, description = "The provider's slug")),
    responses(
        (status = 200, description = "The provider", body = ProviderDetails),
        (status = 404, description = "`not_found`"),
    )
)]
#[get("/api/v1/auth/providers/{provider}")]
pub(super) async fn get_provider(
    state: web::Data<AppState>,
    user: CurrentUser,
    provider: web::Path<String>,
) -> Result<web::Json<ProviderDetails>, ApiError> {
    Ok(web::Json(
        state
            .accounts
            .provider_details(&user.principal, &provider)
            .await?,
    ))
}

/// Changes a provider (administrators, recently authenticated); what is absent stays.
#[utoipa::path(
    tag = "auth",
    security(("bearer" = [])),
    params(("provider" = String, Path, description = "The provider's slug")),
    request_body = ProviderUpdate,
    responses(
        (status = 200, description = "Changed", body = ProviderDetails),
        (status = 401, description = "`reauthentication_required`"),
        (status = 404, description = "`not_found`"),
    )
)]
#[patch("/api/v1/auth/providers/{provider}")]
pub(super) async fn update_provider(
    state: web::Data<AppState>,
    user: CurrentUser,
    provider: web::Path<String>,
    body: Json<Unchecked<ProviderUpdate>>,
) -> Result<web::Json<ProviderDetails>, ApiError> {
    Ok(web::Json(
        state
            .accounts
            .update_provider(&user.principal, &provider, &body.into_inner().0)
            .await?,
    ))
}

/// Removes a provider (administrators, recently authenticated). Linked identities stay, keyed
/// by issuer: a provider added again for the same issuer signs them in again.
#[utoipa::path(
    tag = "auth",
    security(("bearer" = [])),
    params(("provider" = String, Path, description = "The provider's slug")),
    responses(
        (status = 204, description = "Removed"),
        (status = 401, description = "`reauthentication_required`"),
        (status = 404, description = "`not_found`"),
    )
)]
#[delete("/api/v1/auth/providers/{provider}")]
pub(super) async fn delete_provider(
    state: web::Data<AppState>,
    user: CurrentUser,
    provider: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    state
        .accounts
        .delete_provider(&user.principal, &provider)
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Starts a sign-in with a provider: open it in the browser (a link or `location.assign`).
/// Redirects to the provider with `state`, `nonce` and a PKCE S256 challenge, all three kept
/// on the server for 10 minutes, single use.
#[utoipa::path(
    tag = "auth",
    params(("provider" = String, Path, description = "The provider's slug"), AuthorizeQuery),
    responses(
        (status = 302, description = "To the provider"),
        (status = 400, description = "`redirect_not_allowed`"),
        (status = 404, description = "`not_found`: no such enabled provider"),
        (status = 503, description = "`provider_unavailable`: its discovery document could not be read"),
    )
)]
#[get("/api/v1/auth/providers/{provider}/authorize")]
pub(super) async fn authorize_provider(
    state: web::Data<AppState>,
    req: HttpRequest,
    provider: web::Path<String>,
    query: Query<AuthorizeQuery>,
) -> Result<HttpResponse, ApiError> {
    if let Some(link) = &query.link {
        let (url, cookie) = state.accounts.open_link(&provider, link).await?;
        return Ok(to_provider(url.as_str(), &cookie, &state));
    }
    let redirect_to = query.redirect_to.as_deref().ok_or_else(|| {
        ApiError::from(sovereign_auth::AuthError::invalid(
            "redirect_to",
            "required",
            "name where the browser comes back to",
        ))
    })?;
    let header = tenant_header(&req)?;
    let named = query.tenant.clone().or(header);
    let tenant = sovereign_tenancy::resolve(
        &state.db,
        state.settings.tenancy.multi_tenant,
        TenantClaims {
            header: named.as_deref(),
            credentials: None,
        },
    )
    .await?;
    let (url, cookie) = state
        .accounts
        .authorize_provider(tenant.id, &provider, redirect_to)
        .await?;
    Ok(to_provider(url.as_str(), &cookie, &state))
}

/// Where the provider sends the browser back. Redirects to the app's `redirect_to` with a
/// one-time `code` (exchange it at `/api/v1/auth/providers/exchange`), or with `error` (a
/// problem code: `provider_refused`, `invalid_id_token`, `identity_link_required`,
/// `sign_up_disabled`, `provider_email_unverified`, `provider_unavailable` …) and
/// `error_description`. An unknown, replayed or expired `state` gets `400 invalid_state`.
#[utoipa::path(
    tag = "auth",
    params(("provider" = String, Path, description = "The provider's slug"), CallbackQuery),
    responses(
        (status = 302, description = "Back to the app"),
        (status = 400, description = "`invalid_state`"),
    )
)]
#[get("/api/v1/auth/providers/{provider}/callback")]
pub(super) async fn provider_callback(
    state: web::Data<AppState>,
    req: HttpRequest,
    provider: web::Path<String>,
    query: Query<CallbackQuery>,
) -> Result<HttpResponse, ApiError> {
    let query = query.into_inner();
    let cookie_name = query.state.as_deref().map(flow_cookie_name);
    let browser = cookie_name
        .as_deref()
        .and_then(|name| req.cookie(name))
        .map(|c| c.value().to_owned());
    let params = CallbackParams {
        state: query.state,
        code: query.code,
        error: query.error,
        error_description: query.error_description,
        iss: query.iss,
    };
    let url = state
        .accounts
        .provider_callback(&provider, &params, browser.as_deref())
        .await?;
    let mut response = found(url.as_str());
    if let Some(name) = cookie_name {
        // The flow is spent: its cookie goes.
        let mut gone = Cookie::build(name, "").path(FLOW_COOKIE_PATH).finish();
        gone.make_removal();
        response.add_cookie(&gone).ok();
    }
    Ok(response)
}

/// Trades the one-time `code` of a provider sign-in for a session — or, for an account with a
/// second factor, a challenge to complete at `/api/v1/auth/mfa/verify`.
#[utoipa::path(
    tag = "auth",
    request_body = ProviderGrant,
    responses(
        (status = 200, description = "Signed in, or a second factor is required", body = SignedIn),
        (status = 401, description = "`invalid_provider_code`: unknown, used or expired"),
    )
)]
#[post("/providers/exchange")]
pub(super) async fn exchange_provider_code(
    state: web::Data<AppState>,
    client: Client,
    body: Json<Unchecked<ProviderGrant>>,
) -> Result<web::Json<SignedIn>, ApiError> {
    let signed_in = state
        .accounts
        .exchange_provider_code(&body.into_inner().0, &client.0)
        .await?;
    Ok(web::Json(match signed_in {
        SignIn::Session(pair) => SignedIn::Session(pair),
        SignIn::MfaRequired(challenge) => SignedIn::MfaRequired(challenge),
    }))
}

/// Starts linking a provider to the signed-in account (signed in within the last 10 minutes,
/// or at `aal2`): send the browser to `authorize_url` (this server's, which sends it on to the
/// provider). It comes back to `redirect_to` with `link_code`: confirm it from this session at
/// `/api/v1/auth/providers/link/confirm`.
#[utoipa::path(
    tag = "auth",
    security(("bearer" = [])),
    params(("provider" = String, Path, description = "The provider's slug")),
    request_body = LinkRequest,
    responses(
        (status = 200, description = "Where to send the browser", body = AuthorizeUrl),
        (status = 400, description = "`redirect_not_allowed`"),
        (status = 401, description = "`reauthentication_required`"),
    )
)]
#[post("/api/v1/auth/providers/{provider}/link")]
pub(super) async fn link_provider(
    state: web::Data<AppState>,
    user: CurrentUser,
    provider: web::Path<String>,
    body: Json<LinkRequest>,
) -> Result<web::Json<AuthorizeUrl>, ApiError> {
    let url = state
        .accounts
        .link_provider(&user.principal, &provider, &body.0.redirect_to)
        .await?;
    Ok(web::Json(AuthorizeUrl {
        authorize_url: url.into(),
    }))
}

/// The identities linked to the signed-in account.
#[utoipa::path(
    tag = "auth",
    security(("bearer" = [])),
    responses((status = 200, description = "Identities", body = Vec<Identity>))
)]
#[get("/api/v1/auth/identities")]
pub(super) async fn list_identities(
    state: web::Data<AppState>,
    user: CurrentUser,
) -> Result<web::Json<Vec<Identity>>, ApiError> {
    Ok(web::Json(state.accounts.identities(&user.principal).await?))
}

/// Unlinks an identity (signed in within the last 10 minutes, or at `aal2`). The account's
/// last way to sign in cannot be removed.
#[utoipa::path(
    tag = "auth",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The identity")),
    responses(
        (status = 204, description = "Unlinked"),
        (status = 401, description = "`reauthentication_required`"),
        (status = 404, description = "`not_found`"),
        (status = 409, description = "`last_sign_in_method`"),
    )
)]
#[delete("/api/v1/auth/identities/{id}")]
pub(super) async fn unlink_identity(
    state: web::Data<AppState>,
    user: CurrentUser,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    state
        .accounts
        .unlink_identity(&user.principal, id.into_inner())
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// The tenant's own redirect URLs (administrators); `AUTH_REDIRECT_URLS` adds to them.
#[utoipa::path(
    tag = "auth",
    security(("bearer" = [])),
    responses((status = 200, description = "Redirect URLs", body = RedirectUrls))
)]
#[get("/api/v1/auth/redirect-urls")]
pub(super) async fn list_redirect_urls(
    state: web::Data<AppState>,
    user: CurrentUser,
) -> Result<web::Json<RedirectUrls>, ApiError> {
    Ok(web::Json(RedirectUrls {
        urls: state.accounts.redirect_urls(&user.principal).await?,
    }))
}

/// Replaces the tenant's redirect URLs (administrators, recently authenticated).
#[utoipa::path(
    tag = "auth",
    security(("bearer" = [])),
    request_body = RedirectUrls,
    responses(
        (status = 200, description = "The new list", body = RedirectUrls),
        (status = 401, description = "`reauthentication_required`"),
        (status = 422, description = "`validation_failed`: not an absolute https URL"),
    )
)]
#[put("/api/v1/auth/redirect-urls")]
pub(super) async fn set_redirect_urls(
    state: web::Data<AppState>,
    user: CurrentUser,
    body: Json<RedirectUrls>,
) -> Result<web::Json<RedirectUrls>, ApiError> {
    Ok(web::Json(RedirectUrls {
        urls: state
            .accounts
            .set_redirect_urls(&user.principal, &body.0.urls)
            .await?,
    }))
}

/// Confirms a link from the session that asked for it (`POST …/link`), with the `link_code`
/// the browser came back with. Any other session — say, a victim sent an attacker's link — is
/// refused and nothing is linked.
#[utoipa::path(
    tag = "auth",
    security(("bearer" = [])),
    request_body = LinkConfirmation,
    responses(
        (status = 204, description = "Linked"),
        (status = 401, description = "`invalid_provider_code`: unknown, used, expired, or another session's"),
        (status = 409, description = "`identity_in_use`: another account has this identity"),
    )
)]
#[post("/api/v1/auth/providers/link/confirm")]
pub(super) async fn confirm_link(
    state: web::Data<AppState>,
    user: CurrentUser,
    body: Json<Unchecked<LinkConfirmation>>,
) -> Result<HttpResponse, ApiError> {
    state
        .accounts
        .confirm_link(&user.principal, &body.into_inner().0)
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Where the flow's cookie is sent: the authorize and callback routes only.
const FLOW_COOKIE_PATH: &str = "/api/v1/auth/providers";

/// To the provider, with the cookie that binds the flow to this browser (HttpOnly, SameSite=Lax
/// so that the provider's redirect back carries it, Secure behind https).
fn to_provider(location: &str, cookie: &FlowCookie, state: &AppState) -> HttpResponse {
    let secure = state
        .settings
        .auth
        .providers
        .api_public_url
        .starts_with("https://");
    let cookie = Cookie::build(cookie.name.clone(), cookie.value.clone())
        .path(FLOW_COOKIE_PATH)
        .http_only(true)
        .secure(secure)
        .same_site(SameSite::Lax)
        .max_age(actix_web::cookie::time::Duration::seconds(
            i64::try_from(cookie.max_age_seconds).unwrap_or(600),
        ))
        .finish();
    let mut response = found(location);
    response.add_cookie(&cookie).ok();
    response
}

/// `302 Found` to `location`, never cached (it carries a one-time code or state).
fn found(location: &str) -> HttpResponse {
    HttpResponse::Found()
        .insert_header((header::LOCATION, location))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .finish()
}
