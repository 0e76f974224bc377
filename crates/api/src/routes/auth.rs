//! `/api/v1/auth`: registration, sign-in, sessions and password flows, and the JWKS document.
//!
//! The routes that take a password or a token are mounted under [`CREDENTIALS`] (their paths
//! are relative to it), in a scope that counts them against the `auth` rate-limit policy; the
//! others name their whole path.

#![expect(
    unused_qualifications,
    reason = "utoipa's actix extras spell out the path of a documented query type"
)]

use actix_web::http::StatusCode;
use actix_web::web::Query;
use actix_web::{HttpResponse, delete, get, post, web};
use secrecy::SecretString;
use serde::Deserialize;
use sovereign_auth::{MfaChallenge, Registration, SessionInfo, SignIn, TokenPair};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;
use validator::Validate;

use crate::auth::{Client, CurrentUser};
use crate::error::ApiError;
use crate::extract::{Json, Unchecked};
use crate::routes::dto::Accepted;
use crate::state::AppState;
use crate::tenant::{CurrentTenant, TenantHeader};

/// An address and a password.
#[derive(Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"email": "ada@example.com", "password": "correct horse battery staple"}))]
pub struct LoginRequest {
    #[validate(length(max = 254))]
    #[schema(format = Email, max_length = 254)]
    pub email: String,
    #[validate(length(max = 1024))]
    pub password: String,
}

/// The OAuth2 password grant (RFC 6749 §4.3), as the docs page's Authorize button sends it.
#[derive(Deserialize, ToSchema)]
pub struct TokenForm {
    /// Must be `password`.
    pub grant_type: Option<String>,
    /// The email address.
    pub username: String,
    pub password: String,
}

/// A refresh token to exchange.
#[derive(Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    #[validate(length(max = 4096))]
    pub refresh_token: String,
}

/// Options for signing out.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LogoutQuery {
    /// Sign out every session of the account, not only this one.
    #[serde(default)]
    pub all: bool,
}

/// An address to send a reset link to.
#[derive(Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ForgotRequest {
    #[validate(length(max = 254))]
    #[schema(format = Email, max_length = 254)]
    pub email: String,
}

/// A mailed reset token and the new password.
#[derive(Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResetRequest {
    #[validate(length(max = 4096))]
    pub token: String,
    /// At least `PASSWORD_MIN_LENGTH` (12) characters, at most 256; common passwords are refused.
    #[validate(length(max = 1024))]
    #[schema(min_length = 12, max_length = 256)]
    pub new_password: String,
}

/// The current password and a new one.
#[derive(Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangePasswordRequest {
    #[validate(length(max = 1024))]
    pub current_password: String,
    /// At least `PASSWORD_MIN_LENGTH` (12) characters, at most 256; common passwords are refused.
    #[validate(length(max = 1024))]
    #[schema(min_length = 12, max_length = 256)]
    pub new_password: String,
}

/// A mailed verification token.
#[derive(Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfirmRequest {
    #[validate(length(max = 4096))]
    pub token: String,
}

/// What a sign-in answers: a session, or — for an account with a second factor — a challenge
/// to complete at `/api/v1/auth/mfa/verify`.
#[derive(serde::Serialize, ToSchema)]
#[serde(untagged)]
pub enum SignedIn {
    Session(TokenPair),
    MfaRequired(MfaChallenge),
}

/// The prefix of the scope the credential routes are mounted in.
pub(super) const CREDENTIALS: &str = "/api/v1/auth";

const REGISTER_ACCEPTED: &str = "If the address can be registered, a confirmation link is on its way. Sign in with the address and password.";

/// Creates an account in the request's tenant. The answer is the same whether or not the
/// address already had an account (the owner of an existing one is told by mail instead), so
/// this cannot be used to find out who has an account. Then sign in with `/auth/login`.
#[utoipa::path(
    tag = "auth",
    params(TenantHeader),
    request_body = Registration,
    responses(
        (status = 202, description = "Accepted; a confirmation link is mailed to new accounts", body = Accepted),
        (status = 422, description = "`validation_failed`: invalid address, or the password breaks the policy (`too_short`, `too_long`, `too_common`, `too_weak`)"),
        (status = 429, description = "`rate_limited`"),
    )
)]
#[post("/register")]
pub(super) async fn register(
    state: web::Data<AppState>,
    tenant: CurrentTenant,
    body: Json<Unchecked<Registration>>,
) -> Result<HttpResponse, ApiError> {
    state
        .accounts
        .register(tenant.0.id, body.into_inner().0)
        .await?;
    Ok(HttpResponse::Accepted().json(Accepted::new(REGISTER_ACCEPTED)))
}

