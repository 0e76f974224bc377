//! `/api/v1/auth/passkeys`: registering passkeys, signing in and re-authenticating with them.
//! The rules are `sovereign_auth::passkeys`'s.

use actix_web::{HttpResponse, delete, get, patch, post, web};
use serde::Deserialize;
use sovereign_auth::{PasskeyAnswer, PasskeyInfo, PasskeyOptions, TokenPair};
use utoipa::ToSchema;
use uuid::Uuid;
use validator::Validate;

use crate::auth::{Client, CurrentUser};
use crate::error::ApiError;
use crate::extract::{Json, Unchecked};
use crate::state::AppState;
use crate::tenant::{CurrentTenant, TenantHeader};

/// A name for a passkey.
#[derive(Deserialize, Validate, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct PasskeyName {
    /// 1 to 100 printable characters (default `Passkey`).
    #[serde(default)]
    #[validate(length(max = 400))]
    #[schema(max_length = 100)]
    pub name: String,
}

/// Starts registering a passkey for the signed-in account (signed in within the last 10
/// minutes, or at `aal2`): give `options.publicKey` to
/// `PublicKeyCredential.parseCreationOptionsFromJSON`, then `navigator.credentials.create`.
#[utoipa::path(
    tag = "auth",
    security(("bearer" = [])),
    request_body = PasskeyName,
    responses(
        (status = 200, description = "The ceremony", body = PasskeyOptions),
        (status = 401, description = "`reauthentication_required`"),
        (status = 403, description = "`session_required`: API keys cannot add passkeys"),
    )
)]
#[post("/api/v1/auth/passkeys/register/start")]
pub(super) async fn start_passkey_registration(
    state: web::Data<AppState>,
    user: CurrentUser,
    body: Json<PasskeyName>,
) -> Result<web::Json<PasskeyOptions>, ApiError> {
    Ok(web::Json(
        state
            .accounts
            .start_passkey_registration(&user.principal, &body.into_inner().name)
            .await?,
    ))
}

/// Completes a registration with the new credential (`credential.toJSON()`).
#[utoipa::path(
    tag = "auth",
    security(("bearer" = [])),
    request_body = PasskeyAnswer,
    responses(
        (status = 201, description = "Registered", body = PasskeyInfo),
        (status = 401, description = "`invalid_passkey`: unknown or spent ceremony, wrong origin, no user verification …"),
    )
)]
#[post("/api/v1/auth/passkeys/register/finish")]
pub(super) async fn finish_passkey_registration(
    state: web::Data<AppState>,
    user: CurrentUser,
    body: Json<Unchecked<PasskeyAnswer>>,
) -> Result<HttpResponse, ApiError> {
    let info = state
        .accounts
        .finish_passkey_registration(&user.principal, &body.into_inner().0)
        .await?;
    Ok(HttpResponse::Created().json(info))
}

/// The account's passkeys.
#[utoipa::path(
    tag = "auth",
    security(("bearer" = [])),
    responses((status = 200, description = "Passkeys", body = Vec<PasskeyInfo>))
)]
#[get("/api/v1/auth/passkeys")]
pub(super) async fn list_passkeys(
    state: web::Data<AppState>,
    user: CurrentUser,
) -> Result<web::Json<Vec<PasskeyInfo>>, ApiError> {
    Ok(web::Json(state.accounts.passkeys(&user.principal).await?))
}

/// Renames a passkey.
#[utoipa::path(
    tag = "auth",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The passkey")),
    request_body = PasskeyName,
    responses(
        (status = 204, description = "Renamed"),
        (status = 404, description = "`not_found`"),
    )
)]
#[patch("/api/v1/auth/passkeys/{id}")]
pub(super) async fn rename_passkey(
    state: web::Data<AppState>,
    user: CurrentUser,
    id: web::Path<Uuid>,
    body: Json<PasskeyName>,
) -> Result<HttpResponse, ApiError> {
    state
        .accounts
        .rename_passkey(&user.principal, id.into_inner(), &body.into_inner().name)
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Removes a passkey (signed in within the last 10 minutes, or at `aal2`); never the account's
/// last way to sign in.
#[utoipa::path(
    tag = "auth",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The passkey")),
    responses(
        (status = 204, description = "Removed"),
        (status = 401, description = "`reauthentication_required`"),
        (status = 404, description = "`not_found`"),
        (status = 409, description = "`last_sign_in_method`"),
    )
)]
#[delete("/api/v1/auth/passkeys/{id}")]
pub(super) async fn remove_passkey(
    state: web::Data<AppState>,
    user: CurrentUser,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    state
        .accounts
        .remove_passkey(&user.principal, id.into_inner())
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Starts a sign-in with a passkey — no address needed: give `options.publicKey` to
/// `PublicKeyCredential.parseRequestOptionsFromJSON`, then `navigator.credentials.get`.
#[utoipa::path(
    tag = "auth",
    params(TenantHeader),
    responses((status = 200, description = "The ceremony", body = PasskeyOptions))
)]
#[post("/passkeys/sign-in/start")]
pub(super) async fn start_passkey_sign_in(
    state: web::Data<AppState>,
    tenant: CurrentTenant,
) -> Result<web::Json<PasskeyOptions>, ApiError> {
    Ok(web::Json(
        state.accounts.start_passkey_sign_in(tenant.0.id).await?,
    ))
}

/// Completes a sign-in with the authenticator's answer: a session at `aal2` (user
/// verification is required).
#[utoipa::path(
    tag = "auth",
    request_body = PasskeyAnswer,
    responses(
        (status = 200, description = "Signed in", body = TokenPair),
        (status = 401, description = "`invalid_passkey`"),
    )
)]
#[post("/passkeys/sign-in/finish")]
pub(super) async fn finish_passkey_sign_in(
    state: web::Data<AppState>,
    client: Client,
    body: Json<Unchecked<PasskeyAnswer>>,
) -> Result<web::Json<TokenPair>, ApiError> {
    Ok(web::Json(
        state
            .accounts
            .finish_passkey_sign_in(&body.into_inner().0, &client.0)
            .await?,
    ))
}

/// Starts re-authenticating with one of the account's passkeys; send the answer to
/// `/api/v1/auth/reauthenticate` as `{"passkey": {"ceremony", "credential"}}`.
#[utoipa::path(
    tag = "auth",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The ceremony", body = PasskeyOptions),
        (status = 404, description = "`not_found`: the account has no passkey"),
    )
)]
#[post("/api/v1/auth/passkeys/reauthenticate")]
pub(super) async fn start_passkey_reauthentication(
    state: web::Data<AppState>,
    user: CurrentUser,
) -> Result<web::Json<PasskeyOptions>, ApiError> {
    Ok(web::Json(
        state
            .accounts
            .start_passkey_reauthentication(&user.principal)
            .await?,
    ))
}
