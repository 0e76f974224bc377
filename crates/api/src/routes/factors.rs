//! `/api/v1/auth/factors`, `/recovery-codes` and `/mfa/verify`: second factors (TOTP) and
//! completing a sign-in with one. The domain rules are `sovereign_auth::factors`'s.

use actix_web::{HttpResponse, delete, get, post, put, web};
use serde::{Deserialize, Serialize};
use sovereign_auth::{
    AccessToken, EnrolledSession, EnrolmentConfirmation, Factors, MfaPolicy, MfaVerification,
    Reauthentication, RecoveryCodes, TokenPair, TotpEnrolment,
};
use utoipa::ToSchema;
use uuid::Uuid;
use validator::Validate;

use crate::auth::{Client, CurrentUser};
use crate::error::ApiError;
use crate::extract::{Json, Unchecked};
use crate::state::AppState;

/// A name for a new authenticator.
#[derive(Deserialize, Validate, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct NewTotp {
    /// 1 to 100 printable characters (default `Authenticator`).
    #[serde(default)]
    #[validate(length(max = 400))]
    #[schema(max_length = 100)]
    pub name: String,
}

/// A code from the authenticator app.
#[derive(Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CodeRequest {
    /// Six digits.
    #[validate(length(max = 32))]
    #[schema(pattern = "^[0-9]{6}$")]
    pub code: String,
}

/// A confirmed factor; the account's first also brings its recovery codes, shown this once.
#[derive(Serialize, ToSchema)]
pub struct FactorConfirmed {
    /// Ten single-use codes, only when this is the account's first factor.
    pub recovery_codes: Option<Vec<String>>,
}

/// Starts enrolling a TOTP authenticator: scan `otpauth_uri` as a QR code (or type `secret`),
/// then confirm it with a first code. Needs a signed-in session.
#[utoipa::path(
    tag = "auth",
    security(("bearer" = [])),
    request_body = NewTotp,
    responses(
        (status = 201, description = "Enrolment started", body = TotpEnrolment),
        (status = 403, description = "`session_required`: API keys cannot enrol factors"),
    )
)]
#[post("/api/v1/auth/factors/totp")]
pub(super) async fn enrol_totp(
    state: web::Data<AppState>,
    user: CurrentUser,
    body: Json<NewTotp>,
) -> Result<HttpResponse, ApiError> {
    let enrolment = state
        .accounts
        .enrol_totp(&user.principal, &body.into_inner().name)
        .await?;
    Ok(HttpResponse::Created().json(enrolment))
}

/// Confirms an enrolment with a code from the authenticator.
#[utoipa::path(
    tag = "auth",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The factor")),
    request_body = CodeRequest,
    responses(
        (status = 200, description = "Confirmed", body = FactorConfirmed),
        (status = 404, description = "`not_found`: no unconfirmed factor of this account with this id"),
        (status = 422, description = "`invalid_code`"),
        (status = 429, description = "`rate_limited`: too many attempts for this account"),
    )
)]
#[post("/api/v1/auth/factors/{id}/confirm")]
pub(super) async fn confirm_factor(
    state: web::Data<AppState>,
    user: CurrentUser,
    id: web::Path<Uuid>,
    body: Json<CodeRequest>,
) -> Result<web::Json<FactorConfirmed>, ApiError> {
    let codes = state
        .accounts
        .confirm_factor(&user.principal, id.into_inner(), &body.into_inner().code)
        .await?;
    Ok(web::Json(FactorConfirmed {
        recovery_codes: codes.map(|c| c.recovery_codes),
    }))
}

/// The account's factors and how many recovery codes are left.
#[utoipa::path(
    tag = "auth",
    security(("bearer" = [])),
    responses((status = 200, description = "Factors", body = Factors))
)]
#[get("/api/v1/auth/factors")]
pub(super) async fn list_factors(
    state: web::Data<AppState>,
    user: CurrentUser,
) -> Result<web::Json<Factors>, ApiError> {
    Ok(web::Json(state.accounts.factors(&user.principal).await?))
}

/// Removes a factor. Needs a session at `aal2` or signed in within the last 10 minutes.
/// Removing the last one deletes the recovery codes and ends the account's other sessions.
#[utoipa::path(
    tag = "auth",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The factor")),
    responses(
        (status = 204, description = "Removed"),
        (status = 401, description = "`reauthentication_required`"),
        (status = 404, description = "`not_found`"),
    )
)]
#[delete("/api/v1/auth/factors/{id}")]
pub(super) async fn remove_factor(
    state: web::Data<AppState>,
    user: CurrentUser,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    state
        .accounts
        .remove_factor(&user.principal, id.into_inner())
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Replaces the recovery codes with ten new ones, shown this once. Needs a session at `aal2`.
#[utoipa::path(
    tag = "auth",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "New codes", body = RecoveryCodes),
        (status = 401, description = "`reauthentication_required`: the session is not `aal2`"),
    )
)]
#[post("/api/v1/auth/recovery-codes")]
pub(super) async fn regenerate_recovery_codes(
    state: web::Data<AppState>,
    user: CurrentUser,
) -> Result<web::Json<RecoveryCodes>, ApiError> {
    Ok(web::Json(
        state
            .accounts
            .regenerate_recovery_codes(&user.principal)
            .await?,
    ))
}

