//! `/api/v1/api-keys`: long-lived credentials for programs.

use actix_web::{HttpResponse, delete, get, post, web};
use sovereign_auth::{ApiKeyInfo, CreatedApiKey, NewApiKey};
use uuid::Uuid;

use crate::auth::CurrentUser;
use crate::error::ApiError;
use crate::extract::{Json, Unchecked};

use crate::state::AppState;

/// Creates an API key acting as the caller, with a role no higher than the caller's. Needs a
/// signed-in session (a key cannot create keys).
#[utoipa::path(
    tag = "api-keys",
    security(("bearer" = [])),
    request_body = NewApiKey,
    responses(
        (status = 201, description = "Created; the secret is in `key`", body = CreatedApiKey),
        (status = 401, description = "`reauthentication_required`: the session's sign-in is older than 10 minutes and it is not `aal2` (see `/auth/reauthenticate`)"),
        (status = 403, description = "`forbidden` (role above the caller's) or `session_required`"),
        (status = 422, description = "`validation_failed`"),
    )
)]
#[post("/api/v1/api-keys")]
pub(super) async fn create(
    state: web::Data<AppState>,
    user: CurrentUser,
    body: Json<Unchecked<NewApiKey>>,
) -> Result<HttpResponse, ApiError> {
    let created = state
        .accounts
        .create_api_key(&user.principal, body.into_inner().0)
        .await?;
    Ok(HttpResponse::Created().json(created))
}

/// The caller's API keys, newest first (revoked ones included, with `revoked_at`).
#[utoipa::path(
    tag = "api-keys",
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, description = "Keys", body = Vec<ApiKeyInfo>))
)]
#[get("/api/v1/api-keys")]
pub(super) async fn list(
    state: web::Data<AppState>,
    user: CurrentUser,
) -> Result<web::Json<Vec<ApiKeyInfo>>, ApiError> {
    let keys = state.accounts.list_api_keys(&user.principal).await?;
    Ok(web::Json(keys.into_iter().collect()))
}

/// Revokes a key: one's own, or (administrators) any key of the tenant up to their role.
#[utoipa::path(
    tag = "api-keys",
    security(("bearer" = []), ("api_key" = [])),
    params(("id" = Uuid, Path)),
    responses(
        (status = 204, description = "Revoked"),
        (status = 404, description = "`not_found`"),
    )
)]
#[delete("/api/v1/api-keys/{id}")]
pub(super) async fn revoke(
    state: web::Data<AppState>,
    user: CurrentUser,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    state
        .accounts
        .revoke_api_key(&user.principal, id.into_inner())
        .await?;
    Ok(HttpResponse::NoContent().finish())
}