/// Signs in and opens a session — or, for an account with a second factor, answers
/// `{"status": "mfa_required", "challenge": …}` to complete at `/api/v1/auth/mfa/verify`. A wrong
/// password, an unknown address and a deleted account get the same `401 invalid_credentials`,
/// after the same amount of work.
#[utoipa::path(
    tag = "auth",
    params(TenantHeader),
    request_body = LoginRequest,
    responses(
        (status = 200, description = "Signed in, or a second factor is required", body = SignedIn),
        (status = 401, description = "`invalid_credentials`"),
        (status = 403, description = "`account_disabled`: right password, deactivated account"),
        (status = 429, description = "`rate_limited`: too many attempts for this address or from this client"),
    )
)]
#[post("/login")]
pub(super) async fn login(
    state: web::Data<AppState>,
    tenant: CurrentTenant,
    client: Client,
    body: Json<LoginRequest>,
) -> Result<web::Json<SignedIn>, ApiError> {
    let body = body.into_inner();
    let password = SecretString::from(body.password);
    let signed_in = state
        .accounts
        .sign_in(tenant.0.id, &body.email, &password, &client.0)
        .await?;
    Ok(web::Json(match signed_in {
        SignIn::Session(pair) => SignedIn::Session(pair),
        SignIn::MfaRequired(challenge) => SignedIn::MfaRequired(challenge),
    }))
}

/// The same sign-in as an OAuth2 password grant (form-encoded `username` and `password`), so
/// OAuth2 clients and the docs page's Authorize button work.
#[utoipa::path(
    tag = "auth",
    params(TenantHeader),
    request_body(content = TokenForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "Signed in", body = TokenPair),
        (status = 400, description = "`unsupported_grant_type`"),
        (status = 401, description = "`invalid_credentials`"),
    )
)]
#[post("/token")]
pub(super) async fn token(
    state: web::Data<AppState>,
    tenant: CurrentTenant,
    client: Client,
    form: web::Form<TokenForm>,
) -> Result<web::Json<TokenPair>, ApiError> {
    let form = form.into_inner();
    if form.grant_type.as_deref().is_some_and(|g| g != "password") {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "Only the `password` grant is supported here; refresh at /api/v1/auth/refresh.",
        ));
    }
    let password = SecretString::from(form.password);
    let pair = state
        .accounts
        .login(tenant.0.id, &form.username, &password, &client.0)
        .await?;
    Ok(web::Json(pair))
}

/// Exchanges a refresh token for a new pair; the old refresh token is spent. Presenting a spent
/// token again (a replay, or the loser of two concurrent refreshes) signs the session out.
#[utoipa::path(
    tag = "auth",
    request_body = RefreshRequest,
    responses(
        (status = 200, description = "A new pair", body = TokenPair),
        (status = 401, description = "`invalid_token`, or `refresh_token_reused` (the session is now revoked)"),
    )
)]
#[post("/refresh")]
pub(super) async fn refresh(
    state: web::Data<AppState>,
    client: Client,
    body: Json<RefreshRequest>,
) -> Result<web::Json<TokenPair>, ApiError> {
    let pair = state
        .accounts
        .refresh(&body.into_inner().refresh_token, &client.0)
        .await?;
    Ok(web::Json(pair))
}

/// Signs out this session (`all=true`: every session of the account). Access tokens of the
/// ended sessions stop working at once, on every instance.
#[utoipa::path(
    params(LogoutQuery),
    tag = "auth",
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Signed out"),
        (status = 401, description = "`not_authenticated` or `invalid_token`"),
        (status = 403, description = "`session_required`: API keys cannot sign out"),
    )
)]
#[post("/api/v1/auth/logout")]
pub(super) async fn logout(
    state: web::Data<AppState>,
    user: CurrentUser,
    query: Query<LogoutQuery>,
) -> Result<HttpResponse, ApiError> {
    state.accounts.logout(&user.principal, query.all).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Mails a single-use password-reset link if the address has an active account. The answer is
/// the same, and as fast, either way.
#[utoipa::path(
    tag = "auth",
    params(TenantHeader),
    request_body = ForgotRequest,
    responses(
        (status = 202, description = "Accepted", body = Accepted),
        (status = 422, description = "`validation_failed`: not an email address"),
        (status = 429, description = "`rate_limited`"),
    )
)]
#[post("/password/forgot")]
pub(super) async fn forgot_password(
    state: web::Data<AppState>,
    tenant: CurrentTenant,
    body: Json<ForgotRequest>,
) -> Result<HttpResponse, ApiError> {
    state
        .accounts
        .forgot_password(tenant.0.id, &body.into_inner().email)
        .await?;
    Ok(HttpResponse::Accepted().json(Accepted::new(
        "If the address has an account, a reset link is on its way.",
    )))
}