/// Completes a sign-in that answered `mfa_required`: the challenge with a code from the
/// authenticator, or a recovery code (which ends the account's other sessions). A session at
/// `aal2`.
#[utoipa::path(
    tag = "auth",
    request_body = MfaVerification,
    responses(
        (status = 200, description = "Signed in", body = TokenPair),
        (status = 401, description = "`invalid_challenge`: unknown, expired or already completed"),
        (status = 422, description = "`invalid_code` or `code_already_used`"),
        (status = 429, description = "`rate_limited`"),
    )
)]
#[post("/mfa/verify")]
pub(super) async fn verify_mfa(
    state: web::Data<AppState>,
    client: Client,
    body: Json<Unchecked<MfaVerification>>,
) -> Result<web::Json<TokenPair>, ApiError> {
    let pair = state
        .accounts
        .verify_challenge(&body.into_inner().0, &client.0)
        .await?;
    Ok(web::Json(pair))
}

/// Proves again who the signed-in user is — the password, or a TOTP code (which raises the
/// session to `aal2`) — for the operations that need a recent sign-in: creating API keys,
/// removing factors. Answers a new access token for the same session.
#[utoipa::path(
    tag = "auth",
    security(("bearer" = [])),
    request_body = Reauthentication,
    responses(
        (status = 200, description = "A new access token", body = AccessToken),
        (status = 401, description = "`invalid_credentials`: wrong password"),
        (status = 422, description = "`invalid_code`, `code_already_used`, or not exactly one of `password` and `code`"),
        (status = 429, description = "`rate_limited`"),
    )
)]
#[post("/reauthenticate")]
pub(super) async fn reauthenticate(
    state: web::Data<AppState>,
    user: CurrentUser,
    body: Json<Unchecked<Reauthentication>>,
) -> Result<web::Json<AccessToken>, ApiError> {
    Ok(web::Json(
        state
            .accounts
            .reauthenticate(&user.principal, &body.into_inner().0)
            .await?,
    ))
}

/// The challenge of a sign-in that answered `mfa_enrolment_required`.
#[derive(Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EnrolmentRequest {
    #[validate(length(max = 200))]
    pub challenge: String,
}

/// Starts enrolling an authenticator for a sign-in that answered `mfa_enrolment_required` (the
/// tenant requires a second factor of this account, and it has none): scan `otpauth_uri`, then
/// confirm at `/api/v1/auth/mfa/enrol/confirm`.
#[utoipa::path(
    tag = "auth",
    request_body = EnrolmentRequest,
    responses(
        (status = 200, description = "The authenticator to add", body = TotpEnrolment),
        (status = 401, description = "`invalid_challenge`"),
        (status = 429, description = "`rate_limited`"),
    )
)]
#[post("/mfa/enrol")]
pub(super) async fn enrol_mfa(
    state: web::Data<AppState>,
    body: Json<EnrolmentRequest>,
) -> Result<web::Json<TotpEnrolment>, ApiError> {
    Ok(web::Json(
        state
            .accounts
            .enrol_with_challenge(&body.into_inner().challenge)
            .await?,
    ))
}

/// Completes the enrolment with a first code: a session at `aal2`, and the account's recovery
/// codes, shown this once.
#[utoipa::path(
    tag = "auth",
    request_body = EnrolmentConfirmation,
    responses(
        (status = 200, description = "Signed in", body = EnrolledSession),
        (status = 401, description = "`invalid_challenge`"),
        (status = 422, description = "`invalid_code`"),
        (status = 429, description = "`rate_limited`"),
    )
)]
#[post("/mfa/enrol/confirm")]
pub(super) async fn confirm_mfa_enrolment(
    state: web::Data<AppState>,
    client: Client,
    body: Json<Unchecked<EnrolmentConfirmation>>,
) -> Result<web::Json<EnrolledSession>, ApiError> {
    Ok(web::Json(
        state
            .accounts
            .confirm_enrolment(&body.into_inner().0, &client.0)
            .await?,
    ))
}

/// The tenant's second-factor policy (administrators).
#[utoipa::path(
    tag = "auth",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The policy", body = MfaPolicy),
        (status = 403, description = "`forbidden`: administrators only"),
    )
)]
#[get("/api/v1/auth/mfa-policy")]
pub(super) async fn get_mfa_policy(
    state: web::Data<AppState>,
    user: CurrentUser,
) -> Result<web::Json<MfaPolicy>, ApiError> {
    Ok(web::Json(state.accounts.mfa_policy(&user.principal).await?))
}

/// Sets who must sign in with a second factor (`none`, `admins`, `everyone`); administrators,
/// signed in within the last 10 minutes (or at `aal2`). The `aal1` sessions of the accounts it
/// covers end at once; those accounts enrol an authenticator at their next sign-in.
#[utoipa::path(
    tag = "auth",
    security(("bearer" = [])),
    request_body = MfaPolicy,
    responses(
        (status = 200, description = "The policy", body = MfaPolicy),
        (status = 401, description = "`reauthentication_required`"),
        (status = 403, description = "`forbidden`: administrators only"),
    )
)]
#[put("/api/v1/auth/mfa-policy")]
pub(super) async fn set_mfa_policy(
    state: web::Data<AppState>,
    user: CurrentUser,
    body: Json<Unchecked<MfaPolicy>>,
) -> Result<web::Json<MfaPolicy>, ApiError> {
    Ok(web::Json(
        state
            .accounts
            .set_mfa_policy(&user.principal, &body.into_inner().0)
            .await?,
    ))
}