/// Sets a new password with a mailed reset token. Every session of the account is signed out.
#[utoipa::path(
    tag = "auth",
    request_body = ResetRequest,
    responses(
        (status = 204, description = "Password changed"),
        (status = 401, description = "`invalid_token`: unknown, expired or already used"),
        (status = 422, description = "`validation_failed`: the new password breaks the policy"),
    )
)]
#[post("/password/reset")]
pub(super) async fn reset_password(
    state: web::Data<AppState>,
    body: Json<ResetRequest>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    state
        .accounts
        .reset_password(&body.token, &SecretString::from(body.new_password))
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Changes the password, given the current one. Every other session is signed out.
#[utoipa::path(
    tag = "auth",
    security(("bearer" = [])),
    request_body = ChangePasswordRequest,
    responses(
        (status = 204, description = "Password changed"),
        (status = 422, description = "`wrong_password`, or `validation_failed` for the new one"),
    )
)]
#[post("/password/change")]
pub(super) async fn change_password(
    state: web::Data<AppState>,
    user: CurrentUser,
    body: Json<ChangePasswordRequest>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    state
        .accounts
        .change_password(
            &user.principal,
            &SecretString::from(body.current_password),
            &SecretString::from(body.new_password),
        )
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Mails a verification link to the account's address.
#[utoipa::path(
    tag = "auth",
    security(("bearer" = [])),
    responses(
        (status = 202, description = "Accepted", body = Accepted),
    )
)]
#[post("/verify-email/request")]
pub(super) async fn request_verification(
    state: web::Data<AppState>,
    user: CurrentUser,
) -> Result<HttpResponse, ApiError> {
    state.accounts.request_verification(&user.principal).await?;
    Ok(HttpResponse::Accepted().json(Accepted::new(
        "Unless the address is already verified, a confirmation link is on its way.",
    )))
}

/// Marks the address verified with a mailed token.
#[utoipa::path(
    tag = "auth",
    request_body = ConfirmRequest,
    responses(
        (status = 204, description = "Verified"),
        (status = 401, description = "`invalid_token`"),
    )
)]
#[post("/verify-email/confirm")]
pub(super) async fn confirm_verification(
    state: web::Data<AppState>,
    body: Json<ConfirmRequest>,
) -> Result<HttpResponse, ApiError> {
    state
        .accounts
        .confirm_verification(&body.into_inner().token)
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// The account's live sessions, newest first.
#[utoipa::path(
    tag = "auth",
    security(("bearer" = [])),
    responses((status = 200, description = "Sessions", body = Vec<SessionInfo>))
)]
#[get("/api/v1/auth/sessions")]
pub(super) async fn sessions(
    state: web::Data<AppState>,
    user: CurrentUser,
) -> Result<web::Json<Vec<SessionInfo>>, ApiError> {
    let sessions = state.accounts.sessions(&user.principal).await?;
    Ok(web::Json(sessions.into_iter().collect()))
}

/// Signs out one of the account's sessions.
#[utoipa::path(
    tag = "auth",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The session")),
    responses(
        (status = 204, description = "Signed out"),
        (status = 404, description = "`not_found`: no such live session of this account"),
    )
)]
#[delete("/api/v1/auth/sessions/{id}")]
pub(super) async fn revoke_session(
    state: web::Data<AppState>,
    user: CurrentUser,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    state
        .accounts
        .revoke_session(&user.principal, id.into_inner())
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// The public keys access tokens are signed with (RFC 7517), for other services to verify them
/// with standard libraries. Empty with HS256, whose secret is never published.
#[utoipa::path(
    tag = "auth",
    responses((status = 200, description = "A JWK set", body = Object, example = json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo", "use": "sig", "alg": "EdDSA", "kid": "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"}]}))),
)]
#[get("/.well-known/jwks.json")]
pub(super) async fn jwks(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header(("Cache-Control", "public, max-age=300"))
        .json(state.accounts.keys().jwks())
}
